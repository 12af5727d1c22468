//! The records of the queue log: how many records of its group follow it (u32 LE), one byte
//! for the kind, then JSON. A group is what one operation appends (a routed slice and its
//! cursor; a settle and the jobs it releases); replay applies whole groups only, so a torn
//! tail never leaves half an operation.
//!
//! ```text
//! C created   a job's fixed part: its journal record (seq, position), flow, connector,
//!             operation, ordering key, record id and version, first state   (~250 B)
//! S changed   a state change: state, attempts, due time, reason, dependency, in doubt,
//!             resubmits, id in the target, the previous change's position, and the attempt
//!             that led to it with request and response cut short                 (~100–600 B)
//! P payload   event data for a job: an operator's edit, or the event copied out of a
//!             journal segment that is being deleted
//! R cursor    where the router is in the journal (appended with the slice's created records)
//! O opened    the first record of each run: a group the crash cut short before it is dropped
//! ```

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::log::Pos;
use crate::journal::Position;
use crate::queue::job::Failing;
use crate::queue::records::Effect;
use crate::queue::{Attempt, Cursor, Job, JobId, Reason, State};

/// Longest request or response text kept with an attempt.
const ATTEMPT_TEXT: usize = 256;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Created {
    pub id: JobId,
    pub seq: u64,
    pub at: Position,
    pub source: String,
    pub event_id: String,
    pub flow: String,
    pub connector: String,
    pub operation: String,
    pub order_key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    pub created_ms: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mapping_version: Option<String>,
    pub state: State,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<Reason>,
    /// A copy of a job created earlier, written so that an old segment can go: it moves the
    /// job, and needs no cursor after it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub copied: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Changed {
    pub id: JobId,
    pub state: State,
    #[serde(default)]
    pub attempts: u32,
    pub updated_ms: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub due_ms: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<Reason>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waits_for: Option<(String, String)>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub in_doubt: bool,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub resubmits: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failing: Option<Failing>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub accepted: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_id: Option<String>,
    /// The job's previous change (its attempts are listed by following these).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prev: Option<Pos>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempt: Option<Attempt>,
    /// What the delivery left behind (cross-reference, version…): the queue log is where they
    /// are first written; sled gets them in batches (index.rs).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub effects: Vec<Effect>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Payload {
    pub id: JobId,
    pub data: Value,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    Created(Created),
    Changed(Changed),
    Payload(Payload),
    Cursor(Cursor),
    Opened,
}

/// The records of one group, encoded.
pub fn group(records: Vec<Record>) -> Vec<Vec<u8>> {
    let count = records.len();
    records
        .into_iter()
        .enumerate()
        .map(|(n, record)| {
            let following = u32::try_from(count - 1 - n).expect("groups are small");
            let mut out = following.to_le_bytes().to_vec();
            record.write(&mut out);
            out
        })
        .collect()
}

impl Record {
    fn write(&self, out: &mut Vec<u8>) {
        let (tag, json) = match self {
            Record::Created(r) => (b'C', serde_json::to_vec(r)),
            Record::Changed(r) => (b'S', serde_json::to_vec(r)),
            Record::Payload(r) => (b'P', serde_json::to_vec(r)),
            Record::Cursor(r) => (b'R', serde_json::to_vec(r)),
            Record::Opened => (b'O', Ok(b"{}".to_vec())),
        };
        out.push(tag);
        out.extend(json.expect("queue records serialize"));
    }

    /// A record, and how many records of its group follow it.
    pub fn decode(bytes: &[u8]) -> Option<(u32, Record)> {
        let (following, rest) = bytes.split_at_checked(4)?;
        let following = u32::from_le_bytes(following.try_into().ok()?);
        let (tag, json) = rest.split_first()?;
        let record = match tag {
            b'C' => Record::Created(serde_json::from_slice(json).ok()?),
            b'S' => Record::Changed(serde_json::from_slice(json).ok()?),
            b'P' => Record::Payload(serde_json::from_slice(json).ok()?),
            b'R' => Record::Cursor(serde_json::from_slice(json).ok()?),
            b'O' => Record::Opened,
            _ => return None,
        };
        Some((following, record))
    }
}

impl Created {
    pub fn of(job: &Job) -> Created {
        Created {
            id: job.id,
            seq: job.seq,
            at: job.at,
            source: job.source.clone(),
            event_id: job.event_id.clone(),
            flow: job.flow.clone(),
            connector: job.connector.clone(),
            operation: job.operation.clone(),
            order_key: job.order_key.clone(),
            object_id: job.object_id.clone(),
            version: job.version.clone(),
            created_ms: job.created_ms,
            mapping_version: job.mapping_version.clone(),
            state: job.state,
            reason: job.reason.clone(),
            copied: false,
        }
    }

    /// The job as it was created.
    pub fn job(self) -> Job {
        Job {
            id: self.id,
            seq: self.seq,
            at: self.at,
            source: self.source,
            event_id: self.event_id,
            flow: self.flow,
            connector: self.connector,
            operation: self.operation,
            order_key: self.order_key,
            object_id: self.object_id,
            version: self.version,
            state: self.state,
            attempts: 0,
            created_ms: self.created_ms,
            updated_ms: self.created_ms,
            due_ms: None,
            reason: self.reason,
            waits_for: None,
            in_doubt: false,
            resubmits: 0,
            failing: None,
            accepted: false,
            payload: None,
            mapping_version: self.mapping_version,
            external_id: None,
        }
    }
}

impl Changed {
    /// The change that brings a job to its present state; `prev` is its last change.
    pub fn of(
        job: &Job,
        prev: Option<Pos>,
        attempt: Option<Attempt>,
        effects: Vec<Effect>,
    ) -> Changed {
        Changed {
            id: job.id,
            state: job.state,
            attempts: job.attempts,
            updated_ms: job.updated_ms,
            due_ms: job.due_ms,
            reason: job.reason.clone(),
            waits_for: job.waits_for.clone(),
            in_doubt: job.in_doubt,
            resubmits: job.resubmits,
            failing: job.failing,
            accepted: job.accepted,
            external_id: job.external_id.clone(),
            prev,
            attempt: attempt.map(|mut attempt| {
                attempt.request = crate::adapters::cut(&attempt.request, ATTEMPT_TEXT);
                attempt.response = crate::adapters::cut(&attempt.response, ATTEMPT_TEXT);
                attempt
            }),
            effects,
        }
    }

    /// Applies the change to the job as created.
    pub fn apply(self, job: &mut Job) {
        job.state = self.state;
        job.attempts = self.attempts;
        job.updated_ms = self.updated_ms;
        job.due_ms = self.due_ms;
        job.reason = self.reason;
        job.waits_for = self.waits_for;
        job.in_doubt = self.in_doubt;
        job.resubmits = self.resubmits;
        job.failing = self.failing;
        job.accepted = self.accepted;
        job.external_id = self.external_id;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_round_trips_and_garbage_does_not_decode() {
        let records = [
            Record::Payload(Payload {
                id: 7,
                data: serde_json::json!({"Name": "Acme"}),
            }),
            Record::Cursor(Cursor {
                next_seq: 9,
                at: None,
            }),
            Record::Changed(Changed {
                id: 7,
                state: State::Retrying,
                attempts: 2,
                updated_ms: 5,
                due_ms: Some(10),
                reason: Some(Reason::new("transient", "503")),
                waits_for: None,
                in_doubt: true,
                resubmits: 0,
                failing: Some(Failing {
                    failures: 2,
                    since_ms: 3,
                }),
                accepted: true,
                external_id: None,
                prev: Some(1 << 30),
                attempt: None,
                effects: Vec::new(),
            }),
        ];
        let encoded = group(records.to_vec());
        for (n, (bytes, record)) in encoded.iter().zip(records).enumerate() {
            assert_eq!(Record::decode(bytes), Some((2 - n as u32, record)));
        }
        assert_eq!(Record::decode(b"\0\0\0\0Z{}"), None);
        assert_eq!(Record::decode(b""), None);
    }

    #[test]
    fn a_done_change_is_small() {
        let change = Changed {
            id: 123_456,
            state: State::Done,
            attempts: 1,
            updated_ms: 1_764_000_000_000,
            due_ms: None,
            reason: None,
            waits_for: None,
            in_doubt: false,
            resubmits: 0,
            failing: None,
            accepted: false,
            external_id: Some("SO-123456".into()),
            prev: None,
            attempt: None,
            effects: Vec::new(),
        };
        assert!(group(vec![Record::Changed(change)])[0].len() < 100);
    }
}
