//! Dead letters grouped by reason, with retry and skip per job and for a whole group.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::{Extension, Form};
use maud::{Markup, html};

use super::events::{JOB_HEAD, job_row};
use super::layout::{self, button, csrf, table};
use super::{Shared, failed};
use crate::dashboard::api::ApiError;
use crate::dashboard::auth::Who;
use crate::dashboard::data;
use crate::queue::Action;

pub async fn page(State(ui): Shared, Extension(who): Extension<Who>) -> Html<String> {
    let letters = data::dead_letters(&ui.engine);
    let mut head = JOB_HEAD.to_vec();
    head.push("");
    let body = html! {
        @for group in &letters.groups {
            h2.group { (group.reason) " " small { "(" (group.count) " jobs)" } }
            p { "e.g. " (group.example.as_deref().unwrap_or("")) }
            @if who.may_act() {
                @for (action, label) in [("retry", "Retry all"), ("skip", "Skip all")] {
                    form.inline method="post" action="/ui/dead/bulk" {
                        (csrf(&who))
                        input type="hidden" name="reason" value=(group.reason);
                        input type="hidden" name="action" value=(action);
                        button { (label) }
                    }
                    " "
                }
            }
            @let rows: Vec<Vec<Markup>> = group
                .jobs
                .iter()
                .filter_map(|id| ui.engine.queue.get(*id).ok())
                .map(|job| {
                    let mut row = job_row(&job);
                    let id = job.id;
                    row.push(html! {
                        (button(&who, &format!("/ui/events/{id}/retry"), "Retry"))
                        (button(&who, &format!("/ui/events/{id}/skip"), "Skip"))
                    });
                    row
                })
                .collect();
            (table(&head, &rows))
        }
        @if letters.groups.is_empty() {
            p #no-dead { "No dead letters." }
        }
    };
    layout::page("Dead letters", &who, body)
}

/// The bulk form: a reason code and `retry` or `skip`.
#[derive(Debug, Default, serde::Deserialize)]
pub struct BulkForm {
    #[serde(default)]
    reason: String,
    #[serde(default)]
    action: String,
}

pub async fn bulk(
    State(ui): Shared,
    Form(BulkForm { reason, action }): Form<BulkForm>,
) -> Response {
    let action = match action.as_str() {
        "retry" => Action::Retry,
        "skip" => Action::Skip,
        _ => {
            return failed(ApiError(
                StatusCode::BAD_REQUEST,
                "bad_request",
                "action must be retry or skip".into(),
            ));
        }
    };
    match data::bulk_act(&ui.engine, &reason, action) {
        Ok(_) => Redirect::to("/ui/dead").into_response(),
        Err(error) => failed(error),
    }
}
