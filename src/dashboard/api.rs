//! The operator's JSON API: jobs (list, inspect, retry, skip, edit-and-resubmit, bulk actions on
//! dead letters by reason), connectors (pause, resume, test), cross-references, the sandbox.
//! It changes jobs only through queue actions.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use super::data::{self, JobFilter};
use crate::envelope::Envelope;
use crate::mapping::live::LiveMappings;
use crate::queue::{self, Action, JobId, QueueError};
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
pub(super) fn limit(given: Option<usize>, default: usize, max: usize) -> Result<usize, ApiError> {
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

async fn overview(State(engine): Shared) -> Json<data::Overview> {
    Json(data::overview(&engine))
}

async fn list_jobs(
    State(engine): Shared,
    Query(filter): Query<JobFilter>,
) -> Result<Json<queue::Page>, ApiError> {
    Ok(Json(data::jobs(&engine, &filter)?))
}

async fn show_job(
    State(engine): Shared,
    Path(id): Path<JobId>,
) -> Result<Json<data::JobDetail>, ApiError> {
    Ok(Json(data::job(&engine, id)?))
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
    let done = data::bulk_act(&engine, &bulk.reason, bulk.action)?;
    Ok(Json(json!({ "count": done.len(), "jobs": done })))
}

async fn dead_letters(State(engine): Shared) -> Json<data::DeadLetters> {
    Json(data::dead_letters(&engine))
}

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
