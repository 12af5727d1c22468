//! One handoff instance on the shared database: connects, applies the schema, and runs what
//! keeps it a member — partition leases, the router (when it holds that role), the wake-ups
//! for new jobs, and the removal of old history — beside the engine's workers.

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinSet;

use super::events::PgEvents;
use super::leases::Leases;
use super::queue::{PgQueue, block_on};
use super::router::PgRouter;
use super::{PgError, Plans, Postgres, schema, space};
use crate::clock::Clock;
use crate::config::{PostgresConfig, SecretLookup};
use crate::journal::Position;
use crate::mapping::live::LiveMappings;

/// Connections ingest keeps for itself (group commit needs one at a time, a read or two more).
const INGEST_CONNECTIONS: usize = 4;
/// Connections for the partitions' leases (the router has one of its own).
const CONTROL_CONNECTIONS: usize = 2;

pub struct Instance {
    pub postgres: Arc<Postgres>,
    /// The router's connection: its statements (the role, the events by `(xid, id)`, the
    /// jobs' insert) planned once, walking indexes only.
    routing: Arc<Postgres>,
    pub leases: Arc<Leases>,
    pub queue: Arc<PgQueue>,
    pub events: Arc<PgEvents>,
    period: Duration,
    retention: Duration,
}

/// A name no other process has: host, process id and a random tag (a restarted process is a
/// new member; its old partitions move once their lease runs out).
fn instance_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "handoff".into());
    format!("{host}-{}-{:04x}", std::process::id(), fastrand::u16(..))
}

impl Instance {
    /// Connects, applies the schema (refusing one newer than this handoff knows) and takes a
    /// first share of the partitions. Call it on the runtime that serves ingest.
    pub fn start(
        config: &PostgresConfig,
        secrets: &SecretLookup,
        dedupe_window: Duration,
        retention: Duration,
    ) -> Result<Instance, PgError> {
        let postgres = Arc::new(Postgres::new(config, secrets)?);
        // The store's synchronous calls wait on queries whose connections the runtime drives:
        // on a single thread, or on none, they would wait forever.
        use tokio::runtime::{Handle, RuntimeFlavor};
        match Handle::try_current().map(|h| h.runtime_flavor()) {
            Ok(RuntimeFlavor::MultiThread) => {}
            Ok(_) => return Err(PgError::Runtime("on a single-threaded one")),
            Err(_) => return Err(PgError::Runtime("outside any")),
        }
        block_on(schema::migrate(&postgres))?;
        let period = Duration::from_secs(config.lease_secs.max(1));
        let me = instance_name();
        // The partitions' leases and the router have connections of their own: a renewal
        // never waits behind the workers (a late one would cost the partitions).
        let control = PostgresConfig {
            pool_size: CONTROL_CONNECTIONS,
            ..config.clone()
        };
        let control = Arc::new(Postgres::new(&control, secrets)?);
        let leases = Arc::new(Leases::new(control.clone(), me.clone(), period));
        block_on(leases.round())?;
        tracing::info!(instance = %me, at = postgres.at(), partitions = leases.held().len(), "joined the instances on PostgreSQL");
        let queue = Arc::new(PgQueue::new(postgres.clone(), leases.clone(), Clock::new()));
        // Ingest has connections of its own: an ack never waits behind the workers.
        // Its statements (the store, the first copy's id) insert and read under unique keys:
        // planned once per connection.
        let ingest = Arc::new(postgres.pool_like(Plans::Once, INGEST_CONNECTIONS)?);
        let events = Arc::new(PgEvents::start(ingest, postgres.clone(), dedupe_window));
        Ok(Instance {
            postgres,
            routing: Arc::new(control.pool_like(Plans::IndexPathsOnce, 1)?),
            leases,
            queue,
            events,
            period,
            retention,
        })
    }

    pub fn name(&self) -> &str {
        self.leases.me()
    }

    /// Starts the background work on `runtime` into `tasks`.
    pub fn spawn(
        &self,
        mappings: Arc<LiveMappings>,
        runtime: &tokio::runtime::Handle,
        tasks: &mut JoinSet<()>,
    ) {
        let (leases, queue, period) = (self.leases.clone(), self.queue.clone(), self.period);
        tasks.spawn_on(
            async move {
                loop {
                    // A partition taken again under a new epoch counts too: its jobs were
                    // made ready, and workers that found none under the old epoch wait.
                    let before = leases.owned();
                    match leases.round().await {
                        Ok(now) if now != before => queue.wake_all(),
                        Ok(_) => {}
                        Err(error) => {
                            tracing::warn!(error = %error, "partition leases not renewed this round")
                        }
                    }
                    tokio::time::sleep(period / 3).await;
                }
            },
            runtime,
        );
        let router = Arc::new(
            PgRouter::new(self.routing.clone(), self.name().to_owned(), self.period)
                .keeping_events_in(self.postgres.clone()),
        );
        let clock = Clock::new();
        let route = Arc::new(move |id: i64, envelope: &crate::envelope::Envelope| {
            let at = Position {
                segment: 0,
                offset: 0,
            };
            crate::sync::router::route(&mappings.current(), envelope, id as u64, at, clock.now_ms())
        });
        tasks.spawn_on(router.route_forever(route, Duration::from_secs(1)), runtime);
        tasks.spawn_on(self.queue.clone().listen(), runtime);
        // Not among the tasks a shutdown aborts: it writes the last settles first.
        runtime.spawn(self.queue.clone().commit_settles());
        tasks.spawn_on(
            space::run(
                self.postgres.clone(),
                self.name().to_owned(),
                self.retention,
            ),
            runtime,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn start() -> Result<Instance, PgError> {
        let secrets = |_: &str| Some("postgres://handoff@127.0.0.1:1/none".to_owned());
        Instance::start(
            &PostgresConfig::default(),
            &secrets,
            Duration::from_secs(60),
            Duration::from_secs(60),
        )
    }

    #[test]
    fn outside_a_runtime_the_store_refuses_to_start() {
        let error = start().err().expect("refused");
        assert!(matches!(error, PgError::Runtime("outside any")), "{error}");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn on_a_single_threaded_runtime_the_store_refuses_to_start_instead_of_hanging() {
        let error = start().err().expect("refused");
        assert!(
            error.to_string().contains("multi-threaded runtime"),
            "{error}"
        );
        assert!(matches!(
            error,
            PgError::Runtime("on a single-threaded one")
        ));
    }
}
