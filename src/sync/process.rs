//! `process(job)`: one attempt at one job, from the journaled event to the settled outcome.
//!
//! pick the flow → skip if stale, an echo, or a status regression → park if a required record is
//! not in the target yet → hold if a precondition fails → map → hold if stock is short → send →
//! settle (with the cross-reference, version, status and echo records in the same batch).

use std::collections::HashMap;

use serde_json::Value;

use super::records::{self, Applied, Echo, Xref};
use super::{Engine, Live, status};
use crate::adapters::{Delivery, Failure, Shortage};
use crate::mapping::Context;
use crate::queue::{Attempt, Class, Job, QueueError, Reason, State, Write};

/// How an attempt ended, before it is written down.
struct Settled {
    job: Job,
    effects: Vec<Write>,
    releases: Vec<(String, String)>,
    request: String,
    response: String,
}

/// Runs one leased job to its next state and stores it.
pub async fn process(engine: &Engine, live: &Live, mut job: Job) -> Result<(), QueueError> {
    let started = engine.queue.clock.now_ms();
    let attempt_n = job.attempts;
    job.reason = None;
    let settled = match attempt(engine, live, &mut job).await {
        Ok(settled) => settled,
        Err(Stop::Settle(reason, state)) => {
            job.state = state;
            job.reason = Some(reason);
            Settled {
                job,
                effects: Vec::new(),
                releases: Vec::new(),
                request: String::new(),
                response: String::new(),
            }
        }
        Err(Stop::Queue(error)) => return Err(error),
    };
    let Settled {
        mut job,
        effects,
        releases,
        request,
        response,
    } = settled;
    let now = engine.queue.clock.now_ms();
    job.updated_ms = now;
    let attempt = Attempt {
        n: attempt_n,
        started_ms: started,
        duration_ms: u64::try_from(now - started).unwrap_or(0),
        request,
        response,
        outcome: job.state,
        reason: job.reason.clone(),
    };
    let state = job.state;
    let flow = job.flow.clone();
    let took = std::time::Duration::from_millis(attempt.duration_ms);
    engine
        .queue
        .settle(job, Some(attempt), effects, &releases)?;
    engine
        .metrics
        .delivery(&flow, live.name(), state.as_str(), took, now);
    Ok(())
}

/// Ends an attempt early in a settled state.
enum Stop {
    Settle(Reason, State),
    Queue(QueueError),
}

impl From<QueueError> for Stop {
    fn from(error: QueueError) -> Self {
        Stop::Queue(error)
    }
}

fn skip(code: &str, message: String) -> Stop {
    Stop::Settle(Reason::new(code, message), State::Skipped)
}

fn dead(code: &str, message: String) -> Stop {
    Stop::Settle(Reason::new(code, message), State::Dead)
}

async fn attempt(engine: &Engine, live: &Live, job: &mut Job) -> Result<Settled, Stop> {
    let tree = engine.queue.tree();
    let envelope = engine.journal.read(job.seq, job.at).map_err(|error| {
        dead(
            "fix_config",
            format!("the journaled event is unreadable: {error}"),
        )
    })?;
    let data = job.payload.clone().unwrap_or(envelope.data);
    let loaded = engine.mappings.current();
    let mapping = loaded
        .mappings
        .iter()
        .find(|m| m.flow == job.flow)
        .ok_or_else(|| {
            dead(
                "fix_config",
                format!("no mapping for flow {:?} is loaded", job.flow),
            )
        })?;

    let record = job.object_id.clone();
    if let Some(record) = &record {
        let applied = records::applied(tree, &job.flow, record)?;
        if let (Some(applied), Some(version)) = (&applied, &job.version)
            && let Some(last) = &applied.version
            && super::version::older(version, last)
        {
            return Err(skip(
                "stale",
                format!("version {version} is older than {last}, already applied"),
            ));
        }
        if job.payload.is_none()
            && let Some(applied) = &applied
            && applied.seq != job.seq
            && let Some(echo) = records::echo(tree, record)?
        {
            let before = engine
                .journal
                .read(applied.seq, applied.at)
                .map(|e| e.data)
                .ok();
            if let Some(before) = before
                && super::echo::is_echo(&before, &data, &echo, &engine.config.echo_ignore_fields)
            {
                return Err(skip(
                    "echo",
                    "the event only repeats what handoff wrote to this record".into(),
                ));
            }
        }
    }
    let status = (mapping.schema_name == "order_status")
        .then(|| {
            data.get("status")
                .and_then(Value::as_str)
                .map(str::to_lowercase)
        })
        .flatten();
    if let Some(next) = &status {
        let last = records::status(tree, &job.order_key)?;
        if !status::may_follow(last.as_deref(), next) {
            return Err(skip(
                "status_regression",
                format!("{next} would overwrite {}", last.unwrap_or_default()),
            ));
        }
    }

    let fix_data = |error: crate::mapping::MappingError| dead("fix_data", error.to_string());
    let keys = mapping.keys(&data, &loaded.lookups).map_err(fix_data)?;
    let mut context = Context::default();
    for (kind, id) in &keys.requires {
        match records::xref(tree, &job.connector, kind, id)? {
            Some(xref) => {
                context
                    .xrefs
                    .entry(kind.clone())
                    .or_insert_with(HashMap::new)
                    .insert(id.clone(), xref.external_id);
            }
            None => {
                job.waits_for = Some((kind.clone(), id.clone()));
                job.due_ms =
                    Some(engine.queue.clock.now_ms() + secs(engine.config.park_timeout_secs));
                return Err(Stop::Settle(
                    Reason::new(
                        "dependency",
                        format!("waiting for {kind} {id} in {}", job.connector),
                    ),
                    State::Parked,
                ));
            }
        }
    }
    let hold = |job: &mut Job, message: String| {
        job.due_ms = Some(engine.queue.clock.now_ms() + secs(engine.config.hold_recheck_secs));
        Stop::Settle(Reason::new("hold", message), State::Held)
    };
    if let Some(reason) = mapping
        .failed_hold(&data, &loaded.lookups)
        .map_err(fix_data)?
    {
        return Err(hold(job, reason.to_owned()));
    }
    let document = mapping
        .apply(&data, &loaded.lookups, &context)
        .map_err(fix_data)?;
    job.document = Some(document.body.clone());
    job.mapping_version = Some(document.mapping_version.clone());
    if mapping.holds_for_stock() {
        let lines = order_lines(&document.body);
        match live.adapter().shortages(&lines).await {
            Ok(short) if !short.is_empty() => return Err(hold(job, shortage_text(&short))),
            Ok(_) => {}
            Err(failure) => return Ok(failed(engine, live, job, failure)),
        }
    }

    let key = job.idempotency_key();
    let delivery = Delivery {
        operation: &job.operation,
        document: &document.body,
        idempotency_key: &key,
        match_key: document.match_key.as_deref(),
        in_doubt: job.in_doubt,
    };
    let delivered = match live.adapter().send(delivery).await {
        Ok(delivered) => delivered,
        Err(failure) => return Ok(failed(engine, live, job, failure)),
    };
    live.success();

    let now = engine.queue.clock.now_ms();
    let mut effects = Vec::new();
    let mut releases = Vec::new();
    let crm_id = document.match_key.clone().or_else(|| record.clone());
    if let (Some(crm_id), Some(external_id)) = (&crm_id, &delivered.external_id) {
        effects.extend(records::put_xref(&Xref {
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
    if let Some(record) = &record {
        let applied = Applied {
            version: job.version.clone(),
            seq: job.seq,
            at: job.at,
        };
        effects.push(records::put_applied(&job.flow, record, &applied));
    }
    if let Some(status) = &status {
        effects.push(records::put_status(&job.order_key, status));
    }
    if live.writes_to_crm(mapping)
        && let (Some(target), Value::Object(fields)) = (&crm_id, &document.body)
    {
        effects.push(records::put_echo(
            target,
            &Echo {
                fields: fields.clone(),
                at_ms: now,
            },
        ));
    }
    job.state = State::Done;
    job.in_doubt = false;
    job.external_id = delivered.external_id.clone();
    job.waits_for = None;
    job.due_ms = None;
    Ok(Settled {
        job: job.clone(),
        effects,
        releases,
        request: delivered.request,
        response: delivered.response,
    })
}

/// Settles a failed delivery by its class.
fn failed(engine: &Engine, live: &Live, job: &mut Job, failure: Failure) -> Settled {
    let now = engine.queue.clock.now_ms();
    let code = class_code(failure.class);
    live.note_error(now, &failure.message);
    match failure.class {
        Class::Transient | Class::InDoubt | Class::RateLimited => {
            if failure.class != Class::RateLimited {
                live.transient_failure(now);
            }
            job.in_doubt |= failure.class == Class::InDoubt;
            let delay = live.retry().delay(
                job.attempts,
                failure.retry_after,
                crate::queue::retry::full_jitter,
            );
            match delay {
                Some(delay) => {
                    job.state = State::Retrying;
                    job.due_ms =
                        Some(now + i64::try_from(delay.as_millis()).unwrap_or(i64::MAX / 2));
                    job.reason = Some(Reason::new(code, failure.message.clone()));
                }
                None => {
                    job.state = State::Dead;
                    job.reason = Some(Reason::new(
                        "retries_exhausted",
                        format!(
                            "gave up after {} attempts: {}",
                            job.attempts, failure.message
                        ),
                    ));
                }
            }
        }
        Class::FixData => {
            live.success();
            job.state = State::Dead;
            job.reason = Some(Reason::new(code, failure.message.clone()));
        }
        Class::FixConfig => {
            job.state = State::Dead;
            job.reason = Some(Reason::new(code, failure.message.clone()));
            live.pause(format!(
                "paused after a configuration error: {}",
                failure.message
            ));
        }
    }
    Settled {
        job: job.clone(),
        effects: Vec::new(),
        releases: Vec::new(),
        request: failure.request,
        response: if failure.response.is_empty() {
            failure.message
        } else {
            failure.response
        },
    }
}

pub fn class_code(class: Class) -> &'static str {
    match class {
        Class::Transient => "transient",
        Class::RateLimited => "rate_limited",
        Class::InDoubt => "in_doubt",
        Class::FixData => "fix_data",
        Class::FixConfig => "fix_config",
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
    let mapping = loaded
        .mappings
        .iter()
        .find(|m| m.flow == job.flow)
        .ok_or_else(|| format!("no mapping for flow {:?} is loaded", job.flow))?;
    let keys = mapping
        .keys(data, &loaded.lookups)
        .map_err(|e| e.to_string())?;
    let mut context = Context::default();
    for (kind, id) in &keys.requires {
        let xref = records::xref(engine.queue.tree(), &job.connector, kind, id)
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("would wait for {kind} {id}, not yet in {}", job.connector))?;
        context
            .xrefs
            .entry(kind.clone())
            .or_insert_with(HashMap::new)
            .insert(id.clone(), xref.external_id);
    }
    let document = mapping
        .apply(data, &loaded.lookups, &context)
        .map_err(|e| e.to_string())?;
    Ok(document.body)
}
