//! The floor under `Mapping::apply`: the two shipped mappings written by hand in Rust, with the
//! same libraries (serde_json with its own `Map`, rust_decimal, chrono) and handoff's own
//! number reading and writing (rust_decimal's `Display` alone costs more than a quarter of the
//! order written naively), the target schemas' constraints checked inline — no rules, no
//! interpretation, nothing a general mapping needs.
//! It is what any implementation that hands adapters a `serde_json::Value` must at least do;
//! the benchmark asserts it builds the very document the mapping builds.

use std::collections::HashMap;

use chrono::NaiveDate;
use handoff::mapping::expr::{decimal_text, parse_decimal};
use handoff::mapping::{Document, Lookups};
use rust_decimal::{Decimal, RoundingStrategy};
use serde_json::{Map, Number, Value};

type Xrefs = HashMap<String, HashMap<String, String>>;

/// Opportunity with lines → sales order (mappings/opportunity_to_sales_order.yaml).
pub fn order(event: &Value, lookups: &Lookups, xrefs: &Xrefs) -> Result<Document, &'static str> {
    let data = event.get("data").ok_or("no data")?;
    let mut out = Map::new();
    let reference = text(data.get("Id")).ok_or("no reference")?;
    put(&mut out, "reference", Some(reference));
    let account = text(data.get("AccountId"));
    let customer = account
        .and_then(|id| xrefs.get("customer")?.get(id))
        .ok_or("missing_xref")?;
    put(&mut out, "customer", Some(customer));
    put(
        &mut out,
        "customer_reference",
        trim(data.get("PO_Number__c")),
    );
    put(&mut out, "description", trim(data.get("Name")));
    let currency = text(data.get("CurrencyIsoCode"))
        .unwrap_or("EUR")
        .to_uppercase();
    if !(currency.len() == 3 && currency.bytes().all(|b| b.is_ascii_uppercase())) {
        return Err("schema: currency");
    }
    out.insert("currency".into(), Value::String(currency));
    let close = text(data.get("CloseDate")).ok_or("no close date")?;
    let date = NaiveDate::parse_from_str(close, "%Y-%m-%d").map_err(|_| "bad_date")?;
    out.insert(
        "order_date".into(),
        Value::String(date.format("%Y-%m-%d").to_string()),
    );
    let terms = text(data.get("Payment_Terms__c"))
        .and_then(|key| lookups.get("payment_terms")?.get(key)?.as_str())
        .unwrap_or("NET30");
    put(&mut out, "payment_terms", Some(terms));
    if let Some(amount) = decimal(data.get("Amount"))? {
        out.insert("total".into(), number(money(amount), Decimal::ZERO)?);
    }
    let mut lines = Vec::new();
    for item in data
        .get("OpportunityLineItems")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let quantity = decimal(item.get("Quantity"))?.ok_or("not_a_number")?;
        if quantity <= Decimal::ZERO {
            continue;
        }
        let unit_price = decimal(item.get("UnitPrice"))?.ok_or("not_a_number")?;
        let discount = decimal(item.get("Discount"))?;
        let mut line = Map::new();
        put(
            &mut line,
            "product_code",
            Some(trim(item.get("ProductCode")).ok_or("required")?),
        );
        let description = trim(item.get("Description")).or_else(|| trim(item.get("Name")));
        put(&mut line, "description", description);
        line.insert("quantity".into(), number(quantity, Decimal::ZERO)?);
        line.insert(
            "unit_price".into(),
            number(money(unit_price), Decimal::ZERO)?,
        );
        if let Some(discount) = discount {
            if discount > Decimal::ONE_HUNDRED {
                return Err("schema: discount");
            }
            line.insert("discount_percent".into(), number(discount, Decimal::ZERO)?);
        }
        let share = Decimal::ONE - discount.unwrap_or_default() / Decimal::ONE_HUNDRED;
        let total = money(quantity * unit_price * share);
        line.insert("line_total".into(), number(total, Decimal::ZERO)?);
        lines.push(Value::Object(line));
    }
    if lines.is_empty() {
        return Err("schema: lines");
    }
    out.insert("lines".into(), Value::Array(lines));
    let account = account.map(str::to_owned);
    Ok(Document {
        body: Value::Object(out),
        order_key: account.clone(),
        match_key: Some(reference.to_owned()),
        requires: account
            .map(|id| ("customer".to_owned(), id))
            .into_iter()
            .collect(),
        mapping_version: String::new(),
    })
}

/// Account → customer (mappings/account_to_customer.yaml).
pub fn account(event: &Value, lookups: &Lookups) -> Result<Document, &'static str> {
    let data = event.get("data").ok_or("no data")?;
    let mut out = Map::new();
    let code = text(data.get("Id")).ok_or("no code")?;
    put(&mut out, "code", Some(code));
    put(
        &mut out,
        "name",
        Some(trim(data.get("Name")).ok_or("required")?),
    );
    let tax_id = trim(data.get("VAT_Number__c")).map(|t| t.replace(' ', "").to_uppercase());
    put(&mut out, "tax_id", tax_id.as_deref());
    let currency = text(data.get("CurrencyIsoCode"))
        .unwrap_or("EUR")
        .to_uppercase();
    if !(currency.len() == 3 && currency.bytes().all(|b| b.is_ascii_uppercase())) {
        return Err("schema: currency");
    }
    out.insert("currency".into(), Value::String(currency));
    let terms = text(data.get("Payment_Terms__c"))
        .and_then(|key| lookups.get("payment_terms")?.get(key)?.as_str())
        .unwrap_or("NET30");
    put(&mut out, "payment_terms", Some(terms));
    if let Some(limit) = decimal(data.get("Credit_Limit__c"))? {
        out.insert("credit_limit".into(), number(money(limit), Decimal::ZERO)?);
    }
    put(&mut out, "phone", trim(data.get("Phone")));
    let website = text(data.get("Website")).map(str::to_lowercase);
    put(&mut out, "website", website.as_deref());
    let country = |code: &str, name: &str| {
        text(data.get(code)).or_else(|| {
            let name = text(data.get(name))?;
            lookups.get("countries")?.get(name)?.as_str()
        })
    };
    let mut invoice = Map::new();
    put(&mut invoice, "street", trim(data.get("BillingStreet")));
    put(
        &mut invoice,
        "postal_code",
        text(data.get("BillingPostalCode")),
    );
    put(&mut invoice, "city", text(data.get("BillingCity")));
    put(&mut invoice, "region", text(data.get("BillingState")));
    put(
        &mut invoice,
        "country",
        country("BillingCountryCode", "BillingCountry"),
    );
    address(&mut out, "invoice_address", invoice)?;
    if data.get("ShippingStreet").is_some_and(|v| !v.is_null()) {
        let mut delivery = Map::new();
        put(&mut delivery, "street", trim(data.get("ShippingStreet")));
        put(
            &mut delivery,
            "postal_code",
            text(data.get("ShippingPostalCode")),
        );
        put(&mut delivery, "city", text(data.get("ShippingCity")));
        put(
            &mut delivery,
            "country",
            country("ShippingCountryCode", "ShippingCountry"),
        );
        address(&mut out, "delivery_address", delivery)?;
    }
    let email = trim(data.get("Email__c")).map(str::to_lowercase);
    put(&mut out, "contact_email", email.as_deref());
    Ok(Document {
        body: Value::Object(out),
        order_key: Some(code.to_owned()),
        match_key: Some(code.to_owned()),
        requires: Vec::new(),
        mapping_version: String::new(),
    })
}

/// An address object, left out when empty; the schema's required members and country code.
fn address(
    out: &mut Map<String, Value>,
    name: &str,
    address: Map<String, Value>,
) -> Result<(), &'static str> {
    if address.is_empty() {
        return Ok(());
    }
    if !["street", "city", "country"]
        .iter()
        .all(|k| address.contains_key(*k))
    {
        return Err("schema: address");
    }
    let country = address["country"].as_str().unwrap_or_default();
    if !(country.len() == 2 && country.bytes().all(|b| b.is_ascii_uppercase())) {
        return Err("schema: country");
    }
    out.insert(name.to_owned(), Value::Object(address));
    Ok(())
}

fn text(value: Option<&Value>) -> Option<&str> {
    value?.as_str()
}

fn trim(value: Option<&Value>) -> Option<&str> {
    text(value).map(str::trim)
}

/// A member that is a non-empty text; missing and empty values are left out, as mappings do.
fn put(out: &mut Map<String, Value>, name: &str, value: Option<&str>) {
    if let Some(value) = value.filter(|v| !v.is_empty()) {
        out.insert(name.to_owned(), Value::String(value.to_owned()));
    }
}

/// A number or numeric text as a decimal; missing is `None`.
fn decimal(value: Option<&Value>) -> Result<Option<Decimal>, &'static str> {
    let text = match value {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Number(n)) => n.as_str(),
        Some(Value::String(s)) => s,
        Some(_) => return Err("not_a_number"),
    };
    parse_decimal(text).map(Some).ok_or("not_a_number")
}

fn money(value: Decimal) -> Decimal {
    let mut rounded = value.round_dp_with_strategy(2, RoundingStrategy::MidpointAwayFromZero);
    rounded.rescale(2);
    rounded
}

/// A decimal as a JSON number with its exact text, checked against the schema's lower bound.
fn number(value: Decimal, minimum: Decimal) -> Result<Value, &'static str> {
    if value < minimum {
        return Err("schema: minimum");
    }
    Ok(Value::Number(Number::from_string_unchecked(decimal_text(
        value,
    ))))
}
