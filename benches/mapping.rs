//! Mapping speed, schema validation included (issue 3 targets: a 10-line opportunity → sales
//! order ≥ 200,000/s and an account → customer ≥ 500,000/s on one core).
//!
//! `cargo bench --bench mapping`; the events are the first `tests:` case of each shipped mapping.

use std::path::Path;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use handoff::mapping::{Context, load_dir};

/// The allocator the `handoff` binary runs with (src/main.rs).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn mappings(c: &mut Criterion) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let (mappings, lookups) = load_dir(&root.join("mappings"), &root.join("schemas"))
        .expect("the shipped mappings compile");
    for flow in ["account_to_customer", "opportunity_to_sales_order"] {
        let mapping = mappings.iter().find(|m| m.flow == flow).expect("shipped");
        let case = &mapping.tests[0];
        let context = Context {
            xrefs: case.context.xrefs.clone(),
        };
        mapping
            .apply(&case.event, &lookups, &context)
            .expect("the first case maps");
        let mut group = c.benchmark_group(flow);
        group.throughput(Throughput::Elements(1));
        group.bench_function(case.name.as_str(), |b| {
            b.iter(|| {
                mapping
                    .apply(std::hint::black_box(&case.event), &lookups, &context)
                    .unwrap()
            })
        });
        // What the output alone costs, as a floor under the mapping: copying the finished
        // document (a `serde_json::Value`), and validating it against the target schema.
        let document = mapping
            .apply(&case.event, &lookups, &context)
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

criterion_group!(benches, mappings);
criterion_main!(benches);
