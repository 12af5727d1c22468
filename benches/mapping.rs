//! Mapping speed, schema validation included (issue 3's targets: a 10-line opportunity → sales
//! order ≥ 200,000/s and an account → customer ≥ 500,000/s on one core; issue 18's: 3× faster).
//!
//! `cargo bench --bench mapping`; the events are the first `tests:` case of each shipped mapping.
//! Beside each mapping: the floor under it (floor.rs: the same document built by hand-written
//! Rust), copying the finished document, and validating it with `jsonschema`.
//!
//! `MAPPING_COUNT_RUNS=N cargo bench --bench mapping` runs each mapping and its floor N times
//! instead, for counting their instructions under callgrind (BENCHMARKS.md, issue 18).

use std::path::Path;

use criterion::{Criterion, Throughput};
use handoff::mapping::{Context, Document, Lookups, Mapping, load_dir};

#[path = "mapping/floor.rs"]
mod floor;

/// The allocator the `handoff` binary runs with (src/main.rs).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const FLOWS: [&str; 2] = ["account_to_customer", "opportunity_to_sales_order"];

/// The hand-written floor of a shipped flow.
fn floor(flow: &str, event: &serde_json::Value, lookups: &Lookups, context: &Context) -> Document {
    match flow {
        "account_to_customer" => floor::account(event, lookups),
        _ => floor::order(event, lookups, &context.xrefs),
    }
    .expect("the floor maps the first case")
}

/// The shipped mappings, each with its first test case's context; the floor is checked to
/// build the very document the mapping builds.
fn shipped() -> (Vec<(Mapping, Context)>, Lookups) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let (mut mappings, lookups) = load_dir(&root.join("mappings"), &root.join("schemas"))
        .expect("the shipped mappings compile");
    let flows = FLOWS.map(|flow| {
        let at = mappings
            .iter()
            .position(|m| m.flow == flow)
            .expect("shipped");
        let mapping = mappings.swap_remove(at);
        let case = &mapping.tests[0];
        let context = Context {
            xrefs: case.context.xrefs.clone(),
        };
        let mapped = mapping
            .apply(&case.event, &lookups, &context)
            .expect("the first case maps");
        let by_hand = floor(flow, &case.event, &lookups, &context);
        assert_eq!(
            Document {
                mapping_version: mapped.mapping_version.clone(),
                ..by_hand
            },
            mapped,
            "{flow}: the floor builds what the mapping builds"
        );
        (mapping, context)
    });
    (flows.into(), lookups)
}

fn mappings(c: &mut Criterion) {
    let (mappings, lookups) = shipped();
    for (mapping, context) in &mappings {
        let flow = mapping.flow.as_str();
        let case = &mapping.tests[0];
        let mut group = c.benchmark_group(flow);
        group.throughput(Throughput::Elements(1));
        group.bench_function(case.name.as_str(), |b| {
            b.iter(|| {
                mapping
                    .apply(std::hint::black_box(&case.event), &lookups, context)
                    .unwrap()
            })
        });
        group.bench_function("floor: the same document by hand-written Rust", |b| {
            b.iter(|| floor(flow, std::hint::black_box(&case.event), &lookups, context))
        });
        // What the output alone costs, as a floor under the mapping: copying the finished
        // document (a `serde_json::Value`), and validating it against the target schema.
        let document = mapping
            .apply(&case.event, &lookups, context)
            .expect("maps")
            .body;
        group.bench_function("floor: copy the output document", |b| {
            b.iter(|| std::hint::black_box(&document).clone())
        });
        group.bench_function("floor: validate the output against its schema", |b| {
            b.iter(|| assert!(mapping.schema.is_valid(std::hint::black_box(&document))))
        });
        group.finish();
    }
}

/// Each mapping and its floor `runs` times, nothing else (for callgrind).
fn count(runs: usize) {
    let (mappings, lookups) = shipped();
    for (mapping, context) in &mappings {
        let event = &mapping.tests[0].event;
        for _ in 0..runs {
            std::hint::black_box(mapping.apply(std::hint::black_box(event), &lookups, context))
                .expect("maps");
            std::hint::black_box(floor(
                &mapping.flow,
                std::hint::black_box(event),
                &lookups,
                context,
            ));
        }
    }
    println!("{runs} runs of each mapping and its floor");
}

fn main() {
    if let Some(runs) = std::env::var("MAPPING_COUNT_RUNS")
        .ok()
        .and_then(|n| n.parse().ok())
    {
        return count(runs);
    }
    let mut criterion = Criterion::default().configure_from_args();
    mappings(&mut criterion);
    criterion.final_summary();
}
