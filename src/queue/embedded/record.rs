//! The records of the queue log: how many records of its group follow it (u32 LE), one byte
//! for the kind, then the record: `created` and `changed` in the compact binary form
//! (compact.rs), the rare ones as JSON. A group is what one operation appends (a routed slice and its
//! cursor; a settle and the jobs it releases); replay applies whole groups only, so a torn
//! tail never leaves half an operation.
//!
//! ```text
//! c created   a job's fixed part: its journal record (seq, position), flow, connector,
//!             operation, ordering key, record id and version, first state   (~120 B)
//! s changed   a state change: state, attempts, due time, reason, dependency, in doubt,
//!             resubmits, id in the target, the previous change's position, the attempt
//!             that led to it with request and response cut short, and the effects of a
//!             delivery (cross-reference, applied version…)                   (~30–600 B)
//! C, S        the same as JSON, as release 2 wrote them (still read)
//! P payload   event data for a job: an operator's edit, or the event copied out of a
//!             journal segment that is being deleted
//! R cursor    where the router is in the journal (appended with the slice's created records)
//! O opened    the first record of each run: a group the crash cut short before it is dropped
//! ```

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::compact;
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
            Record::Created(r) => {
                out.push(b'c');
                return r.write(&mut compact::Out(out));
            }
            Record::Changed(r) => {
                out.push(b's');
                return r.write(&mut compact::Out(out));
            }
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
            b'c' => Record::Created(Created::read(&mut compact::In(json))?),
            b's' => Record::Changed(Changed::read(&mut compact::In(json))?),
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
    fn write(&self, out: &mut compact::Out) {
        out.u64(self.id);
        out.u64(self.seq);
        out.position(self.at);
        out.str(&self.source);
        out.str(&self.event_id);
        out.str(&self.flow);
        out.str(&self.connector);
        out.str(&self.operation);
        out.str(&self.order_key);
        out.opt_str(self.object_id.as_deref());
        out.opt_str(self.version.as_deref());
        out.i64(self.created_ms);
        out.opt_str(self.mapping_version.as_deref());
        out.state(self.state);
        out.reason(self.reason.as_ref());
        out.bool(self.copied);
    }

    fn read(input: &mut compact::In) -> Option<Created> {
        let created = Created {
            id: input.u64()?,
            seq: input.u64()?,
            at: input.position()?,
            source: input.str()?,
            event_id: input.str()?,
            flow: input.str()?,
            connector: input.str()?,
            operation: input.str()?,
            order_key: input.str()?,
            object_id: input.opt_str()?,
            version: input.opt_str()?,
            created_ms: input.i64()?,
            mapping_version: input.opt_str()?,
            state: input.state()?,
            reason: input.reason()?,
            copied: input.bool()?,
        };
        input.end().map(|()| created)
    }

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
    fn write(&self, out: &mut compact::Out) {
        out.u64(self.id);
        out.state(self.state);
        out.u64(self.attempts.into());
        out.i64(self.updated_ms);
        out.opt_i64(self.due_ms);
        out.reason(self.reason.as_ref());
        match &self.waits_for {
            None => out.bool(false),
            Some((kind, id)) => {
                out.bool(true);
                out.str(kind);
                out.str(id);
            }
        }
        out.bool(self.in_doubt);
        out.u64(self.resubmits.into());
        out.failing(self.failing);
        out.bool(self.accepted);
        out.opt_str(self.external_id.as_deref());
        out.opt_u64(self.prev);
        out.attempt(self.attempt.as_ref());
        out.effects(&self.effects);
    }

    fn read(input: &mut compact::In) -> Option<Changed> {
        let changed = Changed {
            id: input.u64()?,
            state: input.state()?,
            attempts: input.u32()?,
            updated_ms: input.i64()?,
            due_ms: input.opt_i64()?,
            reason: input.reason()?,
            waits_for: if input.bool()? {
                Some((input.str()?, input.str()?))
            } else {
                None
            },
            in_doubt: input.bool()?,
            resubmits: input.u32()?,
            failing: input.failing()?,
            accepted: input.bool()?,
            external_id: input.opt_str()?,
            prev: input.opt_u64()?,
            attempt: input.attempt()?,
            effects: input.effects()?,
        };
        input.end().map(|()| changed)
    }

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

    fn created() -> Created {
        Created {
            id: 123_456,
            seq: 99_999,
            at: Position {
                segment: 12,
                offset: 4_000_000,
            },
            source: "crm".into(),
            event_id: "evt_2f1c6a7e-5b1d-4c4e-9a0e-1f2d3c4b5a69".into(),
            flow: "opportunity_to_sales_order".into(),
            connector: "erp".into(),
            operation: "create_sales_order".into(),
            order_key: "opportunity_to_sales_order:006000000000123".into(),
            object_id: Some("006000000000123".into()),
            version: Some("2026-11-30T10:00:00Z".into()),
            created_ms: 1_764_000_000_000,
            mapping_version: Some("9f86d081884c7d65".into()),
            state: State::Ready,
            reason: Some(Reason::new("hold", "payment on hold")),
            copied: true,
        }
    }

    #[test]
    fn compact_records_round_trip_and_a_cut_one_does_not_decode() {
        let records = vec![Record::Created(created()), Record::Changed(done_change())];
        for bytes in group(records.clone()).iter().zip(records) {
            let (bytes, record) = bytes;
            assert_eq!(Record::decode(bytes).map(|(_, r)| r), Some(record));
            for len in 5..bytes.len() {
                assert_eq!(Record::decode(&bytes[..len]), None, "cut at {len}");
            }
        }
    }

    #[test]
    fn records_written_as_json_by_release_2_still_decode() {
        for (tag, record) in [
            (b'C', Record::Created(created())),
            (b'S', Record::Changed(done_change())),
        ] {
            let json = match &record {
                Record::Created(r) => serde_json::to_vec(r),
                Record::Changed(r) => serde_json::to_vec(r),
                _ => unreachable!(),
            };
            let mut bytes = vec![0, 0, 0, 0, tag];
            bytes.extend(json.unwrap());
            assert_eq!(Record::decode(&bytes), Some((0, record)));
        }
    }

    #[test]
    fn a_created_record_is_half_its_json_or_less() {
        let compact = group(vec![Record::Created(created())])[0].len();
        let json = serde_json::to_vec(&created()).unwrap().len();
        assert!(compact * 2 <= json, "{compact} B against {json} B of JSON");
    }

    fn done_change() -> Changed {
        Changed {
            id: 123_456,
            state: State::Done,
            attempts: 1,
            updated_ms: 1_764_000_000_000,
            due_ms: None,
            reason: None,
            waits_for: Some(("account".into(), "001".into())),
            in_doubt: false,
            resubmits: 0,
            failing: None,
            accepted: false,
            external_id: Some("SO-123456".into()),
            prev: Some(77 << 24 | 1_000),
            attempt: Some(Attempt {
                n: 1,
                started_ms: 1_764_000_000_000,
                duration_ms: 3,
                request: "POST /orders".into(),
                response: "201 {\"id\":\"SO-123456\"}".into(),
                outcome: State::Done,
                reason: None,
            }),
            effects: vec![Effect::Status {
                order: "006".into(),
                status: "confirmed".into(),
            }],
        }
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
        assert!(group(vec![Record::Changed(change)])[0].len() < 40);
    }
}
