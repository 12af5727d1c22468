//! Reconciliation: for a flow whose mapping has a `reconcile:` block, compare every source
//! record (listed from the source connector and mapped again) with the target's records that
//! carry its key and with what handoff last delivered, and sort each into a drift class:
//!
//! | class | meaning | repair |
//! |---|---|---|
//! | `matched` | all agree | — |
//! | `missed_event` | the source is newer than what handoff applied (or was never sent) | replay: the record goes through the queue as an event |
//! | `edited_in_target` | deep pass: the target's fields differ from what handoff delivered | reported (or replayed, when the flow lists it: a status the CRM lacks) |
//! | `missing_in_target` | handoff delivered it, the target no longer has it | reported (or replayed, when the flow lists it) |
//! | `only_in_target` | a target record no source record has the key of (deleted at the source, or never linked) | reported |
//! | `duplicate` | the target has several records with its key | reported |
//! | `unlinked` | the target has it, handoff has no (or another) cross-reference | adopt: the cross-reference is stored |
//! | `known` | a held, parked or dead job already explains it | — |
//! | `in_flight` | changed moments ago, or a job for it is queued | skipped |
//!
//! A run lists the target once, then the source page by page, storing its progress after each
//! page: a run cut off by a crash resumes at the page it was on when the service starts again.
//! Listing requests go through the connectors' rate limits; a page that fails is asked again
//! twice (a record deleted between a search and its read) before the run fails. Repairs come last, through the
//! normal journal and queue: a run that would repair more than the flow's cap (count, or share
//! of the records compared) repairs nothing and says so, and a flow's first run is a dry run.
//!
//! - `classify`  one record's class (pure)
//! - `pass`      a run: listing, comparing, storing progress, repairing
//! - `repair`    replay and adopt, for a run's repairs and operators' row actions

mod classify;
mod pass;
mod repair;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::Engine;
pub use repair::{ResyncError, RowAction, act_on_row, resync};

/// The classes a flow may list under `reconcile.repair`.
/// (`edited_in_target` only where the source masters the compared fields: the ERP's order
/// status on the CRM's opportunity, re-sent when the CRM lacks it or shows another.)
pub const REPAIRABLE: [&str; 4] = [
    "missed_event",
    "unlinked",
    "missing_in_target",
    "edited_in_target",
];

/// How the ids of events journaled by a repair (a run's or an operator's replay) and by
/// `resync` begin. Such an event was asked for: it is never taken for an echo of handoff's own
/// write (a product deleted in the CRM is sent again even though nothing changed in the ERP).
pub const REPAIR_PREFIXES: [&str; 2] = ["reconcile:", "resync:"];

pub fn is_repair(event_id: &str) -> bool {
    REPAIR_PREFIXES.iter().any(|p| event_id.starts_with(p))
}

/// Rows a run keeps (examples for operators and the repairs it plans); counts go on.
const ROWS_KEPT: usize = 2000;

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Class {
    Matched,
    MissedEvent,
    EditedInTarget,
    MissingInTarget,
    OnlyInTarget,
    Duplicate,
    Unlinked,
    Known,
    InFlight,
}

impl Class {
    pub const ALL: [Class; 9] = [
        Class::Matched,
        Class::MissedEvent,
        Class::EditedInTarget,
        Class::MissingInTarget,
        Class::OnlyInTarget,
        Class::Duplicate,
        Class::Unlinked,
        Class::Known,
        Class::InFlight,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Class::Matched => "matched",
            Class::MissedEvent => "missed_event",
            Class::EditedInTarget => "edited_in_target",
            Class::MissingInTarget => "missing_in_target",
            Class::OnlyInTarget => "only_in_target",
            Class::Duplicate => "duplicate",
            Class::Unlinked => "unlinked",
            Class::Known => "known",
            Class::InFlight => "in_flight",
        }
    }
}

/// One record that is not `matched`: what each side holds, side by side.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Row {
    pub class: Class,
    /// The source record's id (none for `only_in_target`).
    pub record: Option<String>,
    /// The key the target is matched by.
    pub key: Option<String>,
    pub why: String,
    /// The source record's version.
    pub version: Option<String>,
    /// The source record as listed (its fields).
    pub source: Option<Value>,
    /// What the mapping makes of it now (deep pass).
    pub document: Option<Value>,
    /// The target's record(s) with its key: id and listed fields.
    pub target: Vec<Value>,
    /// What handoff last delivered: applied version, cross-reference.
    pub delivered: Option<Value>,
    /// What was done about it: `replayed`, `adopted`, `ignored` (with who asked).
    pub action: Option<String>,
}

/// A reconciliation run of one flow, as stored and shown.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Run {
    pub id: u64,
    pub flow: String,
    /// Fields compared too (not only ids and versions).
    pub deep: bool,
    /// Safe classes were to be repaired (`--repair safe`).
    pub repair: bool,
    /// Nothing is repaired: not asked to, or the flow's first run.
    pub dry_run: bool,
    /// `running`, `done`, `capped` (repairs over the cap: none made) or `failed`.
    pub state: String,
    /// What it does now: listing the target, comparing (page n), repairing.
    pub phase: String,
    pub started_ms: i64,
    pub finished_ms: Option<i64>,
    /// Source records in the flow compared, and target records listed.
    pub compared: u64,
    pub target_records: u64,
    /// Records per class.
    pub counts: BTreeMap<Class, u64>,
    /// Records repaired (or, in a dry run, that would be).
    pub repairs: u64,
    pub note: Option<String>,
    pub error: Option<String>,
    /// Non-matched records, up to 2000.
    pub rows: Vec<Row>,
    /// Where the source listing goes on (a resumed run starts there), and pages read.
    #[serde(default)]
    pub next_page: Option<String>,
    #[serde(default)]
    pub pages: u64,
    /// Keys of the source records seen so far (`only_in_target` is what is left).
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    #[schema(value_type = Vec<String>)]
    pub seen: BTreeSet<String>,
}

impl Run {
    pub fn is_running(&self) -> bool {
        self.state == "running"
    }

    fn add(&mut self, row: Row) {
        *self.counts.entry(row.class).or_default() += 1;
        if self.rows.len() < ROWS_KEPT {
            self.rows.push(row);
        }
    }

    /// What an API listing shows: the run without its rows and keys.
    pub fn summary(&self) -> Run {
        Run {
            rows: Vec::new(),
            seen: BTreeSet::new(),
            ..self.clone()
        }
    }

    pub fn count(&self, class: Class) -> u64 {
        self.counts.get(&class).copied().unwrap_or(0)
    }
}

/// What a start asks for.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Ask {
    pub flow: String,
    #[serde(default)]
    pub deep: bool,
    /// `safe`: repair the classes the flow lists (default: report only).
    #[serde(default)]
    pub repair: Option<Repair>,
}

/// What a run repairs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Repair {
    /// The classes the flow's `reconcile.repair` lists.
    Safe,
}

/// Why a run cannot start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{0}")]
    NoFlow(String),
    #[error("{0}")]
    NotReconciled(String),
    #[error("a run of flow {flow:?} is going on already (run {id})")]
    Running { flow: String, id: u64 },
    #[error(transparent)]
    Store(#[from] crate::queue::QueueError),
}

/// A digest of a document as delivered (kept with the applied version), never 0.
pub fn digest(document: &Value) -> u64 {
    use sha2::{Digest, Sha256};
    let bytes = serde_json::to_vec(document).unwrap_or_default();
    let hash = Sha256::digest(&bytes);
    u64::from_be_bytes(hash[..8].try_into().expect("8 bytes")).max(1)
}

/// Runs stored, newest first.
pub fn runs(engine: &Engine, limit: usize) -> Result<Vec<Run>, crate::queue::QueueError> {
    Ok(engine
        .queue
        .runs(limit)?
        .into_iter()
        .filter_map(|run| serde_json::from_value(run).ok())
        .collect())
}

pub fn run(engine: &Engine, id: u64) -> Result<Option<Run>, crate::queue::QueueError> {
    Ok(engine
        .queue
        .run(id)?
        .and_then(|run| serde_json::from_value(run).ok()))
}

fn save(engine: &Engine, run: &Run) -> Result<(), crate::queue::QueueError> {
    let value = serde_json::to_value(run).expect("runs serialize");
    engine.queue.save_run(run.id, &value)?;
    engine.metrics.note_reconcile(run);
    Ok(())
}

/// Starts a run in the background and returns it as it starts.
pub fn start(engine: &Arc<Engine>, ask: &Ask) -> Result<Run, StartError> {
    let loaded = engine.mappings.current();
    let mapping = loaded
        .mappings
        .iter()
        .find(|m| m.flow == ask.flow)
        .ok_or_else(|| {
            let flows: Vec<&str> = loaded
                .mappings
                .iter()
                .filter(|m| m.reconcile.is_some())
                .map(|m| m.flow.as_str())
                .collect();
            StartError::NoFlow(format!(
                "no flow {:?} (flows with `reconcile:`: {})",
                ask.flow,
                if flows.is_empty() {
                    "none".into()
                } else {
                    flows.join(", ")
                }
            ))
        })?;
    if mapping.reconcile.is_none() {
        return Err(StartError::NotReconciled(format!(
            "flow {:?} has no `reconcile:` block in its mapping file",
            ask.flow
        )));
    }
    let repair = ask.repair == Some(Repair::Safe);
    let earlier = runs(engine, 200)?;
    if let Some(going) = earlier
        .iter()
        .find(|r| r.flow == ask.flow && r.is_running())
    {
        return Err(StartError::Running {
            flow: ask.flow.clone(),
            id: going.id,
        });
    }
    let first = !earlier
        .iter()
        .any(|r| r.flow == ask.flow && matches!(r.state.as_str(), "done" | "capped"));
    let now = engine.queue.clock().now_ms();
    let id = earlier
        .first()
        .map_or(0, |r| r.id + 1)
        .max(u64::try_from(now).unwrap_or(0));
    let run = Run {
        id,
        flow: ask.flow.clone(),
        deep: ask.deep,
        repair,
        dry_run: !repair || first,
        state: "running".into(),
        phase: "listing the target".into(),
        started_ms: now,
        finished_ms: None,
        compared: 0,
        target_records: 0,
        counts: BTreeMap::new(),
        repairs: 0,
        note: (repair && first)
            .then(|| "the first run of a flow is a dry run: nothing was repaired".into()),
        error: None,
        rows: Vec::new(),
        next_page: None,
        pages: 0,
        seen: BTreeSet::new(),
    };
    save(engine, &run)?;
    spawn(engine, run.clone());
    Ok(run)
}

/// Goes on with the runs a stop cut off, and shows the finished ones' drift in the metrics
/// (called when the engine starts).
pub fn resume(engine: &Arc<Engine>) {
    let unfinished = match runs(engine, 200) {
        Ok(runs) => {
            runs.iter()
                .for_each(|run| engine.metrics.note_reconcile(run));
            runs.into_iter().filter(Run::is_running).collect::<Vec<_>>()
        }
        Err(error) => {
            tracing::error!(error = %error, "cannot read the reconciliation runs");
            return;
        }
    };
    for run in unfinished {
        tracing::info!(run = run.id, flow = %run.flow, pages = run.pages, "reconciliation run resumes");
        spawn(engine, run);
    }
}

/// Runs `run` in the background until it ends or the engine stops (then it stays `running`
/// with its progress stored, and resumes at the next start).
fn spawn(engine: &Arc<Engine>, mut run: Run) {
    let engine = engine.clone();
    let mut stop = engine.stop.subscribe();
    tokio::spawn(async move {
        let outcome = tokio::select! {
            outcome = pass::execute(&engine, &mut run) => outcome,
            _ = stop.wait_for(|stopped| *stopped) => return,
        };
        if let Err(error) = outcome {
            tracing::warn!(run = run.id, flow = %run.flow, error = %error, "reconciliation run failed");
            run.state = "failed".into();
            run.error = Some(error.to_string());
            run.finished_ms = Some(engine.queue.clock().now_ms());
            if let Err(error) = save(&engine, &run) {
                tracing::error!(error = %error, "cannot store the reconciliation run");
            }
        }
    });
}
