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
        .append(vec![envelope("a", 1000), envelope("b", 1000)])
        .await
        .unwrap();
    assert_eq!(a, vec![Appended::New(1), Appended::New(2)]);
    let again = j.append(vec![envelope("a", 1050)]).await.unwrap();
    assert_eq!(again, vec![Appended::Duplicate(1)]);
    let late = j.append(vec![envelope("a", 1101)]).await.unwrap();
    assert_eq!(late, vec![Appended::New(3)]);
    assert_eq!(ids(&j), ["a", "b", "a"]);
    assert_eq!(j.len(), 3);
}

#[tokio::test]
async fn duplicates_inside_one_batch_are_written_once() {
    let dir = tempfile::tempdir().unwrap();
    let j = open(dir.path());
    let a = j
        .append(vec![envelope("x", 1), envelope("x", 1)])
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
                tokio::spawn(async move { j.append(vec![envelope(&format!("e{i}"), now())]).await })
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
            j.append(vec![envelope("e7", now())]).await.unwrap()[0],
            Appended::Duplicate(8)
        );
    }
    // As after a crash (no saved index): rebuilt from the records.
    std::fs::remove_file(&saved).unwrap();
    let j = open(dir.path());
    assert_eq!(j.len(), 200);
    assert_eq!(
        j.append(vec![envelope("e9", now())]).await.unwrap()[0],
        Appended::Duplicate(10)
    );
}

#[tokio::test]
async fn the_dedupe_index_is_rebuilt_only_from_records_inside_the_window() {
    let dir = tempfile::tempdir().unwrap();
    let now = Utc::now().timestamp();
    {
        let j = open(dir.path());
        j.append(vec![
            envelope("old", now - 500),
            envelope("recent", now - 10),
        ])
        .await
        .unwrap();
    }
    // As after a crash: no saved index, so it is rebuilt from the records.
    std::fs::remove_file(dir.path().join("journal/dedupe.snap")).unwrap();
    let j = open(dir.path()); // window: 100 s
    let again = j
        .append(vec![envelope("recent", now), envelope("old", now)])
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

#[tokio::test]
async fn the_end_says_from_where_only_ignored_records_follow_and_a_tail_can_skip_them() {
    let dir = tempfile::tempdir().unwrap();
    let j = open(dir.path());
    let ignored = |id: &str| Envelope {
        ignored: true,
        ..envelope(id, now())
    };
    // Records from before the start count as routable: nothing to skip yet.
    assert_eq!(j.end().ignored_from, 1);
    j.append(vec![envelope("r1", now())]).await.unwrap();
    assert_eq!(j.end().ignored_from, 2);
    j.append(vec![ignored("i1"), ignored("i2")]).await.unwrap();
    let end = j.end();
    assert_eq!((end.next_seq, end.ignored_from), (4, 2));
    // A duplicate of a routable event writes nothing and changes nothing.
    j.append(vec![envelope("r1", now())]).await.unwrap();
    assert_eq!(j.end(), end);

    let mut tail = j.tail(2, None);
    tail.skip_to(end.next_seq, end.at);
    j.append(vec![envelope("r2", now()), ignored("i3")])
        .await
        .unwrap();
    assert_eq!(j.end().ignored_from, 5);
    let read = tail.read(j.next_seq(), 10).unwrap();
    let seqs: Vec<u64> = read.iter().map(|(seq, _, _)| *seq).collect();
    assert_eq!(seqs, [4, 5]);
    assert_eq!(Journal::decode(4, &read[0].2).unwrap().id, "r2");
    assert!(Journal::is_ignored(&read[1].2));
    // Skipping never goes back.
    tail.skip_to(end.next_seq, end.at);
    assert_eq!(tail.next_seq(), 6);
}

#[tokio::test]
async fn the_end_follows_the_journal_into_its_next_segment() {
    let dir = tempfile::tempdir().unwrap();
    let j = open(dir.path());
    let big = |id: &str| Envelope {
        ignored: true,
        raw_body: "x".repeat(20_000),
        ..envelope(id, now())
    };
    for n in 0..5 {
        j.append(vec![big(&format!("i{n}"))]).await.unwrap();
    }
    let end = j.end();
    assert!(
        end.at.segment > 1,
        "64 KiB segments roll over after three records"
    );
    let mut tail = j.tail(1, None);
    tail.skip_to(end.next_seq, end.at);
    j.append(vec![envelope("r", now())]).await.unwrap();
    let read = tail.read(j.next_seq(), 10).unwrap();
    assert_eq!(read.len(), 1);
    assert_eq!(Journal::decode(read[0].0, &read[0].2).unwrap().id, "r");
}
