//! Recovery at open: the snapshot, then the log after it, a whole group of records at a time.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::time::Instant;

use super::index::Index;
use super::log::{Log, Pos};
use super::record::Record;
use super::space::held_segments;
use super::{Inner, snapshot};
use crate::queue::lines::{Lines, Locs};
use crate::queue::{Cursor, Entry, QueueError, State, entry_of};

/// Rebuilds the schedule: the snapshot, then the log after it.
pub(super) fn recover(
    dir: &Path,
    log: &Log,
    index: &Index,
    clean: Option<u64>,
    now: i64,
) -> Result<Inner, QueueError> {
    let mut inner = Inner {
        lines: Lines::default(),
        recent: BTreeMap::new(),
        next_id: 1,
        cursor: Cursor {
            next_seq: 1,
            at: None,
        },
        snapshot_at: (0, Instant::now()),
        snapshot_held: HashSet::new(),
        snapshots: (0, 0),
        dead_by_record: None,
    };
    let mut recent = BTreeMap::new();
    let header = snapshot::read(
        dir,
        |id, entry| inner.lines.insert(id, entry, now),
        |id, at| {
            recent.insert(id, at);
        },
    );
    inner.recent = recent;
    let replay_from = match header {
        Some(header) => {
            inner.next_id = header.next_id;
            inner.cursor = header.cursor;
            header.replay_from
        }
        None => {
            inner.lines = Lines::default();
            inner.recent.clear();
            let first = log.segments()?.first().copied().unwrap_or(1);
            if first > 1 {
                return Err(QueueError::Corrupt(format!(
                    "the queue's snapshot ({}) is missing or damaged and the log no longer starts at its beginning; \
                     restore the data directory from a backup",
                    snapshot::path(dir).display()
                )));
            }
            1
        }
    };
    let mut group = Vec::new();
    let mut replayed = 0u64;
    for record in log.replay(replay_from)? {
        let (_, at, bytes) = record?;
        replayed += 1;
        let Some((following, record)) = Record::decode(&bytes) else {
            return Err(QueueError::Corrupt(format!("queue log at {at}")));
        };
        if record == Record::Opened {
            // A new run: a group before it that is not whole was cut short by a crash.
            group.clear();
            continue;
        }
        group.push((record, at));
        if following == 0 {
            for (record, at) in group.drain(..) {
                if let Record::Changed(changed) = &record {
                    // The snapshot's effects are in sled; these are after it.
                    index.stage(&changed.effects);
                }
                apply(&mut inner, record, at, now);
            }
        }
    }
    // A group cut short by a crash was never acted on: it is dropped (a routed slice is routed
    // again; a settle's job runs again, in doubt).
    if clean.is_none() || clean != header.map(|h| h.token) || replayed > 0 {
        inner.lines.mark_in_doubt();
    }
    inner.lines.compact();
    inner.snapshot_at = (replay_from, Instant::now());
    inner.snapshot_held = held_segments(&inner.lines);
    Ok(inner)
}

/// Replays one record over the schedule.
fn apply(inner: &mut Inner, record: Record, at: Pos, now: i64) {
    match record {
        Record::Created(created) => {
            let id = created.id;
            let copied = created.copied;
            let mut locs = inner.lines.get(id).map(|e| e.at).unwrap_or_default();
            locs.created = at;
            if copied {
                if let Some(held) = inner.lines.locs_mut(id) {
                    *held = locs;
                }
                return;
            }
            let mut entry = entry_of(&created.job());
            entry.at = locs;
            inner.lines.insert(id, entry, now);
            inner.next_id = inner.next_id.max(id + 1);
        }
        Record::Changed(changed) => {
            let Some(entry) = inner.lines.get(changed.id).cloned() else {
                return;
            };
            let locs = Locs {
                last: at,
                ..entry.at
            };
            let state = changed.state;
            let next = Entry {
                state,
                due: changed.due_ms,
                waits_for: changed.waits_for.map(Box::new),
                reason: changed.reason.map(|r| r.code.into_boxed_str()),
                in_doubt: changed.in_doubt,
                at: locs,
                ..entry
            };
            if matches!(state, State::Done | State::Skipped) {
                if let Some(entry) = inner.lines.remove(changed.id) {
                    inner.lines.promote(&entry.key, now);
                }
                inner.recent.insert(changed.id, locs);
            } else {
                inner.lines.insert(changed.id, next, now);
            }
        }
        Record::Payload(payload) => {
            if let Some(locs) = inner.lines.locs_mut(payload.id) {
                locs.payload = at;
            }
        }
        Record::Cursor(cursor) => inner.cursor = cursor,
        Record::Opened => {}
    }
}
