//! `handoff mapping bench`: how fast one mapping maps one event on this machine, so an integrator
//! can measure their own mapping before it goes live. The document is checked against its
//! schema on every run, as in production (as it is built, when the schema allows: see
//! `schema/plan.rs`); what validating the whole finished document takes is measured too.

use std::time::{Duration, Instant};

use serde_json::Value;

use super::{Context, Lookups, Mapping, MappingError};

/// What a bench run measured.
#[derive(Debug, Clone, Copy)]
pub struct Measured {
    pub runs: u64,
    pub elapsed: Duration,
    /// What validating the whole finished document alone takes.
    pub validation: Duration,
    /// The floor around any mapping, measured in the same run: parsing the event from its JSON
    /// text, and writing the document as JSON (what reaching and leaving the mapping costs).
    pub parse: Duration,
    pub serialise: Duration,
}

impl Measured {
    pub fn per_second(&self) -> f64 {
        self.runs as f64 / self.elapsed.as_secs_f64()
    }

    pub fn micros_each(&self) -> f64 {
        self.elapsed.as_secs_f64() * 1e6 / self.runs as f64
    }
}

/// Maps `data` again and again for about `duration` on the calling thread.
pub fn bench(
    mapping: &Mapping,
    lookups: &Lookups,
    data: &Value,
    context: &Context,
    duration: Duration,
) -> Result<Measured, MappingError> {
    let document = mapping.apply(data, lookups, context)?.body;
    let (runs, elapsed) = repeat(duration, || {
        std::hint::black_box(mapping.apply(std::hint::black_box(data), lookups, context)).is_ok()
    });
    let (checks, checked) = repeat(duration / 4, || {
        mapping.schema.is_valid(std::hint::black_box(&document))
    });
    let text = data.to_string();
    let (parses, parsed) = repeat(duration / 4, || {
        serde_json::from_str::<Value>(std::hint::black_box(&text)).is_ok()
    });
    let (writes, written) = repeat(duration / 4, || {
        serde_json::to_vec(std::hint::black_box(&document)).is_ok()
    });
    let each = |total: Duration, n: u64| total / u32::try_from(n).unwrap_or(u32::MAX).max(1);
    Ok(Measured {
        runs,
        elapsed,
        validation: each(checked, checks),
        parse: each(parsed, parses),
        serialise: each(written, writes),
    })
}

/// Runs `f` in batches until `duration` has passed: how many runs, and how long they took.
fn repeat(duration: Duration, mut f: impl FnMut() -> bool) -> (u64, Duration) {
    let start = Instant::now();
    let mut runs = 0u64;
    while start.elapsed() < duration || runs == 0 {
        for _ in 0..64 {
            std::hint::black_box(f());
        }
        runs += 64;
    }
    (runs, start.elapsed())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shipped_mapping_is_measured() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let (mappings, lookups) =
            crate::mapping::load_dir(&root.join("mappings"), &root.join("schemas")).unwrap();
        let mapping = mappings
            .iter()
            .find(|m| m.flow == "account_to_customer")
            .unwrap();
        let case = &mapping.tests[0];
        let measured = bench(
            mapping,
            &lookups,
            &case.event,
            &Context::default(),
            Duration::from_millis(50),
        )
        .unwrap();
        assert!(measured.runs >= 64);
        assert!(measured.micros_each() > 0.0);
        assert!(measured.validation < measured.elapsed);
        assert!(measured.parse > Duration::ZERO && measured.serialise > Duration::ZERO);
        // An event the mapping refuses is an error, not a figure.
        let refused = bench(
            mapping,
            &lookups,
            &serde_json::json!({"data": {}}),
            &Context::default(),
            Duration::from_millis(10),
        );
        assert!(refused.is_err());
    }
}
