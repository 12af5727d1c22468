//! A reconciliation run killed half way (SIGKILL of the real binary) resumes at the page it
//! had reached when the service starts again, and its counts are those of a whole run.

use std::time::Duration;

use serde_json::{Value, json};

use crate::crash::Service;
use crate::fake_erp::{self, Fake, Mode};
use crate::support::*;
use crate::tryton_reconcile::{crm_lists, reconciled_mappings};

const CRM: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const ACCOUNTS: usize = 30;

async fn get(port: u16, path: &str) -> Option<Value> {
    let response = reqwest::get(format!("http://127.0.0.1:{port}{path}"))
        .await
        .ok()?;
    response.status().is_success().then_some(())?;
    response.json().await.ok()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_run_killed_half_way_resumes_where_it_stopped() {
    let (fake, addr) = Fake::start().await;
    let dir = tempfile::tempdir().unwrap();
    let connectors = dir.path().join("connectors");
    std::fs::create_dir(&connectors).unwrap();
    fake_erp::connectors(&connectors, addr, 5);
    let crm_file = connectors.join("crm.yaml");
    let crm_text = std::fs::read_to_string(&crm_file).unwrap();
    // One account per page, so the run is many pages long.
    std::fs::write(&crm_file, format!("{crm_text}{}", crm_lists(1))).unwrap();
    let erp_file = connectors.join("erp.yaml");
    let erp_text = std::fs::read_to_string(&erp_file).unwrap();
    std::fs::write(
        &erp_file,
        format!(
            "{erp_text}  list_customers: {{ method: GET, path: \"/customers?limit=50\", list: {{ items: /customers, next: /next, id: /id, key: /code }} }}\n"
        ),
    )
    .unwrap();
    let mappings = reconciled_mappings(&[(
        "account_to_customer.yaml",
        "  source: { connector: crm, operation: list_accounts, wrap: data }\n  target: list_customers\n",
    )]);
    let mappings_dir = mappings.path().to_str().unwrap().to_owned();
    let env = [("HANDOFF_MAPPINGS_DIR", mappings_dir.as_str())];
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let service = Service::start_with(dir.path(), &connectors, port, &env);

    // Half the accounts came by webhook (delivered: matched), half never did (missed).
    let client = reqwest::Client::new();
    for n in 0..ACCOUNTS {
        let id = format!("001Z{n:03}");
        let body = crate::delivery::account(&id, "2026-11-20T09:00:00Z", &format!("Account {n}"));
        let data = serde_json::from_str::<Value>(&body).unwrap()["data"].clone();
        fake.books()
            .records
            .entry("Account".into())
            .or_default()
            .insert(id.clone(), data.clone());
        if n % 2 == 0 {
            eventually(30, "the webhook accepted", async || {
                let mut request = client
                    .post(format!("http://127.0.0.1:{port}/hooks/crm"))
                    .body(body.clone());
                for (name, value) in standard_webhooks(CRM, &id, now(), &body) {
                    request = request.header(name, value);
                }
                let response = request.send().await.ok()?;
                response.status().is_success().then_some(())
            })
            .await;
        }
    }
    eventually(60, "the accounts delivered", async || {
        (fake.books().customers.len() == ACCOUNTS / 2).then_some(())
    })
    .await;

    fake.set_mode(Mode::Slow(Duration::from_millis(150)));
    let started = client
        .post(format!("http://127.0.0.1:{port}/api/v1/reconcile/runs"))
        .json(&json!({"flow": "account_to_customer"}))
        .send()
        .await
        .unwrap();
    assert_eq!(started.status(), 202);
    let id = started.json::<Value>().await.unwrap()["id"]
        .as_u64()
        .unwrap();
    let run_path = format!("/api/v1/reconcile/runs/{id}");
    let cut_at = eventually(30, "a third of the pages read", async || {
        let run = get(port, &run_path).await?;
        (run["pages"].as_u64()? >= 10).then_some(run["pages"].as_u64()?)
    })
    .await;
    service.kill();
    let first_pages = fake
        .books()
        .received
        .iter()
        .filter(|r| r.path == "/records/Account?after=")
        .count();
    assert_eq!(first_pages, 1, "one run, from the first page");
    let asked_before = fake.books().received.len();

    let service = Service::start_with(dir.path(), &connectors, port, &env);
    let run = eventually(60, "the resumed run finished", async || {
        let run = get(port, &run_path).await?;
        (run["state"] != "running").then_some(run)
    })
    .await;
    service.kill();
    assert_eq!(run["state"], "done", "{run}");
    assert_eq!(run["compared"], ACCOUNTS, "every account once: {run}");
    assert_eq!(run["counts"]["matched"], ACCOUNTS / 2, "{run}");
    assert_eq!(run["counts"]["missed_event"], ACCOUNTS / 2, "{run}");
    let books = fake.books();
    let resumed: Vec<&str> = books.received[asked_before..]
        .iter()
        .filter(|r| r.path.starts_with("/records/Account"))
        .map(|r| r.path.as_str())
        .collect();
    assert!(
        !resumed.contains(&"/records/Account?after="),
        "not from the first page again: {resumed:?}"
    );
    // It goes on after the last page it had stored: with one page per account, every page
    // once, and at most the one it was reading when killed twice.
    let stored_at = format!("/records/Account?after=001Z{:03}", cut_at - 1);
    assert!(
        resumed
            .first()
            .is_some_and(|first| *first >= stored_at.as_str()),
        "resumed at {:?}, the run had stored at least {cut_at} pages",
        resumed.first()
    );
    let pages_read = books
        .received
        .iter()
        .filter(|r| r.path.starts_with("/records/Account"))
        .count();
    assert!(
        pages_read <= ACCOUNTS + 1,
        "{pages_read} pages read for {ACCOUNTS}"
    );
}
