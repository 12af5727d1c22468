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
    out.insert("currency".into(), currency(data)?);
    let close = text(data.get("CloseDate")).ok_or("no close date")?;
    let date = NaiveDate::parse_from_str(close, "%Y-%m-%d").map_err(|_| "bad_date")?;
    out.insert(
        "order_date".into(),
        Value::String(date.format("%Y-%m-%d").to_string()),
    );
    put(
        &mut out,
        "payment_terms",
        Some(payment_terms(data, lookups)),
    );
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
    out.insert("currency".into(), currency(data)?);
    put(
        &mut out,
        "payment_terms",
        Some(payment_terms(data, lookups)),
    );
    if let Some(limit) = decimal(data.get("Credit_Limit__c"))? {
        out.insert("credit_limit".into(), number(money(limit), Decimal::ZERO)?);
    }
    put(&mut out, "phone", trim(data.get("Phone")));
    let website = text(data.get("Website")).map(str::to_lowercase);
    put(&mut out, "website", website.as_deref());
    address(&mut out, "invoice_address", data, lookups, &BILLING)?;
    if data.get("ShippingStreet").is_some_and(|v| !v.is_null()) {
        address(&mut out, "delivery_address", data, lookups, &SHIPPING)?;
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

/// `upper(coalesce($.data.CurrencyIsoCode, 'EUR'))`, three capitals as the schema wants.
fn currency(data: &Value) -> Result<Value, &'static str> {
    let currency = text(data.get("CurrencyIsoCode"))
        .unwrap_or("EUR")
        .to_uppercase();
    if !(currency.len() == 3 && currency.bytes().all(|b| b.is_ascii_uppercase())) {
        return Err("schema: currency");
    }
    Ok(Value::String(currency))
}

/// `lookup('payment_terms', $.data.Payment_Terms__c, 'NET30')`.
fn payment_terms<'a>(data: &'a Value, lookups: &'a Lookups) -> &'a str {
    text(data.get("Payment_Terms__c"))
        .and_then(|key| lookups.get("payment_terms")?.get(key)?.as_str())
        .unwrap_or("NET30")
}

/// The event's members an address is made of: street, postal code, city, region (the
/// delivery address has none), country code, country name.
struct AddressFields {
    street: &'static str,
    postal_code: &'static str,
    city: &'static str,
    region: Option<&'static str>,
    country_code: &'static str,
    country: &'static str,
}

const BILLING: AddressFields = AddressFields {
    street: "BillingStreet",
    postal_code: "BillingPostalCode",
    city: "BillingCity",
    region: Some("BillingState"),
    country_code: "BillingCountryCode",
    country: "BillingCountry",
};

const SHIPPING: AddressFields = AddressFields {
    street: "ShippingStreet",
    postal_code: "ShippingPostalCode",
    city: "ShippingCity",
    region: None,
    country_code: "ShippingCountryCode",
    country: "ShippingCountry",
};

/// An address object, left out when empty; the schema's required members and country code.
fn address(
    out: &mut Map<String, Value>,
    name: &str,
    data: &Value,
    lookups: &Lookups,
    fields: &AddressFields,
) -> Result<(), &'static str> {
    let mut address = Map::new();
    put(&mut address, "street", trim(data.get(fields.street)));
    put(
        &mut address,
        "postal_code",
        text(data.get(fields.postal_code)),
    );
    put(&mut address, "city", text(data.get(fields.city)));
    if let Some(region) = fields.region {
        put(&mut address, "region", text(data.get(region)));
    }
    let country = text(data.get(fields.country_code)).or_else(|| {
        let name = text(data.get(fields.country))?;
        lookups.get("countries")?.get(name)?.as_str()
    });
    put(&mut address, "country", country);
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
