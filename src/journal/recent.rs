//! The newest routable events, parsed, kept in memory so that the router and the workers do not
//! parse again what ingest parsed a moment ago.
//!
//! Ingest hands each envelope to the committer with its encoded record; once the record is on
//! disk, the committer puts the parsed envelope here (before it wakes the router). The router
//! routes it and a worker maps it without reading or decoding the journal record, as long as
//! they keep up; once they fall further behind than [`KEPT`] events, they read the record back
//! as before. The journal stays the truth: what is here is only ever a copy of a committed
//! record, without its raw body (nobody on the delivery path needs it).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use crate::envelope::Envelope;

/// Events kept (a parsed 2 KB opportunity takes ~5 KB: ~10 MB at most).
pub const KEPT: usize = 2048;

#[derive(Default)]
pub struct Recent {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    by_seq: HashMap<u64, Arc<Envelope>>,
    /// Seqs in the order they came, oldest first (evicted first).
    order: VecDeque<u64>,
}

impl Recent {
    /// Keeps `envelope` (its raw body dropped) as the committed record `seq`.
    pub fn insert(&self, seq: u64, envelope: Arc<Envelope>) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        while inner.order.len() >= KEPT {
            if let Some(old) = inner.order.pop_front() {
                inner.by_seq.remove(&old);
            }
        }
        inner.order.push_back(seq);
        inner.by_seq.insert(seq, envelope);
    }

    pub fn get(&self, seq: u64) -> Option<Arc<Envelope>> {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.by_seq.get(&seq).cloned()
    }
}

/// The envelope as the delivery path keeps it: everything but the raw body.
pub fn without_raw_body(mut envelope: Envelope) -> Envelope {
    envelope.raw_body = String::new();
    envelope
}

#[cfg(test)]
mod tests {
    use super::*;

    fn envelope(id: &str) -> Arc<Envelope> {
        Arc::new(Envelope {
            id: id.into(),
            source: "crm".into(),
            event_type: Some("opportunity.won".into()),
            ignored: false,
            object: None,
            object_id: None,
            version: None,
            signed_at: None,
            received_at: chrono::Utc::now(),
            raw_body: String::new(),
            data: serde_json::json!({ "id": id }),
            data_is_raw_body: false,
        })
    }

    #[test]
    fn keeps_the_newest_events_and_forgets_the_oldest() {
        let recent = Recent::default();
        for seq in 1..=(KEPT as u64 + 10) {
            recent.insert(seq, envelope(&seq.to_string()));
        }
        for seq in 1..=10 {
            assert!(recent.get(seq).is_none(), "seq {seq} should be evicted");
        }
        for seq in [11, 500, KEPT as u64 + 10] {
            assert_eq!(recent.get(seq).unwrap().id, seq.to_string());
        }
        assert!(recent.get(KEPT as u64 + 11).is_none());
    }
}
