//! `process(job)`: one attempt at one job, as typed stages that end in one [`Outcome`], which
//! [`settle`] matches once.
//!
//! prepare (read the event once, pick the flow, skip if stale, an echo or a status regression)
//! → resolve (park if a required record is not in the target yet) → map (hold if a
//! precondition fails or stock is short) → send → record (cross-reference, version, status and
//! echo records, stored with the settle).

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::Value;

use super::{Engine, Live, status};
use crate::adapters::Class;
use crate::adapters::{Delivered, Delivery, Failure, Shortage};
use crate::envelope::Envelope;
use crate::mapping::live::Loaded;
use crate::mapping::{Context, Document, Keys, Mapping};
use crate::queue::job::Failing;
use crate::queue::records::{Applied, Echo, Effect, Xref};
use crate::queue::{Attempt, Job, QueueError, Reason, Settle, State};

/// How an attempt ended.
pub enum Outcome {
    /// Delivered (or found delivered): what it leaves behind, and who waited for it.
    Done {
        delivered: Delivered,
        effects: Vec<Effect>,
        releases: Vec<(String, String)>,
    },
    /// Nothing to do: stale, an echo, a status regression.
    Skipped(Reason),
    /// A required record (kind, CRM id) is not in the target yet.
    Parked((String, String), Reason),
    /// A precondition of the mapping fails (payment, stock): checked again later.
    Held(Reason),
    /// The data or the set-up is wrong before anything was sent.
    Dead(Reason),
    /// The target refused or did not answer; its class decides what comes next.
    Failed(Failure),
    /// handoff's own store could not be read: try again shortly.
    Store(QueueError),
}

type Stage<T> = Result<T, Outcome>;

/// What `prepare` found: the event data, the flow's mapping and its keys.
struct Prepared {
    loaded: Arc<Loaded>,
    mapping_at: usize,
    data: EventData,
    keys: Keys,
    /// The order status this event moves to (status flows only).
    status: Option<String>,
    /// What is stored of the record already: the version applied through this flow and what
    /// handoff wrote to it (read once here, used again by `changed` and `record`).
    seen: Seen,
}

#[derive(Default)]
struct Seen {
    applied: Option<Applied>,
    echo: Option<Echo>,
}

/// The data a job maps: its journaled event (shared with the journal's newest events, not
/// copied) or an operator's edit.
enum EventData {
    Journaled(Arc<Envelope>),
    Edited(Value),
}

impl std::ops::Deref for EventData {
    type Target = Value;

    fn deref(&self) -> &Value {
        match self {
            EventData::Journaled(envelope) => &envelope.data,
            EventData::Edited(data) => data,
        }
    }
}

impl Prepared {
    fn mapping(&self) -> &Mapping {
        &self.loaded.mappings[self.mapping_at]
    }
}

impl From<QueueError> for Outcome {
    fn from(error: QueueError) -> Self {
        Outcome::Store(error)
    }
}

fn reason(code: &str, message: impl Into<String>) -> Reason {
    Reason::new(code, message)
}

/// Runs one leased job to its next state and stores it.
/// `probe` says whether this attempt is the circuit breaker's probe.
pub async fn process(
    engine: &Engine,
    live: &Live,
    job: Job,
    probe: bool,
) -> Result<(), QueueError> {
    let started = engine.queue.clock().now_ms();
    let outcome = match attempt(engine, live, &job).await {
        Ok(outcome) | Err(outcome) => outcome,
    };
    settle(engine, live, job, outcome, started, probe)
}

async fn attempt(engine: &Engine, live: &Live, job: &Job) -> Stage<Outcome> {
    let prepared = prepare(engine, job).await?;
    let context = resolve(engine, job, &prepared).await?;
    let document = map(live, &prepared, &context).await?;
    if let Some(why) = super::changed::check(
        engine,
        job,
        prepared.mapping(),
        &prepared.loaded,
        prepared.seen.applied.as_ref(),
        &context,
        &document,
    ) {
        return Err(Outcome::Held(why));
    }
    let delivered = send(engine, live, job, &document).await?;
    Ok(record(engine, live, job, &prepared, document, delivered).await)
}

/// Reads the event (once), picks the flow's mapping and its keys, and skips what must not run.
async fn prepare(engine: &Engine, job: &Job) -> Stage<Prepared> {
    let data = match &job.payload {
        Some(payload) => EventData::Edited(payload.clone()),
        None => EventData::Journaled(engine.journal.fetch_event(job.seq, job.at).await.map_err(
            |error| {
                Outcome::Dead(reason(
                    "fix_config",
                    format!("the journaled event is unreadable: {error}"),
                ))
            },
        )?),
    };
    let loaded = engine.mappings.current();
    let mapping_at = loaded
        .mappings
        .iter()
        .position(|m| m.flow == job.flow)
        .ok_or_else(|| {
            Outcome::Dead(reason(
                "fix_config",
                format!("no mapping for flow {:?} is loaded", job.flow),
            ))
        })?;
    let mapping = &loaded.mappings[mapping_at];
    let seen = match &job.object_id {
        Some(record) => not_stale_nor_echo(engine, job, record, &data).await?,
        None => Seen::default(),
    };
    let status = (mapping.schema_name == "order_status")
        .then(|| {
            data.get("status")
                .and_then(Value::as_str)
                .map(str::to_lowercase)
        })
        .flatten();
    if let Some(next) = &status {
        let last = engine.queue.fetch_status(&job.order_key).await?;
        if !status::may_follow(last.as_deref(), next) {
            return Err(Outcome::Skipped(reason(
                "status_regression",
                format!("{next} would overwrite {}", last.unwrap_or_default()),
            )));
        }
    }
    let keys = mapping
        .keys(&data, &loaded.lookups)
        .map_err(|error| Outcome::Dead(reason("fix_data", error.to_string())))?;
    Ok(Prepared {
        loaded: loaded.clone(),
        mapping_at,
        data,
        keys,
        status,
        seen,
    })
}

/// Skips an event older than the version already applied, or one that only repeats what
/// handoff itself wrote to the record.
async fn not_stale_nor_echo(engine: &Engine, job: &Job, record: &str, data: &Value) -> Stage<Seen> {
    let Some(applied) = engine.queue.fetch_applied(&job.flow, record).await? else {
        return Ok(Seen::default());
    };
    if let (Some(version), Some(last)) = (&job.version, &applied.version)
        && super::version::older(version, last)
    {
        return Err(Outcome::Skipped(reason(
            "stale",
            format!("version {version} is older than {last}, already applied"),
        )));
    }
    // An operator's edit, the event already applied, or a repair asked for: never an echo.
    if job.payload.is_some() || applied.seq == job.seq || super::reconcile::is_repair(&job.event_id)
    {
        return Ok(Seen {
            applied: Some(applied),
            echo: None,
        });
    }
    let Some(echo) = engine.queue.fetch_echo(record).await? else {
        return Ok(Seen {
            applied: Some(applied),
            echo: None,
        });
    };
    let before = engine.journal.fetch_event(applied.seq, applied.at).await;
    if let Ok(before) = before
        && super::echo::is_echo(&before.data, data, &echo, &engine.config.echo_ignore_fields)
    {
        return Err(Outcome::Skipped(reason(
            "echo",
            "the event only repeats what handoff wrote to this record",
        )));
    }
    Ok(Seen {
        applied: Some(applied),
        echo: Some(echo),
    })
}

/// The target ids of the records the document refers to; parks when one is missing.
async fn resolve(engine: &Engine, job: &Job, prepared: &Prepared) -> Stage<Context> {
    let mut context = Context::default();
    for (kind, id) in &prepared.keys.requires {
        match engine.queue.fetch_xref(&job.connector, kind, id).await? {
            Some(xref) => {
                context
                    .xrefs
                    .entry(kind.clone())
                    .or_insert_with(HashMap::new)
                    .insert(id.clone(), xref.external_id);
            }
            None => {
                let message = format!("waiting for {kind} {id} in {}", job.connector);
                return Err(Outcome::Parked(
                    (kind.clone(), id.clone()),
                    reason("dependency", message),
                ));
            }
        }
    }
    Ok(context)
}

/// Checks the mapping's holds and maps the event.
async fn map(live: &Live, prepared: &Prepared, context: &Context) -> Stage<Document> {
    let (mapping, lookups) = (prepared.mapping(), &prepared.loaded.lookups);
    let fix_data =
        |error: crate::mapping::MappingError| Outcome::Dead(reason("fix_data", error.to_string()));
    // A hold whose rule cannot be checked on this event holds too: it never fails open.
    match mapping.failed_hold(&prepared.data, lookups) {
        Ok(None) => {}
        Ok(Some(held)) => return Err(Outcome::Held(reason("hold", held))),
        Err(error) => {
            let message = format!("the hold cannot be checked ({}): {error}", error.code);
            return Err(Outcome::Held(reason("hold", message)));
        }
    }
    let document = mapping
        .apply(&prepared.data, lookups, context)
        .map_err(fix_data)?;
    if mapping.holds_for_stock() {
        match live.adapter().shortages(&order_lines(&document.body)).await {
            Ok(short) if !short.is_empty() => {
                return Err(Outcome::Held(reason("hold", shortage_text(&short))));
            }
            Ok(_) => {}
            Err(failure) => return Err(Outcome::Failed(failure)),
        }
    }
    Ok(document)
}

/// Sends the document under the job's idempotency key.
async fn send(engine: &Engine, live: &Live, job: &Job, document: &Document) -> Stage<Delivered> {
    let key = job.idempotency_key();
    let delivery = Delivery {
        operation: &job.operation,
        document: &document.body,
        idempotency_key: &key,
        match_key: document.match_key.as_deref(),
        in_doubt: job.in_doubt,
        accept_amounts: job.accepted,
    };
    let delivered = live
        .adapter()
        .send(delivery)
        .await
        .map_err(Outcome::Failed)?;
    target_answered(engine, live);
    Ok(delivered)
}

/// The target answered: when that closed the circuit, the connector's retrying jobs run now,
/// in order (paced by the connector's rate limit), instead of at their scheduled time.
fn target_answered(engine: &Engine, live: &Live) {
    if live.success() {
        match engine.queue.release_retrying(live.name(), usize::MAX) {
            Ok(released) => tracing::info!(
                connector = live.name(),
                released,
                "retrying jobs released after recovery"
            ),
            Err(error) => {
                tracing::error!(connector = live.name(), error = %error, "could not release the retrying jobs");
            }
        }
    }
}

/// What a delivery leaves behind: the cross-reference (which releases parked jobs), the
/// applied version, the order status, and what was written to a CRM record.
async fn record(
    engine: &Engine,
    live: &Live,
    job: &Job,
    prepared: &Prepared,
    document: Document,
    delivered: Delivered,
) -> Outcome {
    let now = engine.queue.clock().now_ms();
    let mapping = prepared.mapping();
    let mut effects = Vec::new();
    let mut releases = Vec::new();
    let crm_id = document.match_key.clone().or_else(|| job.object_id.clone());
    if let (Some(crm_id), Some(external_id)) = (&crm_id, &delivered.external_id) {
        effects.push(Effect::Xref(Xref {
            system: job.connector.clone(),
            kind: mapping.schema_name.clone(),
            crm_id: crm_id.clone(),
            external_id: external_id.clone(),
            flow: job.flow.clone(),
            job: job.id,
            at_ms: now,
        }));
        releases.push((mapping.schema_name.clone(), crm_id.clone()));
    }
    if let Some(record) = &job.object_id {
        effects.push(Effect::Applied {
            flow: job.flow.clone(),
            record: record.clone(),
            applied: Applied {
                version: job.version.clone(),
                seq: job.seq,
                at: job.at,
                // Only reconciliation reads it: the delivery path of other flows skips the
                // serialisation and hash.
                digest: mapping
                    .reconcile
                    .is_some()
                    .then(|| super::reconcile::digest(&document.body)),
            },
        });
    }
    if let Some(status) = &prepared.status {
        effects.push(Effect::Status {
            order: job.order_key.clone(),
            status: status.clone(),
        });
    }
    if live.writes_to_crm(mapping)
        && let (Some(target), Value::Object(fields)) = (crm_id, document.body)
    {
        // Every field handoff wrote to the record counts, not only this write's.
        let mut echo = match engine.queue.fetch_echo(&target).await {
            Ok(Some(echo)) => echo,
            _ => Echo::default(),
        };
        echo.fields.extend(fields);
        echo.at_ms = now;
        effects.push(Effect::Echo {
            record: target,
            echo,
        });
    } else if let Some(record) = &job.object_id
        && let Some(echo) = &prepared.seen.echo
        && let Some(pruned) = super::echo::changed_by_crm(echo, &prepared.data)
    {
        // The CRM changed fields handoff had written: they are no longer handoff's.
        effects.push(Effect::Echo {
            record: record.clone(),
            echo: pruned,
        });
    }
    Outcome::Done {
        delivered,
        effects,
        releases,
    }
}

/// Turns the outcome into the job's next state and stores it with its attempt and effects.
pub fn settle(
    engine: &Engine,
    live: &Live,
    mut job: Job,
    outcome: Outcome,
    started: i64,
    probe: bool,
) -> Result<(), QueueError> {
    let now = engine.queue.clock().now_ms();
    let (mut effects, mut releases) = (Vec::new(), Vec::new());
    let (mut request, mut response) = (String::new(), String::new());
    // A recheck that finds the same hold is no attempt and no failure: nothing is recorded
    // but the next recheck's time.
    let before = job.reason.take();
    job.waits_for = None;
    job.due_ms = None;
    match outcome {
        Outcome::Done {
            delivered,
            effects: done_effects,
            releases: done_releases,
        } => {
            job.state = State::Done;
            job.in_doubt = false;
            job.external_id = delivered.external_id;
            (effects, releases) = (done_effects, done_releases);
            (request, response) = (delivered.request, delivered.response);
        }
        Outcome::Skipped(why) => (job.state, job.reason) = (State::Skipped, Some(why)),
        Outcome::Dead(why) => (job.state, job.reason) = (State::Dead, Some(why)),
        Outcome::Parked(on, why) => {
            job.state = State::Parked;
            job.waits_for = Some(on);
            job.due_ms = Some(now + secs(engine.config.park_timeout_secs));
            job.reason = Some(why);
        }
        Outcome::Held(why) => {
            job.state = State::Held;
            job.due_ms = Some(now + secs(engine.config.hold_recheck_secs));
            job.reason = Some(why);
        }
        Outcome::Store(error) => {
            tracing::error!(job = job.id, error = %error, "the queue's store could not be read; retrying the job in 1 s");
            job.state = State::Retrying;
            job.due_ms = Some(now + 1000);
            job.reason = Some(reason("transient", format!("handoff's store: {error}")));
        }
        Outcome::Failed(failure) => {
            failed(engine, live, &mut job, &failure, now, probe);
            request = failure.request;
            response = match failure.response.is_empty() {
                true => failure.message,
                false => failure.response,
            };
        }
    }
    job.updated_ms = now;
    if job.state == State::Held && before.is_some() && before == job.reason {
        job.attempts = job.attempts.saturating_sub(1);
        return engine.queue.settle(Settle {
            job,
            attempt: None,
            effects,
            releases,
        });
    }
    let attempt = Attempt {
        n: job.attempts,
        started_ms: started,
        duration_ms: u64::try_from(now - started).unwrap_or(0),
        request,
        response,
        outcome: job.state,
        reason: job.reason.clone(),
    };
    let (state, flow) = (job.state, job.flow.clone());
    let took = std::time::Duration::from_millis(attempt.duration_ms);
    engine.queue.settle(Settle {
        job,
        attempt: Some(attempt),
        effects,
        releases,
    })?;
    engine
        .metrics
        .delivery(&flow, live.name(), state.as_str(), took, now);
    Ok(())
}

/// A failed delivery's next state, by its class. A rate limit pauses the connector and does
/// not count as a failure; other transient failures take the next step of the schedule until
/// the retry budget (a span of time) is spent.
fn failed(engine: &Engine, live: &Live, job: &mut Job, failure: &Failure, now: i64, probe: bool) {
    let code = class_code(failure.class);
    live.note_error(now, &failure.message);
    match failure.class {
        Class::RateLimited => {
            let until = live.rate_limited(now, failure.retry_after);
            job.state = State::Retrying;
            job.due_ms = Some(until);
            job.reason = Some(reason(code, failure.message.clone()));
        }
        Class::Transient | Class::InDoubt => {
            live.transient_failure(now, probe);
            job.in_doubt |= failure.class == Class::InDoubt;
            let failing = job.failing.get_or_insert(Failing {
                failures: 0,
                since_ms: now,
            });
            failing.failures += 1;
            let (failures, since_ms) = (failing.failures, failing.since_ms);
            if live.retry().gives_up(since_ms, now) {
                job.state = State::Dead;
                job.reason = Some(reason(
                    "retries_exhausted",
                    format!(
                        "gave up after {failures} failures in {}: {}",
                        span(now - since_ms),
                        failure.message
                    ),
                ));
                return;
            }
            // A `Retry-After` on a 503 is honoured as it is; otherwise the schedule's step.
            let delay = match failure.retry_after {
                Some(asked) => live.retry().retry_after(asked),
                None => live
                    .retry()
                    .delay(failures, crate::queue::retry::full_jitter),
            };
            job.state = State::Retrying;
            job.due_ms = Some(now + i64::try_from(delay.as_millis()).unwrap_or(i64::MAX / 2));
            job.reason = Some(reason(code, failure.message.clone()));
        }
        Class::FixData => {
            target_answered(engine, live);
            if let Some((kind, id)) = failure.missing.as_deref() {
                let message = format!(
                    "waiting for {kind} {id} in {}: {}",
                    job.connector, failure.message
                );
                job.state = State::Parked;
                job.waits_for = Some((kind.clone(), id.clone()));
                job.due_ms = Some(now + secs(engine.config.park_timeout_secs));
                job.reason = Some(reason("dependency", message));
                return;
            }
            job.state = State::Dead;
            job.reason = Some(reason(code, failure.message.clone()));
        }
        Class::AmountMismatch => {
            target_answered(engine, live);
            job.state = State::Held;
            job.due_ms = Some(now + secs(engine.config.hold_recheck_secs));
            job.reason = Some(reason(code, failure.message.clone()));
        }
        Class::FixConfig => {
            job.state = State::Dead;
            job.reason = Some(reason(code, failure.message.clone()));
            live.pause(format!(
                "paused after a configuration error: {}",
                failure.message
            ));
        }
    }
}

/// "3 h 20 min", "45 s": a span for people.
fn span(ms: i64) -> String {
    let secs = ms.max(0) / 1000;
    match secs {
        0..=119 => format!("{secs} s"),
        120..=7199 => format!("{} min", secs / 60),
        _ => format!("{} h {} min", secs / 3600, secs % 3600 / 60),
    }
}

pub fn class_code(class: Class) -> &'static str {
    match class {
        Class::Transient => "transient",
        Class::RateLimited => "rate_limited",
        Class::InDoubt => "in_doubt",
        Class::FixData => "fix_data",
        Class::FixConfig => "fix_config",
        Class::AmountMismatch => "amount_mismatch",
    }
}

/// (product code, quantity) of a sales order's lines.
fn order_lines(document: &Value) -> Vec<(String, rust_decimal::Decimal)> {
    let Some(lines) = document.get("lines").and_then(Value::as_array) else {
        return Vec::new();
    };
    lines
        .iter()
        .filter_map(|line| {
            let code = line.get("product_code")?.as_str()?.to_owned();
            let quantity = crate::mapping::expr::parse_decimal(&line.get("quantity")?.to_string())?;
            Some((code, quantity))
        })
        .collect()
}

/// "material shortage: SKU-1 ×3, SKU-7 ×1"
fn shortage_text(short: &[Shortage]) -> String {
    let items: Vec<String> = short
        .iter()
        .map(|s| format!("{} ×{}", s.product, s.missing.normalize()))
        .collect();
    format!("material shortage: {}", items.join(", "))
}

fn secs(secs: u64) -> i64 {
    i64::try_from(secs.saturating_mul(1000)).unwrap_or(i64::MAX / 2)
}

/// Maps `data` for `job` with the mapping in force, as a delivery would, without sending or
/// storing anything: the document, or why it cannot be made (the dashboard's preview).
pub fn dry_run(engine: &Engine, job: &Job, data: &Value) -> Result<Value, String> {
    let loaded = engine.mappings.current();
    let mapping_at = loaded
        .mappings
        .iter()
        .position(|m| m.flow == job.flow)
        .ok_or_else(|| format!("no mapping for flow {:?} is loaded", job.flow))?;
    let mapping = &loaded.mappings[mapping_at];
    let keys = mapping
        .keys(data, &loaded.lookups)
        .map_err(|e| e.to_string())?;
    let prepared = Prepared {
        loaded: loaded.clone(),
        mapping_at,
        data: EventData::Edited(data.clone()),
        keys,
        status: None,
        seen: Seen::default(),
    };
    let resolved = crate::queue::block_on(resolve(engine, job, &prepared));
    let context = resolved.map_err(|outcome| match outcome {
        Outcome::Parked((kind, id), _) => {
            format!("would wait for {kind} {id}, not yet in {}", job.connector)
        }
        Outcome::Store(error) => error.to_string(),
        _ => "cannot resolve the record's references".to_owned(),
    })?;
    let document = mapping
        .apply(data, &loaded.lookups, &context)
        .map_err(|e| e.to_string())?;
    Ok(document.body)
}
