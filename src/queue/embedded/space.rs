//! Space and recovery points: snapshots, copying forward the few jobs that hold an old log
//! segment, copying events out of journal segments about to be deleted, and deleting the
//! segments nothing points into any more.

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use serde_json::Value;

use super::log;
use super::record::{self, Payload, Record};
use super::{COPY_FORWARD_MAX, Embedded, snapshot};
use crate::queue::lines::{Lines, Locs};
use crate::queue::{Job, JobId, QueueError, State};

/// A snapshot is written early once it would let this many segments go…
const FREE_SEGMENTS: usize = 2;
/// …but not sooner than this after the last one.
const FREE_AFTER: std::time::Duration = std::time::Duration::from_secs(5);
/// About what one schedule entry takes in a snapshot.
const SNAPSHOT_ENTRY_BYTES: u64 = 40;

impl Embedded {
    /// One round of upkeep (`Queue::upkeep`): events the journal is about to drop are copied,
    /// the jobs that alone hold an old segment are copied forward, a snapshot is written when
    /// due, and the segments nothing needs are deleted.
    pub(super) fn upkeep_round(
        &self,
        below_seq: u64,
        read_event: &dyn Fn(&Job) -> Option<Value>,
    ) -> Result<u64, QueueError> {
        self.index.apply_if_due()?;
        self.inner().lines.compact_if_grown();
        self.adopt_events(below_seq, read_event)?;
        let (snapshot_at, since) = self.inner().snapshot_at;
        let segments = self.log.segments()?;
        let old: Vec<u64> = segments
            .iter()
            .copied()
            .filter(|first| {
                segments
                    .iter()
                    .find(|next| *next > first)
                    .is_some_and(|next| *next <= snapshot_at)
            })
            .collect();
        let mut held: HashMap<u64, usize> = HashMap::new();
        for (_, entry) in self.inner().lines.entries() {
            for segment in old
                .iter()
                .filter(|s| pins(entry.at, std::slice::from_ref(s)))
            {
                *held.entry(*segment).or_default() += 1;
            }
        }
        let few: Vec<u64> = held
            .into_iter()
            .filter(|(_, jobs)| *jobs <= COPY_FORWARD_MAX)
            .map(|(segment, _)| segment)
            .collect();
        if !few.is_empty() {
            let copied = self.copy_forward(&few)?;
            tracing::info!(
                copied,
                segments = few.len(),
                "jobs copied forward out of old queue log segments"
            );
        }
        // The copies count only once a snapshot holds them: a segment goes after that.
        let appended = self.log.next_seq() - snapshot_at;
        let due = appended >= self.options.snapshot_records
            || (appended > 0 && since.elapsed() >= self.options.snapshot_every)
            || (since.elapsed() >= FREE_AFTER && self.snapshot_frees_more_than_it_writes()?);
        if due {
            self.write_snapshot(fastrand::u64(..))?;
        }
        self.reclaim()?;
        self.journal_needed_from()
    }

    /// Writes a snapshot of the schedule as it stands; returns the log seq it covers up to.
    pub(super) fn write_snapshot(&self, token: u64) -> Result<u64, QueueError> {
        let inner = self.inner();
        let replay_from = self.log.next_seq();
        let header = snapshot::Header {
            token,
            replay_from,
            next_id: inner.next_id,
            cursor: inner.cursor,
        };
        let bytes = snapshot::encode(
            header,
            inner.lines.entries(),
            inner.recent.iter().map(|(id, at)| (*id, *at)),
        );
        let held = held_segments(&inner.lines);
        drop(inner);
        // Every effect of the records before `replay_from` is in sled, on disk, before the
        // snapshot says recovery may start after them.
        self.index.apply(true)?;
        self.log.sync()?;
        let size = bytes.len() as u64;
        snapshot::write(&self.dir, bytes)?;
        let mut inner = self.inner();
        inner.snapshots.0 += 1;
        inner.snapshots.1 += size;
        inner.snapshot_at = (replay_from, Instant::now());
        inner.snapshot_held = held;
        Ok(replay_from)
    }

    /// Copies the open jobs and dead letters whose records lie in `segments` to the end of the
    /// log (created, last change, payload), so those segments can go.
    pub(super) fn copy_forward(&self, segments: &[u64]) -> Result<usize, QueueError> {
        let mut inner = self.inner();
        let ids: Vec<(JobId, Locs)> = inner
            .lines
            .entries()
            .filter(|(_, e)| e.state != State::Leased && pins(e.at, segments))
            .map(|(id, e)| (id, e.at))
            .collect();
        for (id, at) in &ids {
            let mut records = Vec::with_capacity(3);
            let Record::Created(mut created) = self.read_record(at.created)? else {
                continue;
            };
            created.copied = true;
            records.push(Record::Created(created));
            if at.last != 0
                && let Record::Changed(mut changed) = self.read_record(at.last)?
            {
                changed.prev = None;
                records.push(Record::Changed(changed));
            }
            if at.payload != 0 {
                records.push(self.read_record(at.payload)?);
            }
            let positions = self.log.append(record::group(records));
            let locs = inner.lines.locs_mut(*id).expect("held above");
            locs.created = positions[0];
            let mut rest = positions[1..].iter();
            if at.last != 0 {
                locs.last = *rest.next().expect("copied");
            }
            if at.payload != 0 {
                locs.payload = *rest.next().expect("copied");
            }
        }
        Ok(ids.len())
    }

    /// Reads a job's event from the journal into a payload record of its own (before the
    /// journal drops the segment that holds it).
    fn adopt_events(
        &self,
        below_seq: u64,
        read_event: &dyn Fn(&Job) -> Option<Value>,
    ) -> Result<(), QueueError> {
        let mut inner = self.inner();
        let mut adopt = Vec::new();
        for (id, entry) in inner.lines.entries() {
            if entry.at.payload != 0 || entry.state == State::Leased {
                continue;
            }
            let job = self.read(entry.at)?;
            if job.seq >= below_seq {
                break; // ids follow journal order
            }
            adopt.push((id, job));
        }
        for (id, job) in adopt {
            let Some(data) = read_event(&job) else {
                continue;
            };
            let record = Record::Payload(Payload { id, data });
            let at = self.log.append(record::group(vec![record]))[0];
            inner.lines.locs_mut(id).expect("held above").payload = at;
        }
        Ok(())
    }

    /// The first journal seq an open job or dead letter still reads, or the router's cursor.
    fn journal_needed_from(&self) -> Result<u64, QueueError> {
        let inner = self.inner();
        // Ids follow journal order: the first job that reads the journal reads the oldest record.
        let first = inner.lines.entries().find(|(_, e)| e.at.payload == 0);
        let oldest = match first {
            Some((_, entry)) => self.read(entry.at)?.seq,
            None => u64::MAX,
        };
        Ok(inner.cursor.next_seq.min(oldest))
    }

    /// Whether a snapshot now would let at least [`FREE_SEGMENTS`] segments go, and more bytes
    /// than it writes (at a large backlog a snapshot is tens of MB).
    fn snapshot_frees_more_than_it_writes(&self) -> Result<bool, QueueError> {
        let segments = self.log.segments()?;
        let closed = segments.len().saturating_sub(1);
        let inner = self.inner();
        let snapshot_bytes = (inner.lines.entries().len() as u64) * SNAPSHOT_ENTRY_BYTES;
        // Even if every closed segment could go, would it be worth a snapshot? (Cheap bounds
        // first: the walk over every entry below runs once a second.)
        if closed < FREE_SEGMENTS
            || (closed as u64) * self.options.segment_bytes < 2 * snapshot_bytes
        {
            return Ok(false);
        }
        let held = held_segments(&inner.lines);
        drop(inner);
        let freeable = segments[..closed]
            .iter()
            .filter(|first| !held.contains(first))
            .count();
        Ok(freeable >= FREE_SEGMENTS
            && freeable as u64 * self.options.segment_bytes >= 2 * snapshot_bytes)
    }

    /// Deletes the log segments before the last snapshot that neither it nor the schedule
    /// points into, and forgets the settled jobs whose records they held.
    fn reclaim(&self) -> Result<(), QueueError> {
        let mut inner = self.inner();
        let snapshot_at = inner.snapshot_at.0;
        let segments = self.log.segments()?;
        let held = held_segments(&inner.lines);
        let mut gone = Vec::new();
        for (n, first) in segments.iter().enumerate() {
            let ends_before_snapshot = segments.get(n + 1).is_some_and(|next| *next <= snapshot_at);
            if ends_before_snapshot && !held.contains(first) && !inner.snapshot_held.contains(first)
            {
                self.log.remove_segment(*first)?;
                gone.push(*first);
            }
        }
        if !gone.is_empty() {
            inner.recent.retain(|_, at| !pins(*at, &gone));
        }
        Ok(())
    }
}

/// The log segments the schedule's entries point into.
pub(super) fn held_segments(lines: &Lines) -> HashSet<u64> {
    let mut held = HashSet::new();
    for (_, entry) in lines.entries() {
        for pos in [entry.at.created, entry.at.last, entry.at.payload] {
            if pos != 0 {
                held.insert(log::segment_of(pos));
            }
        }
    }
    held
}

/// Whether a job's records lie in one of `segments`.
pub(super) fn pins(at: Locs, segments: &[u64]) -> bool {
    [at.created, at.last, at.payload]
        .into_iter()
        .filter(|pos| *pos != 0)
        .any(|pos| segments.contains(&log::segment_of(pos)))
}
