//! A small recording ERP (and CRM) over HTTP that can be told to fail: what handoff's REST
//! connector talks to in the delivery tests.
//!
//! - `PUT /customers/{code}` upserts a customer, answers `{"id": "C-<code>"}`
//! - `GET /orders?reference=R` answers `[{"id": …}]` or `[]` (find before create)
//! - `POST /orders` creates an order (a second order for the same reference is a duplicate)
//! - `PATCH /opportunities/{id}` records a CRM update
//! - `GET /records/{object}?after=&limit=` lists the CRM's records of an object by `Id`, a page
//!   at a time (`{"records", "next"}`), and `GET /customers?after=&limit=` the ERP's customers
//!   (reconciliation's `list` operations)
//!
//! Every request's idempotency key is recorded in arrival order.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, put};
use serde_json::{Value, json};

/// How the server answers the next requests.
#[derive(Debug, Clone, PartialEq)]
pub enum Mode {
    Normal,
    /// 503 with this `Retry-After` (seconds).
    Unavailable(Option<u64>),
    /// 429 with this `Retry-After`.
    RateLimited(u64),
    /// Takes the request (and does it), then answers only after this long.
    Slow(Duration),
}

#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
    pub path: String,
    /// The idempotency key it carried.
    pub key: Option<String>,
    pub body: Value,
    pub at: std::time::Instant,
}

#[derive(Default)]
pub struct Books {
    pub customers: HashMap<String, Value>,
    /// Per customer, the names in the order their updates took effect.
    pub customer_history: HashMap<String, Vec<String>>,
    /// Idempotency keys that took effect; a repeat is answered without doing it again.
    pub applied_keys: std::collections::HashSet<String>,
    pub replays: u32,
    /// reference → (order id, body)
    pub orders: HashMap<String, (String, Value)>,
    pub duplicate_orders: u32,
    pub opportunities: HashMap<String, Vec<Value>>,
    pub received: Vec<Received>,
    /// The CRM's records: object → Id → record (what `GET /records/{object}` lists).
    pub records: HashMap<String, std::collections::BTreeMap<String, Value>>,
}

impl Books {
    /// Whether customers `<prefix>0` … `<prefix><n-1>` all carry `name`.
    pub fn customers_named(&self, prefix: &str, n: usize, name: &str) -> bool {
        (0..n).all(|a| {
            self.customers
                .get(&format!("{prefix}{a}"))
                .is_some_and(|c| c["name"] == name)
        })
    }

    /// The customer names sent to `path`, in arrival order, from the `skip`th request on.
    pub fn names_sent(&self, path: &str, skip: usize) -> Vec<&str> {
        self.received
            .iter()
            .skip(skip)
            .filter(|r| r.path == path)
            .map(|r| r.body["name"].as_str().unwrap())
            .collect()
    }
}

pub struct Fake {
    pub books: Mutex<Books>,
    pub mode: Mutex<Mode>,
}

impl Fake {
    pub fn new() -> Arc<Fake> {
        Arc::new(Fake {
            books: Mutex::new(Books::default()),
            mode: Mutex::new(Mode::Normal),
        })
    }

    pub fn set_mode(&self, mode: Mode) {
        *self.mode.lock().unwrap() = mode;
    }

    pub fn books(&self) -> std::sync::MutexGuard<'_, Books> {
        self.books.lock().unwrap()
    }

    /// Serves on `listener` until the test ends.
    pub fn serve(self: &Arc<Self>, listener: std::net::TcpListener) -> SocketAddr {
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let listener = tokio::net::TcpListener::from_std(listener).unwrap();
        let app = Router::new()
            .route("/customers/{code}", put(put_customer))
            .route("/customers", get(list_customers))
            .route("/records/{object}", get(list_records))
            .route("/orders", get(find_order).post(create_order))
            .route("/opportunities/{id}", patch(patch_opportunity))
            .with_state(self.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        addr
    }

    pub async fn start() -> (Arc<Fake>, SocketAddr) {
        let fake = Fake::new();
        let addr = fake.serve(std::net::TcpListener::bind("127.0.0.1:0").unwrap());
        (fake, addr)
    }

    /// Records the request; answers the failure the mode asks for, if any.
    async fn gate(
        &self,
        method: &str,
        path: String,
        headers: &HeaderMap,
        body: &Value,
    ) -> Option<Response> {
        let key = headers
            .get("idempotency-key")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        self.books().received.push(Received {
            method: method.to_owned(),
            path,
            key,
            body: body.clone(),
            at: std::time::Instant::now(),
        });
        let mode = self.mode.lock().unwrap().clone();
        match mode {
            Mode::Normal | Mode::Slow(_) => None,
            Mode::Unavailable(after) => {
                let mut response =
                    (StatusCode::SERVICE_UNAVAILABLE, "down for maintenance").into_response();
                if let Some(after) = after {
                    response.headers_mut().insert("retry-after", after.into());
                }
                Some(response)
            }
            Mode::RateLimited(after) => {
                let mut response = (StatusCode::TOO_MANY_REQUESTS, "slow down").into_response();
                response.headers_mut().insert("retry-after", after.into());
                Some(response)
            }
        }
    }

    async fn slow(&self) {
        let mode = self.mode.lock().unwrap().clone();
        if let Mode::Slow(delay) = mode {
            tokio::time::sleep(delay).await;
        }
    }
}

async fn put_customer(
    State(fake): State<Arc<Fake>>,
    Path(code): Path<String>,
    headers: HeaderMap,
    axum::Json(body): axum::Json<Value>,
) -> Response {
    if let Some(failed) = fake
        .gate("PUT", format!("/customers/{code}"), &headers, &body)
        .await
    {
        return failed;
    }
    {
        let mut books = fake.books();
        let key = headers
            .get("idempotency-key")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        if !books.applied_keys.insert(key) {
            books.replays += 1;
        } else {
            let name = body["name"].as_str().unwrap_or_default().to_owned();
            books
                .customer_history
                .entry(code.clone())
                .or_default()
                .push(name);
            books.customers.insert(code.clone(), body);
        }
    }
    fake.slow().await;
    axum::Json(json!({"id": format!("C-{code}")})).into_response()
}

/// One page of `ids` after `after`: the ids on it, and the query of the next page.
fn page_of(ids: Vec<String>, query: &HashMap<String, String>) -> (Vec<String>, Option<String>) {
    let after = query.get("after").cloned().unwrap_or_default();
    let limit: usize = query
        .get("limit")
        .and_then(|l| l.parse().ok())
        .unwrap_or(100);
    let page: Vec<String> = ids
        .into_iter()
        .filter(|id| *id > after)
        .take(limit + 1)
        .collect();
    let next = (page.len() > limit).then(|| format!("after={}&limit={limit}", page[limit - 1]));
    (page.into_iter().take(limit).collect(), next)
}

async fn list_records(
    State(fake): State<Arc<Fake>>,
    Path(object): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let asked = format!(
        "/records/{object}?after={}",
        query.get("after").cloned().unwrap_or_default()
    );
    if let Some(failed) = fake
        .gate("GET", asked, &HeaderMap::new(), &Value::Null)
        .await
    {
        return failed;
    }
    fake.slow().await;
    let books = fake.books();
    let records = books.records.get(&object).cloned().unwrap_or_default();
    let (page, next) = page_of(records.keys().cloned().collect(), &query);
    axum::Json(json!({
        "records": page.iter().map(|id| &records[id]).collect::<Vec<_>>(),
        "next": next.map(|next| format!("/records/{object}?{next}")),
    }))
    .into_response()
}

async fn list_customers(
    State(fake): State<Arc<Fake>>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let books = fake.books();
    let mut codes: Vec<String> = books.customers.keys().cloned().collect();
    codes.sort();
    let (page, next) = page_of(codes, &query);
    let customers: Vec<Value> = page
        .iter()
        .map(|code| json!({"id": format!("C-{code}"), "code": code, "name": books.customers[code]["name"]}))
        .collect();
    axum::Json(json!({
        "customers": customers,
        "next": next.map(|next| format!("/customers?{next}")),
    }))
    .into_response()
}

async fn find_order(
    State(fake): State<Arc<Fake>>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let reference = query.get("reference").cloned().unwrap_or_default();
    if let Some(failed) = fake
        .gate(
            "GET",
            format!("/orders?reference={reference}"),
            &HeaderMap::new(),
            &Value::Null,
        )
        .await
    {
        return failed;
    }
    let found = fake
        .books()
        .orders
        .get(&reference)
        .map(|(id, _)| id.clone());
    axum::Json(match found {
        Some(id) => json!([{"id": id}]),
        None => json!([]),
    })
    .into_response()
}

async fn create_order(
    State(fake): State<Arc<Fake>>,
    headers: HeaderMap,
    axum::Json(body): axum::Json<Value>,
) -> Response {
    if let Some(failed) = fake.gate("POST", "/orders".into(), &headers, &body).await {
        return failed;
    }
    let reference = body["reference"].as_str().unwrap_or_default().to_owned();
    let id = {
        let mut books = fake.books();
        let id = format!("SO-{}", books.orders.len() + 1);
        if books.orders.contains_key(&reference) {
            books.duplicate_orders += 1;
        }
        books.orders.insert(reference, (id.clone(), body));
        id
    };
    fake.slow().await;
    (StatusCode::CREATED, axum::Json(json!({"id": id}))).into_response()
}

async fn patch_opportunity(
    State(fake): State<Arc<Fake>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    axum::Json(body): axum::Json<Value>,
) -> Response {
    if let Some(failed) = fake
        .gate("PATCH", format!("/opportunities/{id}"), &headers, &body)
        .await
    {
        return failed;
    }
    let mut books = fake.books();
    // The CRM's record (when it lists one) shows what was written to it.
    if let (Some(record), Some(fields)) = (
        books
            .records
            .get_mut("Opportunity")
            .and_then(|r| r.get_mut(&id)),
        body.as_object(),
    ) {
        for (name, value) in fields {
            record[name.as_str()] = value.clone();
        }
    }
    books.opportunities.entry(id).or_default().push(body);
    drop(books);
    axum::Json(json!({"ok": true})).into_response()
}

/// Connector files for an ERP and a CRM at `addr`, with a quick retry schedule.
pub fn connectors(dir: &std::path::Path, addr: SocketAddr, request_secs: u64) {
    let policy = format!(
        "retry: {{ schedule_secs: [1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1], max_retry_after_secs: 5 }}\n\
         breaker: {{ failures: 5, open_secs: 1, max_open_secs: 2 }}\n\
         timeouts: {{ connect_secs: 2, request_secs: {request_secs} }}\n"
    );
    connectors_with(dir, addr, &policy);
}

/// Connector files for an ERP and a CRM at `addr` with `policy` (retry, breaker, timeouts,
/// concurrency lines) in both.
pub fn connectors_with(dir: &std::path::Path, addr: SocketAddr, policy: &str) {
    let common = format!(
        "kind: rest\nbase_url: http://{addr}\nidempotency_header: Idempotency-Key\n{policy}"
    );
    std::fs::write(
        dir.join("erp.yaml"),
        format!(
            "{common}role: erp\noperations:\n  \
             upsert_customer: {{ method: PUT, path: \"/customers/{{match}}\", id: /id }}\n  \
             create_sales_order: {{ method: POST, path: /orders, id: /id, find: {{ path: \"/orders?reference={{match}}\", id: /0/id }} }}\n"
        ),
    )
    .unwrap();
    std::fs::write(
        dir.join("crm.yaml"),
        format!(
            "{common}role: crm\noperations:\n  \
             update_opportunity: {{ method: PATCH, path: \"/opportunities/{{/id}}\" }}\n"
        ),
    )
    .unwrap();
}
