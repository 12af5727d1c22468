//! The real binary is SIGKILLed while signed events stream in; after each restart every event
//! that got a 2xx is in the journal.

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use handoff::journal::Journal;

use crate::support::*;

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const ROUNDS: usize = 3;
const SENDERS: usize = 16;

/// Starts `handoff serve` on a free port; returns the child and its address.
fn start(config: &Path) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_handoff"))
        .args(["serve", "--config"])
        .arg(config)
        .env("CRM_SECRET", SECRET)
        .env("HANDOFF_LOG__FORMAT", "json")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let addr = listen_address(&mut child);
    (child, addr)
}

/// The service's config in `dir`: an ephemeral port, the data dir inside, the `crm` source.
fn write_config(dir: &Path) -> std::path::PathBuf {
    let config = dir.join("handoff.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:0\"\ndata_dir = {:?}\n[store]\njournal_segment_bytes = 1048576\n[sources.crm]\npreset = \"standard_webhooks\"\nsecret_env = \"CRM_SECRET\"\n",
            dir.join("data").display().to_string()
        ),
    )
    .unwrap();
    config
}

/// Sends SIGTERM and waits for the process to end.
fn sigterm(child: &mut Child) -> std::process::ExitStatus {
    Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    child.wait().unwrap()
}

/// Reads a child's JSON log until it says where it listens; keeps draining it afterwards.
pub fn listen_address(child: &mut Child) -> String {
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let addr = loop {
        let line = lines
            .next()
            .expect("handoff exited before serving")
            .unwrap();
        let value: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
        if value["fields"]["message"] == "handoff is serving" {
            break value["fields"]["listen"].as_str().unwrap().to_owned();
        }
    };
    std::thread::spawn(move || lines.for_each(drop)); // keep the pipe drained
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_event_survives_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path());
    let acked = Arc::new(Mutex::new(HashSet::<String>::new()));
    let client = reqwest::Client::new();

    for round in 0..ROUNDS {
        let (mut child, addr) = start(&config);
        let senders: Vec<_> = (0..SENDERS)
            .map(|sender| {
                let (client, acked, addr) = (client.clone(), acked.clone(), addr.clone());
                tokio::spawn(async move {
                    for n in 0..100_000 {
                        let id = format!("msg_{round}_{sender}_{n}");
                        let body = opportunity(&format!("006{sender}"), "Closed Won");
                        let mut request = client
                            .post(format!("http://{addr}/hooks/crm"))
                            .body(body.clone());
                        for (k, v) in standard_webhooks(SECRET, &id, now(), &body) {
                            request = request.header(k, v);
                        }
                        match request.send().await {
                            Ok(response) if response.status().is_success() => {
                                acked.lock().unwrap().insert(id);
                            }
                            Ok(response) => panic!("unexpected {}", response.status()),
                            Err(_) => return, // the server is gone
                        }
                    }
                })
            })
            .collect();
        // Kill at a moment that depends on the round, with requests in flight.
        let target = 200 * (round + 1) + acked.lock().unwrap().len();
        while acked.lock().unwrap().len() < target {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        for sender in senders {
            sender.await.unwrap();
        }
    }

    // Restart once more: it must come up and accept again.
    let (mut child, addr) = start(&config);
    let ready = client
        .get(format!("http://{addr}/readyz"))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status().as_u16(), 200);
    assert!(sigterm(&mut child).success(), "graceful stop on SIGTERM");

    let journal = Journal::open(&dir.path().join("data"), 3600, 1 << 20).unwrap();
    let stored: HashSet<String> = journal
        .iter_from(0)
        .unwrap()
        .map(|r| r.unwrap().1.id)
        .collect();
    let acked = acked.lock().unwrap();
    let lost: Vec<_> = acked.difference(&stored).collect();
    assert!(
        acked.len() >= 600 * ROUNDS / 2,
        "too few events were sent: {}",
        acked.len()
    );
    assert!(
        lost.is_empty(),
        "{} acknowledged events lost, e.g. {:?}",
        lost.len(),
        lost.first()
    );
}

/// A SIGTERM that comes as soon as the service says it is serving stops it cleanly: the
/// handlers are installed before that line (they were installed when the server's loop first
/// looked at its shutdown future, and a SIGTERM before that killed the process: 20 of 20 times
/// when sent at once).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigterm_right_after_start_is_a_clean_stop() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path());
    for _ in 0..5 {
        let (mut child, _addr) = start(&config);
        let status = sigterm(&mut child);
        assert!(status.success(), "a clean stop, not {status}");
    }
}
