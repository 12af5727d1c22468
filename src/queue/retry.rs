//! When a failed delivery runs again: a persisted schedule with full jitter, `Retry-After`
//! honoured up to a cap, and a limit after which the job is a dead letter.

use std::time::Duration;

use serde::Deserialize;

/// The retry policy of a connector (`[connectors.<name>.retry]` overrides it).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryPolicy {
    /// Delay before each retry, in seconds; the job is dead after the last. Each delay is drawn
    /// uniformly from zero to the step (full jitter).
    pub schedule_secs: Vec<u64>,
    /// The longest `Retry-After` honoured; a longer one is cut to this.
    pub max_retry_after_secs: u64,
}

impl Default for RetryPolicy {
    /// Standard Webhooks' schedule: 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 14 h, 20 h, 24 h
    /// (about three days in all).
    fn default() -> Self {
        RetryPolicy {
            schedule_secs: vec![5, 300, 1800, 7200, 18000, 36000, 50400, 72000, 86400],
            max_retry_after_secs: 3600,
        }
    }
}

impl RetryPolicy {
    /// The delay before the retry that follows attempt `attempts` (1 = the first attempt), or
    /// `None` when the schedule is used up. `retry_after` is what the target asked for.
    pub fn delay(
        &self,
        attempts: u32,
        retry_after: Option<Duration>,
        jitter: impl FnOnce(u64) -> u64,
    ) -> Option<Duration> {
        let step = *self
            .schedule_secs
            .get(usize::try_from(attempts).ok()?.checked_sub(1)?)?;
        if let Some(asked) = retry_after {
            return Some(asked.min(Duration::from_secs(self.max_retry_after_secs)));
        }
        let step_ms = step.saturating_mul(1000);
        Some(Duration::from_millis(jitter(step_ms)))
    }
}

/// Full jitter: uniform in `0..=max`.
pub fn full_jitter(max: u64) -> u64 {
    fastrand::u64(0..=max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_follow_the_schedule_with_jitter_and_end() {
        let policy = RetryPolicy::default();
        let top = |max| max;
        assert_eq!(policy.delay(1, None, top), Some(Duration::from_secs(5)));
        assert_eq!(policy.delay(2, None, top), Some(Duration::from_secs(300)));
        assert_eq!(policy.delay(9, None, top), Some(Duration::from_secs(86400)));
        assert_eq!(policy.delay(10, None, top), None);
        let total: u64 = policy.schedule_secs.iter().sum();
        assert!(
            (70 * 3600..=84 * 3600).contains(&total),
            "about three days: {total}"
        );
        for _ in 0..100 {
            let delay = policy.delay(2, None, full_jitter).unwrap();
            assert!(delay <= Duration::from_secs(300));
        }
    }

    #[test]
    fn retry_after_is_honoured_up_to_the_cap() {
        let policy = RetryPolicy::default();
        let asked = Some(Duration::from_secs(42));
        assert_eq!(policy.delay(1, asked, |_| 0), Some(Duration::from_secs(42)));
        let too_long = Some(Duration::from_secs(86400));
        assert_eq!(
            policy.delay(1, too_long, |_| 0),
            Some(Duration::from_secs(3600))
        );
        assert_eq!(policy.delay(10, asked, |_| 0), None);
    }
}
