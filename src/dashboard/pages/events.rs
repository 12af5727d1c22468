//! Events: jobs newest first, searched by record, flow, connector, state and date, a page at
//! a time; and the row every job listing shares.

use axum::Extension;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};

use super::layout::{self, state, table, time};
use super::{Shared, failed};
use crate::adapters::rest::encode;
use crate::dashboard::auth::Who;
use crate::dashboard::data::{self, JobFilter};
use crate::queue::Job;

/// The states one can search for.
const STATES: [&str; 7] = [
    "ready", "retrying", "parked", "held", "dead", "done", "skipped",
];

/// The header of [`job_row`]s.
pub const JOB_HEAD: [&str; 7] = [
    "job", "flow", "CRM id", "ERP id", "state", "reason", "created",
];

/// A job as one row of a listing.
pub fn job_row(job: &Job) -> Vec<Markup> {
    vec![
        html! { a href={ "/ui/events/" (job.id) } { "#" (job.id) } },
        html! { (job.flow) },
        html! { (job.object_id.as_deref().unwrap_or("")) },
        html! { (job.external_id.as_deref().unwrap_or("")) },
        state(job.state.as_str()),
        html! { @if let Some(reason) = &job.reason { (reason.message) } },
        html! { (time(job.created_ms)) },
    ]
}

pub async fn page(
    State(ui): Shared,
    Extension(who): Extension<Who>,
    Query(filter): Query<JobFilter>,
) -> Response {
    let listing = match data::jobs(&ui.engine, &filter) {
        Ok(listing) => listing,
        Err(error) => return failed(error),
    };
    let value = |v: &Option<String>| v.clone().unwrap_or_default();
    let rows: Vec<Vec<Markup>> = listing.jobs.iter().map(job_row).collect();
    let body = html! {
        form #search method="get" action="/ui/events" {
            input name="record" placeholder="CRM or ERP id" value=(value(&filter.record)); " "
            input name="flow" placeholder="flow" value=(value(&filter.flow)); " "
            input name="connector" placeholder="connector" value=(value(&filter.connector)); " "
            select name="state" {
                @for s in std::iter::once("").chain(STATES) {
                    option selected[filter.state.as_deref() == Some(s)] { (s) }
                }
            }
            " "
            input name="since" placeholder="since 2026-11-23" value=(value(&filter.since)); " "
            button { "Search" }
        }
        (table(&JOB_HEAD, &rows))
        @if let Some(next) = listing.next_before {
            p { a #next href={ "/ui/events?" (older(&filter, next)) } { "Older →" } }
        }
    };
    layout::page("Events", &who, body).into_response()
}

/// The query string of the next page: the same search, before `next`.
fn older(filter: &JobFilter, next: u64) -> String {
    let mut query: Vec<String> = [
        ("record", &filter.record),
        ("flow", &filter.flow),
        ("connector", &filter.connector),
        ("state", &filter.state),
        ("since", &filter.since),
    ]
    .iter()
    .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={}", encode(v))))
    .collect();
    query.push(format!("before={next}"));
    query.join("&")
}
