//! Crash safety of the real binary: under load it is SIGKILLed twenty times at random moments and
//! restarted. Every event that got a 2xx is delivered, per record in version order (updates
//! replayed under the same idempotency key do not take effect twice), and the ERP holds no
//! duplicate order.

use std::collections::HashMap;
use std::process::{Child, Command};
use std::time::Duration;

use crate::delivery::{account, won};
use crate::fake_erp::{self, Fake};
use crate::support::eventually;
use crate::support::*;

const CRM: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const ACCOUNTS: usize = 12;
const VERSIONS: usize = 8;
const KILLS: usize = 20;

pub struct Service {
    child: Child,
}

impl Service {
    /// The binary on `port` with its data in `dir/data` and the connectors of `connectors`.
    pub fn start(dir: &std::path::Path, connectors: &std::path::Path, port: u16) -> Service {
        Service::start_with(dir, connectors, port, &[])
    }

    /// The same with more environment (`HANDOFF_MAPPINGS_DIR`, …).
    pub fn start_with(
        dir: &std::path::Path,
        connectors: &std::path::Path,
        port: u16,
        env: &[(&str, &str)],
    ) -> Service {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("handoff.log"))
            .unwrap();
        let config = dir.join("config.toml");
        std::fs::write(&config, CONFIG).unwrap();
        let mut command = Command::new(env!("CARGO_BIN_EXE_handoff"));
        command
            .args(["serve", "--config"])
            .arg(&config)
            .env("HANDOFF_LISTEN", format!("127.0.0.1:{port}"))
            .env("HANDOFF_DATA_DIR", dir.join("data"))
            .env("HANDOFF_CONNECTORS_DIR", connectors)
            .env("HANDOFF_LOG__LEVEL", "warn")
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        for (name, value) in secrets() {
            command.env(name, value);
        }
        command.envs(store_env(dir));
        command.envs(env.iter().copied());
        Service {
            child: command.spawn().unwrap(),
        }
    }

    pub fn kill(self) {
        drop(self);
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the process has ended.
    pub fn exited(&mut self) -> bool {
        !matches!(self.child.try_wait(), Ok(None))
    }
}

/// SIGKILL, also when a test fails half way (no service outlives its test).
impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Posts one event until the service answers 2xx (a sender retries the same event id).
async fn deliver(client: &reqwest::Client, port: u16, id: &str, body: &str) {
    loop {
        let mut request = client
            .post(format!("http://127.0.0.1:{port}/hooks/crm"))
            .timeout(Duration::from_secs(5))
            .body(body.to_owned());
        for (name, value) in standard_webhooks(CRM, id, now(), body) {
            request = request.header(name, value);
        }
        if let Ok(response) = request.send().await
            && response.status().is_success()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_under_load_loses_nothing_and_duplicates_nothing() {
    let (fake, addr) = Fake::start().await;
    let dir = tempfile::tempdir().unwrap();
    let connectors = dir.path().join("connectors");
    std::fs::create_dir(&connectors).unwrap();
    fake_erp::connectors(&connectors, addr, 5);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();

    // The load: per account, VERSIONS updates in order, then a won opportunity; accounts in parallel.
    let load = tokio::spawn(async move {
        let client = reqwest::Client::new();
        let mut senders = Vec::new();
        for a in 0..ACCOUNTS {
            let client = client.clone();
            senders.push(tokio::spawn(async move {
                let id = format!("001K{a:02}");
                for v in 0..VERSIONS {
                    let version = format!("2026-11-20T10:{v:02}:00Z");
                    let body = account(&id, &version, &format!("v{v:02}"));
                    deliver(&client, port, &format!("acc-{a}-{v}"), &body).await;
                    tokio::time::sleep(Duration::from_millis(fastrand::u64(20..120))).await;
                }
                let body = won(&format!("006K{a:02}"), &id, "2026-11-20T11:00:00Z");
                deliver(&client, port, &format!("opp-{a}"), &body).await;
            }));
        }
        for sender in senders {
            sender.await.unwrap();
        }
    });

    let mut service = Service::start(dir.path(), &connectors, port);
    for _ in 0..KILLS {
        tokio::time::sleep(Duration::from_millis(fastrand::u64(150..600))).await;
        service.kill();
        service = Service::start(dir.path(), &connectors, port);
    }
    tokio::time::timeout(Duration::from_secs(120), load)
        .await
        .expect("the load finishes")
        .unwrap();

    eventually(60, "every acknowledged event delivered", async || {
        let books = fake.books();
        let all = (0..ACCOUNTS).all(|a| {
            books
                .customers
                .get(&format!("001K{a:02}"))
                .is_some_and(|c| c["name"] == format!("v{:02}", VERSIONS - 1))
                && books.orders.contains_key(&format!("006K{a:02}"))
        });
        all.then_some(())
    })
    .await;
    service.kill();

    let books = fake.books();
    assert_eq!(books.duplicate_orders, 0, "no order created twice");
    assert_eq!(books.orders.len(), ACCOUNTS);
    let mut versions_seen: HashMap<&String, usize> = HashMap::new();
    for (code, history) in &books.customer_history {
        let mut sorted = history.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(
            history, &sorted,
            "updates of {code} took effect in order, once each"
        );
        versions_seen.insert(code, history.len());
    }
    for (reference, (_, order)) in &books.orders {
        let account = order["customer"]
            .as_str()
            .unwrap()
            .trim_start_matches("C-")
            .to_owned();
        assert!(
            books.customers.contains_key(&account),
            "{reference}'s customer exists"
        );
    }
    eprintln!(
        "crash test: {KILLS} kills, {} requests to the ERP, {} replays answered by idempotency, versions applied per account {:?}",
        books.received.len(),
        books.replays,
        versions_seen.values().collect::<Vec<_>>()
    );
}
