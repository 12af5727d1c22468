//! The router on PostgreSQL: events → jobs, by one instance at a time, each event exactly once.
//!
//! Events are read in the order of the transactions that stored them, `(xid, id)`, and only
//! below the oldest transaction still running (`pg_snapshot_xmin`): every row under that bound
//! is committed or never will be, so an event whose transaction commits late (with a lower id
//! than events already read) is read when it commits, never skipped. Routing is a role
//! (`roles.rs`): a round takes or renews it, routes, and moves its cursor in one transaction,
//! so an instance that lost the role cannot route again what the next router already did. Ingest notifies
//! [`EVENTS_CHANNEL`] at each commit with new events, which wakes the router between rounds.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use super::jobs::insert;
use super::journal::EVENTS_CHANNEL;
use super::{PgError, Postgres, roles};
use crate::envelope::Envelope;
use crate::journal::Journal;

/// The router's row in `poll_cursors` (roles.rs).
const ROLE: &str = "router";

/// The jobs an event makes (the id is the event's, for the jobs it makes).
pub type Route = dyn Fn(i64, &Envelope) -> Vec<crate::queue::Job> + Send + Sync;

/// The oldest transaction still running, asked in a statement of its own before the read:
/// every transaction below it ended before the read's snapshot was taken.
const BOUND: &str = "SELECT pg_snapshot_xmin(pg_current_snapshot())::text";
/// Ordered by the column, `events.xid`: the text of the xid in the select list would sort
/// "1000" before "889" (the suite's load runs caught a range of events skipped that way).
const READ: &str = "SELECT id, xid::text AS xid_text, envelope FROM events
    WHERE (xid, id) > ($1::text::xid8, $2) AND xid < $4::text::xid8
    ORDER BY events.xid, events.id LIMIT $3";

pub struct PgRouter {
    postgres: Arc<Postgres>,
    /// Where the events that made jobs are kept for this instance's leases of those jobs
    /// (the workers' pool), so a lease need not read them again.
    keep: Option<Arc<Postgres>>,
    me: String,
    /// How long the role lasts without a round.
    lease: Duration,
}

impl PgRouter {
    pub fn new(postgres: Arc<Postgres>, me: String, lease: Duration) -> PgRouter {
        PgRouter {
            postgres,
            keep: None,
            me,
            lease,
        }
    }

    /// Keeps the events that made jobs in `workers`' read-ahead (`Postgres::keep_events`).
    pub fn keeping_events_in(mut self, workers: Arc<Postgres>) -> PgRouter {
        self.keep = Some(workers);
        self
    }

    /// Routes up to `limit` events if this instance is the router; returns how many.
    pub async fn round(&self, route: &Route, limit: i64) -> Result<usize, PgError> {
        let failed = |e: tokio_postgres::Error| self.postgres.query_error(&e);
        let mut client = self.postgres.client().await?;
        let tx = client.transaction().await.map_err(failed)?;
        // Lost in a crash of PostgreSQL, a round is done again from the cursor it did not
        // move: its jobs come back with the same idempotency keys (flow, record, version).
        tx.batch_execute("SET LOCAL synchronous_commit = off")
            .await
            .map_err(failed)?;
        let start = json!({ "xid": "0", "id": 0 });
        let Some(cursor) = roles::take(&tx, ROLE, &self.me, self.lease, &start)
            .await
            .map_err(failed)?
        else {
            // Another instance routes.
            return Ok(0);
        };
        let (mut xid, mut id) = (
            cursor["xid"].as_str().unwrap_or("0").to_owned(),
            cursor["id"].as_i64().unwrap_or(0),
        );
        let (bound, read) = (
            tx.prepare_cached(BOUND).await.map_err(failed)?,
            tx.prepare_cached(READ).await.map_err(failed)?,
        );
        let bound: String = tx.query_one(&bound, &[]).await.map_err(failed)?.get(0);
        let rows = tx
            .query(&read, &[&xid, &id, &limit, &bound])
            .await
            .map_err(failed)?;
        let mut jobs = Vec::new();
        let mut kept = Vec::new();
        for row in &rows {
            id = row.get(0);
            xid = row.get(1);
            let record: Vec<u8> = row.get(2);
            match Journal::decode(id as u64, &record) {
                Ok(envelope) => {
                    let made = route(id, &envelope);
                    if !made.is_empty() && self.keep.is_some() {
                        kept.push((id as u64, record));
                    }
                    jobs.extend(made);
                }
                Err(error) => tracing::error!(error = %error, event = id, "event skipped"),
            }
        }
        tracing::debug!(bound = %bound, read = rows.len(), jobs = jobs.len(), xid = %xid, id, "routed");
        insert(&tx, &jobs).await.map_err(failed)?;
        roles::save(&tx, ROLE, &self.me, &json!({ "xid": xid, "id": id }))
            .await
            .map_err(failed)?;
        tx.commit().await.map_err(failed)?;
        if let Some(keep) = &self.keep {
            keep.keep_events(kept);
        }
        Ok(rows.len())
    }

    /// Routes until aborted: a round whenever ingest notifies, and every `idle` anyway (to take
    /// the role over, and for events whose notification came before this listened).
    pub fn run(self: Arc<Self>, route: Arc<Route>, idle: Duration) -> tokio::task::JoinHandle<()> {
        tokio::spawn(self.route_forever(route, idle))
    }

    /// What [`PgRouter::run`] runs.
    pub async fn route_forever(self: Arc<Self>, route: Arc<Route>, idle: Duration) {
        let mut listener = None;
        loop {
            if listener
                .as_ref()
                .is_none_or(|l: &super::Listener| l.is_closed())
            {
                listener = match self.postgres.listen(EVENTS_CHANNEL).await {
                    Ok(listener) => Some(listener),
                    Err(error) => {
                        tracing::warn!(error = %error, "no LISTEN: the router polls");
                        None
                    }
                };
            }
            let routed = match self.round(route.as_ref(), 512).await {
                Ok(n) => n,
                Err(error) => {
                    tracing::warn!(error = %error, "routing round failed");
                    0
                }
            };
            if routed == 512 {
                continue;
            }
            match &listener {
                Some(listener) => {
                    let _ = tokio::time::timeout(idle, listener.notified.notified()).await;
                }
                None => tokio::time::sleep(idle).await,
            }
        }
    }
}
