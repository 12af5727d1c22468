//! A circuit breaker per connector: after repeated transient failures the connector pauses,
//! then lets one delivery through as a probe; other connectors keep flowing.

use crate::adapters::connector::BreakerSpec;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Circuit {
    Closed {
        failures: u32,
    },
    /// Paused until `until_ms`; `open_ms` is how long this opening lasts (it doubles).
    Open {
        until_ms: i64,
        open_ms: i64,
    },
    /// One probe is out; the others wait for its result.
    HalfOpen {
        open_ms: i64,
    },
}

/// Whether a worker may lease a job now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    Go,
    WaitUntil(i64),
    /// A probe is out: wait for its result.
    WaitForProbe,
}

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

    pub fn admit(&mut self, now: i64) -> Admit {
        match self.circuit {
            Circuit::Closed { .. } => Admit::Go,
            Circuit::Open { until_ms, open_ms } if now >= until_ms => {
                self.circuit = Circuit::HalfOpen { open_ms };
                Admit::Go
            }
            Circuit::Open { until_ms, .. } => Admit::WaitUntil(until_ms),
            Circuit::HalfOpen { .. } => Admit::WaitForProbe,
        }
    }

    /// A delivery got through (or failed for reasons that say the target is up).
    pub fn success(&mut self) {
        self.circuit = Circuit::Closed { failures: 0 };
    }

    /// A transient failure; returns true when this opened the circuit.
    pub fn failure(&mut self, now: i64) -> bool {
        let base = i64::try_from(self.spec.open_secs.saturating_mul(1000)).unwrap_or(i64::MAX);
        let max = i64::try_from(self.spec.max_open_secs.saturating_mul(1000)).unwrap_or(i64::MAX);
        let open_ms = match self.circuit {
            Circuit::Closed { failures } if failures + 1 < self.spec.failures => {
                self.circuit = Circuit::Closed {
                    failures: failures + 1,
                };
                return false;
            }
            Circuit::Closed { .. } => base,
            Circuit::HalfOpen { open_ms } | Circuit::Open { open_ms, .. } => {
                open_ms.saturating_mul(2).min(max.max(base))
            }
        };
        self.circuit = Circuit::Open {
            until_ms: now.saturating_add(open_ms),
            open_ms,
        };
        true
    }

    pub fn describe(&self) -> &'static str {
        match self.circuit {
            Circuit::Closed { .. } => "closed",
            Circuit::Open { .. } => "open",
            Circuit::HalfOpen { .. } => "half_open",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_repeated_failures_probes_and_backs_off() {
        let mut breaker = Breaker::new(BreakerSpec {
            failures: 3,
            open_secs: 10,
            max_open_secs: 25,
        });
        assert!(!breaker.failure(0));
        assert!(!breaker.failure(0));
        assert!(breaker.failure(0));
        assert_eq!(breaker.admit(5_000), Admit::WaitUntil(10_000));
        assert_eq!(breaker.admit(10_000), Admit::Go);
        assert_eq!(breaker.admit(10_001), Admit::WaitForProbe);
        assert!(breaker.failure(10_002));
        assert_eq!(breaker.admit(10_003), Admit::WaitUntil(30_002));
        assert_eq!(breaker.admit(30_002), Admit::Go);
        breaker.failure(30_003);
        // Doubling stops at the cap.
        assert_eq!(breaker.admit(30_004), Admit::WaitUntil(55_003));
        assert_eq!(breaker.admit(55_003), Admit::Go);
        breaker.success();
        assert_eq!(breaker.admit(55_004), Admit::Go);
        assert_eq!(breaker.describe(), "closed");
    }
}
