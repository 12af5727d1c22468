//! ERPNext (Frappe) as its REST API answers, for Customer and Sales Order:
//! - auth `Authorization: token <api_key>:<api_secret>`, else 401 `AuthenticationError`
//! - `GET /api/resource/{doctype}?filters=[["field","=","value"]]` → `{"data": [{"name"}]}`
//! - `POST /api/resource/{doctype}` → `{"data": {…, "name"}}`; a missing mandatory field → 417
//!   `MandatoryError`; an item that does not exist → 417 `LinkValidationError`; a customer name
//!   taken → 409 `DuplicateEntryError`
//! - `PUT /api/resource/{doctype}/{name}` → updates in place; unknown → 404 `DoesNotExistError`
//! - `GET /api/method/frappe.auth.get_logged_user` (the connector's probe)
//!
//! Sales orders are named `SAL-ORD-2026-00001`, … and carry `grand_total` as Frappe computes it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use rust_decimal::Decimal;
use serde_json::{Value, json};

use super::Log;

pub const TOKEN: &str = "token 1a2b3c4d5e6f7a8:9f8e7d6c5b4a3f2";
const ITEMS: [&str; 3] = ["SKU-1", "SKU-2", "SKU-3"];

#[derive(Default)]
pub struct Site {
    /// doctype → name → document
    pub docs: HashMap<String, HashMap<String, Value>>,
    orders_made: u32,
}

pub type Shared = Arc<Mutex<Site>>;

pub async fn start() -> (SocketAddr, Log, Shared) {
    let site = Shared::default();
    let router = Router::new()
        .route("/api/method/frappe.auth.get_logged_user", get(whoami))
        .route("/api/resource/{doctype}", get(list).post(create))
        .route("/api/resource/{doctype}/{name}", get(read).put(update))
        .with_state(site.clone());
    let (addr, log) = super::serve(router).await;
    (addr, log, site)
}

fn frappe_error(status: StatusCode, exc_type: &str, message: &str) -> Response {
    (
        status,
        Json(json!({
            "exc_type": exc_type,
            "exception": format!("frappe.exceptions.{exc_type}: {message}"),
            "_server_messages": json!([json!({"message": message}).to_string()]).to_string()
        })),
    )
        .into_response()
}

fn refused(headers: &HeaderMap) -> Option<Response> {
    (headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(TOKEN)).then(|| {
        frappe_error(
            StatusCode::UNAUTHORIZED,
            "AuthenticationError",
            "Invalid API key",
        )
    })
}

async fn whoami(headers: HeaderMap) -> Response {
    refused(&headers)
        .unwrap_or_else(|| Json(json!({"message": "integration@example.com"})).into_response())
}

async fn list(
    State(site): State<Shared>,
    Path(doctype): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    if let Some(refused) = refused(&headers) {
        return refused;
    }
    let filters: Vec<(String, String, Value)> = query
        .get("filters")
        .and_then(|f| serde_json::from_str(f).ok())
        .unwrap_or_default();
    let site = site.lock().unwrap();
    let found: Vec<Value> = site
        .docs
        .get(&doctype)
        .into_iter()
        .flatten()
        .filter(|(_, doc)| filters.iter().all(|(field, _, want)| &doc[field] == want))
        .map(|(name, _)| json!({"name": name}))
        .collect();
    Json(json!({"data": found})).into_response()
}

async fn read(
    State(site): State<Shared>,
    Path((doctype, name)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    if let Some(refused) = refused(&headers) {
        return refused;
    }
    match site
        .lock()
        .unwrap()
        .docs
        .get(&doctype)
        .and_then(|d| d.get(&name))
    {
        Some(doc) => Json(json!({"data": doc})).into_response(),
        None => frappe_error(
            StatusCode::NOT_FOUND,
            "DoesNotExistError",
            &format!("{doctype} {name} not found"),
        ),
    }
}

async fn create(
    State(site): State<Shared>,
    Path(doctype): Path<String>,
    headers: HeaderMap,
    Json(mut doc): Json<Value>,
) -> Response {
    if let Some(refused) = refused(&headers) {
        return refused;
    }
    let mut site = site.lock().unwrap();
    let name = match doctype.as_str() {
        "Customer" => {
            let Some(name) = doc["customer_name"].as_str().map(str::to_owned) else {
                return frappe_error(
                    StatusCode::EXPECTATION_FAILED,
                    "MandatoryError",
                    "[Customer, None]: customer_name",
                );
            };
            if site
                .docs
                .get("Customer")
                .is_some_and(|d| d.contains_key(&name))
            {
                return frappe_error(
                    StatusCode::CONFLICT,
                    "DuplicateEntryError",
                    &format!("Customer {name} already exists"),
                );
            }
            name
        }
        "Sales Order" => {
            let items = doc["items"].as_array().cloned().unwrap_or_default();
            if doc["customer"].as_str().is_none() || items.is_empty() {
                return frappe_error(
                    StatusCode::EXPECTATION_FAILED,
                    "MandatoryError",
                    "[Sales Order, None]: customer, items",
                );
            }
            let mut total = Decimal::ZERO;
            for (row, item) in items.iter().enumerate() {
                let code = item["item_code"].as_str().unwrap_or_default();
                if !ITEMS.contains(&code) {
                    return frappe_error(
                        StatusCode::EXPECTATION_FAILED,
                        "LinkValidationError",
                        &format!("Could not find Row #{}: Item Code: {code}", row + 1),
                    );
                }
                let number = |v: &Value| {
                    v.to_string()
                        .trim_matches('"')
                        .parse::<Decimal>()
                        .unwrap_or_default()
                };
                total += number(&item["qty"]) * number(&item["rate"]);
            }
            doc["grand_total"] = json!(total.round_dp(2));
            site.orders_made += 1;
            format!("SAL-ORD-2026-{:05}", site.orders_made)
        }
        other => {
            return frappe_error(
                StatusCode::NOT_FOUND,
                "DoesNotExistError",
                &format!("DocType {other} not found"),
            );
        }
    };
    doc["name"] = json!(name);
    site.docs
        .entry(doctype)
        .or_default()
        .insert(name, doc.clone());
    Json(json!({"data": doc})).into_response()
}

async fn update(
    State(site): State<Shared>,
    Path((doctype, name)): Path<(String, String)>,
    headers: HeaderMap,
    Json(changes): Json<Value>,
) -> Response {
    if let Some(refused) = refused(&headers) {
        return refused;
    }
    let mut site = site.lock().unwrap();
    let Some(doc) = site.docs.get_mut(&doctype).and_then(|d| d.get_mut(&name)) else {
        return frappe_error(
            StatusCode::NOT_FOUND,
            "DoesNotExistError",
            &format!("{doctype} {name} not found"),
        );
    };
    for (field, value) in changes.as_object().into_iter().flatten() {
        doc[field] = value.clone();
    }
    Json(json!({"data": doc})).into_response()
}

/// Documents of `doctype` whose `field` is `value`.
pub fn count(site: &Shared, doctype: &str, field: &str, value: &str) -> usize {
    site.lock()
        .unwrap()
        .docs
        .get(doctype)
        .into_iter()
        .flatten()
        .filter(|(_, doc)| doc[field] == value)
        .count()
}
