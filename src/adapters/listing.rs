//! What a connector's `list` operation answers, for reconciliation: one page of records with
//! their ids, natural keys and versions (and the fields it read, for the deep pass).

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One record as a system lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Listed {
    /// The system's own id for it.
    pub id: String,
    /// The key handoff matches it by (a target's copy of the CRM id; a source's own id).
    pub key: Option<String>,
    /// When it last changed (or a sequence), as the system reports it.
    pub version: Option<String>,
    /// Inactive (archived) records are listed too.
    pub active: bool,
    /// The record's fields: a source's as its events carry them, a target's named as the
    /// mapping's document names them.
    pub fields: Value,
}

/// One page, and where the next starts (none: the listing is complete).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Listing {
    pub items: Vec<Listed>,
    pub next: Option<String>,
}
