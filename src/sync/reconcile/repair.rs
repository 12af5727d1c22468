//! Repairs, through the normal journal and queue: `replay` journals the source record as an
//! event of the flow (its id names the flow, record and version, so a second replay of the
//! same version is dropped by the journal's dedupe); `adopt` stores the cross-reference to
//! the target's record with the key. Operators act on one row (replay, adopt, ignore) or ask
//! for one record again (`resync`).

use std::sync::Arc;

use anyhow::{Context as _, anyhow, bail};
use serde::Deserialize;
use utoipa::ToSchema;

use super::pass::Sides;
use super::{Class, Row, Run, save};
use crate::adapters::Listed;
use crate::envelope::Envelope;
use crate::journal::Appended;
use crate::queue::records::Xref;
use crate::sync::Engine;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RowAction {
    Replay,
    Adopt,
    Ignore,
}

/// A run's automatic repairs: the flow's safe classes, unless it is a dry run or over the cap.
pub(super) async fn repair_run(
    engine: &Engine,
    sides: &Sides,
    run: &mut Run,
) -> anyhow::Result<()> {
    let spec = sides.spec();
    let safe = |class: Class| spec.repair.iter().any(|c| c == class.as_str());
    let wanted: u64 = Class::ALL
        .into_iter()
        .filter(|c| safe(*c))
        .map(|c| run.count(c))
        .sum();
    let planned: Vec<usize> = (0..run.rows.len())
        .filter(|&n| safe(run.rows[n].class) && run.rows[n].action.is_none())
        .collect();
    run.repairs = wanted;
    if run.dry_run {
        run.state = "done".into();
        return Ok(());
    }
    let share = wanted as f64 / run.compared.max(1) as f64;
    if wanted > spec.max_repairs as u64 || share > spec.max_repair_share {
        run.state = "capped".into();
        run.note = Some(format!(
            "{wanted} of {} records would be repaired, over the cap (max_repairs {}, \
             max_repair_share {}): nothing was repaired. Repair rows one by one, or raise the cap",
            run.compared, spec.max_repairs, spec.max_repair_share
        ));
        return Ok(());
    }
    let mut made = 0;
    for n in planned {
        let action = match run.rows[n].class {
            Class::Unlinked => RowAction::Adopt,
            _ => RowAction::Replay,
        };
        act(engine, sides, &mut run.rows[n], action, "repair").await?;
        made += 1;
    }
    run.state = "done".into();
    if (made as u64) < wanted {
        run.note = Some(format!(
            "{made} of {wanted} records repaired: the run keeps {} rows; run it again for the rest",
            super::ROWS_KEPT
        ));
    }
    Ok(())
}

/// An operator's action on row `index` of run `id`; returns the row.
pub async fn act_on_row(
    engine: &Arc<Engine>,
    id: u64,
    index: usize,
    action: RowAction,
    by: &str,
) -> anyhow::Result<Row> {
    let mut run = super::run(engine, id)?.ok_or_else(|| anyhow!("no reconciliation run {id}"))?;
    if run.is_running() {
        bail!("run {id} is still running: act on its rows when it has finished");
    }
    let sides = Sides::of(engine, &run.flow)?;
    let row = run
        .rows
        .get_mut(index)
        .ok_or_else(|| anyhow!("run {id} has no row {index}"))?;
    act(engine, &sides, row, action, by).await?;
    let row = row.clone();
    save(engine, &run)?;
    Ok(row)
}

async fn act(
    engine: &Engine,
    sides: &Sides,
    row: &mut Row,
    action: RowAction,
    by: &str,
) -> anyhow::Result<()> {
    match action {
        RowAction::Ignore => row.action = Some(format!("ignored ({by})")),
        RowAction::Replay => {
            let (Some(record), Some(fields)) = (&row.record, &row.source) else {
                bail!(
                    "a {} row has no source record to replay",
                    row.class.as_str()
                );
            };
            let listed = Listed {
                id: record.clone(),
                key: row.key.clone(),
                version: row.version.clone(),
                active: true,
                fields: fields.clone(),
            };
            let id = format!(
                "{}{}:{record}:{}",
                super::REPAIR_PREFIXES[0],
                sides.mapping().flow,
                row.version.as_deref().unwrap_or("-")
            );
            let new = replay(engine, sides, &listed, id).await?;
            row.action = Some(if new {
                format!("replayed ({by})")
            } else {
                format!("replayed before ({by})")
            });
        }
        RowAction::Adopt => {
            let (Some(key), [target]) = (&row.key, row.target.as_slice()) else {
                bail!("only a row with a key and one target record can be adopted");
            };
            let external_id = target["id"]
                .as_str()
                .context("the target record has no id")?;
            let mapping = sides.mapping();
            engine.queue.link(Xref {
                system: mapping.connector.clone(),
                kind: mapping.schema_name.clone(),
                crm_id: key.clone(),
                external_id: external_id.to_owned(),
                flow: mapping.flow.clone(),
                job: 0,
                at_ms: engine.queue.clock().now_ms(),
            })?;
            row.action = Some(format!("adopted {external_id} ({by})"));
        }
    }
    Ok(())
}

/// Journals `record` as an event of the flow under `id`; false when the journal had it.
async fn replay(
    engine: &Engine,
    sides: &Sides,
    record: &Listed,
    id: String,
) -> anyhow::Result<bool> {
    let data = sides.event(record);
    let envelope = Envelope {
        id,
        source: sides.source_name().to_owned(),
        event_type: Some(sides.mapping().event.clone()),
        ignored: false,
        object: None,
        object_id: Some(record.id.clone()),
        version: record.version.clone(),
        signed_at: None,
        received_at: chrono::Utc::now(),
        raw_body: data.to_string(),
        data,
        data_is_raw_body: true,
    };
    let appended = engine.journal.append(vec![envelope]).await?;
    Ok(matches!(appended.first(), Some(Appended::New(_))))
}

#[derive(Debug, thiserror::Error)]
pub enum ResyncError {
    /// No such flow, or it has no `reconcile:` block.
    #[error("{0}")]
    Flow(String),
    #[error("{0}")]
    NotFound(String),
    #[error(transparent)]
    Failed(#[from] anyhow::Error),
}

/// `handoff resync`: finds `record` in the flow's source listing and replays it now (a new
/// event each time it is asked). Returns what it did.
pub async fn resync(engine: &Arc<Engine>, flow: &str, record: &str) -> Result<String, ResyncError> {
    let sides = Sides::of(engine, flow).map_err(|e| ResyncError::Flow(e.to_string()))?;
    let spec = sides.spec();
    let mut page: Option<String> = None;
    loop {
        let listing =
            super::pass::list(&sides.source, &spec.source.operation, page.as_deref()).await?;
        if let Some(found) = listing.items.iter().find(|r| r.id == record) {
            let id = format!(
                "{}{flow}:{record}:{}",
                super::REPAIR_PREFIXES[1],
                engine.queue.clock().now_ms()
            );
            replay(engine, &sides, found, id).await?;
            return Ok(format!(
                "{record} (version {}) journaled again for flow {flow}",
                found.version.as_deref().unwrap_or("none")
            ));
        }
        page = listing.next;
        if page.is_none() {
            return Err(ResyncError::NotFound(format!(
                "{} lists no record {record:?} ({})",
                sides.source.name(),
                spec.source.operation
            )));
        }
    }
}
