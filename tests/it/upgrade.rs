//! Data directories written by earlier releases open with this build. Release 1 (jobs and their
//! states in sled): its open jobs and dead letters move into the queue log once, keep their
//! states and deadlines (its parked order, parked more than a day ago, gives up), and are
//! delivered or can be acted on; nothing acknowledged is lost and ids are not reused.
//! Release 2 (the queue log's records as JSON), cut by a SIGKILL: its records replay, a
//! cross-reference that was only in the log is known, and its jobs go on (its fixture was made
//! with a park timeout of a century, so its parked order is still parked).

use std::process::Command;

use serde_json::json;

use crate::delivery::{account, crm};
use crate::fake_erp::{self, Fake};
use crate::support::*;

fn unpack(into: &std::path::Path, release: u32) {
    let fixture = format!(
        "{}/tests/fixtures/release{release}/release{release}-store.tar.gz",
        env!("CARGO_MANIFEST_DIR")
    );
    let status = Command::new("tar")
        .args(["xzf", &fixture, "-C"])
        .arg(into)
        .status()
        .expect("run tar");
    assert!(status.success());
}

async fn start(data: &std::path::Path, connectors: &std::path::Path) -> TestApp {
    TestApp::start_with(
        CONFIG,
        &[
            ("HANDOFF_DATA_DIR", data.to_str().unwrap()),
            ("HANDOFF_CONNECTORS_DIR", connectors.to_str().unwrap()),
        ],
    )
    .await
}

/// The fixtures' dead letter (no AccountId) fixed: the resubmit body.
fn fixed_opportunity() -> serde_json::Value {
    json!({"payload": {"type": "opportunity.won", "object": "Opportunity", "data": {
        "Id": "006UPG3", "AccountId": "001UPG1", "Name": "Restock", "StageName": "Closed Won",
        "CloseDate": "2026-11-20", "Amount": "58.47", "CurrencyIsoCode": "EUR",
        "LastModifiedDate": "2026-11-20T11:00:00Z",
        "OpportunityLineItems": [{"ProductCode": "SKU-1", "Name": "Widget", "Quantity": 3, "UnitPrice": "19.49"}]
    }}})
}

/// Account 001UPG2 arrives (its parked order 006UPG2 runs, or is retried as job `timed_out`
/// if it gave up waiting) and dead letter `dead` is resubmitted fixed (006UPG3): both orders
/// reach the ERP.
async fn customer_arrives_and_dead_letter_is_fixed(
    app: &TestApp,
    fake: &Fake,
    event: &str,
    dead: u64,
    timed_out: Option<u64>,
) {
    crm(
        app,
        event,
        &account("001UPG2", "2026-11-20T10:00:00Z", "Late"),
    )
    .await;
    if let Some(id) = timed_out {
        eventually(30, "the customer 001UPG2 in the ERP", async || {
            fake.books().customers.contains_key("001UPG2").then_some(())
        })
        .await;
        let (status, reply) = api_post(app, &format!("/api/v1/jobs/{id}/retry"), json!({})).await;
        assert_eq!(status, 200, "{reply}");
    }
    let path = format!("/api/v1/jobs/{dead}/resubmit");
    let (status, reply) = api_post(app, &path, fixed_opportunity()).await;
    assert_eq!(status, 200, "{reply}");
    eventually(
        30,
        "the parked and the resubmitted order in the ERP",
        async || {
            let books = fake.books();
            (books.orders.contains_key("006UPG2") && books.orders.contains_key("006UPG3"))
                .then_some(())
        },
    )
    .await;
}

fn state_of(jobs: &[serde_json::Value], id: u64) -> (String, String) {
    let job = jobs
        .iter()
        .find(|j| j["id"] == id)
        .expect("the job is listed");
    (
        job["state"].as_str().unwrap().to_owned(),
        job["reason"]["code"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_1_store_is_upgraded_and_its_jobs_go_on() {
    let (fake, addr) = Fake::start().await;
    let dir = tempfile::tempdir().unwrap();
    unpack(dir.path(), 1);
    let data = dir.path().join("data");
    let connectors = dir.path().join("connectors");
    std::fs::create_dir(&connectors).unwrap();
    fake_erp::connectors(&connectors, addr, 5);
    let app = start(&data, &connectors).await;

    let listed = jobs(&app, "").await;
    assert_eq!(
        listed.len(),
        4,
        "every open job and dead letter moved: {listed:?}"
    );
    assert_eq!(state_of(&listed, 4), ("dead".into(), "fix_data".into()));
    // The parked order's 24 h deadline was set when release 1 parked it, long before this run:
    // the upgrade keeps it, so the order gives up on its customer instead of waiting anew.
    let code = eventually(10, "the aged parked order given up", async || {
        let (state, code) = state_of(&jobs(&app, "").await, 3);
        (state == "dead").then_some(code)
    })
    .await;
    assert_eq!(code, "dependency_timeout");
    assert!(data.join("queue").is_dir());
    assert!(
        !data.join("schedule.snap").exists(),
        "release 1's snapshot is gone"
    );

    // The retrying customer and the order behind it are delivered (the ERP answers now).
    eventually(
        30,
        "the release-1 customer and order in the ERP",
        async || {
            let books = fake.books();
            (books.customers.contains_key("001UPG1") && books.orders.contains_key("006UPG1"))
                .then_some(())
        },
    )
    .await;

    // Its customer arrives and it is retried; the other dead letter can be resubmitted.
    customer_arrives_and_dead_letter_is_fixed(&app, &fake, "upg-acc-2", 4, Some(3)).await;
    let newest = jobs(&app, "").await;
    let ids: Vec<u64> = newest.iter().map(|j| j["id"].as_u64().unwrap()).collect();
    assert!(
        ids.iter().any(|id| *id > 4),
        "new jobs get new ids: {ids:?}"
    );
    assert_eq!(fake.books().duplicate_orders, 0);
    drop(app);

    // Opened again, it is an ordinary store: nothing is moved twice.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let app = start(&data, &connectors).await;
    let again = jobs(&app, "state=dead").await;
    assert!(again.is_empty(), "{again:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_2_store_cut_by_a_crash_opens_and_its_jobs_go_on() {
    let (fake, addr) = Fake::start().await;
    let dir = tempfile::tempdir().unwrap();
    unpack(dir.path(), 2);
    let data = dir.path().join("data");
    let connectors = dir.path().join("connectors");
    std::fs::create_dir(&connectors).unwrap();
    // The retrying order has failed since the fixture was made: a long budget keeps it going.
    fake_erp::connectors_with(
        &connectors,
        addr,
        "retry: { schedule_secs: [1], give_up_after_secs: 3000000000 }\n",
    );
    let app = start(&data, &connectors).await;

    let listed = jobs(&app, "").await;
    assert_eq!(state_of(&listed, 4), ("parked".into(), "dependency".into()));
    assert_eq!(state_of(&listed, 5), ("dead".into(), "fix_data".into()));
    let detail = api(&app, "/api/v1/jobs/1").await;
    assert_eq!(detail["job"]["state"], "done", "{detail}");
    assert_eq!(detail["job"]["external_id"], "C-001UPG1", "{detail}");
    assert_eq!(
        detail["attempts"].as_array().map(Vec::len),
        Some(1),
        "{detail}"
    );

    // The retrying order needs customer 001UPG1's cross-reference, which release 2 wrote only
    // in its queue log: it is delivered with it, without the customer being sent again.
    eventually(30, "the retrying release-2 order in the ERP", async || {
        fake.books().orders.get("006UPG4").cloned()
    })
    .await;
    let (_, order) = fake.books().orders["006UPG4"].clone();
    assert_eq!(order["customer"], "C-001UPG1", "{order}");
    assert!(!fake.books().customers.contains_key("001UPG1"));

    // The parked order runs once its customer arrives; the dead letter can be resubmitted.
    customer_arrives_and_dead_letter_is_fixed(&app, &fake, "upg2-acc-2", 5, None).await;
    assert_eq!(fake.books().duplicate_orders, 0);
    drop(app);

    // Marked as this build's layout: opened again, everything is where it was.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let app = start(&data, &connectors).await;
    let again = jobs(&app, "").await;
    assert_eq!(state_of(&again, 3).0, "done");
    assert_eq!(state_of(&again, 4).0, "done");
}
