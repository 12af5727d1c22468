//! A circuit breaker per connector: after repeated transient failures the connector pauses,
//! then lets one delivery through as a probe; a rate limit pauses it until the target's
//! `Retry-After`, then restarts it the same way. Other connectors keep flowing.
//!
//! The open period grows per failed probe only: failures of requests that were already in
//! flight when the circuit opened change nothing. Every state leads back to a probe by itself,
//! so no outcome leaves a connector unable to deliver without an operator.

use crate::adapters::connector::BreakerSpec;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Circuit {
    Closed {
        failures: u32,
    },
    /// Paused until `until_ms` after failures; `open_ms` is this opening's length (it doubles
    /// per failed probe).
    Open {
        until_ms: i64,
        open_ms: i64,
    },
    /// Paused until `until_ms` because the target asked (429); `wait_ms` is the last wait,
    /// doubled when the target asks again without saying how long.
    RateLimited {
        until_ms: i64,
        wait_ms: i64,
        open_ms: i64,
    },
    /// One probe is out; the others wait for its result.
    HalfOpen {
        open_ms: i64,
        wait_ms: i64,
    },
}

/// Whether a worker may lease a job now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    Go,
    /// Go, as the probe: report its result with `probe: true`, then [`Breaker::probe_done`].
    Probe,
    WaitUntil(i64),
    /// A probe is out: wait for its result.
    WaitForProbe,
}

/// The first wait after a 429 that says nothing about how long.
const FIRST_LIMIT_WAIT_MS: i64 = 1000;

#[derive(Debug)]
pub struct Breaker {
    spec: BreakerSpec,
    pub circuit: Circuit,
}

impl Breaker {
    pub fn new(spec: BreakerSpec) -> Breaker {
        Breaker {
            spec,
            circuit: Circuit::Closed { failures: 0 },
        }
    }

    fn base_ms(&self) -> i64 {
        ms(self.spec.open_secs)
    }

    fn max_ms(&self) -> i64 {
        ms(self.spec.max_open_secs).max(self.base_ms())
    }

    pub fn admit(&mut self, now: i64) -> Admit {
        match self.circuit {
            Circuit::Closed { .. } => Admit::Go,
            Circuit::Open { until_ms, open_ms } if now >= until_ms => {
                self.circuit = Circuit::HalfOpen {
                    open_ms,
                    wait_ms: 0,
                };
                Admit::Probe
            }
            Circuit::RateLimited {
                until_ms,
                wait_ms,
                open_ms,
            } if now >= until_ms => {
                self.circuit = Circuit::HalfOpen { open_ms, wait_ms };
                Admit::Probe
            }
            Circuit::Open { until_ms, .. } | Circuit::RateLimited { until_ms, .. } => {
                Admit::WaitUntil(until_ms)
            }
            Circuit::HalfOpen { .. } => Admit::WaitForProbe,
        }
    }

    /// A delivery got through (or failed for reasons that say the target is up); returns true
    /// when this closed the circuit.
    pub fn success(&mut self) -> bool {
        let was_closed = matches!(self.circuit, Circuit::Closed { .. });
        self.circuit = Circuit::Closed { failures: 0 };
        !was_closed
    }

    /// A transient failure; `probe` says whether it answered the probe. Returns true when this
    /// opened the circuit (or kept it open after a failed probe).
    pub fn failure(&mut self, now: i64, probe: bool) -> bool {
        let open_ms = match self.circuit {
            Circuit::Closed { failures } if failures + 1 < self.spec.failures => {
                self.circuit = Circuit::Closed {
                    failures: failures + 1,
                };
                return false;
            }
            Circuit::Closed { .. } => self.base_ms(),
            Circuit::HalfOpen { open_ms, .. } if probe => open_ms
                .saturating_mul(2)
                .clamp(self.base_ms(), self.max_ms()),
            // In flight before the circuit opened: says nothing new about the target.
            Circuit::HalfOpen { .. } | Circuit::Open { .. } | Circuit::RateLimited { .. } => {
                return false;
            }
        };
        self.circuit = Circuit::Open {
            until_ms: now.saturating_add(open_ms),
            open_ms,
        };
        true
    }

    /// The target asked to slow down: the whole connector waits `asked_ms` (or, when the
    /// target did not say, 1 s doubling per 429 in a row up to the longest opening). Returns
    /// when it goes on.
    pub fn rate_limited(&mut self, now: i64, asked_ms: Option<i64>) -> i64 {
        let (last_wait, open_ms, until) = match self.circuit {
            Circuit::Closed { .. } => (0, self.base_ms(), now),
            Circuit::Open {
                until_ms, open_ms, ..
            } => (0, open_ms, until_ms),
            Circuit::RateLimited {
                until_ms,
                wait_ms,
                open_ms,
            } => (wait_ms, open_ms, until_ms),
            Circuit::HalfOpen { open_ms, wait_ms } => (wait_ms, open_ms, now),
        };
        let wait_ms = asked_ms.unwrap_or_else(|| {
            last_wait
                .saturating_mul(2)
                .clamp(FIRST_LIMIT_WAIT_MS, self.max_ms())
        });
        let until_ms = until.max(now.saturating_add(wait_ms));
        self.circuit = Circuit::RateLimited {
            until_ms,
            wait_ms,
            open_ms,
        };
        until_ms
    }

    /// The probe's job ended without an answer from the target (held, parked, skipped, or the
    /// mapping refused it): the next job probes instead.
    pub fn probe_done(&mut self, now: i64) {
        if let Circuit::HalfOpen { open_ms, .. } = self.circuit {
            self.circuit = Circuit::Open {
                until_ms: now,
                open_ms,
            };
        }
    }

    pub fn describe(&self) -> &'static str {
        match self.circuit {
            Circuit::Closed { .. } => "closed",
            Circuit::Open { .. } => "open",
            Circuit::RateLimited { .. } => "rate_limited",
            Circuit::HalfOpen { .. } => "half_open",
        }
    }
}

fn ms(secs: u64) -> i64 {
    i64::try_from(secs.saturating_mul(1000)).unwrap_or(i64::MAX / 4)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker() -> Breaker {
        Breaker::new(BreakerSpec {
            failures: 3,
            open_secs: 10,
            max_open_secs: 25,
        })
    }

    #[test]
    fn opens_after_repeated_failures_probes_and_backs_off_per_failed_probe() {
        let mut breaker = breaker();
        assert!(!breaker.failure(0, false));
        assert!(!breaker.failure(0, false));
        assert!(breaker.failure(0, false));
        assert_eq!(breaker.admit(5_000), Admit::WaitUntil(10_000));
        assert_eq!(breaker.admit(10_000), Admit::Probe);
        assert_eq!(breaker.admit(10_001), Admit::WaitForProbe);
        assert!(breaker.failure(10_002, true));
        assert_eq!(breaker.admit(10_003), Admit::WaitUntil(30_002));
        assert_eq!(breaker.admit(30_002), Admit::Probe);
        breaker.failure(30_003, true);
        // Doubling stops at the cap.
        assert_eq!(breaker.admit(30_004), Admit::WaitUntil(55_003));
        assert_eq!(breaker.admit(55_003), Admit::Probe);
        assert!(
            breaker.success(),
            "a probe that succeeds closes the circuit"
        );
        assert_eq!(breaker.admit(55_004), Admit::Go);
        assert_eq!(breaker.describe(), "closed");
        assert!(!breaker.success());
    }

    #[test]
    fn failures_in_flight_when_the_circuit_opened_do_not_lengthen_it() {
        let mut breaker = breaker();
        for _ in 0..3 {
            breaker.failure(0, false);
        }
        // Thirteen more requests that were already out fail within 40 ms.
        for n in 0..13 {
            assert!(!breaker.failure(n * 3, false));
        }
        assert_eq!(breaker.admit(1), Admit::WaitUntil(10_000));
        assert_eq!(breaker.admit(10_000), Admit::Probe);
        // A late failure of an old request while the probe is out changes nothing either.
        assert!(!breaker.failure(10_001, false));
        assert_eq!(breaker.admit(10_002), Admit::WaitForProbe);
    }

    #[test]
    fn a_probe_answered_429_waits_its_retry_after_and_probes_again() {
        let mut breaker = breaker();
        for _ in 0..3 {
            breaker.failure(0, false);
        }
        assert_eq!(breaker.admit(10_000), Admit::Probe);
        assert_eq!(breaker.rate_limited(10_010, Some(3_000)), 13_010);
        assert_eq!(breaker.describe(), "rate_limited");
        assert_eq!(breaker.admit(12_000), Admit::WaitUntil(13_010));
        assert_eq!(breaker.admit(13_010), Admit::Probe);
        assert!(breaker.success());
        assert_eq!(breaker.admit(13_011), Admit::Go);
    }

    #[test]
    fn a_rate_limit_pauses_the_whole_connector_and_backs_off_when_unsaid() {
        let mut breaker = breaker();
        assert_eq!(breaker.rate_limited(0, None), 1_000);
        assert_eq!(breaker.admit(500), Admit::WaitUntil(1_000));
        assert_eq!(breaker.admit(1_000), Admit::Probe);
        assert_eq!(breaker.rate_limited(1_001, None), 3_001, "doubles: 2 s");
        // Another request that was in flight gets a 429 too: the pause is not cut short.
        assert_eq!(breaker.rate_limited(1_100, Some(100)), 3_001);
        assert_eq!(breaker.admit(3_001), Admit::Probe);
        assert!(breaker.success());
    }

    #[test]
    fn a_probe_that_never_reached_the_target_hands_the_probe_on() {
        let mut breaker = breaker();
        for _ in 0..3 {
            breaker.failure(0, false);
        }
        assert_eq!(breaker.admit(10_000), Admit::Probe);
        breaker.probe_done(10_005);
        assert_eq!(breaker.admit(10_006), Admit::Probe);
        // After a closed circuit, probe_done changes nothing.
        breaker.success();
        breaker.probe_done(10_007);
        assert_eq!(breaker.admit(10_008), Admit::Go);
    }
}
