//! What the dashboard shows and the API answers, as typed values: the overview, a page of jobs,
//! one job in full, dead letters by reason. The API serialises them as they are; the pages
//! (`pages/`) render the same values, so the two cannot disagree.

use std::collections::BTreeMap;

use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use super::api::{ApiError, limit};
use super::openapi::schema;
use crate::envelope::Envelope;
use crate::metrics::Minute;
use crate::queue::records::Xref;
use crate::queue::{self, Action, Attempt, Job, JobId, Reason, State};
use crate::sync::{ConnectorStatus, Engine};

/// Counts per name (connector or flow) and state or outcome.
pub type Counts = BTreeMap<String, BTreeMap<&'static str, u64>>;

/// How many of `name`'s jobs are in `state`.
pub fn count(counts: &Counts, name: &str, state: &str) -> u64 {
    counts
        .get(name)
        .and_then(|by_state| by_state.get(state))
        .copied()
        .unwrap_or(0)
}

/// How many jobs of every name are in `state`.
pub fn total(counts: &Counts, state: &str) -> u64 {
    counts
        .values()
        .filter_map(|by_state| by_state.get(state))
        .sum()
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Overview {
    pub journal: JournalCount,
    /// Open and dead jobs now, per connector and state.
    #[schema(value_type = BTreeMap<String, BTreeMap<String, u64>>)]
    pub waiting: Counts,
    /// Outcomes since `counted_since_ms`, per connector.
    #[schema(value_type = BTreeMap<String, BTreeMap<String, u64>>)]
    pub outcomes_since_start: Counts,
    /// The same per flow.
    #[schema(value_type = BTreeMap<String, BTreeMap<String, u64>>)]
    pub flows_since_start: Counts,
    pub oldest_waiting: Option<Oldest>,
    pub connectors: Vec<ConnectorStatus>,
    /// The instances sharing the store (PostgreSQL), with the partitions each holds; empty
    /// for a single process on its data dir. Counts of waiting jobs cover every instance;
    /// outcomes and the last hour are this instance's.
    pub instances: Vec<queue::Member>,
    /// Delivered and failed attempts per minute.
    pub last_hour: Vec<Minute>,
    pub now_ms: i64,
    pub counted_since_ms: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct JournalCount {
    pub events: u64,
}

/// The oldest job still waiting.
#[derive(Debug, Serialize, ToSchema)]
pub struct Oldest {
    pub id: JobId,
    pub state: State,
    pub created_ms: i64,
    pub flow: String,
    pub connector: String,
    pub reason: Option<Reason>,
}

/// Waiting jobs per connector and state, outcomes since the count began (per connector and per
/// flow), the oldest waiting job, the connectors, the last hour's deliveries per minute.
pub fn overview(engine: &Engine) -> Overview {
    let mut waiting = Counts::new();
    for ((connector, state), count) in engine.queue.counts() {
        *waiting
            .entry(connector.to_string())
            .or_default()
            .entry(state.as_str())
            .or_default() += count;
    }
    let mut outcomes = Counts::new();
    for ((connector, outcome), count) in engine.metrics.outcomes() {
        outcomes
            .entry(connector)
            .or_default()
            .insert(outcome, count);
    }
    let mut flows = Counts::new();
    for ((flow, outcome), count) in engine.metrics.flow_outcomes() {
        flows.entry(flow).or_default().insert(outcome, count);
    }
    let oldest_waiting = engine
        .queue
        .oldest_open()
        .and_then(|id| engine.queue.get(id).ok())
        .map(|job| Oldest {
            id: job.id,
            state: job.state,
            created_ms: job.created_ms,
            flow: job.flow,
            connector: job.connector,
            reason: job.reason,
        });
    let now_ms = engine.queue.clock().now_ms();
    Overview {
        journal: JournalCount {
            events: engine.journal.len(),
        },
        waiting,
        outcomes_since_start: outcomes,
        flows_since_start: flows,
        oldest_waiting,
        connectors: engine.connectors.values().map(|c| c.status()).collect(),
        instances: engine.queue.members(),
        last_hour: engine.metrics.last_hour(now_ms),
        now_ms,
        counted_since_ms: engine.metrics.counted_since(),
    }
}

/// Which jobs to list (the API's query string and the events page's search form).
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct JobFilter {
    /// ready, leased, retrying, parked, held, dead, done, skipped; empty: any state
    #[param(schema_with = schema::state_filter)]
    pub state: Option<String>,
    /// flow name
    pub flow: Option<String>,
    /// connector name
    pub connector: Option<String>,
    /// a CRM or ERP record id, or the order key
    pub record: Option<String>,
    /// reason code, e.g. fix_data
    pub reason: Option<String>,
    /// created at or after (2026-11-23 or RFC 3339); empty: any time
    #[param(schema_with = schema::since)]
    pub since: Option<String>,
    /// job id to page from (next_before of the previous page)
    #[param(schema_with = schema::job_id)]
    pub before: Option<JobId>,
    /// 1–500; default 50
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<usize>,
}

/// One page of jobs, newest first, and where the next page starts when there may be more.
pub fn jobs(engine: &Engine, filter: &JobFilter) -> Result<queue::Page, ApiError> {
    let bad = |message: String| ApiError(StatusCode::BAD_REQUEST, "bad_filter", message);
    let since_ms = match given(&filter.since) {
        Some(text) => Some(parse_since(text).ok_or_else(|| {
            bad(format!(
                "since {text:?} is not a date (2026-11-23) or an RFC 3339 time"
            ))
        })?),
        None => None,
    };
    let state = match &given(&filter.state) {
        Some(text) => {
            Some(State::parse(text).ok_or_else(|| bad(format!("unknown state {text:?}")))?)
        }
        None => None,
    };
    let limit = limit(filter.limit, 50, 500)?;
    let (flow, connector, reason, record) = (
        empty(&filter.flow),
        empty(&filter.connector),
        empty(&filter.reason),
        empty(&filter.record),
    );
    let keep = |job: &Job| {
        state.is_none_or(|s| job.state == s)
            && flow.is_none_or(|f| job.flow == f)
            && connector.is_none_or(|c| job.connector == c)
            && reason.is_none_or(|r| job.reason.as_ref().is_some_and(|x| x.code == r))
            && since_ms.is_none_or(|t| job.created_ms >= t)
            && record.is_none_or(|r| {
                job.object_id.as_deref() == Some(r)
                    || job.order_key == r
                    || job.external_id.as_deref() == Some(r)
            })
    };
    let scope = match (record, state) {
        (Some(record), _) => queue::Scope::Record(record),
        (None, Some(state)) if state.is_held_in_memory() => queue::Scope::State(state),
        _ => queue::Scope::All { since_ms },
    };
    Ok(engine.queue.list(scope, filter.before, limit, &keep)?)
}

/// A filter's text, when it says something.
fn empty(text: &Option<String>) -> Option<&str> {
    text.as_deref().map(str::trim).filter(|t| !t.is_empty())
}

/// A filter whose values are named in the API document (a state, a date): only an empty text
/// means "any"; anything else, blanks included, must be one of those values.
fn given(text: &Option<String>) -> Option<&str> {
    text.as_deref().filter(|t| !t.is_empty())
}

/// `2026-11-23` (midnight UTC) or an RFC 3339 time, as ms since the epoch.
fn parse_since(text: &str) -> Option<i64> {
    if let Ok(time) = chrono::DateTime::parse_from_rfc3339(text) {
        return Some(time.timestamp_millis());
    }
    let day = chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d").ok()?;
    Some(day.and_hms_opt(0, 0, 0)?.and_utc().timestamp_millis())
}

/// One job in full.
#[derive(Debug, Serialize, ToSchema)]
pub struct JobDetail {
    pub job: Job,
    pub idempotency_key: String,
    pub attempts: Vec<Attempt>,
    /// The journaled event, while the journal keeps it.
    pub event: Option<Event>,
    /// What the mapping in force makes of the event (the queue keeps no documents)…
    #[schema(value_type = Option<Object>)]
    pub document: Option<Value>,
    /// …or why it cannot.
    pub document_error: Option<String>,
    pub xrefs: Vec<Xref>,
    pub order_status: Option<String>,
}

/// A journaled event as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct Event {
    pub id: String,
    pub source: String,
    pub event_type: Option<String>,
    pub object: Option<String>,
    pub object_id: Option<String>,
    pub version: Option<String>,
    pub received_at: DateTime<Utc>,
    pub raw_body: String,
    #[schema(value_type = Object)]
    pub data: Value,
}

impl From<Envelope> for Event {
    fn from(envelope: Envelope) -> Self {
        Event {
            id: envelope.id,
            source: envelope.source,
            event_type: envelope.event_type,
            object: envelope.object,
            object_id: envelope.object_id,
            version: envelope.version,
            received_at: envelope.received_at,
            raw_body: envelope.raw_body,
            data: envelope.data,
        }
    }
}

/// A job with its idempotency key, attempts, event, mapped document, cross-references and
/// order status.
pub fn job(engine: &Engine, id: JobId) -> Result<JobDetail, ApiError> {
    let job = engine.queue.get(id)?;
    let attempts = engine.queue.attempts(id)?;
    let envelope = engine.journal.read(job.seq, job.at).ok();
    let data = job
        .payload
        .as_ref()
        .or_else(|| envelope.as_ref().map(|e| &e.data));
    let mapped = data.map(|data| crate::sync::process::dry_run(engine, &job, data));
    let (document, document_error) = match mapped {
        Some(Ok(document)) => (Some(document), None),
        Some(Err(why)) => (None, Some(why)),
        None => (None, Some("the event is no longer kept".to_owned())),
    };
    let xrefs = match &job.object_id {
        Some(record) => engine.queue.xrefs(record, 20)?,
        None => Vec::new(),
    };
    let order_status = engine.queue.status(&job.order_key)?;
    Ok(JobDetail {
        idempotency_key: job.idempotency_key(),
        attempts,
        event: envelope.map(Event::from),
        document,
        document_error,
        xrefs,
        order_status,
        job,
    })
}

/// Job ids listed per dead-letter group, newest first.
pub const GROUP_IDS: usize = 50;

#[derive(Debug, Serialize, ToSchema)]
pub struct DeadLetters {
    pub groups: Vec<DeadGroup>,
}

/// The dead letters of one reason code.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeadGroup {
    pub reason: String,
    pub count: u64,
    /// The newest [`GROUP_IDS`] of them.
    pub jobs: Vec<JobId>,
    /// The newest one's message.
    pub example: Option<String>,
}

/// Dead letters grouped by reason code: the count, an example message, and the newest
/// [`GROUP_IDS`] job ids of each group (bulk actions name the reason, not the ids).
pub fn dead_letters(engine: &Engine) -> DeadLetters {
    let groups = engine
        .queue
        .groups(State::Dead, GROUP_IDS)
        .into_iter()
        .map(|(reason, (count, jobs))| {
            let example = jobs
                .first()
                .and_then(|id| engine.queue.get(*id).ok())
                .and_then(|j| j.reason)
                .map(|r| r.message);
            DeadGroup {
                reason,
                count,
                jobs,
                example,
            }
        })
        .collect();
    DeadLetters { groups }
}

/// Retries or skips every dead letter with this reason code.
pub fn bulk_act(engine: &Engine, reason: &str, action: Action) -> Result<Vec<JobId>, ApiError> {
    let mut done = Vec::new();
    for id in engine.queue.ids_in(State::Dead) {
        let matches = engine
            .queue
            .entry(id)
            .is_some_and(|e| e.reason.as_deref() == Some(reason));
        if matches {
            engine.queue.act(id, action)?;
            done.push(id);
        }
    }
    Ok(done)
}
