//! One run: list the target (every page, indexed by key), then the source page by page
//! (progress stored after each), then what is left of the target (`only_in_target`), then the
//! repairs.

use std::collections::HashMap;
use std::sync::Arc;

use anyhow::{Context as _, anyhow};
use serde_json::{Value, json};

use super::classify::{Facts, classify};
use super::{Class, Row, Run, digest, save};
use crate::adapters::Listed;
use crate::mapping::live::Loaded;
use crate::mapping::spec::ReconcileSpec;
use crate::mapping::{Context, Mapping};
use crate::queue::{Job, State};
use crate::sync::{Engine, Live};

/// The flow's mapping and the two connectors a run reads.
pub(super) struct Sides {
    pub loaded: Arc<Loaded>,
    at: usize,
    pub source: Arc<Live>,
    pub target: Arc<Live>,
}

impl Sides {
    pub fn of(engine: &Engine, flow: &str) -> anyhow::Result<Sides> {
        let loaded = engine.mappings.current();
        let at = loaded
            .mappings
            .iter()
            .position(|m| m.flow == flow)
            .ok_or_else(|| anyhow!("flow {flow:?} is no longer loaded"))?;
        let mapping = &loaded.mappings[at];
        let spec = mapping
            .reconcile
            .as_ref()
            .ok_or_else(|| anyhow!("flow {flow:?} has no `reconcile:` block"))?;
        let live = |name: &str| {
            engine
                .connectors
                .get(name)
                .cloned()
                .ok_or_else(|| anyhow!("flow {flow:?}: no connector {name:?}"))
        };
        Ok(Sides {
            source: live(&spec.source.connector)?,
            target: live(&mapping.connector)?,
            loaded: loaded.clone(),
            at,
        })
    }

    pub fn mapping(&self) -> &Mapping {
        &self.loaded.mappings[self.at]
    }

    pub fn spec(&self) -> &ReconcileSpec {
        self.mapping().reconcile.as_ref().expect("checked in of()")
    }

    /// The name events of this flow's source carry (`on.source`, else the source connector).
    pub fn source_name(&self) -> &str {
        self.mapping()
            .source
            .as_deref()
            .unwrap_or(&self.spec().source.connector)
    }

    /// A listed source record as an event of the flow (`source.wrap`).
    pub fn event(&self, record: &Listed) -> Value {
        match &self.spec().source.wrap {
            Some(key) => {
                let mut event = json!({ "type": self.mapping().event });
                event[key.as_str()] = record.fields.clone();
                event
            }
            None => record.fields.clone(),
        }
    }

    /// The key the target matches the record by: the mapping's `match`, else its id.
    pub fn key(&self, event: &Value, record: &Listed) -> String {
        self.mapping()
            .keys(event, &self.loaded.lookups)
            .ok()
            .and_then(|keys| keys.match_key)
            .unwrap_or_else(|| record.id.clone())
    }
}

pub(super) async fn execute(engine: &Arc<Engine>, run: &mut Run) -> anyhow::Result<()> {
    let sides = Sides::of(engine, &run.flow)?;
    let spec = sides.spec().clone();
    // A run resumed after its comparison finished goes straight on to its repairs.
    if run.phase == "repairing" {
        super::repair::repair_run(engine, &sides, run).await?;
        return finish(engine, run);
    }
    run.phase = "listing the target".into();
    save(engine, run)?;
    let mut targets: HashMap<String, Vec<Listed>> = HashMap::new();
    let mut keyless = Vec::new();
    let mut page: Option<String> = None;
    let mut listed = 0u64;
    loop {
        let listing = list(&sides.target, &spec.target, page.as_deref()).await?;
        listed += listing.items.len() as u64;
        for record in listing.items {
            match record.key.clone() {
                Some(key) => targets.entry(key).or_default().push(record),
                None => keyless.push(record),
            }
        }
        page = listing.next;
        if page.is_none() {
            break;
        }
    }
    run.target_records = listed;
    let open = open_jobs(engine, &run.flow);
    while !(run.pages > 0 && run.next_page.is_none()) {
        behind_deliveries(engine, run, sides.target.name()).await?;
        run.phase = format!("comparing (page {})", run.pages + 1);
        let listing = list(
            &sides.source,
            &spec.source.operation,
            run.next_page.as_deref(),
        )
        .await?;
        for record in &listing.items {
            compare(engine, &sides, run, record, &targets, &open)?;
        }
        run.next_page = listing.next;
        run.pages += 1;
        save(engine, run)?;
    }
    for (key, records) in &targets {
        if !run.seen.contains(key) {
            only_in_target(run, Some(key), records);
        }
    }
    for record in &keyless {
        only_in_target(run, None, std::slice::from_ref(record));
    }
    run.phase = "repairing".into();
    save(engine, run)?;
    super::repair::repair_run(engine, &sides, run).await?;
    finish(engine, run)
}

/// Attempts at a listing page before the run fails (a record deleted between a search and its
/// read, a moment's outage).
const LIST_ATTEMPTS: u32 = 3;

/// One page of `operation` from `live`, tried again after a failure.
pub(super) async fn list(
    live: &Live,
    operation: &str,
    page: Option<&str>,
) -> anyhow::Result<crate::adapters::Listing> {
    let mut attempt = 1;
    loop {
        match live.adapter().list(operation, page).await {
            Ok(listing) => return Ok(listing),
            Err(failure) if attempt < LIST_ATTEMPTS => {
                tracing::warn!(connector = live.name(), operation, attempt, error = %failure.message, "listing failed; trying again");
                tokio::time::sleep(std::time::Duration::from_secs(u64::from(attempt))).await;
                attempt += 1;
            }
            Err(failure) => {
                return Err(anyhow!(
                    "listing {} ({operation}): {}",
                    live.name(),
                    failure.message
                ));
            }
        }
    }
}

fn finish(engine: &Engine, run: &mut Run) -> anyhow::Result<()> {
    run.phase = "finished".into();
    run.finished_ms = Some(engine.queue.clock().now_ms());
    save(engine, run)?;
    Ok(())
}

/// Jobs waiting to be delivered through the target above which a run waits: deliveries go
/// first, and records whose jobs are queued would only come out `in_flight`.
const BACKLOG: u64 = 1000;

/// Waits while the target connector has a backlog of deliveries.
async fn behind_deliveries(engine: &Engine, run: &mut Run, target: &str) -> anyhow::Result<()> {
    let key: Arc<str> = Arc::from(target);
    loop {
        let waiting = engine
            .queue
            .counts()
            .get(&(key.clone(), State::Ready))
            .copied()
            .unwrap_or(0);
        if waiting < BACKLOG {
            return Ok(());
        }
        let phase = format!("waiting for {waiting} deliveries to {target}");
        if run.phase != phase {
            run.phase = phase;
            save(engine, run)?;
        }
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
}

/// The newest unfinished job (open or dead) of each record of the flow.
fn open_jobs(engine: &Engine, flow: &str) -> HashMap<String, Job> {
    let mut newest: HashMap<String, Job> = HashMap::new();
    for state in State::ALL
        .into_iter()
        .filter(|s| !matches!(s, State::Done | State::Skipped))
    {
        for id in engine.queue.ids_in(state) {
            let Ok(job) = engine.queue.get(id) else {
                continue;
            };
            let Some(record) = job.object_id.clone().filter(|_| job.flow == flow) else {
                continue;
            };
            if newest.get(&record).is_none_or(|j| j.id < job.id) {
                newest.insert(record, job);
            }
        }
    }
    newest
}

fn compare(
    engine: &Engine,
    sides: &Sides,
    run: &mut Run,
    record: &Listed,
    targets: &HashMap<String, Vec<Listed>>,
    open: &HashMap<String, Job>,
) -> anyhow::Result<()> {
    let (mapping, spec) = (sides.mapping(), sides.spec());
    let event = sides.event(record);
    let key = sides.key(&event, record);
    run.seen.insert(key.clone());
    let handles = mapping
        .handles(
            sides.source_name(),
            &mapping.event,
            &event,
            &sides.loaded.lookups,
        )
        .unwrap_or(false);
    if !handles || !ours(engine, sides, &event)? {
        return Ok(());
    }
    run.compared += 1;
    let applied = engine
        .queue
        .applied(&run.flow, &record.id)
        .context("applied version")?;
    let xref = engine
        .queue
        .xref(&mapping.connector, &mapping.schema_name, &key)
        .context("cross-reference")?;
    let remapped = run.deep.then(|| remap(engine, sides, &event));
    let found = targets.get(&key).map_or(&[][..], Vec::as_slice);
    let facts = Facts {
        version: record.version.as_deref(),
        recent: recent(engine, record.version.as_deref(), spec.in_flight_secs),
        job: open.get(&record.id),
        targets: found,
        applied: applied.as_ref(),
        xref: xref.as_ref(),
        remapped: remapped.as_ref(),
        compare: &spec.compare,
    };
    let (class, why) = classify(&facts);
    if class == Class::Matched {
        *run.counts.entry(class).or_default() += 1;
        return Ok(());
    }
    run.add(Row {
        class,
        record: Some(record.id.clone()),
        key: Some(key),
        why,
        version: record.version.clone(),
        source: Some(record.fields.clone()),
        document: remapped.and_then(Result::ok).map(|(document, _)| document),
        target: found.iter().map(shown).collect(),
        delivered: (applied.is_some() || xref.is_some()).then(|| {
            json!({
                "version": applied.as_ref().and_then(|a| a.version.clone()),
                "external_id": xref.as_ref().map(|x| x.external_id.clone()),
                "at_ms": xref.as_ref().map(|x| x.at_ms),
            })
        }),
        action: None,
    });
    Ok(())
}

/// A status flow compares only orders handoff created or an operator linked (as the status
/// poller sends only theirs); every other flow compares every record.
fn ours(engine: &Engine, sides: &Sides, event: &Value) -> anyhow::Result<bool> {
    if sides.mapping().schema_name != "order_status" {
        return Ok(true);
    }
    let text = |field: &str| event.get(field).and_then(Value::as_str).unwrap_or_default();
    crate::sync::poll::ours(
        engine,
        &sides.spec().source.connector,
        text("reference"),
        text("order_id"),
    )
}

fn only_in_target(run: &mut Run, key: Option<&String>, records: &[Listed]) {
    let why = match key {
        Some(key) => {
            format!("no source record has the key {key}: deleted at the source, or never linked")
        }
        None => "it carries no key: never linked to a source record".into(),
    };
    run.add(Row {
        class: Class::OnlyInTarget,
        record: None,
        key: key.cloned(),
        why,
        version: None,
        source: None,
        document: None,
        target: records.iter().map(shown).collect(),
        delivered: None,
        action: None,
    });
}

fn shown(record: &Listed) -> Value {
    json!({"id": record.id, "version": record.version, "active": record.active, "fields": record.fields})
}

/// What the mapping makes of the record now, with the cross-references it needs.
fn remap(engine: &Engine, sides: &Sides, event: &Value) -> Result<(Value, u64), String> {
    let (mapping, lookups) = (sides.mapping(), &sides.loaded.lookups);
    let keys = mapping.keys(event, lookups).map_err(|e| e.to_string())?;
    let mut context = Context::default();
    for (kind, id) in &keys.requires {
        let xref = engine
            .queue
            .xref(&mapping.connector, kind, id)
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("{kind} {id} is not in {} yet", mapping.connector))?;
        context
            .xrefs
            .entry(kind.clone())
            .or_default()
            .insert(id.clone(), xref.external_id);
    }
    let document = mapping
        .apply(event, lookups, &context)
        .map_err(|e| e.to_string())?;
    let digest = digest(&document.body);
    Ok((document.body, digest))
}

/// Whether `version` (a time) lies within the last `secs` seconds.
fn recent(engine: &Engine, version: Option<&str>, secs: u64) -> bool {
    let Some(at) = version.and_then(crate::sync::version::instant) else {
        return false;
    };
    let now_ms = engine.queue.clock().now_ms();
    let age_ms = now_ms - at.timestamp_millis();
    age_ms < i64::try_from(secs.saturating_mul(1000)).unwrap_or(i64::MAX)
}
