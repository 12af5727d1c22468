//! CRM write-back: HubSpot, Salesforce (OAuth2) and a plain REST CRM.

use std::time::Duration;

use handoff::adapters::Class;
use handoff::adapters::Delivery;
use serde_json::{Value, json};

use super::example;
use crate::conformance::{self, Case, Fault, FaultProxy};
use crate::fakes::{self, generic_crm, hubspot, salesforce};

fn update<'a>(document: &'a Value, key: &'a str) -> Delivery<'a> {
    Delivery {
        operation: "update_opportunity",
        document,
        idempotency_key: key,
        match_key: Some(key),
        in_doubt: false,
        accept_amounts: false,
    }
}

fn deal(id: &str, status: &str) -> Value {
    json!({"id": id, "properties": {"erp_status": status, "erp_order_number": "SO0012"}})
}

#[tokio::test(flavor = "multi_thread")]
async fn hubspot_passes_the_conformance_harness() {
    let (addr, log, portal) =
        hubspot::start(&["5001", "5002"], 1000, Duration::from_secs(10)).await;
    let proxy = FaultProxy::start(&format!("http://{addr}")).await;
    let connector = example(
        "hubspot",
        &proxy.url(),
        &[("HUBSPOT_PRIVATE_APP_TOKEN", hubspot::TOKEN)],
        &[],
    );
    let case = Case {
        name: "hubspot",
        proxy: &proxy,
        adapter: connector.adapter.as_ref(),
        operation: "update_opportunity",
        records: [
            (deal("5001", "Confirmed"), "5001".into()),
            (deal("5002", "Shipped"), "5002".into()),
        ],
        held: std::time::Duration::from_secs(3),
        gives_id: false,
        create_marker: "PATCH /crm/v3/objects/deals",
        invalid: (
            json!({"id": "5001", "properties": {"erp_stage": "x"}}),
            "PROPERTY_DOESNT_EXIST",
        ),
        rate_limit: (
            Fault::Answer {
                status: 429,
                headers: vec![("content-type", "application/json".into())],
                body: r#"{"status":"error","message":"You have reached your ten_secondly_rolling limit.","errorType":"RATE_LIMIT","policyName":"TEN_SECONDLY_ROLLING"}"#.into(),
            },
            Some(Duration::from_secs(10)),
        ),
    };
    conformance::run(&case, async |id| {
        let portal = portal.lock().unwrap();
        usize::from(portal.deals[id].get("erp_status").is_some())
    })
    .await;
    // The body is the deal's properties, the id only in the path; the private app token.
    let patch = &fakes::requests(&log, "PATCH /crm/v3/objects/deals/5001")[0];
    assert_eq!(
        serde_json::from_str::<Value>(&patch.body).unwrap(),
        json!({"properties": {"erp_status": "Confirmed", "erp_order_number": "SO0012"}})
    );
    assert_eq!(
        patch.header("authorization"),
        Some(format!("Bearer {}", hubspot::TOKEN).as_str())
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_connector_rate_limit_keeps_hubspot_from_answering_429() {
    // HubSpot's 100 per 10 s, scaled to 10 per second; the connector paced at 8 a second.
    let deals: Vec<String> = (0..20).map(|n| format!("70{n:02}")).collect();
    let ids: Vec<&str> = deals.iter().map(String::as_str).collect();
    let (addr, _log, portal) = hubspot::start(&ids, 10, Duration::from_secs(1)).await;
    let url = format!("http://{addr}");
    let secrets = [("HUBSPOT_PRIVATE_APP_TOKEN", hubspot::TOKEN)];
    let paced = example(
        "hubspot",
        &url,
        &secrets,
        &["rate_limit: { per_second: 8, burst: 1 }"],
    );
    let documents: Vec<Value> = ids.iter().map(|id| deal(id, "Paid")).collect();
    let sends = documents
        .iter()
        .zip(&ids)
        .map(|(document, id)| paced.adapter.send(update(document, id)));
    let results = futures::future::join_all(sends).await;
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    assert_eq!(portal.lock().unwrap().limited, 0);

    // Without the rate limit the same burst meets HubSpot's 429s, each one rate_limited with
    // the wait the connector's error rule gives.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let unpaced = example(
        "hubspot",
        &url,
        &secrets,
        &["rate_limit: { per_second: 1000, burst: 1000 }"],
    );
    let sends = documents
        .iter()
        .zip(&ids)
        .map(|(document, id)| unpaced.adapter.send(update(document, id)));
    let results = futures::future::join_all(sends).await;
    let limited: Vec<_> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    assert_eq!(limited.len(), 10, "{results:?}");
    assert!(
        limited.iter().all(
            |f| f.class == Class::RateLimited && f.retry_after == Some(Duration::from_secs(10))
        )
    );
}

fn opportunity(id: &str, status: &str) -> Value {
    json!({"id": id, "ERP_Status__c": status, "ERP_Order_Number__c": "SO0012"})
}

const SF_SECRETS: [(&str, &str); 2] = [
    ("SALESFORCE_CLIENT_ID", salesforce::CLIENT_ID),
    ("SALESFORCE_CLIENT_SECRET", salesforce::CLIENT_SECRET),
];

#[tokio::test(flavor = "multi_thread")]
async fn salesforce_passes_the_conformance_harness() {
    let (addr, _log, org) = salesforce::start(&["006A", "006B"]).await;
    let proxy = FaultProxy::start(&format!("http://{addr}")).await;
    let connector = example("salesforce", &proxy.url(), &SF_SECRETS, &[]);
    let case = Case {
        name: "salesforce",
        proxy: &proxy,
        adapter: connector.adapter.as_ref(),
        operation: "update_opportunity",
        records: [
            (opportunity("006A", "Confirmed"), "006A".into()),
            (opportunity("006B", "Shipped"), "006B".into()),
        ],
        held: std::time::Duration::from_secs(3),
        gives_id: false,
        create_marker: "PATCH /services/data/v61.0/sobjects/Opportunity",
        invalid: (json!({"id": "006A", "Bogus__c": 1}), "INVALID_FIELD"),
        rate_limit: (
            Fault::Answer {
                status: 403,
                headers: vec![("content-type", "application/json".into())],
                body: r#"[{"message":"TotalRequests Limit exceeded.","errorCode":"REQUEST_LIMIT_EXCEEDED"}]"#.into(),
            },
            Some(Duration::from_secs(300)),
        ),
    };
    conformance::run(&case, async |id| {
        usize::from(
            org.lock().unwrap().opportunities[id]
                .get("ERP_Status__c")
                .is_some(),
        )
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn salesforce_tokens_are_cached_and_fetched_again_when_the_session_ends() {
    let (addr, log, org) = salesforce::start(&["006A"]).await;
    let url = format!("http://{addr}");
    let connector = example("salesforce", &url, &SF_SECRETS, &[]);
    let adapter = connector.adapter.as_ref();
    for status in ["Confirmed", "Shipped", "Invoiced"] {
        adapter
            .send(update(&opportunity("006A", status), "006A"))
            .await
            .unwrap();
    }
    assert_eq!(
        org.lock().unwrap().tokens_issued,
        1,
        "one token for three updates"
    );
    salesforce::expire_sessions(&org);
    adapter
        .send(update(&opportunity("006A", "Paid"), "006A"))
        .await
        .unwrap();
    assert_eq!(org.lock().unwrap().tokens_issued, 2);
    assert_eq!(
        org.lock().unwrap().opportunities["006A"]["ERP_Status__c"],
        "Paid"
    );
    let patches = fakes::requests(&log, "PATCH");
    assert_eq!(patches.len(), 5, "the refused PATCH was sent again once");
    let token = fakes::requests(&log, "POST /services/oauth2/token");
    assert!(token[0].body.contains("grant_type=client_credentials"));
    assert_eq!(
        token[0].header("content-type"),
        Some("application/x-www-form-urlencoded")
    );

    // Wrong client credentials: the connector's configuration, and the secret is not repeated.
    let wrong = example(
        "salesforce",
        &url,
        &[
            ("SALESFORCE_CLIENT_ID", salesforce::CLIENT_ID),
            ("SALESFORCE_CLIENT_SECRET", "s3cr3t-wrong"),
        ],
        &[],
    );
    let refused = wrong
        .adapter
        .send(update(&opportunity("006A", "Paid"), "006A"))
        .await
        .unwrap_err();
    assert_eq!(refused.class, Class::FixConfig, "{refused:?}");
    assert!(refused.message.contains("invalid_client"), "{refused:?}");
    let shown = format!("{refused:?}");
    assert!(!shown.contains("s3cr3t-wrong"), "{shown}");
    assert!(connector.adapter.probe().await.is_ok());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_generic_rest_crm_passes_the_conformance_harness() {
    let (addr, log, records) = generic_crm::start(&["006A", "006B"]).await;
    let proxy = FaultProxy::start(&format!("http://{addr}")).await;
    let connector = example(
        "rest_crm",
        &proxy.url(),
        &[("CRM_API_KEY", generic_crm::API_KEY)],
        &[],
    );
    let case = Case {
        name: "rest_crm",
        proxy: &proxy,
        adapter: connector.adapter.as_ref(),
        operation: "update_opportunity",
        records: [
            (opportunity("006A", "Confirmed"), "006A".into()),
            (opportunity("006B", "Shipped"), "006B".into()),
        ],
        held: std::time::Duration::from_secs(3),
        gives_id: false,
        create_marker: "PATCH /api/opportunities",
        invalid: (opportunity("006A", "Teleported"), "is not a status"),
        rate_limit: (
            Fault::Answer {
                status: 429,
                headers: vec![("retry-after", "7".into())],
                body: r#"{"error":"slow down"}"#.into(),
            },
            Some(Duration::from_secs(7)),
        ),
    };
    conformance::run(&case, async |id| {
        usize::from(records.lock().unwrap()[id].get("ERP_Status__c").is_some())
    })
    .await;
    let patch = &fakes::requests(&log, "PATCH /api/opportunities/006A")[0];
    assert_eq!(patch.header("x-api-key"), Some(generic_crm::API_KEY));
    assert_eq!(patch.header("idempotency-key"), Some("006A"));
    assert!(!patch.body.contains("\"id\""), "{}", patch.body);
}

#[tokio::test(flavor = "multi_thread")]
async fn erp_status_reaches_salesforce_through_the_service_with_one_token() {
    use crate::delivery::erp_status;
    use crate::support::{TestApp, eventually};

    let (addr, log, org) = salesforce::start(&["006S"]).await;
    let dir = tempfile::tempdir().unwrap();
    let root = env!("CARGO_MANIFEST_DIR");
    std::fs::copy(
        format!("{root}/connectors/erp.yaml"),
        dir.path().join("erp.yaml"),
    )
    .unwrap();
    let shipped = std::fs::read_to_string(format!("{root}/connectors/examples/salesforce.yaml"))
        .unwrap()
        .replace(
            "https://example.my.salesforce.com",
            &format!("http://{addr}"),
        );
    std::fs::write(dir.path().join("crm.yaml"), shipped).unwrap();
    let app = TestApp::with_connectors(dir.path()).await;

    let status = |seq: u64, status: &str| {
        json!({"order_id": "SO-77", "reference": "006S", "number": "SO0077", "status": status,
               "sequence": seq, "changed_at": "2026-11-21T08:00:00Z", "tracking_number": "1Z999",
               "invoice_number": "INV/2026/0077", "invoice_amount": "1260.07"})
    };
    for (seq, name) in [(1, "confirmed"), (2, "shipped"), (3, "invoiced")] {
        erp_status(&app, &format!("sf-{seq}"), status(seq, name)).await;
    }
    eventually(15, "three Salesforce updates", async || {
        (fakes::requests(&log, "PATCH").len() >= 3).then_some(())
    })
    .await;
    let written: Vec<String> =
        fakes::requests(&log, "PATCH /services/data/v61.0/sobjects/Opportunity/006S")
            .iter()
            .map(|r| serde_json::from_str::<Value>(&r.body).unwrap()["ERP_Status__c"].to_string())
            .collect();
    assert_eq!(written, ["\"Confirmed\"", "\"Shipped\"", "\"Invoiced\""]);
    let org = org.lock().unwrap();
    assert_eq!(org.tokens_issued, 1);
    let record = &org.opportunities["006S"];
    assert_eq!(record["Invoice_Amount__c"].to_string(), "1260.07");
    assert_eq!(record["Tracking_Number__c"], "1Z999");
}
