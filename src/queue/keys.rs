//! The key layout of the `queue` tree. Everything the engine keeps lives in this one sled tree so
//! that each step (route an event, settle a job with its cross-reference) is one atomic batch.
//!
//! ```text
//! c                          router cursor: next journal seq and its position (JSON)
//! n                          next job id (u64 BE)
//! k                          present only between a clean shutdown and the next open: the
//!                            token of the schedule snapshot written then (u64 LE; empty in
//!                            older stores)
//! j/<id u64 BE>              job (JSON, job.rs)
//! o/<id u64 BE>              open or dead job: its scheduling entry (JSON), scanned on open
//! a/<id u64 BE><n u32 BE>    attempt n of the job (JSON)
//! x/<system>\0<kind>\0<crm id>        the id the record has in <system>
//! y/<system>\0<kind>\0<external id>   the CRM id, the other way round
//! v/<flow>\0<record id>      last applied version of a record through a flow, with its seq
//! s/<order key>              furthest order status written back for that order
//! e/<record id>              fields handoff itself wrote to a CRM record (echo detection)
//! p/<connector>[\0<order>]    a status poller's cursor, and milestones emitted per order (sync/poll.rs)
//! r/<record id>\0<id u64 BE>  the jobs of a record (CRM id, order key, id in the target), for search
//! ```

use super::job::JobId;

pub const CURSOR: &[u8] = b"c";
pub const NEXT_ID: &[u8] = b"n";
pub const CLEAN: &[u8] = b"k";
pub const JOB: &[u8] = b"j/";
pub const OPEN: &[u8] = b"o/";
pub const ATTEMPT: &[u8] = b"a/";
pub const XREF: &[u8] = b"x/";
pub const XREF_BACK: &[u8] = b"y/";
pub const VERSION: &[u8] = b"v/";
pub const STATUS: &[u8] = b"s/";
pub const ECHO: &[u8] = b"e/";
pub const POLL: &[u8] = b"p/";
pub const RECORD: &[u8] = b"r/";

pub fn job(id: JobId) -> Vec<u8> {
    [JOB, &id.to_be_bytes()].concat()
}

pub fn open(id: JobId) -> Vec<u8> {
    [OPEN, &id.to_be_bytes()].concat()
}

pub fn attempt(id: JobId, n: u32) -> Vec<u8> {
    [ATTEMPT, &id.to_be_bytes(), &n.to_be_bytes()].concat()
}

pub fn attempts(id: JobId) -> Vec<u8> {
    [ATTEMPT, &id.to_be_bytes()].concat()
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

/// The job id at the end of a `j/`, `o/` key.
pub fn id_of(key: &[u8]) -> JobId {
    let bytes: [u8; 8] = key[2..10].try_into().expect("job keys hold a u64");
    JobId::from_be_bytes(bytes)
}
