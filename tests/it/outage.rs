//! Outages and rate limits against the recording ERP (fake_erp.rs): recovery takes seconds
//! after the target is back, a probe answered 429 never leaves a connector stuck, a rate limit
//! pauses the whole connector and never turns an order into a dead letter, and an operator can
//! bring retries forward.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::delivery::{account, crm};
use crate::fake_erp::{self, Fake, Mode};
use crate::support::*;

async fn start_with(policy: &str) -> (std::sync::Arc<Fake>, TestApp, tempfile::TempDir) {
    let (fake, addr) = Fake::start().await;
    let dir = tempfile::tempdir().unwrap();
    fake_erp::connectors_with(dir.path(), addr, policy);
    let app = TestApp::with_connectors(dir.path()).await;
    (fake, app, dir)
}

async fn send_accounts(app: &TestApp, prefix: &str, n: usize) {
    for a in 0..n {
        let body = account(&format!("{prefix}{a}"), "2026-11-20T10:00:00Z", "Acme");
        crm(app, &format!("{prefix}-{a}"), &body).await;
    }
}

async fn delivered(fake: &Fake, prefix: &str, n: usize) -> bool {
    fake.books().customers_named(prefix, n, "Acme")
}

async fn circuit(app: &TestApp) -> String {
    let connectors = api(app, "/api/v1/connectors").await;
    let erp = connectors["connectors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "erp")
        .cloned()
        .unwrap();
    erp["circuit"].as_str().unwrap().to_owned()
}

/// The defaults (circuit open 5 s, doubling per failed probe; retries 5 s, 5 min, …): after a
/// 30 s outage the waiting orders are delivered within seconds, not on their retry schedule.
#[tokio::test]
async fn a_30_s_outage_is_caught_up_within_seconds_of_recovery() {
    let (fake, app, _dir) = start_with("").await;
    fake.set_mode(Mode::Unavailable(None));
    let down = Instant::now();
    send_accounts(&app, "001OUT", 200).await;
    eventually(10, "the circuit to open", async || {
        (circuit(&app).await == "open").then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(30).saturating_sub(down.elapsed())).await;
    let during = fake.books().received.len();
    fake.set_mode(Mode::Normal);
    let up = Instant::now();
    eventually(20, "every account after recovery", async || {
        delivered(&fake, "001OUT", 200).await.then_some(())
    })
    .await;
    let caught_up = up.elapsed();
    println!(
        "30 s outage: {during} requests while down; all 200 delivered {caught_up:?} after recovery"
    );
    // One failure burst opened the circuit; then a probe every 5, 10, 20 s: few requests.
    assert!(
        during < 60,
        "{during} requests reached the ERP while it was down"
    );
    assert!(caught_up < Duration::from_secs(15), "{caught_up:?}");
    assert!(jobs(&app, "state=dead").await.is_empty());
    assert_eq!(circuit(&app).await, "closed");
}

/// A probe answered 429 waits its Retry-After and probes again; nothing waits for an operator.
#[tokio::test]
async fn a_probe_answered_429_does_not_leave_the_connector_stuck() {
    let policy = "breaker: { failures: 3, open_secs: 1, max_open_secs: 4 }\n\
                  retry: { schedule_secs: [3000] }\n";
    let (fake, app, _dir) = start_with(policy).await;
    fake.set_mode(Mode::Unavailable(None));
    send_accounts(&app, "001P", 20).await;
    eventually(10, "the circuit to open", async || {
        (circuit(&app).await == "open").then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    fake.set_mode(Mode::RateLimited(1));
    eventually(10, "a probe answered 429", async || {
        (circuit(&app).await == "rate_limited").then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    fake.set_mode(Mode::Normal);
    let up = Instant::now();
    eventually(15, "every account", async || {
        delivered(&fake, "001P", 20).await.then_some(())
    })
    .await;
    println!("429 probe: all delivered {:?} after recovery", up.elapsed());
    assert_eq!(circuit(&app).await, "closed");
}

/// 429s for far longer than the retry budget (two 1 s steps): the whole connector waits
/// Retry-After each time, few requests reach the ERP, and no order becomes a dead letter.
#[tokio::test]
async fn a_rate_limit_longer_than_the_retry_budget_loses_no_order() {
    let policy = "retry: { schedule_secs: [1, 1], max_retry_after_secs: 5 }\n\
                  concurrency: 8\n";
    let (fake, app, _dir) = start_with(policy).await;
    fake.set_mode(Mode::RateLimited(1));
    let limited = Instant::now();
    send_accounts(&app, "001RL", 30).await;
    tokio::time::sleep(Duration::from_secs(8).saturating_sub(limited.elapsed())).await;
    let during = fake.books().received.len();
    assert!(
        jobs(&app, "state=dead").await.is_empty(),
        "a rate limit killed orders"
    );
    fake.set_mode(Mode::Normal);
    eventually(15, "every account", async || {
        delivered(&fake, "001RL", 30).await.then_some(())
    })
    .await;
    println!("8 s of 429: {during} requests while limited");
    // Per second about one probe (plus the first burst), not every job at full concurrency.
    assert!(during <= 30, "{during} requests during 8 s of 429");
    assert!(jobs(&app, "state=dead").await.is_empty());
}

/// An operator brings a retrying job forward, then every retrying job of the connector.
#[tokio::test]
async fn an_operator_can_retry_now_one_job_or_a_whole_connector() {
    let policy = "retry: { schedule_secs: [3000] }\n";
    let (fake, app, _dir) = start_with(policy).await;
    fake.set_mode(Mode::Unavailable(None));
    send_accounts(&app, "001NOW", 3).await;
    let retrying = eventually(10, "three retrying jobs", async || {
        let found = jobs(&app, "state=retrying").await;
        (found.len() == 3).then_some(found)
    })
    .await;
    fake.set_mode(Mode::Normal);
    let first = retrying[0]["id"].as_u64().unwrap();
    let (status, reply) = api_post(&app, &format!("/api/v1/jobs/{first}/retry"), json!({})).await;
    assert_eq!(status, 200, "{reply}");
    eventually(10, "the job retried now", async || {
        let job = api(&app, &format!("/api/v1/jobs/{first}")).await;
        (job["job"]["state"] == "done").then_some(())
    })
    .await;
    assert_eq!(jobs(&app, "state=retrying").await.len(), 2);
    let (status, reply) = api_post(&app, "/api/v1/connectors/erp/retry-now", json!({})).await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["released"], 2);
    eventually(10, "every account", async || {
        delivered(&fake, "001NOW", 3).await.then_some(())
    })
    .await;
}
