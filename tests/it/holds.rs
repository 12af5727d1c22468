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
