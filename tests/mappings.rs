//! Runs the `tests:` block of every file in mappings/ and mappings/examples/ as named tests
//! (`account_to_customer::a full account`), with the shipped lookups and schemas.

use std::path::Path;

use handoff::mapping::{load_dir, testing};
use libtest_mimic::{Arguments, Failed, Trial};

fn main() {
    let args = Arguments::from_args();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut trials = Vec::new();
    // The shipped mappings, and the examples an integrator copies in when they turn a flow on.
    for dir in ["mappings", "mappings/examples"] {
        let (mappings, lookups) = match load_dir(&root.join(dir), &root.join("schemas")) {
            Ok(loaded) => loaded,
            Err(problems) => {
                for problem in problems {
                    eprintln!("{}: {}", problem.location, problem.message);
                }
                std::process::exit(1);
            }
        };
        assert!(!mappings.is_empty(), "{dir} has no mappings");
        let lookups = std::sync::Arc::new(lookups);
        for mapping in mappings.into_iter().map(std::sync::Arc::new) {
            assert!(!mapping.tests.is_empty(), "{} has no tests", mapping.flow);
            for index in 0..mapping.tests.len() {
                let name = format!("{}::{}", mapping.flow, mapping.tests[index].name);
                let (mapping, lookups) = (mapping.clone(), lookups.clone());
                trials.push(Trial::test(name, move || {
                    testing::run_case(&mapping, &lookups, &mapping.tests[index])
                        .map_err(Failed::from)
                }));
            }
        }
    }
    libtest_mimic::run(&args, trials).exit();
}
