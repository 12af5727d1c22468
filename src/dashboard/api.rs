//! The operator's JSON API: jobs (list, inspect, retry, skip, edit-and-resubmit, bulk actions on
//! dead letters by reason), connectors (pause, resume, test), cross-references, mappings, the
//! sandbox. It changes jobs only through queue actions. Each handler carries its OpenAPI
//! description (`#[utoipa::path]`) and is registered with `routes!`, which serves it and
//! documents it in one step (openapi.rs).

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::{IntoParams, OpenApi, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::api_reconcile;
use super::data::{self, JobFilter};
use super::openapi::{ApiDoc, Error};
use crate::adapters::sandbox::Record;
use crate::envelope::Envelope;
use crate::mapping::live::{LiveMappings, ReloadStatus};
use crate::queue::records::Xref;
use crate::queue::{self, Action, Job, JobId, QueueError};
use crate::sync::{ConnectorStatus, Engine};

type Shared = State<Arc<Engine>>;

/// The API's routes, and its OpenAPI document made from the same handlers.
pub fn router(
    engine: Arc<Engine>,
    mappings: Arc<LiveMappings>,
) -> (Router, utoipa::openapi::OpenApi) {
    let (api, mapping_routes) = routes();
    api.with_state(engine)
        .merge(mapping_routes.with_state(mappings))
        .split_for_parts()
}

/// The API's OpenAPI document (what `/api/v1/openapi.json` serves).
pub fn document() -> utoipa::openapi::OpenApi {
    let (api, mapping_routes) = routes();
    let mut document = api.split_for_parts().1;
    document.merge(mapping_routes.split_for_parts().1);
    document
}

/// Every handler, registered once: `routes!` both routes it and documents it.
fn routes() -> (OpenApiRouter<Arc<Engine>>, OpenApiRouter<Arc<LiveMappings>>) {
    let api = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(overview))
        .routes(routes!(list_jobs))
        .routes(routes!(bulk))
        .routes(routes!(show_job))
        .routes(routes!(retry))
        .routes(routes!(skip))
        .routes(routes!(accept))
        .routes(routes!(resubmit))
        .routes(routes!(dead_letters))
        .routes(routes!(connectors))
        .routes(routes!(pause))
        .routes(routes!(resume))
        .routes(routes!(test_connector))
        .routes(routes!(retry_now))
        .routes(routes!(backfill_products, backfill_status))
        .routes(routes!(api_reconcile::start_run, api_reconcile::list_runs))
        .routes(routes!(api_reconcile::show_run))
        .routes(routes!(api_reconcile::act_on_row))
        .routes(routes!(api_reconcile::resync))
        .routes(routes!(xrefs, link))
        .routes(routes!(sandbox_records))
        .routes(routes!(sandbox_advance));
    let mappings = OpenApiRouter::new().routes(routes!(list_mappings));
    (api, mappings)
}

/// One mapping in force.
#[derive(Debug, Serialize, ToSchema)]
pub struct MappingInfo {
    flow: String,
    version: String,
    event: String,
    connector: String,
    operation: String,
    /// It has a `reconcile:` block (`handoff reconcile run` compares it).
    reconciled: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Mappings {
    mappings: Vec<MappingInfo>,
    last_reload: ReloadStatus,
}

/// The mappings in force with their versions, and how the last reload went.
#[utoipa::path(get, path = "/api/v1/mappings", tag = "mappings",
    summary = "Mappings in force (flow, version, event, target) and the last reload",
    responses((status = 200, body = Mappings), (status = 401, response = Error),
        (status = 403, response = Error)))]
async fn list_mappings(State(live): State<Arc<LiveMappings>>) -> Json<Mappings> {
    let loaded = live.current();
    let mappings = loaded
        .mappings
        .iter()
        .map(|m| MappingInfo {
            flow: m.flow.clone(),
            version: m.version.clone(),
            event: m.event.clone(),
            connector: m.connector.clone(),
            operation: m.operation.clone(),
            reconciled: m.reconcile.is_some(),
        })
        .collect();
    Json(Mappings {
        mappings,
        last_reload: live.last_reload(),
    })
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

pub(super) type Answer<T> = Result<Json<T>, ApiError>;

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

/// Jobs waiting per connector and state, outcomes since the count began, the oldest waiting
/// job, the connectors, deliveries per minute over the last hour.
#[utoipa::path(get, path = "/api/v1/overview", tag = "overview",
    summary = "Jobs waiting per connector and state, outcomes since start per connector and flow, oldest waiting job, connectors (circuit, pause, last error, poller), deliveries per minute over the last hour",
    responses((status = 200, body = data::Overview), (status = 401, response = Error),
        (status = 403, response = Error)))]
async fn overview(State(engine): Shared) -> Json<data::Overview> {
    Json(data::overview(&engine))
}

#[utoipa::path(get, path = "/api/v1/jobs", tag = "jobs",
    summary = "Jobs newest first, filtered and paged",
    params(JobFilter),
    responses((status = 200, body = queue::Page), (status = 400, response = Error),
        (status = 401, response = Error), (status = 403, response = Error),
        (status = 503, response = Error)))]
async fn list_jobs(State(engine): Shared, Query(filter): Query<JobFilter>) -> Answer<queue::Page> {
    Ok(Json(data::jobs(&engine, &filter)?))
}

/// A job's id in a path.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
struct JobPath {
    /// job id
    id: JobId,
}

#[utoipa::path(get, path = "/api/v1/jobs/{id}", tag = "jobs",
    summary = "A job: idempotency key, attempts, event (raw and parsed), mapped document, cross-references, order status",
    params(JobPath),
    responses((status = 200, body = data::JobDetail), (status = 400, response = Error),
        (status = 401, response = Error), (status = 403, response = Error),
        (status = 404, response = Error), (status = 503, response = Error)))]
async fn show_job(
    State(engine): Shared,
    Path(JobPath { id }): Path<JobPath>,
) -> Answer<data::JobDetail> {
    Ok(Json(data::job(&engine, id)?))
}

/// A job after an operator's action.
#[derive(Debug, Serialize, ToSchema)]
struct Acted {
    job: Job,
}

#[utoipa::path(post, path = "/api/v1/jobs/{id}/retry", tag = "jobs",
    summary = "Run a dead, parked, held or retrying job now",
    params(JobPath),
    responses((status = 200, body = Acted), (status = 400, response = Error),
        (status = 401, response = Error), (status = 403, response = Error),
        (status = 404, response = Error), (status = 409, response = Error),
        (status = 503, response = Error)))]
async fn retry(State(engine): Shared, Path(JobPath { id }): Path<JobPath>) -> Answer<Acted> {
    let job = engine.queue.act(id, Action::Retry)?;
    Ok(Json(Acted { job }))
}

#[utoipa::path(post, path = "/api/v1/jobs/{id}/skip", tag = "jobs",
    summary = "Settle a job as skipped",
    params(JobPath),
    responses((status = 200, body = Acted), (status = 400, response = Error),
        (status = 401, response = Error), (status = 403, response = Error),
        (status = 404, response = Error), (status = 409, response = Error),
        (status = 503, response = Error)))]
async fn skip(State(engine): Shared, Path(JobPath { id }): Path<JobPath>) -> Answer<Acted> {
    let job = engine.queue.act(id, Action::Skip)?;
    Ok(Json(Acted { job }))
}

/// A job held as `amount_mismatch` goes through with the target's own figures.
#[utoipa::path(post, path = "/api/v1/jobs/{id}/accept", tag = "jobs",
    summary = "Accept the target's own figures for a job held as amount_mismatch",
    params(JobPath),
    responses((status = 200, body = Acted), (status = 400, response = Error),
        (status = 401, response = Error), (status = 403, response = Error),
        (status = 404, response = Error), (status = 409, response = Error),
        (status = 503, response = Error)))]
async fn accept(State(engine): Shared, Path(JobPath { id }): Path<JobPath>) -> Answer<Acted> {
    let job = engine.queue.act(id, Action::Accept)?;
    Ok(Json(Acted { job }))
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct Resubmit {
    /// The corrected event data (what mapping rules call `$`); without it the job runs again on
    /// the data it has (after a mapping fix).
    #[schema(value_type = Option<Object>)]
    payload: Option<Value>,
}

#[utoipa::path(post, path = "/api/v1/jobs/{id}/resubmit", tag = "jobs",
    summary = "Run again on corrected event data (payload), or on the data as it was ({}), under a new idempotency key",
    params(JobPath),
    request_body(content = Option<Resubmit>, content_type = "application/json"),
    responses((status = 200, body = Acted), (status = 400, response = Error),
        (status = 401, response = Error), (status = 403, response = Error),
        (status = 404, response = Error), (status = 409, response = Error),
        (status = 415, response = Error), (status = 422, response = Error),
        (status = 503, response = Error)))]
async fn resubmit(
    State(engine): Shared,
    Path(JobPath { id }): Path<JobPath>,
    body: Option<Json<Option<Resubmit>>>,
) -> Answer<Acted> {
    // No body, `null` and `{}` all mean: run again on the data as it was.
    let body = body.and_then(|Json(body)| body).unwrap_or_default();
    if body.payload.as_ref().is_some_and(|p| !p.is_object()) {
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "payload must be a JSON object (the event data)".into(),
        ));
    }
    let job = engine.queue.resubmit(id, body.payload)?;
    Ok(Json(Acted { job }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct Bulk {
    /// The reason code of the dead letters to act on (`fix_data`, `retries_exhausted`, …).
    reason: String,
    action: Action,
}

/// What a bulk action did.
#[derive(Debug, Serialize, ToSchema)]
struct BulkDone {
    count: usize,
    jobs: Vec<JobId>,
}

#[utoipa::path(post, path = "/api/v1/jobs/bulk", tag = "jobs",
    summary = "Retry or skip every dead letter with a reason code",
    request_body = Bulk,
    responses((status = 200, body = BulkDone), (status = 400, response = Error),
        (status = 401, response = Error), (status = 403, response = Error),
        (status = 404, response = Error), (status = 409, response = Error),
        (status = 415, response = Error), (status = 422, response = Error),
        (status = 503, response = Error)))]
async fn bulk(State(engine): Shared, Json(bulk): Json<Bulk>) -> Answer<BulkDone> {
    let jobs = data::bulk_act(&engine, &bulk.reason, bulk.action)?;
    Ok(Json(BulkDone {
        count: jobs.len(),
        jobs,
    }))
}

#[utoipa::path(get, path = "/api/v1/dead-letters", tag = "jobs",
    summary = "Dead letters grouped by reason code: count, an example message, the newest 50 job ids",
    responses((status = 200, body = data::DeadLetters), (status = 401, response = Error),
        (status = 403, response = Error)))]
async fn dead_letters(State(engine): Shared) -> Json<data::DeadLetters> {
    Json(data::dead_letters(&engine))
}

#[derive(Debug, Serialize, ToSchema)]
struct Connectors {
    connectors: Vec<ConnectorStatus>,
}

#[utoipa::path(get, path = "/api/v1/connectors", tag = "connectors",
    summary = "Connectors with circuit state, pause, last error, poller",
    responses((status = 200, body = Connectors), (status = 401, response = Error),
        (status = 403, response = Error)))]
async fn connectors(State(engine): Shared) -> Json<Connectors> {
    let connectors = engine.connectors.values().map(|c| c.status()).collect();
    Json(Connectors { connectors })
}

/// A connector's name in a path.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
struct ConnectorPath {
    /// connector name
    name: String,
}

/// A connector after an operator's action.
#[derive(Debug, Serialize, ToSchema)]
struct ConnectorAnswer {
    connector: ConnectorStatus,
}

fn live<'a>(engine: &'a Engine, name: &str) -> Result<&'a Arc<crate::sync::Live>, ApiError> {
    engine
        .connector(name)
        .ok_or_else(|| not_found("such connector"))
}

#[utoipa::path(post, path = "/api/v1/connectors/{name}/pause", tag = "connectors",
    summary = "Pause a connector",
    params(ConnectorPath),
    responses((status = 200, body = ConnectorAnswer), (status = 400, response = Error), (status = 401, response = Error),
        (status = 403, response = Error), (status = 404, response = Error)))]
async fn pause(
    State(engine): Shared,
    Path(ConnectorPath { name }): Path<ConnectorPath>,
) -> Answer<ConnectorAnswer> {
    let live = live(&engine, &name)?;
    live.pause("paused by an operator".into());
    Ok(Json(ConnectorAnswer {
        connector: live.status(),
    }))
}

#[utoipa::path(post, path = "/api/v1/connectors/{name}/resume", tag = "connectors",
    summary = "Resume a connector",
    params(ConnectorPath),
    responses((status = 200, body = ConnectorAnswer), (status = 400, response = Error), (status = 401, response = Error),
        (status = 403, response = Error), (status = 404, response = Error)))]
async fn resume(
    State(engine): Shared,
    Path(ConnectorPath { name }): Path<ConnectorPath>,
) -> Answer<ConnectorAnswer> {
    let live = live(&engine, &name)?;
    live.resume();
    engine.queue.wake(&name);
    Ok(Json(ConnectorAnswer {
        connector: live.status(),
    }))
}

#[derive(Debug, Serialize, ToSchema)]
struct Released {
    /// How many retrying jobs were made ready.
    released: usize,
}

/// Every retrying job of the connector runs now instead of at its scheduled time.
#[utoipa::path(post, path = "/api/v1/connectors/{name}/retry-now", tag = "connectors",
    summary = "Run every retrying job of the connector now",
    params(ConnectorPath),
    responses((status = 200, body = Released), (status = 400, response = Error), (status = 401, response = Error),
        (status = 403, response = Error), (status = 404, response = Error),
        (status = 503, response = Error)))]
async fn retry_now(
    State(engine): Shared,
    Path(ConnectorPath { name }): Path<ConnectorPath>,
) -> Answer<Released> {
    live(&engine, &name)?;
    let released = engine.queue.release_retrying(&name, usize::MAX)?;
    Ok(Json(Released { released }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct BackfillOptions {
    /// true: read and count only, journal nothing
    dry_run: Option<bool>,
}

#[utoipa::path(post, path = "/api/v1/connectors/{name}/products/backfill", tag = "connectors",
    summary = "Start product sync's first load: every product and price of an ERP that masters them (in the background; poll GET)",
    params(ConnectorPath, BackfillOptions),
    responses((status = 202, body = crate::sync::backfill::Run), (status = 400, response = Error),
        (status = 401, response = Error), (status = 403, response = Error),
        (status = 404, response = Error), (status = 409, response = Error)))]
async fn backfill_products(
    State(engine): Shared,
    Path(ConnectorPath { name }): Path<ConnectorPath>,
    Query(options): Query<BackfillOptions>,
) -> Result<(StatusCode, Json<crate::sync::backfill::Run>), ApiError> {
    let live = live(&engine, &name)?;
    let source = live.connector.products.clone().ok_or_else(|| {
        ApiError(
            StatusCode::CONFLICT,
            "no_products",
            format!("connector {name} does not master products (a Tryton connector does)"),
        )
    })?;
    let dry_run = options.dry_run.unwrap_or(false);
    let run = crate::sync::backfill::start(&engine, &name, source, dry_run).ok_or_else(|| {
        ApiError(
            StatusCode::CONFLICT,
            "already_running",
            format!("a backfill of {name} is running; GET this path for its progress"),
        )
    })?;
    Ok((StatusCode::ACCEPTED, Json(run)))
}

#[utoipa::path(get, path = "/api/v1/connectors/{name}/products/backfill", tag = "connectors",
    summary = "The last product backfill of a connector: running (phase), done (report) or failed (error)",
    params(ConnectorPath),
    responses((status = 200, body = crate::sync::backfill::Run), (status = 400, response = Error),
        (status = 401, response = Error), (status = 403, response = Error),
        (status = 404, response = Error)))]
async fn backfill_status(
    State(engine): Shared,
    Path(ConnectorPath { name }): Path<ConnectorPath>,
) -> Answer<crate::sync::backfill::Run> {
    live(&engine, &name)?;
    engine
        .backfills
        .get(&name)
        .map(Json)
        .ok_or_else(|| not_found("backfill of this connector yet"))
}

/// The answer to a harmless request to the target.
#[derive(Debug, Serialize, ToSchema)]
struct Probe {
    ok: bool,
    message: String,
}

#[utoipa::path(post, path = "/api/v1/connectors/{name}/test", tag = "connectors",
    summary = "Test the connection (a harmless request)",
    params(ConnectorPath),
    responses((status = 200, body = Probe), (status = 400, response = Error), (status = 401, response = Error),
        (status = 403, response = Error), (status = 404, response = Error)))]
async fn test_connector(
    State(engine): Shared,
    Path(ConnectorPath { name }): Path<ConnectorPath>,
) -> Answer<Probe> {
    let live = live(&engine, &name)?;
    Ok(Json(match live.adapter().probe().await {
        Ok(message) => Probe { ok: true, message },
        Err(failure) => Probe {
            ok: false,
            message: failure.message,
        },
    }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct XrefFilter {
    /// a CRM id or an id in a target; empty: any
    id: Option<String>,
    /// 1–1000; default 100
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<usize>,
}

#[derive(Debug, Serialize, ToSchema)]
struct Xrefs {
    xrefs: Vec<Xref>,
}

#[utoipa::path(get, path = "/api/v1/xrefs", tag = "xrefs",
    summary = "Cross-references: CRM id ↔ id in the target",
    params(XrefFilter),
    responses((status = 200, body = Xrefs), (status = 400, response = Error),
        (status = 401, response = Error), (status = 403, response = Error),
        (status = 503, response = Error)))]
async fn xrefs(State(engine): Shared, Query(filter): Query<XrefFilter>) -> Answer<Xrefs> {
    let limit = limit(filter.limit, 100, 1000)?;
    let xrefs = engine
        .queue
        .xrefs(filter.id.as_deref().unwrap_or(""), limit)?;
    Ok(Json(Xrefs { xrefs }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct Link {
    /// The connector the record is in (`erp`).
    system: String,
    /// The kind of record (`sales_order`, `customer`: a mapping's target schema).
    kind: String,
    crm_id: String,
    external_id: String,
}

#[derive(Debug, Serialize, ToSchema)]
struct Linked {
    xref: Xref,
}

/// An operator links a CRM record to a record already in a target (an order typed in by hand,
/// or made before handoff was connected): its status flows back from then on.
#[utoipa::path(post, path = "/api/v1/xrefs", tag = "xrefs",
    summary = "Link a CRM record to a record already in a target (its status then flows back)",
    request_body = Link,
    responses((status = 200, body = Linked), (status = 400, response = Error),
        (status = 401, response = Error), (status = 403, response = Error),
        (status = 404, response = Error), (status = 415, response = Error),
        (status = 422, response = Error), (status = 503, response = Error)))]
async fn link(State(engine): Shared, Json(link): Json<Link>) -> Answer<Linked> {
    live(&engine, &link.system).map_err(|_| not_found("such connector (system)"))?;
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
    let xref = Xref {
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
    Ok(Json(Linked { xref }))
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

/// What a sandbox connector holds.
#[derive(Debug, Serialize, ToSchema)]
struct SandboxRecords {
    /// Always true: these records are in handoff's own sandbox, not a real system.
    sandbox: bool,
    records: Vec<Record>,
}

#[utoipa::path(get, path = "/api/v1/sandbox/{name}/records/{operation}", tag = "sandbox",
    summary = "What a sandbox connector holds",
    params(("name" = String, Path, description = "sandbox connector name"),
        ("operation" = String, Path, description = "the connector operation that wrote them")),
    responses((status = 200, body = SandboxRecords), (status = 400, response = Error),
        (status = 401, response = Error), (status = 403, response = Error),
        (status = 404, response = Error), (status = 503, response = Error)))]
async fn sandbox_records(
    State(engine): Shared,
    Path((name, operation)): Path<(String, String)>,
) -> Answer<SandboxRecords> {
    let sandbox = sandbox_of(&engine, &name)?;
    let records = sandbox.records(&operation).map_err(|e| {
        ApiError(
            StatusCode::SERVICE_UNAVAILABLE,
            "store_unavailable",
            e.to_string(),
        )
    })?;
    Ok(Json(SandboxRecords {
        sandbox: true,
        records,
    }))
}

/// The status event a sandbox journaled.
#[derive(Debug, Serialize, ToSchema)]
struct SandboxEvent {
    sandbox: bool,
    #[schema(value_type = Object)]
    event: Value,
}

/// Advances a sandbox order and journals the status event the ERP would send.
#[utoipa::path(post, path = "/api/v1/sandbox/{name}/orders/{reference}/{step}", tag = "sandbox",
    summary = "Advance a sandbox order (confirm, ship, invoice, pay, cancel); journals the status event",
    params(("name" = String, Path, description = "sandbox ERP connector name"),
        ("reference" = String, Path, description = "the order's reference (the CRM opportunity id)"),
        ("step" = String, Path, description = "confirm, ship, invoice, pay or cancel")),
    responses((status = 200, body = SandboxEvent), (status = 400, response = Error),
        (status = 401, response = Error), (status = 403, response = Error),
        (status = 404, response = Error), (status = 409, response = Error),
        (status = 503, response = Error)))]
async fn sandbox_advance(
    State(engine): Shared,
    Path((name, reference, step)): Path<(String, String, String)>,
) -> Answer<SandboxEvent> {
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
    Ok(Json(SandboxEvent {
        sandbox: true,
        event: data,
    }))
}
