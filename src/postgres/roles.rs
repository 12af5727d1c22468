//! Work only one instance may do at a time — the router, each ERP's status poller — held as a
//! lease on a row of `poll_cursors` that also keeps the work's cursor. Taking the role and
//! moving the cursor happen in the caller's transaction: the row stays locked until it
//! commits, so two instances never hold a role at once, and one that lost it cannot move the
//! cursor the next holder already moved.

use std::time::Duration;

use serde_json::Value;

/// Takes or renews `role` for `me` for `lease`; the cursor while `me` holds it, else `None`.
/// A role nobody held yet starts from `start`.
pub async fn take(
    tx: &deadpool_postgres::Transaction<'_>,
    role: &str,
    me: &str,
    lease: Duration,
    start: &Value,
) -> Result<Option<Value>, tokio_postgres::Error> {
    let take = tx
        .prepare_cached(
            "INSERT INTO poll_cursors (connector, cursor, owner, lease_until)
             VALUES ($1, $4, $2, now() + make_interval(secs => $3::float8))
             ON CONFLICT (connector) DO UPDATE
                SET owner = EXCLUDED.owner, lease_until = EXCLUDED.lease_until
                WHERE poll_cursors.owner = EXCLUDED.owner OR poll_cursors.lease_until <= now()
             RETURNING cursor",
        )
        .await?;
    let row = tx
        .query_opt(&take, &[&role, &me, &lease.as_secs_f64(), start])
        .await?;
    Ok(row.map(|row| row.get::<_, Option<Value>>(0).unwrap_or(Value::Null)))
}

/// Moves the cursor of `role`, which `me` took in this transaction.
pub async fn save(
    tx: &deadpool_postgres::Transaction<'_>,
    role: &str,
    me: &str,
    cursor: &Value,
) -> Result<bool, tokio_postgres::Error> {
    let save = tx
        .prepare_cached("UPDATE poll_cursors SET cursor = $3 WHERE connector = $1 AND owner = $2")
        .await?;
    let moved = tx.execute(&save, &[&role, &me, cursor]).await?;
    Ok(moved == 1)
}
