//! The operator's day from a shell and after a mapping fix: `handoff jobs …` and
//! `handoff connectors …` (the real binary against the running service), and a dead letter
//! that delivers after the mapping is corrected and the job resubmitted as it was.

use serde_json::{Value, json};

use crate::delivery::{account, crm, won};
use crate::fake_erp::{self, Fake};
use crate::support::*;

/// Runs `handoff <args> --url <app>`; returns (success, stdout + stderr).
async fn handoff(app: &TestApp, args: &[&str]) -> (bool, String) {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_handoff"))
        .args(args)
        .args(["--url", &app.url("")])
        .output()
        .await
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

/// The app on the fake ERP with its own copy of the mappings (to edit), and a dead letter:
/// an order whose unit price is written "12,50 EUR".
async fn app_with_a_dead_order() -> (TestApp, std::sync::Arc<Fake>, Vec<tempfile::TempDir>, u64) {
    let (fake, addr) = Fake::start().await;
    let connectors = tempfile::tempdir().unwrap();
    fake_erp::connectors(connectors.path(), addr, 5);
    let mappings = tempfile::tempdir().unwrap();
    copy_dir(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("mappings"),
        mappings.path(),
    );
    let app = TestApp::start_with(
        CONFIG,
        &[
            (
                "HANDOFF_CONNECTORS_DIR",
                connectors.path().to_str().unwrap(),
            ),
            ("HANDOFF_MAPPINGS_DIR", mappings.path().to_str().unwrap()),
        ],
    )
    .await;
    crm(
        &app,
        "acc-o",
        &account("001X", "2026-11-20T10:00:00Z", "Ops Ltd"),
    )
    .await;
    let mut bad: Value =
        serde_json::from_str(&won("006X", "001X", "2026-11-20T11:00:00Z")).unwrap();
    bad["data"]["OpportunityLineItems"][0]["UnitPrice"] = json!("12,50 EUR");
    crm(&app, "opp-o", &bad.to_string()).await;
    let dead = eventually(10, "the dead letter", async || {
        jobs(&app, "state=dead").await.into_iter().next()
    })
    .await;
    let id = dead["id"].as_u64().unwrap();
    (app, fake, vec![connectors, mappings], id)
}

#[tokio::test(flavor = "multi_thread")]
async fn operators_list_inspect_pause_and_resubmit_from_the_command_line() {
    let (app, fake, _dirs, id) = app_with_a_dead_order().await;
    let id_text = id.to_string();

    let (ok, out) = handoff(&app, &["jobs", "list", "--state", "dead"]).await;
    assert!(ok, "{out}");
    assert!(
        out.contains(&id_text) && out.contains("fix_data") && out.contains("12,50 EUR"),
        "{out}"
    );

    let (ok, out) = handoff(&app, &["jobs", "show", &id_text, "--json"]).await;
    assert!(ok, "{out}");
    let shown: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(shown["job"]["state"], "dead");
    assert_eq!(shown["attempts"].as_array().unwrap().len(), 1);
    assert_eq!(shown["event"]["data"]["data"]["Id"], "006X");

    let (ok, out) = handoff(&app, &["jobs", "dead"]).await;
    assert!(ok && out.contains("fix_data"), "{out}");

    let (ok, out) = handoff(&app, &["connectors", "pause", "erp"]).await;
    assert!(ok && out.contains("paused by an operator"), "{out}");
    let mut fixed = shown["event"]["data"].clone();
    fixed["data"]["OpportunityLineItems"][0]["UnitPrice"] = json!("12.50");
    let payload = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(payload.path(), fixed.to_string()).unwrap();
    let (ok, out) = handoff(
        &app,
        &[
            "jobs",
            "resubmit",
            &id_text,
            "--payload",
            payload.path().to_str().unwrap(),
        ],
    )
    .await;
    assert!(ok && out.contains("ready"), "{out}");
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert!(
        fake.books().orders.is_empty(),
        "nothing goes out while the ERP is paused"
    );

    let (ok, out) = handoff(&app, &["connectors", "resume", "erp"]).await;
    assert!(ok, "{out}");
    let order = eventually(10, "the order", async || {
        fake.books().orders.get("006X").cloned()
    })
    .await;
    assert_eq!(order.1["lines"][0]["unit_price"].to_string(), "12.50");
    let (ok, out) = handoff(&app, &["jobs", "list", "--record", "006X"]).await;
    assert!(ok && out.contains("done"), "{out}");

    let (ok, out) = handoff(&app, &["jobs", "retry", &id_text]).await;
    assert!(
        !ok && out.contains("wrong_state"),
        "a done job is not retried: {out}"
    );
    let (ok, out) = handoff(&app, &["jobs", "skip", "999999"]).await;
    assert!(!ok && out.contains("not_found"), "{out}");
    let (ok, out) = handoff(&app, &["connectors", "test", "erp"]).await;
    assert!(ok && out.contains("erp: ok"), "{out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn after_the_mapping_is_fixed_a_resubmit_delivers_the_event_as_it_was() {
    let (app, fake, dirs, id) = app_with_a_dead_order().await;
    // The integrator teaches the mapping the CRM's "12,50 EUR" price format.
    let file = dirs[1].path().join("opportunity_to_sales_order.yaml");
    let text = std::fs::read_to_string(&file).unwrap();
    let price = "decimal(replace(replace(item.UnitPrice, ' EUR', ''), ',', '.'))";
    let edited = text
        .replace(
            r#"unit_price: "round(decimal(item.UnitPrice), 2)""#,
            &format!(r#"unit_price: "round({price}, 2)""#),
        )
        .replace(
            "decimal(item.Quantity) * decimal(item.UnitPrice)",
            &format!("decimal(item.Quantity) * {price}"),
        );
    assert_ne!(edited, text, "the edit applies");
    let before = api(&app, "/api/v1/mappings").await;
    std::fs::write(&file, edited).unwrap();
    eventually(10, "the reload", async || {
        let now = api(&app, "/api/v1/mappings").await;
        (now["mappings"] != before["mappings"]).then_some(())
    })
    .await;

    let (status, reply) = api_post(&app, &format!("/api/v1/jobs/{id}/resubmit"), json!({})).await;
    assert_eq!(status, 200, "{reply}");
    let order = eventually(10, "the order", async || {
        fake.books().orders.get("006X").cloned()
    })
    .await;
    assert_eq!(order.1["lines"][0]["unit_price"].to_string(), "12.50");
    assert_eq!(order.1["lines"][0]["line_total"].to_string(), "37.50");
    // The ERP has the order before the job's settle is stored.
    let detail = eventually(10, "the job done", async || {
        let detail = api(&app, &format!("/api/v1/jobs/{id}")).await;
        (detail["job"]["state"] == "done").then_some(detail)
    })
    .await;
    assert!(
        detail["job"]["payload"].is_null(),
        "the event itself was not edited"
    );
}

/// The dashboard's counts come back after a restart: delivered stays delivered, and the window
/// they count over is named.
#[tokio::test(flavor = "multi_thread")]
async fn the_overview_counts_survive_a_restart() {
    let (fake, addr) = crate::fake_erp::Fake::start().await;
    let connectors = tempfile::tempdir().unwrap();
    crate::fake_erp::connectors(connectors.path(), addr, 5);
    let data = tempfile::tempdir().unwrap();
    let env = [
        (
            "HANDOFF_CONNECTORS_DIR",
            connectors.path().to_str().unwrap(),
        ),
        ("HANDOFF_DATA_DIR", data.path().to_str().unwrap()),
    ];
    let app = TestApp::start_with(CONFIG, &env).await;
    crate::delivery::crm(
        &app,
        "acc-restart",
        &crate::delivery::account("001RS", "2026-11-20T09:00:00Z", "Restart AG"),
    )
    .await;
    eventually(10, "the customer", async || {
        fake.books().customers.get("001RS").cloned()
    })
    .await;
    let before = api(&app, "/api/v1/overview").await;
    assert_eq!(before["outcomes_since_start"]["erp"]["done"], 1, "{before}");
    app.stop().await;
    let app = TestApp::start_with(CONFIG, &env).await;
    let after = api(&app, "/api/v1/overview").await;
    assert_eq!(after["outcomes_since_start"]["erp"]["done"], 1, "{after}");
    assert_eq!(after["counted_since_ms"], before["counted_since_ms"]);
    let page = app
        .client
        .get(app.url("/ui"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains(r#"<b id="delivered">1</b>"#), "{page}");
    assert!(page.contains("since "), "the window is named");
}
