//! The durable floor under the orders flow: the least a service must do to give handoff's
//! guarantees on the way in and map what it delivers, and nothing else. Per request: check the
//! Standard Webhooks HMAC on the raw bytes, append the body to one file and answer 202 after
//! its group-committed `fdatasync`; then parse the event, map it with the repo's own
//! opportunity → sales order mapping (schema check included) and POST the document to the
//! sink under an `Idempotency-Key`. No dedupe, no queue state, no retry, no per-record order, no
//! cross-reference store (the customer id is made up from the account id): what is measured is
//! the cost of the work every durable, mapping relay has to do on this machine.
//!
//! With `--relay-pg-url` the journal is a PostgreSQL table instead of a file (the floor under
//! handoff on PostgreSQL): each batch of waiting bodies is one `INSERT … RETURNING id`, committed
//! before the 202s, and delivered rows are deleted in batches, so the table is a queue that a
//! restart could resume from. Still no dedupe, leases, per-record order or history.

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
use tokio::sync::mpsc as tokio_mpsc;
use tokio::sync::oneshot;

use handoff::mapping::{Context, Lookups, Mapping};

struct Floor {
    key: Vec<u8>,
    journal: Journal,
    mapping: Mapping,
    lookups: Lookups,
    http: reqwest::Client,
    url: String,
    slots: tokio::sync::Semaphore,
    sent: AtomicU64,
}

/// Where accepted bodies are kept before the 202.
enum Journal {
    /// One file, appended and `fdatasync`ed per batch.
    File(mpsc::Sender<(Bytes, oneshot::Sender<i64>)>),
    /// A PostgreSQL table: one committed insert per batch; rows deleted once delivered.
    Postgres {
        write: tokio_mpsc::UnboundedSender<(Bytes, oneshot::Sender<i64>)>,
        done: tokio_mpsc::UnboundedSender<i64>,
    },
}

impl Journal {
    /// Keeps `body` durably; its row id on PostgreSQL (0 in a file). `None` when it failed.
    async fn write(&self, body: Bytes) -> Option<i64> {
        let (done, written) = oneshot::channel();
        let sent = match self {
            Journal::File(journal) => journal.send((body, done)).is_ok(),
            Journal::Postgres { write, .. } => write.send((body, done)).is_ok(),
        };
        if !sent {
            return None;
        }
        written.await.ok()
    }

    /// The body kept under `id` was delivered.
    fn delivered(&self, id: i64) {
        if let Journal::Postgres { done, .. } = self {
            let _ = done.send(id);
        }
    }
}

/// Serves the floor on `addr`, delivering to `to`; the journal file goes in `dir`, or into
/// PostgreSQL at `postgres` when given.
pub fn durable_relay_server(
    addr: &str,
    to: &str,
    concurrency: usize,
    repo: &Path,
    dir: &Path,
    postgres: Option<&str>,
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
        journal: match postgres {
            Some(url) => pg_journal(url)?,
            None => Journal::File(journal(&dir.join("floor.log"))?),
        },
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
fn journal(path: &Path) -> anyhow::Result<mpsc::Sender<(Bytes, oneshot::Sender<i64>)>> {
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    let (tx, rx) = mpsc::channel::<(Bytes, oneshot::Sender<i64>)>();
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
                let _ = done.send(0);
            }
        }
    });
    Ok(tx)
}

/// The journal on PostgreSQL, run by a thread of its own with two connections: one inserts each
/// batch of waiting bodies in one statement (its own transaction, committed before the answers),
/// the other deletes delivered rows in batches.
fn pg_journal(url: &str) -> anyhow::Result<Journal> {
    let (write, mut bodies) = tokio_mpsc::unbounded_channel::<(Bytes, oneshot::Sender<i64>)>();
    let (done, mut delivered) = tokio_mpsc::unbounded_channel::<i64>();
    let (ready, started) = mpsc::channel::<anyhow::Result<()>>();
    let url = url.to_owned();
    std::thread::spawn(move || {
        let runtime = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(runtime) => runtime,
            Err(error) => return drop(ready.send(Err(error.into()))),
        };
        runtime.block_on(async move {
            let (inserts, deletes) = match pg_connections(&url).await {
                Ok(pair) => pair,
                Err(error) => return drop(ready.send(Err(error))),
            };
            let _ = ready.send(Ok(()));
            let deleting = async {
                while let Some(first) = delivered.recv().await {
                    let mut ids = vec![first];
                    while let Ok(id) = delivered.try_recv() {
                        ids.push(id);
                    }
                    let sql = "DELETE FROM floor_events WHERE id = ANY($1)";
                    if deletes.execute(sql, &[&ids]).await.is_err() {
                        return;
                    }
                }
            };
            let inserting = async {
                while let Some(first) = bodies.recv().await {
                    let mut batch = vec![first];
                    while let Ok(next) = bodies.try_recv() {
                        batch.push(next);
                    }
                    let rows: Vec<&[u8]> = batch.iter().map(|(body, _)| &body[..]).collect();
                    let sql =
                        "INSERT INTO floor_events (body) SELECT unnest($1::bytea[]) RETURNING id";
                    let Ok(ids) = inserts.query(sql, &[&rows]).await else {
                        return;
                    };
                    for ((_, answer), row) in batch.into_iter().zip(ids) {
                        let _ = answer.send(row.get::<_, i64>(0));
                    }
                }
            };
            tokio::join!(deleting, inserting);
        });
    });
    started.recv()??;
    Ok(Journal::Postgres { write, done })
}

/// Two connections to `url`, with the floor's table created (and emptied) on the first.
async fn pg_connections(
    url: &str,
) -> anyhow::Result<(tokio_postgres::Client, tokio_postgres::Client)> {
    let mut clients = Vec::new();
    for _ in 0..2 {
        let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
        tokio::spawn(connection);
        clients.push(client);
    }
    let deletes = clients.pop().expect("two connections");
    let inserts = clients.pop().expect("two connections");
    inserts
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS floor_events (id bigserial PRIMARY KEY, body bytea NOT NULL);
             TRUNCATE floor_events",
        )
        .await?;
    Ok((inserts, deletes))
}

async fn accept(State(floor): State<Arc<Floor>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    if !signed(&floor.key, &headers, &body) {
        return StatusCode::UNAUTHORIZED;
    }
    let Some(id) = floor.journal.write(body.clone()).await else {
        return StatusCode::SERVICE_UNAVAILABLE;
    };
    tokio::spawn(deliver(floor, body, id));
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

async fn deliver(floor: Arc<Floor>, body: Bytes, id: i64) {
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
    floor.journal.delivered(id);
}
