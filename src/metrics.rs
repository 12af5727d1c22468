//! Counters and latency histograms for Prometheus (`GET /metrics`) and the dashboard's
//! throughput chart. Labels stay low-cardinality: sources, flows and connectors come from the
//! configuration, outcomes from fixed lists; never a record id.

use std::collections::{BTreeMap, VecDeque};
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::Duration;

/// Upper bounds of the latency buckets, in seconds.
const BOUNDS: [f64; 13] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

#[derive(Debug, Default, Clone)]
struct Histogram {
    buckets: [u64; BOUNDS.len()],
    count: u64,
    sum: f64,
}

impl Histogram {
    fn observe(&mut self, took: Duration) {
        let secs = took.as_secs_f64();
        for (bucket, bound) in self.buckets.iter_mut().zip(BOUNDS) {
            if secs <= bound {
                *bucket += 1;
            }
        }
        self.count += 1;
        self.sum += secs;
    }
}

/// Delivered and failed attempts in one minute (for the last hour's chart).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct Minute {
    pub minute: i64,
    pub delivered: u64,
    pub failed: u64,
}

#[derive(Default)]
pub struct Metrics {
    /// (source, outcome) → ack latency.
    acks: Mutex<BTreeMap<(String, &'static str), Histogram>>,
    /// (flow, connector, outcome) → delivery attempt latency.
    deliveries: Mutex<BTreeMap<(String, String, &'static str), Histogram>>,
    minutes: Mutex<VecDeque<Minute>>,
    /// Settled attempts counted before this process started (`outcomes.json` in the data dir),
    /// and since when they are counted.
    earlier: Mutex<Totals>,
    /// Per flow: records per drift class in its last finished reconciliation run, and when the
    /// last successful run finished (ms).
    drift: Mutex<BTreeMap<String, Drift>>,
}

/// Records per drift class, and when the run that counted them finished (ms).
type Drift = (BTreeMap<&'static str, u64>, i64);

/// Where the totals are kept in the data dir.
pub const TOTALS_FILE: &str = "outcomes.json";

impl Totals {
    /// The totals an earlier run saved in `dir`, if any.
    pub fn load(dir: &std::path::Path) -> Option<Totals> {
        let text = std::fs::read(dir.join(TOTALS_FILE)).ok()?;
        serde_json::from_slice(&text).ok()
    }

    /// Saves them in `dir` (written aside, then renamed: never half a file).
    pub fn save(&self, dir: &std::path::Path) -> std::io::Result<()> {
        let aside = dir.join(format!("{TOTALS_FILE}.new"));
        std::fs::write(&aside, serde_json::to_vec(self).expect("totals serialize"))?;
        std::fs::rename(aside, dir.join(TOTALS_FILE))
    }
}

/// Settled attempts per (flow, connector, outcome) since `since_ms`: what the dashboard's
/// counts show, kept across restarts.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct Totals {
    pub since_ms: i64,
    pub counts: Vec<(String, String, String, u64)>,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

impl Metrics {
    /// A webhook answered: `outcome` is `accepted`, `refused` or `unavailable`.
    pub fn ack(&self, source: &str, outcome: &'static str, took: Duration) {
        lock(&self.acks)
            .entry((source.to_owned(), outcome))
            .or_default()
            .observe(took);
    }

    /// A delivery attempt settled in `outcome` (the job's new state) at `now_ms`.
    pub fn delivery(
        &self,
        flow: &str,
        connector: &str,
        outcome: &'static str,
        took: Duration,
        now_ms: i64,
    ) {
        lock(&self.deliveries)
            .entry((flow.to_owned(), connector.to_owned(), outcome))
            .or_default()
            .observe(took);
        let minute = now_ms / 60_000;
        let mut minutes = lock(&self.minutes);
        if minutes.back().is_none_or(|m| m.minute != minute) {
            minutes.push_back(Minute {
                minute,
                ..Minute::default()
            });
            while minutes.len() > 60 {
                minutes.pop_front();
            }
        }
        let last = minutes.back_mut().expect("pushed");
        // Held, parked and skipped jobs wait or were not needed: no failure.
        match outcome {
            "done" => last.delivered += 1,
            "retrying" | "dead" => last.failed += 1,
            _ => {}
        }
    }

    /// The last hour, one entry per minute that had attempts.
    pub fn last_hour(&self, now_ms: i64) -> Vec<Minute> {
        let from = now_ms / 60_000 - 59;
        lock(&self.minutes)
            .iter()
            .filter(|m| m.minute >= from)
            .copied()
            .collect()
    }

    /// Every settled attempt per (flow, connector, outcome), earlier runs included.
    fn all_outcomes(&self) -> BTreeMap<(String, String, &'static str), u64> {
        let mut out = BTreeMap::new();
        for (flow, connector, outcome, n) in &lock(&self.earlier).counts {
            if let Some(state) = crate::queue::State::parse(outcome) {
                *out.entry((flow.clone(), connector.clone(), state.as_str()))
                    .or_default() += n;
            }
        }
        for ((flow, connector, outcome), histogram) in lock(&self.deliveries).iter() {
            *out.entry((flow.clone(), connector.clone(), *outcome))
                .or_default() += histogram.count;
        }
        out
    }

    /// Settled attempts per (connector, outcome) since [`Metrics::counted_since`].
    pub fn outcomes(&self) -> BTreeMap<(String, &'static str), u64> {
        let mut out = BTreeMap::new();
        for ((_, connector, outcome), n) in self.all_outcomes() {
            *out.entry((connector, outcome)).or_default() += n;
        }
        out
    }

    /// Settled attempts per (flow, outcome) since [`Metrics::counted_since`].
    pub fn flow_outcomes(&self) -> BTreeMap<(String, &'static str), u64> {
        let mut out = BTreeMap::new();
        for ((flow, _, outcome), n) in self.all_outcomes() {
            *out.entry((flow, outcome)).or_default() += n;
        }
        out
    }

    /// Since when the outcome counts run (the first start with this data dir).
    pub fn counted_since(&self) -> i64 {
        lock(&self.earlier).since_ms
    }

    /// Takes up the counts an earlier run saved (or starts counting at `now_ms`).
    pub fn resume(&self, saved: Option<Totals>, now_ms: i64) {
        *lock(&self.earlier) = saved.unwrap_or(Totals {
            since_ms: now_ms,
            counts: Vec::new(),
        });
    }

    /// The counts to save, earlier runs included.
    pub fn totals(&self) -> Totals {
        Totals {
            since_ms: self.counted_since(),
            counts: self
                .all_outcomes()
                .into_iter()
                .map(|((flow, connector, outcome), n)| (flow, connector, outcome.to_owned(), n))
                .collect(),
        }
    }

    /// A reconciliation run was stored: a finished one (done or capped) sets its flow's drift.
    pub fn note_reconcile(&self, run: &crate::sync::reconcile::Run) {
        let (Some(finished), "done" | "capped") = (run.finished_ms, run.state.as_str()) else {
            return;
        };
        let counts = crate::sync::reconcile::Class::ALL
            .into_iter()
            .map(|class| (class.as_str(), run.count(class)))
            .collect();
        let mut drift = lock(&self.drift);
        if drift.get(&run.flow).is_none_or(|(_, at)| *at <= finished) {
            drift.insert(run.flow.clone(), (counts, finished));
        }
    }

    /// The Prometheus text format, with `gauges` (name, help, labelled values) appended.
    pub fn render(&self, gauges: &[Gauge]) -> String {
        let mut out = String::new();
        let acks = lock(&self.acks).clone();
        histograms(
            &mut out,
            "handoff_webhook_ack_seconds",
            "Time from a webhook's arrival to its answer (202 only once it is on disk).",
            acks.iter().map(|((source, outcome), h)| {
                (
                    format!("source=\"{}\",outcome=\"{outcome}\"", label(source)),
                    h,
                )
            }),
        );
        let deliveries = lock(&self.deliveries).clone();
        histograms(
            &mut out,
            "handoff_delivery_seconds",
            "Time one delivery attempt took, by flow, connector and the job's resulting state.",
            deliveries.iter().map(|((flow, connector, outcome), h)| {
                (
                    format!(
                        "flow=\"{}\",connector=\"{}\",outcome=\"{outcome}\"",
                        label(flow),
                        label(connector)
                    ),
                    h,
                )
            }),
        );
        let _ = writeln!(
            out,
            "# HELP handoff_deliveries_total Delivery attempts settled, by flow, connector and outcome."
        );
        let _ = writeln!(out, "# TYPE handoff_deliveries_total counter");
        for ((flow, connector, outcome), h) in &deliveries {
            let _ = writeln!(
                out,
                "handoff_deliveries_total{{flow=\"{}\",connector=\"{}\",outcome=\"{outcome}\"}} {}",
                label(flow),
                label(connector),
                h.count
            );
        }
        let drift = lock(&self.drift).clone();
        let _ = writeln!(
            out,
            "# HELP handoff_drift_records Records per drift class in each flow's last finished reconciliation run.\n\
             # TYPE handoff_drift_records gauge"
        );
        for (flow, (counts, _)) in &drift {
            for (class, n) in counts {
                let _ = writeln!(
                    out,
                    "handoff_drift_records{{flow=\"{}\",class=\"{class}\"}} {n}",
                    label(flow)
                );
            }
        }
        let _ = writeln!(
            out,
            "# HELP handoff_reconcile_last_success_seconds When each flow's last reconciliation run finished (unix time).\n\
             # TYPE handoff_reconcile_last_success_seconds gauge"
        );
        for (flow, (_, at_ms)) in &drift {
            let _ = writeln!(
                out,
                "handoff_reconcile_last_success_seconds{{flow=\"{}\"}} {}",
                label(flow),
                at_ms / 1000
            );
        }
        for gauge in gauges {
            let _ = writeln!(out, "# HELP {} {}", gauge.name, gauge.help);
            let _ = writeln!(out, "# TYPE {} gauge", gauge.name);
            for (labels, value) in &gauge.values {
                match labels.is_empty() {
                    true => {
                        let _ = writeln!(out, "{} {value}", gauge.name);
                    }
                    false => {
                        let _ = writeln!(out, "{}{{{labels}}} {value}", gauge.name);
                    }
                }
            }
        }
        out
    }
}

/// A gauge read at scrape time: `values` are (labels as `a="b"`, value).
pub struct Gauge {
    pub name: &'static str,
    pub help: &'static str,
    pub values: Vec<(String, u64)>,
}

fn histograms<'a>(
    out: &mut String,
    name: &str,
    help: &str,
    series: impl Iterator<Item = (String, &'a Histogram)>,
) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} histogram");
    for (labels, histogram) in series {
        for (bound, count) in BOUNDS.iter().zip(histogram.buckets) {
            let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{bound}\"}} {count}");
        }
        let _ = writeln!(
            out,
            "{name}_bucket{{{labels},le=\"+Inf\"}} {}",
            histogram.count
        );
        let _ = writeln!(out, "{name}_sum{{{labels}}} {}", histogram.sum);
        let _ = writeln!(out, "{name}_count{{{labels}}} {}", histogram.count);
    }
}

/// A label value with `\`, `"` and newlines escaped.
pub fn label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_are_cumulative_and_render_in_the_text_format() {
        let metrics = Metrics::default();
        metrics.ack("crm", "accepted", Duration::from_millis(3));
        metrics.ack("crm", "accepted", Duration::from_millis(30));
        metrics.delivery("f", "erp", "done", Duration::from_millis(40), 120_000);
        metrics.delivery("f", "erp", "retrying", Duration::from_millis(40), 121_000);
        let text = metrics.render(&[Gauge {
            name: "handoff_queue_jobs",
            help: "Jobs.",
            values: vec![("connector=\"erp\",state=\"dead\"".into(), 2)],
        }]);
        assert!(text.contains("handoff_webhook_ack_seconds_bucket{source=\"crm\",outcome=\"accepted\",le=\"0.005\"} 1"), "{text}");
        assert!(text.contains(
            "handoff_webhook_ack_seconds_bucket{source=\"crm\",outcome=\"accepted\",le=\"0.05\"} 2"
        ));
        assert!(
            text.contains(
                "handoff_webhook_ack_seconds_count{source=\"crm\",outcome=\"accepted\"} 2"
            )
        );
        assert!(
            text.contains(
                "handoff_deliveries_total{flow=\"f\",connector=\"erp\",outcome=\"done\"} 1"
            )
        );
        assert!(text.contains("handoff_queue_jobs{connector=\"erp\",state=\"dead\"} 2"));
        assert_eq!(
            metrics.last_hour(121_000),
            [Minute {
                minute: 2,
                delivered: 1,
                failed: 1
            }]
        );
        assert!(metrics.last_hour(121_000 + 3_600_000).is_empty());
    }
}
