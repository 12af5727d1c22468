//! The reconciliation part of the API: start a run of a flow, follow it, read its rows, act on
//! a row (replay, adopt, ignore), resync one record.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::api::{ApiError, limit};
use crate::sync::Engine;
use crate::sync::reconcile::{self, Ask, Row, RowAction, Run, StartError};

type Shared = State<Arc<Engine>>;

#[utoipa::path(post, path = "/api/v1/reconcile/runs", tag = "reconcile",
    summary = "Start a reconciliation run of a flow (in the background; poll its GET)",
    request_body = Ask,
    responses((status = 202, body = Run), (status = 400, response = super::openapi::Error),
        (status = 401, response = super::openapi::Error), (status = 403, response = super::openapi::Error),
        (status = 404, response = super::openapi::Error), (status = 409, response = super::openapi::Error), (status = 415, response = super::openapi::Error),
        (status = 422, response = super::openapi::Error)))]
pub(super) async fn start_run(
    State(engine): Shared,
    Json(ask): Json<Ask>,
) -> Result<(StatusCode, Json<Run>), ApiError> {
    match reconcile::start(&engine, &ask) {
        Ok(run) => Ok((StatusCode::ACCEPTED, Json(run))),
        Err(StartError::NoFlow(why)) => Err(ApiError(StatusCode::NOT_FOUND, "not_found", why)),
        Err(StartError::NotReconciled(why)) => {
            Err(ApiError(StatusCode::CONFLICT, "not_reconciled", why))
        }
        Err(error @ StartError::Running { .. }) => Err(ApiError(
            StatusCode::CONFLICT,
            "already_running",
            error.to_string(),
        )),
        Err(StartError::Store(error)) => Err(error.into()),
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct RunsQuery {
    /// 1–200; default 50
    #[param(minimum = 1, maximum = 200)]
    limit: Option<usize>,
}

#[derive(Debug, Serialize, ToSchema)]
pub(super) struct Runs {
    /// Newest first, without their rows.
    runs: Vec<Run>,
}

#[utoipa::path(get, path = "/api/v1/reconcile/runs", tag = "reconcile",
    summary = "Reconciliation runs, newest first: state, counts per drift class",
    params(RunsQuery),
    responses((status = 200, body = Runs), (status = 400, response = super::openapi::Error),
        (status = 401, response = super::openapi::Error), (status = 403, response = super::openapi::Error)))]
pub(super) async fn list_runs(
    State(engine): Shared,
    Query(query): Query<RunsQuery>,
) -> Result<Json<Runs>, ApiError> {
    let limit = limit(query.limit, 50, 200)?;
    let runs = reconcile::runs(&engine, limit)?;
    Ok(Json(Runs {
        runs: runs.iter().map(Run::summary).collect(),
    }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub(super) struct RunPath {
    /// the run's id
    id: u64,
}

#[utoipa::path(get, path = "/api/v1/reconcile/runs/{id}", tag = "reconcile",
    summary = "One run with its rows: source, target and last-delivered values side by side",
    params(RunPath),
    responses((status = 200, body = Run), (status = 400, response = super::openapi::Error),
        (status = 401, response = super::openapi::Error), (status = 403, response = super::openapi::Error),
        (status = 404, response = super::openapi::Error)))]
pub(super) async fn show_run(
    State(engine): Shared,
    Path(RunPath { id }): Path<RunPath>,
) -> Result<Json<Run>, ApiError> {
    let mut run = found(&engine, id)?;
    run.seen.clear();
    Ok(Json(run))
}

fn found(engine: &Engine, id: u64) -> Result<Run, ApiError> {
    reconcile::run(engine, id)?.ok_or_else(|| {
        ApiError(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no reconciliation run {id}"),
        )
    })
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub(super) struct RowPath {
    /// the run's id
    #[param(schema_with = super::openapi::schema::number)]
    id: u64,
    /// the row's place in the run's rows, from 0
    #[param(schema_with = super::openapi::schema::number)]
    row: u64,
    /// replay (journal the source record again), adopt (store the cross-reference to the
    /// target's record) or ignore
    #[param(inline)]
    action: RowAction,
}

#[utoipa::path(post, path = "/api/v1/reconcile/runs/{id}/rows/{row}/{action}", tag = "reconcile",
    summary = "Act on one row of a finished run: replay, adopt or ignore",
    params(RowPath),
    responses((status = 200, body = Row), (status = 400, response = super::openapi::Error),
        (status = 401, response = super::openapi::Error), (status = 403, response = super::openapi::Error),
        (status = 404, response = super::openapi::Error), (status = 409, response = super::openapi::Error)))]
pub(super) async fn act_on_row(
    State(engine): Shared,
    axum::Extension(who): axum::Extension<super::auth::Who>,
    Path(RowPath { id, row, action }): Path<RowPath>,
) -> Result<Json<Row>, ApiError> {
    let run = found(&engine, id)?;
    if run.is_running() {
        return Err(ApiError(
            StatusCode::CONFLICT,
            "running",
            format!("run {id} is still running: act on its rows when it has finished"),
        ));
    }
    let row = usize::try_from(row).unwrap_or(usize::MAX);
    if row >= run.rows.len() {
        return Err(ApiError(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("run {id} has {} rows, no row {row}", run.rows.len()),
        ));
    }
    reconcile::act_on_row(&engine, id, row, action, &who.name)
        .await
        .map(Json)
        .map_err(|error| ApiError(StatusCode::CONFLICT, "cannot_act", format!("{error:#}")))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct Resync {
    flow: String,
    /// The source record's id.
    record: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub(super) struct Resynced {
    message: String,
}

#[utoipa::path(post, path = "/api/v1/reconcile/resync", tag = "reconcile",
    summary = "Read one record from the flow's source again and send it through the queue",
    request_body = Resync,
    responses((status = 202, body = Resynced), (status = 400, response = super::openapi::Error),
        (status = 401, response = super::openapi::Error), (status = 403, response = super::openapi::Error),
        (status = 404, response = super::openapi::Error), (status = 415, response = super::openapi::Error),
        (status = 422, response = super::openapi::Error), (status = 502, response = super::openapi::Error)))]
pub(super) async fn resync(
    State(engine): Shared,
    Json(ask): Json<Resync>,
) -> Result<(StatusCode, Json<Resynced>), ApiError> {
    match reconcile::resync(&engine, &ask.flow, &ask.record).await {
        Ok(message) => Ok((StatusCode::ACCEPTED, Json(Resynced { message }))),
        Err(reconcile::ResyncError::Flow(why)) => {
            Err(ApiError(StatusCode::NOT_FOUND, "not_found", why))
        }
        Err(reconcile::ResyncError::NotFound(why)) => {
            Err(ApiError(StatusCode::NOT_FOUND, "not_found", why))
        }
        Err(reconcile::ResyncError::Failed(error)) => Err(ApiError(
            StatusCode::BAD_GATEWAY,
            "source_failed",
            format!("{error:#}"),
        )),
    }
}
