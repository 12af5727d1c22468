//! Reconciliation: the runs (start one per flow), a run's counts per drift class, and its rows
//! with the source record, the document the mapping makes of it, the target's record and what
//! handoff last delivered side by side, with replay, adopt and ignore per row.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Extension, Form};
use maud::{Markup, html};
use serde_json::Value;

use super::layout::{self, button, csrf, json_block, table, time};
use super::{Shared, failed};
use crate::dashboard::api::ApiError;
use crate::dashboard::auth::Who;
use crate::sync::reconcile::{self, Ask, Class, Row, RowAction, Run, StartError};

pub async fn runs(State(ui): Shared, Extension(who): Extension<Who>) -> Response {
    let runs = match reconcile::runs(&ui.engine, 50) {
        Ok(runs) => runs,
        Err(error) => return failed(error.into()),
    };
    let loaded = ui.engine.mappings.current();
    let flows: Vec<&str> = loaded
        .mappings
        .iter()
        .filter(|m| m.reconcile.is_some())
        .map(|m| m.flow.as_str())
        .collect();
    let rows: Vec<Vec<Markup>> = runs
        .iter()
        .map(|run| {
            vec![
                html! { a href=(format!("/ui/reconcile/{}", run.id)) { (run.id) } },
                html! { (run.flow) },
                html! { (time(run.started_ms)) },
                html! { (run.state) @if run.is_running() { " — " (run.phase) } },
                html! { (mode(run)) },
                html! { (run.compared) },
                html! { (counts(run)) },
            ]
        })
        .collect();
    let body = html! {
        @if flows.is_empty() {
            p #no-flows { "No mapping in force has a " code { "reconcile:" } " block." }
        }
        @if who.may_act() && !flows.is_empty() {
            form.inline #start method="post" action="/ui/reconcile" {
                (csrf(&who))
                select name="flow" { @for flow in &flows { option { (flow) } } }
                " " label { input type="checkbox" name="deep" value="true"; " compare fields" }
                " " label { input type="checkbox" name="repair" value="safe"; " repair safe classes" }
                " " button { "Start a run" }
            }
        }
        (table(&["run", "flow", "started", "state", "mode", "compared", "drift"], &rows))
    };
    layout::page("Reconciliation", &who, body).into_response()
}

fn mode(run: &Run) -> String {
    let mut mode = if run.dry_run {
        "dry run"
    } else {
        "repair safe"
    }
    .to_owned();
    if run.deep {
        mode.push_str(", deep");
    }
    mode
}

fn counts(run: &Run) -> Markup {
    html! {
        @for class in Class::ALL {
            @let n = run.count(class);
            @if n > 0 && class != Class::Matched {
                span.drift { (class.as_str()) " " (n) } " "
            }
        }
    }
}

/// The start form: a flow, whether to compare fields, whether to repair.
#[derive(Debug, Default, serde::Deserialize)]
pub struct StartForm {
    #[serde(default)]
    flow: String,
    deep: Option<String>,
    repair: Option<String>,
}

pub async fn start(State(ui): Shared, Form(form): Form<StartForm>) -> Response {
    let ask = Ask {
        flow: form.flow,
        deep: form.deep.is_some(),
        repair: form
            .repair
            .is_some_and(|r| r == "safe")
            .then_some(reconcile::Repair::Safe),
    };
    match reconcile::start(&ui.engine, &ask) {
        Ok(run) => Redirect::to(&format!("/ui/reconcile/{}", run.id)).into_response(),
        Err(StartError::Store(error)) => failed(error.into()),
        Err(error) => failed(ApiError(
            StatusCode::CONFLICT,
            "cannot_start",
            error.to_string(),
        )),
    }
}

pub async fn run(
    State(ui): Shared,
    Extension(who): Extension<Who>,
    Path(id): Path<u64>,
) -> Response {
    let run = match reconcile::run(&ui.engine, id) {
        Ok(Some(run)) => run,
        Ok(None) => {
            return failed(ApiError(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("no reconciliation run {id}"),
            ));
        }
        Err(error) => return failed(error.into()),
    };
    let count_rows: Vec<Vec<Markup>> = Class::ALL
        .into_iter()
        .map(|class| vec![html! { (class.as_str()) }, html! { (run.count(class)) }])
        .collect();
    let body = html! {
        p #summary {
            "Flow " b { (run.flow) } ", " (mode(&run)) ": " b #run-state { (run.state) }
            @if run.is_running() { " — " (run.phase) }
            ". " (run.compared) " source records compared with " (run.target_records)
            " target records; " (run.repairs)
            @if run.dry_run { " would be repaired." } @else { " repaired." }
        }
        @if let Some(note) = &run.note { p.note { (note) } }
        @if let Some(error) = &run.error { p.error { (error) } }
        (table(&["class", "records"], &count_rows))
        @for (n, row) in run.rows.iter().enumerate() {
            (row_view(&who, &run, n, row))
        }
    };
    layout::page(&format!("Reconciliation run {id}"), &who, body).into_response()
}

fn row_view(who: &Who, run: &Run, n: usize, row: &Row) -> Markup {
    let at = format!("/ui/reconcile/{}/rows/{n}", run.id);
    let actions: &[(RowAction, &str, &str)] = &[
        (RowAction::Replay, "replay", "Replay"),
        (RowAction::Adopt, "adopt", "Adopt"),
        (RowAction::Ignore, "ignore", "Ignore"),
    ];
    let usable = |action: RowAction| match action {
        RowAction::Replay => row.source.is_some(),
        RowAction::Adopt => row.key.is_some() && row.target.len() == 1,
        RowAction::Ignore => true,
    };
    let shown = |value: Option<&Value>| match value {
        Some(value) => json_block(value),
        None => html! { "—" },
    };
    let target = (!row.target.is_empty()).then(|| Value::Array(row.target.clone()));
    html! {
        div.row id=(format!("row-{n}")) {
            h3 {
                (row.class.as_str()) " — "
                (row.record.as_deref().or(row.key.as_deref()).unwrap_or("?"))
            }
            p.why { (row.why) }
            @if let Some(action) = &row.action { p.action { "Done: " (action) } }
            (table(
                &["source", "mapped now", "target", "last delivered"],
                &[vec![
                    shown(row.source.as_ref()),
                    shown(row.document.as_ref()),
                    shown(target.as_ref()),
                    shown(row.delivered.as_ref()),
                ]],
            ))
            @if !run.is_running() && row.action.is_none() {
                @for (action, path, label) in actions {
                    @if usable(*action) { (button(who, &format!("{at}/{path}"), label)) }
                }
            }
        }
    }
}

pub async fn act(
    State(ui): Shared,
    Extension(who): Extension<Who>,
    Path((id, row, action)): Path<(u64, usize, String)>,
) -> Response {
    let action = match action.as_str() {
        "replay" => RowAction::Replay,
        "adopt" => RowAction::Adopt,
        "ignore" => RowAction::Ignore,
        _ => {
            return failed(ApiError(
                StatusCode::NOT_FOUND,
                "not_found",
                "no such action".into(),
            ));
        }
    };
    match reconcile::act_on_row(&ui.engine, id, row, action, &who.name).await {
        Ok(_) => Redirect::to(&format!("/ui/reconcile/{id}#row-{row}")).into_response(),
        Err(error) => failed(ApiError(
            StatusCode::CONFLICT,
            "cannot_act",
            format!("{error:#}"),
        )),
    }
}
