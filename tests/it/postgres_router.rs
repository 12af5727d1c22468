//! The router on the shared PostgreSQL (`postgres/router.rs`): an event whose transaction
//! commits after later events were routed is still routed, every event becomes its jobs exactly
//! once with one router at a time (another takes over when it dies), and a commit wakes the
//! router at once.

use std::sync::Arc;
use std::time::{Duration, Instant};

use handoff::envelope::Envelope;
use handoff::journal::Journal;
use handoff::postgres::Postgres;
use handoff::postgres::jobs::NewJob;
use handoff::postgres::journal::PgJournal;
use handoff::postgres::router::{PgRouter, Route};

use crate::postgres::{PgServer, event, migrated};
use crate::support::eventually;

/// One job per event, keyed by the event's CRM id.
fn one_job() -> Arc<Route> {
    Arc::new(|event: i64, envelope: &Envelope| {
        vec![
            NewJob {
                event,
                order_key: envelope.id.clone(),
                flow: "opportunity_to_sales_order".into(),
                connector: "erp".into(),
            }
            .into_job(),
        ]
    })
}

/// The jobs made so far: (event id, order key), in job id order.
async fn jobs(postgres: &Postgres) -> Vec<(i64, String)> {
    let client = postgres.client().await.unwrap();
    client
        .query("SELECT event, order_key FROM jobs ORDER BY id", &[])
        .await
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_event_committed_late_is_routed_not_skipped() {
    let server = PgServer::start();
    let pg = migrated(&server).await;
    let router = PgRouter::new(pg.clone(), "a".into(), Duration::from_secs(5));
    let route = one_job();

    // T1 stores an event (taking the lower id) and stays open; T2 stores one and commits.
    let mut slow = pg.client().await.unwrap();
    let t1 = slow.transaction().await.unwrap();
    let store =
        "INSERT INTO events (source, event_id, envelope) VALUES ('crm', $1, $2) RETURNING id";
    let early: i64 = t1
        .query_one(store, &[&"early", &Journal::encode(&event("early"))])
        .await
        .unwrap()
        .get(0);
    let later: i64 = pg
        .client()
        .await
        .unwrap()
        .query_one(store, &[&"later", &Journal::encode(&event("later"))])
        .await
        .unwrap()
        .get(0);
    assert!(early < later);

    // While T1 runs, nothing after it is routed (routing "later" now would move the cursor past
    // "early", which a reader by id alone would then skip).
    assert_eq!(router.round(route.as_ref(), 100).await.unwrap(), 0);
    assert!(jobs(&pg).await.is_empty());
    t1.commit().await.unwrap();
    assert_eq!(router.round(route.as_ref(), 100).await.unwrap(), 2);
    assert_eq!(
        jobs(&pg).await,
        vec![(early, "early".to_owned()), (later, "later".to_owned())]
    );
    // Routed once: another round finds nothing new.
    assert_eq!(router.round(route.as_ref(), 100).await.unwrap(), 0);
    assert_eq!(jobs(&pg).await.len(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn one_router_at_a_time_routes_every_event_once_and_a_commit_wakes_it() {
    let server = PgServer::start();
    let pg = migrated(&server).await;
    let lease = Duration::from_millis(1500);
    // Both would poll only every 10 s: anything faster is the notification.
    let idle = Duration::from_secs(10);
    let a = Arc::new(PgRouter::new(pg.clone(), "a".into(), lease));
    let b = Arc::new(PgRouter::new(pg.clone(), "b".into(), lease));
    let a_task = a.clone().run(one_job(), idle);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let b_task = b.clone().run(one_job(), idle);
    tokio::time::sleep(Duration::from_millis(300)).await;

    let journal = PgJournal::start(pg.clone(), Duration::from_secs(3600));
    let sent = Instant::now();
    journal.append(vec![event("first")]).await.unwrap();
    eventually(5, "the first event routed", async || {
        (jobs(&pg).await.len() == 1).then_some(())
    })
    .await;
    let woke = sent.elapsed();
    println!("routed {woke:?} after the commit (routers poll every {idle:?})");
    assert!(woke < Duration::from_secs(2), "woken by NOTIFY: {woke:?}");

    // 200 more, in 20 batches, while the router that holds the role dies halfway.
    for n in 0..20 {
        let batch: Vec<Envelope> = (0..10).map(|k| event(&format!("e{n:02}-{k}"))).collect();
        journal.append(batch).await.unwrap();
        if n == 10 {
            a_task.abort();
            b_task.abort();
            // Whoever held the role is gone; b comes back alone (polling each second), and
            // takes the role once the dead one's lease runs out.
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let b_again = b.clone().run(one_job(), Duration::from_secs(1));
    eventually(20, "every event routed", async || {
        (jobs(&pg).await.len() == 201).then_some(())
    })
    .await;
    let made = jobs(&pg).await;
    let mut events: Vec<i64> = made.iter().map(|(event, _)| *event).collect();
    events.sort();
    events.dedup();
    assert_eq!(events.len(), 201, "one job per event, none twice");
    b_again.abort();
}

#[tokio::test(flavor = "multi_thread")]
async fn one_instance_polls_an_erp_at_a_time_and_the_next_goes_on_from_its_cursor() {
    use handoff::postgres::roles;
    let server = PgServer::start();
    let pg = migrated(&server).await;
    let lease = Duration::from_millis(800);
    let start = serde_json::json!(null);
    // One poll "round": take the role, move the cursor to `to`, commit.
    let poll = async |me: &str, to: i64| -> Option<serde_json::Value> {
        let mut client = pg.client().await.unwrap();
        let tx = client.transaction().await.unwrap();
        let cursor = roles::take(&tx, "erp", me, lease, &start).await.unwrap()?;
        assert!(
            roles::save(&tx, "erp", me, &serde_json::json!(to))
                .await
                .unwrap()
        );
        tx.commit().await.unwrap();
        Some(cursor)
    };
    assert_eq!(poll("a", 10).await, Some(serde_json::Value::Null));
    assert_eq!(poll("b", 99).await, None, "a polls the ERP now");
    assert_eq!(poll("a", 20).await, Some(serde_json::json!(10)));
    // a stops; once its lease runs out, b goes on from a's cursor.
    tokio::time::sleep(lease + Duration::from_millis(200)).await;
    assert_eq!(poll("b", 30).await, Some(serde_json::json!(20)));
    assert_eq!(poll("a", 99).await, None, "b polls now");
}

#[tokio::test(flavor = "multi_thread")]
async fn events_are_routed_in_transaction_order_across_an_xid_of_more_digits() {
    let server = PgServer::start();
    let pg = migrated(&server).await;
    let router = PgRouter::new(pg.clone(), "a".into(), Duration::from_secs(5));
    let route = one_job();
    let client = pg.client().await.unwrap();
    let store = "INSERT INTO events (source, event_id, envelope) VALUES ('crm', $1, $2)";
    // Events stored one transaction each until the transaction ids have one more digit
    // (a fresh cluster starts in the hundreds): their text would sort "1000" before "999".
    let start = next_xid(&client).await;
    let digits = |n: i64| n.to_string().len();
    let mut n = 0;
    while digits(next_xid(&client).await) == digits(start) || n < 5 {
        let id = format!("e{n:05}");
        client
            .execute(store, &[&id, &Journal::encode(&event(&id))])
            .await
            .unwrap();
        n += 1;
        if n % 100 == 0 {
            // A round now and then, so the cursor sits below the boundary when it is crossed.
            router.round(route.as_ref(), 1000).await.unwrap();
        }
    }
    for extra in 0..5 {
        let id = format!("f{extra}");
        client
            .execute(store, &[&id, &Journal::encode(&event(&id))])
            .await
            .unwrap();
    }
    while router.round(route.as_ref(), 64).await.unwrap() > 0 {}
    let routed = jobs(&pg).await;
    assert_eq!(routed.len(), n + 5, "every event routed once");
    let events: Vec<i64> = routed.iter().map(|(event, _)| *event).collect();
    let mut sorted = events.clone();
    sorted.sort_unstable();
    assert_eq!(events, sorted, "in the order they were stored");
}

/// A new transaction id (asking for it takes one).
async fn next_xid(client: &deadpool_postgres::Object) -> i64 {
    client
        .query_one("SELECT pg_current_xact_id()::text::bigint", &[])
        .await
        .unwrap()
        .get(0)
}

/// The events a round turned into jobs are kept for this instance's leases of those jobs (a
/// lease then need not read them again); an event that made no job is not kept.
#[tokio::test(flavor = "multi_thread")]
async fn the_events_that_made_jobs_are_kept_for_the_leases() {
    let server = PgServer::start();
    let pg = migrated(&server).await;
    let router =
        PgRouter::new(pg.clone(), "a".into(), Duration::from_secs(5)).keeping_events_in(pg.clone());
    let only_orders: Arc<Route> =
        Arc::new(
            |id: i64, envelope: &Envelope| match envelope.id.starts_with("order") {
                true => one_job()(id, envelope),
                false => Vec::new(),
            },
        );
    let client = pg.client().await.unwrap();
    let mut stored = Vec::new();
    for name in ["order-1", "note-1"] {
        let record = Journal::encode(&event(name));
        let id: i64 = client
            .query_one(
                "INSERT INTO events (source, event_id, envelope) VALUES ('crm', $1, $2) \
                 RETURNING id",
                &[&name, &record],
            )
            .await
            .unwrap()
            .get(0);
        stored.push((id as u64, record));
    }
    assert_eq!(router.round(only_orders.as_ref(), 100).await.unwrap(), 2);
    let (order, note) = (&stored[0], &stored[1]);
    assert_eq!(pg.take_event(order.0).as_deref(), Some(&order.1[..]));
    assert_eq!(pg.take_event(note.0), None, "no job, not kept");
}
