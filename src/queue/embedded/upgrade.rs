//! Opening a data directory written by release 1, whose jobs lived in sled (`j/`, `o/`, `a/`,
//! the cursor `c`, the next id `n`, the clean marker `k`, and the indexes `y/` and `r/`): the
//! open jobs and dead letters are written to the queue log once, with the router's cursor, and
//! the old keys removed.
//!
//! The move is done in two steps so a crash cannot lose or double it: `prepare` writes the
//! log (starting from an empty queue directory) while the store still says version 1; the
//! caller then recovers from that log, writes a snapshot, and calls `finish`, which sets
//! version 2 and removes the old keys. A crash before `finish` does it all again.

use std::path::Path;

use super::log::Log;
use super::record::{self, Changed, Created, Payload, Record};
use crate::queue::{Attempt, Cursor, Job, JobId, QueueError, State};
use crate::store::Store;

const OLD_PREFIXES: [&[u8]; 5] = [b"j/", b"o/", b"a/", b"y/", b"r/"];
const OLD_KEYS: [&[u8]; 3] = [b"c", b"n", b"k"];

/// Moves a release-1 queue into the log in `dir`; returns the next job id it had, or `None`
/// when there is nothing to upgrade.
pub fn prepare(store: &Store, tree: &sled::Tree, dir: &Path) -> Result<Option<JobId>, QueueError> {
    if store.schema_version >= 2 {
        return Ok(None);
    }
    for entry in std::fs::read_dir(dir)? {
        std::fs::remove_file(entry?.path())?;
    }
    let clean = tree.get(b"k")?.is_some();
    let next_id = match tree.get(b"n")? {
        Some(raw) => u64::from_be_bytes(raw.as_ref().try_into().unwrap_or_default()),
        None => 1,
    };
    let cursor: Cursor = match tree.get(b"c")? {
        Some(raw) => {
            serde_json::from_slice(&raw).map_err(|e| QueueError::Corrupt(format!("c: {e}")))?
        }
        None => Cursor {
            next_seq: 1,
            at: None,
        },
    };
    let log = Log::open(dir, super::SEGMENT_BYTES)?;
    let mut moved = 0u64;
    for item in tree.scan_prefix(b"o/") {
        let (key, _) = item?;
        let id = JobId::from_be_bytes(key[2..10].try_into().expect("o/ keys hold a u64"));
        let Some(raw) = tree.get([b"j/".as_slice(), &id.to_be_bytes()].concat())? else {
            continue;
        };
        let mut job: Job = serde_json::from_slice(&raw)
            .map_err(|e| QueueError::Corrupt(format!("j/{id}: {e}")))?;
        if job.state == State::Leased {
            job.state = State::Ready;
            job.in_doubt = true;
        }
        if !clean && matches!(job.state, State::Ready | State::Retrying) {
            job.in_doubt = true;
        }
        let last_attempt: Option<Attempt> = tree
            .scan_prefix([b"a/".as_slice(), &id.to_be_bytes()].concat())
            .last()
            .transpose()?
            .and_then(|(_, raw)| serde_json::from_slice(&raw).ok());
        let mut records = vec![
            Record::Created(Created::of(&Job {
                state: State::Ready,
                reason: None,
                ..job.clone()
            })),
            Record::Changed(Changed::of(&job, None, last_attempt, Vec::new())),
        ];
        if let Some(data) = job.payload.take() {
            records.push(Record::Payload(Payload { id, data }));
        }
        log.append(record::group(records));
        moved += 1;
    }
    log.append(record::group(vec![Record::Cursor(cursor)]));
    log.sync()?;
    tracing::info!(
        jobs = moved,
        "queue moved from the release-1 store into the queue log"
    );
    Ok(Some(next_id))
}

/// Marks the store as version 2 and removes the release-1 keys.
pub fn finish(store: &Store, tree: &sled::Tree) -> Result<(), QueueError> {
    let mut batch = sled::Batch::default();
    for prefix in OLD_PREFIXES {
        for item in tree.scan_prefix(prefix) {
            batch.remove(item?.0);
        }
    }
    for key in OLD_KEYS {
        batch.remove(key);
    }
    tree.apply_batch(batch)?;
    store.set_schema_version(crate::store::SCHEMA_VERSION)?;
    store.db.flush()?;
    // Release 1's schedule snapshot, beside the store.
    let _ = std::fs::remove_file(store.dir.join("schedule.snap"));
    Ok(())
}
