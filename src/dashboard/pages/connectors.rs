//! Connectors: kind, circuit, pause switch; pause, resume, retry waiting jobs now, test.

use std::collections::BTreeMap;

use axum::Extension;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};
use maud::{Markup, html};

use super::layout::{self, button, table};
use super::{Shared, failed};
use crate::adapters::rest::encode;
use crate::dashboard::api::ApiError;
use crate::dashboard::auth::Who;

pub async fn page(
    State(ui): Shared,
    Extension(who): Extension<Who>,
    Query(query): Query<BTreeMap<String, String>>,
) -> Html<String> {
    let rows: Vec<Vec<Markup>> = ui
        .engine
        .connectors
        .values()
        .map(|live| {
            let status = live.status();
            // The name as a path segment in the buttons' URLs.
            let at = format!("/ui/connectors/{}", encode(&status.name));
            vec![
                html! { (status.name) },
                html! { (status.kind) @if status.sandbox { " (sandbox)" } },
                html! { (status.description) },
                html! { (status.circuit) },
                html! { (status.paused.as_deref().unwrap_or("")) },
                html! {
                    @match status.paused {
                        Some(_) => (button(&who, &format!("{at}/resume"), "Resume")),
                        None => (button(&who, &format!("{at}/pause"), "Pause")),
                    }
                    (button(&who, &format!("{at}/retry-now"), "Retry waiting jobs now"))
                    (button(&who, &format!("{at}/test"), "Test connection"))
                },
            ]
        })
        .collect();
    let body = html! {
        @if let Some(result) = query.get("test") {
            p #test-result { (result) }
        }
        (table(&["connector", "kind", "description", "circuit", "paused", ""], &rows))
    };
    layout::page("Connectors", &who, body)
}

pub async fn act(State(ui): Shared, Path((name, action)): Path<(String, String)>) -> Response {
    let Some(live) = ui.engine.connector(&name) else {
        return failed(ApiError(
            StatusCode::NOT_FOUND,
            "not_found",
            "no such connector".into(),
        ));
    };
    match action.as_str() {
        "pause" => live.pause("paused by an operator".into()),
        "resume" => {
            live.resume();
            ui.engine.queue.wake(&name);
        }
        "retry-now" => {
            if let Err(error) = ui.engine.queue.release_retrying(&name, usize::MAX) {
                return failed(error.into());
            }
        }
        "test" => {
            let result = match live.adapter().probe().await {
                Ok(message) => format!("{name}: ok — {message}"),
                Err(failure) => format!("{name}: failed — {}", failure.message),
            };
            return Redirect::to(&format!("/ui/connectors?test={}", encode(&result)))
                .into_response();
        }
        _ => {
            return failed(ApiError(
                StatusCode::NOT_FOUND,
                "not_found",
                "no such action".into(),
            ));
        }
    }
    Redirect::to("/ui/connectors").into_response()
}
