//! Small recording servers for the systems that cannot run here, each following its published
//! API: paths, auth headers, success and error bodies, rate-limit answers. Every request is
//! recorded (method, path with query, headers, body) before the fake answers it.

pub mod erpnext;
pub mod generic_crm;
pub mod hubspot;
pub mod hubspot_catalog;
pub mod netsuite;
pub mod salesforce;
pub mod salesforce_catalog;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;

#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    /// Path and query, as sent (percent-encoded).
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

pub type Log = Arc<Mutex<Vec<Recorded>>>;

/// Serves `router` on 127.0.0.1:0, recording every request.
pub async fn serve(router: Router) -> (SocketAddr, Log) {
    let log = Log::default();
    let app = router.layer(axum::middleware::from_fn_with_state(log.clone(), record));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, log)
}

async fn record(State(log): State<Log>, request: Request, next: Next) -> Response {
    let (parts, body) = request.into_parts();
    let bytes = axum::body::to_bytes(body, usize::MAX).await.unwrap();
    log.lock().unwrap().push(Recorded {
        method: parts.method.to_string(),
        path: parts
            .uri
            .path_and_query()
            .map(|p| p.to_string())
            .unwrap_or_default(),
        headers: parts
            .headers
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_str().unwrap_or_default().to_owned()))
            .collect(),
        body: String::from_utf8_lossy(&bytes).into_owned(),
    });
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}

/// The requests recorded so far whose method and path start with `prefix` (`"PATCH /crm"`).
pub fn requests(log: &Log, prefix: &str) -> Vec<Recorded> {
    log.lock()
        .unwrap()
        .iter()
        .filter(|r| format!("{} {}", r.method, r.path).starts_with(prefix))
        .cloned()
        .collect()
}
