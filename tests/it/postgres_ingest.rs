//! Ingest into the shared PostgreSQL (`postgres/journal.rs`) with several instances writing at
//! once: every event stored once, a duplicate sent to two instances at once answered with the
//! same id by both, the dedupe window honoured. A real PostgreSQL (postgres.rs' harness).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use handoff::envelope::Envelope;
use handoff::journal::Appended;
use handoff::postgres::journal::PgJournal;
use handoff::postgres::{Postgres, schema};

use crate::postgres::{PASSWORD, PgServer, config, event, secrets};

/// `count` instances of handoff's journal on one database (each with its own pool).
async fn instances(server: &PgServer, count: usize, window: Duration) -> Vec<Arc<PgJournal>> {
    let lookup = secrets(server.url(PASSWORD));
    let first = Arc::new(Postgres::new(&config(), &lookup).unwrap());
    schema::migrate(&first).await.unwrap();
    (0..count)
        .map(|_| {
            let postgres = Arc::new(Postgres::new(&config(), &lookup).unwrap());
            Arc::new(PgJournal::start(postgres, window))
        })
        .collect()
}

async fn stored(server: &PgServer, event_id: Option<&str>) -> i64 {
    let lookup = secrets(server.url(PASSWORD));
    let postgres = Postgres::new(&config(), &lookup).unwrap();
    let client = postgres.client().await.unwrap();
    let row = match event_id {
        Some(id) => client
            .query_one("SELECT count(*) FROM events WHERE event_id = $1", &[&id])
            .await
            .unwrap(),
        None => client
            .query_one("SELECT count(*) FROM events", &[])
            .await
            .unwrap(),
    };
    row.get(0)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_duplicate_sent_to_two_instances_at_once_is_stored_once() {
    let server = PgServer::start();
    let journals = instances(&server, 2, Duration::from_secs(3600)).await;
    // The same event, 20 times to each instance, all at once.
    let sends: Vec<_> = (0..40)
        .map(|n| {
            let journal = journals[n % 2].clone();
            tokio::spawn(async move { journal.append(vec![event("dup-1")]).await })
        })
        .collect();
    let mut answers = Vec::new();
    for send in sends {
        answers.push(send.await.unwrap().unwrap()[0]);
    }
    let new: Vec<_> = answers
        .iter()
        .filter(|a| matches!(a, Appended::New(_)))
        .collect();
    assert_eq!(new.len(), 1, "{answers:?}");
    let Appended::New(id) = new[0] else {
        unreachable!()
    };
    assert!(
        answers
            .iter()
            .all(|a| *a == Appended::New(*id) || *a == Appended::Duplicate(*id)),
        "every answer names the one stored copy: {answers:?}"
    );
    assert_eq!(stored(&server, Some("dup-1")).await, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn instances_writing_overlapping_batches_store_every_event_once() {
    let server = PgServer::start();
    let journals = instances(&server, 3, Duration::from_secs(3600)).await;
    // 300 events; each instance gets every event in batches of 10, in its own order, so the
    // batches overlap across instances (the claim order keeps them from deadlocking).
    let ids: Vec<String> = (0..300).map(|n| format!("ev-{n:03}")).collect();
    let mut sends = Vec::new();
    for (n, journal) in journals.iter().enumerate() {
        let mut order = ids.clone();
        if n == 1 {
            order.reverse();
        }
        if n == 2 {
            fastrand::shuffle(&mut order);
        }
        for chunk in order.chunks(10) {
            let journal = journal.clone();
            let batch: Vec<Envelope> = chunk.iter().map(|id| event(id)).collect();
            let names = chunk.to_vec();
            sends.push(tokio::spawn(async move {
                (names, journal.append(batch).await.unwrap())
            }));
        }
    }
    let mut by_event: HashMap<String, HashSet<u64>> = HashMap::new();
    let mut new_count = 0;
    for send in sends {
        let (names, answers) = send.await.unwrap();
        for (name, answer) in names.into_iter().zip(answers) {
            let id = match answer {
                Appended::New(id) => {
                    new_count += 1;
                    id
                }
                Appended::Duplicate(id) => id,
            };
            by_event.entry(name).or_default().insert(id);
        }
    }
    assert_eq!(new_count, 300, "each event new exactly once");
    assert!(
        by_event.values().all(|ids| ids.len() == 1),
        "all three instances answered each event with the same id"
    );
    let distinct: HashSet<u64> = by_event.values().flatten().copied().collect();
    assert_eq!(distinct.len(), 300);
    assert_eq!(stored(&server, None).await, 300);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_duplicate_after_the_dedupe_window_is_a_new_event() {
    let server = PgServer::start();
    let journals = instances(&server, 1, Duration::from_secs(1)).await;
    let first = journals[0].append(vec![event("late")]).await.unwrap()[0];
    let again = journals[0].append(vec![event("late")]).await.unwrap()[0];
    let Appended::New(id) = first else {
        panic!("{first:?}")
    };
    assert_eq!(again, Appended::Duplicate(id), "within the window");
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let later = journals[0].append(vec![event("late")]).await.unwrap()[0];
    assert!(
        matches!(later, Appended::New(other) if other != id),
        "after the window: {later:?}"
    );
    assert_eq!(stored(&server, Some("late")).await, 2);
    // Twice in one request: the first copy is new, the second a duplicate of it.
    let pair = journals[0]
        .append(vec![event("twice"), event("twice")])
        .await
        .unwrap();
    let Appended::New(twice) = pair[0] else {
        panic!("{pair:?}")
    };
    assert_eq!(pair[1], Appended::Duplicate(twice));
}
