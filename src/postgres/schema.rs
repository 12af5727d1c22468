//! handoff's schema in PostgreSQL, owned and versioned by handoff: migrations are SQL files
//! (`migrations/NNNN_name.sql`) applied in order, each once, recorded in `handoff_schema`. They
//! run in one transaction under an advisory lock, so instances that start together apply them
//! once; an instance refuses a database whose schema is newer than it knows.

use deadpool_postgres::GenericClient;

use super::PgError;

/// One migration: its version (1, 2, …), a name, and its SQL.
pub struct Migration {
    pub version: i32,
    pub name: &'static str,
    pub sql: &'static str,
}

pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "core",
        sql: include_str!("migrations/0001_core.sql"),
    },
    Migration {
        version: 2,
        name: "instances",
        sql: include_str!("migrations/0002_instances.sql"),
    },
    Migration {
        version: 3,
        name: "queue",
        sql: include_str!("migrations/0003_queue.sql"),
    },
    Migration {
        version: 4,
        name: "lease",
        sql: include_str!("migrations/0004_lease.sql"),
    },
    Migration {
        version: 5,
        name: "settle",
        sql: include_str!("migrations/0005_settle.sql"),
    },
    Migration {
        version: 6,
        name: "jobs_by_object",
        sql: include_str!("migrations/0006_jobs_by_object.sql"),
    },
    Migration {
        version: 7,
        name: "jobs_by_key",
        sql: include_str!("migrations/0007_jobs_by_key.sql"),
    },
    Migration {
        version: 8,
        name: "events_lz4",
        sql: include_str!("migrations/0008_events_lz4.sql"),
    },
    Migration {
        version: 9,
        name: "lease_in_memory",
        sql: include_str!("migrations/0009_lease_in_memory.sql"),
    },
    Migration {
        version: 10,
        name: "finished_search",
        sql: include_str!("migrations/0010_finished_search.sql"),
    },
];

/// The newest version this handoff knows.
pub const LATEST: i32 = MIGRATIONS[MIGRATIONS.len() - 1].version;

/// The advisory lock migrations run under (any constant of handoff's own: "handoff" in ASCII).
const LOCK: i64 = 0x68616e646f6666;

const CREATE_VERSIONS: &str = "CREATE TABLE IF NOT EXISTS handoff_schema (
    version    integer     PRIMARY KEY,
    name       text        NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)";

/// The schema's version, or `None` for a database handoff has not used yet.
pub async fn version(client: &impl GenericClient) -> Result<Option<i32>, tokio_postgres::Error> {
    let exists: bool = client
        .query_one("SELECT to_regclass('handoff_schema') IS NOT NULL", &[])
        .await?
        .get(0);
    if !exists {
        return Ok(None);
    }
    client
        .query_one("SELECT max(version) FROM handoff_schema", &[])
        .await
        .map(|row| row.get(0))
}

/// Applies the migrations the database lacks; returns the versions applied now (none when
/// another instance did it first).
pub async fn migrate(postgres: &super::Postgres) -> Result<Vec<i32>, PgError> {
    let mut client = postgres.client().await?;
    let failed = |e: tokio_postgres::Error| postgres.query_error(&e);
    let tx = client.transaction().await.map_err(failed)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&LOCK])
        .await
        .map_err(failed)?;
    tx.batch_execute(CREATE_VERSIONS).await.map_err(failed)?;
    let found = version(&tx).await.map_err(failed)?.unwrap_or(0);
    if found > LATEST {
        return Err(PgError::TooNew {
            found,
            known: LATEST,
        });
    }
    let mut applied = Vec::new();
    for migration in MIGRATIONS.iter().filter(|m| m.version > found) {
        tx.batch_execute(migration.sql).await.map_err(failed)?;
        tx.execute(
            "INSERT INTO handoff_schema (version, name) VALUES ($1, $2)",
            &[&migration.version, &migration.name],
        )
        .await
        .map_err(failed)?;
        applied.push(migration.version);
    }
    tx.commit().await.map_err(failed)?;
    Ok(applied)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_are_numbered_in_order_from_one() {
        for (n, migration) in MIGRATIONS.iter().enumerate() {
            assert_eq!(migration.version, n as i32 + 1, "{}", migration.name);
            assert!(!migration.sql.trim().is_empty());
        }
    }
}
