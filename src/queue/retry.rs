//! When a failed delivery runs again: a persisted schedule with full jitter, and a retry
//! budget that is a span of time, after which the job is a dead letter. Waiting for a rate
//! limit is not a failure: it neither takes a step nor spends the budget (sync/breaker.rs
//! pauses the whole connector instead).

use std::time::Duration;

use serde::Deserialize;

/// The retry policy of a connector (`[connectors.<name>.retry]` overrides it).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryPolicy {
    /// Delay before each retry, in seconds; after the last step, the last step repeats. Each
    /// delay is drawn uniformly from zero to the step (full jitter).
    pub schedule_secs: Vec<u64>,
    /// How long a job may go on failing, from its first failure, before it is a dead letter
    /// (`retries_exhausted`). Default: the span of the schedule.
    pub give_up_after_secs: Option<u64>,
    /// The longest `Retry-After` honoured; a longer one is cut to this.
    pub max_retry_after_secs: u64,
}

impl Default for RetryPolicy {
    /// Standard Webhooks' schedule: 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 14 h, 20 h, 24 h
    /// (about three days in all).
    fn default() -> Self {
        RetryPolicy {
            schedule_secs: vec![5, 300, 1800, 7200, 18000, 36000, 50400, 72000, 86400],
            give_up_after_secs: None,
            max_retry_after_secs: 3600,
        }
    }
}

impl RetryPolicy {
    /// The delay before the retry that follows the job's `failures`-th failure (1 = first).
    pub fn delay(&self, failures: u32, jitter: impl FnOnce(u64) -> u64) -> Duration {
        let at = usize::try_from(failures.max(1) - 1).unwrap_or(usize::MAX);
        let step = self
            .schedule_secs
            .get(at)
            .or(self.schedule_secs.last())
            .copied()
            .unwrap_or(1);
        Duration::from_millis(jitter(step.saturating_mul(1000)))
    }

    /// The retry budget: how long a job may go on failing.
    pub fn budget(&self) -> Duration {
        Duration::from_secs(
            self.give_up_after_secs
                .unwrap_or_else(|| self.schedule_secs.iter().sum()),
        )
    }

    /// Whether a job failing since `since_ms` has used up its budget at `now_ms`.
    pub fn gives_up(&self, since_ms: i64, now_ms: i64) -> bool {
        let spent = u128::try_from(now_ms.saturating_sub(since_ms)).unwrap_or(0);
        spent >= self.budget().as_millis()
    }

    /// How long to honour a target's `Retry-After`.
    pub fn retry_after(&self, asked: Duration) -> Duration {
        asked.min(Duration::from_secs(self.max_retry_after_secs))
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
    fn steps_follow_the_schedule_with_jitter_and_the_last_repeats() {
        let policy = RetryPolicy::default();
        let top = |max| max;
        assert_eq!(policy.delay(1, top), Duration::from_secs(5));
        assert_eq!(policy.delay(2, top), Duration::from_secs(300));
        assert_eq!(policy.delay(9, top), Duration::from_secs(86400));
        assert_eq!(policy.delay(40, top), Duration::from_secs(86400));
        for _ in 0..100 {
            assert!(policy.delay(2, full_jitter) <= Duration::from_secs(300));
        }
    }

    #[test]
    fn the_budget_is_a_span_of_time_about_three_days_by_default() {
        let policy = RetryPolicy::default();
        let budget = policy.budget().as_secs();
        assert!((70 * 3600..=84 * 3600).contains(&budget), "{budget}");
        let budget_ms = i64::try_from(policy.budget().as_millis()).unwrap();
        assert!(!policy.gives_up(0, 2 * 86_400_000));
        assert!(!policy.gives_up(0, budget_ms - 1));
        assert!(policy.gives_up(0, budget_ms));
        let own = RetryPolicy {
            give_up_after_secs: Some(60),
            ..RetryPolicy::default()
        };
        assert!(!own.gives_up(1_000, 60_999));
        assert!(own.gives_up(1_000, 61_000));
    }

    #[test]
    fn retry_after_is_honoured_up_to_the_cap() {
        let policy = RetryPolicy::default();
        let asked = Duration::from_secs(42);
        assert_eq!(policy.retry_after(asked), asked);
        assert_eq!(
            policy.retry_after(Duration::from_secs(86400)),
            Duration::from_secs(3600)
        );
    }
}
