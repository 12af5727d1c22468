//! The dedupe index: which (source, event id) pairs the journal holds within the window.
//!
//! It lives in memory, owned by the committer thread, and is derived from the journal: on open,
//! the records received within the window are read back (`rebuild`), so a crash loses nothing and
//! nothing else has to be written on the acknowledgement path. Entries older than the window are
//! dropped as the committer goes (`expire`, at most once a minute).
//!
//! ```text
//! key: source 0x00 event id  ->  (seq, received unix secs)
//! ```

use std::collections::HashMap;
use std::time::{Duration, Instant};

const EXPIRE_EVERY: Duration = Duration::from_secs(60);

pub struct Dedupe {
    entries: HashMap<Box<[u8]>, (u64, i64)>,
    window_secs: i64,
    last_expiry: Instant,
}

impl Dedupe {
    pub fn new(window_secs: i64) -> Self {
        Dedupe {
            entries: HashMap::new(),
            window_secs,
            last_expiry: Instant::now(),
        }
    }

    pub fn window_secs(&self) -> i64 {
        self.window_secs
    }

    /// The first copy's seq if `key` was seen within the window before `received`.
    pub fn lookup(&self, key: &[u8], received: i64) -> Option<u64> {
        let (seq, seen) = self.entries.get(key)?;
        (received - seen <= self.window_secs).then_some(*seq)
    }

    pub fn insert(&mut self, key: &[u8], seq: u64, received: i64) {
        self.entries.insert(key.into(), (seq, received));
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Drops entries older than the window, at most once per `EXPIRE_EVERY` unless forced.
    pub fn expire(&mut self, now: i64, force: bool) -> usize {
        if !force && self.last_expiry.elapsed() < EXPIRE_EVERY {
            return 0;
        }
        self.last_expiry = Instant::now();
        let before = self.entries.len();
        let window = self.window_secs;
        self.entries.retain(|_, (_, seen)| now - *seen <= window);
        before - self.entries.len()
    }
}

pub fn key(source: &str, id: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(source.len() + 1 + id.len());
    key.extend_from_slice(source.as_bytes());
    key.push(0);
    key.extend_from_slice(id.as_bytes());
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookups_respect_the_window_and_expiry_drops_old_entries() {
        let mut d = Dedupe::new(100);
        d.insert(&key("crm", "a"), 1, 1000);
        d.insert(&key("crm", "b"), 2, 1090);
        assert_eq!(d.lookup(&key("crm", "a"), 1100), Some(1));
        assert_eq!(d.lookup(&key("crm", "a"), 1101), None);
        assert_eq!(d.lookup(&key("other", "a"), 1000), None);
        assert_eq!(d.expire(1150, true), 1);
        assert_eq!(d.len(), 1);
    }
}
