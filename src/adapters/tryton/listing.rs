//! The Tryton connector's `list` operations (reconciliation), a page of 500 records by id:
//!
//! - `list_customers`: parties, inactive ones too, without the companies' own parties; key
//!   `code` (the CRM account id), fields `code` and `name`;
//! - `list_sales_orders`: sales, cancelled ones as inactive; key `reference` (the opportunity
//!   id), fields as the sales-order document names them: `reference`, `description`,
//!   `customer_reference`, `currency`, `total`;
//! - `list_order_status` (a source: the status flow): each sale with a reference as its newest
//!   `order_status.changed` event carries it, numbered as the poller numbers it; id and key
//!   the reference;
//! - `list_products` (a source: product sync's flows): every product as its `product.changed`
//!   event carries it, active or not; id and key the product's code.
//!
//! The version is the record's newest write (or its creation).

use serde_json::{Map, Value, json};

use super::Tryton;
use super::rpc::plain;
use crate::adapters::{Class, Failure, Listed, Listing};

/// Records per page.
const PAGE: u64 = 500;

/// The list operations a Tryton connector has.
pub const OPERATIONS: [&str; 4] = [
    "list_customers",
    "list_sales_orders",
    "list_products",
    "list_order_status",
];

impl Tryton {
    pub(super) async fn list_page(
        &self,
        operation: &str,
        page: Option<&str>,
    ) -> Result<Listing, Failure> {
        let after: i64 = page.and_then(|p| p.parse().ok()).unwrap_or(0);
        let (model, fields): (&str, &[&str]) = match operation {
            "list_products" => return self.list_products(after).await,
            "list_order_status" => return self.list_order_status().await,
            "list_customers" => ("party.party", &["code", "name", "active"]),
            "list_sales_orders" => (
                "sale.sale",
                &[
                    "reference",
                    "description",
                    "comment",
                    "currency",
                    "total_amount",
                    "state",
                ],
            ),
            other => {
                return Err(Failure::new(
                    Class::FixConfig,
                    format!(
                        "the Tryton connector has no list operation {other:?} ({})",
                        OPERATIONS.join(", ")
                    ),
                ));
            }
        };
        let mut names: Vec<&str> = fields.to_vec();
        names.extend(["write_date", "create_date"]);
        let found = self
            .rpc
            .call_in(
                &format!("model.{model}.search_read"),
                vec![
                    json!([["id", ">", after]]),
                    json!(0),
                    json!(PAGE),
                    json!([["id", "ASC"]]),
                    json!(names),
                ],
                json!({ "active_test": false }),
            )
            .await?;
        let records = found.as_array().cloned().unwrap_or_default();
        let next = (records.len() as u64 == PAGE)
            .then(|| records.last().and_then(|r| r["id"].as_i64()))
            .flatten()
            .map(|id| id.to_string());
        let companies = if model == "party.party" {
            self.company_parties().await?
        } else {
            Vec::new()
        };
        let currencies = if model == "sale.sale" {
            self.read_by_id(
                "currency.currency",
                records.iter().map(|r| &r["currency"]),
                &["code"],
            )
            .await?
        } else {
            Default::default()
        };
        let mut items = Vec::with_capacity(records.len());
        for record in &records {
            let id = record["id"].as_i64().unwrap_or_default();
            if companies.contains(&id) {
                continue;
            }
            let text = |field: &str| plain(&record[field]).as_str().map(str::to_owned);
            let version = [text("write_date"), text("create_date")]
                .into_iter()
                .flatten()
                .max();
            let mut fields = Map::new();
            let (key, active) = if model == "party.party" {
                fields.insert("code".into(), record["code"].clone());
                fields.insert("name".into(), record["name"].clone());
                (text("code"), super::products::truthy(&record["active"]))
            } else {
                for (from, to) in [
                    ("reference", "reference"),
                    ("description", "description"),
                    ("comment", "customer_reference"),
                ] {
                    fields.insert(to.into(), record[from].clone());
                }
                let currency = record["currency"]
                    .as_i64()
                    .and_then(|c| currencies.get(&c))
                    .map_or(Value::Null, |c| c["code"].clone());
                fields.insert("currency".into(), currency);
                fields.insert("total".into(), plain(&record["total_amount"]));
                fields.insert("state".into(), record["state"].clone());
                (text("reference"), record["state"] != "cancelled")
            };
            items.push(Listed {
                id: id.to_string(),
                key: key.filter(|k| !k.is_empty()),
                version,
                active,
                fields: Value::Object(fields),
            });
        }
        Ok(Listing { items, next })
    }

    /// Every sale's newest milestone, in one page (the status poller's read from the start).
    async fn list_order_status(&self) -> Result<Listing, Failure> {
        use crate::adapters::Poller;
        let orders = self.poll(None).await?.orders;
        let items = orders
            .into_iter()
            .filter(|order| !order.reference.is_empty())
            .filter_map(|order| {
                let sequence = order.reached.len();
                let mut fields = order.reached.last()?.clone();
                fields["sequence"] = Value::from(sequence);
                Some(Listed {
                    id: order.reference.clone(),
                    key: Some(order.reference),
                    version: Some(sequence.to_string()),
                    active: true,
                    fields,
                })
            })
            .collect();
        Ok(Listing { items, next: None })
    }

    /// A page of products after id `after`, as product sync reports them.
    async fn list_products(&self, after: i64) -> Result<Listing, Failure> {
        let (products, last) = self
            .products_where(vec![json!(["id", ">", after])], Some(PAGE))
            .await?;
        let next = last
            .filter(|(_, read)| *read as u64 == PAGE)
            .map(|(id, _)| id.to_string());
        let items = products
            .into_iter()
            .map(|product| Listed {
                id: product.code.clone(),
                key: Some(product.code.clone()),
                version: Some(product.changed_at.clone()),
                active: product.active,
                fields: product.data(),
            })
            .collect();
        Ok(Listing { items, next })
    }

    /// The parties of the companies in the database (listed as no one's customer).
    async fn company_parties(&self) -> Result<Vec<i64>, Failure> {
        let companies = self
            .rpc
            .call(
                "model.company.company.search_read",
                vec![
                    json!([]),
                    json!(0),
                    Value::Null,
                    Value::Null,
                    json!(["party"]),
                ],
            )
            .await?;
        Ok(companies
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| c["party"].as_i64())
            .collect())
    }
}
