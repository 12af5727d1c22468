use std::sync::Arc;

use super::*;
use crate::journal::Position;
use crate::queue::{Queue, SCAN_BUDGET, Scope};

/// A ready job of `key` on `connector` (the queue gives it its id).
pub(super) fn job(key: &str, connector: &str) -> Job {
    Job {
        id: 0,
        seq: 1,
        at: Position {
            segment: 1,
            offset: 0,
        },
        source: "crm".into(),
        event_id: format!("e-{key}"),
        flow: "f".into(),
        connector: connector.into(),
        operation: "op".into(),
        order_key: key.into(),
        object_id: Some(key.into()),
        version: None,
        state: State::Ready,
        attempts: 0,
        created_ms: 0,
        updated_ms: 0,
        due_ms: None,
        reason: None,
        waits_for: None,
        in_doubt: false,
        resubmits: 0,
        failing: None,
        accepted: false,
        payload: None,
        mapping_version: None,
        external_id: None,
    }
}

fn open(dir: &std::path::Path) -> Embedded {
    open_with(dir, Options::default())
}

fn open_with(dir: &std::path::Path, options: Options) -> Embedded {
    Embedded::open(&Store::open(dir, None, 16).unwrap(), Clock::new(), options).unwrap()
}

/// Enqueues one job per key (on connector `erp`); returns their ids.
fn enqueue(queue: &Embedded, keys: &[&str]) -> Vec<JobId> {
    let jobs = keys.iter().map(|key| job(key, "erp")).collect();
    queue.enqueue(jobs, Cursor::default()).unwrap()
}

fn settle(queue: &Embedded, job: Job) {
    settle_releasing(queue, job, Vec::new());
}

fn settle_releasing(queue: &Embedded, job: Job, releases: Vec<(String, String)>) {
    queue
        .settle(Settle {
            job,
            attempt: None,
            effects: Vec::new(),
            releases,
        })
        .unwrap();
}

fn done(queue: &Embedded, mut job: Job) {
    job.state = State::Done;
    settle(queue, job);
}

#[test]
fn one_job_per_key_at_a_time_in_arrival_order() {
    let dir = tempfile::tempdir().unwrap();
    let queue = open(dir.path());
    let first = enqueue(&queue, &["A", "A", "B"])[0];
    let a1 = queue.try_lease("erp").unwrap().unwrap();
    let b = queue.try_lease("erp").unwrap().unwrap();
    assert_eq!(
        (a1.id, b.id),
        (first, first + 2),
        "A's second job waits for its first"
    );
    assert!(queue.try_lease("erp").unwrap().is_none());
    assert!(queue.try_lease("crm").unwrap().is_none());
    done(&queue, a1);
    let a2 = queue.try_lease("erp").unwrap().unwrap();
    assert_eq!(a2.id, first + 1);
    assert_eq!(a2.attempts, 1);
}

#[test]
fn a_retrying_job_keeps_its_place_and_a_parked_one_steps_aside() {
    let dir = tempfile::tempdir().unwrap();
    let queue = open(dir.path());
    let first = enqueue(&queue, &["A", "A"])[0];
    let mut leased = queue.try_lease("erp").unwrap().unwrap();
    leased.state = State::Retrying;
    leased.due_ms = Some(queue.clock().now_ms() + 60_000);
    settle(&queue, leased.clone());
    assert!(
        queue.try_lease("erp").unwrap().is_none(),
        "the retry blocks its key"
    );

    leased.state = State::Parked;
    leased.waits_for = Some(("customer".into(), "A".into()));
    leased.due_ms = Some(queue.clock().now_ms() + 60_000);
    settle(&queue, leased);
    let next = queue.try_lease("erp").unwrap().unwrap();
    assert_eq!(next.id, first + 1, "a parked job does not block its key");
    let mut finished = next;
    finished.state = State::Done;
    settle_releasing(&queue, finished, vec![("customer".into(), "A".into())]);
    let released = queue.try_lease("erp").unwrap().unwrap();
    assert_eq!(released.id, first, "released when its dependency is done");
}

#[test]
fn a_job_parked_on_a_product_is_released_when_the_product_arrives_and_after_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let id = {
        let queue = open(dir.path());
        let id = enqueue(&queue, &["O"])[0];
        let mut leased = queue.try_lease("erp").unwrap().unwrap();
        leased.state = State::Parked;
        leased.waits_for = Some(("product".into(), "SKU-9".into()));
        leased.due_ms = Some(queue.clock().now_ms() + 60_000);
        settle(&queue, leased);
        assert!(queue.try_lease("erp").unwrap().is_none());
        let other = [("product".to_owned(), "SKU-1".to_owned())];
        assert_eq!(queue.release_parked(&other).unwrap(), 0);
        let ours = [("product".to_owned(), "SKU-9".to_owned())];
        assert_eq!(queue.release_parked(&ours).unwrap(), 1);
        assert_eq!(queue.release_parked(&ours).unwrap(), 0, "released once");
        queue.flush().unwrap();
        id
    };
    // The release is in the log: after a reopen the job is runnable, not parked.
    let queue = open(dir.path());
    assert!(queue.ids_in(State::Parked).is_empty());
    let job = queue.try_lease("erp").unwrap().unwrap();
    assert_eq!(job.id, id);
    assert_eq!(job.waits_for, None);
}

#[test]
fn a_lease_held_at_a_crash_comes_back_in_doubt() {
    let dir = tempfile::tempdir().unwrap();
    let first;
    {
        let queue = open(dir.path());
        first = queue
            .enqueue(
                vec![job("A", "erp")],
                Cursor {
                    next_seq: 2,
                    at: None,
                },
            )
            .unwrap()[0];
        queue.try_lease("erp").unwrap().unwrap();
        queue.flush().unwrap();
    }
    let queue = open(dir.path());
    assert_eq!(queue.cursor().unwrap().next_seq, 2);
    let again = queue.try_lease("erp").unwrap().unwrap();
    assert_eq!(again.id, first);
    assert!(again.in_doubt);
    assert_eq!(
        again.attempts, 1,
        "the attempt cut short by the crash left no record"
    );
    assert_eq!(
        enqueue(&queue, &["B"]),
        vec![first + 1],
        "ids are not reused"
    );
}

#[test]
fn operators_retry_and_skip_dead_letters_only() {
    let dir = tempfile::tempdir().unwrap();
    let queue = open(dir.path());
    let first = enqueue(&queue, &["A"])[0];
    let mut leased = queue.try_lease("erp").unwrap().unwrap();
    assert!(matches!(
        queue.act(first, Action::Skip),
        Err(QueueError::WrongState { .. })
    ));
    leased.state = State::Dead;
    leased.reason = Some(Reason::new("fix_data", "bad"));
    settle(&queue, leased);
    assert_eq!(queue.ids_in(State::Dead), vec![first]);
    queue.act(first, Action::Retry).unwrap();
    assert_eq!(queue.try_lease("erp").unwrap().unwrap().id, first);
}

#[tokio::test(start_paused = true)]
async fn timers_run_retries_when_due_and_give_up_on_parked_jobs() {
    let dir = tempfile::tempdir().unwrap();
    let queue = Arc::new(open(dir.path()));
    let first = enqueue(&queue, &["A", "B"])[0];
    let mut retrying = queue.try_lease("erp").unwrap().unwrap();
    retrying.state = State::Retrying;
    retrying.due_ms = Some(queue.clock().now_ms() + 60_000);
    settle(&queue, retrying);
    let mut parked = queue.try_lease("erp").unwrap().unwrap();
    parked.state = State::Parked;
    parked.waits_for = Some(("customer".into(), "B".into()));
    parked.due_ms = Some(queue.clock().now_ms() + 3_600_000);
    settle(&queue, parked);

    let timers: Arc<dyn Queue> = queue.clone();
    tokio::spawn(async move {
        timers
            .run_timers(|_| Reason::new("dependency_timeout", "never came"))
            .await;
    });
    tokio::time::sleep(std::time::Duration::from_secs(59)).await;
    assert!(queue.try_lease("erp").unwrap().is_none(), "not due yet");
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    assert_eq!(
        queue.try_lease("erp").unwrap().unwrap().id,
        first,
        "due after 60 s"
    );
    tokio::time::sleep(std::time::Duration::from_secs(3600)).await;
    let gave_up = queue.get(first + 1).unwrap();
    assert_eq!(gave_up.state, State::Dead);
    assert_eq!(gave_up.reason.unwrap().code, "dependency_timeout");
}

#[test]
fn after_a_clean_close_open_jobs_are_not_in_doubt() {
    let dir = tempfile::tempdir().unwrap();
    {
        let queue = open(dir.path());
        enqueue(&queue, &["A"]);
        queue.close_clean().unwrap();
    }
    {
        let queue = open(dir.path());
        assert!(!queue.try_lease("erp").unwrap().unwrap().in_doubt);
        // No clean close this time: the job may have been in flight.
    }
    let queue = open(dir.path());
    assert!(queue.try_lease("erp").unwrap().unwrap().in_doubt);
}

/// Pages of `limit` through `scope` until `next_before` runs out: the ids in page order.
fn all_pages(
    queue: &Embedded,
    scope: impl Fn() -> Scope<'static>,
    keep: impl Fn(&Job) -> bool,
) -> Vec<JobId> {
    let (mut ids, mut before) = (Vec::new(), None);
    loop {
        let page = queue.list(scope(), before, 3, &keep).unwrap();
        ids.extend(page.jobs.iter().map(|job| job.id));
        match page.next_before {
            Some(next) => before = Some(next),
            None => return ids,
        }
    }
}

#[test]
fn listings_page_newest_first_through_every_scope() {
    let dir = tempfile::tempdir().unwrap();
    let queue = open(dir.path());
    let keys = ["A", "B", "C", "A", "B", "C", "A", "B", "C", "A"];
    let first = enqueue(&queue, &keys)[0];
    // The heads of A, B and C go dead; the rest stay ready.
    for _ in 0..3 {
        let mut leased = queue.try_lease("erp").unwrap().unwrap();
        leased.state = State::Dead;
        leased.reason = Some(Reason::new("fix_data", "bad"));
        settle(&queue, leased);
    }
    let newest_first = |filter: &dyn Fn(u64) -> bool| -> Vec<JobId> {
        (0..10)
            .rev()
            .filter(|n| filter(*n))
            .map(|n| first + n)
            .collect()
    };
    assert_eq!(
        all_pages(&queue, || Scope::All { since_ms: None }, |_| true),
        newest_first(&|_| true)
    );
    assert_eq!(
        all_pages(&queue, || Scope::State(State::Dead), |_| true),
        newest_first(&|n| n < 3)
    );
    assert_eq!(
        all_pages(&queue, || Scope::State(State::Ready), |_| true),
        newest_first(&|n| n >= 3)
    );
    assert_eq!(
        all_pages(&queue, || Scope::Record("A"), |_| true),
        newest_first(&|n| keys[n as usize] == "A")
    );
    assert_eq!(
        all_pages(
            &queue,
            || Scope::State(State::Ready),
            |job| job.order_key == "B"
        ),
        newest_first(&|n| n >= 3 && keys[n as usize] == "B")
    );
    let groups = queue.groups(State::Dead, 2);
    assert_eq!(groups["fix_data"], (3, vec![first + 2, first + 1]));
    let counts = queue.counts();
    assert_eq!(counts[&(Arc::from("erp"), State::Dead)], 3);
    assert_eq!(counts[&(Arc::from("erp"), State::Ready)], 7);
    assert_eq!(queue.oldest_open(), Some(first + 3));
}

#[test]
fn a_scan_stops_after_its_budget_and_says_where_to_go_on() {
    let dir = tempfile::tempdir().unwrap();
    let queue = open(dir.path());
    let count = SCAN_BUDGET as u64 + 5;
    let jobs = (0..count).map(|_| job("A", "erp")).collect();
    let first = queue.enqueue(jobs, Cursor::default()).unwrap()[0];
    let page = queue
        .list(Scope::All { since_ms: None }, None, 50, &|_| false)
        .unwrap();
    assert!(page.jobs.is_empty());
    let next = page.next_before.expect("more to scan");
    assert_eq!(
        next,
        first + 5,
        "the next page starts below the last job scanned"
    );
    let rest = queue
        .list(Scope::All { since_ms: None }, Some(next), 50, &|job| {
            job.id < first + 2
        })
        .unwrap();
    assert_eq!(
        rest.jobs.iter().map(|j| j.id).collect::<Vec<_>>(),
        vec![first + 1, first]
    );
    assert_eq!(rest.next_before, None);
}

/// The schedule as the queue holds it: every entry in id order.
fn schedule(queue: &Embedded) -> Vec<(JobId, Entry)> {
    let inner = queue.inner();
    inner
        .lines
        .entries()
        .map(|(id, e)| (id, e.clone()))
        .collect()
}

/// A queue with a job in each state the schedule keeps: ready (one in doubt), retrying with a
/// due time, parked on a customer, held, dead with a reason.
fn queue_in_every_state(dir: &std::path::Path) -> Embedded {
    let queue = open(dir);
    enqueue(&queue, &["A", "B", "C", "D", "E", "F"]);
    let later = Some(i64::MAX / 2);
    let reason = |code: &str| Some(Reason::new(code, "why"));
    let changes: [&dyn Fn(&mut Job); 5] = [
        &|job| (job.state, job.due_ms, job.reason) = (State::Retrying, later, reason("erp_down")),
        &|job| {
            (job.state, job.due_ms, job.reason) = (State::Parked, later, reason("waiting"));
            job.waits_for = Some(("customer".into(), "001".into()));
        },
        &|job| (job.state, job.due_ms, job.reason) = (State::Held, later, reason("payment")),
        &|job| (job.state, job.reason) = (State::Dead, reason("invalid_field")),
        &|job| (job.state, job.in_doubt) = (State::Ready, true),
    ];
    for change in changes {
        let mut leased = queue.try_lease("erp").unwrap().unwrap();
        change(&mut leased);
        settle(&queue, leased);
    }
    queue
}

#[test]
fn a_clean_close_leaves_a_snapshot_the_next_open_reads_instead_of_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let queue_dir = dir.path().join("queue");
    let before = {
        let queue = queue_in_every_state(dir.path());
        let before = schedule(&queue);
        assert_eq!(before.len(), 6);
        queue.close_clean().unwrap();
        before
    };
    assert!(snapshot::path(&queue_dir).exists());
    let queue = open(dir.path());
    let mut after = schedule(&queue);
    assert_eq!(after, before, "nothing in doubt after a clean close");
    assert_eq!(queue.ids_in(State::Parked).len(), 1);
    assert_eq!(queue.groups(State::Dead, 10)["invalid_field"].0, 1);
    drop(queue);
    // Without the marker (a crash), the same schedule comes back with ready jobs in doubt.
    let queue = open(dir.path());
    after = schedule(&queue);
    assert_eq!(after.len(), before.len());
    assert!(
        after
            .iter()
            .all(|(_, e)| e.in_doubt == matches!(e.state, State::Ready | State::Retrying))
    );
}

#[test]
fn after_a_crash_the_log_after_the_snapshot_is_replayed_and_a_damaged_snapshot_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let snap = snapshot::path(&dir.path().join("queue"));
    let expected = {
        let queue = queue_in_every_state(dir.path());
        queue.close_clean().unwrap();
        drop(queue);
        // Open (reads the snapshot), add a job, and crash: no clean close.
        let queue = open(dir.path());
        enqueue(&queue, &["G"]);
        queue.flush().unwrap();
        schedule(&queue)
    };
    let queue = open(dir.path());
    let after = schedule(&queue);
    assert_eq!(
        after.len(),
        expected.len(),
        "the snapshot and the log after it"
    );
    let (_, added) = after
        .iter()
        .find(|(_, e)| &*e.key == "G")
        .expect("the job added after the snapshot was taken");
    assert!(
        added.in_doubt,
        "after a crash a ready job may have been in flight"
    );
    queue.close_clean().unwrap();
    drop(queue);

    // A damaged file: the checksum fails, and the whole log is replayed (it still starts at 1).
    let mut raw = std::fs::read(&snap).unwrap();
    let middle = raw.len() / 2;
    raw[middle] ^= 0xff;
    std::fs::write(&snap, raw).unwrap();
    let queue = open(dir.path());
    assert_eq!(schedule(&queue).len(), expected.len());
}

#[test]
fn drained_segments_go_and_an_old_dead_letter_is_copied_forward_and_can_be_resubmitted() {
    let dir = tempfile::tempdir().unwrap();
    let options = Options {
        segment_bytes: 4096,
        snapshot_records: 1,
        snapshot_every: std::time::Duration::ZERO,
    };
    let segments = |dir: &std::path::Path| -> Vec<u64> {
        crate::journal::segment::list(&dir.join("queue"))
            .unwrap()
            .into_iter()
            .map(|(_, first)| first)
            .collect()
    };
    let queue = open_with(dir.path(), options);
    // The first job becomes a dead letter in the first segment.
    let dead = enqueue(&queue, &["Z"])[0];
    let mut leased = queue.try_lease("erp").unwrap().unwrap();
    leased.state = State::Dead;
    leased.reason = Some(Reason::new("fix_data", "bad"));
    settle(&queue, leased);
    let first_segment = segments(dir.path())[0];
    // A backlog that spans many segments, then drains.
    let keys: Vec<String> = (0..1000).map(|n| format!("K{n}")).collect();
    let backlog = keys.iter().map(|key| job(key, "erp")).collect();
    let cursor = Cursor {
        next_seq: 400,
        at: None,
    };
    queue.enqueue(backlog, cursor).unwrap();
    while let Some(job) = queue.try_lease("erp").unwrap() {
        done(&queue, job);
    }
    queue.flush().unwrap();
    assert!(
        segments(dir.path()).len() > 10,
        "the backlog filled many segments"
    );
    for _ in 0..3 {
        queue.upkeep(0, &|_| None).unwrap();
    }
    let left = segments(dir.path());
    assert!(
        left.len() <= 2,
        "a drained queue keeps at most two segments: {left:?}"
    );
    assert!(
        !left.contains(&first_segment),
        "the dead letter's segment is gone"
    );
    assert_eq!(queue.get(dead).unwrap().state, State::Dead);

    // The journal is about to drop the dead letter's event: the queue copies it first.
    let needed = queue
        .upkeep(u64::MAX, &|job| {
            Some(serde_json::json!({"copied": job.seq}))
        })
        .unwrap();
    assert!(
        needed > 1,
        "the journal may drop the event now (needs {needed})"
    );
    assert_eq!(
        queue.get(dead).unwrap().payload,
        Some(serde_json::json!({"copied": 1}))
    );
    drop(queue);

    // After a crash it is still there, and an operator can resubmit it.
    let queue = open_with(dir.path(), options);
    assert_eq!(queue.ids_in(State::Dead), vec![dead]);
    queue
        .resubmit(dead, Some(serde_json::json!({"fixed": true})))
        .unwrap();
    let again = queue.try_lease("erp").unwrap().unwrap();
    assert_eq!((again.id, again.resubmits), (dead, 1));
    assert_eq!(again.payload, Some(serde_json::json!({"fixed": true})));
}
