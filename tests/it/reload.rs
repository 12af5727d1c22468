//! Mapping reload in the real binary: SIGHUP and a change on disk swap in a good edit; a broken
//! edit is rejected with its problems and the running version stays.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::copy_dir;

async fn status(client: &reqwest::Client, addr: &str) -> Value {
    client
        .get(format!("http://{addr}/api/v1/mappings"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

fn version(status: &Value, flow: &str) -> String {
    status["mappings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["flow"] == flow)
        .unwrap()["version"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Polls the status until `done` holds (bounded: 10 s).
async fn wait_for(client: &reqwest::Client, addr: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let now = status(client, addr).await;
        if done(&now) {
            return now;
        }
        assert!(Instant::now() < deadline, "timed out; last status {now}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn sighup_and_file_changes_reload_good_edits_and_reject_broken_ones() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().unwrap();
    let mappings = dir.path().join("mappings");
    copy_dir(&root.join("mappings"), &mappings);
    let config = dir.path().join("handoff.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:0\"\ndata_dir = {:?}\nmappings_dir = {:?}\nschemas_dir = {:?}\n[store]\njournal_segment_bytes = 1048576\n[log]\nformat = \"json\"\n",
            dir.path().join("data").display().to_string(),
            mappings.display().to_string(),
            root.join("schemas").display().to_string(),
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_handoff"))
        .args(["serve", "--config"])
        .arg(&config)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let addr = crate::durability::listen_address(&mut child);
    let client = reqwest::Client::new();
    let file = mappings.join("account_to_customer.yaml");
    let original = std::fs::read_to_string(&file).unwrap();
    let first = version(&status(&client, &addr).await, "account_to_customer");
    let hangup = |pid: u32| {
        Command::new("kill")
            .args(["-HUP", &pid.to_string()])
            .status()
            .unwrap();
    };

    // A broken edit: rejected, with its location; the running version stays.
    std::fs::write(
        &file,
        original.replace("trim($.data.Name)", "trimm($.data.Name)"),
    )
    .unwrap();
    hangup(child.id());
    let now = wait_for(&client, &addr, |s| s["last_reload"]["ok"] == false).await;
    let problems = now["last_reload"]["problems"].to_string();
    assert!(
        problems.contains("account_to_customer.yaml:15:9") && problems.contains("trimm"),
        "{problems}"
    );
    assert_eq!(version(&now, "account_to_customer"), first);

    // A good edit by SIGHUP: swapped in.
    std::fs::write(&file, original.replace("'NET30'", "'NET45'")).unwrap();
    hangup(child.id());
    let now = wait_for(&client, &addr, |s| {
        version(s, "account_to_customer") != first
    })
    .await;
    assert_eq!(now["last_reload"]["ok"], true);
    let second = version(&now, "account_to_customer");

    // A good edit seen on disk, without a signal.
    std::fs::write(&file, original.replace("'NET30'", "'NET60'")).unwrap();
    let now = wait_for(&client, &addr, |s| {
        version(s, "account_to_customer") != second
    })
    .await;
    assert_eq!(now["last_reload"]["ok"], true);

    child.kill().unwrap();
    child.wait().unwrap();
}
