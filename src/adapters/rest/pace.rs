//! A connector's request rate limit (`rate_limit: { per_second, burst }`): each request takes
//! the next free slot and waits for it, so a burst of deliveries is spread out instead of being
//! answered 429 by the target (GCRA: one slot every `1/per_second`, `burst` slots ahead at most).

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

pub struct Pace {
    interval: Duration,
    /// How far ahead of now the next slot may be without waiting.
    tolerance: Duration,
    /// When the next slot is free (the "theoretical arrival time").
    next: Mutex<Option<Instant>>,
}

impl Pace {
    pub fn new(per_second: f64, burst: u32) -> Pace {
        let interval = Duration::from_secs_f64(1.0 / per_second);
        Pace {
            interval,
            tolerance: interval * burst.saturating_sub(1),
            next: Mutex::new(None),
        }
    }

    /// Waits for this request's slot.
    pub async fn wait(&self) {
        let now = Instant::now();
        let start = {
            let mut next = self.next.lock().expect("pace lock");
            let slot = next.map_or(now, |at| at.max(now));
            *next = Some(slot + self.interval);
            slot
        };
        let ready = start.checked_sub(self.tolerance).unwrap_or(now);
        if ready > now {
            tokio::time::sleep_until(ready).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn requests_beyond_the_burst_are_spread_at_the_rate() {
        let pace = Pace::new(10.0, 5);
        let begin = Instant::now();
        let mut at = Vec::new();
        for _ in 0..25 {
            pace.wait().await;
            at.push(begin.elapsed());
        }
        // The first five go at once; then one every 100 ms: 20 more take 2 s.
        assert!(at[4] < Duration::from_millis(1), "{at:?}");
        assert!(at[5] >= Duration::from_millis(99), "{at:?}");
        assert!(at[24] >= Duration::from_millis(1999) && at[24] < Duration::from_millis(2100));
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_connector_gets_its_burst_back() {
        let pace = Pace::new(2.0, 2);
        pace.wait().await;
        pace.wait().await;
        tokio::time::sleep(Duration::from_secs(5)).await;
        let begin = Instant::now();
        pace.wait().await;
        pace.wait().await;
        assert!(begin.elapsed() < Duration::from_millis(1));
        pace.wait().await;
        assert!(begin.elapsed() >= Duration::from_millis(499));
    }
}
