//! `POST /hooks/{source}` over HTTP: every preset, every refusal, dedupe, batches, ignored events.

use serde_json::Value;

use crate::support::*;

const CRM_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const OLD_SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";

fn code(body: &str) -> String {
    let value: Value = serde_json::from_str(body).unwrap_or_else(|_| panic!("not JSON: {body}"));
    value["error"]["code"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn standard_webhooks_published_vector_is_accepted_over_http() {
    let app = TestApp::start().await;
    let headers = json_headers(&[
        ("webhook-id", "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk".into()),
        ("webhook-timestamp", "1649367553".into()),
        (
            "webhook-signature",
            "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=".into(),
        ),
    ]);
    let body = r#"{"email":"test@example.com","username":"test_user"}"#;
    let (status, reply) = app.post("/hooks/vector", &headers, body).await;
    // No rule types this event: stored, answered 200 as ignored.
    assert_eq!(status, 200, "{reply}");
    let stored = app.envelopes();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].id, "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk");
    assert!(stored[0].is_ignored());
    assert_eq!(stored[0].raw_body, body);
}

#[tokio::test]
async fn a_won_opportunity_becomes_a_typed_envelope_on_disk() {
    let app = TestApp::start().await;
    let body = opportunity("006A", "Closed Won");
    let ts = now();
    let (status, reply) = app
        .post(
            "/hooks/crm",
            &standard_webhooks(CRM_SECRET, "msg_1", ts, &body),
            &body,
        )
        .await;
    assert_eq!(status, 202, "{reply}");
    assert_eq!(reply, r#"{"events":1,"status":"accepted"}"#);
    let envelope = &app.envelopes()[0];
    assert_eq!(envelope.source, "crm");
    assert_eq!(envelope.event_type.as_deref(), Some("opportunity.won"));
    assert_eq!(envelope.object.as_deref(), Some("Opportunity"));
    assert_eq!(envelope.object_id.as_deref(), Some("006A"));
    assert_eq!(envelope.version.as_deref(), Some("2026-11-20T09:15:00Z"));
    assert_eq!(envelope.signed_at, Some(ts));
    assert_eq!(envelope.data["data"]["Amount"], "15000.50");
}

#[tokio::test]
async fn bad_signatures_and_windows_are_401_and_store_nothing() {
    let app = TestApp::start().await;
    let body = opportunity("006A", "Closed Won");
    let ts = now();
    let good = standard_webhooks(CRM_SECRET, "msg_1", ts, &body);
    let tampered = body.replace("15000.50", "1.00");
    let wrong_secret =
        standard_webhooks("whsec_dGhpcyBpcyBub3QgdGhlIHNlY3JldA==", "msg_1", ts, &body);
    // Margins of 30 s past the 300 s window, so the clock ticking during the test cannot matter.
    let old = standard_webhooks(CRM_SECRET, "msg_1", ts - 330, &body);
    let future = standard_webhooks(CRM_SECRET, "msg_1", ts + 330, &body);
    let unsigned = json_headers(&[
        ("webhook-id", "msg_1".into()),
        ("webhook-timestamp", ts.to_string()),
    ]);
    let cases = [
        (&good, tampered.as_str(), "invalid_signature"),
        (&wrong_secret, body.as_str(), "invalid_signature"),
        (&old, body.as_str(), "timestamp_out_of_window"),
        (&future, body.as_str(), "timestamp_out_of_window"),
        (&unsigned, body.as_str(), "missing_signature"),
    ];
    for (headers, body, expected) in cases {
        let (status, reply) = app.post("/hooks/crm", headers, body).await;
        assert_eq!(
            (status, code(&reply)),
            (401, expected.to_owned()),
            "{reply}"
        );
    }
    assert!(app.journal().is_empty());
}

#[tokio::test]
async fn a_rotated_secret_is_still_accepted() {
    let app = TestApp::start().await;
    let body = opportunity("006B", "Closed Won");
    let headers = standard_webhooks(OLD_SECRET, "msg_rot", now(), &body);
    let (status, _) = app.post("/hooks/crm", &headers, &body).await;
    assert_eq!(status, 202);
}

#[tokio::test]
async fn a_duplicate_gets_the_same_answer_and_creates_nothing() {
    let app = TestApp::start().await;
    let body = opportunity("006A", "Closed Won");
    let headers = standard_webhooks(CRM_SECRET, "msg_dup", now(), &body);
    let first = app.post("/hooks/crm", &headers, &body).await;
    let second = app.post("/hooks/crm", &headers, &body).await;
    assert_eq!(first, second);
    assert_eq!(first.0, 202);
    assert_eq!(app.journal().len(), 1);
    // The same id from another source is another event.
    let body2 = opportunity("006A", "Prospecting");
    let other = standard_webhooks(CRM_SECRET, "msg_dup2", now(), &body2);
    app.post("/hooks/crm", &other, &body2).await;
    assert_eq!(app.journal().len(), 2);
}

#[tokio::test]
async fn refusals_have_stable_codes_and_store_nothing() {
    let app = TestApp::start_with(CONFIG, &[("HANDOFF_INGEST__MAX_BODY_BYTES", "4096")]).await;
    let big = format!(r#"{{"pad":"{}"}}"#, "x".repeat(5000));
    let signed_big = standard_webhooks(CRM_SECRET, "msg_big", now(), &big);
    let (status, reply) = app.post("/hooks/crm", &signed_big, &big).await;
    assert_eq!((status, code(&reply)), (413, "body_too_large".into()));

    let malformed = "{not json";
    let signed = standard_webhooks(CRM_SECRET, "msg_bad", now(), malformed);
    let (status, reply) = app.post("/hooks/crm", &signed, malformed).await;
    assert_eq!((status, code(&reply)), (400, "malformed_body".into()));

    let (status, reply) = app.post("/hooks/nowhere", &json_headers(&[]), "{}").await;
    assert_eq!((status, code(&reply)), (404, "unknown_source".into()));

    let mut text = standard_webhooks(CRM_SECRET, "msg_txt", now(), "{}");
    text[0].1 = "text/plain".into();
    let (status, reply) = app.post("/hooks/crm", &text, "{}").await;
    assert_eq!(
        (status, code(&reply)),
        (415, "unsupported_media_type".into())
    );

    assert!(app.journal().is_empty());
}

#[tokio::test]
async fn a_chunked_body_over_the_limit_is_413() {
    let app = TestApp::start_with(CONFIG, &[("HANDOFF_INGEST__MAX_BODY_BYTES", "1024")]).await;
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        (0..8).map(|_| Ok(vec![b' '; 512])).collect();
    let response = app
        .client
        .post(app.url("/hooks/crm"))
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(futures_stream(chunks)))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 413);
}

fn futures_stream(
    chunks: Vec<Result<Vec<u8>, std::io::Error>>,
) -> impl futures_core::Stream<Item = Result<Vec<u8>, std::io::Error>> + Send + 'static {
    tokio_stream::iter(chunks)
}

#[tokio::test]
async fn stripe_github_shopify_and_generic_hmac_sign_as_documented() {
    let app = TestApp::start().await;
    let t = now();

    let body =
        r#"{"id":"evt_1","type":"payment_intent.succeeded","data":{"object":{"id":"pi_1"}}}"#;
    let sig = hex::encode(hmac(
        b"whsec_test_stripe_secret",
        format!("{t}.{body}").as_bytes(),
    ));
    let headers = json_headers(&[("Stripe-Signature", format!("t={t},v1={sig}"))]);
    // Signed correctly and stored; no shipped mapping handles payments, hence 200 "ignored".
    assert_eq!(app.post("/hooks/stripe", &headers, body).await.0, 200);

    let body = "{\"zen\":\"Keep it logically awesome.\"}";
    let sig = hex::encode(hmac(b"It's a Secret to Everybody", body.as_bytes()));
    let headers = json_headers(&[
        ("X-Hub-Signature-256", format!("sha256={sig}")),
        (
            "X-GitHub-Delivery",
            "72d3162e-cc78-11e3-81ab-4c9367dc0958".into(),
        ),
    ]);
    assert_eq!(app.post("/hooks/github", &headers, body).await.0, 200);

    let body = r#"{"id":820982911946154508,"financial_status":"paid"}"#;
    let headers = json_headers(&[
        (
            "X-Shopify-Hmac-Sha256",
            b64(&hmac(b"shpss_test_secret", body.as_bytes())),
        ),
        (
            "X-Shopify-Webhook-Id",
            "b54557e4-bdd9-4b37-8a5f-bf7d70bcd043".into(),
        ),
    ]);
    assert_eq!(app.post("/hooks/shopify", &headers, body).await.0, 200);

    let body = r#"{"order_id":"SO-1","state":"confirmed","sequence":3}"#;
    let sig = hex::encode(hmac(b"erp-shared-secret", format!("{t}.{body}").as_bytes()));
    let headers = json_headers(&[
        ("X-Signature", format!("sha256={sig}")),
        ("X-Timestamp", t.to_string()),
        ("X-Event-Id", "erp-evt-1".into()),
    ]);
    assert_eq!(app.post("/hooks/erp", &headers, body).await.0, 202);

    let ids: Vec<String> = app.envelopes().into_iter().map(|e| e.id).collect();
    assert_eq!(
        ids,
        [
            "evt_1",
            "72d3162e-cc78-11e3-81ab-4c9367dc0958",
            "b54557e4-bdd9-4b37-8a5f-bf7d70bcd043",
            "erp-evt-1"
        ]
    );
    let erp = app.envelopes().pop().unwrap();
    assert_eq!(
        (erp.object_id.as_deref(), erp.version.as_deref()),
        (Some("SO-1"), Some("3"))
    );
}

#[tokio::test]
async fn hubspot_batches_split_into_events_and_the_public_uri_is_signed() {
    let app = TestApp::start().await;
    let body = serde_json::json!([
        {"eventId": 101, "subscriptionType": "deal.propertyChange", "objectId": 9001,
         "propertyName": "dealstage", "propertyValue": "closedwon", "occurredAt": 1700000000000u64},
        {"eventId": 102, "subscriptionType": "deal.propertyChange", "objectId": 9002,
         "propertyName": "amount", "propertyValue": "10", "occurredAt": 1700000000001u64}
    ])
    .to_string();
    let ms = now() * 1000;
    let uri = "https://hooks.example.com/hooks/hubspot";
    let sig = b64(&hmac(
        b"hubspot-app-client-secret",
        format!("POST{uri}{body}{ms}").as_bytes(),
    ));
    let headers = json_headers(&[
        ("X-HubSpot-Signature-v3", sig),
        ("X-HubSpot-Request-Timestamp", ms.to_string()),
    ]);
    let (status, reply) = app.post("/hooks/hubspot", &headers, &body).await;
    assert_eq!(status, 202, "{reply}");
    let stored = app.envelopes();
    assert_eq!(stored.len(), 2);
    assert_eq!(
        (stored[0].id.as_str(), stored[0].object_id.as_deref()),
        ("101", Some("9001"))
    );
    assert_eq!(stored[0].event_type.as_deref(), Some("opportunity.won"));
    assert!(stored[1].is_ignored());
}

#[tokio::test]
async fn salesforce_outbound_message_with_two_notifications() {
    let app = TestApp::start().await;
    let xml = include_str!("../fixtures/salesforce_two_notifications.xml");
    let headers = vec![
        (
            "content-type".to_owned(),
            "text/xml; charset=utf-8".to_owned(),
        ),
        ("SOAPAction".to_owned(), "\"\"".to_owned()),
    ];
    let (status, reply) = app.post("/hooks/salesforce", &headers, xml).await;
    assert_eq!(status, 200);
    assert!(reply.contains("<Ack>true</Ack>"), "{reply}");
    let stored = app.envelopes();
    let types: Vec<_> = stored
        .iter()
        .map(|e| (e.id.as_str(), e.event_type.as_deref()))
        .collect();
    assert_eq!(
        types,
        [
            ("04l000000000001AAA", Some("opportunity.won")),
            ("04l000000000002AAA", Some("account.updated"))
        ]
    );
    assert_eq!(stored[1].object_id.as_deref(), Some("001000000000001AAA"));
    assert!(
        !stored[0].raw_body.contains("secretsessiontoken"),
        "the session id is a credential"
    );

    // Redelivery: same Ack, nothing new.
    assert_eq!(app.post("/hooks/salesforce", &headers, xml).await.0, 200);
    assert_eq!(app.journal().len(), 2);

    let foreign = xml.replace("00D000000000062EAA", "00D000000000099ZZZ");
    let (status, reply) = app.post("/hooks/salesforce", &headers, &foreign).await;
    assert_eq!(
        (status, code(&reply)),
        (403, "organization_not_allowed".into())
    );
    assert_eq!(app.journal().len(), 2);

    // The same with a namespace prefix on the session id (as some SOAP stacks write it): it is
    // still removed.
    let prefixed = xml
        .replace(
            "<notifications xmlns=\"http://soap.sforce.com/2005/09/outbound\">",
            "<notifications xmlns=\"http://soap.sforce.com/2005/09/outbound\" \
             xmlns:out=\"http://soap.sforce.com/2005/09/outbound\">",
        )
        .replace("<SessionId>", "<out:SessionId>")
        .replace("</SessionId>", "</out:SessionId>")
        .replace("04l000000000001AAA", "04l000000000003AAA")
        .replace("04l000000000002AAA", "04l000000000004AAA");
    assert!(prefixed.contains("<out:SessionId>"), "{prefixed}");
    let (status, reply) = app.post("/hooks/salesforce", &headers, &prefixed).await;
    assert_eq!(status, 200, "{reply}");
    let stored = app.envelopes();
    assert_eq!(
        stored.len(),
        4,
        "both notifications of the prefixed message were stored"
    );
    for envelope in &stored[2..] {
        assert!(
            !envelope.raw_body.contains("secretsessiontoken"),
            "{}",
            envelope.raw_body
        );
    }
}

#[tokio::test]
async fn health_and_readiness() {
    let app = TestApp::start().await;
    let healthz = app.client.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(healthz.status().as_u16(), 200);
    let readyz = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(readyz.status().as_u16(), 200);
}

#[tokio::test]
async fn a_typed_event_that_no_mapping_handles_is_stored_as_ignored() {
    let app = TestApp::start().await;
    let won = opportunity("006W", "Closed Won");
    let (status, reply) = app
        .post(
            "/hooks/crm",
            &standard_webhooks(CRM_SECRET, "msg_won", now(), &won),
            &won,
        )
        .await;
    assert_eq!(
        (status, reply.as_str()),
        (202, r#"{"events":1,"status":"accepted"}"#)
    );
    // The stripe source types this payment.succeeded; no mapping handles that type.
    let t = now();
    let body = r#"{"id":"evt_9","type":"payment_intent.succeeded"}"#;
    let sig = hex::encode(hmac(
        b"whsec_test_stripe_secret",
        format!("{t}.{body}").as_bytes(),
    ));
    let headers = json_headers(&[("Stripe-Signature", format!("t={t},v1={sig}"))]);
    let (status, reply) = app.post("/hooks/stripe", &headers, body).await;
    assert_eq!(
        (status, reply.as_str()),
        (200, r#"{"events":1,"status":"ignored"}"#)
    );
    let stored = app.envelopes();
    assert!(!stored[0].is_ignored());
    assert_eq!(stored[1].event_type.as_deref(), Some("payment.succeeded"));
    assert!(stored[1].is_ignored(), "kept as a record, marked ignored");
}

/// What ships works together: on the embedded defaults, a Salesforce outbound message's
/// account becomes a customer in the sandbox ERP and its won opportunity is handled by the
/// shipped order mapping (not silently ignored).
#[tokio::test]
async fn salesforce_events_reach_the_shipped_mappings_on_the_embedded_defaults() {
    let app = TestApp::start_with(handoff::config::EMBEDDED_DEFAULTS, &[]).await;
    let xml = include_str!("../fixtures/salesforce_two_notifications.xml");
    let headers = vec![
        (
            "content-type".to_owned(),
            "text/xml; charset=utf-8".to_owned(),
        ),
        ("SOAPAction".to_owned(), "\"\"".to_owned()),
    ];
    let (status, reply) = app.post("/hooks/salesforce", &headers, xml).await;
    assert_eq!(status, 200, "{reply}");
    let customer = eventually(10, "the customer", async || {
        let job = jobs(&app, "flow=account_to_customer")
            .await
            .into_iter()
            .next()?;
        (job["state"] != "ready" && job["state"] != "leased").then_some(job)
    })
    .await;
    assert_eq!(customer["state"], "done", "{customer}");
    let order = eventually(10, "the order job", async || {
        jobs(&app, "flow=opportunity_to_sales_order")
            .await
            .into_iter()
            .next()
    })
    .await;
    assert_eq!(order["object_id"], "006000000000001AAA", "{order}");
}
