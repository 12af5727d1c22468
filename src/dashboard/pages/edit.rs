//! Edit and resubmit: the event data in a text area, a dry-run preview with the mapping in
//! force, and resubmitting the job on the edited data.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::{Extension, Form};
use maud::{Markup, html};
use serde_json::Value;

use super::layout::{self, csrf, json_block};
use super::{Shared, failed};
use crate::dashboard::auth::Who;
use crate::dashboard::data;
use crate::queue::JobId;

pub async fn page(
    State(ui): Shared,
    Extension(who): Extension<Who>,
    Path(id): Path<JobId>,
) -> Response {
    let detail = match data::job(&ui.engine, id) {
        Ok(detail) => detail,
        Err(error) => return failed(error),
    };
    let current = match (&detail.job.payload, &detail.event) {
        (Some(payload), _) => payload.clone(),
        (None, Some(event)) => event.data.clone(),
        (None, None) => Value::Null,
    };
    let text = serde_json::to_string_pretty(&current).unwrap_or_default();
    view(&who, id, &text, html! {}).into_response()
}

fn view(who: &Who, id: JobId, payload: &str, result: Markup) -> Html<String> {
    let body = html! {
        p {
            "Edit the event data (what the mapping reads as " code { "$" } "). Preview maps it \
             with the mapping in force without sending; Resubmit runs the job again on it under \
             a new idempotency key."
        }
        form #editor method="post" {
            (csrf(who))
            textarea #payload name="payload" rows="22" { (payload) }
            p {
                button #preview formaction={ "/ui/events/" (id) "/preview" } { "Preview" } " "
                button #resubmit formaction={ "/ui/events/" (id) "/resubmit" } { "Resubmit" } " "
                a href={ "/ui/events/" (id) } { "Cancel" }
            }
        }
        (result)
    };
    layout::page(&format!("Edit event #{id}"), who, body)
}

/// The edit form: the payload as typed.
#[derive(Debug, Default, serde::Deserialize)]
pub struct EditForm {
    #[serde(default)]
    payload: String,
}

/// The edited payload: a JSON object, or why not.
fn edited(form: EditForm) -> Result<(String, Value), (String, String)> {
    let text = form.payload;
    match serde_json::from_str::<Value>(&text) {
        Ok(value) if value.is_object() => Ok((text, value)),
        Ok(_) => Err((text, "The payload must be a JSON object.".into())),
        Err(error) => Err((text, format!("Not valid JSON: {error}"))),
    }
}

fn refused(error: &str) -> Markup {
    html! { p.bad #preview-error { (error) } }
}

pub async fn preview(
    State(ui): Shared,
    Extension(who): Extension<Who>,
    Path(id): Path<JobId>,
    Form(form): Form<EditForm>,
) -> Response {
    let job = match ui.engine.queue.get(id) {
        Ok(job) => job,
        Err(error) => return failed(error.into()),
    };
    let (text, result) = match edited(form) {
        Ok((text, payload)) => match crate::sync::process::dry_run(&ui.engine, &job, &payload) {
            Ok(document) => (
                text,
                html! {
                    h2.ok #preview-ok { "Preview: the mapped document" }
                    (json_block(&document))
                },
            ),
            Err(error) => (
                text,
                html! {
                    h2.bad #preview-error { "The mapping refuses it" }
                    p { (error) }
                },
            ),
        },
        Err((text, error)) => (text, refused(&error)),
    };
    view(&who, id, &text, result).into_response()
}

pub async fn resubmit(
    State(ui): Shared,
    Extension(who): Extension<Who>,
    Path(id): Path<JobId>,
    Form(form): Form<EditForm>,
) -> Response {
    match edited(form) {
        Ok((_, payload)) => match ui.engine.queue.resubmit(id, Some(payload)) {
            Ok(_) => Redirect::to(&format!("/ui/events/{id}")).into_response(),
            Err(error) => failed(error.into()),
        },
        Err((text, error)) => (
            StatusCode::BAD_REQUEST,
            view(&who, id, &text, refused(&error)),
        )
            .into_response(),
    }
}
