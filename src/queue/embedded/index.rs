//! The small mutable indexes, in the `queue` sled tree: cross-references, applied versions,
//! order status, echo records, pollers' cursors. Job bodies and states are not here (the
//! journal and the queue log).
//!
//! A settle's effects are written first in its `changed` record in the queue log and kept in
//! memory (`overlay`, read before sled); `apply` moves them to sled all at once, in batches of
//! a few thousand keys (a small sled write costs ~6 KB and ~150 µs; in batches of thousands
//! ~1–1.5 KB and ~10 µs, BENCHMARKS.md; sled's readers wait while a batch is applied, so the
//! batches stay that small). A snapshot applies and flushes them first, so after a crash the
//! effects of the records after the snapshot are all that recovery puts back.
//!
//! ```text
//! x/<system>\0<kind>\0<crm id>        the id the record has in <system> (JSON Xref)
//! v/<flow>\0<record id>               last applied version of a record through a flow
//! s/<order key>                       furthest order status written back for that order
//! e/<record id>                       fields handoff itself wrote to a CRM record
//! p/<connector>[\0<order>]            a status poller's cursor, and milestones emitted per order
//! g/<run id, 8 bytes big-endian>      a reconciliation run (JSON: progress, counts, rows)
//! ```
//!
//! A store written by release 1 also holds `c`, `n`, `k`, `j/`, `o/` and `a/` (jobs and their
//! schedule), `y/` (cross-references by target id, never read) and `r/` (jobs by record);
//! `upgrade.rs` moves what is open into the queue log and removes them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use super::compact;
use crate::queue::QueueError;
use crate::queue::records::{Applied, Echo, Effect, Xref};

pub const XREF: &[u8] = b"x/";
pub const VERSION: &[u8] = b"v/";
pub const STATUS: &[u8] = b"s/";
pub const ECHO: &[u8] = b"e/";
pub const POLL: &[u8] = b"p/";
pub const RECONCILE: &[u8] = b"g/";

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

pub struct Index {
    pub tree: sled::Tree,
    /// Effects not yet in sled, newest value per key.
    overlay: Mutex<HashMap<Vec<u8>, Arc<[u8]>>>,
    /// When they last went to sled.
    applied_at: Mutex<std::time::Instant>,
}

/// Effects go to sled once this many wait (~40 MB; two per delivered order, so about twice
/// between snapshots at full speed: sled writes ~1 KB per key in batches this large)…
const APPLY_AT: usize = 100_000;
/// …or this long after the last batch (a snapshot, every 30 s at most, applies them too).
const APPLY_EVERY: std::time::Duration = std::time::Duration::from_secs(30);
/// Keys per sled batch while applying (each batch blocks sled's readers while it runs).
const APPLY_CHUNK: usize = 2_000;

impl Index {
    pub fn new(tree: sled::Tree) -> Index {
        Index {
            tree,
            overlay: Mutex::new(HashMap::new()),
            applied_at: Mutex::new(std::time::Instant::now()),
        }
    }

    /// Moves the staged effects to sled when enough wait, or long enough.
    pub fn apply_if_due(&self) -> Result<(), QueueError> {
        let waited = self
            .applied_at
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .elapsed();
        if self.overlay().len() >= APPLY_AT || waited >= APPLY_EVERY {
            self.apply(false)?;
        }
        Ok(())
    }

    fn overlay(&self) -> std::sync::MutexGuard<'_, HashMap<Vec<u8>, Arc<[u8]>>> {
        self.overlay.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes a settle's effects (already in, or about to be in, the queue log).
    pub fn stage(&self, effects: &[Effect]) {
        if effects.is_empty() {
            return;
        }
        let mut overlay = self.overlay();
        for effect in effects {
            let (key, value) = write_of(effect);
            overlay.insert(key, value.into());
        }
    }

    /// Moves the staged effects to sled; `flush` also makes sled durable.
    pub fn apply(&self, flush: bool) -> Result<(), QueueError> {
        let staged: Vec<(Vec<u8>, Arc<[u8]>)> = self
            .overlay()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        if !staged.is_empty() {
            // sled holds a lock every read waits on while it applies a batch: in chunks, the
            // workers' look-ups go on between them instead of stalling for the whole batch.
            for chunk in staged.chunks(APPLY_CHUNK) {
                let mut batch = sled::Batch::default();
                for (key, value) in chunk {
                    batch.insert(key.as_slice(), value.as_ref());
                }
                self.tree.apply_batch(batch)?;
            }
            // Only what was applied leaves the overlay; a newer value stays.
            let mut overlay = self.overlay();
            for (key, value) in staged {
                if overlay
                    .get(&key)
                    .is_some_and(|now| Arc::ptr_eq(now, &value))
                {
                    overlay.remove(&key);
                }
            }
        }
        *self.applied_at.lock().unwrap_or_else(|p| p.into_inner()) = std::time::Instant::now();
        if flush {
            self.tree.flush()?;
        }
        Ok(())
    }

    fn read<T: Value>(&self, key: &[u8]) -> Result<Option<T>, QueueError> {
        let staged = self.overlay().get(key).cloned();
        let raw = match staged {
            Some(value) => Some(value.to_vec()),
            None => self.tree.get(key)?.map(|raw| raw.to_vec()),
        };
        raw.map(|raw| decode(key, &raw)).transpose()
    }

    pub fn xref(&self, system: &str, kind: &str, crm_id: &str) -> Result<Option<Xref>, QueueError> {
        self.read(&text(XREF, &[system, kind, crm_id]))
    }

    /// Cross-references in key order whose CRM or target id is `filter` (all when empty).
    pub fn xrefs(&self, filter: &str, limit: usize) -> Result<Vec<Xref>, QueueError> {
        self.apply(false)?;
        let mut out = Vec::new();
        for item in self.tree.scan_prefix(XREF) {
            let (key, value) = item?;
            let xref: Xref = decode(&key, &value)?;
            if filter.is_empty() || xref.crm_id == filter || xref.external_id == filter {
                out.push(xref);
                if out.len() == limit {
                    break;
                }
            }
        }
        Ok(out)
    }

    /// Stores a cross-reference an operator made, durably, ahead of any staged one.
    pub fn link(&self, xref: &Xref) -> Result<(), QueueError> {
        let key = text(XREF, &[&xref.system, &xref.kind, &xref.crm_id]);
        self.overlay().remove(&key);
        self.tree.insert(key, xref.encode())?;
        self.tree.flush()?;
        Ok(())
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
        Ok(self.tree.apply_batch(batch)?)
    }
}

impl Index {
    /// Stores a reconciliation run under its id, durably (a run resumes from it after a crash).
    pub fn save_run(&self, id: u64, run: &serde_json::Value) -> Result<(), QueueError> {
        let mut key = RECONCILE.to_vec();
        key.extend_from_slice(&id.to_be_bytes());
        self.tree.insert(key, json(run))?;
        self.tree.flush()?;
        Ok(())
    }

    /// Reconciliation runs, newest first, at most `limit`.
    pub fn runs(&self, limit: usize) -> Result<Vec<serde_json::Value>, QueueError> {
        let mut runs = Vec::new();
        for entry in self.tree.scan_prefix(RECONCILE).rev().take(limit) {
            let (key, raw) = entry?;
            runs.push(serde_json::from_slice(&raw).map_err(|e| {
                QueueError::Corrupt(format!("{}: {e}", String::from_utf8_lossy(&key)))
            })?);
        }
        Ok(runs)
    }

    pub fn run(&self, id: u64) -> Result<Option<serde_json::Value>, QueueError> {
        let mut key = RECONCILE.to_vec();
        key.extend_from_slice(&id.to_be_bytes());
        self.tree
            .get(&key)?
            .map(|raw| {
                serde_json::from_slice(&raw)
                    .map_err(|e| QueueError::Corrupt(format!("reconciliation run {id}: {e}")))
            })
            .transpose()
    }
}

/// Everything the index holds, for moving an installation to another backend.
#[derive(Debug, Default)]
pub struct Exported {
    /// Cross-references, applied versions, order status and echo records.
    pub effects: Vec<Effect>,
    /// Status pollers' cursors (connector → cursor).
    pub cursors: Vec<(String, serde_json::Value)>,
    /// Milestones emitted per (connector, order).
    pub emitted: Vec<(String, String, u64)>,
    /// Reconciliation runs by id.
    pub runs: Vec<(u64, serde_json::Value)>,
}

impl Index {
    /// Reads every value of the index (staged ones applied first).
    pub fn export(&self) -> Result<Exported, QueueError> {
        self.apply(false)?;
        let mut out = Exported::default();
        for entry in self.tree.iter() {
            let (key, raw) = entry?;
            let parts = |prefix: &[u8]| -> Vec<String> {
                key[prefix.len()..]
                    .split(|b| *b == 0)
                    .map(|part| String::from_utf8_lossy(part).into_owned())
                    .collect()
            };
            if key.starts_with(XREF) {
                out.effects.push(Effect::Xref(decode(&key, &raw)?));
            } else if let (true, [flow, record]) = (key.starts_with(VERSION), &parts(VERSION)[..]) {
                out.effects.push(Effect::Applied {
                    flow: flow.clone(),
                    record: record.clone(),
                    applied: decode(&key, &raw)?,
                });
            } else if key.starts_with(STATUS) {
                out.effects.push(Effect::Status {
                    order: parts(STATUS).join("\0"),
                    status: decode(&key, &raw)?,
                });
            } else if key.starts_with(ECHO) {
                out.effects.push(Effect::Echo {
                    record: parts(ECHO).join("\0"),
                    echo: decode(&key, &raw)?,
                });
            } else if key.starts_with(POLL) {
                match &parts(POLL)[..] {
                    [connector] => out.cursors.push((connector.clone(), decode(&key, &raw)?)),
                    [connector, order] => out.emitted.push((
                        connector.clone(),
                        order.clone(),
                        u64::from_be_bytes(raw.as_ref().try_into().unwrap_or_default()),
                    )),
                    _ => {}
                }
            } else if key.starts_with(RECONCILE) && key.len() == RECONCILE.len() + 8 {
                let id = u64::from_be_bytes(key[RECONCILE.len()..].try_into().unwrap_or_default());
                out.runs.push((id, decode(&key, &raw)?));
            }
        }
        Ok(out)
    }
}

/// An effect's key and value.
fn write_of(effect: &Effect) -> (Vec<u8>, Vec<u8>) {
    match effect {
        Effect::Xref(xref) => (
            text(XREF, &[&xref.system, &xref.kind, &xref.crm_id]),
            xref.encode(),
        ),
        Effect::Applied {
            flow,
            record,
            applied,
        } => (text(VERSION, &[flow, record]), applied.encode()),
        Effect::Status { order, status } => (text(STATUS, &[order]), json(status)),
        Effect::Echo { record, echo } => (text(ECHO, &[record]), json(echo)),
    }
}

fn json<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("index values serialize")
}

/// A value of the index: cross-references and applied versions (two per delivered order) in
/// the compact form, the rest as JSON; JSON written by an earlier release reads too.
trait Value: for<'de> Deserialize<'de> + Serialize {
    fn encode(&self) -> Vec<u8> {
        json(self)
    }

    fn compact(_input: &mut compact::In) -> Option<Self> {
        None
    }

    /// A value whose first byte is [`compact::TAG_DIGEST`].
    fn compact_digest(_input: &mut compact::In) -> Option<Self> {
        None
    }
}

impl Value for Xref {
    fn encode(&self) -> Vec<u8> {
        let mut out = vec![compact::TAG];
        compact::Out(&mut out).xref(self);
        out
    }

    fn compact(input: &mut compact::In) -> Option<Xref> {
        input.xref()
    }
}

impl Value for Applied {
    fn encode(&self) -> Vec<u8> {
        let mut out = vec![compact::TAG_DIGEST];
        compact::Out(&mut out).applied(self);
        compact::Out(&mut out).digest(self.digest);
        out
    }

    /// Release 3's form, without a digest.
    fn compact(input: &mut compact::In) -> Option<Applied> {
        input.applied()
    }

    fn compact_digest(input: &mut compact::In) -> Option<Applied> {
        let mut applied = input.applied()?;
        applied.digest = input.digest()?;
        Some(applied)
    }
}

impl Value for String {}
impl Value for Echo {}
impl Value for serde_json::Value {}

fn decode<T: Value>(key: &[u8], raw: &[u8]) -> Result<T, QueueError> {
    let corrupt =
        |why: String| QueueError::Corrupt(format!("{}: {why}", String::from_utf8_lossy(key)));
    match raw.split_first() {
        Some((&tag @ (compact::TAG | compact::TAG_DIGEST), rest)) => {
            let mut input = compact::In(rest);
            let value = match tag {
                compact::TAG => T::compact(&mut input),
                _ => T::compact_digest(&mut input),
            }
            .ok_or_else(|| corrupt("cannot be decoded".into()))?;
            input
                .end()
                .ok_or_else(|| corrupt("has bytes after its value".into()))?;
            Ok(value)
        }
        _ => serde_json::from_slice(raw).map_err(|e| corrupt(e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::Position;

    #[test]
    fn values_read_in_either_form_and_a_bad_one_is_corrupt() {
        let xref = Xref {
            system: "erp".into(),
            kind: "customer".into(),
            crm_id: "001".into(),
            external_id: "C-1".into(),
            flow: "account_to_customer".into(),
            job: 7,
            at_ms: 1_764_000_000_000,
        };
        let applied = Applied {
            version: Some("v2".into()),
            seq: 9,
            at: Position {
                segment: 1,
                offset: 77,
            },
            digest: Some(0xfeed),
        };
        // Release 3 wrote it without a digest.
        let mut release3 = vec![compact::TAG];
        compact::Out(&mut release3).applied(&applied);
        let without = Applied {
            digest: None,
            ..applied.clone()
        };
        assert_eq!(decode::<Applied>(b"k", &release3).unwrap(), without);
        assert_eq!(decode::<Xref>(b"k", &xref.encode()).unwrap(), xref);
        assert_eq!(decode::<Xref>(b"k", &json(&xref)).unwrap(), xref);
        assert_eq!(decode::<Applied>(b"k", &applied.encode()).unwrap(), applied);
        assert_eq!(decode::<Applied>(b"k", &json(&applied)).unwrap(), applied);
        assert!(xref.encode().len() * 2 < json(&xref).len());
        let mut longer = applied.encode();
        longer.push(0);
        for bad in [&longer[..], &applied.encode()[..3], b"\x01", b"{"] {
            assert!(matches!(
                decode::<Applied>(b"v/f", bad),
                Err(QueueError::Corrupt(_))
            ));
        }
    }
}
