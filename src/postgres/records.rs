//! What sync remembers besides jobs, in PostgreSQL: cross-references, applied versions, order
//! status and echo records. A settle writes its effects in its own transaction, under the
//! lease's fence (`jobs.rs`), so an instance that lost the partition leaves none behind.

use super::{PgError, Postgres};
use crate::queue::records::{Applied, Echo, Effect, Xref};

/// Writes `effects` within `tx`.
pub(super) async fn write(
    tx: &deadpool_postgres::Transaction<'_>,
    effects: &[Effect],
) -> Result<(), tokio_postgres::Error> {
    for effect in effects {
        match effect {
            Effect::Xref(xref) => {
                tx.execute(
                    "INSERT INTO xrefs (system, kind, crm_id, external_id, detail) \
                     VALUES ($1, $2, $3, $4, $5) ON CONFLICT (system, kind, crm_id) \
                     DO UPDATE SET external_id = EXCLUDED.external_id, detail = EXCLUDED.detail",
                    &[
                        &xref.system,
                        &xref.kind,
                        &xref.crm_id,
                        &xref.external_id,
                        &json(xref),
                    ],
                )
                .await?;
            }
            Effect::Applied {
                flow,
                record,
                applied,
            } => {
                tx.execute(
                    "INSERT INTO applied (flow, record, detail) VALUES ($1, $2, $3) \
                     ON CONFLICT (flow, record) DO UPDATE SET detail = EXCLUDED.detail",
                    &[flow, record, &json(applied)],
                )
                .await?;
            }
            Effect::Status { order, status } => {
                tx.execute(
                    "INSERT INTO order_status (order_ref, status) VALUES ($1, $2) \
                     ON CONFLICT (order_ref) DO UPDATE SET status = EXCLUDED.status",
                    &[order, status],
                )
                .await?;
            }
            Effect::Echo { record, echo } => {
                tx.execute(
                    "INSERT INTO echo (record, detail) VALUES ($1, $2) \
                     ON CONFLICT (record) DO UPDATE SET detail = EXCLUDED.detail",
                    &[record, &json(echo)],
                )
                .await?;
            }
        }
    }
    Ok(())
}

/// The JSON a record is stored as.
fn json<T: serde::Serialize>(value: &T) -> serde_json::Value {
    serde_json::to_value(value).expect("records serialise")
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
        let client = self.postgres.client().await?;
        let row = client
            .query_opt(sql, keys)
            .await
            .map_err(|e| self.postgres.query_error(&e))?;
        Ok(row.and_then(|row| serde_json::from_value(row.get(0)).ok()))
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

    pub async fn echo(&self, record: &str) -> Result<Option<Echo>, PgError> {
        self.detail("SELECT detail FROM echo WHERE record = $1", &[&record])
            .await
    }

    pub async fn status(&self, order: &str) -> Result<Option<String>, PgError> {
        let client = self.postgres.client().await?;
        let row = client
            .query_opt(
                "SELECT status FROM order_status WHERE order_ref = $1",
                &[&order],
            )
            .await
            .map_err(|e| self.postgres.query_error(&e))?;
        Ok(row.map(|row| row.get(0)))
    }
}
