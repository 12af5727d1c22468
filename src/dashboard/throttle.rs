//! Login throttling: wrong passwords are counted per login name and per client address; after a
//! few, each further try must wait a delay that doubles per failure (1 s … 15 min). A try that
//! comes too early is answered 429 with `Retry-After`, without checking the password, and
//! logged. A success clears the name's count; counts are forgotten after a quiet quarter hour.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Failures allowed before delays start.
const FREE: u32 = 5;
/// The longest delay.
const MAX_DELAY: Duration = Duration::from_secs(15 * 60);
/// Keys remembered at most (the oldest quiet ones go first).
const KEPT: usize = 10_000;

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    last: Instant,
}

impl Failures {
    /// When the next try is allowed.
    fn next_allowed(&self) -> Instant {
        match self.count.checked_sub(FREE) {
            None => self.last,
            Some(over) => {
                let delay = Duration::from_secs(1u64 << over.min(20)).min(MAX_DELAY);
                self.last + delay
            }
        }
    }
}

#[derive(Default)]
pub struct Throttle {
    failures: Mutex<HashMap<String, Failures>>,
}

impl Throttle {
    /// How long the caller must still wait before trying `keys`, if at all.
    pub fn wait(&self, keys: &[String], now: Instant) -> Option<Duration> {
        let failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        keys.iter()
            .filter_map(|key| failures.get(key))
            .map(Failures::next_allowed)
            .max()
            .filter(|at| *at > now)
            .map(|at| at - now)
    }

    pub fn failed(&self, keys: &[String], now: Instant) {
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        if failures.len() >= KEPT {
            failures.retain(|_, f| now.duration_since(f.last) < MAX_DELAY);
        }
        for key in keys {
            let entry = failures.entry(key.clone()).or_insert(Failures {
                count: 0,
                last: now,
            });
            if now.duration_since(entry.last) >= MAX_DELAY {
                entry.count = 0;
            }
            entry.count += 1;
            entry.last = now;
        }
    }

    pub fn succeeded(&self, name_key: &str) {
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        failures.remove(name_key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_per_failure_after_a_few_and_a_success_clears_the_name() {
        let throttle = Throttle::default();
        let keys = ["user:ops".to_owned(), "addr:10.0.0.7".to_owned()];
        let start = Instant::now();
        for _ in 0..FREE {
            assert_eq!(throttle.wait(&keys, start), None);
            throttle.failed(&keys, start);
        }
        // Five wrong: the next try waits 1 s, then 2 s, 4 s…
        assert_eq!(throttle.wait(&keys, start), Some(Duration::from_secs(1)));
        let later = start + Duration::from_secs(1);
        throttle.failed(&keys, later);
        assert_eq!(throttle.wait(&keys, later), Some(Duration::from_secs(2)));
        // Another name from the same address waits too; the same name from elsewhere as well.
        let other_name = ["user:admin".to_owned(), "addr:10.0.0.7".to_owned()];
        assert!(throttle.wait(&other_name, later).is_some());
        let elsewhere = ["user:ops".to_owned(), "addr:10.9.9.9".to_owned()];
        assert!(throttle.wait(&elsewhere, later).is_some());
        throttle.succeeded("user:ops");
        assert_eq!(throttle.wait(&elsewhere, later), None);
        // A quiet quarter hour forgets.
        let quiet = later + MAX_DELAY;
        assert_eq!(throttle.wait(&other_name, quiet), None);
    }
}
