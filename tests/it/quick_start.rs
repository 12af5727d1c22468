//! The README's Quick start, run as written: its shell block between `<!-- quick-start -->`
//! markers, in a directory with the repository's mappings, connectors and schemas, with the
//! `handoff` binary that `cargo test` built first on the PATH (the block's `cargo build
//! --release` is the one line not run: the build already happened). It listens on
//! 127.0.0.1:8080 as the README says.

use std::process::Command;

#[test]
fn the_quick_start_runs_as_written() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let block = readme
        .split("<!-- quick-start -->")
        .nth(1)
        .and_then(|rest| rest.split("<!-- /quick-start -->").next())
        .expect("README has a quick-start block");
    let script: String = block
        .lines()
        .filter(|line| !line.starts_with("```"))
        .map(|line| match line.trim() {
            "cargo build --release" => "true  # built by cargo test\n".to_owned(),
            _ => format!("{line}\n"),
        })
        .collect();
    assert!(script.contains("handoff send crm"), "{script}");
    let dir = tempfile::tempdir().unwrap();
    for name in ["mappings", "connectors", "schemas"] {
        std::os::unix::fs::symlink(root.join(name), dir.path().join(name)).unwrap();
    }
    let bin = std::path::Path::new(env!("CARGO_BIN_EXE_handoff"))
        .parent()
        .unwrap()
        .to_owned();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    // Whatever happens, the server the block started goes with it.
    let guarded =
        format!("trap 'kill $(jobs -p) 2>/dev/null || true' EXIT\nset -euo pipefail\n{script}");
    let mut command = Command::new("timeout");
    command
        .args(["120", "bash", "-c", &guarded])
        .current_dir(dir.path())
        .env("PATH", path);
    for (name, _) in std::env::vars().filter(|(k, _)| k.starts_with("HANDOFF_")) {
        command.env_remove(name);
    }
    let output = command.output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let log = std::fs::read_to_string(dir.path().join("handoff.log")).unwrap_or_default();
    assert!(
        output.status.success(),
        "{stdout}\n{}\n{log}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(stdout.matches("202 Accepted").count(), 2, "{stdout}");
    assert!(
        stdout.contains("  done      opportunity_to_sales_order   006000000000001AAA"),
        "{stdout}"
    );
    assert!(stdout.contains(r#""status":"draft""#), "{stdout}");
    assert!(stdout.contains(r#""status":"confirmed""#), "{stdout}");
    assert!(
        stdout.contains(r#""ERP_Status__c":"Confirmed""#),
        "{stdout}"
    );
}
