//! HubSpot's CRM v3 objects API for products, with a unique property `erp_code` (created by
//! the integrator with "unique values"):
//! - `GET /crm/v3/objects/products/{value}?idProperty=erp_code` → 200 `{"id", "properties"}`,
//!   or 404 `OBJECT_NOT_FOUND`
//! - `POST /crm/v3/objects/products` with `{"properties": {…}}` → 201 with the product; `name`
//!   missing → 400 `VALIDATION_ERROR`; an `erp_code` another product has → 409 `CONFLICT`
//! - `PATCH /crm/v3/objects/products/{id}` → 200; unknown → 404; a property the portal lacks →
//!   400 `VALIDATION_ERROR`
//!
//! Token and rate limit as for deals (hubspot.rs).

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Map, Value, json};

use super::hubspot::{Shared, admit, error};

/// Product properties the portal has.
const PROPERTIES: [&str; 6] = [
    "name",
    "hs_sku",
    "price",
    "description",
    "erp_code",
    "erp_active",
];

pub fn routes(router: Router<Shared>) -> Router<Shared> {
    router
        .route("/crm/v3/objects/products", post(create))
        .route("/crm/v3/objects/products/{id}", get(read).patch(update))
}

fn answer(status: StatusCode, id: &str, properties: &Map<String, Value>) -> Response {
    (
        status,
        Json(json!({"id": id, "properties": properties, "archived": false,
                    "createdAt": "2026-12-01T10:00:00.000Z", "updatedAt": "2026-12-01T10:00:00.000Z"})),
    )
        .into_response()
}

/// The properties of a request body, or why they are refused.
fn properties(body: &Value) -> Result<Map<String, Value>, String> {
    let properties = body
        .get("properties")
        .and_then(Value::as_object)
        .ok_or("Invalid input JSON: properties is required")?;
    match properties
        .keys()
        .find(|k| !PROPERTIES.contains(&k.as_str()))
    {
        Some(unknown) => Err(format!("Property \"{unknown}\" does not exist")),
        None => Ok(properties.clone()),
    }
}

fn holder_of<'a>(
    products: &'a HashMap<String, Map<String, Value>>,
    code: &Value,
) -> Option<&'a String> {
    products
        .iter()
        .find(|(_, p)| p.get("erp_code") == Some(code))
        .map(|(id, _)| id)
}

async fn read(
    State(portal): State<Shared>,
    Path(id): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let mut portal = portal.lock().unwrap();
    if let Some(refused) = admit(&mut portal, &headers) {
        return refused;
    }
    let found = match query.get("idProperty").map(String::as_str) {
        Some("erp_code") => holder_of(&portal.products, &json!(id)).cloned(),
        Some(other) => {
            let message = format!("{other} is not a unique property");
            return error(StatusCode::BAD_REQUEST, "VALIDATION_ERROR", &message);
        }
        None => portal.products.contains_key(&id).then_some(id),
    };
    match found {
        Some(id) => answer(StatusCode::OK, &id, &portal.products[&id]),
        None => error(
            StatusCode::NOT_FOUND,
            "OBJECT_NOT_FOUND",
            "resource not found",
        ),
    }
}

async fn create(
    State(portal): State<Shared>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let mut portal = portal.lock().unwrap();
    if let Some(refused) = admit(&mut portal, &headers) {
        return refused;
    }
    let properties = match properties(&body) {
        Ok(properties) => properties,
        Err(why) => return error(StatusCode::BAD_REQUEST, "VALIDATION_ERROR", &why),
    };
    if !properties.contains_key("name") {
        return error(
            StatusCode::BAD_REQUEST,
            "VALIDATION_ERROR",
            "Property values were not valid: name is required",
        );
    }
    if let Some(code) = properties.get("erp_code")
        && let Some(holder) = holder_of(&portal.products, code)
    {
        let message = format!("A product with erp_code {code} already exists: {holder}");
        return error(StatusCode::CONFLICT, "CONFLICT", &message);
    }
    let id = format!("{}", 1_000_000 + portal.products.len());
    portal.products.insert(id.clone(), properties.clone());
    answer(StatusCode::CREATED, &id, &properties)
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
    let properties = match properties(&body) {
        Ok(properties) => properties,
        Err(why) => return error(StatusCode::BAD_REQUEST, "VALIDATION_ERROR", &why),
    };
    if let Some(code) = properties.get("erp_code")
        && holder_of(&portal.products, code).is_some_and(|holder| *holder != id)
    {
        let message = format!("A product with erp_code {code} already exists");
        return error(StatusCode::CONFLICT, "CONFLICT", &message);
    }
    let Some(product) = portal.products.get_mut(&id) else {
        return error(
            StatusCode::NOT_FOUND,
            "OBJECT_NOT_FOUND",
            "resource not found",
        );
    };
    product.extend(properties);
    let product = product.clone();
    answer(StatusCode::OK, &id, &product)
}
