//! What sync remembers besides jobs, in PostgreSQL: cross-references, applied versions, order
//! status and echo records. A settle writes its effects in its own transaction, under the
//! lease's fence (`jobs.rs`), so an instance that lost the partition leaves none behind.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::Value;

use tokio_postgres::types::Json;

use super::gather::Gather;
use super::{PgError, Postgres};
use crate::queue::records::{Applied, Echo, Effect, Xref};

/// Writes `effects` within `tx`: one statement per kind of record, the newest effect per key
/// winning (a batch holds them in settle order), keys in order (the order two instances lock
/// rows in).
pub(super) async fn write_all(
    tx: &deadpool_postgres::Transaction<'_>,
    effects: &[&Effect],
) -> Result<(), tokio_postgres::Error> {
    let mut xrefs: BTreeMap<(&str, &str, &str), &Xref> = BTreeMap::new();
    let mut applied: BTreeMap<(&str, &str), &Applied> = BTreeMap::new();
    let mut status: BTreeMap<&str, &str> = BTreeMap::new();
    let mut echo: BTreeMap<&str, &Echo> = BTreeMap::new();
    for effect in effects {
        match effect {
            Effect::Xref(x) => {
                xrefs.insert((&x.system, &x.kind, &x.crm_id), x);
            }
            Effect::Applied {
                flow,
                record,
                applied: a,
            } => {
                applied.insert((flow, record), a);
            }
            Effect::Status { order, status: s } => {
                status.insert(order, s);
            }
            Effect::Echo { record, echo: e } => {
                echo.insert(record, e);
            }
        }
    }
    if !xrefs.is_empty() {
        let xrefs: Vec<&Xref> = xrefs.into_values().collect();
        let systems: Vec<&str> = xrefs.iter().map(|x| x.system.as_str()).collect();
        let kinds: Vec<&str> = xrefs.iter().map(|x| x.kind.as_str()).collect();
        let crm_ids: Vec<&str> = xrefs.iter().map(|x| x.crm_id.as_str()).collect();
        let external_ids: Vec<&str> = xrefs.iter().map(|x| x.external_id.as_str()).collect();
        let details: Vec<Json<&&Xref>> = xrefs.iter().map(Json).collect();
        upsert(
            tx,
            "INSERT INTO xrefs (system, kind, crm_id, external_id, detail) \
             SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::jsonb[]) \
             ON CONFLICT (system, kind, crm_id) \
             DO UPDATE SET external_id = EXCLUDED.external_id, detail = EXCLUDED.detail",
            &[&systems, &kinds, &crm_ids, &external_ids, &details],
        )
        .await?;
    }
    if !applied.is_empty() {
        let flows: Vec<&str> = applied.keys().map(|k| k.0).collect();
        let records: Vec<&str> = applied.keys().map(|k| k.1).collect();
        let details: Vec<Json<&&Applied>> = applied.values().map(Json).collect();
        upsert(
            tx,
            "INSERT INTO applied (flow, record, detail) \
             SELECT * FROM unnest($1::text[], $2::text[], $3::jsonb[]) \
             ON CONFLICT (flow, record) DO UPDATE SET detail = EXCLUDED.detail",
            &[&flows, &records, &details],
        )
        .await?;
    }
    if !status.is_empty() {
        let orders: Vec<&str> = status.keys().copied().collect();
        let states: Vec<&str> = status.values().copied().collect();
        upsert(
            tx,
            "INSERT INTO order_status (order_ref, status) \
             SELECT * FROM unnest($1::text[], $2::text[]) \
             ON CONFLICT (order_ref) DO UPDATE SET status = EXCLUDED.status",
            &[&orders, &states],
        )
        .await?;
    }
    if !echo.is_empty() {
        let records: Vec<&str> = echo.keys().copied().collect();
        let details: Vec<Json<&&Echo>> = echo.values().map(Json).collect();
        upsert(
            tx,
            "INSERT INTO echo (record, detail) SELECT * FROM unnest($1::text[], $2::jsonb[]) \
             ON CONFLICT (record) DO UPDATE SET detail = EXCLUDED.detail",
            &[&records, &details],
        )
        .await?;
    }
    Ok(())
}

async fn upsert(
    tx: &deadpool_postgres::Transaction<'_>,
    sql: &str,
    columns: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) -> Result<(), tokio_postgres::Error> {
    let statement = tx.prepare_cached(sql).await?;
    tx.execute(&statement, columns).await?;
    Ok(())
}

/// The delivery path's reads of cross-references, applied versions and echo records (every
/// delivery checks whether it echoes a write-back), gathered into one statement per batch of
/// workers asking (`gather`).
pub struct RecordReads {
    xrefs: Arc<Gather>,
    applied: Arc<Gather>,
    echo: Arc<Gather>,
}

impl RecordReads {
    pub fn new(postgres: &Arc<Postgres>) -> RecordReads {
        RecordReads {
            xrefs: Gather::new(
                postgres.clone(),
                "SELECT k.i, x.detail \
                 FROM unnest($1::text[], $2::text[], $3::text[]) WITH ORDINALITY AS k(system, kind, crm_id, i) \
                 JOIN xrefs x ON x.system = k.system AND x.kind = k.kind AND x.crm_id = k.crm_id",
            ),
            applied: Gather::new(
                postgres.clone(),
                "SELECT k.i, a.detail \
                 FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS k(flow, record, i) \
                 JOIN applied a ON a.flow = k.flow AND a.record = k.record",
            ),
            echo: Gather::new(
                postgres.clone(),
                "SELECT k.i, e.detail \
                 FROM unnest($1::text[]) WITH ORDINALITY AS k(record, i) \
                 JOIN echo e ON e.record = k.record",
            ),
        }
    }

    pub async fn xref(
        &self,
        system: &str,
        kind: &str,
        crm_id: &str,
    ) -> Result<Option<Xref>, PgError> {
        let key = vec![system.to_owned(), kind.to_owned(), crm_id.to_owned()];
        Ok(decode(self.xrefs.read(key).await?))
    }

    /// Statements sent for the reads so far.
    pub fn statements(&self) -> u64 {
        self.xrefs.statements() + self.applied.statements() + self.echo.statements()
    }

    pub async fn echo(&self, record: &str) -> Result<Option<Echo>, PgError> {
        Ok(decode(self.echo.read(vec![record.to_owned()]).await?))
    }

    pub async fn applied(&self, flow: &str, record: &str) -> Result<Option<Applied>, PgError> {
        let key = vec![flow.to_owned(), record.to_owned()];
        Ok(decode(self.applied.read(key).await?))
    }
}

fn decode<T: serde::de::DeserializeOwned>(detail: Option<Value>) -> Option<T> {
    detail.and_then(|detail| serde_json::from_value(detail).ok())
}

/// Reads of the records.
pub struct PgRecords<'a> {
    postgres: &'a Postgres,
}

impl<'a> PgRecords<'a> {
    pub fn new(postgres: &'a Postgres) -> PgRecords<'a> {
        PgRecords { postgres }
    }

    async fn detail<T: serde::de::DeserializeOwned>(
        &self,
        sql: &str,
        keys: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<Option<T>, PgError> {
        Ok(decode(self.row(sql, keys).await?.map(|row| row.get(0))))
    }

    /// The row `sql` finds for `keys`, if any (the statement prepared once per connection).
    async fn row(
        &self,
        sql: &str,
        keys: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<Option<tokio_postgres::Row>, PgError> {
        let client = self.postgres.client().await?;
        let failed = |e: tokio_postgres::Error| self.postgres.query_error(&e);
        let statement = client.prepare_cached(sql).await.map_err(failed)?;
        client.query_opt(&statement, keys).await.map_err(failed)
    }

    pub async fn xref(
        &self,
        system: &str,
        kind: &str,
        crm_id: &str,
    ) -> Result<Option<Xref>, PgError> {
        self.detail(
            "SELECT detail FROM xrefs WHERE system = $1 AND kind = $2 AND crm_id = $3",
            &[&system, &kind, &crm_id],
        )
        .await
    }

    pub async fn applied(&self, flow: &str, record: &str) -> Result<Option<Applied>, PgError> {
        self.detail(
            "SELECT detail FROM applied WHERE flow = $1 AND record = $2",
            &[&flow, &record],
        )
        .await
    }

    pub async fn status(&self, order: &str) -> Result<Option<String>, PgError> {
        let row = self
            .row(
                "SELECT status FROM order_status WHERE order_ref = $1",
                &[&order],
            )
            .await?;
        Ok(row.map(|row| row.get(0)))
    }
}
