//! Signatures made by the senders' own reference libraries (installed by tests/run.sh):
//! `standardwebhooks` and `svix` from PyPI, Stripe's `generateTestHeaderString` from npm and
//! `hubspot-api-client`'s signature helper from PyPI.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use serde_json::{Value, json};

use crate::support::*;

fn reference_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/reference")
}

/// Runs a signing script with `request` on stdin; returns the headers it prints.
fn sign(
    program: PathBuf,
    script: &str,
    request: Value,
    node_path: Option<PathBuf>,
) -> Vec<(String, String)> {
    assert!(
        program.exists() || program.to_str() == Some("node"),
        "{} is missing: run tests/run.sh, which installs the reference signing libraries",
        program.display()
    );
    let mut command = Command::new(&program);
    command
        .arg(
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("tests/reference")
                .join(script),
        )
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(path) = node_path {
        assert!(
            path.exists(),
            "{} is missing: run tests/run.sh",
            path.display()
        );
        command.env("NODE_PATH", path);
    }
    let mut child = command.spawn().expect("start the reference signer");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(request.to_string().as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let headers: serde_json::Map<String, Value> = serde_json::from_slice(&output.stdout).unwrap();
    let mut list = json_headers(&[]);
    list.extend(
        headers
            .into_iter()
            .map(|(k, v)| (k, v.as_str().unwrap().to_owned())),
    );
    list
}

fn python_sign(request: Value) -> Vec<(String, String)> {
    sign(
        reference_dir().join("venv/bin/python"),
        "sign.py",
        request,
        None,
    )
}

fn stripe_sign(request: Value) -> Vec<(String, String)> {
    sign(
        "node".into(),
        "stripe_sign.js",
        request,
        Some(reference_dir().join("node_modules")),
    )
}

#[tokio::test]
async fn standardwebhooks_library_signature_is_accepted() {
    let app = TestApp::start().await;
    let body = opportunity("006R1", "Closed Won");
    let headers = python_sign(json!({
        "scheme": "standard_webhooks", "secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        "body": body, "id": "msg_ref_sw", "timestamp": now()
    }));
    let (status, reply) = app.post("/hooks/crm", &headers, &body).await;
    assert_eq!(status, 202, "{reply}");
    // And the same library's signature with a wrong secret is refused.
    let forged = python_sign(json!({
        "scheme": "standard_webhooks", "secret": "whsec_dGhpcyBpcyBub3QgdGhlIHNlY3JldA==",
        "body": body, "id": "msg_ref_sw2", "timestamp": now()
    }));
    assert_eq!(app.post("/hooks/crm", &forged, &body).await.0, 401);
}

#[tokio::test]
async fn svix_library_signature_with_svix_headers_is_accepted() {
    let app = TestApp::start().await;
    let body = opportunity("006R2", "Closed Won");
    let headers = python_sign(json!({
        "scheme": "svix", "secret": "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD",
        "body": body, "id": "msg_ref_svix", "timestamp": now()
    }));
    assert!(headers.iter().any(|(k, _)| k == "svix-signature"));
    let (status, reply) = app.post("/hooks/crm", &headers, &body).await;
    assert_eq!(status, 202, "{reply}");
    assert_eq!(app.envelopes()[0].id, "msg_ref_svix");
}

#[tokio::test]
async fn stripe_library_test_header_is_accepted_and_expires() {
    let app = TestApp::start().await;
    let body = r#"{"id":"evt_ref_1","type":"payment_intent.succeeded"}"#;
    let headers = stripe_sign(
        json!({"secret": "whsec_test_stripe_secret", "body": body, "timestamp": now()}),
    );
    let (status, reply) = app.post("/hooks/stripe", &headers, body).await;
    // Accepted and stored; 200 because no shipped mapping handles payments.
    assert_eq!(status, 200, "{reply}");
    assert_eq!(app.journal().len(), 1);
    let body = r#"{"id":"evt_ref_2","type":"payment_intent.succeeded"}"#;
    let stale = stripe_sign(
        json!({"secret": "whsec_test_stripe_secret", "body": body, "timestamp": now() - 600}),
    );
    assert_eq!(app.post("/hooks/stripe", &stale, body).await.0, 401);
}

#[tokio::test]
async fn hubspot_library_v3_signature_is_accepted() {
    let app = TestApp::start().await;
    let body = json!([{"eventId": 7, "subscriptionType": "deal.propertyChange", "objectId": 42,
        "propertyName": "dealstage", "propertyValue": "closedwon"}])
    .to_string();
    let headers = python_sign(json!({
        "scheme": "hubspot_v3", "secret": "hubspot-app-client-secret", "body": body,
        "method": "POST", "uri": "https://hooks.example.com/hooks/hubspot", "timestamp": now() * 1000
    }));
    let (status, reply) = app.post("/hooks/hubspot", &headers, &body).await;
    assert_eq!(status, 202, "{reply}");
    // Signed for another URI: refused.
    let elsewhere = python_sign(json!({
        "scheme": "hubspot_v3", "secret": "hubspot-app-client-secret", "body": body,
        "method": "POST", "uri": "https://evil.example.com/hooks/hubspot", "timestamp": now() * 1000
    }));
    assert_eq!(app.post("/hooks/hubspot", &elsewhere, &body).await.0, 401);
}
