//! A Salesforce org's catalog as its REST API answers (API v61.0), with the rules that bite:
//! - `PATCH /services/data/v61.0/sobjects/Product2/ERP_Code__c/{code}` upserts by external id:
//!   201 `{"id", "success", "errors", "created": true}` when it creates, 200 with
//!   `"created": false` when it updates; a create without `Name` → 400
//!   `REQUIRED_FIELD_MISSING`; a field Product2 lacks → 400 `INVALID_FIELD`
//! - `POST /services/data/v61.0/sobjects/PricebookEntry` creates an entry: `Pricebook2Id`,
//!   `Product2Id`, `UnitPrice` required; a custom price book's entry before the product's
//!   standard price in that currency → 400 `STANDARD_PRICE_NOT_DEFINED`; a second entry for
//!   the same product, book and currency → 400 `DUPLICATE_VALUE`
//! - `PATCH /services/data/v61.0/sobjects/PricebookEntry/{id}` updates it; `Product2Id`,
//!   `Pricebook2Id` and `CurrencyIsoCode` cannot change after create → 400
//!   `INVALID_FIELD_FOR_INSERT_UPDATE`
//! - `GET /services/data/v61.0/query?q=SELECT Id FROM PricebookEntry WHERE Product2Id = '…' AND
//!   Pricebook2Id = '…' AND CurrencyIsoCode = '…'` → `{"totalSize", "done", "records": [{"Id"}]}`
//! - `GET …/query?q=SELECT Id, ERP_Code__c, Name, IsActive, LastModifiedDate FROM Product2`
//!   lists the products 2,000 a batch; `nextRecordsUrl` (`…/query/01gPRODUCTS-2000`) gives the
//!   next batch while `done` is false

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, post};
use axum::{Json, Router};
use serde_json::{Map, Value, json};

use super::salesforce::{Shared, session_error};

/// The standard price book's id (every org has one).
pub const STANDARD_BOOK: &str = "01sSTANDARD000001";

const PRODUCT_FIELDS: [&str; 5] = [
    "Name",
    "ProductCode",
    "IsActive",
    "Description",
    "QuantityUnitOfMeasure",
];
const CREATE_ONLY: [&str; 3] = ["Product2Id", "Pricebook2Id", "CurrencyIsoCode"];

/// A product in the org.
#[derive(Debug, Clone)]
pub struct Product {
    pub id: String,
    pub fields: Map<String, Value>,
    /// How many upserts reached it.
    pub writes: u32,
    /// Its `LastModifiedDate`.
    pub modified: String,
}

pub fn routes(router: Router<Shared>) -> Router<Shared> {
    router
        .route(
            "/services/data/v61.0/sobjects/Product2/ERP_Code__c/{code}",
            patch(upsert_product),
        )
        .route(
            "/services/data/v61.0/sobjects/PricebookEntry",
            post(create_entry),
        )
        .route(
            "/services/data/v61.0/sobjects/PricebookEntry/{id}",
            patch(update_entry),
        )
        .route("/services/data/v61.0/query", get(query))
        .route("/services/data/v61.0/query/{locator}", get(more_products))
}

/// Records a query answers per batch (Salesforce's default).
const BATCH: usize = 2000;

/// The batch of products from `offset` on.
fn products_from(org: &super::salesforce::Org, offset: usize) -> Response {
    let mut products: Vec<(&String, &Product)> = org.products.iter().collect();
    products.sort_by(|a, b| a.1.id.cmp(&b.1.id));
    let records: Vec<Value> = products
        .iter()
        .skip(offset)
        .take(BATCH)
        .map(|(code, p)| {
            json!({"attributes": {"type": "Product2"}, "Id": p.id, "ERP_Code__c": code,
                   "Name": p.fields.get("Name"), "IsActive": p.fields.get("IsActive"),
                   "LastModifiedDate": p.modified})
        })
        .collect();
    let done = offset + BATCH >= products.len();
    let mut answer = json!({"totalSize": products.len(), "done": done, "records": records});
    if !done {
        answer["nextRecordsUrl"] = json!(format!(
            "/services/data/v61.0/query/01gPRODUCTS-{}",
            offset + BATCH
        ));
    }
    Json(answer).into_response()
}

async fn more_products(
    State(org): State<Shared>,
    Path(locator): Path<String>,
    headers: HeaderMap,
) -> Response {
    let org = org.lock().unwrap();
    if let Some(refused) = session_error(&org, &headers) {
        return refused;
    }
    match locator
        .strip_prefix("01gPRODUCTS-")
        .and_then(|n| n.parse().ok())
    {
        Some(offset) => products_from(&org, offset),
        None => error(
            StatusCode::NOT_FOUND,
            "INVALID_QUERY_LOCATOR",
            "invalid query locator",
        ),
    }
}

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        Json(json!([{"message": message, "errorCode": code, "fields": []}])),
    )
        .into_response()
}

fn not_an_object() -> Response {
    error(
        StatusCode::BAD_REQUEST,
        "JSON_PARSER_ERROR",
        "The request body must be a JSON object",
    )
}

async fn upsert_product(
    State(org): State<Shared>,
    Path(code): Path<String>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let mut org = org.lock().unwrap();
    if let Some(refused) = session_error(&org, &headers) {
        return refused;
    }
    let Some(fields) = body.as_object() else {
        return not_an_object();
    };
    if let Some(unknown) = fields
        .keys()
        .find(|k| !PRODUCT_FIELDS.contains(&k.as_str()))
    {
        let message = format!("No such column '{unknown}' on sobject of type Product2");
        return error(StatusCode::BAD_REQUEST, "INVALID_FIELD", &message);
    }
    let next = format!("01t{:012}", org.products.len() + 1);
    let created = !org.products.contains_key(&code);
    if created && !fields.contains_key("Name") {
        return error(
            StatusCode::BAD_REQUEST,
            "REQUIRED_FIELD_MISSING",
            "Required fields are missing: [Name]",
        );
    }
    let product = org.products.entry(code).or_insert_with(|| Product {
        id: next,
        fields: Map::new(),
        writes: 0,
        modified: String::new(),
    });
    product.writes += 1;
    product.modified = chrono::Utc::now()
        .format("%Y-%m-%dT%H:%M:%S%.3f+0000")
        .to_string();
    for (name, value) in fields {
        product.fields.insert(name.clone(), value.clone());
    }
    let answer = json!({"id": product.id, "success": true, "errors": [], "created": created});
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    (status, Json(answer)).into_response()
}

async fn create_entry(
    State(org): State<Shared>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let mut org = org.lock().unwrap();
    if let Some(refused) = session_error(&org, &headers) {
        return refused;
    }
    let Some(fields) = body.as_object().cloned() else {
        return not_an_object();
    };
    let text = |name: &str| fields.get(name).and_then(Value::as_str).map(str::to_owned);
    let (Some(product), Some(book), Some(_)) = (
        text("Product2Id"),
        text("Pricebook2Id"),
        fields.get("UnitPrice"),
    ) else {
        return error(
            StatusCode::BAD_REQUEST,
            "REQUIRED_FIELD_MISSING",
            "Required fields are missing: [Product2Id, Pricebook2Id, UnitPrice]",
        );
    };
    let currency = text("CurrencyIsoCode").unwrap_or_else(|| "USD".into());
    let has = |book: &str| {
        org.entries.values().any(|e| {
            e["Product2Id"] == product.as_str()
                && e["Pricebook2Id"] == book
                && e["CurrencyIsoCode"] == currency.as_str()
        })
    };
    if book != STANDARD_BOOK && !has(STANDARD_BOOK) {
        return error(
            StatusCode::BAD_REQUEST,
            "STANDARD_PRICE_NOT_DEFINED",
            "No standard price defined for this product",
        );
    }
    if has(&book) {
        return error(
            StatusCode::BAD_REQUEST,
            "DUPLICATE_VALUE",
            "This price definition already exists in this price book",
        );
    }
    let id = format!("01u{:012}", org.entries.len() + 1);
    let mut entry = fields;
    entry.insert("CurrencyIsoCode".into(), json!(currency));
    entry.insert("Id".into(), json!(id));
    org.entries.insert(id.clone(), Value::Object(entry));
    (
        StatusCode::CREATED,
        Json(json!({"id": id, "success": true, "errors": []})),
    )
        .into_response()
}

async fn update_entry(
    State(org): State<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let mut org = org.lock().unwrap();
    if let Some(refused) = session_error(&org, &headers) {
        return refused;
    }
    let Some(fields) = body.as_object().cloned() else {
        return not_an_object();
    };
    if let Some(fixed) = fields.keys().find(|k| CREATE_ONLY.contains(&k.as_str())) {
        let message = format!(
            "Unable to create/update fields: {fixed}. Please check the security settings of this field and verify that it is read/write for your profile or permission set."
        );
        return error(
            StatusCode::BAD_REQUEST,
            "INVALID_FIELD_FOR_INSERT_UPDATE",
            &message,
        );
    }
    let Some(entry) = org.entries.get_mut(&id) else {
        return error(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            "The requested resource does not exist",
        );
    };
    for (name, value) in fields {
        entry[name.as_str()] = value;
    }
    StatusCode::NO_CONTENT.into_response()
}

/// The value `field = '…'` has in a SOQL WHERE clause.
fn condition<'a>(soql: &'a str, field: &str) -> Option<&'a str> {
    let at = soql.find(&format!("{field} = '"))? + field.len() + 4;
    let rest = &soql[at..];
    Some(&rest[..rest.find('\'')?])
}

async fn query(
    State(org): State<Shared>,
    Query(params): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let org = org.lock().unwrap();
    if let Some(refused) = session_error(&org, &headers) {
        return refused;
    }
    let soql = params.get("q").cloned().unwrap_or_default();
    if soql == "SELECT Id, ERP_Code__c, Name, IsActive, LastModifiedDate FROM Product2" {
        return products_from(&org, 0);
    }
    if !soql.starts_with("SELECT Id FROM PricebookEntry WHERE ") {
        return error(
            StatusCode::BAD_REQUEST,
            "MALFORMED_QUERY",
            "this fake answers PricebookEntry look-ups only",
        );
    }
    let wanted: Vec<(&str, &str)> = ["Product2Id", "Pricebook2Id", "CurrencyIsoCode"]
        .into_iter()
        .filter_map(|field| condition(&soql, field).map(|value| (field, value)))
        .collect();
    let records: Vec<Value> = org
        .entries
        .values()
        .filter(|e| wanted.iter().all(|(field, value)| e[*field] == *value))
        .map(|e| json!({"attributes": {"type": "PricebookEntry"}, "Id": e["Id"]}))
        .collect();
    Json(json!({"totalSize": records.len(), "done": true, "records": records})).into_response()
}
