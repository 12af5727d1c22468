//! Product sync, the ERP side: for a connector that masters products (`tryton.products_every_secs`),
//! ask it every so often for the products changed since the stored cursor, journal a
//! `product.changed` event for each, and only then store the cursor. A crash in between asks
//! again for the same window; each change's id is the product's code and the time of the
//! change, so the journal's dedupe drops the repeats. The events go through the journal, the
//! router and the mappings like any other (a mapping `on: product.changed` sends them on).
//! An order the ERP refused for a product it did not have yet is parked on that product
//! (`Failure::missing`); a change that shows the product active releases it.

use std::sync::Arc;

use serde_json::Value;
use tokio::sync::watch;

use crate::adapters::{ProductChange, ProductSource, ProductsChanged};
use crate::envelope::Envelope;
use crate::sync::Engine;

/// The event type product changes are journaled as.
pub const EVENT_TYPE: &str = "product.changed";

pub async fn run(
    engine: Arc<Engine>,
    name: String,
    source: Arc<dyn ProductSource>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        match once(&engine, &name, source.as_ref()).await {
            Ok(0) => {}
            Ok(journaled) => {
                tracing::info!(connector = %name, journaled, "changed products polled")
            }
            Err(error) => {
                tracing::warn!(connector = %name, error = %error, "product poll failed; trying again")
            }
        }
        tokio::select! {
            () = tokio::time::sleep(source.every()) => {}
            _ = stop.changed() => return,
        }
    }
}

/// Where this connector's product cursor is kept (beside its status poller's).
fn cursor_key(name: &str) -> String {
    format!("{name}/products")
}

/// One ask: returns how many changes it journaled (repeats included; the journal drops them).
pub async fn once(
    engine: &Engine,
    name: &str,
    source: &dyn ProductSource,
) -> anyhow::Result<usize> {
    let key = cursor_key(name);
    let cursor = engine
        .queue
        .poll_cursor(&key)?
        .and_then(|c| c.as_str().map(str::to_owned));
    let ProductsChanged {
        changes,
        cursor: next,
    } = source
        .changed_products(cursor)
        .await
        .map_err(|failure| anyhow::anyhow!(failure.message))?;
    let count = changes.len();
    if count > 0 {
        let events = changes
            .iter()
            .map(|change| envelope(name, change))
            .collect();
        engine.journal.append(events).await?;
        // Orders parked because the ERP lacked one of these products run again now.
        let arrived: Vec<(String, String)> = changes
            .iter()
            .filter(|change| change.active)
            .map(|change| ("product".to_owned(), change.code.clone()))
            .collect();
        let released = engine.queue.release_parked(&arrived)?;
        if released > 0 {
            tracing::info!(connector = %name, released, "orders waiting for a product run again");
        }
    }
    engine
        .queue
        .save_poll(&key, next.map(Value::String).as_ref(), &[])?;
    Ok(count)
}

fn envelope(source: &str, change: &ProductChange) -> Envelope {
    let data = change.data();
    Envelope {
        id: change.event_id(),
        source: source.to_owned(),
        event_type: Some(EVENT_TYPE.into()),
        ignored: false,
        object: Some("product".into()),
        object_id: Some(change.code.clone()),
        version: Some(change.changed_at.clone()),
        signed_at: None,
        received_at: chrono::Utc::now(),
        raw_body: data.to_string(),
        data,
        data_is_raw_body: true,
    }
}
