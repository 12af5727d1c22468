//! A job: one event to deliver through one flow, with its state and what happened to it.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use crate::journal::Position;

pub type JobId = u64;

/// Where a job is in its life. `Ready`, `Leased` and `Retrying` hold their place in the line of
/// their ordering key; `Parked` and `Held` step out of it until released; the last four are
/// settled (`Dead` until an operator retries, resubmits or skips it).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum State {
    Ready,
    Leased,
    Retrying,
    Parked,
    Held,
    Dead,
    Done,
    Skipped,
}

impl State {
    pub const ALL: [State; 8] = [
        State::Ready,
        State::Leased,
        State::Retrying,
        State::Parked,
        State::Held,
        State::Dead,
        State::Done,
        State::Skipped,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            State::Ready => "ready",
            State::Leased => "leased",
            State::Retrying => "retrying",
            State::Parked => "parked",
            State::Held => "held",
            State::Dead => "dead",
            State::Done => "done",
            State::Skipped => "skipped",
        }
    }

    pub fn parse(text: &str) -> Option<State> {
        State::ALL.into_iter().find(|s| s.as_str() == text)
    }

    /// Kept in the in-memory schedule (open jobs and dead letters), so listing by it is quick.
    pub fn is_held_in_memory(self) -> bool {
        self.is_open() || self == State::Dead
    }

    /// Still to be worked on by handoff (dead letters wait for a person, not for handoff).
    pub fn is_open(self) -> bool {
        matches!(
            self,
            State::Ready | State::Leased | State::Retrying | State::Parked | State::Held
        )
    }
}

/// Why a job is where it is: the last failure, or why it waits or was skipped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Reason {
    /// `fix_data`, `transient`, `dependency`, `hold`, `stale`, `echo`, … (groups dead letters).
    pub code: String,
    pub message: String,
}

impl Reason {
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Reason {
        Reason {
            code: code.into(),
            message: message.into(),
        }
    }
}

/// One job: its created record and its last state change in the queue log (embedded/record.rs).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Job {
    pub id: JobId,
    /// The journal record of the event, and where it is.
    pub seq: u64,
    pub at: Position,
    pub source: String,
    pub event_id: String,
    pub flow: String,
    pub connector: String,
    pub operation: String,
    /// Jobs with the same key run one at a time, in arrival order.
    pub order_key: String,
    /// The CRM (or ERP) record the event is about, and its version.
    pub object_id: Option<String>,
    pub version: Option<String>,
    pub state: State,
    pub attempts: u32,
    pub created_ms: i64,
    pub updated_ms: i64,
    /// When a retrying job runs again, a held one is rechecked, a parked one gives up.
    pub due_ms: Option<i64>,
    pub reason: Option<Reason>,
    /// (kind, CRM id) a parked job waits for.
    #[schema(value_type = Option<Vec<String>>, min_items = 2, max_items = 2)]
    pub waits_for: Option<(String, String)>,
    /// The last attempt may have taken effect: check before creating again.
    pub in_doubt: bool,
    /// How many times an operator resubmitted it (part of the idempotency key).
    pub resubmits: u32,
    /// An operator accepted the target's figures where they differ (`amount_mismatch`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub accepted: bool,
    /// Since when and how often it has failed (rate limits do not count): the retry budget.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failing: Option<Failing>,
    /// The event data as edited by an operator (or copied out of the journal before its
    /// segment was deleted); replaces the journaled data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub payload: Option<Value>,
    /// The mapping version that routed it.
    pub mapping_version: Option<String>,
    /// The id the target gave the record.
    pub external_id: Option<String>,
}

impl Job {
    /// The key the target sees on every attempt: same flow, record, version → same key.
    pub fn idempotency_key(&self) -> String {
        let record = self.object_id.as_deref().unwrap_or(&self.event_id);
        let version = match &self.version {
            Some(version) => version.clone(),
            None => format!("seq{}", self.seq),
        };
        let mut key = format!("{}:{record}:{version}", self.flow);
        if self.resubmits > 0 {
            key.push_str(&format!(":r{}", self.resubmits));
        }
        key
    }
}

/// A job's run of failures: how many (the step of the retry schedule) and since when (the
/// retry budget is a span of time from the first).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Failing {
    pub failures: u32,
    pub since_ms: i64,
}

/// One delivery attempt, stored with the state change it led to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Attempt {
    pub n: u32,
    pub started_ms: i64,
    pub duration_ms: u64,
    /// What was sent, e.g. `POST /api/customers (idempotency-key …)`; never a secret.
    pub request: String,
    /// Status and a cut-short body, or the error.
    pub response: String,
    /// The state the attempt led to, and why.
    pub outcome: State,
    pub reason: Option<Reason>,
}
