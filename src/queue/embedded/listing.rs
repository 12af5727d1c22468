//! Listings for the dashboard and the API: jobs newest first by state, by record or all of
//! them (open, dead, and settled ones whose records are still in the log), and attempts.

use super::Embedded;
use super::record::Record;
use crate::queue::{Attempt, Job, JobId, Page, Queue, QueueError, SCAN_BUDGET, Scope, State};

impl Embedded {
    /// Its attempts, following the chain of its changes back while their segments last.
    pub(super) fn attempts_of(&self, id: JobId) -> Result<Vec<Attempt>, QueueError> {
        let (at, _) = self.locate(id)?;
        let mut attempts = Vec::new();
        let mut next = (at.last != 0).then_some(at.last);
        while let Some(pos) = next {
            let Ok(Record::Changed(changed)) = self.read_record(pos) else {
                break; // the rest went with a deleted segment
            };
            attempts.extend(changed.attempt);
            next = changed.prev;
        }
        attempts.reverse();
        Ok(attempts)
    }

    /// A page of a listing (`Queue::list`).
    pub(super) fn list_jobs(
        &self,
        scope: Scope<'_>,
        before: Option<JobId>,
        limit: usize,
        keep: &dyn Fn(&Job) -> bool,
    ) -> Result<Page, QueueError> {
        let before = before.unwrap_or(JobId::MAX);
        let found: Box<dyn Iterator<Item = Result<JobId, QueueError>>> = match scope {
            Scope::State(state) => Box::new(self.newest(before, Some(state))),
            // The listing's filter picks the record's jobs out of every job the queue knows.
            Scope::Record(_) | Scope::All { .. } => Box::new(self.newest(before, None)),
        };
        let since_ms = match scope {
            Scope::All { since_ms } => since_ms,
            _ => None,
        };
        let mut page = Page::default();
        for (scanned, found) in found.enumerate() {
            let id = found?;
            if scanned == SCAN_BUDGET {
                page.next_before = Some(id + 1);
                break;
            }
            let Ok(job) = self.get(id) else {
                continue; // settled and its records reclaimed
            };
            if since_ms.is_some_and(|t| job.created_ms < t) {
                break;
            }
            let of_record = match scope {
                Scope::Record(record) => {
                    job.order_key == record
                        || job.object_id.as_deref() == Some(record)
                        || job.external_id.as_deref() == Some(record)
                }
                _ => true,
            };
            if of_record && keep(&job) {
                page.jobs.push(job);
                if page.jobs.len() == limit {
                    page.next_before = Some(id);
                    break;
                }
            }
        }
        Ok(page)
    }

    /// Ids below `before`, newest first, fetched a chunk at a time: of the jobs the schedule
    /// holds in `state`, or of every job the queue knows (open, dead and recent).
    fn newest(
        &self,
        mut before: JobId,
        state: Option<State>,
    ) -> impl Iterator<Item = Result<JobId, QueueError>> + '_ {
        let mut chunk = Vec::new().into_iter();
        let mut done = false;
        std::iter::from_fn(move || {
            if chunk.len() == 0 && !done {
                let inner = self.inner();
                let ids = match state {
                    Some(state) => inner.lines.newest_in(state, before, 256),
                    None => {
                        let mut ids = inner.lines.newest(before, 256);
                        let recent = inner.recent.range(..before).rev().take(256);
                        ids.extend(recent.map(|(id, _)| *id));
                        ids.sort_unstable_by(|a, b| b.cmp(a));
                        ids.truncate(256);
                        ids
                    }
                };
                done = ids.is_empty();
                chunk = ids.into_iter();
            }
            let id = chunk.next()?;
            before = id;
            Some(Ok(id))
        })
    }
}
