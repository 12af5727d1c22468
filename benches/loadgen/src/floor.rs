//! The durable floor under the orders flow: the least a service must do to give handoff's
//! guarantees on the way in and map what it delivers, and nothing else. Per request: check the
//! Standard Webhooks HMAC on the raw bytes, append the body to one file and answer 202 after
//! its group-committed `fdatasync`; then parse the event, map it with the repo's own
//! opportunity → sales order mapping (schema check included) and POST the document to the
//! sink under an `Idempotency-Key`. No dedupe, no queue state, no retry, no per-record order, no
//! cross-reference store (the customer id is made up from the account id): what is measured is
//! the cost of the work every durable, mapping relay has to do on this machine.

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use base64::Engine as _;
use bytes::Bytes;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use tokio::sync::oneshot;

use handoff::mapping::{Context, Lookups, Mapping};

struct Floor {
    key: Vec<u8>,
    journal: mpsc::Sender<(Bytes, oneshot::Sender<()>)>,
    mapping: Mapping,
    lookups: Lookups,
    http: reqwest::Client,
    url: String,
    slots: tokio::sync::Semaphore,
    sent: AtomicU64,
}

/// Serves the floor on `addr`, delivering to `to`; the journal file goes in `dir`.
pub fn durable_relay_server(
    addr: &str,
    to: &str,
    concurrency: usize,
    repo: &Path,
    dir: &Path,
    secret: &str,
) -> anyhow::Result<()> {
    let (mappings, lookups) =
        handoff::mapping::load_dir(&repo.join("mappings"), &repo.join("schemas"))
            .map_err(|problems| anyhow::anyhow!("the repo's mappings do not load: {problems:?}"))?;
    let mapping = mappings
        .into_iter()
        .find(|m| m.flow == "opportunity_to_sales_order")
        .ok_or_else(|| anyhow::anyhow!("no opportunity_to_sales_order mapping"))?;
    std::fs::create_dir_all(dir)?;
    let floor = Arc::new(Floor {
        key: base64::engine::general_purpose::STANDARD
            .decode(secret.trim_start_matches("whsec_"))?,
        journal: journal(&dir.join("floor.log"))?,
        mapping,
        lookups,
        http: reqwest::Client::new(),
        url: format!("{to}/orders"),
        slots: tokio::sync::Semaphore::new(concurrency),
        sent: AtomicU64::new(0),
    });
    let app = axum::Router::new()
        .route("/hooks/{source}", post(accept))
        .with_state(floor);
    crate::servers::serve(addr, app)
}

/// A writer thread: takes every body waiting, appends them, one `fdatasync`, then answers all.
fn journal(path: &Path) -> anyhow::Result<mpsc::Sender<(Bytes, oneshot::Sender<()>)>> {
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    let (tx, rx) = mpsc::channel::<(Bytes, oneshot::Sender<()>)>();
    std::thread::spawn(move || {
        while let Ok(first) = rx.recv() {
            let mut batch = vec![first];
            batch.extend(rx.try_iter());
            let mut buffer = Vec::new();
            for (body, _) in &batch {
                buffer.extend_from_slice(&(body.len() as u32).to_le_bytes());
                buffer.extend_from_slice(body);
            }
            if file
                .write_all(&buffer)
                .and_then(|()| file.sync_data())
                .is_err()
            {
                return;
            }
            for (_, done) in batch {
                let _ = done.send(());
            }
        }
    });
    Ok(tx)
}

async fn accept(State(floor): State<Arc<Floor>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    if !signed(&floor.key, &headers, &body) {
        return StatusCode::UNAUTHORIZED;
    }
    let (done, written) = oneshot::channel();
    if floor.journal.send((body.clone(), done)).is_err() || written.await.is_err() {
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    tokio::spawn(deliver(floor, body));
    StatusCode::ACCEPTED
}

fn signed(key: &[u8], headers: &HeaderMap, body: &[u8]) -> bool {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let (Some(id), Some(ts), Some(signature)) = (
        header("webhook-id"),
        header("webhook-timestamp"),
        header("webhook-signature"),
    ) else {
        return false;
    };
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("any key length");
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(ts.as_bytes());
    mac.update(b".");
    mac.update(body);
    let expected = mac.finalize().into_bytes();
    signature.split(' ').any(|candidate| {
        candidate
            .strip_prefix("v1,")
            .and_then(|b64| base64::engine::general_purpose::STANDARD.decode(b64).ok())
            .is_some_and(|given| given.as_slice() == expected.as_slice())
    })
}

async fn deliver(floor: Arc<Floor>, body: Bytes) {
    let _slot = floor.slots.acquire().await;
    let Ok(event) = serde_json::from_slice::<serde_json::Value>(&body) else {
        return;
    };
    let account = event["data"]["AccountId"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let context = Context {
        xrefs: HashMap::from([(
            "customer".to_owned(),
            HashMap::from([(account.clone(), format!("C-{account}"))]),
        )]),
    };
    let document = match floor.mapping.apply(&event, &floor.lookups, &context) {
        Ok(document) => document,
        Err(error) => {
            eprintln!("floor: the event does not map: {error:?}");
            return;
        }
    };
    let Ok(json) = serde_json::to_vec(&document.body) else {
        return;
    };
    let n = floor.sent.fetch_add(1, Ordering::Relaxed);
    crate::servers::post_order(&floor.http, &floor.url, format!("floor-{n}"), json).await;
}
