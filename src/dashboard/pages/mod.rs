//! The dashboard's pages, server-rendered with maud from the same typed values the JSON API
//! answers with (`data.rs`), one file per page: overview (refreshing itself every few seconds),
//! events with search and paging, an event's detail and its actions, edit-and-resubmit with a
//! dry-run preview, dead letters by reason, connectors, mappings, reconciliation runs and their rows; and the login
//! form. `layout`
//! holds the frame and the pieces they share.

mod connectors;
mod dead;
mod detail;
mod edit;
mod events;
pub mod layout;
mod login;
mod mappings;
mod overview;
mod reconcile;

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::response::Response;
use axum::routing::{get, post};

use super::api::ApiError;
use crate::mapping::live::LiveMappings;
use crate::sync::Engine;

#[derive(Clone)]
pub struct Ui {
    pub engine: Arc<Engine>,
    pub auth: Arc<super::auth::Auth>,
    pub mappings: Arc<LiveMappings>,
}

type Shared = State<Ui>;

pub fn router(ui: Ui) -> Router {
    Router::new()
        .route("/ui/login", get(login::form).post(login::login))
        .route("/ui/logout", post(login::logout))
        .route("/ui", get(overview::page))
        .route("/ui/live", get(overview::live))
        .route("/ui/events", get(events::page))
        .route("/ui/events/{id}", get(detail::page))
        .route("/ui/events/{id}/edit", get(edit::page))
        .route("/ui/events/{id}/preview", post(edit::preview))
        .route("/ui/events/{id}/resubmit", post(edit::resubmit))
        .route("/ui/events/{id}/{action}", post(detail::act))
        .route("/ui/dead", get(dead::page))
        .route("/ui/dead/bulk", post(dead::bulk))
        .route("/ui/connectors", get(connectors::page))
        .route("/ui/connectors/{name}/{action}", post(connectors::act))
        .route("/ui/mappings", get(mappings::page))
        .route("/ui/reconcile", get(reconcile::runs).post(reconcile::start))
        .route("/ui/reconcile/{id}", get(reconcile::run))
        .route(
            "/ui/reconcile/{id}/rows/{row}/{action}",
            post(reconcile::act),
        )
        .with_state(ui)
}

/// An API error as a page.
fn failed(error: ApiError) -> Response {
    let ApiError(status, _, message) = error;
    layout::error_page(status, &message)
}
