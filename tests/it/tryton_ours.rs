//! Status goes back to the CRM only for Tryton sales handoff created or an operator linked: a
//! sale confirmed before handoff was connected is not back-filled, a sale typed in by hand is
//! counted as "not ours" and never written, and once linked its status flows.

use std::sync::Arc;
use std::time::Duration;

use handoff::adapters::connector::Connector;
use serde_json::{Value, json};

use crate::fake_erp::{self, Fake};
use crate::support::*;
use crate::tryton::{DB, tryton_url};

/// A Tryton connector of its own (no poller): what a person typing into Tryton does.
pub fn by_hand(url: &str, dir: &std::path::Path) -> Connector {
    std::fs::write(
        dir.join("erp.yaml"),
        format!(
            "kind: tryton\nrole: erp\nbase_url: {url}\n\
             auth: {{ basic: {{ user_env: TRYTON_USER, password_env: TRYTON_PASSWORD }} }}\n\
             tryton: {{ database: {DB}, confirm: true, poll_every_secs: 0 }}\n"
        ),
    )
    .unwrap();
    let secrets = secrets();
    let lookup = move |name: &str| secrets.get(name).cloned();
    handoff::adapters::connector::load_dir(dir, &lookup, None)
        .unwrap()
        .remove(0)
}

/// A confirmed sale with `reference`; returns its id.
async fn confirmed_sale(hand: &Connector, party: &str, reference: &str) -> String {
    let order = json!({"reference": reference, "customer": party, "currency": "USD",
                       "lines": [{"product_code": "SKU-1", "quantity": 1, "unit_price": "19.49"}]});
    crate::tryton::deliver(
        hand.adapter.as_ref(),
        "create_sales_order",
        &order,
        reference,
    )
    .await
}

/// The service with a Tryton ERP (polled every second) and the recording CRM.
pub async fn start_on_tryton(url: &str) -> (Arc<Fake>, TestApp, tempfile::TempDir) {
    start_on_tryton_with(url, "").await
}

/// The same, with more `tryton:` settings (`, products_every_secs: 1`).
pub async fn start_on_tryton_with(
    url: &str,
    more: &str,
) -> (Arc<Fake>, TestApp, tempfile::TempDir) {
    let (fake, fake_addr) = Fake::start().await;
    let connectors = tempfile::tempdir().unwrap();
    fake_erp::connectors(connectors.path(), fake_addr, 5);
    std::fs::write(
        connectors.path().join("erp.yaml"),
        format!(
            "kind: tryton\nrole: erp\nbase_url: {url}\n\
             auth: {{ basic: {{ user_env: TRYTON_USER, password_env: TRYTON_PASSWORD }} }}\n\
             tryton: {{ database: {DB}, confirm: true, poll_every_secs: 1{more} }}\n"
        ),
    )
    .unwrap();
    let app = TestApp::with_connectors(connectors.path()).await;
    (fake, app, connectors)
}

async fn poller_status(app: &TestApp) -> Value {
    let connectors = api(app, "/api/v1/connectors").await;
    connectors["connectors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "erp")
        .unwrap()["poller"]
        .clone()
}

#[tokio::test(flavor = "multi_thread")]
async fn only_sales_handoff_made_or_an_operator_linked_report_back() {
    let url = tryton_url();
    let hand_dir = tempfile::tempdir().unwrap();
    let hand = by_hand(&url, hand_dir.path());
    let run = fastrand::u32(..);
    let code = format!("001N{run:08X}");
    let customer = json!({"code": code, "name": "Not Ours GmbH",
        "invoice_address": {"street": "Hauptstr. 5", "postal_code": "10115", "city": "Berlin"}});
    let party = crate::tryton::upsert_party(hand.adapter.as_ref(), &customer).await;
    // Confirmed before handoff was connected.
    let before = format!("006NB{run:08X}");
    confirmed_sale(&hand, &party, &before).await;

    let (fake, app, _connectors) = start_on_tryton(&url).await;
    eventually(30, "a first poll", async || {
        poller_status(&app).await["last_ok_ms"].as_i64()
    })
    .await;
    // Typed in by hand while handoff is connected.
    let typed = format!("006NT{run:08X}");
    let typed_id = confirmed_sale(&hand, &party, &typed).await;
    let status = eventually(30, "the typed sale counted as not ours", async || {
        let status = poller_status(&app).await;
        let newest = status["not_ours_newest"].as_array()?.clone();
        newest
            .iter()
            .any(|id| id == typed_id.as_str())
            .then_some(status)
    })
    .await;
    assert!(status["not_ours"].as_u64().unwrap() >= 1, "{status}");
    tokio::time::sleep(Duration::from_secs(3)).await;
    {
        let books = fake.books();
        assert!(
            !books.opportunities.contains_key(&before),
            "a sale from before handoff was back-filled"
        );
        assert!(
            !books.opportunities.contains_key(&typed),
            "a sale typed in by hand was written to the CRM"
        );
    }

    // An operator links it: its status flows back.
    let (status, reply) = api_post(
        &app,
        "/api/v1/xrefs",
        json!({"system": "erp", "kind": "sales_order", "crm_id": typed, "external_id": typed_id}),
    )
    .await;
    assert_eq!(status, 200, "{reply}");
    eventually(30, "Confirmed at the CRM for the linked sale", async || {
        let books = fake.books();
        let updates = books.opportunities.get(&typed)?;
        (updates[0]["ERP_Status__c"] == "Confirmed").then_some(())
    })
    .await;
    assert!(!fake.books().opportunities.contains_key(&before));
}
