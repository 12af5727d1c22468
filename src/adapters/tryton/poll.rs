//! The status poller: sales whose `write_date` or `create_date` is after the cursor (less an
//! overlap, since Tryton stamps a write with its transaction's start), read with their
//! shipment and invoice state, become the milestones each sale has reached. The engine emits
//! the ones it has not emitted yet (sync/poll.rs) and advances the cursor after they are durable.

use serde_json::{Value, json};

use super::Tryton;
use super::rpc::{self, plain};
use crate::adapters::{BoxFuture, Failure, OrderProgress, Polled, Poller};

/// Changes stamped this long before the last one seen are read again.
const OVERLAP_SECS: i64 = 60;

impl Poller for Tryton {
    fn every(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.spec.poll_every_secs)
    }

    fn first_cursor(&self, now: chrono::DateTime<chrono::Utc>) -> Option<Value> {
        match self.spec.poll_from.as_str() {
            "all" => None,
            "now" => Some(json!(stamp(now))),
            from => chrono::DateTime::parse_from_rfc3339(from)
                .ok()
                .map(|at| json!(stamp(at.to_utc()))),
        }
    }

    fn poll(&self, cursor: Option<Value>) -> BoxFuture<'_, Result<Polled, Failure>> {
        Box::pin(async move {
            let since = cursor
                .as_ref()
                .and_then(Value::as_str)
                .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                .map(|t| (t - chrono::Duration::seconds(OVERLAP_SECS)).to_rfc3339());
            let domain = match since.as_deref().and_then(rpc::datetime) {
                Some(at) => json!(["OR", ["write_date", ">", at], ["create_date", ">", at]]),
                None => json!([]),
            };
            let fields = json!([
                "reference",
                "number",
                "state",
                "shipment_state",
                "invoice_state",
                "total_amount",
                "write_date",
                "create_date",
                "invoices",
                "shipments"
            ]);
            let sales = self
                .rpc
                .call(
                    "model.sale.sale.search_read",
                    vec![
                        domain,
                        json!(0),
                        Value::Null,
                        json!([["id", "ASC"]]),
                        fields,
                    ],
                )
                .await?;
            let mut orders = Vec::new();
            let mut newest = cursor.as_ref().and_then(Value::as_str).map(str::to_owned);
            for sale in sales.as_array().into_iter().flatten() {
                let changed = [&sale["write_date"], &sale["create_date"]]
                    .into_iter()
                    .filter_map(|v| plain(v).as_str().map(str::to_owned))
                    .max()
                    .unwrap_or_default();
                if newest.as_deref().is_none_or(|n| changed.as_str() > n) {
                    newest = Some(changed.clone());
                }
                if let Some(order) = self.progress(sale, &changed).await? {
                    orders.push(order);
                }
            }
            Ok(Polled {
                orders,
                cursor: newest.map(Value::String),
            })
        })
    }
}

/// A time as the cursor holds it (the form `rpc::plain` gives Tryton's datetimes).
pub fn stamp(at: chrono::DateTime<chrono::Utc>) -> String {
    at.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

impl Tryton {
    /// The milestones `sale` has reached, in order, with the details the CRM shows.
    async fn progress(
        &self,
        sale: &Value,
        changed: &str,
    ) -> Result<Option<OrderProgress>, Failure> {
        let Some(reference) = sale["reference"].as_str().filter(|r| !r.is_empty()) else {
            return Ok(None); // not a sale handoff made
        };
        let state = sale["state"].as_str().unwrap_or_default();
        let shipment = sale["shipment_state"].as_str().unwrap_or_default();
        let invoice = sale["invoice_state"].as_str().unwrap_or_default();
        let base = json!({
            "order_id": sale["id"].to_string(), "reference": reference,
            "number": sale["number"], "changed_at": changed,
            "total_amount": plain(&sale["total_amount"]),
        });
        let mut reached = Vec::new();
        let with = |status: &str, extra: Value| {
            let mut data = base.clone();
            data["status"] = json!(status);
            if let (Some(data), Some(extra)) = (data.as_object_mut(), extra.as_object()) {
                data.extend(extra.clone());
            }
            data
        };
        if matches!(state, "confirmed" | "processing" | "done") {
            reached.push(with("confirmed", json!({})));
        }
        if shipment == "sent" {
            let number = self
                .first_number("stock.shipment.out", &sale["shipments"], &["number"])
                .await?;
            reached.push(with(
                "shipped",
                json!({"tracking_number": number["number"]}),
            ));
        }
        if matches!(invoice, "awaiting payment" | "partially paid" | "paid") {
            let invoice_read = self
                .first_number(
                    "account.invoice",
                    &sale["invoices"],
                    &["number", "total_amount"],
                )
                .await?;
            let details = json!({
                "invoice_number": invoice_read["number"],
                "invoice_amount": plain(&invoice_read["total_amount"]),
            });
            reached.push(with("invoiced", details.clone()));
            if invoice == "paid" {
                reached.push(with("paid", details));
            }
        }
        if state == "cancelled" {
            reached.push(with("cancelled", json!({})));
        }
        Ok(Some(OrderProgress {
            order_id: sale["id"].to_string(),
            reference: reference.to_owned(),
            changed_at: changed.to_owned(),
            reached,
        }))
    }

    /// `fields` of the first record of `model` among `ids` (Null when there is none).
    async fn first_number(
        &self,
        model: &str,
        ids: &Value,
        fields: &[&str],
    ) -> Result<Value, Failure> {
        let Some(first) = ids.as_array().and_then(|ids| ids.first()) else {
            return Ok(Value::Null);
        };
        let read = self
            .rpc
            .call(
                &format!("model.{model}.read"),
                vec![json!([first]), json!(fields)],
            )
            .await?;
        Ok(read.get(0).cloned().unwrap_or(Value::Null))
    }
}
