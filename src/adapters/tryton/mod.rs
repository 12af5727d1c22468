//! The Tryton ERP over JSON-RPC (Tryton 8.2; a working server recipe is in tests/tryton/).
//!
//! - `upsert_customer`: `party.party` found by `code` (the CRM account id), created with its
//!   addresses and contact mechanisms, or updated in place;
//! - `create_sales_order`: `sale.sale` found by `reference` (the opportunity id) before it is
//!   created (the reference is not unique in Tryton, so a retry must look first), with lines whose
//!   products are found by code and prices sent as decimals; then quoted and confirmed when the
//!   connector says `confirm: true` (a found draft is confirmed too);
//! - shortages: products' `forecast_quantity` in the warehouses (the engine's stock holds);
//! - status poller (`poll.rs`): sales whose `write_date` or `create_date` moved;
//! - `list_customers`, `list_sales_orders` (`listing.rs`): pages of parties and sales for
//!   reconciliation.
//!
//! Raw `create` runs no on_change, so every value the Tryton client would fill in is sent:
//! addresses, currency, company, and the product's *sale* unit (the CRM's quantity and price
//! are per unit sold: a box of 12, not the piece the stock counts). A discount is sent as Tryton computes it: with the
//! `sale_discount` module the line keeps its `base_price` and the discounted `unit_price` (cut
//! to 4 decimals as Tryton does); without it, the discount is folded into the unit price. Then
//! Tryton's own amounts are compared with the document's (`amounts.rs`): a difference holds the
//! job as `amount_mismatch` and the sale stays a draft until an operator accepts or fixes it.

mod amounts;
mod listing;
mod poll;
pub mod prices;
pub mod products;
pub mod rpc;

use std::collections::HashMap;
use std::str::FromStr;

use rust_decimal::Decimal;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::Mutex;

use super::{Adapter, BoxFuture, Delivered, Delivery, Failure, Listing, Shortage};
use crate::adapters::Class;
use rpc::{Rpc, decimal};

/// `tryton:` in a connector file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrytonSpec {
    pub database: String,
    /// Quote and confirm new sales orders (otherwise they stay drafts).
    #[serde(default = "yes")]
    pub confirm: bool,
    /// How often the status poller asks for changed sales; 0 turns it off.
    #[serde(default = "ten")]
    pub poll_every_secs: u64,
    /// Where the first poll starts: `now` (default: sales changed before handoff was
    /// connected are not reported), `all` (back-fill the whole history) or an RFC 3339 time.
    #[serde(default = "now")]
    pub poll_from: String,
    /// How often products changed in Tryton are journaled as `product.changed` events (the
    /// product sync); 0, the default, turns it off.
    #[serde(default)]
    pub products_every_secs: u64,
    /// How often every product's prices (list price and each price list's, in the company's
    /// currency) are read and the changed ones journaled as `product_price.changed` events;
    /// 0, the default, turns it off. Needs `products_every_secs` too.
    #[serde(default)]
    pub prices_every_secs: u64,
    /// The decimals the CRM keeps prices at (Salesforce: 2): a price that rounds to the
    /// amount last journaled is not journaled again.
    #[serde(default = "two")]
    pub price_decimals: u32,
}

fn two() -> u32 {
    2
}

fn now() -> String {
    "now".into()
}

fn yes() -> bool {
    true
}

fn ten() -> u64 {
    10
}

pub struct Tryton {
    rpc: Rpc,
    spec: TrytonSpec,
    /// (model, code) → id, for countries, currencies, products (and products' units).
    ids: Mutex<HashMap<(&'static str, String), i64>>,
    /// Whether sale lines have a `base_price` (the `sale_discount` module is active).
    discounts: tokio::sync::OnceCell<bool>,
}

impl Tryton {
    pub fn new(rpc: Rpc, spec: TrytonSpec) -> Tryton {
        Tryton {
            rpc,
            spec,
            ids: Mutex::new(HashMap::new()),
            discounts: tokio::sync::OnceCell::new(),
        }
    }

    pub fn spec(&self) -> &TrytonSpec {
        &self.spec
    }

    async fn search(
        &self,
        model: &str,
        domain: Value,
        limit: Option<u64>,
    ) -> Result<Vec<i64>, Failure> {
        let found = self
            .rpc
            .call(
                &format!("model.{model}.search"),
                vec![domain, json!(0), json!(limit), Value::Null],
            )
            .await?;
        Ok(found
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_i64)
            .collect())
    }

    /// The id of the `model` record whose `field` is `code`, cached; a missing one is the data's
    /// to fix (`what` names it for the operator).
    async fn id_by_code(
        &self,
        model: &'static str,
        field: &str,
        code: &str,
        what: &str,
    ) -> Result<i64, Failure> {
        if let Some(id) = self.ids.lock().await.get(&(model, code.to_owned())) {
            return Ok(*id);
        }
        let found = self
            .search(model, json!([[field, "=", code]]), Some(1))
            .await?;
        let id = *found.first().ok_or_else(|| {
            let mut failure = Failure::new(
                Class::FixData,
                format!("{what} {code:?} is not in Tryton ({model})"),
            );
            // Product sync brings products (the ERP masters them): an order for one Tryton
            // does not have yet waits for it instead of becoming a dead letter.
            if model == "product.product" {
                failure.missing = Some(Box::new(("product".to_owned(), code.to_owned())));
            }
            failure
        })?;
        self.ids.lock().await.insert((model, code.to_owned()), id);
        Ok(id)
    }

    async fn address(&self, address: &Value) -> Result<Value, Failure> {
        let mut values = json!({});
        for field in ["street", "postal_code", "city"] {
            if let Some(text) = address.get(field).and_then(Value::as_str) {
                values[field] = json!(text);
            }
        }
        if let Some(code) = address.get("country").and_then(Value::as_str) {
            values["country"] = json!(
                self.id_by_code("country.country", "code", code, "country")
                    .await?
            );
        }
        Ok(values)
    }

    async fn upsert_customer(&self, document: &Value) -> Result<Delivered, Failure> {
        let code = text(document, "code")?;
        let name = text(document, "name")?;
        let mut addresses = Vec::new();
        for key in ["invoice_address", "delivery_address"] {
            if let Some(address) = document.get(key).filter(|a| a.is_object()) {
                addresses.push(self.address(address).await?);
            }
        }
        let mechanisms: Vec<(&str, &str)> = [
            ("phone", "phone"),
            ("contact_email", "email"),
            ("website", "website"),
        ]
        .into_iter()
        .filter_map(|(field, kind)| {
            document
                .get(field)
                .and_then(Value::as_str)
                .map(|v| (kind, v))
        })
        .collect();
        let found = self
            .search("party.party", json!([["code", "=", code]]), Some(1))
            .await?;
        let Some(&party) = found.first() else {
            let values = json!({
                "name": name, "code": code,
                "addresses": [["create", addresses]],
                "contact_mechanisms": [["create", mechanisms.iter().map(|(kind, value)| json!({"type": kind, "value": value})).collect::<Vec<_>>()]],
            });
            let created = self
                .rpc
                .call("model.party.party.create", vec![json!([values])])
                .await?;
            let id = created.get(0).and_then(Value::as_i64).unwrap_or_default();
            return Ok(delivered(
                id,
                format!("party.party.create code={code}"),
                "created",
            ));
        };
        // Update in place: the name, the first addresses in order, one mechanism per kind.
        let existing = self
            .search("party.address", json!([["party", "=", party]]), None)
            .await?;
        let mut address_commands = Vec::new();
        let mut to_create = Vec::new();
        for (n, values) in addresses.into_iter().enumerate() {
            match existing.get(n) {
                Some(id) => address_commands.push(json!(["write", [id], values])),
                None => to_create.push(values),
            }
        }
        if !to_create.is_empty() {
            address_commands.push(json!(["create", to_create]));
        }
        let mut mechanism_commands = Vec::new();
        for (kind, value) in mechanisms {
            let same = self
                .search(
                    "party.contact_mechanism",
                    json!([["party", "=", party], ["type", "=", kind]]),
                    Some(1),
                )
                .await?;
            match same.first() {
                Some(id) => mechanism_commands.push(json!(["write", [id], {"value": value}])),
                None => {
                    mechanism_commands.push(json!(["create", [{"type": kind, "value": value}]]))
                }
            }
        }
        let values = json!({"name": name, "addresses": address_commands, "contact_mechanisms": mechanism_commands});
        self.rpc
            .call("model.party.party.write", vec![json!([party]), values])
            .await?;
        Ok(delivered(
            party,
            format!("party.party.write code={code}"),
            "updated",
        ))
    }

    /// Whether sale lines keep a base price and discount (`sale_discount`).
    async fn has_discounts(&self) -> Result<bool, Failure> {
        let has = self
            .discounts
            .get_or_try_init(|| async {
                let fields = self
                    .rpc
                    .call("model.sale.line.fields_get", vec![json!(["base_price"])])
                    .await?;
                Ok::<_, Failure>(fields.get("base_price").is_some())
            })
            .await?;
        Ok(*has)
    }

    /// Compares Tryton's amounts for sale `id` with the document's; unless the operator accepted
    /// Tryton's figures, a difference holds the job (the sale stays as it is, unconfirmed).
    async fn amounts_agree(
        &self,
        id: i64,
        delivery: &Delivery<'_>,
        request: &str,
    ) -> Result<Option<String>, Failure> {
        let figures = self.figures(id).await?;
        let found = amounts::differences(delivery.document, &figures);
        if found.is_empty() {
            return Ok(None);
        }
        let text = found.join("; ");
        if delivery.accept_amounts {
            return Ok(Some(format!(
                "amounts differ, accepted by an operator: {text}"
            )));
        }
        Err(Failure {
            class: Class::AmountMismatch,
            message: format!(
                "Tryton's amounts differ from the CRM's: {text}. Sale {id} stays unconfirmed until \
                 an operator accepts Tryton's figures or fixes the sale and retries"
            ),
            retry_after: None,
            request: request.to_owned(),
            response: text,
            missing: None,
        })
    }

    async fn create_sales_order(&self, delivery: &Delivery<'_>) -> Result<Delivered, Failure> {
        let document = delivery.document;
        let reference = text(document, "reference")?;
        let found = self
            .rpc
            .call(
                "model.sale.sale.search_read",
                vec![
                    json!([["reference", "=", reference]]),
                    json!(0),
                    json!(1),
                    Value::Null,
                    json!(["id", "state"]),
                ],
            )
            .await?;
        if let Some(sale) = found.get(0) {
            let id = sale["id"].as_i64().unwrap_or_default();
            let state = sale["state"].as_str().unwrap_or_default().to_owned();
            let request = format!("sale.sale.search reference={reference}");
            let accepted = self.amounts_agree(id, delivery, &request).await?;
            self.confirm(id, &state).await?;
            let mut response = format!("found existing sale {id} ({state}); not created again");
            response.extend(accepted.map(|text| format!("; {text}")));
            return Ok(delivered(id, request, &response));
        }
        let party: i64 = text(document, "customer")?
            .parse()
            .map_err(|_| Failure::new(Class::FixData, "customer is not a Tryton party id"))?;
        let address = *self
            .search("party.address", json!([["party", "=", party]]), Some(1))
            .await?
            .first()
            .ok_or_else(|| {
                Failure::new(
                    Class::FixData,
                    format!("party {party} has no address to invoice and ship to"),
                )
            })?;
        let currency = self
            .id_by_code(
                "currency.currency",
                "code",
                text(document, "currency")?,
                "currency",
            )
            .await?;
        let mut lines = Vec::new();
        for line in document
            .get("lines")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let code = text(line, "product_code")?;
            let product = self
                .id_by_code("product.product", "code", code, "product")
                .await?;
            let unit = self.unit_of(product).await?;
            let base = decimal_of(line, "unit_price")?;
            let discount = line
                .get("discount_percent")
                .filter(|d| !d.is_null())
                .map(|_| decimal_of(line, "discount_percent"))
                .transpose()?;
            let price = discount.map_or(base, |d| amounts::discounted(base, d));
            let mut values = json!({
                "type": "line", "product": product, "unit": unit,
                "quantity": line.get("quantity").cloned().unwrap_or(json!(1)),
                "unit_price": decimal(&price.normalize().to_string()),
                "description": line.get("description").and_then(Value::as_str).unwrap_or(code),
            });
            if self.has_discounts().await? {
                values["base_price"] = decimal(&base.normalize().to_string());
            }
            lines.push(values);
        }
        let context = self.rpc.context().await?;
        let mut values = json!({
            "party": party, "invoice_address": address, "shipment_address": address,
            "currency": currency, "company": context["company"], "reference": reference,
            "lines": [["create", lines]],
        });
        for (from, to) in [
            ("description", "description"),
            ("customer_reference", "comment"),
        ] {
            if let Some(text) = document.get(from).and_then(Value::as_str) {
                values[to] = json!(text);
            }
        }
        if let Some(date) = document.get("order_date").and_then(Value::as_str) {
            let day = chrono::NaiveDate::parse_from_str(date, "%Y-%m-%d").map_err(|_| {
                Failure::new(
                    Class::FixData,
                    format!("order_date {date:?} is not YYYY-MM-DD"),
                )
            })?;
            use chrono::Datelike;
            values["sale_date"] = json!({"__class__": "date", "year": day.year(), "month": day.month(), "day": day.day()});
        }
        let created = self
            .rpc
            .call("model.sale.sale.create", vec![json!([values])])
            .await?;
        let id = created.get(0).and_then(Value::as_i64).unwrap_or_default();
        let request = format!("sale.sale.create reference={reference}");
        let accepted = self.amounts_agree(id, delivery, &request).await?;
        self.confirm(id, "draft").await?;
        let response = match accepted {
            Some(text) => format!("created; {text}"),
            None => "created".to_owned(),
        };
        Ok(delivered(id, request, &response))
    }

    /// Quotes and confirms a sale still in `state`, when the connector asks for it.
    async fn confirm(&self, id: i64, state: &str) -> Result<(), Failure> {
        if !self.spec.confirm {
            return Ok(());
        }
        if state == "draft" {
            self.rpc
                .call("model.sale.sale.quote", vec![json!([id])])
                .await?;
        }
        if matches!(state, "draft" | "quotation") {
            self.rpc
                .call("model.sale.sale.confirm", vec![json!([id])])
                .await?;
        }
        Ok(())
    }

    /// The unit a product is sold in (`sale_uom`: a box of 12, say), which a sale line's
    /// quantity and unit price are in; its stock unit (`default_uom`) only when it has none.
    async fn unit_of(&self, product: i64) -> Result<i64, Failure> {
        let cached = ("product.uom of product", product.to_string());
        if let Some(unit) = self.ids.lock().await.get(&cached) {
            return Ok(*unit);
        }
        let read = self
            .rpc
            .call(
                "model.product.product.read",
                vec![json!([product]), json!(["sale_uom", "default_uom"])],
            )
            .await?;
        let unit = read[0]["sale_uom"]
            .as_i64()
            .or_else(|| read[0]["default_uom"].as_i64())
            .ok_or_else(|| {
                Failure::new(Class::FixData, format!("product {product} has no unit"))
            })?;
        self.ids.lock().await.insert(cached, unit);
        Ok(unit)
    }

    async fn stock_shortages(&self, lines: &[(String, Decimal)]) -> Result<Vec<Shortage>, Failure> {
        let warehouses = self
            .search("stock.location", json!([["type", "=", "warehouse"]]), None)
            .await?;
        let mut shortages = Vec::new();
        for (code, needed) in lines {
            let product = self
                .id_by_code("product.product", "code", code, "product")
                .await?;
            let read = self
                .rpc
                .call_in(
                    "model.product.product.read",
                    vec![json!([product]), json!(["forecast_quantity"])],
                    json!({"locations": warehouses}),
                )
                .await?;
            let available = number(&read[0]["forecast_quantity"]);
            if available < *needed {
                shortages.push(Shortage {
                    product: code.clone(),
                    missing: needed - available.max(Decimal::ZERO),
                });
            }
        }
        Ok(shortages)
    }
}

impl Adapter for Tryton {
    fn kind(&self) -> &'static str {
        "tryton"
    }

    fn send<'a>(&'a self, delivery: Delivery<'a>) -> BoxFuture<'a, Result<Delivered, Failure>> {
        Box::pin(async move {
            match delivery.operation {
                "upsert_customer" => self.upsert_customer(delivery.document).await,
                "create_sales_order" => self.create_sales_order(&delivery).await,
                other => Err(Failure::new(
                    Class::FixConfig,
                    format!(
                        "the Tryton connector has no operation {other:?} (upsert_customer, create_sales_order)"
                    ),
                )),
            }
        })
    }

    fn checks_stock(&self) -> bool {
        true
    }

    fn updates_found(&self, operation: &str) -> bool {
        operation != "create_sales_order"
    }

    fn shortages<'a>(
        &'a self,
        lines: &'a [(String, Decimal)],
    ) -> BoxFuture<'a, Result<Vec<Shortage>, Failure>> {
        Box::pin(self.stock_shortages(lines))
    }

    fn list<'a>(
        &'a self,
        operation: &'a str,
        page: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Listing, Failure>> {
        Box::pin(self.list_page(operation, page))
    }

    fn lists(&self, operation: &str) -> bool {
        listing::OPERATIONS.contains(&operation)
    }

    fn probe(&self) -> BoxFuture<'_, Result<String, Failure>> {
        Box::pin(async move {
            let context = self.rpc.context().await?;
            Ok(format!(
                "logged in to Tryton database {:?} (company {})",
                self.spec.database, context["company"]
            ))
        })
    }
}

/// The list operations a Tryton connector has (reconciliation).
pub fn listing_operations() -> &'static [&'static str] {
    &listing::OPERATIONS
}

fn delivered(id: i64, request: String, response: &str) -> Delivered {
    Delivered {
        external_id: Some(id.to_string()),
        request,
        response: format!("{response}: id {id}"),
    }
}

fn text<'a>(document: &'a Value, field: &str) -> Result<&'a str, Failure> {
    document
        .get(field)
        .and_then(Value::as_str)
        .ok_or_else(|| Failure::new(Class::FixData, format!("the document has no {field}")))
}

/// A decimal field of the document (a JSON number or text), exactly.
fn decimal_of(document: &Value, field: &str) -> Result<Decimal, Failure> {
    let value = document.get(field).unwrap_or(&Value::Null);
    let text = match value {
        Value::String(text) => text.clone(),
        Value::Number(number) => number.to_string(),
        _ => String::new(),
    };
    Decimal::from_str(&text)
        .or_else(|_| Decimal::from_scientific(&text))
        .map_err(|_| Failure::new(Class::FixData, format!("{field} {value} is not a decimal")))
}

/// A quantity Tryton sent (a float field, or a Decimal object) as a decimal.
fn number(value: &Value) -> Decimal {
    let plain = rpc::plain(value);
    let text = match &plain {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    };
    Decimal::from_str(&text)
        .or_else(|_| Decimal::from_scientific(&text))
        .unwrap_or(Decimal::ZERO)
}
