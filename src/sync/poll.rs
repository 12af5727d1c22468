//! Status pollers: for a connector whose system sends no webhooks (Tryton), ask it for changed
//! orders every `every()`, journal an `order_status.changed` event for each milestone an order
//! reached that was not emitted before, and only then store the cursor and the milestones
//! emitted (`Queue::save_poll`). A crash in between re-polls the same window; the events' ids
//! are deterministic, so the journal's dedupe drops the repeats.
//!
//! Only orders handoff created or an operator linked report back: an order whose reference
//! has no cross-reference to it (typed in by hand, or made before handoff was connected) is
//! counted as "not ours" and never written to the CRM. The first poll starts where the poller
//! says (`poll_from`, by default now), so connecting handoff does not back-fill history. An
//! order not ours yet that changed in the last [`XREF_GRACE_SECS`] is read again on the next
//! poll: handoff may have created it a moment before its cross-reference was stored.

use std::sync::Arc;

use serde_json::Value;
use tokio::sync::watch;

use crate::adapters::{OrderProgress, Polled, Poller};
use crate::envelope::Envelope;
use crate::sync::Engine;

pub async fn run(
    engine: Arc<Engine>,
    name: String,
    poller: Arc<dyn Poller>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        if !super::holds_role(&engine, &format!("poller:{name}"), poller.every()) {
            tokio::select! {
                () = tokio::time::sleep(poller.every()) => {}
                _ = stop.changed() => return,
            }
            continue;
        }
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

/// How long an order without a cross-reference is read again before it counts as not ours.
const XREF_GRACE_SECS: i64 = 120;

/// One poll: returns how many events it journaled.
pub async fn once(engine: &Engine, name: &str, poller: &dyn Poller) -> anyhow::Result<usize> {
    let cursor = match engine.queue.poll_cursor(name)? {
        Some(cursor) => Some(cursor),
        None => poller.first_cursor(chrono::Utc::now()),
    };
    let Polled { orders, cursor } = poller
        .poll(cursor)
        .await
        .map_err(|failure| anyhow::anyhow!(failure.message))?;
    let mut events = Vec::new();
    let mut progress = Vec::new();
    let mut not_ours = Vec::new();
    for order in orders {
        if !ours(engine, name, &order.reference, &order.order_id)? {
            not_ours.push(order);
            continue;
        }
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
    if let Some(live) = engine.connector(name) {
        live.note_not_ours(not_ours.iter().map(|o| o.order_id.as_str()));
    }
    let cursor = read_again(cursor, &not_ours, chrono::Utc::now());
    let count = events.len();
    if count > 0 {
        engine.journal.append(events).await?;
    }
    engine.queue.save_poll(name, cursor.as_ref(), &progress)?;
    Ok(count)
}

/// Whether handoff created the order (or an operator linked it): a cross-reference from its
/// reference to exactly this order, in any kind a mapping targets on this connector.
pub(crate) fn ours(
    engine: &Engine,
    name: &str,
    reference: &str,
    order_id: &str,
) -> anyhow::Result<bool> {
    let loaded = engine.mappings.current();
    let mut kinds: Vec<&str> = loaded
        .mappings
        .iter()
        .filter(|m| m.connector == name)
        .map(|m| m.schema_name.as_str())
        .collect();
    kinds.sort_unstable();
    kinds.dedup();
    for kind in kinds {
        if let Some(xref) = engine.queue.xref(name, kind, reference)?
            && xref.external_id == order_id
        {
            return Ok(true);
        }
    }
    Ok(false)
}

/// The cursor, held back to the oldest recent change of an order not ours yet.
fn read_again(
    cursor: Option<Value>,
    not_ours: &[OrderProgress],
    now: chrono::DateTime<chrono::Utc>,
) -> Option<Value> {
    let recent = |order: &&OrderProgress| {
        chrono::DateTime::parse_from_rfc3339(&order.changed_at)
            .is_ok_and(|at| (now - at.to_utc()).num_seconds() < XREF_GRACE_SECS)
    };
    let oldest = not_ours
        .iter()
        .filter(recent)
        .map(|o| o.changed_at.as_str())
        .min();
    match (cursor, oldest) {
        (Some(Value::String(at)), Some(oldest)) if oldest < at.as_str() => {
            Some(Value::String(oldest.to_owned()))
        }
        (cursor, _) => cursor,
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn order(changed_at: &str) -> OrderProgress {
        OrderProgress {
            order_id: "7".into(),
            reference: "006X".into(),
            changed_at: changed_at.into(),
            reached: Vec::new(),
        }
    }

    #[test]
    fn a_recent_order_not_ours_yet_is_read_again_an_old_one_is_not() {
        let now = chrono::DateTime::parse_from_rfc3339("2026-11-30T12:00:00Z")
            .unwrap()
            .to_utc();
        let cursor = Some(Value::String("2026-11-30T11:59:59.000000Z".into()));
        let recent = [order("2026-11-30T11:59:30.000000Z")];
        assert_eq!(
            read_again(cursor.clone(), &recent, now),
            Some(Value::String("2026-11-30T11:59:30.000000Z".into()))
        );
        let old = [order("2026-11-30T11:50:00.000000Z")];
        assert_eq!(read_again(cursor.clone(), &old, now), cursor);
        assert_eq!(read_again(cursor.clone(), &[], now), cursor);
    }
}
