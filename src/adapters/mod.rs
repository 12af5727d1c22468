//! Adapters: the one place handoff talks to external systems.
//!
//! Every adapter implements [`Adapter`]; failures are classified here, once, into a [`Class`]
//! (`class.rs`), so the engine never looks at a status code. Adapters never touch the queue.
//! `connector/` reads `connectors/*.yaml` (`spec.rs`) and builds the adapter each file describes.
//!
//! - `sandbox`  plays an ERP or a CRM inside the local store (embedded defaults; labelled so)
//! - `rest`     a generic REST connector driven by its YAML file
//! - `tryton`   the Tryton ERP over JSON-RPC, with its status poller
//! - `http`     the shared HTTP client and status classification

mod class;
pub mod connector;
pub mod http;
pub mod listing;
pub mod product;
pub mod rest;
pub mod sandbox;
pub mod tryton;

pub use class::Class;
pub use listing::{Listed, Listing};
pub use product::{PriceChange, ProductChange, ProductsChanged};

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use rust_decimal::Decimal;
use serde::Serialize;
use serde_json::Value;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// One delivery: an operation with the mapped document.
#[derive(Debug, Clone, Copy)]
pub struct Delivery<'a> {
    pub operation: &'a str,
    pub document: &'a Value,
    /// Same on every attempt of the same job: sent as the target's idempotency header.
    pub idempotency_key: &'a str,
    /// The natural key for find-or-create (the CRM id stored in the target document).
    pub match_key: Option<&'a str>,
    /// An earlier attempt may have taken effect.
    pub in_doubt: bool,
    /// An operator accepted the target's own figures where they differ from the document's.
    pub accept_amounts: bool,
}

/// A delivery that took effect (or had already).
#[derive(Debug, Clone, PartialEq)]
pub struct Delivered {
    /// The id the target gave the record.
    pub external_id: Option<String>,
    pub request: String,
    pub response: String,
}

/// A delivery that did not take effect (or may have: `Class::InDoubt`).
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    pub class: Class,
    pub message: String,
    pub retry_after: Option<Duration>,
    pub request: String,
    pub response: String,
    /// A record the document refers to that the target does not have yet, as (kind, code):
    /// the job is parked on it (released when it arrives, e.g. a product by product sync)
    /// instead of becoming a dead letter. (Boxed: failures travel in `Result`s, kept small.)
    pub missing: Option<Box<(String, String)>>,
}

impl Failure {
    pub fn new(class: Class, message: impl Into<String>) -> Failure {
        Failure {
            class,
            message: message.into(),
            retry_after: None,
            request: String::new(),
            response: String::new(),
            missing: None,
        }
    }
}

/// A product the target has too little of for an order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Shortage {
    pub product: String,
    pub missing: Decimal,
}

pub trait Adapter: Send + Sync {
    /// `sandbox`, `rest`, … (shown to operators).
    fn kind(&self) -> &'static str;

    /// Carries out one operation; creating operations find before they create.
    fn send<'a>(&'a self, delivery: Delivery<'a>) -> BoxFuture<'a, Result<Delivered, Failure>>;

    /// What the target lacks to fill these (product code, quantity) lines; empty when all is in
    /// stock. Adapters without a stock view answer that nothing is short.
    fn shortages<'a>(
        &'a self,
        lines: &'a [(String, Decimal)],
    ) -> BoxFuture<'a, Result<Vec<Shortage>, Failure>> {
        let _ = lines;
        Box::pin(async { Ok(Vec::new()) })
    }

    /// Whether `operation` changes a record it finds already there (an upsert, or a find with
    /// an update). When it does not, a newer version of a record that handoff already created
    /// in the target would be dropped: the engine holds it as `order_changed` instead.
    fn updates_found(&self, operation: &str) -> bool {
        let _ = operation;
        true
    }

    /// Whether [`Adapter::shortages`] really asks the target (a `stock` hold needs it).
    fn checks_stock(&self) -> bool {
        false
    }

    /// One page of the records `operation` lists (`page`: where the previous page said the next
    /// starts), for reconciliation. Adapters that cannot list say so.
    fn list<'a>(
        &'a self,
        operation: &'a str,
        page: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Listing, Failure>> {
        let _ = page;
        Box::pin(async move {
            Err(Failure::new(
                Class::FixConfig,
                format!(
                    "a {} connector cannot list records ({operation})",
                    self.kind()
                ),
            ))
        })
    }

    /// Whether [`Adapter::list`] knows `operation` (checked before a reconciliation runs).
    fn lists(&self, operation: &str) -> bool {
        let _ = operation;
        false
    }

    /// A harmless request that proves the target answers (the dashboard's "test connection").
    fn probe(&self) -> BoxFuture<'_, Result<String, Failure>>;
}

/// Cuts text to `max` characters for attempts and errors.
pub fn cut(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_owned(),
    }
}

/// One order's progress as the ERP reports it: every status milestone reached so far, in order
/// (each one the data of an `order_status.changed` event: `order_id`, `reference`, `number`,
/// `status`, `changed_at`, and `tracking_number` / `invoice_number` / `invoice_amount`).
#[derive(Debug, Clone, PartialEq)]
pub struct OrderProgress {
    pub order_id: String,
    pub reference: String,
    /// When the ERP last changed the order (the poller's cursor format).
    pub changed_at: String,
    pub reached: Vec<Value>,
}

/// What one poll found, and the cursor to store once its events are durable.
#[derive(Debug, Clone, PartialEq)]
pub struct Polled {
    pub orders: Vec<OrderProgress>,
    pub cursor: Option<Value>,
}

/// An ERP that masters products: asked for the products changed since a cursor.
pub trait ProductSource: Send + Sync {
    fn every(&self) -> Duration;
    /// Products changed after `since` (all without it), and the cursor for the next ask.
    fn changed_products(
        &self,
        since: Option<String>,
    ) -> BoxFuture<'_, Result<ProductsChanged, Failure>>;
    /// How often every price is read (zero: never).
    fn prices_every(&self) -> Duration;
    /// Every product's prices, per price list and currency (a whole pass: price changes do
    /// not show as product changes).
    fn prices(&self) -> BoxFuture<'_, Result<Vec<PriceChange>, Failure>>;
    /// The CRM's precision for prices: a price that rounds to the amount sent last is not
    /// sent again.
    fn price_decimals(&self) -> u32 {
        2
    }
    /// The newest change to a price list or one of its lines (a stamp to compare with the one
    /// seen before: a newer one calls for a price pass now, not at the next scheduled one).
    fn price_lists_stamp(&self) -> BoxFuture<'_, Result<Option<String>, Failure>> {
        Box::pin(async { Ok(None) })
    }
}

/// An ERP that is asked for changes (it sends no webhooks).
pub trait Poller: Send + Sync {
    fn every(&self) -> Duration;
    /// The cursor of the very first poll, given the time now (None: from the beginning).
    fn first_cursor(&self, now: chrono::DateTime<chrono::Utc>) -> Option<Value>;
    /// Changes since `cursor` (None: from the beginning).
    fn poll(&self, cursor: Option<Value>) -> BoxFuture<'_, Result<Polled, Failure>>;
}
