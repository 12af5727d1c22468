//! HubSpot's CRM v3 objects API for deals (products: hubspot_catalog.rs):
//! - `PATCH /crm/v3/objects/deals/{dealId}` with `{"properties": {…}}` and a private app's
//!   bearer token → 200 with the deal; unknown deal → 404 `OBJECT_NOT_FOUND`; a property the
//!   portal lacks → 400 `VALIDATION_ERROR`; no or a wrong token → 401 `INVALID_AUTHENTICATION`
//! - `GET /crm/v3/objects/deals?limit=1` (the connector's probe)
//! - the rolling limit (private apps: 100 requests per 10 s; scaled down here by `limit` and
//!   `window`): a request beyond it → 429 with `"policyName": "TEN_SECONDLY_ROLLING"` and no
//!   `Retry-After`

use std::collections::HashMap;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch};
use axum::{Json, Router};
use serde_json::{Value, json};

use super::Log;

pub const TOKEN: &str = "pat-na1-11111111-2222-3333-4444-555555555555";

/// Deal properties the portal has (custom ones created by the integrator).
const PROPERTIES: [&str; 6] = [
    "erp_status",
    "erp_order_number",
    "tracking_number",
    "invoice_number",
    "invoice_amount",
    "dealstage",
];

pub struct Portal {
    pub deals: HashMap<String, Value>,
    /// Products by id (hubspot_catalog.rs).
    pub products: HashMap<String, serde_json::Map<String, Value>>,
    limit: usize,
    window: Duration,
    /// When the requests within the window were taken.
    taken: VecDeque<Instant>,
    pub limited: u32,
}

pub type Shared = Arc<Mutex<Portal>>;

/// A portal with these deals that takes `limit` requests per rolling `window`.
pub async fn start(deals: &[&str], limit: usize, window: Duration) -> (SocketAddr, Log, Shared) {
    let portal = Arc::new(Mutex::new(Portal {
        deals: deals.iter().map(|id| (id.to_string(), json!({}))).collect(),
        products: HashMap::new(),
        limit,
        window,
        taken: VecDeque::new(),
        limited: 0,
    }));
    let router = super::hubspot_catalog::routes(Router::new())
        .route("/crm/v3/objects/deals", get(list))
        .route("/crm/v3/objects/deals/{id}", patch(update))
        .with_state(portal.clone());
    let (addr, log) = super::serve(router).await;
    (addr, log, portal)
}

pub fn error(status: StatusCode, category: &str, message: &str) -> Response {
    (
        status,
        Json(json!({
            "status": "error", "message": message, "category": category,
            "correlationId": "aeb5f871-7f07-4993-9211-075dc63e7cbf"
        })),
    )
        .into_response()
}

/// The token check and the secondly limit, as HubSpot applies them to every call.
pub fn admit(portal: &mut Portal, headers: &HeaderMap) -> Option<Response> {
    let bearer = headers.get("authorization").and_then(|v| v.to_str().ok());
    if bearer != Some(&format!("Bearer {TOKEN}")) {
        return Some(error(
            StatusCode::UNAUTHORIZED,
            "INVALID_AUTHENTICATION",
            "Authentication credentials not found.",
        ));
    }
    let now = Instant::now();
    while portal
        .taken
        .front()
        .is_some_and(|at| now.duration_since(*at) >= portal.window)
    {
        portal.taken.pop_front();
    }
    if portal.taken.len() >= portal.limit {
        portal.limited += 1;
        return Some(
            (
                StatusCode::TOO_MANY_REQUESTS,
                Json(json!({
                    "status": "error", "message": "You have reached your ten_secondly_rolling limit.",
                    "errorType": "RATE_LIMIT", "correlationId": "c033cdaa-2c40-4a64-ae48-b4cec88dad24",
                    "policyName": "TEN_SECONDLY_ROLLING"
                })),
            )
                .into_response(),
        );
    }
    portal.taken.push_back(now);
    None
}

async fn list(State(portal): State<Shared>, headers: HeaderMap) -> Response {
    let mut portal = portal.lock().unwrap();
    if let Some(refused) = admit(&mut portal, &headers) {
        return refused;
    }
    Json(json!({"results": []})).into_response()
}

async fn update(
    State(portal): State<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let mut portal = portal.lock().unwrap();
    if let Some(refused) = admit(&mut portal, &headers) {
        return refused;
    }
    let Some(properties) = body.get("properties").and_then(Value::as_object) else {
        return error(
            StatusCode::BAD_REQUEST,
            "VALIDATION_ERROR",
            "Invalid input JSON: properties is required",
        );
    };
    if let Some(unknown) = properties
        .keys()
        .find(|k| !PROPERTIES.contains(&k.as_str()))
    {
        return error(
            StatusCode::BAD_REQUEST,
            "VALIDATION_ERROR",
            &format!(
                "Property values were not valid: [{{\"isValid\":false,\"message\":\"Property \\\"{unknown}\\\" does not exist\",\"error\":\"PROPERTY_DOESNT_EXIST\",\"name\":\"{unknown}\"}}]"
            ),
        );
    }
    let Some(deal) = portal.deals.get_mut(&id) else {
        return error(
            StatusCode::NOT_FOUND,
            "OBJECT_NOT_FOUND",
            "resource not found",
        );
    };
    for (name, value) in properties {
        deal[name] = value.clone();
    }
    Json(json!({
        "id": id, "properties": deal, "createdAt": "2026-11-01T10:00:00.000Z",
        "updatedAt": "2026-11-23T10:00:00.000Z", "archived": false
    }))
    .into_response()
}
