//! Published test vectors (REFERENCE.md) and the failure cases of every preset.

use axum::http::{HeaderMap, HeaderValue};

use super::*;
use crate::ingest::preset;
use crate::ingest::settings::Preset;

const SW_SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
const SW_ID: &str = "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk";
const SW_TS: i64 = 1649367553;
const SW_BODY: &str = r#"{"email":"test@example.com","username":"test_user"}"#;
const SW_SIG: &str = "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=";

fn verifier(preset: Preset, secrets: &[&str]) -> Verifier {
    let scheme = preset::scheme(preset, None, 300).unwrap().unwrap();
    let secrets: Vec<String> = secrets.iter().map(|s| s.to_string()).collect();
    Verifier::new(scheme, &secrets).unwrap()
}

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        map.insert(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
    }
    map
}

fn request<'a>(headers: &'a HeaderMap, body: &'a str) -> SignedRequest<'a> {
    SignedRequest {
        headers,
        method: "POST",
        uri: "https://hooks.example.com/hooks/crm",
        body: body.as_bytes(),
    }
}

fn sw_headers(sig: &str, ts: i64, prefix: &str) -> HeaderMap {
    let ts = ts.to_string();
    headers(&[
        (&format!("{prefix}-id"), SW_ID),
        (&format!("{prefix}-timestamp"), &ts),
        (&format!("{prefix}-signature"), sig),
    ])
}

#[test]
fn standard_webhooks_published_vector() {
    let v = verifier(Preset::StandardWebhooks, &[SW_SECRET]);
    let h = sw_headers(SW_SIG, SW_TS, "webhook");
    let verified = v.verify(request(&h, SW_BODY), SW_TS + 10).unwrap();
    assert_eq!(verified.timestamp, Some(SW_TS));
    assert_eq!(verified.id.as_deref(), Some(SW_ID));
}

#[test]
fn standard_webhooks_accepts_svix_headers_and_signature_lists() {
    let v = verifier(Preset::StandardWebhooks, &[SW_SECRET]);
    let list = format!("v1,AAAAbm90IGl0 v1a,ignored {SW_SIG}");
    let h = sw_headers(&list, SW_TS, "svix");
    assert!(v.verify(request(&h, SW_BODY), SW_TS).is_ok());
}

#[test]
fn standard_webhooks_rejects_tampering_wrong_secret_and_time() {
    let v = verifier(Preset::StandardWebhooks, &[SW_SECRET]);
    let h = sw_headers(SW_SIG, SW_TS, "webhook");
    let tampered = SW_BODY.replace("test_user", "test_usar");
    assert_eq!(
        v.verify(request(&h, &tampered), SW_TS),
        Err(SignatureError::NoMatch)
    );
    let wrong = verifier(
        Preset::StandardWebhooks,
        &["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"],
    );
    assert_eq!(
        wrong.verify(request(&h, SW_BODY), SW_TS),
        Err(SignatureError::NoMatch)
    );
    assert_eq!(
        v.verify(request(&h, SW_BODY), SW_TS + 301),
        Err(SignatureError::OutsideWindow(301))
    );
    assert_eq!(
        v.verify(request(&h, SW_BODY), SW_TS - 301),
        Err(SignatureError::OutsideWindow(-301))
    );
    let none = headers(&[("webhook-id", SW_ID)]);
    assert_eq!(
        v.verify(request(&none, SW_BODY), SW_TS).unwrap_err().code(),
        "missing_signature"
    );
}

#[test]
fn rotation_accepts_any_active_secret() {
    let v = verifier(
        Preset::StandardWebhooks,
        &["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", SW_SECRET],
    );
    let h = sw_headers(SW_SIG, SW_TS, "webhook");
    assert!(v.verify(request(&h, SW_BODY), SW_TS).is_ok());
}

#[test]
fn github_published_vector() {
    let v = verifier(Preset::Github, &["It's a Secret to Everybody"]);
    let h = headers(&[
        (
            "x-hub-signature-256",
            "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
        ),
        ("x-github-delivery", "72d3162e-cc78-11e3-81ab-4c9367dc0958"),
    ]);
    let verified = v.verify(request(&h, "Hello, World!"), 0).unwrap();
    assert_eq!(
        verified.id.as_deref(),
        Some("72d3162e-cc78-11e3-81ab-4c9367dc0958")
    );
    assert_eq!(
        v.verify(request(&h, "Hello, World?"), 0),
        Err(SignatureError::NoMatch)
    );
}

fn hmac_hex(key: &[u8], data: &[u8]) -> String {
    let mut mac = HmacSha256::new_from_slice(key).unwrap();
    mac.update(data);
    hex::encode(mac.finalize().into_bytes())
}

fn hmac_b64(key: &[u8], data: &[u8]) -> String {
    let mut mac = HmacSha256::new_from_slice(key).unwrap();
    mac.update(data);
    BASE64.encode(mac.finalize().into_bytes())
}

#[test]
fn stripe_keys_with_the_whole_secret_and_ignores_v0() {
    let secret = "whsec_test_secret";
    let body = r#"{"id":"evt_1","type":"payment_intent.succeeded"}"#;
    let t = 1_700_000_000;
    let sig = hmac_hex(secret.as_bytes(), format!("{t}.{body}").as_bytes());
    let v = verifier(Preset::Stripe, &[secret]);
    let h = headers(&[("stripe-signature", &format!("t={t},v1={sig},v0=deadbeef"))]);
    assert_eq!(v.verify(request(&h, body), t).unwrap().timestamp, Some(t));
    let only_v0 = headers(&[("stripe-signature", &format!("t={t},v0={sig}"))]);
    assert_eq!(
        v.verify(request(&only_v0, body), t),
        Err(SignatureError::NoMatch)
    );
    assert!(matches!(
        v.verify(request(&h, body), t + 301),
        Err(SignatureError::OutsideWindow(_))
    ));
}

#[test]
fn hubspot_v3_signs_method_uri_body_and_ms_timestamp() {
    let secret = "hubspot-client-secret";
    let body = r#"[{"eventId":1}]"#;
    let ms = 1_700_000_000_123i64;
    let uri = "https://hooks.example.com/hooks/crm";
    let sig = hmac_b64(secret.as_bytes(), format!("POST{uri}{body}{ms}").as_bytes());
    let v = verifier(Preset::HubspotV3, &[secret]);
    let h = headers(&[
        ("x-hubspot-signature-v3", &sig),
        ("x-hubspot-request-timestamp", &ms.to_string()),
    ]);
    assert_eq!(
        v.verify(request(&h, body), 1_700_000_000)
            .unwrap()
            .timestamp,
        Some(1_700_000_000)
    );
    assert!(matches!(
        v.verify(request(&h, body), 1_700_000_000 + 400),
        Err(SignatureError::OutsideWindow(_))
    ));
}

#[test]
fn hubspot_v3_decodes_listed_escapes_in_the_uri() {
    let secret = "s";
    let body = "[]";
    let ms = 5_000i64;
    let plain = "https://h.example.com/hooks/crm?x=a:b";
    let sig = hmac_b64(
        secret.as_bytes(),
        format!("POST{plain}{body}{ms}").as_bytes(),
    );
    let v = verifier(Preset::HubspotV3, &[secret]);
    let h = headers(&[
        ("x-hubspot-signature-v3", &sig),
        ("x-hubspot-request-timestamp", &ms.to_string()),
    ]);
    let escaped = SignedRequest {
        uri: "https://h.example.com/hooks/crm?x=a%3Ab",
        ..request(&h, body)
    };
    assert!(v.verify(escaped, 5).is_ok());
}

#[test]
fn shopify_base64_over_body() {
    let secret = "shpss_secret";
    let body = r#"{"id":820982911946154508}"#;
    let v = verifier(Preset::Shopify, &[secret]);
    let h = headers(&[
        (
            "x-shopify-hmac-sha256",
            &hmac_b64(secret.as_bytes(), body.as_bytes()),
        ),
        (
            "x-shopify-webhook-id",
            "b54557e4-bdd9-4b37-8a5f-bf7d70bcd043",
        ),
    ]);
    assert!(v.verify(request(&h, body), 0).is_ok());
}

#[test]
fn generic_hmac_follows_its_parameters() {
    let params = crate::ingest::settings::HmacParams {
        header: "X-Signature".into(),
        signed: "{timestamp}.{body}".into(),
        encoding: Encoding::Hex,
        prefix: "sha256=".into(),
        separator: None,
        key: KeyDecoding::Raw,
        timestamp_header: Some("X-Timestamp".into()),
        timestamp_unit: TimestampUnit::Seconds,
        id_header: Some("X-Event-Id".into()),
    };
    let scheme = preset::scheme(Preset::Hmac, Some(&params), 60)
        .unwrap()
        .unwrap();
    let v = Verifier::new(scheme, &["k".to_string()]).unwrap();
    let body = r#"{"order_id":"SO-1"}"#;
    let sig = hmac_hex(b"k", format!("100.{body}").as_bytes());
    let h = headers(&[
        ("x-signature", &format!("sha256={sig}")),
        ("x-timestamp", "100"),
        ("x-event-id", "e-1"),
    ]);
    assert_eq!(
        v.verify(request(&h, body), 130).unwrap().id.as_deref(),
        Some("e-1")
    );
    assert!(matches!(
        v.verify(request(&h, body), 161),
        Err(SignatureError::OutsideWindow(61))
    ));
    let no_prefix = headers(&[("x-signature", &sig), ("x-timestamp", "100")]);
    assert_eq!(
        v.verify(request(&no_prefix, body), 100),
        Err(SignatureError::NoMatch)
    );
}

#[test]
fn debug_output_never_shows_keys() {
    let v = verifier(Preset::Github, &["super-secret-value"]);
    assert!(!format!("{v:?}").contains("super-secret-value"));
}
