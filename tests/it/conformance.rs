//! The adapter conformance harness every adapter's tests call, and the fault-injecting proxy it
//! puts between the adapter and the system (a fake, or the real Tryton).
//!
//! What every adapter must do, whatever the system:
//! - idempotent create under retry: the answer to a create is lost after the system acted →
//!   `in_doubt`; the retry (and a later replay) leaves exactly one record;
//! - a request that hangs without reaching the system → `in_doubt`; the retry creates it once;
//! - the system's rate-limit answer → `rate_limited`, waiting as long as it asks;
//! - 5xx → `transient`;
//! - a document the system refuses → `fix_data`, naming what the system said.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use handoff::adapters::Class;
use handoff::adapters::{Adapter, Delivery, Failure};
use serde_json::Value;

/// What the proxy does to the next request that contains a given text.
#[derive(Debug, Clone)]
pub enum Fault {
    /// Answered by the proxy; the system never sees the request.
    Answer {
        status: u16,
        headers: Vec<(&'static str, String)>,
        body: String,
    },
    /// Passed on, and the system's answer held back this long: the system acted, the client
    /// timed out.
    LoseAnswer(Duration),
    /// Not passed on; no answer for this long.
    Hang(Duration),
}

#[derive(Clone)]
struct Proxy {
    upstream: String,
    faults: Arc<Mutex<Vec<(String, Fault)>>>,
    in_flight: Arc<AtomicUsize>,
    client: reqwest::Client,
}

pub struct FaultProxy {
    pub addr: SocketAddr,
    proxy: Proxy,
}

impl FaultProxy {
    /// A proxy on 127.0.0.1:0 in front of `upstream` (`http://host:port`).
    pub async fn start(upstream: &str) -> FaultProxy {
        let proxy = Proxy {
            upstream: upstream.trim_end_matches('/').to_owned(),
            faults: Arc::default(),
            in_flight: Arc::default(),
            client: reqwest::Client::new(),
        };
        let app = Router::new().fallback(forward).with_state(proxy.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        FaultProxy { addr, proxy }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The next request whose method, path or body contains `matching` meets `fault`.
    pub fn next(&self, matching: &str, fault: Fault) {
        self.proxy
            .faults
            .lock()
            .unwrap()
            .push((matching.to_owned(), fault));
    }

    /// Waits until no request is being passed on (a lost answer's effect has landed).
    pub async fn settled(&self) {
        while self.proxy.in_flight.load(Ordering::SeqCst) > 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

async fn forward(State(proxy): State<Proxy>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let bytes = axum::body::to_bytes(body, usize::MAX).await.unwrap();
    let target = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let seen = format!(
        "{} {target}\n{}",
        parts.method,
        String::from_utf8_lossy(&bytes)
    );
    let fault = {
        let mut faults = proxy.faults.lock().unwrap();
        let at = faults
            .iter()
            .position(|(text, _)| seen.contains(text.as_str()));
        at.map(|at| faults.remove(at).1)
    };
    let hold = match fault {
        Some(Fault::Answer {
            status,
            headers,
            body,
        }) => {
            let mut response = Response::builder().status(status);
            for (name, value) in headers {
                response = response.header(name, value);
            }
            return response.body(Body::from(body)).unwrap();
        }
        Some(Fault::Hang(time)) => {
            tokio::time::sleep(time).await;
            return Response::builder().status(504).body(Body::empty()).unwrap();
        }
        Some(Fault::LoseAnswer(time)) => Some(time),
        None => None,
    };
    proxy.in_flight.fetch_add(1, Ordering::SeqCst);
    let mut outgoing = proxy
        .client
        .request(parts.method.clone(), format!("{}{target}", proxy.upstream))
        .body(bytes);
    for (name, value) in &parts.headers {
        if !matches!(name.as_str(), "host" | "content-length") {
            outgoing = outgoing.header(name, value);
        }
    }
    let answer = outgoing.send().await;
    proxy.in_flight.fetch_sub(1, Ordering::SeqCst);
    if let Some(time) = hold {
        tokio::time::sleep(time).await;
    }
    let Ok(answer) = answer else {
        return Response::builder().status(502).body(Body::empty()).unwrap();
    };
    let mut response = Response::builder().status(answer.status());
    for (name, value) in answer.headers() {
        if !matches!(
            name.as_str(),
            "transfer-encoding" | "content-length" | "connection"
        ) {
            response = response.header(name, value);
        }
    }
    response
        .body(Body::from(answer.bytes().await.unwrap_or_default()))
        .unwrap()
}

/// One adapter under test.
pub struct Case<'a> {
    pub name: &'a str,
    pub proxy: &'a FaultProxy,
    pub adapter: &'a dyn Adapter,
    pub operation: &'a str,
    /// Two records the harness creates: (document, match key).
    pub records: [(Value, String); 2],
    /// The operation answers with the record's id (creates do; some updates answer 204).
    pub gives_id: bool,
    /// Text only the creating request carries (the faults aim at it).
    pub create_marker: &'a str,
    /// A document the system refuses, and a text its refusal must contain.
    pub invalid: (Value, &'a str),
    /// The system's own rate-limit answer, and the wait the adapter must report for it.
    pub rate_limit: (Fault, Option<Duration>),
    /// How long the proxy holds a lost answer or a hanging request: longer than the
    /// connector's request timeout.
    pub held: Duration,
}

fn send<'a>(case: &'a Case<'a>, document: &'a Value, key: &'a str, in_doubt: bool) -> Delivery<'a> {
    Delivery {
        operation: case.operation,
        document,
        idempotency_key: key,
        match_key: Some(key),
        in_doubt,
        accept_amounts: false,
    }
}

fn class_of(result: Result<handoff::adapters::Delivered, Failure>, what: &str) -> Failure {
    match result {
        Ok(delivered) => panic!("{what}: expected a failure, got {delivered:?}"),
        Err(failure) => failure,
    }
}

/// Runs every scenario; `records_for(match key)` counts what the system holds for a record.
pub async fn run(case: &Case<'_>, records_for: impl AsyncFn(&str) -> usize) {
    let name = case.name;
    let adapter = case.adapter;

    // Idempotent create under retry: the system acts, the answer is lost.
    let (document, key) = (&case.records[0].0, case.records[0].1.as_str());
    case.proxy
        .next(case.create_marker, Fault::LoseAnswer(case.held));
    let lost = class_of(adapter.send(send(case, document, key, false)).await, name);
    assert_eq!(lost.class, Class::InDoubt, "{name}: lost answer: {lost:?}");
    case.proxy.settled().await;
    assert_eq!(records_for(key).await, 1, "{name}: the first attempt acted");
    let retried = adapter.send(send(case, document, key, true)).await;
    let retried = retried.unwrap_or_else(|f| panic!("{name}: retry after in doubt: {f:?}"));
    assert_eq!(
        retried.external_id.is_some(),
        case.gives_id,
        "{name}: {retried:?}"
    );
    let replayed = adapter.send(send(case, document, key, false)).await;
    let replayed = replayed.unwrap_or_else(|f| panic!("{name}: replay: {f:?}"));
    assert_eq!(replayed.external_id, retried.external_id, "{name}");
    assert_eq!(
        records_for(key).await,
        1,
        "{name}: one record after retry and replay"
    );

    // A request that never reached the system.
    let (document, key) = (&case.records[1].0, case.records[1].1.as_str());
    case.proxy.next(case.create_marker, Fault::Hang(case.held));
    let hung = class_of(adapter.send(send(case, document, key, false)).await, name);
    assert_eq!(hung.class, Class::InDoubt, "{name}: hang: {hung:?}");
    assert_eq!(
        records_for(key).await,
        0,
        "{name}: the hung request never arrived"
    );
    let retried = adapter.send(send(case, document, key, true)).await;
    retried.unwrap_or_else(|f| panic!("{name}: retry after a hang: {f:?}"));
    assert_eq!(records_for(key).await, 1, "{name}");

    // The system's rate limit.
    let (answer, wait) = case.rate_limit.clone();
    case.proxy.next("", answer);
    let limited = class_of(adapter.send(send(case, document, key, false)).await, name);
    assert_eq!(limited.class, Class::RateLimited, "{name}: {limited:?}");
    assert_eq!(limited.retry_after, wait, "{name}: the wait asked for");

    // A server error.
    case.proxy.next(
        "",
        Fault::Answer {
            status: 503,
            headers: vec![("content-type", "text/html".into())],
            body: "<html><body>Service Unavailable</body></html>".into(),
        },
    );
    let down = class_of(adapter.send(send(case, document, key, false)).await, name);
    assert_eq!(down.class, Class::Transient, "{name}: {down:?}");

    // A document the system refuses.
    let (invalid, said) = &case.invalid;
    let refused = class_of(
        adapter.send(send(case, invalid, "invalid-1", false)).await,
        name,
    );
    assert_eq!(refused.class, Class::FixData, "{name}: {refused:?}");
    assert!(
        refused.message.contains(said) || refused.response.contains(said),
        "{name}: the refusal names {said:?}: {refused:?}"
    );
}
