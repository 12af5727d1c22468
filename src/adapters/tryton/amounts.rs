//! Money to the cent: after a sale is created (or found), Tryton's own line amounts and order
//! total are compared with the document's `line_total`s and `total`. Tryton folds a discount
//! into the unit price (cut to 4 decimals) and rounds amounts half to even, so its figures can
//! differ from the CRM's; a difference beyond the currency's precision holds the job as
//! `amount_mismatch` with both figures, until an operator accepts Tryton's or fixes the sale.

use rust_decimal::Decimal;
use serde_json::{Value, json};

use super::{Tryton, decimal_of, number};
use crate::adapters::Failure;

/// What Tryton computed for one sale.
pub struct Figures {
    /// Each product line's `amount`, in the sale's order.
    pub lines: Vec<Decimal>,
    pub untaxed: Decimal,
    /// Decimals of the sale's currency.
    pub digits: u32,
}

impl Tryton {
    /// Tryton's figures for sale `id`, in one read (related fields by dotted names).
    pub(super) async fn figures(&self, id: i64) -> Result<Figures, Failure> {
        let sale = self
            .rpc
            .call(
                "model.sale.sale.read",
                vec![
                    json!([id]),
                    json!([
                        "untaxed_amount",
                        "lines.type",
                        "lines.amount",
                        "currency.digits"
                    ]),
                ],
            )
            .await?;
        let sale = &sale[0];
        Ok(Figures {
            lines: sale["lines."]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|line| line["type"] == "line")
                .map(|line| number(&line["amount"]))
                .collect(),
            untaxed: number(&sale["untaxed_amount"]),
            digits: sale["currency."]["digits"]
                .as_u64()
                .and_then(|d| u32::try_from(d).ok())
                .unwrap_or(2),
        })
    }
}

/// Where Tryton's figures and the document's differ beyond the currency's precision, for
/// people: `line 2 (SKU-3): Tryton 1136.62, the CRM 1136.63`. Empty when they agree (or the
/// document states no amounts).
pub fn differences(document: &Value, tryton: &Figures) -> Vec<String> {
    let precision = Decimal::new(1, tryton.digits);
    let differ = |ours: Decimal, theirs: Decimal| (ours - theirs).abs() >= precision;
    let mut found = Vec::new();
    let lines = document.get("lines").and_then(Value::as_array);
    let lines = lines.map(Vec::as_slice).unwrap_or_default();
    if lines.len() != tryton.lines.len() {
        found.push(format!(
            "Tryton has {} lines, the document {}",
            tryton.lines.len(),
            lines.len()
        ));
        return found;
    }
    for (n, (line, theirs)) in lines.iter().zip(&tryton.lines).enumerate() {
        if line.get("line_total").is_none() {
            continue;
        }
        if let Ok(ours) = decimal_of(line, "line_total")
            && differ(ours, *theirs)
        {
            let code = line["product_code"].as_str().unwrap_or("?");
            found.push(format!(
                "line {} ({code}): Tryton {theirs}, the CRM {ours}",
                n + 1
            ));
        }
    }
    if document.get("total").is_some()
        && let Ok(ours) = decimal_of(document, "total")
        && differ(ours, tryton.untaxed)
    {
        found.push(format!(
            "order total (untaxed): Tryton {}, the CRM {ours}",
            tryton.untaxed
        ));
    }
    found
}

/// The unit price Tryton stores for `base` less `discount` percent: cut to 4 decimals, half to
/// even (Tryton's `round_price`).
pub fn discounted(base: Decimal, discount: Decimal) -> Decimal {
    (base * (Decimal::ONE_HUNDRED - discount) / Decimal::ONE_HUNDRED)
        .round_dp_with_strategy(4, rust_decimal::RoundingStrategy::MidpointNearestEven)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn d(text: &str) -> Decimal {
        Decimal::from_str(text).unwrap()
    }

    #[test]
    fn tryton_arithmetic_for_the_two_cases_that_were_off() {
        // 1000 × 9.99 at 7.5%: the unit price is cut to 9.2408, so 9240.80, not 9240.75.
        assert_eq!(discounted(d("9.99"), d("7.5")), d("9.2408"));
        // 1 × 1299.00 at 12.5%: 1136.625 exactly; Tryton's amount rounds it half to even.
        assert_eq!(discounted(d("1299.00"), d("12.5")), d("1136.625"));
    }

    #[test]
    fn differences_beyond_the_currency_precision_are_named_with_both_figures() {
        let document = json!({"total": "10376.38", "lines": [
            {"product_code": "SKU-3", "line_total": "1136.63"},
            {"product_code": "SKU-9", "line_total": "9240.75"}]});
        let tryton = Figures {
            lines: vec![d("1136.62"), d("9240.80")],
            untaxed: d("10377.42"),
            digits: 2,
        };
        let found = differences(&document, &tryton);
        assert_eq!(
            found,
            [
                "line 1 (SKU-3): Tryton 1136.62, the CRM 1136.63",
                "line 2 (SKU-9): Tryton 9240.80, the CRM 9240.75",
                "order total (untaxed): Tryton 10377.42, the CRM 10376.38"
            ]
        );
        let same = Figures {
            lines: vec![d("1136.63"), d("9240.750")],
            untaxed: d("10376.38"),
            digits: 2,
        };
        assert!(differences(&document, &same).is_empty());
    }
}
