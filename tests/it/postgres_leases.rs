//! Partition leases between instances on a real PostgreSQL (`postgres/leases.rs`): a fair
//! share each, a dead instance's partitions re-owned within one lease period, and an instance
//! stopped past its lease fenced off by the epoch.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use handoff::postgres::Postgres;
use handoff::postgres::leases::{FENCE, Leases, PARTITIONS};

use crate::postgres::{PgServer, migrated};
use crate::support::eventually;

const PERIOD: Duration = Duration::from_millis(1500);

/// Who owns each partition now, by the database.
async fn owners(postgres: &Postgres) -> BTreeMap<i16, (Option<String>, i64)> {
    let client = postgres.client().await.unwrap();
    client
        .query(
            "SELECT part, owner, epoch FROM parts WHERE lease_until > now() OR owner IS NULL",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| (row.get(0), (row.get(1), row.get(2))))
        .collect()
}

async fn fenced(postgres: &Postgres, part: i16, owner: &str, epoch: i64) -> bool {
    let client = postgres.client().await.unwrap();
    client
        .query_one(&format!("SELECT {FENCE}"), &[&part, &owner, &epoch])
        .await
        .unwrap()
        .get(0)
}

#[tokio::test(flavor = "multi_thread")]
async fn instances_share_the_partitions_and_a_dead_ones_move_within_a_lease_period() {
    let server = PgServer::start();
    let pg = migrated(&server).await;
    let instances: Vec<Arc<Leases>> = ["a", "b", "c"]
        .iter()
        .map(|name| Arc::new(Leases::new(pg.clone(), (*name).into(), PERIOD)))
        .collect();
    let mut tasks: Vec<_> = instances.iter().map(|l| l.clone().run()).collect();
    eventually(15, "a fair share each", async || {
        let counts: Vec<usize> = instances.iter().map(|l| l.held().len()).collect();
        (counts.iter().sum::<usize>() == PARTITIONS as usize && counts.iter().all(|n| *n >= 21))
            .then_some(())
    })
    .await;
    // The database agrees: each partition has exactly the owner that thinks it holds it.
    let owned = owners(&pg).await;
    for leases in &instances {
        for (part, epoch) in leases.held() {
            assert_eq!(owned[&part], (Some(leases.me().to_owned()), epoch));
        }
    }

    // c dies without a word (its task is gone, its rows stay as they were).
    let dead = instances[2].held();
    tasks.pop().unwrap().abort();
    let killed = Instant::now();
    eventually(15, "c's partitions re-owned", async || {
        let counts: Vec<usize> = instances[..2].iter().map(|l| l.held().len()).collect();
        (counts.iter().sum::<usize>() == PARTITIONS as usize).then_some(())
    })
    .await;
    let took = killed.elapsed();
    println!("c's partitions re-owned {took:?} after the kill (lease period {PERIOD:?})");
    // At most what was left of c's leases (two thirds of a period) and the next round (a
    // third): one period; the rest is slack for a loaded machine.
    assert!(
        took <= PERIOD + Duration::from_millis(1000),
        "re-owned {took:?} after the kill (lease period {PERIOD:?})"
    );
    // Every partition c held moved under a higher epoch; c's own writes are refused.
    for (part, old) in dead {
        let (owner, epoch) = owners(&pg).await[&part].clone();
        assert!(
            matches!(owner.as_deref(), Some("a" | "b")),
            "{part}: {owner:?}"
        );
        assert!(epoch > old, "{part}: epoch {epoch} after {old}");
        assert!(!fenced(&pg, part, "c", old).await);
        assert!(fenced(&pg, part, owner.as_deref().unwrap(), epoch).await);
    }
    for task in tasks {
        task.abort();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_instance_stopped_past_its_lease_is_fenced_off_then_gets_its_share_again() {
    let server = PgServer::start();
    let pg = migrated(&server).await;
    let a = Arc::new(Leases::new(pg.clone(), "a".into(), PERIOD));
    let before = a.round().await.unwrap();
    assert_eq!(before.len(), PARTITIONS as usize, "alone, a holds them all");
    assert!(fenced(&pg, 0, "a", before[&0]).await);

    // a stops renewing (as under SIGSTOP); b comes up and waits for a's leases to run out.
    let b = Arc::new(Leases::new(pg.clone(), "b".into(), PERIOD));
    let b_task = b.clone().run();
    eventually(15, "b holds every partition", async || {
        (b.held().len() == PARTITIONS as usize).then_some(())
    })
    .await;
    for (part, old) in &before {
        assert!(
            !fenced(&pg, *part, "a", *old).await,
            "a's write to {part} is refused"
        );
    }

    // a resumes: it finds its leases gone, and the two settle on half each.
    a.round().await.unwrap();
    let a_task = a.clone().run();
    eventually(15, "half each", async || {
        (a.held().len() == PARTITIONS as usize / 2 && b.held().len() == PARTITIONS as usize / 2)
            .then_some(())
    })
    .await;
    for (part, epoch) in a.held() {
        assert!(
            epoch > before[&part],
            "{part}: a holds it under a new epoch"
        );
        assert!(fenced(&pg, part, "a", epoch).await);
    }
    a_task.abort();
    b_task.abort();
}
