//! Product sync's first load (`handoff products backfill`): every product and price of an ERP
//! that masters them, journaled like the polls' events (the same ids, so a second run stores
//! nothing new), or only read and counted (a dry run, which also names the flows that would
//! take them). A run reads the whole catalog from the ERP and can take minutes, so it runs in
//! the background, one at a time per connector; its status (phase, then the report or the
//! error) is what the API answers and the CLI polls.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use serde::Serialize;
use utoipa::ToSchema;

use super::Engine;
use super::products::{envelope, journal_prices, price_envelope};
use crate::adapters::ProductSource;
use crate::envelope::Envelope;
use crate::journal::{Appended, Position};

/// What a backfill found and did.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Backfill {
    /// Nothing was journaled: what a real run would do.
    pub dry_run: bool,
    /// Products read from the ERP (active or not), and how many of their events were new to
    /// the journal (the rest were there already: a backfill again adds nothing).
    pub products: usize,
    pub products_journaled: usize,
    /// Prices read (product × price list, in the company's currency), and how many differed
    /// from the last ones journaled (all of them, the first time).
    pub prices: usize,
    pub prices_journaled: usize,
    /// Per flow, how many of the events the mappings in force send on (a dry run's preview).
    pub flows: BTreeMap<String, usize>,
}

/// A backfill run of one connector: running (and in which phase), done or failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Run {
    pub connector: String,
    pub dry_run: bool,
    /// `running`, `done` or `failed`.
    pub state: String,
    /// What it is doing now (or did last): reading products, reading prices, journaling.
    pub phase: String,
    pub started_ms: i64,
    pub finished_ms: Option<i64>,
    pub report: Option<Backfill>,
    pub error: Option<String>,
}

/// The last run of each connector.
#[derive(Default)]
pub struct Runs(Mutex<HashMap<String, Run>>);

impl Runs {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Run>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn get(&self, connector: &str) -> Option<Run> {
        self.lock().get(connector).cloned()
    }

    fn update(&self, connector: &str, change: impl FnOnce(&mut Run)) {
        if let Some(run) = self.lock().get_mut(connector) {
            change(run);
        }
    }
}

/// Starts a backfill of `name` in the background; `None` when one is running already.
pub fn start(
    engine: &Arc<Engine>,
    name: &str,
    source: Arc<dyn ProductSource>,
    dry_run: bool,
) -> Option<Run> {
    let run = Run {
        connector: name.to_owned(),
        dry_run,
        state: "running".into(),
        phase: "reading products".into(),
        started_ms: engine.queue.clock().now_ms(),
        finished_ms: None,
        report: None,
        error: None,
    };
    {
        let mut runs = engine.backfills.lock();
        if runs.get(name).is_some_and(|r| r.state == "running") {
            return None;
        }
        runs.insert(name.to_owned(), run.clone());
    }
    let (engine, name) = (engine.clone(), name.to_owned());
    tokio::spawn(async move {
        let phase = |phase: &str| engine.backfills.update(&name, |r| r.phase = phase.into());
        let outcome = backfill(&engine, &name, source.as_ref(), dry_run, &phase).await;
        let now = engine.queue.clock().now_ms();
        engine.backfills.update(&name, |run| {
            run.finished_ms = Some(now);
            match outcome {
                Ok(report) => (run.state, run.report) = ("done".into(), Some(report)),
                Err(error) => (run.state, run.error) = ("failed".into(), Some(error.to_string())),
            }
        });
    });
    Some(run)
}

/// One backfill of connector `name`; `phase` is told what it does next.
pub async fn backfill(
    engine: &Engine,
    name: &str,
    source: &dyn ProductSource,
    dry_run: bool,
    phase: &(dyn Fn(&str) + Sync),
) -> anyhow::Result<Backfill> {
    let failed = |failure: crate::adapters::Failure| anyhow::anyhow!(failure.message);
    let products = source.changed_products(None).await.map_err(failed)?.changes;
    phase("reading prices");
    let prices = source.prices().await.map_err(failed)?;
    let mut events: Vec<Envelope> = products.iter().map(|c| envelope(name, c)).collect();
    let product_events = events.len();
    events.extend(prices.iter().map(|p| price_envelope(name, p, 1)));
    let mut report = Backfill {
        dry_run,
        products: products.len(),
        prices: prices.len(),
        ..Backfill::default()
    };
    let loaded = engine.mappings.current();
    let nowhere = Position {
        segment: 0,
        offset: 0,
    };
    for event in &events {
        for job in super::router::route(&loaded, event, 0, nowhere, 0) {
            *report.flows.entry(job.flow).or_default() += 1;
        }
    }
    if dry_run {
        return Ok(report);
    }
    phase("journaling products");
    let appended = engine
        .journal
        .append(events.drain(..product_events).collect())
        .await?;
    report.products_journaled = appended
        .iter()
        .filter(|a| matches!(a, Appended::New(_)))
        .count();
    phase("journaling prices");
    report.prices_journaled = journal_prices(engine, name, &prices).await?;
    Ok(report)
}
