//! Holds before handover: a won opportunity whose payment is not verified is held with a visible
//! reason, not dead-lettered; a newer event for the record rechecks it, and the order goes out
//! once the payment is verified.

use serde_json::{Value, json};

use crate::delivery::{account, crm, start, won};
use crate::fake_erp::Fake;
use crate::support::{api, eventually};

#[tokio::test]
async fn an_unpaid_order_is_held_then_released_when_payment_is_verified() {
    let (fake, addr) = Fake::start().await;
    let (app, _connectors) = start(addr, 5).await;
    crm(
        &app,
        "acc-h",
        &account("001H", "2026-11-20T09:00:00Z", "Hold KG"),
    )
    .await;
    eventually(10, "the customer", async || {
        fake.books().customers.get("001H").cloned()
    })
    .await;

    let mut unpaid: Value =
        serde_json::from_str(&won("006H", "001H", "2026-11-20T10:00:00Z")).unwrap();
    unpaid["data"]["Payment_Verified__c"] = json!(false);
    crm(&app, "opp-h1", &unpaid.to_string()).await;
    let held = eventually(10, "the hold", async || {
        api(&app, "/api/v1/jobs?state=held").await["jobs"]
            .as_array()
            .and_then(|j| j.first().cloned())
    })
    .await;
    assert_eq!(held["reason"]["code"], "hold");
    assert_eq!(held["reason"]["message"], "payment pending");
    assert!(
        fake.books().orders.is_empty(),
        "the ERP does not get a held order"
    );

    let mut paid = unpaid.clone();
    paid["data"]["Payment_Verified__c"] = json!(true);
    paid["data"]["LastModifiedDate"] = json!("2026-11-20T10:05:00Z");
    crm(&app, "opp-h2", &paid.to_string()).await;
    eventually(10, "the order", async || {
        fake.books().orders.get("006H").cloned()
    })
    .await;
    // The first event, rechecked after the newer one went out, is stale and never sent.
    let first = eventually(10, "the held job to settle", async || {
        let job = &api(&app, &format!("/api/v1/jobs/{}", held["id"])).await["job"];
        (job["state"] != "held").then(|| job.clone())
    })
    .await;
    assert_ne!(first["state"], "dead", "{first}");
    assert_eq!(fake.books().duplicate_orders, 0);
}

/// HubSpot sends booleans as text: `"false"` holds exactly as `false` does, and a value that is
/// neither holds too (the rule cannot be checked), instead of letting the order through.
#[tokio::test]
async fn a_payment_flag_sent_as_text_never_lets_an_unpaid_order_through() {
    let (fake, addr) = Fake::start().await;
    let connectors = tempfile::tempdir().unwrap();
    crate::fake_erp::connectors(connectors.path(), addr, 5);
    let app = crate::support::TestApp::start_with(
        crate::support::CONFIG,
        &[
            (
                "HANDOFF_CONNECTORS_DIR",
                connectors.path().to_str().unwrap(),
            ),
            ("HANDOFF_SYNC__HOLD_RECHECK_SECS", "1"),
        ],
    )
    .await;
    crm(
        &app,
        "acc-t",
        &account("001T", "2026-11-20T09:00:00Z", "Text AG"),
    )
    .await;
    for (n, flag) in [json!("false"), json!("FALSE"), json!("perhaps")]
        .iter()
        .enumerate()
    {
        let mut won: Value =
            serde_json::from_str(&won(&format!("006T{n}"), "001T", "2026-11-20T10:00:00Z"))
                .unwrap();
        won["data"]["Payment_Verified__c"] = flag.clone();
        crm(&app, &format!("opp-t{n}"), &won.to_string()).await;
    }
    let held = eventually(10, "three holds", async || {
        let held = api(&app, "/api/v1/jobs?state=held").await["jobs"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        (held.len() == 3).then_some(held)
    })
    .await;
    let messages: Vec<&str> = held
        .iter()
        .map(|job| job["reason"]["message"].as_str().unwrap())
        .collect();
    assert_eq!(
        messages.iter().filter(|m| **m == "payment pending").count(),
        2,
        "{messages:?}"
    );
    assert!(
        messages
            .iter()
            .any(|m| m.contains("cannot be checked") && m.contains("type_mismatch")),
        "{messages:?}"
    );
    // Rechecked every second: the same hold is no new attempt and no failure.
    tokio::time::sleep(std::time::Duration::from_millis(3500)).await;
    for job in &held {
        let shown = api(&app, &format!("/api/v1/jobs/{}", job["id"])).await;
        assert_eq!(shown["job"]["state"], "held");
        let attempts = shown["attempts"].as_array().unwrap();
        assert_eq!(attempts.len(), 1, "{attempts:?}");
        assert!(
            shown["job"]["updated_ms"].as_i64() > job["updated_ms"].as_i64(),
            "it was rechecked: {shown}"
        );
        assert!(shown["job"]["due_ms"].is_i64(), "the next recheck is shown");
    }
    let overview = api(&app, "/api/v1/overview").await;
    assert!(
        fake.books().orders.is_empty(),
        "an unpaid order reached the ERP"
    );
    let failed: u64 = overview["last_hour"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["failed"].as_u64().unwrap())
        .sum();
    assert_eq!(failed, 0, "holds counted as failed deliveries: {overview}");
    assert_eq!(
        overview["outcomes_since_start"]["erp"]["held"], 3,
        "{overview}"
    );
}
