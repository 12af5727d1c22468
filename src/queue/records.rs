//! What sync remembers besides jobs: cross-references, the last applied version of each record,
//! the furthest order status, what handoff wrote to CRM records (for echo detection), and the
//! status pollers' cursors. A settle carries its [`Effect`]s, which the backend stores with it.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::journal::Position;

/// A cross-reference: a CRM record and the id it has in a target system.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
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
    /// A digest of the document delivered, for flows with a `reconcile:` block (it tells an
    /// edit in the target from a document the mapping now makes differently); none for other
    /// flows and from releases before it was kept.
    #[serde(default)]
    pub digest: Option<u64>,
}

/// Fields handoff wrote to a CRM record, with their values (every write-back's, until the CRM
/// changes them).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Echo {
    pub fields: serde_json::Map<String, Value>,
    pub at_ms: i64,
}

/// What a successful delivery leaves behind, stored with the job's settle.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "effect", rename_all = "snake_case")]
pub enum Effect {
    Xref(Xref),
    Applied {
        flow: String,
        record: String,
        applied: Applied,
    },
    Status {
        order: String,
        status: String,
    },
    Echo {
        record: String,
        echo: Echo,
    },
}
