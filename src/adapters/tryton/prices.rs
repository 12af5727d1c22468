//! Product prices in Tryton, as Tryton itself computes them: for every product with a code,
//! its price per sale unit (`sale_price_uom`) with no price list (`standard`: the list price)
//! and under each active price list (`sale_price_list`), for quantity 0, in each company's
//! currency. Tryton keeps a list price per company, in that company's currency, and price lists
//! belong to a company: a company in EUR gives EUR prices. A currency no company keeps prices in
//! would be a conversion by today's rate, so none is reported, and a product without a list
//! price in a company gets no price in its currency (the CRM gets no entry). A price-list line edit, a dated list or a new rate changes no product's
//! `write_date`, so prices are read whole on each pass and the sync keeps what changed.

use serde_json::{Value, json};

use super::Tryton;
use super::rpc::plain;
use crate::adapters::{Failure, PriceChange};

/// The price list name of the prices without one.
pub const STANDARD: &str = "standard";

/// Products read per call.
const CHUNK: usize = 500;

fn truthy(value: &Value) -> bool {
    value
        .as_bool()
        .unwrap_or_else(|| value.as_i64().is_some_and(|n| n != 0))
}

impl Tryton {
    /// Every product's price under no price list and under each active one, in each company's
    /// currency (the companies the user may work in); products without a price there are left
    /// out.
    pub async fn read_prices(&self) -> Result<Vec<PriceChange>, Failure> {
        let preferences = self
            .rpc
            .call("model.res.user.get_preferences", vec![json!(true)])
            .await?;
        let mut companies: Vec<Value> = preferences["companies"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if companies.is_empty() {
            companies.push(self.rpc.context().await?["company"].clone());
        }
        let mut prices = Vec::new();
        for company in companies {
            prices.extend(self.company_prices(company).await?);
        }
        Ok(prices)
    }

    /// The prices in one company's currency, under its price lists.
    async fn company_prices(&self, company: Value) -> Result<Vec<PriceChange>, Failure> {
        let currency = self.company_currency(&company).await?;
        let lists = self
            .rpc
            .call_in(
                "model.product.price_list.search_read",
                vec![
                    json!([["company", "=", company]]),
                    json!(0),
                    Value::Null,
                    json!([["id", "ASC"]]),
                    json!(["name"]),
                ],
                json!({ "company": company, "companies": [company] }),
            )
            .await?;
        let mut books: Vec<(Value, String)> = vec![(Value::Null, STANDARD.to_owned())];
        for list in lists.as_array().into_iter().flatten() {
            let name = list["name"].as_str().unwrap_or_default().to_owned();
            books.push((list["id"].clone(), name));
        }
        let products = self
            .rpc
            .call_in(
                "model.product.product.search_read",
                vec![
                    json!([["code", "!=", null]]),
                    json!(0),
                    Value::Null,
                    json!([["id", "ASC"]]),
                    json!(["code", "active", "template.active"]),
                ],
                json!({ "active_test": false }),
            )
            .await?;
        let products: Vec<(i64, String, bool)> = products
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| {
                let code = p["code"].as_str().filter(|c| !c.is_empty())?;
                let active = truthy(&p["active"]) && truthy(&p["template."]["active"]);
                Some((p["id"].as_i64()?, code.to_owned(), active))
            })
            .collect();
        let mut prices = Vec::new();
        for (list, name) in &books {
            for chunk in products.chunks(CHUNK) {
                let ids: Vec<i64> = chunk.iter().map(|(id, ..)| *id).collect();
                let read = self
                    .rpc
                    .call_in(
                        "model.product.product.read",
                        vec![json!(ids), json!(["sale_price_uom"])],
                        json!({ "company": company, "companies": [company], "currency": currency.0,
                                "price_list": list, "quantity": 0, "active_test": false }),
                    )
                    .await?;
                let by_id: std::collections::HashMap<i64, Value> = read
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|r| Some((r["id"].as_i64()?, plain(&r["sale_price_uom"]))))
                    .collect();
                for (id, code, active) in chunk {
                    let Some(price) = by_id.get(id).and_then(Value::as_str) else {
                        continue;
                    };
                    prices.push(PriceChange {
                        code: code.clone(),
                        price_list: name.clone(),
                        currency: currency.1.clone(),
                        price: price.to_owned(),
                        active: *active,
                    });
                }
            }
        }
        Ok(prices)
    }

    /// The newest write or create of a price list or a price-list line (inactive lists too).
    pub async fn read_price_lists_stamp(&self) -> Result<Option<String>, Failure> {
        let mut newest: Option<String> = None;
        for model in ["product.price_list", "product.price_list.line"] {
            for field in ["write_date", "create_date"] {
                let found = self
                    .rpc
                    .call_in(
                        &format!("model.{model}.search_read"),
                        vec![
                            json!([[field, "!=", null]]),
                            json!(0),
                            json!(1),
                            json!([[field, "DESC"]]),
                            json!([field]),
                        ],
                        json!({ "active_test": false }),
                    )
                    .await?;
                let stamp = found[0]
                    .get(field)
                    .map(plain)
                    .and_then(|v| v.as_str().map(str::to_owned));
                newest = newest.max(stamp);
            }
        }
        Ok(newest)
    }

    /// The company's currency: its id and ISO code.
    async fn company_currency(&self, company: &Value) -> Result<(Value, String), Failure> {
        let read = self
            .rpc
            .call(
                "model.company.company.read",
                vec![json!([company]), json!(["currency.code"])],
            )
            .await?;
        let currency = &read[0]["currency."];
        let code = currency["code"].as_str().unwrap_or_default().to_owned();
        Ok((currency["id"].clone(), code))
    }
}
