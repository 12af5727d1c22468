//! Work distribution between instances: records hash to a fixed number of partitions, and each
//! partition is leased by one instance with an epoch that fences the previous owner.
//!
//! Every round (a third of the lease period) an instance renews its heartbeat in `instances`,
//! renews the leases it holds for two thirds of the period (so a live owner renews twice before
//! a lease would run out, and a dead owner's partitions are taken by the next round after they
//! run out: within one period of its death), and moves towards its fair share (the partitions divided by the
//! instances alive): it takes partitions whose lease ran out (raising their epoch) or gives back
//! those above its share, so a newcomer gets a share and a dead instance's partitions move
//! within one lease period. A write on behalf of a partition names the epoch it was leased
//! under; [`FENCE`] refuses it once the lease moved on, so an instance that was stopped past its
//! lease (SIGSTOP, a long pause) cannot settle what the new owner may be running again.
//!
//! The jobs an instance runs are leased in memory ([`Leases::take`] … [`Leases::done`]), not
//! written to their rows: its partitions are its own while their leases hold, so no other
//! instance can lease them. What it has in flight goes out with its heartbeat (for the
//! dashboard). A partition taken from an owner whose lease ran out (it died, or stopped past
//! its lease) may have had any of its runnable jobs in flight: they run again in doubt, as the
//! embedded queue's do after a crash. A partition given back holds nothing in flight.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::{PgError, Postgres};
use crate::queue::JobId;

/// How many partitions records hash to (fixed for a database: changing it would move records).
pub const PARTITIONS: i16 = 64;

/// The condition a write for a partition carries (`$1` partition, `$2` owner, `$3` epoch):
/// true only while that owner still holds that partition under that epoch.
pub const FENCE: &str = "EXISTS (SELECT 1 FROM parts WHERE part = $1 AND owner = $2 \
    AND epoch = $3 AND lease_until > now())";

/// The partition of a record, by its ordering key (stable across instances and releases).
pub fn partition_of(order_key: &str) -> i16 {
    (crc32fast::hash(order_key.as_bytes()) % PARTITIONS as u32) as i16
}

/// How many partitions `me` should hold among the instances `alive` (sorted by name): an
/// equal part, and one more for the first few when they do not divide evenly.
fn fair_share(alive: &[String], me: &str) -> i64 {
    let count = alive.len().max(1) as i64;
    let rank = alive.iter().position(|name| name == me).unwrap_or(0) as i64;
    let partitions = PARTITIONS as i64;
    partitions / count + i64::from(rank < partitions % count)
}

/// One instance's leases.
pub struct Leases {
    postgres: Arc<Postgres>,
    me: String,
    period: Duration,
    /// Partition → the epoch it is held under, as of the last round.
    held: Mutex<BTreeMap<i16, i64>>,
    /// Partitions above the fair share, being given back: still held (renewed, so nobody
    /// takes them while a job leased in them runs) but no longer leased from; given back once
    /// no job in them is leased.
    draining: Mutex<BTreeSet<i16>>,
    /// The jobs this instance has leased and not yet settled (written), with their partition.
    in_flight: Mutex<HashMap<JobId, i16>>,
}

impl Leases {
    pub fn new(postgres: Arc<Postgres>, me: String, period: Duration) -> Leases {
        Leases {
            postgres,
            me,
            period,
            held: Mutex::new(BTreeMap::new()),
            draining: Mutex::new(BTreeSet::new()),
            in_flight: Mutex::new(HashMap::new()),
        }
    }

    /// Marks jobs (id, partition) as leased by this instance: its next leases skip them, and
    /// their partitions are not given back, until [`Leases::done`].
    pub fn take(&self, jobs: impl IntoIterator<Item = (JobId, i16)>) {
        self.in_flight
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend(jobs);
    }

    /// The job's lease is over: its settle is written (or refused), or it was given up.
    pub fn done(&self, id: JobId) {
        self.in_flight
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&id);
    }

    /// The ids this instance has leased and not yet settled.
    pub fn in_flight(&self) -> Vec<i64> {
        let in_flight = self.in_flight.lock().unwrap_or_else(|p| p.into_inner());
        in_flight.keys().map(|&id| id as i64).collect()
    }

    /// The partitions with a job in flight here.
    pub fn busy(&self) -> BTreeSet<i16> {
        let in_flight = self.in_flight.lock().unwrap_or_else(|p| p.into_inner());
        in_flight.values().copied().collect()
    }

    pub fn me(&self) -> &str {
        &self.me
    }

    /// The partitions to lease jobs from, with their epochs: those held as of the last round,
    /// less those being given back.
    pub fn held(&self) -> BTreeMap<i16, i64> {
        let draining = self.draining.lock().unwrap_or_else(|p| p.into_inner());
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner()).clone();
        held.retain(|part, _| !draining.contains(part));
        held
    }

    /// Every partition held as of the last round, with its epoch, those being given back
    /// included (jobs already leased in them still run).
    pub fn owned(&self) -> BTreeMap<i16, i64> {
        self.held.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Renews, takes and gives back leases once; returns what is held now.
    pub async fn round(&self) -> Result<BTreeMap<i16, i64>, PgError> {
        let client = self.postgres.client().await?;
        let failed = |e: tokio_postgres::Error| self.postgres.query_error(&e);
        // Heartbeat and leases last two thirds of the period; rounds come every third.
        let period = self.period.mul_f64(2.0 / 3.0).as_secs_f64();
        let until = "now() + make_interval(secs => $2::float8)";
        client
            .execute(
                "INSERT INTO parts (part) SELECT generate_series(0, $1::smallint - 1) \
                 ON CONFLICT DO NOTHING",
                &[&PARTITIONS],
            )
            .await
            .map_err(failed)?;
        client
            .execute(
                &format!(
                    "INSERT INTO instances (name, seen_until, leased) VALUES ($1, {until}, $3) \
                     ON CONFLICT (name) DO UPDATE SET seen_until = EXCLUDED.seen_until, \
                     leased = EXCLUDED.leased"
                ),
                &[&self.me, &period, &self.in_flight()],
            )
            .await
            .map_err(failed)?;
        let alive: Vec<String> = client
            .query(
                "SELECT name FROM instances WHERE seen_until > now() ORDER BY name",
                &[],
            )
            .await
            .map_err(failed)?
            .iter()
            .map(|row| row.get(0))
            .collect();
        let share = fair_share(&alive, &self.me);
        // Renew what is still ours (a lease that ran out and was taken is no longer).
        let mut held: BTreeMap<i16, i64> = client
            .query(
                &format!(
                    "UPDATE parts SET lease_until = {until} \
                     WHERE owner = $1 AND lease_until > now() RETURNING part, epoch"
                ),
                &[&self.me, &period],
            )
            .await
            .map_err(failed)?
            .iter()
            .map(|row| (row.get(0), row.get(1)))
            .collect();
        let missing = share - held.len() as i64;
        if missing > 0 {
            let taken = client
                .query(
                    // Taken from an owner whose lease ran out, a partition's runnable jobs
                    // (ready, or retrying and due) may have been in flight there: they run
                    // again in doubt (that owner's settles are refused by the epoch). Rows an
                    // earlier version left leased are made ready again.
                    &format!(
                        "WITH free AS (SELECT part, owner FROM parts WHERE lease_until <= now() \
                         ORDER BY part LIMIT $3 FOR UPDATE SKIP LOCKED), \
                         taken AS (UPDATE parts SET owner = $1, epoch = parts.epoch + 1, \
                         lease_until = {until} FROM free WHERE parts.part = free.part \
                         RETURNING parts.part, parts.epoch, free.owner AS before), \
                         again AS (UPDATE jobs SET in_doubt = true, leased_epoch = NULL, \
                         state = CASE jobs.state WHEN 'leased' THEN 'ready' ELSE jobs.state END \
                         FROM taken WHERE jobs.part = taken.part AND taken.before IS NOT NULL \
                         AND (jobs.state = 'leased' OR (jobs.state IN ('ready', 'retrying') \
                         AND NOT jobs.in_doubt AND (jobs.due_at IS NULL OR jobs.due_at <= now())))) \
                         SELECT part, epoch FROM taken"
                    ),
                    &[&self.me, &period, &missing],
                )
                .await
                .map_err(failed)?;
            held.extend(
                taken
                    .iter()
                    .map(|row| (row.get::<_, i16>(0), row.get::<_, i64>(1))),
            );
        }
        // Above the share: stop leasing from the highest ones, and give back those in which
        // nothing is in flight any more, for a newcomer to take.
        let extra: BTreeSet<i16> = match missing < 0 {
            true => held
                .keys()
                .rev()
                .take((-missing) as usize)
                .copied()
                .collect(),
            false => BTreeSet::new(),
        };
        let ready: Vec<i16> = {
            let mut draining = self.draining.lock().unwrap_or_else(|p| p.into_inner());
            let busy = self.busy();
            let ready = draining
                .intersection(&extra)
                .filter(|part| !busy.contains(part))
                .copied()
                .collect();
            *draining = extra;
            ready
        };
        if !ready.is_empty() {
            let given = client
                .query(
                    "UPDATE parts SET owner = NULL, lease_until = '-infinity' \
                     WHERE owner = $1 AND part = ANY($2) RETURNING part",
                    &[&self.me, &ready],
                )
                .await
                .map_err(failed)?;
            for row in given {
                let part: i16 = row.get(0);
                held.remove(&part);
                self.draining
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&part);
            }
        }
        *self.held.lock().unwrap_or_else(|p| p.into_inner()) = held.clone();
        Ok(held)
    }

    /// Runs rounds every third of the lease period until the task is aborted.
    pub fn run(self: Arc<Self>) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            loop {
                if let Err(error) = self.round().await {
                    tracing::warn!(error = %error, "partition leases not renewed this round");
                }
                tokio::time::sleep(self.period / 3).await;
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_add_up_to_every_partition_and_differ_by_one_at_most() {
        for count in 1..=10 {
            let alive: Vec<String> = (0..count).map(|n| format!("i{n:02}")).collect();
            let shares: Vec<i64> = alive.iter().map(|me| fair_share(&alive, me)).collect();
            assert_eq!(
                shares.iter().sum::<i64>(),
                PARTITIONS as i64,
                "{count}: {shares:?}"
            );
            let (min, max) = (shares.iter().min().unwrap(), shares.iter().max().unwrap());
            assert!(max - min <= 1, "{count}: {shares:?}");
        }
    }

    #[test]
    fn a_record_always_hashes_to_the_same_partition() {
        assert_eq!(
            partition_of("006000000000001AAA"),
            partition_of("006000000000001AAA")
        );
        let parts: std::collections::HashSet<i16> = (0..1000)
            .map(|n| partition_of(&format!("rec-{n}")))
            .collect();
        assert_eq!(
            parts.len(),
            PARTITIONS as usize,
            "1,000 records reach every partition"
        );
        assert!(parts.iter().all(|p| (0..PARTITIONS).contains(p)));
    }
}
