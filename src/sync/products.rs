//! Product and price sync, the ERP side: for a connector that masters products (`tryton.products_every_secs`),
//! ask it every so often for the products changed since the stored cursor, journal a
//! `product.changed` event for each, and only then store the cursor. A crash in between asks
//! again for the same window; each change's id is the product's code and the time of the
//! change, so the journal's dedupe drops the repeats. The events go through the journal, the
//! router and the mappings like any other (a mapping `on: product.changed` sends them on).
//! An order the ERP refused for a product it did not have yet is parked on that product
//! (`Failure::missing`); a change that shows the product active releases it.
//!
//! Prices (`tryton.prices_every_secs`) are read whole on each pass, since a price-list edit
//! changes no product: each price (product, price list, currency) is journaled as a
//! `product_price.changed` event only when it differs from the last one journaled. Between
//! passes, each poll also looks at the newest edit of a price list or line, and a poll that
//! finds one (or finds changed products: a list price lives on the product) brings the next
//! pass forward. The scheduled pass stays, for what leaves no stamp (a dated list coming into
//! force, a deleted line).

use std::sync::Arc;

use serde_json::Value;
use tokio::sync::watch;

use crate::adapters::{PriceChange, ProductChange, ProductSource, ProductsChanged};
use crate::envelope::Envelope;
use crate::sync::Engine;

/// The event type product changes are journaled as.
pub const EVENT_TYPE: &str = "product.changed";

/// The event type price changes are journaled as.
pub const PRICE_EVENT_TYPE: &str = "product_price.changed";

pub async fn run(
    engine: Arc<Engine>,
    name: String,
    source: Arc<dyn ProductSource>,
    mut stop: watch::Receiver<bool>,
) {
    let mut prices_due = std::time::Instant::now();
    let mut lists_seen: Option<String> = None;
    loop {
        let every = source.prices_every();
        if !super::holds_role(&engine, &format!("products:{name}"), source.every()) {
            tokio::select! {
                () = tokio::time::sleep(source.every()) => {}
                _ = stop.changed() => return,
            }
            continue;
        }
        match once(&engine, &name, source.as_ref()).await {
            Ok(0) => {}
            Ok(journaled) => {
                tracing::info!(connector = %name, journaled, "changed products polled");
                // A list-price edit changes the product: its prices are read now.
                prices_due = std::time::Instant::now();
            }
            Err(error) => {
                tracing::warn!(connector = %name, error = %error, "product poll failed; trying again")
            }
        }
        if !every.is_zero() {
            // A price list or line edited since the last look: a price pass now.
            match source.price_lists_stamp().await {
                Ok(stamp) if lists_seen.is_some() && stamp > lists_seen => {
                    prices_due = std::time::Instant::now();
                    lists_seen = stamp;
                }
                Ok(stamp) => lists_seen = stamp.or(lists_seen),
                Err(error) => {
                    tracing::warn!(connector = %name, error = %error.message, "price lists could not be read")
                }
            }
        }
        if !every.is_zero() && std::time::Instant::now() >= prices_due {
            match prices_once(&engine, &name, source.as_ref()).await {
                Ok(0) => {}
                Ok(changed) => {
                    tracing::info!(connector = %name, changed, "changed prices journaled")
                }
                Err(error) => {
                    tracing::warn!(connector = %name, error = %error, "price pass failed; trying again")
                }
            }
            prices_due = std::time::Instant::now() + every;
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

/// One whole price pass: journals a `product_price.changed` event for each price (product,
/// price list, currency) that is new or differs from the last one journaled, then remembers
/// what it journaled. A crash in between journals the same events again under the same ids
/// (the change's number per price), which the journal drops.
pub async fn prices_once(
    engine: &Engine,
    name: &str,
    source: &dyn ProductSource,
) -> anyhow::Result<usize> {
    let prices = source
        .prices()
        .await
        .map_err(|failure| anyhow::anyhow!(failure.message))?;
    journal_prices(engine, name, &prices).await
}

/// Journals the prices that differ from the last ones journaled; returns how many.
pub async fn journal_prices(
    engine: &Engine,
    name: &str,
    prices: &[PriceChange],
) -> anyhow::Result<usize> {
    let key = format!("{name}/prices");
    let decimals = engine
        .connector(name)
        .and_then(|live| live.connector.products.as_ref().map(|p| p.price_decimals()))
        .unwrap_or(2);
    let mut events = Vec::new();
    let mut emitted = Vec::new();
    for price in prices {
        let entry = price.key();
        let digest = digest(price, decimals);
        if engine.queue.poll_emitted(&key, &entry)? == digest {
            continue;
        }
        let number = format!("{entry}#n");
        let seq = engine.queue.poll_emitted(&key, &number)? + 1;
        events.push(price_envelope(name, price, seq));
        emitted.push((entry, digest));
        emitted.push((number, seq));
    }
    let changed = events.len();
    if changed > 0 {
        engine.journal.append(events).await?;
        engine.queue.save_poll(&key, None, &emitted)?;
    }
    Ok(changed)
}

/// What a price is (its amount rounded to `decimals`, the CRM's precision, and whether its
/// product is active), as a number never 0 (0 is "nothing journaled yet"): a change the CRM
/// would not show is not sent.
fn digest(price: &PriceChange, decimals: u32) -> u64 {
    use sha2::{Digest, Sha256};
    let amount = price
        .price
        .parse::<rust_decimal::Decimal>()
        .map(|d| {
            d.round_dp_with_strategy(
                decimals,
                rust_decimal::RoundingStrategy::MidpointAwayFromZero,
            )
            .normalize()
            .to_string()
        })
        .unwrap_or_else(|_| price.price.clone());
    let hash = Sha256::digest(format!("{amount}\0{}", price.active).as_bytes());
    u64::from_be_bytes(hash[..8].try_into().expect("8 bytes")).max(1)
}

pub(super) fn price_envelope(source: &str, price: &PriceChange, seq: u64) -> Envelope {
    let data = price.data();
    Envelope {
        id: format!("price:{}:{seq}", price.key()),
        source: source.to_owned(),
        event_type: Some(PRICE_EVENT_TYPE.into()),
        ignored: false,
        object: Some("product_price".into()),
        object_id: Some(price.key()),
        // Zero-padded, so later changes sort after earlier ones.
        version: Some(format!("{seq:010}")),
        signed_at: None,
        received_at: chrono::Utc::now(),
        raw_body: data.to_string(),
        data,
        data_is_raw_body: true,
    }
}

pub(super) fn envelope(source: &str, change: &ProductChange) -> Envelope {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn price(amount: &str) -> PriceChange {
        PriceChange {
            code: "P".into(),
            price_list: "standard".into(),
            currency: "USD".into(),
            price: amount.into(),
            active: true,
        }
    }

    #[test]
    fn prices_are_compared_at_the_crm_precision() {
        assert_eq!(digest(&price("10.001"), 2), digest(&price("10.0000"), 2));
        assert_eq!(digest(&price("10.005"), 2), digest(&price("10.01"), 2));
        assert_ne!(digest(&price("10.004"), 2), digest(&price("10.01"), 2));
        assert_ne!(digest(&price("10.001"), 4), digest(&price("10.00"), 4));
        let inactive = PriceChange {
            active: false,
            ..price("10.00")
        };
        assert_ne!(digest(&inactive, 2), digest(&price("10.00"), 2));
    }
}
