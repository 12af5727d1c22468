//! The operator's JSON API: jobs (list, inspect, retry, skip, edit-and-resubmit, bulk actions on
//! dead letters by reason), connectors (pause, resume, test), cross-references, the sandbox.
//! It changes jobs only through queue actions.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::envelope::Envelope;
use crate::mapping::live::LiveMappings;
use crate::queue::{self, Action, Job, JobId, QueueError};
use crate::sync::Engine;

type Shared = State<Arc<Engine>>;

pub fn router(engine: Arc<Engine>) -> Router {
    Router::new()
        .route("/api/v1/overview", get(overview))
        .route("/api/v1/jobs", get(list_jobs))
        .route("/api/v1/jobs/bulk", post(bulk))
        .route("/api/v1/jobs/{id}", get(show_job))
        .route("/api/v1/jobs/{id}/retry", post(retry))
        .route("/api/v1/jobs/{id}/skip", post(skip))
        .route("/api/v1/jobs/{id}/accept", post(accept))
        .route("/api/v1/jobs/{id}/resubmit", post(resubmit))
        .route("/api/v1/dead-letters", get(dead_letters))
        .route("/api/v1/connectors", get(connectors))
        .route("/api/v1/connectors/{name}/pause", post(pause))
        .route("/api/v1/connectors/{name}/resume", post(resume))
        .route("/api/v1/connectors/{name}/test", post(test_connector))
        .route("/api/v1/connectors/{name}/retry-now", post(retry_now))
        .route("/api/v1/xrefs", get(xrefs).post(link))
        .route(
            "/api/v1/sandbox/{name}/records/{operation}",
            get(sandbox_records),
        )
        .route(
            "/api/v1/sandbox/{name}/orders/{reference}/{step}",
            post(sandbox_advance),
        )
        .with_state(engine)
}

/// `GET /api/v1/mappings`: the mappings in force with their versions, and the last reload.
pub fn mappings_router(live: Arc<LiveMappings>) -> Router {
    Router::new()
        .route("/api/v1/mappings", get(list_mappings))
        .with_state(live)
}

/// The JSON API's OpenAPI 3.1 description.
pub async fn openapi() -> impl IntoResponse {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        include_str!("openapi.json"),
    )
}

async fn list_mappings(State(live): State<Arc<LiveMappings>>) -> axum::Json<serde_json::Value> {
    let loaded = live.current();
    let mappings: Vec<serde_json::Value> = loaded
        .mappings
        .iter()
        .map(|m| {
            serde_json::json!({
                "flow": m.flow,
                "version": m.version,
                "event": m.event,
                "connector": m.connector,
                "operation": m.operation,
            })
        })
        .collect();
    axum::Json(serde_json::json!({ "mappings": mappings, "last_reload": live.last_reload() }))
}

/// An API error: a status and `{"error": {"code", "message"}}`.
pub struct ApiError(pub StatusCode, pub &'static str, pub String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({"error": {"code": self.1, "message": self.2}});
        (self.0, Json(body)).into_response()
    }
}

impl From<QueueError> for ApiError {
    fn from(error: QueueError) -> Self {
        match error {
            QueueError::NotFound(_) => {
                ApiError(StatusCode::NOT_FOUND, "not_found", error.to_string())
            }
            QueueError::WrongState { .. } => {
                ApiError(StatusCode::CONFLICT, "wrong_state", error.to_string())
            }
            other => ApiError(
                StatusCode::SERVICE_UNAVAILABLE,
                "store_unavailable",
                other.to_string(),
            ),
        }
    }
}

type Answer = Result<Json<Value>, ApiError>;

/// A page size: `default` when not given, refused outside 1..=`max` (as the API document says).
fn limit(given: Option<usize>, default: usize, max: usize) -> Result<usize, ApiError> {
    match given {
        None => Ok(default),
        Some(n) if (1..=max).contains(&n) => Ok(n),
        Some(n) => Err(ApiError(
            StatusCode::BAD_REQUEST,
            "bad_filter",
            format!("limit is 1 to {max}, not {n}"),
        )),
    }
}

fn not_found(what: &str) -> ApiError {
    ApiError(StatusCode::NOT_FOUND, "not_found", format!("no {what}"))
}

async fn overview(State(engine): Shared) -> Answer {
    Ok(Json(overview_data(&engine)))
}

/// Waiting jobs per connector and state, outcomes since start (per connector and per flow),
/// the oldest waiting job, the connectors, the last hour's deliveries per minute, the pollers.
pub fn overview_data(engine: &Engine) -> Value {
    let mut per_connector: BTreeMap<String, BTreeMap<&str, u64>> = BTreeMap::new();
    for ((connector, state), count) in engine.queue.counts() {
        *per_connector
            .entry(connector.to_string())
            .or_default()
            .entry(state.as_str())
            .or_default() += count;
    }
    let mut outcomes: BTreeMap<String, BTreeMap<&str, u64>> = BTreeMap::new();
    for ((connector, outcome), count) in engine.metrics.outcomes() {
        outcomes
            .entry(connector)
            .or_default()
            .insert(outcome, count);
    }
    let mut flows: BTreeMap<String, BTreeMap<&str, u64>> = BTreeMap::new();
    for ((flow, outcome), count) in engine.metrics.flow_outcomes() {
        flows.entry(flow).or_default().insert(outcome, count);
    }
    let oldest = engine
        .queue
        .oldest_open()
        .and_then(|id| engine.queue.get(id).ok());
    let now = engine.queue.clock().now_ms();
    json!({
        "journal": { "events": engine.journal.len() },
        "waiting": per_connector,
        "outcomes_since_start": outcomes,
        "flows_since_start": flows,
        "oldest_waiting": oldest.map(|job| json!({"id": job.id, "state": job.state, "created_ms": job.created_ms, "flow": job.flow, "connector": job.connector, "reason": job.reason})),
        "connectors": engine.connectors.values().map(|c| c.status()).collect::<Vec<_>>(),
        "last_hour": engine.metrics.last_hour(now),
        "now_ms": now,
        "counted_since_ms": engine.metrics.counted_since(),
    })
}

#[derive(Debug, Default, Deserialize)]
pub struct JobFilter {
    pub state: Option<String>,
    pub flow: Option<String>,
    pub connector: Option<String>,
    /// A CRM or ERP record id, or the ordering key.
    pub record: Option<String>,
    pub reason: Option<String>,
    /// Created at or after this time (RFC 3339 or a date).
    pub since: Option<String>,
    pub before: Option<JobId>,
    pub limit: Option<usize>,
}

async fn list_jobs(State(engine): Shared, Query(filter): Query<JobFilter>) -> Answer {
    Ok(Json(list_data(&engine, &filter)?))
}

/// One page of jobs, newest first: `jobs`, and `next_before` when there may be more.
pub fn list_data(engine: &Engine, filter: &JobFilter) -> Result<Value, ApiError> {
    let since_ms = match empty(&filter.since) {
        Some(text) => Some(parse_since(text).ok_or_else(|| {
            ApiError(
                StatusCode::BAD_REQUEST,
                "bad_filter",
                format!("since {text:?} is not a date (2026-11-23) or an RFC 3339 time"),
            )
        })?),
        None => None,
    };
    let state = match &empty(&filter.state) {
        Some(text) => Some(queue::State::parse(text).ok_or_else(|| {
            ApiError(
                StatusCode::BAD_REQUEST,
                "bad_filter",
                format!("unknown state {text:?}"),
            )
        })?),
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
    let page = engine.queue.list(scope, filter.before, limit, &keep)?;
    Ok(json!({ "jobs": page.jobs, "next_before": page.next_before }))
}

/// A filter's text, when it says something.
fn empty(text: &Option<String>) -> Option<&str> {
    text.as_deref().map(str::trim).filter(|t| !t.is_empty())
}

/// `2026-11-23` (midnight UTC) or an RFC 3339 time, as ms since the epoch.
fn parse_since(text: &str) -> Option<i64> {
    if let Ok(time) = chrono::DateTime::parse_from_rfc3339(text) {
        return Some(time.timestamp_millis());
    }
    let day = chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d").ok()?;
    Some(day.and_hms_opt(0, 0, 0)?.and_utc().timestamp_millis())
}

async fn show_job(State(engine): Shared, Path(id): Path<JobId>) -> Answer {
    Ok(Json(job_data(&engine, id)?))
}

/// A job with its idempotency key, attempts, event, cross-references and order status.
pub fn job_data(engine: &Engine, id: JobId) -> Result<Value, ApiError> {
    let job = engine.queue.get(id)?;
    let attempts = engine.queue.attempts(id)?;
    let envelope = engine.journal.read(job.seq, job.at).ok();
    let data = job
        .payload
        .clone()
        .or_else(|| envelope.as_ref().map(|e| e.data.clone()));
    // What the mapping in force makes of it (the queue keeps no documents).
    let mapped = data.map(|data| crate::sync::process::dry_run(engine, &job, &data));
    let (document, document_error) = match mapped {
        Some(Ok(document)) => (Some(document), None),
        Some(Err(why)) => (None, Some(why)),
        None => (None, Some("the event is no longer kept".to_owned())),
    };
    let event = envelope.map(event_json);
    let xrefs = match &job.object_id {
        Some(record) => engine.queue.xrefs(record, 20)?,
        None => Vec::new(),
    };
    let order_status = engine.queue.status(&job.order_key)?;
    Ok(json!({
        "job": job,
        "idempotency_key": job.idempotency_key(),
        "attempts": attempts,
        "event": event,
        "document": document,
        "document_error": document_error,
        "xrefs": xrefs,
        "order_status": order_status,
    }))
}

fn event_json(envelope: Envelope) -> Value {
    json!({
        "id": envelope.id,
        "source": envelope.source,
        "event_type": envelope.event_type,
        "object": envelope.object,
        "object_id": envelope.object_id,
        "version": envelope.version,
        "received_at": envelope.received_at,
        "raw_body": envelope.raw_body,
        "data": envelope.data,
    })
}

async fn retry(State(engine): Shared, Path(id): Path<JobId>) -> Answer {
    Ok(Json(json!({ "job": engine.queue.act(id, Action::Retry)? })))
}

async fn skip(State(engine): Shared, Path(id): Path<JobId>) -> Answer {
    Ok(Json(json!({ "job": engine.queue.act(id, Action::Skip)? })))
}

/// A job held as `amount_mismatch` goes through with the target's own figures.
async fn accept(State(engine): Shared, Path(id): Path<JobId>) -> Answer {
    Ok(Json(
        json!({ "job": engine.queue.act(id, Action::Accept)? }),
    ))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Resubmit {
    /// The corrected event data (what mapping rules call `$`); without it the job runs again on
    /// the data it has (after a mapping fix).
    payload: Option<Value>,
}

async fn resubmit(
    State(engine): Shared,
    Path(id): Path<JobId>,
    body: Option<Json<Resubmit>>,
) -> Answer {
    let body = body.map(|Json(body)| body).unwrap_or_default();
    if body.payload.as_ref().is_some_and(|p| !p.is_object()) {
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "payload must be a JSON object (the event data)".into(),
        ));
    }
    Ok(Json(
        json!({ "job": engine.queue.resubmit(id, body.payload)? }),
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Bulk {
    /// The reason code of the dead letters to act on (`fix_data`, `retries_exhausted`, …).
    reason: String,
    action: Action,
}

async fn bulk(State(engine): Shared, Json(bulk): Json<Bulk>) -> Answer {
    let done = bulk_act(&engine, &bulk.reason, bulk.action)?;
    Ok(Json(json!({ "count": done.len(), "jobs": done })))
}

/// Retries or skips every dead letter with this reason code.
pub fn bulk_act(engine: &Engine, reason: &str, action: Action) -> Result<Vec<JobId>, ApiError> {
    let mut done = Vec::new();
    for id in engine.queue.ids_in(queue::State::Dead) {
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

async fn dead_letters(State(engine): Shared) -> Answer {
    Ok(Json(dead_data(&engine)))
}

/// Dead letters grouped by reason code: the count, an example message, and the newest
/// [`GROUP_IDS`] job ids of each group (bulk actions name the reason, not the ids).
pub fn dead_data(engine: &Engine) -> Value {
    let groups: Vec<Value> = engine
        .queue
        .groups(queue::State::Dead, GROUP_IDS)
        .into_iter()
        .map(|(reason, (count, ids))| {
            let example = engine
                .queue
                .get(ids[0])
                .ok()
                .and_then(|j| j.reason)
                .map(|r| r.message);
            json!({"reason": reason, "count": count, "jobs": ids, "example": example})
        })
        .collect();
    json!({ "groups": groups })
}

/// Job ids listed per dead-letter group, newest first.
pub const GROUP_IDS: usize = 50;

async fn connectors(State(engine): Shared) -> Answer {
    let list: Vec<_> = engine.connectors.values().map(|c| c.status()).collect();
    Ok(Json(json!({ "connectors": list })))
}

async fn pause(State(engine): Shared, Path(name): Path<String>) -> Answer {
    let live = engine
        .connector(&name)
        .ok_or_else(|| not_found("such connector"))?;
    live.pause("paused by an operator".into());
    Ok(Json(json!({ "connector": live.status() })))
}

async fn resume(State(engine): Shared, Path(name): Path<String>) -> Answer {
    let live = engine
        .connector(&name)
        .ok_or_else(|| not_found("such connector"))?;
    live.resume();
    engine.queue.wake(&name);
    Ok(Json(json!({ "connector": live.status() })))
}

/// Every retrying job of the connector runs now instead of at its scheduled time.
async fn retry_now(State(engine): Shared, Path(name): Path<String>) -> Answer {
    engine
        .connector(&name)
        .ok_or_else(|| not_found("such connector"))?;
    let released = engine.queue.release_retrying(&name, usize::MAX)?;
    Ok(Json(json!({ "released": released })))
}

async fn test_connector(State(engine): Shared, Path(name): Path<String>) -> Answer {
    let live = engine
        .connector(&name)
        .ok_or_else(|| not_found("such connector"))?;
    Ok(Json(match live.adapter().probe().await {
        Ok(message) => json!({"ok": true, "message": message}),
        Err(failure) => json!({"ok": false, "message": failure.message}),
    }))
}

#[derive(Debug, Deserialize)]
struct XrefFilter {
    id: Option<String>,
    limit: Option<usize>,
}

async fn xrefs(State(engine): Shared, Query(filter): Query<XrefFilter>) -> Answer {
    let limit = limit(filter.limit, 100, 1000)?;
    let list = engine
        .queue
        .xrefs(filter.id.as_deref().unwrap_or(""), limit)?;
    Ok(Json(json!({ "xrefs": list })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Link {
    /// The connector the record is in (`erp`).
    system: String,
    /// The kind of record (`sales_order`, `customer`: a mapping's target schema).
    kind: String,
    crm_id: String,
    external_id: String,
}

/// An operator links a CRM record to a record already in a target (an order typed in by hand,
/// or made before handoff was connected): its status flows back from then on.
async fn link(State(engine): Shared, Json(link): Json<Link>) -> Answer {
    engine
        .connector(&link.system)
        .ok_or_else(|| not_found("such connector (system)"))?;
    let blank = [&link.kind, &link.crm_id, &link.external_id]
        .iter()
        .any(|v| v.trim().is_empty());
    if blank {
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "kind, crm_id and external_id must not be empty".into(),
        ));
    }
    let xref = crate::queue::records::Xref {
        system: link.system,
        kind: link.kind,
        crm_id: link.crm_id,
        external_id: link.external_id,
        flow: "linked_by_operator".into(),
        job: 0,
        at_ms: engine.queue.clock().now_ms(),
    };
    engine.queue.link(xref.clone())?;
    tracing::info!(system = %xref.system, kind = %xref.kind, crm_id = %xref.crm_id, external_id = %xref.external_id, "cross-reference linked by an operator");
    Ok(Json(json!({ "xref": xref })))
}

fn sandbox_of(
    engine: &Engine,
    name: &str,
) -> Result<Arc<crate::adapters::sandbox::Sandbox>, ApiError> {
    engine
        .connector(name)
        .and_then(|live| live.connector.sandbox.clone())
        .ok_or_else(|| not_found("sandbox connector by that name"))
}

async fn sandbox_records(
    State(engine): Shared,
    Path((name, operation)): Path<(String, String)>,
) -> Answer {
    let sandbox = sandbox_of(&engine, &name)?;
    let list = sandbox.records(&operation).map_err(|e| {
        ApiError(
            StatusCode::SERVICE_UNAVAILABLE,
            "store_unavailable",
            e.to_string(),
        )
    })?;
    Ok(Json(json!({ "sandbox": true, "records": list })))
}

/// Advances a sandbox order and journals the status event the ERP would send.
async fn sandbox_advance(
    State(engine): Shared,
    Path((name, reference, step)): Path<(String, String, String)>,
) -> Answer {
    let sandbox = sandbox_of(&engine, &name)?;
    let data = sandbox
        .advance(&reference, &step)
        .map_err(|message| ApiError(StatusCode::CONFLICT, "cannot_advance", message))?;
    let sequence = data
        .get("sequence")
        .map(ToString::to_string)
        .unwrap_or_default();
    let raw_body = data.to_string();
    let envelope = Envelope {
        id: format!("{name}-{reference}-{sequence}"),
        source: name.clone(),
        event_type: Some("order_status.changed".into()),
        ignored: false,
        object: Some("sales_order".into()),
        object_id: Some(reference),
        version: Some(sequence),
        signed_at: None,
        received_at: chrono::Utc::now(),
        raw_body,
        data: data.clone(),
        data_is_raw_body: true,
    };
    engine.journal.append(vec![envelope]).await.map_err(|e| {
        ApiError(
            StatusCode::SERVICE_UNAVAILABLE,
            "store_unavailable",
            e.to_string(),
        )
    })?;
    Ok(Json(json!({ "sandbox": true, "event": data })))
}
