//! A plain REST CRM: `PATCH /api/opportunities/{id}` with an `X-Api-Key` header and an
//! `Idempotency-Key`; 200 with the record, 404 for an unknown one, 422
//! `{"errors": [{"field", "message"}]}` for a value it refuses (`status` must be a known one).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::patch;
use axum::{Json, Router};
use serde_json::{Value, json};

use super::Log;

pub const API_KEY: &str = "crm-key-7f3a";
const STATUSES: [&str; 5] = ["Confirmed", "Shipped", "Invoiced", "Paid", "Cancelled"];

pub type Shared = Arc<Mutex<HashMap<String, Value>>>;

pub async fn start(opportunities: &[&str]) -> (SocketAddr, Log, Shared) {
    let records: Shared = Arc::new(Mutex::new(
        opportunities
            .iter()
            .map(|id| (id.to_string(), json!({"id": id})))
            .collect(),
    ));
    let router = Router::new()
        .route("/api/opportunities/{id}", patch(update))
        .with_state(records.clone());
    let (addr, log) = super::serve(router).await;
    (addr, log, records)
}

async fn update(
    State(records): State<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    if headers.get("x-api-key").and_then(|v| v.to_str().ok()) != Some(API_KEY) {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({"error": "bad api key"})),
        )
            .into_response();
    }
    if let Some(status) = body.get("ERP_Status__c").and_then(Value::as_str)
        && !STATUSES.contains(&status)
    {
        return (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(json!({"errors": [{"field": "ERP_Status__c", "message": format!("{status:?} is not a status")}]})),
        )
            .into_response();
    }
    let mut records = records.lock().unwrap();
    let Some(record) = records.get_mut(&id) else {
        return (
            StatusCode::NOT_FOUND,
            Json(json!({"error": "no such opportunity"})),
        )
            .into_response();
    };
    for (name, value) in body.as_object().into_iter().flatten() {
        record[name] = value.clone();
    }
    Json(record.clone()).into_response()
}
