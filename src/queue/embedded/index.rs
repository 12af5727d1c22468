//! The small mutable indexes, in the `queue` sled tree: cross-references, applied versions,
//! order status, echo records, pollers' cursors, and the jobs of each record for the
//! dashboard's search. Job bodies and states are not here (the journal and the queue log).
//!
//! ```text
//! x/<system>\0<kind>\0<crm id>        the id the record has in <system> (JSON Xref)
//! y/<system>\0<kind>\0<external id>   the CRM id, the other way round
//! v/<flow>\0<record id>               last applied version of a record through a flow
//! s/<order key>                       furthest order status written back for that order
//! e/<record id>                       fields handoff itself wrote to a CRM record
//! p/<connector>[\0<order>]            a status poller's cursor, and milestones emitted per order
//! r/<record id>\0<id u64 BE>          the jobs of a record (CRM id, order key, id in the target)
//! ```
//!
//! A store written by release 1 also holds `c`, `n`, `k`, `j/`, `o/` and `a/` (jobs and their
//! schedule); `upgrade.rs` moves what is open into the queue log and removes them.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use serde::{Deserialize, Serialize};

use crate::queue::records::{Applied, Echo, Effect, Xref};
use crate::queue::{JobId, QueueError};

pub const XREF: &[u8] = b"x/";
pub const XREF_BACK: &[u8] = b"y/";
pub const VERSION: &[u8] = b"v/";
pub const STATUS: &[u8] = b"s/";
pub const ECHO: &[u8] = b"e/";
pub const POLL: &[u8] = b"p/";
pub const RECORD: &[u8] = b"r/";

/// A key under `prefix` made of text parts joined by NUL.
pub fn text(prefix: &[u8], parts: &[&str]) -> Vec<u8> {
    let mut key = prefix.to_vec();
    for (n, part) in parts.iter().enumerate() {
        if n > 0 {
            key.push(0);
        }
        key.extend_from_slice(part.as_bytes());
    }
    key
}

/// The index entry of a job under one of its record ids.
pub fn record(record: &str, id: JobId) -> Vec<u8> {
    let mut key = record_prefix(record);
    key.extend_from_slice(&id.to_be_bytes());
    key
}

/// Where a record's index entries start.
pub fn record_prefix(record: &str) -> Vec<u8> {
    let mut key = text(RECORD, &[record]);
    key.push(0);
    key
}

pub struct Index {
    pub tree: sled::Tree,
    /// Set by every write; the queue log's committer flushes sled when it is set.
    pub dirty: Arc<AtomicBool>,
}

impl Index {
    /// Applies a batch of writes (made durable by the log's next commit).
    pub fn apply(&self, batch: sled::Batch) -> Result<(), QueueError> {
        self.tree.apply_batch(batch)?;
        self.dirty.store(true, Ordering::Release);
        Ok(())
    }

    fn read<T: for<'de> Deserialize<'de>>(&self, key: &[u8]) -> Result<Option<T>, QueueError> {
        match self.tree.get(key)? {
            Some(raw) => serde_json::from_slice(&raw)
                .map(Some)
                .map_err(|e| QueueError::Corrupt(format!("{}: {e}", String::from_utf8_lossy(key)))),
            None => Ok(None),
        }
    }

    pub fn xref(&self, system: &str, kind: &str, crm_id: &str) -> Result<Option<Xref>, QueueError> {
        self.read(&text(XREF, &[system, kind, crm_id]))
    }

    /// Cross-references in key order whose CRM or target id is `filter` (all when empty).
    pub fn xrefs(&self, filter: &str, limit: usize) -> Result<Vec<Xref>, QueueError> {
        let mut out = Vec::new();
        for item in self.tree.scan_prefix(XREF) {
            let (key, value) = item?;
            let xref: Xref = serde_json::from_slice(&value).map_err(|e| {
                QueueError::Corrupt(format!("{}: {e}", String::from_utf8_lossy(&key)))
            })?;
            if filter.is_empty() || xref.crm_id == filter || xref.external_id == filter {
                out.push(xref);
                if out.len() == limit {
                    break;
                }
            }
        }
        Ok(out)
    }

    pub fn applied(&self, flow: &str, record: &str) -> Result<Option<Applied>, QueueError> {
        self.read(&text(VERSION, &[flow, record]))
    }

    pub fn status(&self, order: &str) -> Result<Option<String>, QueueError> {
        self.read(&text(STATUS, &[order]))
    }

    pub fn echo(&self, record: &str) -> Result<Option<Echo>, QueueError> {
        self.read(&text(ECHO, &[record]))
    }

    pub fn poll_cursor(&self, connector: &str) -> Result<Option<serde_json::Value>, QueueError> {
        Ok(self
            .tree
            .get(text(POLL, &[connector]))?
            .and_then(|raw| serde_json::from_slice(&raw).ok()))
    }

    pub fn poll_emitted(&self, connector: &str, order: &str) -> Result<u64, QueueError> {
        Ok(self
            .tree
            .get(text(POLL, &[connector, order]))?
            .map(|raw| u64::from_be_bytes(raw.as_ref().try_into().unwrap_or_default()))
            .unwrap_or(0))
    }

    pub fn save_poll(
        &self,
        connector: &str,
        cursor: Option<&serde_json::Value>,
        emitted: &[(String, u64)],
    ) -> Result<(), QueueError> {
        let mut batch = sled::Batch::default();
        for (order, count) in emitted {
            batch.insert(text(POLL, &[connector, order]), &count.to_be_bytes());
        }
        if let Some(cursor) = cursor {
            batch.insert(text(POLL, &[connector]), json(cursor));
        }
        self.apply(batch)
    }

    /// Ids of `record`'s jobs below `before`, newest first.
    pub fn jobs_of(
        &self,
        record: &str,
        before: JobId,
    ) -> impl Iterator<Item = Result<JobId, QueueError>> + use<> {
        let prefix = record_prefix(record);
        let mut end = prefix.clone();
        end.extend_from_slice(&before.to_be_bytes());
        let len = prefix.len();
        self.tree.range(prefix..end).rev().map(move |item| {
            let (key, _) = item?;
            let bytes: [u8; 8] = key[len..].try_into().expect("u64 id");
            Ok(JobId::from_be_bytes(bytes))
        })
    }
}

/// Adds an effect's writes to a batch.
pub fn stage(batch: &mut sled::Batch, effect: &Effect) {
    match effect {
        Effect::Xref(xref) => {
            batch.insert(
                text(XREF, &[&xref.system, &xref.kind, &xref.crm_id]),
                json(xref),
            );
            batch.insert(
                text(XREF_BACK, &[&xref.system, &xref.kind, &xref.external_id]),
                json(xref),
            );
        }
        Effect::Applied {
            flow,
            record,
            applied,
        } => batch.insert(text(VERSION, &[flow, record]), json(applied)),
        Effect::Status { order, status } => batch.insert(text(STATUS, &[order]), json(status)),
        Effect::Echo { record, echo } => batch.insert(text(ECHO, &[record]), json(echo)),
    }
}

fn json<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("index values serialize")
}
