//! One-row reads of the delivery path, gathered: a read asked while another of its kind is out
//! waits and goes with every read asked meanwhile, as one statement (the way ingest's group
//! commit gathers appends). Sixty-four workers each reading a cross-reference then cost a few
//! statements and round trips instead of sixty-four.
//!
//! A read is sent after it was asked, so it sees everything committed before it was asked (a
//! record's next job, run after its last settle, sees that settle).
//!
//! Each kind sends its statements one at a time on a connection of its own, where the statement
//! is planned once (the pool's connections plan every statement on every run, for `jobs`);
//! a failed connection is opened again for the next statement.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::Value;
use tokio::sync::oneshot;
use tokio_postgres::types::ToSql;

use super::{PgError, Plans, Postgres};

// A gathering connection plans its statement once and by index walks only (`Plans::IndexPathsOnce`),
// the only shape that fits a read of a few rows by key (a generic plan guesses how many keys
// come; left free, it read `applied` whole and hashed it, 4 ms a statement).

/// Reads waiting for the next statement at most; the rest wait for the one after.
const MOST: usize = 512;

/// Reads of one kind: `sql` takes one text array per key column (`$1`, `$2`, …), unnests them
/// `WITH ORDINALITY` and returns (ordinal, detail) for the keys it finds.
pub struct Gather {
    postgres: Arc<Postgres>,
    sql: &'static str,
    waiting: Mutex<Waiting>,
    /// The connection and the prepared statement, while they work.
    connection: tokio::sync::Mutex<Option<(tokio_postgres::Client, tokio_postgres::Statement)>>,
    /// Statements sent so far.
    sent: AtomicU64,
}

type Answer = oneshot::Sender<Result<Option<Value>, PgError>>;

#[derive(Default)]
struct Waiting {
    reads: Vec<(Vec<String>, Answer)>,
    /// A task is sending statements; it takes what waits when its statement returns.
    out: bool,
}

impl Gather {
    pub fn new(postgres: Arc<Postgres>, sql: &'static str) -> Arc<Gather> {
        Arc::new(Gather {
            postgres,
            sql,
            waiting: Mutex::default(),
            connection: tokio::sync::Mutex::new(None),
            sent: AtomicU64::new(0),
        })
    }

    /// Statements sent so far (each answered every read it gathered).
    pub fn statements(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    /// The detail stored under `key` (one value per key column), if any.
    pub async fn read(self: &Arc<Self>, key: Vec<String>) -> Result<Option<Value>, PgError> {
        let (answer, answered) = oneshot::channel();
        let start = {
            let mut waiting = self.lock();
            waiting.reads.push((key, answer));
            !std::mem::replace(&mut waiting.out, true)
        };
        if start {
            tokio::spawn(self.clone().send_while_waiting());
        }
        answered.await.map_err(|_| PgError::Query {
            at: self.postgres.at().to_owned(),
            reason: "a gathered read was dropped".to_owned(),
        })?
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Waiting> {
        self.waiting.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sends a statement for what waits, until nothing does.
    async fn send_while_waiting(self: Arc<Self>) {
        loop {
            let reads = {
                let mut waiting = self.lock();
                if waiting.reads.is_empty() {
                    waiting.out = false;
                    return;
                }
                let most = waiting.reads.len().min(MOST);
                let rest = waiting.reads.split_off(most);
                std::mem::replace(&mut waiting.reads, rest)
            };
            let (keys, answers): (Vec<_>, Vec<_>) = reads.into_iter().unzip();
            match self.query(&keys).await {
                Ok(mut found) => {
                    for (at, answer) in answers.into_iter().enumerate() {
                        let _ = answer.send(Ok(found[at].take()));
                    }
                }
                Err(error) => {
                    for answer in answers {
                        let _ = answer.send(Err(error.clone()));
                    }
                }
            }
        }
    }

    /// One statement for `keys`: the detail found for each, in their order.
    async fn query(&self, keys: &[Vec<String>]) -> Result<Vec<Option<Value>>, PgError> {
        let columns = keys.first().map_or(0, Vec::len);
        let arrays: Vec<Vec<&str>> = (0..columns)
            .map(|c| keys.iter().map(|key| key[c].as_str()).collect())
            .collect();
        let params: Vec<&(dyn ToSql + Sync)> =
            arrays.iter().map(|a| a as &(dyn ToSql + Sync)).collect();
        let mut connection = self.connection.lock().await;
        let (client, statement) = match connection.take() {
            Some(open) => open,
            None => {
                let client = self
                    .postgres
                    .own_client(&Plans::IndexPathsOnce.set_statements())
                    .await?;
                let statement = client
                    .prepare(self.sql)
                    .await
                    .map_err(|e| self.postgres.query_error(&e))?;
                (client, statement)
            }
        };
        self.sent.fetch_add(1, Ordering::Relaxed);
        let rows = client
            .query(&statement, &params)
            .await
            .map_err(|e| self.postgres.query_error(&e))?;
        *connection = Some((client, statement));
        let mut found = vec![None; keys.len()];
        for row in rows {
            let ordinal: i64 = row.get(0);
            if let Some(slot) = found.get_mut((ordinal - 1) as usize) {
                *slot = Some(row.get(1));
            }
        }
        Ok(found)
    }
}
