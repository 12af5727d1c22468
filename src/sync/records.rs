//! What sync remembers besides jobs, in the queue tree (keys.rs): cross-references, the last
//! applied version of each record, the furthest order status, and what handoff wrote to CRM
//! records (for echo detection). Writes are returned as `queue::Write`s so they commit in the same
//! batch as the job they come from.

use serde::{Deserialize, Serialize};

use crate::journal::Position;
use crate::queue::{QueueError, Write, keys};

/// A cross-reference: a CRM record and the id it has in a target system.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Xref {
    pub system: String,
    pub kind: String,
    pub crm_id: String,
    pub external_id: String,
    /// The flow and job that made it.
    pub flow: String,
    pub job: u64,
    pub at_ms: i64,
}

/// The last version of a record applied through a flow, and which event it was.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Applied {
    pub version: Option<String>,
    pub seq: u64,
    pub at: Position,
}

/// Fields handoff wrote to a CRM record, with their values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Echo {
    pub fields: serde_json::Map<String, serde_json::Value>,
    pub at_ms: i64,
}

fn read<T: for<'de> Deserialize<'de>>(
    tree: &sled::Tree,
    key: &[u8],
) -> Result<Option<T>, QueueError> {
    match tree.get(key)? {
        Some(raw) => serde_json::from_slice(&raw)
            .map(Some)
            .map_err(|e| QueueError::Corrupt(format!("{}: {e}", String::from_utf8_lossy(key)))),
        None => Ok(None),
    }
}

fn write<T: Serialize>(key: Vec<u8>, value: &T) -> Write {
    Write {
        key,
        value: Some(serde_json::to_vec(value).expect("records serialize")),
    }
}

pub fn xref(
    tree: &sled::Tree,
    system: &str,
    kind: &str,
    crm_id: &str,
) -> Result<Option<Xref>, QueueError> {
    read(tree, &keys::text(keys::XREF, &[system, kind, crm_id]))
}

pub fn put_xref(xref: &Xref) -> [Write; 2] {
    [
        write(
            keys::text(keys::XREF, &[&xref.system, &xref.kind, &xref.crm_id]),
            xref,
        ),
        write(
            keys::text(
                keys::XREF_BACK,
                &[&xref.system, &xref.kind, &xref.external_id],
            ),
            xref,
        ),
    ]
}

/// Cross-references in key order, from `after` (a previous page's last key) on.
pub fn xrefs(tree: &sled::Tree, filter: &str, limit: usize) -> Result<Vec<Xref>, QueueError> {
    let mut out = Vec::new();
    for item in tree.scan_prefix(keys::XREF) {
        let (key, value) = item?;
        let xref: Xref = serde_json::from_slice(&value)
            .map_err(|e| QueueError::Corrupt(format!("{}: {e}", String::from_utf8_lossy(&key))))?;
        if filter.is_empty() || xref.crm_id == filter || xref.external_id == filter {
            out.push(xref);
            if out.len() == limit {
                break;
            }
        }
    }
    Ok(out)
}

pub fn applied(tree: &sled::Tree, flow: &str, record: &str) -> Result<Option<Applied>, QueueError> {
    read(tree, &keys::text(keys::VERSION, &[flow, record]))
}

pub fn put_applied(flow: &str, record: &str, applied: &Applied) -> Write {
    write(keys::text(keys::VERSION, &[flow, record]), applied)
}

pub fn status(tree: &sled::Tree, order: &str) -> Result<Option<String>, QueueError> {
    read(tree, &keys::text(keys::STATUS, &[order]))
}

pub fn put_status(order: &str, status: &str) -> Write {
    write(keys::text(keys::STATUS, &[order]), &status)
}

pub fn echo(tree: &sled::Tree, record: &str) -> Result<Option<Echo>, QueueError> {
    read(tree, &keys::text(keys::ECHO, &[record]))
}

pub fn put_echo(record: &str, echo: &Echo) -> Write {
    write(keys::text(keys::ECHO, &[record]), echo)
}
