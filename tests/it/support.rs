//! Starts the real service in-process on 127.0.0.1:0 with a temporary data directory, and signs
//! requests the way senders do.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use handoff::app::App;
use handoff::config::{Config, Origin};
use handoff::journal::Journal;
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;
use tokio::sync::oneshot;

pub const CONFIG: &str = include_str!("test_config.toml");

/// The secrets of `test_config.toml`, by variable name.
pub fn secrets() -> HashMap<String, String> {
    [
        ("CRM_SECRET", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
        ("CRM_SECRET_OLD", "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD"),
        ("STRIPE_SECRET", "whsec_test_stripe_secret"),
        ("HUBSPOT_SECRET", "hubspot-app-client-secret"),
        ("GITHUB_SECRET", "It's a Secret to Everybody"),
        ("SHOPIFY_SECRET", "shpss_test_secret"),
        ("ERP_SECRET", "erp-shared-secret"),
        // The secrets `config.example.toml` names, for tests of what ships.
        (
            "CRM_WEBHOOK_SECRET",
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        ),
        ("HUBSPOT_CLIENT_SECRET", "hubspot-app-client-secret"),
        ("STRIPE_WEBHOOK_SECRET", "whsec_test_stripe_secret"),
        ("GITHUB_WEBHOOK_SECRET", "It's a Secret to Everybody"),
        ("SHOPIFY_WEBHOOK_SECRET", "shpss_test_secret"),
        ("ERP_WEBHOOK_SECRET", "erp-shared-secret"),
        ("TRYTON_USER", "admin"),
        ("TRYTON_PASSWORD", "admin-secret"),
        ("SALESFORCE_CLIENT_ID", crate::fakes::salesforce::CLIENT_ID),
        (
            "SALESFORCE_CLIENT_SECRET",
            crate::fakes::salesforce::CLIENT_SECRET,
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

pub struct TestApp {
    pub addr: SocketAddr,
    /// The embedded store's journal (`None` when the suite runs on PostgreSQL).
    pub journal: Option<Arc<Journal>>,
    pub client: reqwest::Client,
    _dir: tempfile::TempDir,
    stop: Option<oneshot::Sender<()>>,
    served: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl TestApp {
    pub async fn start() -> TestApp {
        Self::start_with(CONFIG, &[]).await
    }

    /// Starts with `config` plus `HANDOFF_*`-style overrides.
    pub async fn start_with(config: &str, env: &[(&str, &str)]) -> TestApp {
        let dir = tempfile::tempdir().unwrap();
        let mut env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        if !env.iter().any(|(k, _)| k == "HANDOFF_DATA_DIR") {
            env.push(("HANDOFF_DATA_DIR".into(), dir.path().display().to_string()));
        }
        let data_dir = env
            .iter()
            .find(|(k, _)| k == "HANDOFF_DATA_DIR")
            .unwrap()
            .1
            .clone();
        // On PostgreSQL (see `store_env`) the URL is a secret; the rest are settings an
        // explicit override of the test wins over.
        let mut secrets = secrets();
        for (name, value) in store_env(std::path::Path::new(&data_dir)) {
            if name == "DATABASE_URL" {
                secrets.insert(name, value);
            } else if !env.iter().any(|(k, _)| *k == name) {
                env.push((name, value));
            }
        }
        let config = Config::parse(config, env).unwrap();
        let lookup = move |name: &str| secrets.get(name).cloned();
        let (app, warnings) =
            App::build(&config, &Origin::File("test.toml".into()), &lookup).unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
        let journal = app.engine.embedded_journal().cloned();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let served = tokio::spawn(app.serve(listener, async {
            let _ = stopped.await;
        }));
        TestApp {
            addr,
            journal,
            client: reqwest::Client::new(),
            _dir: dir,
            stop: Some(stop),
            served: Some(served),
        }
    }

    /// Starts the test config with its connectors read from `dir`.
    pub async fn with_connectors(dir: &std::path::Path) -> TestApp {
        Self::start_with(CONFIG, &[("HANDOFF_CONNECTORS_DIR", dir.to_str().unwrap())]).await
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// POSTs `body` with `headers`; returns the status and the body text.
    pub async fn post(
        &self,
        path: &str,
        headers: &[(String, String)],
        body: &str,
    ) -> (u16, String) {
        let mut request = self.client.post(self.url(path)).body(body.to_owned());
        for (name, value) in headers {
            request = request.header(name.as_str(), value.as_str());
        }
        let response = request.send().await.unwrap();
        (response.status().as_u16(), response.text().await.unwrap())
    }

    /// The embedded journal (tests that read it run on the embedded store only).
    pub fn journal(&self) -> &Journal {
        self.journal
            .as_deref()
            .expect("this test reads the embedded journal")
    }

    pub fn envelopes(&self) -> Vec<handoff::envelope::Envelope> {
        self.journal()
            .iter_from(0)
            .unwrap()
            .map(|r| r.unwrap().1)
            .collect()
    }
}

impl TestApp {
    /// Stops the service and waits until it has closed its store (a restart may follow).
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(served) = self.served.take() {
            served.await.unwrap().unwrap();
        }
    }
}

/// A test that ends without [`TestApp::stop`] still shuts the service down to its end, as
/// `handoff serve` does before its runtime goes: abandoned mid-shutdown, a store call waiting on
/// the database would hold the test's runtime open forever. On a single-threaded runtime
/// (nothing can wait there) the service is only told to stop.
impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let Some(served) = self.served.take() else {
            return;
        };
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if handle.runtime_flavor() != tokio::runtime::RuntimeFlavor::MultiThread {
            return;
        }
        let stopped = tokio::task::block_in_place(|| {
            handle.block_on(tokio::time::timeout(Duration::from_secs(60), served))
        });
        if stopped.is_err() && !std::thread::panicking() {
            panic!("the service did not shut down within 60 s");
        }
    }
}

/// The store the suite runs on. By default the embedded one (nothing to add). With
/// `SUITE_POSTGRES_URL` set (tests/run.sh sets it for its second pass over the delivery,
/// crash, operate and dashboard tests), PostgreSQL: one database per data directory, created
/// when missing (so a restart on the same directory finds its data again), and a short lease
/// (a restarted instance takes over the partitions of the one killed before it).
pub fn store_env(data_dir: &std::path::Path) -> Vec<(String, String)> {
    let Ok(server) = std::env::var("SUITE_POSTGRES_URL") else {
        return Vec::new();
    };
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    data_dir.hash(&mut hasher);
    let database = format!("t{:016x}", hasher.finish());
    let exists = std::process::Command::new("psql")
        .args([server.as_str(), "-Atqc"])
        .arg(format!(
            "SELECT 1 FROM pg_database WHERE datname = '{database}'"
        ))
        .output()
        .expect("psql (Debian package postgresql-client)");
    assert!(exists.status.success(), "{exists:?}");
    if exists.stdout.is_empty() {
        let created = std::process::Command::new("psql")
            .args([server.as_str(), "-qc"])
            .arg(format!("CREATE DATABASE {database}"))
            .output()
            .unwrap();
        assert!(created.status.success(), "{created:?}");
    }
    let (base, _) = server.rsplit_once('/').expect("a URL ending in /database");
    vec![
        ("HANDOFF_STORE__BACKEND".into(), "postgres".into()),
        ("DATABASE_URL".into(), format!("{base}/{database}")),
        ("HANDOFF_STORE__POSTGRES__LEASE_SECS".into(), "2".into()),
    ]
}

pub fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

pub fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

pub fn b64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

pub fn json_headers(pairs: &[(&str, String)]) -> Vec<(String, String)> {
    let mut headers = vec![("content-type".to_owned(), "application/json".to_owned())];
    headers.extend(pairs.iter().map(|(k, v)| (k.to_string(), v.clone())));
    headers
}

/// Standard Webhooks headers signed with our own HMAC (the reference libraries are used in
/// `reference.rs`).
pub fn standard_webhooks(secret: &str, id: &str, ts: i64, body: &str) -> Vec<(String, String)> {
    use base64::Engine as _;
    let key = base64::engine::general_purpose::STANDARD
        .decode(secret.trim_start_matches("whsec_"))
        .unwrap();
    let sig = b64(&hmac(&key, format!("{id}.{ts}.{body}").as_bytes()));
    json_headers(&[
        ("webhook-id", id.to_owned()),
        ("webhook-timestamp", ts.to_string()),
        ("webhook-signature", format!("v1,{sig}")),
    ])
}

/// A won-opportunity body in the CRM's shape.
pub fn opportunity(id: &str, stage: &str) -> String {
    serde_json::json!({
        "type": "opportunity.updated",
        "object": "Opportunity",
        "data": {
            "Id": id,
            "AccountId": "001000000000001AAA",
            "Name": "Acme - 200 widgets",
            "StageName": stage,
            "Amount": "15000.50",
            "CurrencyIsoCode": "EUR",
            "LastModifiedDate": "2026-11-20T09:15:00Z"
        }
    })
    .to_string()
}

/// GET a JSON answer from the app's API.
pub async fn api(app: &TestApp, path: &str) -> Value {
    app.client
        .get(app.url(path))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

pub async fn api_post(app: &TestApp, path: &str, body: Value) -> (u16, Value) {
    let response = app
        .client
        .post(app.url(path))
        .json(&body)
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

/// Polls `check` every 50 ms for up to `secs` seconds.
pub async fn eventually<T>(secs: u64, what: &str, mut check: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(found) = check().await {
            return found;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub async fn jobs(app: &TestApp, query: &str) -> Vec<Value> {
    api(app, &format!("/api/v1/jobs?{query}")).await["jobs"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// Copies a directory tree (mappings into a test's own dir, to edit them).
pub fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            copy_dir(&path, &to.join(entry.file_name()));
        } else {
            std::fs::copy(&path, to.join(entry.file_name())).unwrap();
        }
    }
}
