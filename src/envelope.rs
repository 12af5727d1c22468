//! The canonical envelope: one accepted event as it is kept in the journal.
//!
//! Ingest builds it after the signature checked out; the queue and the dashboard read it. It keeps
//! the raw body for audit and replay next to the parsed data.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    /// The sender's event id; dedupe is on (source, id).
    pub id: String,
    /// The configured source name, as in `/hooks/{source}`.
    pub source: String,
    /// `opportunity.won`, `account.updated`, …; `None` when no rule matched.
    pub event_type: Option<String>,
    /// No rule typed it, or no mapping handles its type: answered 200 and only kept as a record.
    pub ignored: bool,
    /// The CRM object, e.g. `Opportunity`.
    pub object: Option<String>,
    /// The record id in the CRM.
    pub object_id: Option<String>,
    /// The record's version (modified time or sequence) for ordering, as text.
    pub version: Option<String>,
    /// When the sender signed it (unix seconds), for schemes with a timestamp.
    pub signed_at: Option<i64>,
    pub received_at: DateTime<Utc>,
    /// The request body as received (for batches, the whole batch).
    pub raw_body: String,
    /// This event's parsed data.
    pub data: Value,
    /// `data` is exactly the parsed `raw_body` (a single JSON event), so storage keeps the body
    /// only once.
    #[serde(skip)]
    pub data_is_raw_body: bool,
}

impl Envelope {
    /// No flow cares about it: answered 200 and kept only as a record.
    pub fn is_ignored(&self) -> bool {
        self.ignored
    }
}
