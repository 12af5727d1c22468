//! A Salesforce org as its REST API answers (API v61.0):
//! - `POST /services/oauth2/token` (client credentials flow, form-encoded) → `access_token`,
//!   `instance_url`, `token_type`, `issued_at` (no `expires_in`: sessions end by inactivity);
//!   wrong credentials → 400 `{"error":"invalid_client"}`
//! - `PATCH /services/data/v61.0/sobjects/Opportunity/{id}` → 204; an expired or unknown session
//!   → 401 `[{"errorCode":"INVALID_SESSION_ID"}]`; unknown record → 404 `NOT_FOUND`; a field
//!   the object lacks → 400 `INVALID_FIELD`
//! - `GET /services/data/v61.0/limits` → the org's limits (the connector's probe)
//! - products and price book entries: salesforce_catalog.rs

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, post};
use axum::{Form, Json, Router};
use serde_json::{Value, json};

use super::Log;

pub const CLIENT_ID: &str = "3MVG9-test-consumer-key";
pub const CLIENT_SECRET: &str = "sf-consumer-secret-0001";

/// Fields an Opportunity has (custom ones end in `__c`).
const FIELDS: [&str; 7] = [
    "ERP_Status__c",
    "ERP_Order_Number__c",
    "Tracking_Number__c",
    "Invoice_Number__c",
    "Invoice_Amount__c",
    "ERP_Status_Date__c",
    "StageName",
];

#[derive(Default)]
pub struct Org {
    pub opportunities: HashMap<String, Value>,
    /// Product2 records by their `ERP_Code__c`.
    pub products: HashMap<String, super::salesforce_catalog::Product>,
    /// PricebookEntry records by id.
    pub entries: HashMap<String, Value>,
    pub live_tokens: Vec<String>,
    pub tokens_issued: u32,
}

pub type Shared = Arc<Mutex<Org>>;

/// An org holding the given opportunity ids.
pub async fn start(opportunities: &[&str]) -> (SocketAddr, Log, Shared) {
    let org = Shared::default();
    for id in opportunities {
        org.lock()
            .unwrap()
            .opportunities
            .insert(id.to_string(), json!({"Id": id}));
    }
    let router = super::salesforce_catalog::routes(Router::new())
        .route("/services/oauth2/token", post(token))
        .route("/services/data/v61.0/limits", get(limits))
        .route(
            "/services/data/v61.0/sobjects/Opportunity/{id}",
            patch(update),
        )
        .with_state(org.clone());
    let (addr, log) = super::serve(router).await;
    (addr, log, org)
}

/// Ends every session (as an org's session timeout does).
pub fn expire_sessions(org: &Shared) {
    org.lock().unwrap().live_tokens.clear();
}

async fn token(State(org): State<Shared>, Form(form): Form<HashMap<String, String>>) -> Response {
    let valid = form.get("grant_type").map(String::as_str) == Some("client_credentials")
        && form.get("client_id").map(String::as_str) == Some(CLIENT_ID)
        && form.get("client_secret").map(String::as_str) == Some(CLIENT_SECRET);
    if !valid {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": "invalid_client", "error_description": "invalid client credentials"})),
        )
            .into_response();
    }
    let mut org = org.lock().unwrap();
    org.tokens_issued += 1;
    let access = format!("00Dxx0000001gPL!AQ4AQ{}", org.tokens_issued);
    org.live_tokens.push(access.clone());
    Json(json!({
        "access_token": access,
        "instance_url": "https://example.my.salesforce.com",
        "id": "https://login.salesforce.com/id/00Dxx0000001gPLEAY/005xx000001Sv6AAE",
        "token_type": "Bearer",
        "issued_at": "1732350000000",
        "signature": "0CmxinZir53Yex7nE0TD+zMpvIWYGb/bdJh6XfOH6EQ="
    }))
    .into_response()
}

pub fn session_error(org: &Org, headers: &HeaderMap) -> Option<Response> {
    let token = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match token {
        Some(token) if org.live_tokens.iter().any(|t| t == token) => None,
        _ => Some(
            (
                StatusCode::UNAUTHORIZED,
                Json(json!([{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}])),
            )
                .into_response(),
        ),
    }
}

async fn limits(State(org): State<Shared>, headers: HeaderMap) -> Response {
    let org = org.lock().unwrap();
    if let Some(refused) = session_error(&org, &headers) {
        return refused;
    }
    Json(json!({"DailyApiRequests": {"Max": 15000, "Remaining": 14998}})).into_response()
}

async fn update(
    State(org): State<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let mut org = org.lock().unwrap();
    if let Some(refused) = session_error(&org, &headers) {
        return refused;
    }
    let Some(fields) = body.as_object() else {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!([{"message": "The request body must be a JSON object", "errorCode": "JSON_PARSER_ERROR"}])),
        )
            .into_response();
    };
    if let Some(unknown) = fields.keys().find(|k| !FIELDS.contains(&k.as_str())) {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!([{
                "message": format!("No such column '{unknown}' on sobject of type Opportunity"),
                "errorCode": "INVALID_FIELD"
            }])),
        )
            .into_response();
    }
    let Some(record) = org.opportunities.get_mut(&id) else {
        return (
            StatusCode::NOT_FOUND,
            Json(json!([{"errorCode": "NOT_FOUND", "message": "The requested resource does not exist"}])),
        )
            .into_response();
    };
    for (name, value) in fields {
        record[name] = value.clone();
    }
    StatusCode::NO_CONTENT.into_response()
}
