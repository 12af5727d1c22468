//! Mappings: what is loaded (flow, version, event, target) and how the last reload went.

use axum::Extension;
use axum::extract::State;
use axum::response::Html;
use maud::{Markup, html};

use super::Shared;
use super::layout::{self, json_block, table};
use crate::dashboard::auth::Who;

pub async fn page(State(ui): Shared, Extension(who): Extension<Who>) -> Html<String> {
    let loaded = ui.mappings.current();
    let rows: Vec<Vec<Markup>> = loaded
        .mappings
        .iter()
        .map(|m| {
            vec![
                html! { (m.flow) },
                html! { code { (m.version) } },
                html! { (m.event) },
                html! { (m.connector) " · " (m.operation) },
            ]
        })
        .collect();
    let reload = serde_json::to_value(ui.mappings.last_reload()).unwrap_or_default();
    let body = html! {
        (table(&["flow", "version", "event", "target"], &rows))
        h2 { "Last reload" }
        (json_block(&reload))
    };
    layout::page("Mappings", &who, body)
}
