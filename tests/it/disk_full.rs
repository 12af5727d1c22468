//! A full disk (a real 4 MiB tmpfs): the journal cannot grow, requests get 503 and are not
//! stored, the process stays up and unready, and it recovers when space comes back.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::*;

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// A tmpfs mounted for the test's lifetime (the test runs as root, as CI does).
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Tmpfs {
        let dir = tempfile::tempdir().unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .expect("run mount");
        assert!(
            status.success(),
            "mounting a tmpfs needs root: run the suite as CI does"
        );
        Tmpfs { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

/// Writes zeros until the file system is full.
fn fill(path: &Path) -> PathBuf {
    use std::io::Write;
    let filler = path.join("filler");
    let mut file = std::fs::File::create(&filler).unwrap();
    let chunk = vec![0u8; 16 * 1024];
    while file.write_all(&chunk).is_ok() {}
    let _ = file.sync_all();
    filler
}

#[tokio::test]
async fn a_full_disk_answers_503_stays_alive_and_recovers() {
    let fs = Tmpfs::mount("4m");
    let data = fs.path().join("data");
    let app = TestApp::start_with(
        CONFIG,
        &[
            ("HANDOFF_DATA_DIR", data.to_str().unwrap()),
            ("HANDOFF_STORE__JOURNAL_SEGMENT_BYTES", "262144"),
            ("HANDOFF_STORE__QUEUE_SEGMENT_BYTES", "262144"),
        ],
    )
    .await;
    let filler = fill(fs.path());

    let (mut acked, mut refused) = (Vec::new(), Vec::new());
    for n in 0..3000 {
        let id = format!("msg_full_{n}");
        let body = opportunity(&format!("006{n}"), "Closed Won");
        let (status, reply) = app
            .post(
                "/hooks/crm",
                &standard_webhooks(SECRET, &id, now(), &body),
                &body,
            )
            .await;
        match status {
            202 => acked.push(id),
            503 => {
                assert!(reply.contains("store_unavailable"), "{reply}");
                refused.push(id);
                if refused.len() == 3 {
                    break;
                }
            }
            other => panic!("unexpected {other}: {reply}"),
        }
    }
    assert!(
        !acked.is_empty() && refused.len() == 3,
        "the disk never filled: {} acked",
        acked.len()
    );

    let health = app.client.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status().as_u16(), 200, "the process stays alive");
    let ready = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(
        ready.status().as_u16(),
        503,
        "but says it cannot take events"
    );

    std::fs::remove_file(filler).unwrap();
    let ready = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(
        ready.status().as_u16(),
        200,
        "ready again once space is back"
    );
    let body = opportunity("006after", "Closed Won");
    let (status, _) = app
        .post(
            "/hooks/crm",
            &standard_webhooks(SECRET, "msg_after", now(), &body),
            &body,
        )
        .await;
    assert_eq!(status, 202);
    acked.push("msg_after".into());

    let stored: Vec<String> = app.envelopes().into_iter().map(|e| e.id).collect();
    assert_eq!(stored, acked, "exactly the acknowledged events, in order");
    for id in &refused {
        assert!(!stored.contains(id), "{id} was refused but stored");
    }
}
