//! Status pollers: for a connector whose system sends no webhooks (Tryton), ask it for changed
//! orders every `every()`, journal an `order_status.changed` event for each milestone an order
//! reached that was not emitted before, and only then store the cursor and the milestones
//! emitted (`Queue::save_poll`). A crash in between re-polls the same window; the events' ids
//! are deterministic, so the journal's dedupe drops the repeats.

use std::sync::Arc;

use serde_json::Value;
use tokio::sync::watch;

use crate::adapters::{Polled, Poller};
use crate::envelope::Envelope;
use crate::sync::Engine;

pub async fn run(
    engine: Arc<Engine>,
    name: String,
    poller: Arc<dyn Poller>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let result = once(&engine, &name, poller.as_ref()).await;
        if let Some(live) = engine.connector(&name) {
            let now = engine.queue.clock().now_ms();
            live.note_poll(now, result.as_ref().map(|_| ()).map_err(|e| e.to_string()));
        }
        match result {
            Ok(0) => {}
            Ok(emitted) => {
                tracing::info!(connector = %name, emitted, "order status changes polled")
            }
            Err(error) => {
                tracing::warn!(connector = %name, error = %error, "status poll failed; trying again")
            }
        }
        tokio::select! {
            () = tokio::time::sleep(poller.every()) => {}
            _ = stop.changed() => return,
        }
    }
}

/// One poll: returns how many events it journaled.
pub async fn once(engine: &Engine, name: &str, poller: &dyn Poller) -> anyhow::Result<usize> {
    let cursor = engine.queue.poll_cursor(name)?;
    let Polled { orders, cursor } = poller
        .poll(cursor)
        .await
        .map_err(|failure| anyhow::anyhow!(failure.message))?;
    let mut events = Vec::new();
    let mut progress = Vec::new();
    for order in orders {
        let emitted = engine.queue.poll_emitted(name, &order.order_id)? as usize;
        if order.reached.len() <= emitted {
            continue;
        }
        for (n, data) in order.reached.iter().enumerate().skip(emitted) {
            events.push(envelope(
                name,
                &order.reference,
                &order.order_id,
                n + 1,
                data,
            ));
        }
        progress.push((order.order_id.clone(), order.reached.len() as u64));
    }
    if !events.is_empty() {
        engine.journal.append(&events).await?;
    }
    engine.queue.save_poll(name, cursor.as_ref(), &progress)?;
    Ok(events.len())
}

fn envelope(
    source: &str,
    reference: &str,
    order_id: &str,
    sequence: usize,
    data: &Value,
) -> Envelope {
    let mut data = data.clone();
    data["sequence"] = Value::from(sequence);
    let status = data["status"].as_str().unwrap_or("changed").to_owned();
    let raw_body = data.to_string();
    Envelope {
        id: format!("{source}-{order_id}-{status}"),
        source: source.to_owned(),
        event_type: Some("order_status.changed".into()),
        ignored: false,
        object: Some("sales_order".into()),
        object_id: Some(reference.to_owned()),
        version: Some(sequence.to_string()),
        signed_at: None,
        received_at: chrono::Utc::now(),
        raw_body,
        data,
        data_is_raw_body: true,
    }
}
