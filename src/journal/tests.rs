use chrono::{TimeZone, Utc};
use serde_json::json;

use super::*;

fn envelope(id: &str, at: i64) -> Envelope {
    Envelope {
        id: id.into(),
        source: "crm".into(),
        event_type: Some("account.updated".into()),
        ignored: false,
        object: Some("Account".into()),
        object_id: Some("001".into()),
        version: None,
        signed_at: None,
        received_at: Utc.timestamp_opt(at, 0).unwrap(),
        raw_body: "{}".into(),
        data: json!({}),
        data_is_raw_body: false,
    }
}

fn now() -> i64 {
    Utc::now().timestamp()
}

fn open(dir: &std::path::Path) -> Journal {
    Journal::open(dir, 100, 64 * 1024).unwrap()
}

fn ids(journal: &Journal) -> Vec<String> {
    journal
        .iter_from(0)
        .unwrap()
        .map(|r| r.unwrap().1.id)
        .collect()
}

#[tokio::test]
async fn appends_in_order_and_dedupes_within_the_window() {
    let dir = tempfile::tempdir().unwrap();
    let j = open(dir.path());
    let a = j
        .append(&[envelope("a", 1000), envelope("b", 1000)])
        .await
        .unwrap();
    assert_eq!(a, vec![Appended::New(1), Appended::New(2)]);
    let again = j.append(&[envelope("a", 1050)]).await.unwrap();
    assert_eq!(again, vec![Appended::Duplicate(1)]);
    let late = j.append(&[envelope("a", 1101)]).await.unwrap();
    assert_eq!(late, vec![Appended::New(3)]);
    assert_eq!(ids(&j), ["a", "b", "a"]);
    assert_eq!(j.len(), 3);
}

#[tokio::test]
async fn duplicates_inside_one_batch_are_written_once() {
    let dir = tempfile::tempdir().unwrap();
    let j = open(dir.path());
    let a = j
        .append(&[envelope("x", 1), envelope("x", 1)])
        .await
        .unwrap();
    assert_eq!(a, vec![Appended::New(1), Appended::Duplicate(1)]);
}

#[tokio::test]
async fn concurrent_appends_share_fsyncs_and_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let j = Arc::new(open(dir.path()));
        let tasks: Vec<_> = (0..200)
            .map(|i| {
                let j = j.clone();
                tokio::spawn(async move { j.append(&[envelope(&format!("e{i}"), now())]).await })
            })
            .collect();
        for task in tasks {
            task.await.unwrap().unwrap();
        }
        let fsyncs = j.stats.fsyncs.load(Ordering::Relaxed);
        assert!(fsyncs < 200, "no fsync was shared: {fsyncs}");
        assert_eq!(j.stats.requests.load(Ordering::Relaxed), 200);
    }
    let saved = dir.path().join("journal/dedupe.snap");
    assert!(saved.exists(), "a clean close saves the dedupe index");
    {
        let j = open(dir.path());
        assert!(!saved.exists(), "read once");
        assert_eq!(j.len(), 200);
        assert_eq!(
            j.append(&[envelope("e7", now())]).await.unwrap()[0],
            Appended::Duplicate(8)
        );
    }
    // As after a crash (no saved index): rebuilt from the records.
    std::fs::remove_file(&saved).unwrap();
    let j = open(dir.path());
    assert_eq!(j.len(), 200);
    assert_eq!(
        j.append(&[envelope("e9", now())]).await.unwrap()[0],
        Appended::Duplicate(10)
    );
}

#[tokio::test]
async fn the_dedupe_index_is_rebuilt_only_from_records_inside_the_window() {
    let dir = tempfile::tempdir().unwrap();
    let now = Utc::now().timestamp();
    {
        let j = open(dir.path());
        j.append(&[envelope("old", now - 500), envelope("recent", now - 10)])
            .await
            .unwrap();
    }
    // As after a crash: no saved index, so it is rebuilt from the records.
    std::fs::remove_file(dir.path().join("journal/dedupe.snap")).unwrap();
    let j = open(dir.path()); // window: 100 s
    let again = j
        .append(&[envelope("recent", now), envelope("old", now)])
        .await
        .unwrap();
    assert_eq!(again, vec![Appended::Duplicate(2), Appended::New(3)]);
}

#[tokio::test]
async fn probe_fsyncs_without_writing_records() {
    let dir = tempfile::tempdir().unwrap();
    let j = open(dir.path());
    j.probe().await.unwrap();
    assert!(j.is_empty());
}
