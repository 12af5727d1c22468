//! Products changed in Tryton since a cursor: the first piece of product & price sync (ERP →
//! CRM). Tryton keeps a product's list price on its *template* (the variant's reads empty), so a
//! list-price edit changes the template's `write_date`, not the variant's: both are watched.
//! Inactive products are hidden from searches unless the context turns `active_test` off, so it
//! does, and a deactivated product is reported as inactive. Each change gets an id made of the
//! product's code and the time of its newest change, so reading a change again (the cursor
//! overlaps, or a re-poll after a crash) makes the same event, which the journal deduplicates.

use std::collections::HashMap;

use serde_json::{Value, json};

use super::Tryton;
use super::rpc::{self, plain};
use crate::adapters::{BoxFuture, Failure, ProductChange, ProductSource, ProductsChanged};

/// Products read per call.
const READ_PAGE: u64 = 1000;

/// Changes stamped this long before the last one seen are read again (Tryton stamps a write
/// with its transaction's start).
const OVERLAP_SECS: i64 = 60;

/// A Tryton boolean: `true`, or `1` from a SQLite database.
pub(super) fn truthy(value: &Value) -> bool {
    value
        .as_bool()
        .unwrap_or_else(|| value.as_i64().is_some_and(|n| n != 0))
}

impl Tryton {
    /// Products whose variant or template changed after `since` (all of them without it),
    /// active or not, oldest change first; and the newest change seen (the next cursor).
    pub async fn read_changed_products(
        &self,
        since: Option<&str>,
    ) -> Result<ProductsChanged, Failure> {
        let changed_after = since
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .map(|t| (t - chrono::Duration::seconds(OVERLAP_SECS)).to_rfc3339())
            .and_then(|t| rpc::datetime(&t));
        let mut domain = Vec::new();
        if let Some(at) = changed_after {
            domain.push(json!([
                "OR",
                ["write_date", ">", at],
                ["create_date", ">", at],
                ["template.write_date", ">", at],
                ["template.create_date", ">", at]
            ]));
        }
        // A page at a time: one call for a whole large catalog is slow to answer and fragile.
        let mut changes = Vec::new();
        let mut after = 0;
        loop {
            let mut page = domain.clone();
            page.push(json!(["id", ">", after]));
            let (found, last) = self.products_where(page, Some(READ_PAGE)).await?;
            changes.extend(found);
            match last {
                Some((id, read)) if read as u64 == READ_PAGE => after = id,
                _ => break,
            }
        }
        changes.sort_by(|a, b| (&a.changed_at, &a.code).cmp(&(&b.changed_at, &b.code)));
        let newest = changes
            .iter()
            .map(|c| c.changed_at.clone())
            .chain(since.map(str::to_owned))
            .max();
        Ok(ProductsChanged {
            changes,
            cursor: newest,
        })
    }

    /// The products `domain` selects (active or not), in id order, at most `limit`; with the id
    /// of the last one read (the next page starts after it).
    pub(super) async fn products_where(
        &self,
        domain: Vec<Value>,
        limit: Option<u64>,
    ) -> Result<(Vec<ProductChange>, Option<(i64, usize)>), Failure> {
        let products = self
            .rpc
            .call_in(
                "model.product.product.search_read",
                vec![
                    json!(domain),
                    json!(0),
                    json!(limit),
                    json!([["id", "ASC"]]),
                    json!([
                        "code",
                        "active",
                        "sale_uom",
                        "template",
                        "write_date",
                        "create_date"
                    ]),
                ],
                // Inactive products too (Tryton hides them from searches otherwise; an
                // `active` leaf in the domain does not survive a dotted `template.` one).
                json!({ "active_test": false }),
            )
            .await?;
        let products = products.as_array().cloned().unwrap_or_default();
        let templates = self
            .read_by_id(
                "product.template",
                products.iter().map(|p| &p["template"]),
                &["name", "active", "list_price", "write_date", "create_date"],
            )
            .await?;
        let units = self
            .read_by_id(
                "product.uom",
                products.iter().map(|p| &p["sale_uom"]),
                &["rec_name"],
            )
            .await?;
        let changes: Vec<ProductChange> = products
            .iter()
            .filter_map(|product| {
                let code = product["code"].as_str().filter(|c| !c.is_empty())?;
                let template = templates.get(&product["template"].as_i64()?)?;
                let changed_at = [
                    &product["write_date"],
                    &product["create_date"],
                    &template["write_date"],
                    &template["create_date"],
                ]
                .into_iter()
                .filter_map(|v| plain(v).as_str().map(str::to_owned))
                .max()?;
                let unit = product["sale_uom"]
                    .as_i64()
                    .and_then(|id| units.get(&id))
                    .map(|u| u["rec_name"].as_str().unwrap_or_default().to_owned());
                Some(ProductChange {
                    code: code.to_owned(),
                    // The template's name: the variant's rec_name is "[CODE] Name".
                    name: template["name"].as_str().unwrap_or(code).to_owned(),
                    active: truthy(&product["active"]) && truthy(&template["active"]),
                    list_price: plain(&template["list_price"])
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                    sale_unit: unit.unwrap_or_default(),
                    changed_at,
                })
            })
            .collect();
        let last = products
            .last()
            .and_then(|p| p["id"].as_i64())
            .map(|id| (id, products.len()));
        Ok((changes, last))
    }

    /// `fields` of the `model` records whose ids are in `ids` (none read twice), by id.
    pub(super) async fn read_by_id<'v>(
        &self,
        model: &str,
        ids: impl Iterator<Item = &'v Value>,
        fields: &[&str],
    ) -> Result<HashMap<i64, Value>, Failure> {
        let mut ids: Vec<i64> = ids.filter_map(Value::as_i64).collect();
        ids.sort_unstable();
        ids.dedup();
        if ids.is_empty() {
            return Ok(HashMap::new());
        }
        let read = self
            .rpc
            .call(
                &format!("model.{model}.read"),
                vec![json!(ids), json!(fields)],
            )
            .await?;
        Ok(read
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| Some((r["id"].as_i64()?, r.clone())))
            .collect())
    }
}

impl ProductSource for Tryton {
    fn every(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.spec.products_every_secs)
    }

    fn changed_products(
        &self,
        since: Option<String>,
    ) -> BoxFuture<'_, Result<ProductsChanged, Failure>> {
        Box::pin(async move { self.read_changed_products(since.as_deref()).await })
    }

    fn prices_every(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.spec.prices_every_secs)
    }

    fn price_decimals(&self) -> u32 {
        self.spec.price_decimals
    }

    fn price_lists_stamp(&self) -> BoxFuture<'_, Result<Option<String>, Failure>> {
        Box::pin(self.read_price_lists_stamp())
    }

    fn prices(&self) -> BoxFuture<'_, Result<Vec<crate::adapters::PriceChange>, Failure>> {
        Box::pin(self.read_prices())
    }
}
