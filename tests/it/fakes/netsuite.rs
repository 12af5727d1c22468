//! NetSuite's REST record API (`/services/rest/record/v1`), for customers and sales orders:
//! - OAuth 2.0 bearer token, else 401 with `o:errorCode: INVALID_LOGIN`
//! - `PUT /customer/eid:{externalId}` upserts by external id → 204 + `Location`
//! - `POST /salesOrder` → 204 + `Location: …/salesOrder/{id}`; `X-NetSuite-Idempotency-Key`
//!   must be a UUID (else 400); the same key again → 400 `IDEMPOTENCY_ERROR`, nothing created
//! - `GET /salesOrder?q=externalId IS "X"` → `{"items": [{"id"}], "count"}`
//! - missing `entity` or `item` → 400 `USER_ERROR`
//!
//! Errors use NetSuite's RFC 9457 shape with `o:errorDetails`.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use axum::{Json, Router};
use serde_json::{Value, json};

use super::Log;

pub const TOKEN: &str = "eyJraWQiOiJjLlRTVERSVjEyMzQ1Ni4yMDI2In0.netsuite-m2m";

#[derive(Default)]
pub struct Account {
    pub customers: HashMap<String, (String, Value)>,
    /// id → sales order
    pub orders: HashMap<String, Value>,
    pub keys: HashSet<String>,
    pub replays: u32,
    next_id: u32,
}

pub type Shared = Arc<Mutex<Account>>;

pub async fn start() -> (SocketAddr, Log, Shared) {
    let account = Shared::default();
    let router = Router::new()
        .route("/services/rest/record/v1/metadata-catalog", get(catalog))
        .route(
            "/services/rest/record/v1/customer/{eid}",
            put(upsert_customer),
        )
        .route(
            "/services/rest/record/v1/salesOrder",
            get(query).post(create_order),
        )
        .with_state(account.clone());
    let (addr, log) = super::serve(router).await;
    (addr, log, account)
}

fn error(status: StatusCode, code: &str, detail: &str) -> Response {
    (
        status,
        Json(json!({
            "type": "https://www.rfc-editor.org/rfc/rfc9110.html#section-15.5.1",
            "title": status.canonical_reason().unwrap_or("Error"),
            "status": status.as_u16(),
            "o:errorDetails": [{"detail": detail, "o:errorCode": code}]
        })),
    )
        .into_response()
}

fn refused(headers: &HeaderMap) -> Option<Response> {
    let bearer = headers.get("authorization").and_then(|v| v.to_str().ok());
    (bearer != Some(&format!("Bearer {TOKEN}"))).then(|| {
        error(
            StatusCode::UNAUTHORIZED,
            "INVALID_LOGIN",
            "Invalid login attempt.",
        )
    })
}

fn created(kind: &str, id: &str) -> Response {
    (
        StatusCode::NO_CONTENT,
        [(
            header::LOCATION,
            format!(
                "https://1234567.suitetalk.api.netsuite.com/services/rest/record/v1/{kind}/{id}"
            ),
        )],
    )
        .into_response()
}

async fn catalog(headers: HeaderMap) -> Response {
    refused(&headers).unwrap_or_else(|| Json(json!({"items": []})).into_response())
}

async fn upsert_customer(
    State(account): State<Shared>,
    Path(eid): Path<String>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    if let Some(refused) = refused(&headers) {
        return refused;
    }
    let Some(external) = eid.strip_prefix("eid:") else {
        return error(
            StatusCode::BAD_REQUEST,
            "INVALID_ID",
            "Upsert needs eid:<externalId>.",
        );
    };
    if body["companyName"].as_str().is_none() {
        return error(
            StatusCode::BAD_REQUEST,
            "USER_ERROR",
            "Please enter value(s) for: Company Name",
        );
    }
    let mut account = account.lock().unwrap();
    account.next_id += 1;
    let fresh = account.next_id.to_string();
    let entry = account
        .customers
        .entry(external.to_owned())
        .or_insert((fresh, Value::Null));
    entry.1 = body;
    let id = entry.0.clone();
    created("customer", &id)
}

async fn create_order(
    State(account): State<Shared>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    if let Some(refused) = refused(&headers) {
        return refused;
    }
    let mut account = account.lock().unwrap();
    if let Some(key) = headers.get("x-netsuite-idempotency-key") {
        let key = key.to_str().unwrap_or_default().to_owned();
        if !is_uuid(&key) {
            return error(
                StatusCode::BAD_REQUEST,
                "INVALID_HEADER",
                "The idempotency key must be a UUID.",
            );
        }
        if !account.keys.insert(key) {
            account.replays += 1;
            return error(
                StatusCode::BAD_REQUEST,
                "IDEMPOTENCY_ERROR",
                "A request with this idempotency key has already been processed.",
            );
        }
    }
    if body["entity"]["id"].is_null() || body["item"]["items"].as_array().is_none_or(Vec::is_empty)
    {
        return error(
            StatusCode::BAD_REQUEST,
            "USER_ERROR",
            "Please enter value(s) for: Customer, Items",
        );
    }
    account.next_id += 1;
    let id = account.next_id.to_string();
    account.orders.insert(id.clone(), body);
    created("salesOrder", &id)
}

async fn query(
    State(account): State<Shared>,
    Query(params): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    if let Some(refused) = refused(&headers) {
        return refused;
    }
    let q = params.get("q").cloned().unwrap_or_default();
    let Some(want) = q
        .strip_prefix("externalId IS ")
        .map(|v| v.trim_matches('"').to_owned())
    else {
        return error(
            StatusCode::BAD_REQUEST,
            "INVALID_PARAMETER",
            "Invalid query.",
        );
    };
    let account = account.lock().unwrap();
    let items: Vec<Value> = account
        .orders
        .iter()
        .filter(|(_, order)| order["externalId"] == want.as_str())
        .map(|(id, _)| json!({"links": [], "id": id}))
        .collect();
    Json(json!({"links": [], "count": items.len(), "hasMore": false, "items": items, "offset": 0, "totalResults": items.len()})).into_response()
}

fn is_uuid(text: &str) -> bool {
    let parts: Vec<&str> = text.split('-').collect();
    parts.iter().map(|p| p.len()).eq([8, 4, 4, 4, 12])
        && parts
            .iter()
            .all(|p| p.chars().all(|c| c.is_ascii_hexdigit()))
}

/// Sales orders carrying `external_id`.
pub fn orders_for(account: &Shared, external_id: &str) -> usize {
    account
        .lock()
        .unwrap()
        .orders
        .values()
        .filter(|order| order["externalId"] == external_id)
        .count()
}
