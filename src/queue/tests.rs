use super::*;
use crate::journal::Position;

fn job(id: JobId, key: &str, connector: &str) -> Job {
    Job {
        id,
        seq: id,
        at: Position {
            segment: 1,
            offset: 0,
        },
        source: "crm".into(),
        event_id: format!("e{id}"),
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
        payload: None,
        document: None,
        mapping_version: None,
        external_id: None,
    }
}

fn open(dir: &std::path::Path) -> Queue {
    Queue::open(&Store::open(dir, None).unwrap(), Clock::new()).unwrap()
}

fn done(queue: &Queue, mut job: Job) {
    job.state = State::Done;
    queue.settle(job, None, Vec::new(), &[]).unwrap();
}

#[test]
fn one_job_per_key_at_a_time_in_arrival_order() {
    let dir = tempfile::tempdir().unwrap();
    let queue = open(dir.path());
    let first = queue.allocate_ids(3);
    let jobs = vec![
        job(first, "A", "erp"),
        job(first + 1, "A", "erp"),
        job(first + 2, "B", "erp"),
    ];
    queue.enqueue(jobs, Cursor::default()).unwrap();
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
    let first = queue.allocate_ids(2);
    queue
        .enqueue(
            vec![job(first, "A", "erp"), job(first + 1, "A", "erp")],
            Cursor::default(),
        )
        .unwrap();
    let mut leased = queue.try_lease("erp").unwrap().unwrap();
    leased.state = State::Retrying;
    leased.due_ms = Some(queue.clock.now_ms() + 60_000);
    queue.settle(leased.clone(), None, Vec::new(), &[]).unwrap();
    assert!(
        queue.try_lease("erp").unwrap().is_none(),
        "the retry blocks its key"
    );

    leased.state = State::Parked;
    leased.waits_for = Some(("customer".into(), "A".into()));
    leased.due_ms = Some(queue.clock.now_ms() + 60_000);
    queue.settle(leased, None, Vec::new(), &[]).unwrap();
    let next = queue.try_lease("erp").unwrap().unwrap();
    assert_eq!(next.id, first + 1, "a parked job does not block its key");
    let mut finished = next;
    finished.state = State::Done;
    queue
        .settle(
            finished,
            None,
            Vec::new(),
            &[("customer".into(), "A".into())],
        )
        .unwrap();
    let released = queue.try_lease("erp").unwrap().unwrap();
    assert_eq!(released.id, first, "released when its dependency is done");
}

#[test]
fn a_lease_held_at_a_crash_comes_back_in_doubt() {
    let dir = tempfile::tempdir().unwrap();
    let first;
    {
        let queue = open(dir.path());
        first = queue.allocate_ids(1);
        queue
            .enqueue(
                vec![job(first, "A", "erp")],
                Cursor {
                    next_seq: 2,
                    at: None,
                },
            )
            .unwrap();
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
    assert_eq!(queue.allocate_ids(1), first + 1, "ids are not reused");
}

#[test]
fn operators_retry_and_skip_dead_letters_only() {
    let dir = tempfile::tempdir().unwrap();
    let queue = open(dir.path());
    let first = queue.allocate_ids(1);
    queue
        .enqueue(vec![job(first, "A", "erp")], Cursor::default())
        .unwrap();
    let mut leased = queue.try_lease("erp").unwrap().unwrap();
    assert!(matches!(
        queue.act(first, Action::Skip),
        Err(QueueError::WrongState { .. })
    ));
    leased.state = State::Dead;
    leased.reason = Some(Reason::new("fix_data", "bad"));
    queue.settle(leased, None, Vec::new(), &[]).unwrap();
    assert_eq!(queue.ids_in(State::Dead), vec![first]);
    queue.act(first, Action::Retry).unwrap();
    assert_eq!(queue.try_lease("erp").unwrap().unwrap().id, first);
}

#[tokio::test(start_paused = true)]
async fn timers_run_retries_when_due_and_give_up_on_parked_jobs() {
    let dir = tempfile::tempdir().unwrap();
    let queue = std::sync::Arc::new(open(dir.path()));
    let first = queue.allocate_ids(2);
    queue
        .enqueue(
            vec![job(first, "A", "erp"), job(first + 1, "B", "erp")],
            Cursor::default(),
        )
        .unwrap();
    let mut retrying = queue.try_lease("erp").unwrap().unwrap();
    retrying.state = State::Retrying;
    retrying.due_ms = Some(queue.clock.now_ms() + 60_000);
    queue.settle(retrying, None, Vec::new(), &[]).unwrap();
    let mut parked = queue.try_lease("erp").unwrap().unwrap();
    parked.state = State::Parked;
    parked.waits_for = Some(("customer".into(), "B".into()));
    parked.due_ms = Some(queue.clock.now_ms() + 3_600_000);
    queue.settle(parked, None, Vec::new(), &[]).unwrap();

    let timers = queue.clone();
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
        let first = queue.allocate_ids(1);
        queue
            .enqueue(vec![job(first, "A", "erp")], Cursor::default())
            .unwrap();
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
