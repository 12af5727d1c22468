//! Jobs on the shared PostgreSQL with several instances (`postgres/jobs.rs` on
//! `postgres/leases.rs`): every job delivered, per-record order at the sink, an instance killed
//! mid-delivery replaced within a lease period with its in-flight jobs repeated (same job, so
//! the same idempotency key), and a paused instance's settle refused with none of its effects
//! written.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use handoff::journal::Position;
use handoff::postgres::Postgres;
use handoff::postgres::jobs::{Leased, NewJob, PgJobs};
use handoff::postgres::leases::Leases;
use handoff::postgres::records::{PgRecords, RecordReads};
use handoff::queue::records::{Applied, Effect, Xref};
use handoff::queue::{Settle, State};

use crate::postgres::{PgServer, migrated};
use crate::support::eventually;

const PERIOD: Duration = Duration::from_millis(1500);

async fn scalar(postgres: &Postgres, sql: &str) -> i64 {
    let client = postgres.client().await.unwrap();
    client.query_one(sql, &[]).await.unwrap().get(0)
}

/// A won opportunity's job for `record` to the ERP, as the router makes it.
fn order_job(event: i64, record: &str) -> handoff::queue::Job {
    NewJob {
        event,
        order_key: record.into(),
        flow: "opportunity_to_sales_order".into(),
        connector: "erp".into(),
    }
    .into_job()
}

/// A delivery that succeeded, leaving `effects` behind.
fn done(leased: &Leased, effects: Vec<Effect>) -> Settle {
    let mut job = leased.job.clone();
    job.state = State::Done;
    Settle {
        job,
        attempt: None,
        effects,
        releases: Vec::new(),
    }
}

/// What reached the "ERP": (record, job id, instance), in arrival order.
type Sink = Arc<Mutex<Vec<(String, i64, String)>>>;

/// One instance: its leases and a worker that delivers to `sink`.
fn instance(
    postgres: Arc<Postgres>,
    name: &str,
    sink: Sink,
) -> (tokio::task::JoinHandle<()>, tokio::task::JoinHandle<()>) {
    let leases = Arc::new(Leases::new(postgres.clone(), name.into(), PERIOD));
    let renewing = leases.clone().run();
    let me = name.to_owned();
    let working = tokio::spawn(async move {
        let jobs = PgJobs::new(&postgres);
        loop {
            let leased = jobs
                .lease(&me, &leases.held(), "erp", 8, &[])
                .await
                .unwrap();
            if leased.is_empty() {
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
            for job in leased {
                sink.lock().unwrap().push((
                    job.job.order_key.clone(),
                    job.job.id as i64,
                    me.clone(),
                ));
                tokio::time::sleep(Duration::from_millis(2)).await;
                jobs.settle(&me, &job, &done(&job, Vec::new()))
                    .await
                    .unwrap();
            }
        }
    });
    (renewing, working)
}

#[tokio::test(flavor = "multi_thread")]
async fn three_instances_deliver_every_job_in_record_order_and_survive_a_kill() {
    let server = PgServer::start();
    let pg = migrated(&server).await;
    // 40 records × 15 versions, stored version by version (so ids grow with the version).
    let mut expected: HashMap<String, Vec<i64>> = HashMap::new();
    for version in 0..15 {
        let batch: Vec<NewJob> = (0..40)
            .map(|record| NewJob {
                event: version * 100 + record,
                order_key: format!("006R{record:03}"),
                flow: "opportunity_to_sales_order".into(),
                connector: "erp".into(),
            })
            .collect();
        let jobs: Vec<_> = batch.iter().cloned().map(NewJob::into_job).collect();
        let ids = PgJobs::new(&pg).enqueue(&jobs).await.unwrap();
        for (job, id) in batch.iter().zip(ids) {
            expected
                .entry(job.order_key.clone())
                .or_default()
                .push(id as i64);
        }
    }
    let sink: Sink = Arc::default();
    let mut running: Vec<_> = ["a", "b", "c"]
        .iter()
        .map(|name| instance(pg.clone(), name, sink.clone()))
        .collect();
    eventually(30, "c under way", async || {
        let by_c = sink.lock().unwrap().iter().filter(|d| d.2 == "c").count();
        (by_c >= 20).then_some(())
    })
    .await;
    // kill -9 c: its tasks stop wherever they are; what it had leased stays leased.
    let (renewing, working) = running.pop().unwrap();
    renewing.abort();
    working.abort();
    let killed_at = sink.lock().unwrap().len();

    eventually(60, "every job delivered", async || {
        (scalar(&pg, "SELECT count(*) FROM jobs").await == 0).then_some(())
    })
    .await;
    for (renewing, working) in running {
        renewing.abort();
        working.abort();
    }
    let delivered = sink.lock().unwrap().clone();
    println!(
        "{} deliveries for 600 jobs; c killed after {killed_at}",
        delivered.len()
    );
    // Per record: the jobs arrived in id order; a repeat is the same job again, never an
    // earlier one after a later one.
    let mut seen: HashMap<&str, Vec<i64>> = HashMap::new();
    for (record, id, _) in &delivered {
        let ids = seen.entry(record).or_default();
        if let Some(last) = ids.last() {
            assert!(id >= last, "{record}: job {id} after {last}");
        }
        if ids.last() != Some(id) {
            ids.push(*id);
        }
    }
    for (record, ids) in &expected {
        assert_eq!(
            seen.get(record.as_str()),
            Some(ids),
            "{record}: every job, in order"
        );
    }
    // Only what c had in flight is repeated, by the instance that took its partition over.
    let mut times: BTreeMap<i64, Vec<&str>> = BTreeMap::new();
    for (_, id, by) in &delivered {
        times.entry(*id).or_default().push(by);
    }
    let repeated: Vec<_> = times.iter().filter(|(_, by)| by.len() > 1).collect();
    assert!(
        repeated.len() <= 8,
        "at most c's last lease repeated: {repeated:?}"
    );
    for (id, by) in &repeated {
        assert_eq!(by[0], "c", "job {id}: first by c, then {by:?}");
        assert!(by[1..].iter().all(|b| *b != "c"));
    }
    // Every job settled once: moved to the finished history.
    assert_eq!(
        scalar(&pg, "SELECT count(DISTINCT id) FROM finished").await,
        600
    );
    assert_eq!(scalar(&pg, "SELECT count(*) FROM finished").await, 600);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_paused_instance_cannot_settle_what_the_new_owner_runs_again() {
    let server = PgServer::start();
    let pg = migrated(&server).await;
    let ids = PgJobs::new(&pg)
        .enqueue(&[order_job(1, "006PAUSE")])
        .await
        .unwrap();
    let a = Leases::new(pg.clone(), "a".into(), PERIOD);
    a.round().await.unwrap();
    let jobs = PgJobs::new(&pg);
    let first = jobs.lease("a", &a.held(), "erp", 1, &[]).await.unwrap();
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].job.id, ids[0]);
    assert!(!first[0].job.in_doubt);

    // a is stopped past its lease (no renewals); b takes the partition over and runs the job
    // again, in doubt, as the same job (the same idempotency key).
    let b = Arc::new(Leases::new(pg.clone(), "b".into(), PERIOD));
    let b_task = b.clone().run();
    let again = eventually(15, "b leases the job again", async || {
        let leased = jobs.lease("b", &b.held(), "erp", 1, &[]).await.unwrap();
        leased.into_iter().next()
    })
    .await;
    assert_eq!(again.job.id, first[0].job.id);
    assert_eq!(again.job.idempotency_key(), first[0].job.idempotency_key());
    assert!(again.job.in_doubt, "{again:?}");
    assert!(again.epoch > first[0].epoch);

    // a wakes up and tries to settle with what its delivery left behind: refused, and none of
    // it is written; b's settle goes through with its own.
    let left_behind = |by: &str| {
        vec![
            Effect::Xref(Xref {
                system: "erp".into(),
                kind: "sales_order".into(),
                crm_id: "006PAUSE".into(),
                external_id: format!("SO-{by}"),
                flow: "opportunity_to_sales_order".into(),
                job: ids[0],
                at_ms: 0,
            }),
            Effect::Status {
                order: "006PAUSE".into(),
                status: format!("confirmed by {by}"),
            },
        ]
    };
    let records = PgRecords::new(&pg);
    let (by_a, by_b) = (
        done(&first[0], left_behind("a")),
        done(&again, left_behind("b")),
    );
    assert!(!jobs.settle("a", &first[0], &by_a).await.unwrap());
    assert_eq!(
        records
            .xref("erp", "sales_order", "006PAUSE")
            .await
            .unwrap(),
        None
    );
    assert_eq!(records.status("006PAUSE").await.unwrap(), None);
    assert!(jobs.settle("b", &again, &by_b).await.unwrap());
    let xref = records
        .xref("erp", "sales_order", "006PAUSE")
        .await
        .unwrap();
    assert_eq!(xref.map(|x| x.external_id), Some("SO-b".to_owned()));
    assert_eq!(
        records.status("006PAUSE").await.unwrap().as_deref(),
        Some("confirmed by b")
    );
    assert_eq!(scalar(&pg, "SELECT count(*) FROM jobs").await, 0);
    assert_eq!(scalar(&pg, "SELECT count(*) FROM finished").await, 1);
    b_task.abort();
}

/// An instance whose lease ran out (PostgreSQL restarted, say) takes its partitions again
/// under new epochs and runs the jobs again, while the first runs' settles still wait to be
/// written: when both come in one batch, in either order, each old lease's settle is refused
/// and each new one's written (both refused left the job leased by no one, for good).
#[tokio::test(flavor = "multi_thread")]
async fn two_settles_of_one_job_in_a_batch_are_each_checked_against_their_own_lease() {
    let server = PgServer::start();
    let pg = migrated(&server).await;
    let records = ["006AGAIN", "006TWICE"];
    PgJobs::new(&pg)
        .enqueue(&records.map(|record| order_job(1, record)))
        .await
        .unwrap();
    let a = Leases::new(pg.clone(), "a".into(), PERIOD);
    a.round().await.unwrap();
    let jobs = PgJobs::new(&pg);
    let first = jobs.lease("a", &a.held(), "erp", 2, &[]).await.unwrap();
    // No renewal for longer than the leases last; then a takes its partitions again.
    tokio::time::sleep(PERIOD).await;
    a.round().await.unwrap();
    let again = jobs.lease("a", &a.held(), "erp", 2, &[]).await.unwrap();
    assert_eq!((first.len(), again.len()), (2, 2));
    for (old, new) in first.iter().zip(&again) {
        assert_eq!(old.job.id, new.job.id);
        assert!(new.epoch > old.epoch, "{new:?} after {old:?}");
    }
    let settled = |leased: &Leased, by: &str| {
        let order = leased.job.order_key.clone();
        let status = format!("by {by}");
        (
            leased.clone(),
            done(leased, vec![Effect::Status { order, status }]),
        )
    };
    let batch = [
        settled(&first[0], "old"),
        settled(&again[0], "new"),
        settled(&again[1], "new"),
        settled(&first[1], "old"),
    ];
    let written = jobs.settle_all("a", &batch).await.unwrap();
    assert_eq!(
        written,
        [false, true, true, false],
        "only the current leases' settles"
    );
    assert_eq!(scalar(&pg, "SELECT count(*) FROM jobs").await, 0);
    assert_eq!(scalar(&pg, "SELECT count(*) FROM finished").await, 2);
    let status = PgRecords::new(&pg);
    for record in records {
        assert_eq!(
            status.status(record).await.unwrap().as_deref(),
            Some("by new")
        );
    }
}

/// When an instance takes its own partition again under a new epoch (PostgreSQL was gone past
/// the lease) while one of its workers still runs a job there, the job leased again is not
/// handed to a second worker: the running one settles it under the new lease.
#[tokio::test(flavor = "multi_thread")]
async fn a_job_leased_again_while_its_run_goes_on_is_settled_by_that_run() {
    use handoff::queue::Queue;
    let server = PgServer::start();
    let pg = migrated(&server).await;
    PgJobs::new(&pg)
        .enqueue(&[order_job(1, "006RUNNING")])
        .await
        .unwrap();
    let leases = Arc::new(Leases::new(pg.clone(), "a".into(), PERIOD));
    leases.round().await.unwrap();
    let queue = Arc::new(handoff::postgres::queue::PgQueue::new(
        pg.clone(),
        leases.clone(),
        handoff::clock::Clock::new(),
    ));
    tokio::spawn(queue.clone().commit_settles());
    let mut running = queue.try_lease("erp").unwrap().expect("the job");
    tokio::time::sleep(PERIOD).await;
    leases.round().await.unwrap();
    // As the instance does when its partitions change: the next try queries again.
    queue.wake_all();
    assert_eq!(
        scalar(
            &pg,
            "SELECT count(*) FROM jobs WHERE state = 'ready' AND in_doubt"
        )
        .await,
        1,
        "made ready again when the partition was taken"
    );
    assert!(
        queue.try_lease("erp").unwrap().is_none(),
        "not run twice here"
    );
    running.state = State::Done;
    queue
        .settle(Settle {
            job: running,
            attempt: None,
            effects: Vec::new(),
            releases: Vec::new(),
        })
        .unwrap();
    eventually(
        10,
        "the run's settle written under the new lease",
        async || (scalar(&pg, "SELECT count(*) FROM finished").await == 1).then_some(()),
    )
    .await;
    assert_eq!(scalar(&pg, "SELECT count(*) FROM jobs").await, 0);
}

/// A lease query that found fewer jobs than it asked for is not sent again until something
/// changes for this instance (new jobs, a settle, a due timer, partitions taken): the workers
/// woken meanwhile wait. A settle counts as a change, so the next job of its record is leased.
#[tokio::test(flavor = "multi_thread")]
async fn a_lease_that_found_every_job_is_not_asked_again_until_something_changes() {
    use handoff::queue::Queue;
    let server = PgServer::start();
    let pg = migrated(&server).await;
    let leases = Arc::new(Leases::new(pg.clone(), "a".into(), PERIOD));
    leases.round().await.unwrap();
    let queue = Arc::new(handoff::postgres::queue::PgQueue::new(
        pg.clone(),
        leases.clone(),
        handoff::clock::Clock::new(),
    ));
    tokio::spawn(queue.clone().commit_settles());
    assert!(queue.try_lease("erp").unwrap().is_none());
    assert_eq!(queue.lease_queries(), 1);
    // Stored without the wake-up that new jobs bring (another instance's NOTIFY): no query.
    let ids = PgJobs::new(&pg)
        .enqueue(&[order_job(1, "006LINE"), order_job(2, "006LINE")])
        .await
        .unwrap();
    assert!(queue.try_lease("erp").unwrap().is_none());
    assert_eq!(
        queue.lease_queries(),
        1,
        "nothing changed that this instance knows of"
    );
    queue.wake_all();
    let first = queue
        .try_lease("erp")
        .unwrap()
        .expect("the record's first job");
    assert_eq!((first.id, queue.lease_queries()), (ids[0], 2));
    // The second waits behind the first: asked again, the lease finds nothing more.
    assert!(queue.try_lease("erp").unwrap().is_none());
    assert_eq!(queue.lease_queries(), 2);
    let mut settled = first;
    settled.state = State::Done;
    queue
        .settle(Settle {
            job: settled,
            attempt: None,
            effects: Vec::new(),
            releases: Vec::new(),
        })
        .unwrap();
    let next = eventually(
        10,
        "the next job leased once the settle is written",
        async || queue.try_lease("erp").unwrap(),
    )
    .await;
    assert_eq!(next.id, ids[1]);
}

/// A lease writes nothing: the rows stay as they were, not even locked (the instance keeps
/// the lease in memory), and the attempt it counts rides in the job handed out. The next lease
/// skips the jobs named as in flight, while a record's later job still waits behind its
/// earlier one in flight.
#[tokio::test(flavor = "multi_thread")]
async fn a_lease_writes_nothing_and_the_next_skips_what_is_in_flight() {
    let server = PgServer::start();
    let pg = migrated(&server).await;
    let ids = PgJobs::new(&pg)
        .enqueue(&[
            order_job(1, "006FIRST"),
            order_job(2, "006OTHER"),
            order_job(3, "006FIRST"),
        ])
        .await
        .unwrap();
    let (first, other, later) = (ids[0] as i64, ids[1] as i64, ids[2] as i64);
    let leases = Leases::new(pg.clone(), "a".into(), PERIOD);
    leases.round().await.unwrap();
    let jobs = PgJobs::new(&pg);
    let rows = async || {
        let client = pg.client().await.unwrap();
        client
            .query_one(
                "SELECT string_agg(concat_ws(' ', id, ctid, xmin, xmax, state, attempts), '; ' \
                 ORDER BY id) FROM jobs",
                &[],
            )
            .await
            .unwrap()
            .get::<_, String>(0)
    };
    let before = rows().await;
    assert!(before.contains(" 0 ready 0"), "{before}");
    let leased_ids = async |in_flight: &[i64]| -> Vec<i64> {
        let leased = jobs
            .lease("a", &leases.held(), "erp", 10, in_flight)
            .await
            .unwrap();
        assert!(leased.iter().all(|l| l.job.attempts == 1), "{leased:?}");
        leased.iter().map(|l| l.job.id as i64).collect()
    };
    assert_eq!(leased_ids(&[]).await, [first, other]);
    assert_eq!(rows().await, before, "the rows as they were, unlocked");
    assert_eq!(leased_ids(&[first, other]).await, Vec::<i64>::new());
    assert_eq!(leased_ids(&[first]).await, [other]);
    let leased = jobs
        .lease("a", &leases.held(), "erp", 1, &[])
        .await
        .unwrap();
    assert!(
        jobs.settle("a", &leased[0], &done(&leased[0], Vec::new()))
            .await
            .unwrap()
    );
    assert_eq!(leased_ids(&[other]).await, [later]);
}

/// A partition given back cleanly (nothing in flight) moves without doubt; taken from an
/// owner whose lease ran out, or given back with a job still in flight, its runnable jobs
/// run again in doubt (any of them may have been under way there), and a retry not yet due
/// is left as it was.
#[tokio::test(flavor = "multi_thread")]
async fn a_partition_moves_in_doubt_only_when_its_owner_may_have_had_jobs_in_flight() {
    use handoff::postgres::queue::PgQueue;
    use handoff::queue::Queue;
    let server = PgServer::start();
    let pg = migrated(&server).await;
    let ids = PgJobs::new(&pg)
        .enqueue(&[order_job(1, "006READY"), order_job(2, "006LATER")])
        .await
        .unwrap();
    let client = pg.client().await.unwrap();
    client
        .execute(
            "UPDATE jobs SET state = 'retrying', due_at = now() + interval '1 hour' WHERE id = $1",
            &[&(ids[1] as i64)],
        )
        .await
        .unwrap();
    let in_doubt = async || -> Vec<i64> {
        client
            .query("SELECT id FROM jobs WHERE in_doubt ORDER BY id", &[])
            .await
            .unwrap()
            .iter()
            .map(|row| row.get(0))
            .collect()
    };
    let instance = async |name: &str| {
        let leases = Arc::new(Leases::new(pg.clone(), name.into(), PERIOD));
        leases.round().await.unwrap();
        let queue = PgQueue::new(pg.clone(), leases.clone(), handoff::clock::Clock::new());
        (leases, queue)
    };
    // a takes every partition from no one, and gives them back cleanly: b takes them, no doubt.
    let (_, a) = instance("a").await;
    a.release_all().unwrap();
    let (b_leases, _b) = instance("b").await;
    assert_eq!(
        b_leases.held().len(),
        handoff::postgres::leases::PARTITIONS as usize
    );
    assert_eq!(in_doubt().await, Vec::<i64>::new());
    // b stops renewing; c takes its partitions after the lease ran out: the ready job is in
    // doubt, the retry not yet due is not.
    tokio::time::sleep(PERIOD).await;
    let (_, c) = instance("c").await;
    assert_eq!(in_doubt().await, [ids[0] as i64]);
    // c leases the job, then gives everything back with it still in flight: d, taking the
    // partition, runs it in doubt again (it was cleared here to see it set).
    client
        .execute("UPDATE jobs SET in_doubt = false", &[])
        .await
        .unwrap();
    let running = c.try_lease("erp").unwrap().expect("the ready job");
    assert_eq!(running.id, ids[0]);
    c.release_all().unwrap();
    let (_, _d) = instance("d").await;
    assert_eq!(in_doubt().await, [ids[0] as i64]);
}

/// The dashboard's view of a lease kept in memory: a retry under way counts and shows as
/// leased (its row says retrying), is listed among the leased jobs, and an operator's skip of
/// it is refused until its run settles; another instance sees it leased through the heartbeat.
#[tokio::test(flavor = "multi_thread")]
async fn a_retry_under_way_shows_as_leased_and_an_operator_cannot_skip_it() {
    use handoff::postgres::queue::PgQueue;
    use handoff::queue::{Action, Queue, QueueError, Scope};
    let server = PgServer::start();
    let pg = migrated(&server).await;
    let ids = PgJobs::new(&pg)
        .enqueue(&[order_job(1, "006RETRY")])
        .await
        .unwrap();
    let client = pg.client().await.unwrap();
    client
        .execute(
            "UPDATE jobs SET state = 'retrying', due_at = now() - interval '1 second'",
            &[],
        )
        .await
        .unwrap();
    let leases = Arc::new(Leases::new(pg.clone(), "a".into(), PERIOD));
    leases.round().await.unwrap();
    let queue = PgQueue::new(pg.clone(), leases.clone(), handoff::clock::Clock::new());
    let running = queue.try_lease("erp").unwrap().expect("the due retry");
    assert_eq!(running.id, ids[0]);
    let leased = (Arc::from("erp"), State::Leased);
    assert_eq!(queue.counts().get(&leased), Some(&1));
    assert_eq!(queue.get(ids[0]).unwrap().state, State::Leased);
    let page = queue
        .list(Scope::State(State::Leased), None, 10, &|_| true)
        .unwrap();
    assert_eq!(page.jobs.iter().map(|j| j.id).collect::<Vec<_>>(), ids);
    assert!(
        matches!(
            queue.act(ids[0], Action::Skip),
            Err(QueueError::WrongState { .. })
        ),
        "a skip of a job under way is refused"
    );
    // Another instance sees it after a's next heartbeat.
    leases.round().await.unwrap();
    let other = PgQueue::new(
        pg.clone(),
        Arc::new(Leases::new(pg.clone(), "b".into(), PERIOD)),
        handoff::clock::Clock::new(),
    );
    assert_eq!(other.counts().get(&leased), Some(&1));
    assert_eq!(other.get(ids[0]).unwrap().state, State::Leased);
    assert_eq!(
        scalar(&pg, "SELECT count(*) FROM jobs WHERE state = 'retrying'").await,
        1,
        "the row is as it was"
    );
}

/// The lease checks that a job is first in its record's line with a probe of `jobs_by_key` by
/// that record, whatever the statistics say. Under statistics taken while the queue was
/// nearly empty (as a queue's often are) the planner had made the check a join that read the
/// whole index for every job it walked past: leases of 0.5-1.5 s and deliveries stalled for a
/// minute in a soak under a CPU shortage, until autovacuum analysed the table.
#[tokio::test(flavor = "multi_thread")]
async fn the_lease_probes_each_jobs_line_by_its_record_even_under_stale_statistics() {
    let server = PgServer::start();
    let pg = migrated(&server).await;
    let client = pg.client().await.unwrap();
    client
        .batch_execute("ALTER TABLE jobs SET (autovacuum_enabled = false)")
        .await
        .unwrap();
    let jobs: Vec<_> = (0..600)
        .map(|n| {
            NewJob {
                event: n,
                order_key: format!("001REC{:03}", n % 150),
                flow: "account_to_customer".into(),
                connector: "erp".into(),
            }
            .into_job()
        })
        .collect();
    // Statistics taken by a vacuum that found the queue empty, as a busy queue's often are
    // (its pages kept, none of their rows alive): the planner expects no job at all.
    PgJobs::new(&pg).enqueue(&jobs).await.unwrap();
    for sql in [
        "ALTER TABLE jobs SET (vacuum_truncate = false)",
        "DELETE FROM jobs",
        "VACUUM ANALYZE jobs",
    ] {
        client.execute(sql, &[]).await.unwrap();
    }
    let ids = PgJobs::new(&pg).enqueue(&jobs).await.unwrap();
    let leases = Leases::new(pg.clone(), "a".into(), PERIOD);
    leases.round().await.unwrap();
    let plan = PgJobs::new(&pg)
        .lease_plan("a", &leases.held(), "erp", 32)
        .await
        .unwrap();
    // Each scan of `jobs` (the walk, the line's probe) has its index condition.
    let lines: Vec<&str> = plan.lines().collect();
    let scans: Vec<usize> = (0..lines.len())
        .filter(|&n| lines[n].contains("Scan") && lines[n].contains(" on jobs"))
        .collect();
    assert!(scans.len() >= 2, "{plan}");
    for n in scans {
        assert!(
            !lines[n].contains("Seq Scan")
                && lines
                    .get(n + 1)
                    .is_some_and(|next| next.contains("Index Cond")),
            "a scan of jobs without its index condition:\n{plan}"
        );
    }
    let probe = lines
        .iter()
        .position(|line| line.contains("on jobs k"))
        .unwrap_or_else(|| panic!("no probe of the line:\n{plan}"));
    assert!(
        lines[probe].contains("jobs_by_key")
            && lines[probe + 1].contains("order_key = j.order_key"),
        "the line is probed by record:\n{plan}"
    );
    // The settle's delete finds its jobs by id under the same statistics, and under fresh ones.
    let ids64: Vec<i64> = ids[..32].iter().map(|&id| id as i64).collect();
    let parts: Vec<i16> = vec![0; 32];
    let epochs: Vec<i64> = vec![1; 32];
    for statistics in ["stale", "fresh"] {
        if statistics == "fresh" {
            client.execute("ANALYZE jobs", &[]).await.unwrap();
        }
        let plan: Vec<String> = client
            .query(
                &format!("EXPLAIN {}", handoff::postgres::jobs::SETTLE_DELETE),
                &[&ids64, &parts, &epochs, &"a"],
            )
            .await
            .unwrap()
            .iter()
            .map(|row| row.get(0))
            .collect();
        let scan = plan
            .iter()
            .position(|line| line.contains("Scan") && line.contains(" on jobs"))
            .unwrap_or_else(|| panic!("{statistics}: {plan:#?}"));
        assert!(
            plan[scan].contains("Index Scan using jobs_pkey")
                && plan[scan + 1].contains("Index Cond: (id = ANY (")
                && !plan[scan + 1].contains(" AND "),
            "{statistics}: {plan:#?}"
        );
        // Once, with the array as its only condition, and first (the outer side of any join):
        // not the inner side of a join repeated per job with the whole array again.
        let jobs_scans = plan
            .iter()
            .filter(|line| line.contains("Scan") && line.contains(" on jobs"))
            .count();
        let first_scan = plan.iter().position(|line| line.contains("Scan"));
        assert_eq!(
            (jobs_scans, first_scan),
            (1, Some(scan)),
            "{statistics}: {plan:#?}"
        );
    }
    // And it leases what it should: the first job of each record's line only.
    let leased = PgJobs::new(&pg)
        .lease("a", &leases.held(), "erp", 200, &[])
        .await
        .unwrap();
    let leased: Vec<_> = leased.iter().map(|l| l.job.id).collect();
    assert_eq!(leased, ids[..150], "each record's first job, and only that");
}

/// A lease reads its jobs' events with them: the delivery path's read of the event takes the
/// copy once (the next read asks the database again); a job whose event is not stored brings
/// none.
#[tokio::test(flavor = "multi_thread")]
async fn a_lease_reads_its_jobs_events_for_the_delivery_path() {
    let server = PgServer::start();
    let pg = migrated(&server).await;
    let client = pg.client().await.unwrap();
    let stored: i64 = client
        .query_one(
            "INSERT INTO events (source, event_id, envelope) VALUES ('crm', 'evt-1', $1) \
             RETURNING id",
            &[&b"stored envelope".to_vec()],
        )
        .await
        .unwrap()
        .get(0);
    let missing = stored + 1000;
    let jobs: Vec<_> = [(stored, "006AHEAD"), (missing, "006NONE")]
        .into_iter()
        .map(|(event, key)| order_job(event, key))
        .collect();
    PgJobs::new(&pg).enqueue(&jobs).await.unwrap();
    assert_eq!(
        pg.take_event(stored as u64),
        None,
        "nothing read before a lease"
    );
    let leases = Leases::new(pg.clone(), "a".into(), PERIOD);
    leases.round().await.unwrap();
    let leased = PgJobs::new(&pg)
        .lease("a", &leases.held(), "erp", 10, &[])
        .await
        .unwrap();
    assert_eq!(leased.len(), 2);
    assert_eq!(
        pg.take_event(stored as u64).as_deref(),
        Some(&b"stored envelope"[..])
    );
    assert_eq!(pg.take_event(stored as u64), None, "taken once");
    assert_eq!(pg.take_event(missing as u64), None);
}

/// The delivery path's reads of cross-references, applied versions and echo records, asked by
/// many workers at once, are gathered into a few statements, and each worker gets the row of its own key (or
/// none when there is none).
#[tokio::test(flavor = "multi_thread")]
async fn record_reads_asked_together_are_gathered_and_each_gets_its_own_row() {
    let server = PgServer::start();
    let pg = migrated(&server).await;
    let client = pg.client().await.unwrap();
    for n in (0..200).step_by(2) {
        let xref = Xref {
            system: "erp".into(),
            kind: "customer".into(),
            crm_id: format!("001-{n}"),
            external_id: format!("C-{n}"),
            flow: "account_to_customer".into(),
            job: n,
            at_ms: 0,
        };
        let applied = Applied {
            version: Some(format!("v{n}")),
            seq: n,
            at: Position {
                segment: 0,
                offset: n,
            },
            digest: None,
        };
        client
            .execute(
                "INSERT INTO xrefs (system, kind, crm_id, external_id, detail) \
                 VALUES ('erp', 'customer', $1, $2, $3)",
                &[
                    &xref.crm_id,
                    &xref.external_id,
                    &serde_json::to_value(&xref).unwrap(),
                ],
            )
            .await
            .unwrap();
        client
            .execute(
                "INSERT INTO applied (flow, record, detail) VALUES ('orders', $1, $2)",
                &[
                    &format!("006-{n}"),
                    &serde_json::to_value(&applied).unwrap(),
                ],
            )
            .await
            .unwrap();
        let echo = handoff::queue::records::Echo {
            fields: serde_json::json!({ "StageName": format!("stage {n}") })
                .as_object()
                .unwrap()
                .clone(),
            at_ms: n as i64,
        };
        client
            .execute(
                "INSERT INTO echo (record, detail) VALUES ($1, $2)",
                &[&format!("006-{n}"), &serde_json::to_value(&echo).unwrap()],
            )
            .await
            .unwrap();
    }
    let reads = Arc::new(RecordReads::new(&pg));
    let asked: Vec<_> = (0..200u64)
        .map(|n| {
            let reads = reads.clone();
            tokio::spawn(async move {
                let xref = reads.xref("erp", "customer", &format!("001-{n}")).await;
                let applied = reads.applied("orders", &format!("006-{n}")).await;
                let echo = reads.echo(&format!("006-{n}")).await;
                (n, xref.unwrap(), applied.unwrap(), echo.unwrap())
            })
        })
        .collect();
    for task in asked {
        let (n, xref, applied, echo) = task.await.unwrap();
        match n % 2 {
            0 => {
                assert_eq!(xref.map(|x| x.external_id), Some(format!("C-{n}")));
                assert_eq!(applied.map(|a| a.version), Some(Some(format!("v{n}"))));
                let echo = echo.expect("an echo record");
                assert_eq!(
                    (echo.fields["StageName"].as_str(), echo.at_ms),
                    (Some(format!("stage {n}").as_str()), n as i64)
                );
            }
            _ => {
                assert_eq!(xref, None, "no cross-reference for 001-{n}");
                assert_eq!(applied, None, "nothing applied to 006-{n}");
                assert_eq!(echo, None, "no echo record for 006-{n}");
            }
        }
    }
    let statements = reads.statements();
    assert!(
        (3..=150).contains(&statements),
        "600 reads asked together took {statements} statements"
    );
}

/// The dashboard's search by record reads the newest jobs a window at a time, as the embedded
/// store does, instead of every settled job (no index covers the record's three fields): a
/// match beyond the window is on the next page, behind a cursor the first page gives.
#[tokio::test(flavor = "multi_thread")]
async fn a_search_by_record_reads_a_window_of_settled_jobs_at_a_time() {
    use handoff::postgres::queue::PgQueue;
    use handoff::queue::{Queue, SCAN_BUDGET, Scope};
    let server = PgServer::start();
    let pg = migrated(&server).await;
    let open = PgJobs::new(&pg)
        .enqueue(&[order_job(1, "006R"), order_job(2, "006OTHER")])
        .await
        .unwrap();
    // Settled jobs with ids 100 … 100 + SCAN_BUDGET + 2000: the record's by its key near the
    // top, by its CRM id near the bottom, below the first window.
    let top = 100 + SCAN_BUDGET as i64 + 2000;
    let (ids, bodies): (Vec<i64>, Vec<serde_json::Value>) = (100..=top)
        .map(|id| {
            let mut job = order_job(id, &format!("006K{id}"));
            job.id = id as u64;
            job.state = State::Done;
            if id == top - 50 {
                job.order_key = "006R".into();
            }
            if id == 150 {
                job.object_id = Some("006R".into());
            }
            (id, serde_json::to_value(&job).unwrap())
        })
        .unzip();
    let client = pg.client().await.unwrap();
    client
        .execute(
            "INSERT INTO finished (id, job) SELECT * FROM unnest($1::bigint[], $2::jsonb[])",
            &[&ids, &bodies],
        )
        .await
        .unwrap();
    let leases = Arc::new(Leases::new(pg.clone(), "a".into(), PERIOD));
    let queue = PgQueue::new(pg.clone(), leases, handoff::clock::Clock::new());
    let first = queue
        .list(Scope::Record("006R"), None, 10, &|_| true)
        .unwrap();
    let window_end = (top - SCAN_BUDGET as i64 + 1) as u64;
    assert_eq!(
        first.jobs.iter().map(|j| j.id).collect::<Vec<_>>(),
        vec![(top - 50) as u64]
    );
    assert_eq!(
        first.next_before,
        Some(window_end),
        "the cursor is the window's end"
    );
    let second = queue
        .list(Scope::Record("006R"), first.next_before, 10, &|_| true)
        .unwrap();
    assert_eq!(
        second.jobs.iter().map(|j| j.id).collect::<Vec<_>>(),
        vec![150, open[0]],
        "the settled job found by its CRM id, then the open one"
    );
    assert_eq!(second.next_before, None, "nothing is left below");
}
