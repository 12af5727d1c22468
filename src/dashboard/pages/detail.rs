//! An event's page: the job, what happens next and what the operator can do (in the terms of
//! the README's error table), its attempts, the document the mapping in force makes, the event,
//! cross-references, the order's status and every job of that order; and the job actions.

use axum::Extension;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};

use super::events::{JOB_HEAD, job_row};
use super::layout::{self, button, json_block, state, table, time};
use super::{Shared, failed};
use crate::dashboard::api::ApiError;
use crate::dashboard::auth::Who;
use crate::dashboard::data::{self, JobDetail, JobFilter};
use crate::queue::{Action, Job, JobId, State as JobState};

pub async fn page(
    State(ui): Shared,
    Extension(who): Extension<Who>,
    Path(id): Path<JobId>,
) -> Response {
    let detail = match data::job(&ui.engine, id) {
        Ok(detail) => detail,
        Err(error) => return failed(error),
    };
    let order_jobs: Vec<Vec<Markup>> = data::jobs(
        &ui.engine,
        &JobFilter {
            record: Some(detail.job.order_key.clone()),
            limit: Some(50),
            ..JobFilter::default()
        },
    )
    .map(|listing| listing.jobs.iter().map(job_row).collect())
    .unwrap_or_default();
    let body = view(&who, &detail, &order_jobs);
    layout::page(&format!("Event #{id}"), &who, body).into_response()
}

fn view(who: &Who, detail: &JobDetail, order_jobs: &[Vec<Markup>]) -> Markup {
    let job = &detail.job;
    let code = job.reason.as_ref().map_or("", |r| r.code.as_str());
    let attempts: Vec<Vec<Markup>> = detail
        .attempts
        .iter()
        .map(|a| {
            vec![
                html! { (a.n) },
                html! { (time(a.started_ms)) },
                html! { (a.duration_ms) " ms" },
                html! { (a.request) },
                html! { code { (a.response) } },
                state(a.outcome.as_str()),
            ]
        })
        .collect();
    let xrefs: Vec<Vec<Markup>> = detail
        .xrefs
        .iter()
        .map(|x| {
            [&x.system, &x.kind, &x.crm_id, &x.external_id]
                .map(|v| html! { (v) })
                .to_vec()
        })
        .collect();
    html! {
        p {
            (state(job.state.as_str())) " flow " b { (job.flow) } " → connector " b { (job.connector) }
            " (" (job.operation) ") · record " (job.object_id.as_deref().unwrap_or(""))
            " · order " (job.order_key)
            " · mapping version " (job.mapping_version.as_deref().unwrap_or(""))
            " · idempotency key " code { (detail.idempotency_key) }
        }
        p #reason {
            @if let Some(reason) = &job.reason { code { (reason.code) } " " (reason.message) }
        }
        @if let (Some(label), Some(due)) = (next_time_label(job.state), job.due_ms) {
            p #next-time { (label) ": " (time(due)) }
        }
        p #next-step { (next_step(job.state, code)) }
        div.actions { (actions(who, job, code)) }
        h2 { "Attempts" }
        (table(&["#", "at", "took", "request", "response", "outcome"], &attempts))
        h2 { "Mapped document (by the mapping in force)" }
        @match (&detail.document, &detail.document_error) {
            (_, Some(why)) => p.bad #document-error { "It cannot be mapped now: " (why) },
            (Some(document), None) => (json_block(document)),
            (None, None) => p { "—" },
        }
        h2 { "Event" }
        @if let Some(event) = &detail.event { (json_block(&event.data)) }
        @if let Some(payload) = &job.payload {
            h2 { "Resubmitted data" }
            (json_block(payload))
        }
        h2 { "Raw payload" }
        pre { @if let Some(event) = &detail.event { (event.raw_body) } }
        h2 { "Cross-references" }
        (table(&["system", "kind", "CRM id", "id there"], &xrefs))
        h2 { "Order status" }
        p { (detail.order_status.as_deref().unwrap_or("")) }
        h3 { "Every job of this order" }
        (table(&JOB_HEAD, order_jobs))
    }
}

/// What an operator may do with a job in this state.
fn actions(who: &Who, job: &Job, code: &str) -> Markup {
    let id = job.id;
    let waits_for_a_person = matches!(
        job.state,
        JobState::Dead | JobState::Parked | JobState::Held | JobState::Retrying
    );
    // Retrying a fix_data letter as it is fails the same way: it needs an edit or a mapping fix.
    let retry_helps = !(job.state == JobState::Dead && code == "fix_data");
    html! {
        @if waits_for_a_person && retry_helps {
            (button(who, &format!("/ui/events/{id}/retry"), "Retry now"))
        }
        @if waits_for_a_person {
            (button(who, &format!("/ui/events/{id}/skip"), "Skip"))
        }
        @if job.state == JobState::Held && code == "amount_mismatch" {
            (button(who, &format!("/ui/events/{id}/accept"), "Accept the ERP's figures"))
        }
        // Only a job that waits for a person can be run again on edited data (the queue
        // refuses the others).
        @if who.may_act() && waits_for_a_person {
            a #edit href={ "/ui/events/" (id) "/edit" } { "Edit and resubmit" }
        }
    }
}

/// What happens next to a job and what an operator can do, in the README's terms.
fn next_step(state: JobState, code: &str) -> &'static str {
    match (state, code) {
        (JobState::Done, _) => "Delivered. Nothing to do.",
        (JobState::Skipped, _) => {
            "Not needed (stale, an echo, a status that would go back, or skipped)."
        }
        (JobState::Ready | JobState::Leased, _) => "Being delivered now.",
        (JobState::Retrying, "rate_limited") => {
            "The target asked to slow down: the connector waits, then goes on by itself."
        }
        (JobState::Retrying, _) => {
            "The target failed or did not answer: retried on the connector's schedule, and at \
             once when the connector answers again. Retry now if you fixed the target."
        }
        (JobState::Parked, _) => {
            "Waits for a record the target does not have yet; runs by itself when it arrives."
        }
        (JobState::Held, "amount_mismatch") => {
            "The ERP's amounts differ from the CRM's: accept the ERP's figures, or fix the order \
             in the ERP and retry."
        }
        (JobState::Held, "order_changed") => {
            "The record changed after its order was created: carry the change over in the ERP, \
             then skip this job."
        }
        (JobState::Held, _) => "Waits until its hold no longer applies; rechecked by itself.",
        (JobState::Dead, "fix_data") => {
            "The data cannot be delivered as it is: fix it in the CRM (a new event follows), or \
             edit and resubmit, or fix the mapping and resubmit as it was."
        }
        (JobState::Dead, "fix_config") => {
            "The connector is misconfigured and paused: fix its credentials or file, resume it, \
             then retry."
        }
        (JobState::Dead, _) => "Gave up: check the target, then retry, or skip it.",
    }
}

/// "Next recheck" for a held job, "Next attempt" for a retrying one.
fn next_time_label(state: JobState) -> Option<&'static str> {
    match state {
        JobState::Held => Some("Next recheck"),
        JobState::Retrying => Some("Next attempt"),
        JobState::Parked => Some("Gives up waiting"),
        _ => None,
    }
}

/// Retry, skip or accept, then back to the event's page.
pub async fn act(State(ui): Shared, Path((id, action)): Path<(JobId, String)>) -> Response {
    let action = match action.as_str() {
        "retry" => Action::Retry,
        "skip" => Action::Skip,
        "accept" => Action::Accept,
        _ => {
            return failed(ApiError(
                StatusCode::NOT_FOUND,
                "not_found",
                "no such action".into(),
            ));
        }
    };
    match ui.engine.queue.act(id, action) {
        Ok(_) => Redirect::to(&format!("/ui/events/{id}")).into_response(),
        Err(error) => failed(error.into()),
    }
}
