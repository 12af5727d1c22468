//! Dead letters a later delivery made moot: when a job of a flow delivers a record, the dead
//! letters of the same flow and record with lower ids are settled as skipped (`superseded`),
//! so they no longer count as open or look live. Found through an index of dead letters by
//! (flow, record), built the first time it is needed and kept up by every state change.

use std::collections::{BTreeSet, HashMap};

use super::{Embedded, Group, Inner};
use crate::queue::{Job, JobId, QueueError, State};

/// Dead letters by (flow, record id).
#[derive(Debug, Default)]
pub struct DeadByRecord(HashMap<(String, String), BTreeSet<JobId>>);

impl DeadByRecord {
    /// Follows a job's new state.
    pub fn note(&mut self, job: &Job) {
        let Some(record) = &job.object_id else {
            return;
        };
        let key = (job.flow.clone(), record.clone());
        match job.state {
            State::Dead => {
                self.0.entry(key).or_default().insert(job.id);
            }
            _ => {
                if let Some(ids) = self.0.get_mut(&key) {
                    ids.remove(&job.id);
                    if ids.is_empty() {
                        self.0.remove(&key);
                    }
                }
            }
        }
    }
}

impl Embedded {
    /// Settles the dead letters of `flow` and `record` older than job `by` as superseded;
    /// returns how many.
    pub(super) fn supersede_dead(
        &self,
        flow: &str,
        record: &str,
        by: JobId,
    ) -> Result<usize, QueueError> {
        let mut inner = self.inner();
        let mut group = Group::default();
        let count = self.moot(&mut inner, &mut group, flow, record, by)?;
        self.append(&mut inner, group);
        Ok(count)
    }

    /// Adds to `group` the dead letters of `flow` and `record` older than job `by`, settled as
    /// superseded; returns how many.
    pub(super) fn moot(
        &self,
        inner: &mut Inner,
        group: &mut Group,
        flow: &str,
        record: &str,
        by: JobId,
    ) -> Result<usize, QueueError> {
        if !inner.lines.any_in(State::Dead) {
            return Ok(0);
        }
        if inner.dead_by_record.is_none() {
            self.index_dead_letters(inner)?;
        }
        let key = (flow.to_owned(), record.to_owned());
        let older: Vec<JobId> = inner
            .dead_by_record
            .as_ref()
            .and_then(|index| index.0.get(&key))
            .map(|ids| ids.range(..by).copied().collect())
            .unwrap_or_default();
        let now = self.clock.now_ms();
        for id in &older {
            let Some(entry) = inner.lines.get(*id) else {
                continue;
            };
            let mut job = self.read(entry.at)?;
            crate::queue::actions::supersede(&mut job, by, record, now);
            group.change(inner, job, None, None, Vec::new());
        }
        Ok(older.len())
    }

    /// Reads every dead letter once to index it by (flow, record).
    fn index_dead_letters(&self, inner: &mut Inner) -> Result<(), QueueError> {
        let mut index = DeadByRecord::default();
        for id in inner.lines.ids_in(State::Dead) {
            if let Some(entry) = inner.lines.get(id) {
                index.note(&self.read(entry.at)?);
            }
        }
        inner.dead_by_record = Some(index);
        Ok(())
    }
}
