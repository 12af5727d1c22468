//! The PostgreSQL backend: several handoff instances sharing one database (`[store] backend =
//! "postgres"`, README "Running several instances").
//!
//! - the connection: pools, the URL read from the environment variable `[store.postgres]
//!   url_env` names (never logged), and the one-line diagnosis `handoff check` prints. Each
//!   pool plans its statements as its work needs ([`Plans`]): the workers' on every run, the
//!   lease's, settles' and router's once by index walks ([`Postgres::by_key`]), ingest's once;
//! - `schema`   versioned migrations, applied under a lock so instances starting together do
//!   not race; a schema newer than this handoff is refused;
//! - `journal`, `events`  ingest: one transaction per batch, dedupe by a unique key every
//!   instance shares, the router told after the commit; the `Events` seam on it;
//! - `leases`   partitions leased under fencing epochs, a fair share per instance;
//! - `jobs`, `queue`  the `Queue` trait: jobs leased (in memory) from the owned partitions,
//!   one at a time per record, settled in batches only under the lease's epoch with their
//!   effects (`records`), timers, operators' actions, listings;
//! - `roles`    work one instance does at a time (the router, each ERP's poller);
//! - `gather`   the delivery path's one-row reads gathered into one statement per batch;
//! - `router`   events → jobs in transaction order below the oldest running transaction;
//! - `space`    history by day partitions;
//! - `instance` one member's wiring; `import` the move from an embedded data dir.

pub mod events;
pub mod gather;
pub mod import;
pub mod instance;
pub mod jobs;
pub mod journal;
pub mod leases;
pub mod queue;
pub mod records;
pub mod roles;
pub mod router;
pub mod schema;
pub mod space;

use std::collections::HashMap;
use std::str::FromStr;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use thiserror::Error;
use tokio_postgres::NoTls;

use crate::config::{PostgresConfig, SecretLookup};

/// What went wrong, in one line that names no secret.
#[derive(Debug, Clone, Error)]
pub enum PgError {
    #[error("environment variable {0} is not set (it holds the PostgreSQL connection URL)")]
    NoUrl(String),
    #[error("environment variable {0} does not hold a PostgreSQL connection URL")]
    BadUrl(String),
    #[error("cannot connect to PostgreSQL at {at}: {reason}")]
    Connect { at: String, reason: String },
    #[error("PostgreSQL at {at}: {reason}")]
    Query { at: String, reason: String },
    #[error(
        "the database's schema is version {found}, newer than this handoff knows ({known}): \
         upgrade handoff, or point it at another database"
    )]
    TooNew { found: i32, known: i32 },
    #[error(
        "the PostgreSQL store runs on tokio's multi-threaded runtime (as `handoff serve` does); \
         it was started {0}"
    )]
    Runtime(&'static str),
}

/// How a pool's statements are planned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plans {
    /// On every run, for the tables as they are then: `jobs` grows and shrinks by orders of
    /// magnitude within minutes, and a generic plan made while it was empty scans it whole
    /// once it is not.
    EveryRun,
    /// Once per connection (a generic plan), for statements whose plan does not turn on how
    /// big a table is (ingest's: inserts under unique keys). Planned on every batch, ingest's
    /// statement took as long to plan as to run (~280 µs; pg_stat_statements, BENCHMARKS.md).
    Once,
    /// Once per connection, with only walks of indexes left (no sequential or bitmap scans,
    /// sorts, hash or merge joins, materialised inner sides), for statements that find their
    /// rows by key in tables of any size: the lease and the settles (`jobs.rs`, through
    /// [`Postgres::by_key`]). Whatever the statistics say when the plan is made (a queue
    /// table's are always stale), it walks the keys' indexes.
    IndexPathsOnce,
}

impl Plans {
    /// The planner settings that make it, as (name, value).
    fn settings(self) -> &'static [(&'static str, &'static str)] {
        match self {
            Plans::EveryRun => &[("plan_cache_mode", "force_custom_plan")],
            Plans::Once => &[("plan_cache_mode", "force_generic_plan")],
            Plans::IndexPathsOnce => &[
                ("plan_cache_mode", "force_generic_plan"),
                ("enable_seqscan", "off"),
                ("enable_bitmapscan", "off"),
                ("enable_sort", "off"),
                ("enable_hashjoin", "off"),
                ("enable_mergejoin", "off"),
                ("enable_material", "off"),
            ],
        }
    }

    /// The connection's options that set it (a pool's connections).
    fn options(self) -> String {
        self.settings()
            .iter()
            .map(|(name, value)| format!("-c {name}={value}"))
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// The statements that set it on an open connection (`Postgres::own_client`).
    pub fn set_statements(self) -> String {
        self.settings()
            .iter()
            .map(|(name, value)| format!("SET {name} = {value}"))
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// A pool of connections to the shared database.
pub struct Postgres {
    pool: Pool,
    /// The connection as configured, before the pool's planner settings.
    base: tokio_postgres::Config,
    /// For connections of their own (LISTEN), outside the pool.
    config: tokio_postgres::Config,
    /// `host:port/database`, for messages (never the user or password).
    at: String,
    /// Events read by this instance's router or with the lease of their jobs (event id →
    /// stored envelope), taken by the delivery path's read of the event instead of a query of
    /// its own. Events are written
    /// once, so a copy never goes stale; at most [`EVENTS_AHEAD`] are kept.
    events_ahead: std::sync::Mutex<HashMap<u64, Vec<u8>>>,
    /// The pool of [`Postgres::by_key`], made when first asked for.
    by_key: std::sync::OnceLock<Box<Postgres>>,
}

/// Connections of [`Postgres::by_key`]: the settle committer's and a lease query per
/// connector at a time.
const BY_KEY_CONNECTIONS: usize = 4;

/// How many events read ahead are kept (a job leased but not run leaves its event behind).
const EVENTS_AHEAD: usize = 10_000;

impl Postgres {
    /// Reads the URL through `secrets` and makes the pool; connects lazily. Its statements
    /// are planned on every run ([`Plans::EveryRun`]).
    pub fn new(config: &PostgresConfig, secrets: &SecretLookup) -> Result<Postgres, PgError> {
        Postgres::with_plans(config, secrets, Plans::EveryRun)
    }

    /// As [`Postgres::new`], with the pool's statements planned as `plans` says.
    pub fn with_plans(
        config: &PostgresConfig,
        secrets: &SecretLookup,
        plans: Plans,
    ) -> Result<Postgres, PgError> {
        let url = secrets(&config.url_env).ok_or_else(|| PgError::NoUrl(config.url_env.clone()))?;
        let mut base = tokio_postgres::Config::from_str(&url)
            .map_err(|_| PgError::BadUrl(config.url_env.clone()))?;
        base.connect_timeout(Duration::from_secs(config.connect_timeout_secs));
        base.application_name("handoff");
        Postgres::pooled(base, plans, config.pool_size)
    }

    /// Another pool of `size` connections to the same database, planned as `plans` says.
    pub fn pool_like(&self, plans: Plans, size: usize) -> Result<Postgres, PgError> {
        Postgres::pooled(self.base.clone(), plans, size)
    }

    fn pooled(
        base: tokio_postgres::Config,
        plans: Plans,
        size: usize,
    ) -> Result<Postgres, PgError> {
        let mut pg = base.clone();
        let mode = plans.options();
        let options = match pg.get_options() {
            Some(given) => format!("{given} {mode}"),
            None => mode,
        };
        pg.options(&options);
        let at = describe(&pg);
        let manager = Manager::from_config(
            pg.clone(),
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(size.max(1))
            .build()
            .map_err(|e| PgError::Connect {
                at: at.clone(),
                reason: e.to_string(),
            })?;
        Ok(Postgres {
            pool,
            base,
            config: pg,
            at,
            events_ahead: Default::default(),
            by_key: std::sync::OnceLock::new(),
        })
    }

    /// A pool beside this one whose statements are planned once per connection and walk
    /// indexes only ([`Plans::IndexPathsOnce`]): the lease's and the settles'.
    pub fn by_key(&self) -> Result<&Postgres, PgError> {
        if let Some(pool) = self.by_key.get() {
            return Ok(pool);
        }
        let pool = self.pool_like(Plans::IndexPathsOnce, BY_KEY_CONNECTIONS)?;
        Ok(self.by_key.get_or_init(|| Box::new(pool)))
    }

    /// Keeps events read with their jobs' lease for the delivery path.
    pub fn keep_events(&self, events: impl IntoIterator<Item = (u64, Vec<u8>)>) {
        let mut ahead = self.events_ahead.lock().unwrap_or_else(|e| e.into_inner());
        if ahead.len() > EVENTS_AHEAD {
            ahead.clear();
        }
        ahead.extend(events);
    }

    /// Whether an event is kept read ahead.
    pub fn has_event(&self, id: u64) -> bool {
        let ahead = self.events_ahead.lock().unwrap_or_else(|e| e.into_inner());
        ahead.contains_key(&id)
    }

    /// An event read ahead, if it was (taken: the next read asks the database).
    pub fn take_event(&self, id: u64) -> Option<Vec<u8>> {
        let mut ahead = self.events_ahead.lock().unwrap_or_else(|e| e.into_inner());
        ahead.remove(&id)
    }

    /// Where the database is, for messages.
    pub fn at(&self) -> &str {
        &self.at
    }

    pub async fn client(&self) -> Result<deadpool_postgres::Object, PgError> {
        self.pool.get().await.map_err(|e| PgError::Connect {
            at: self.at.clone(),
            reason: match e {
                deadpool_postgres::PoolError::Backend(error) => reason(&error),
                other => other.to_string(),
            },
        })
    }

    /// A connection outside the pool: the client and the connection's task, for the caller to
    /// run.
    async fn connect(
        &self,
    ) -> Result<
        (
            tokio_postgres::Client,
            tokio_postgres::Connection<tokio_postgres::Socket, tokio_postgres::tls::NoTlsStream>,
        ),
        PgError,
    > {
        self.config
            .connect(NoTls)
            .await
            .map_err(|e| PgError::Connect {
                at: self.at.clone(),
                reason: reason(&e),
            })
    }

    /// A connection of its own, outside the pool, with `setup` run on it first (settings for
    /// this connection alone); it closes when the client is dropped.
    pub async fn own_client(&self, setup: &str) -> Result<tokio_postgres::Client, PgError> {
        let (client, connection) = self.connect().await?;
        tokio::spawn(connection);
        client
            .batch_execute(setup)
            .await
            .map_err(|e| self.query_error(&e))?;
        Ok(client)
    }

    /// Listens on `channel` on a connection of its own, open as long as the [`Listener`] lives.
    /// `notified` also fires once when the connection ends (a restarted server), so a waiter
    /// sees [`Listener::is_closed`] at once and listens again.
    pub async fn listen(&self, channel: &str) -> Result<Listener, PgError> {
        let (client, mut connection) = self.connect().await?;
        let notify = std::sync::Arc::new(tokio::sync::Notify::new());
        let signal = notify.clone();
        tokio::spawn(async move {
            while let Some(Ok(message)) =
                std::future::poll_fn(|cx| connection.poll_message(cx)).await
            {
                if let tokio_postgres::AsyncMessage::Notification(_) = message {
                    signal.notify_one();
                }
            }
            signal.notify_one();
        });
        client
            .batch_execute(&format!("LISTEN {channel}"))
            .await
            .map_err(|e| self.query_error(&e))?;
        Ok(Listener {
            notified: notify,
            _client: client,
        })
    }

    /// An error of a query, in one line.
    pub fn query_error(&self, error: &tokio_postgres::Error) -> PgError {
        PgError::Query {
            at: self.at.clone(),
            reason: reason(error),
        }
    }
}

/// A `LISTEN` on a connection of its own; dropping it closes the connection.
pub struct Listener {
    /// Signalled on every notification on the channel.
    pub notified: std::sync::Arc<tokio::sync::Notify>,
    _client: tokio_postgres::Client,
}

impl Listener {
    /// The connection ended (the server went away): listen again on a new one.
    pub fn is_closed(&self) -> bool {
        self._client.is_closed()
    }
}

/// `host:port/database` of a connection config.
fn describe(pg: &tokio_postgres::Config) -> String {
    use tokio_postgres::config::Host;
    let host = match pg.get_hosts().first() {
        Some(Host::Tcp(name)) => name.clone(),
        Some(Host::Unix(path)) => path.display().to_string(),
        None => "localhost".to_owned(),
    };
    let port = pg.get_ports().first().copied().unwrap_or(5432);
    let database = pg.get_dbname().or(pg.get_user()).unwrap_or("postgres");
    format!("{host}:{port}/{database}")
}

/// The server's own message (`password authentication failed for user "handoff"`), or the
/// connection's (`Connection refused`), without the error's wrapping.
fn reason(error: &tokio_postgres::Error) -> String {
    if let Some(db) = error.as_db_error() {
        return db.message().to_owned();
    }
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(inner) = source {
        text = inner.to_string();
        source = inner.source();
    }
    text
}

/// `handoff check` for the postgres backend: connects and reads the schema's version; a
/// problem in one line, or what it found.
pub fn diagnose(config: &PostgresConfig, secrets: &SecretLookup) -> Result<String, PgError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| PgError::Connect {
            at: "this machine".into(),
            reason: e.to_string(),
        })?;
    runtime.block_on(async {
        let postgres = Postgres::new(config, secrets)?;
        let client = postgres.client().await?;
        let found = schema::version(&client)
            .await
            .map_err(|e| postgres.query_error(&e))?;
        match found {
            Some(found) if found > schema::LATEST => Err(PgError::TooNew {
                found,
                known: schema::LATEST,
            }),
            Some(found) if found == schema::LATEST => Ok(format!(
                "PostgreSQL at {}: schema version {found}, up to date",
                postgres.at()
            )),
            Some(found) => Ok(format!(
                "PostgreSQL at {}: schema version {found}; version {} is applied at the next start",
                postgres.at(),
                schema::LATEST
            )),
            None => Ok(format!(
                "PostgreSQL at {}: no handoff schema yet; it is created at the first start",
                postgres.at()
            )),
        }
    })
}
