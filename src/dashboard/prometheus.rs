//! `GET /metrics` in the Prometheus text format (the counters and histograms live in
//! `crate::metrics`; the gauges are read here from the queue, the connectors and the journal).

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::routing::get;

use crate::sync::Engine;

pub fn router(engine: Arc<Engine>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .with_state(engine)
}

/// Prometheus metrics: ack and delivery latency histograms, deliveries per flow, connector and
/// outcome, jobs per connector and state, events in the journal.
async fn metrics(State(engine): State<Arc<Engine>>) -> impl axum::response::IntoResponse {
    use crate::metrics::{Gauge, label};
    let mut jobs: Vec<(String, u64)> = engine
        .queue
        .counts()
        .into_iter()
        .map(|((connector, state), n)| {
            (
                format!(
                    "connector=\"{}\",state=\"{}\"",
                    label(&connector),
                    state.as_str()
                ),
                n,
            )
        })
        .collect();
    jobs.sort();
    let paused: Vec<(String, u64)> = engine
        .connectors
        .values()
        .map(|live| {
            let status = live.status();
            (
                format!("connector=\"{}\"", label(&status.name)),
                u64::from(status.paused.is_some() || status.circuit == "open"),
            )
        })
        .collect();
    let gauges = [
        Gauge {
            name: "handoff_queue_jobs",
            help: "Jobs waiting or dead, by connector and state.",
            values: jobs,
        },
        Gauge {
            name: "handoff_connector_stopped",
            help: "1 while a connector is paused or its circuit is open.",
            values: paused,
        },
        Gauge {
            name: "handoff_journal_events",
            help: "Events in the journal.",
            values: vec![(String::new(), engine.journal.len())],
        },
    ];
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        engine.metrics.render(&gauges),
    )
}
