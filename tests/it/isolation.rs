//! Outages the engine must ride out: an ERP that refuses connections until it comes up (nothing
//! lost, order per record kept), and a broken CRM connector that must not stall the ERP's
//! deliveries (each connector has its own workers and circuit breaker).

use serde_json::json;
use std::net::TcpListener;

use crate::delivery::{account, crm, erp_status, start};
use crate::fake_erp::{self, Fake};
use crate::support::*;

/// A loopback address nothing listens on (bound, then released).
fn refused_addr() -> std::net::SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

#[tokio::test]
async fn an_erp_that_refuses_connections_gets_everything_once_it_is_up() {
    let addr = refused_addr();
    let (app, _connectors) = start(addr, 5).await;
    for n in 0..3 {
        for a in 0..3 {
            let body = account(
                &format!("001R{a}"),
                &format!("2026-11-20T10:00:0{n}Z"),
                &format!("v{n}"),
            );
            crm(&app, &format!("ref-{a}-{n}"), &body).await;
        }
    }
    let waiting = eventually(10, "retries", async || {
        jobs(&app, "state=retrying").await.into_iter().next()
    })
    .await;
    assert_eq!(waiting["reason"]["code"], "transient", "{waiting}");
    let detail = api(&app, &format!("/api/v1/jobs/{}", waiting["id"])).await;
    let said = detail["attempts"][0]["response"]
        .as_str()
        .unwrap()
        .to_lowercase();
    assert!(said.contains("connect"), "the attempt says why: {said}");

    // The ERP comes up on that very address.
    let fake = Fake::new();
    fake.serve(TcpListener::bind(addr).unwrap());
    eventually(30, "every account's last version", async || {
        fake.books().customers_named("001R", 3, "v2").then_some(())
    })
    .await;
    let books = fake.books();
    for a in 0..3 {
        let path = format!("/customers/001R{a}");
        let names = books.names_sent(&path, 0);
        assert_eq!(
            names,
            ["v0", "v1", "v2"],
            "each version once, in order, for {path}"
        );
    }
}

#[tokio::test]
async fn a_broken_crm_connector_does_not_stall_erp_deliveries() {
    let (fake, erp_addr) = Fake::start().await;
    // The CRM connector points at nothing: its deliveries fail and its circuit opens.
    let connectors = tempfile::tempdir().unwrap();
    fake_erp::connectors(connectors.path(), erp_addr, 5);
    let crm_file = connectors.path().join("crm.yaml");
    let text = std::fs::read_to_string(&crm_file).unwrap();
    std::fs::write(
        &crm_file,
        text.replace(&erp_addr.to_string(), &refused_addr().to_string()),
    )
    .unwrap();
    let app = TestApp::with_connectors(connectors.path()).await;
    for n in 0..8 {
        let body = json!({"order_id": format!("SO{n}"), "reference": format!("006B{n}"),
            "number": format!("SO{n}"), "status": "confirmed", "sequence": 1,
            "changed_at": "2026-11-21T08:00:00Z"});
        erp_status(&app, &format!("st-b{n}"), body).await;
    }
    eventually(15, "the CRM circuit to open", async || {
        let connectors = api(&app, "/api/v1/connectors").await;
        let crm = connectors["connectors"]
            .as_array()?
            .iter()
            .find(|c| c["name"] == "crm")?
            .clone();
        (crm["circuit"] != "closed").then_some(())
    })
    .await;

    for a in 0..5 {
        let body = account(&format!("001B{a}"), "2026-11-20T10:00:00Z", "Still flowing");
        crm(&app, &format!("acc-b{a}"), &body).await;
    }
    eventually(5, "the ERP deliveries", async || {
        (fake.books().customers.len() == 5).then_some(())
    })
    .await;
    let overview = api(&app, "/api/v1/overview").await;
    let waiting: u64 = overview["waiting"]["crm"]
        .as_object()
        .unwrap()
        .values()
        .filter_map(serde_json::Value::as_u64)
        .sum();
    assert_eq!(waiting, 8, "the CRM's jobs wait, none lost: {overview}");
    assert!(fake.books().opportunities.is_empty());
}
