//! Prices from a real Tryton with `sale_price_list` (adapters/tryton/prices.rs), and price
//! sync into the Salesforce fake: Tryton computes each price (list price; a price list's
//! formula), a price-list line edit is seen though no product changed, the standard price
//! reaches Salesforce before the custom price book's entry, a repriced entry is updated in
//! place, a deactivated product deactivates its entries, and two price lists in two companies'
//! currencies give four entries (a product without a EUR price gets none in EUR).

use serde_json::{Value, json};

use handoff::adapters::PriceChange;
use handoff::adapters::tryton::{Tryton, TrytonSpec};

use crate::fakes::salesforce;
use crate::support::eventually;
use crate::tryton::{DB, call, create_product, first_id, rpc, tryton_url};
use crate::tryton_products::Catalog;

fn adapter(url: &str) -> Tryton {
    let spec: TrytonSpec = serde_json::from_value(json!({ "database": DB })).unwrap();
    Tryton::new(rpc(url), spec)
}

fn price_of(prices: &[PriceChange], code: &str, list: &str) -> Option<PriceChange> {
    prices
        .iter()
        .find(|p| p.code == code && p.price_list == list)
        .cloned()
}

/// A price list named `name` with one line for `product` (`formula` on its list price).
async fn price_list(erp: &handoff::adapters::tryton::rpc::Rpc, name: &str, product: i64) -> i64 {
    let made = call(
        erp,
        "model.product.price_list.create",
        vec![
            json!([{"name": name, "price": "list_price", "lines": [["create", [
            {"product": product, "formula": "unit_price * 0.9"}]]]}]),
        ],
    )
    .await;
    made[0].as_i64().unwrap()
}

async fn set_formula(erp: &handoff::adapters::tryton::rpc::Rpc, list: i64, formula: &str) {
    let lines = call(
        erp,
        "model.product.price_list.read",
        vec![json!([list]), json!(["lines"])],
    )
    .await[0]["lines"]
        .clone();
    call(
        erp,
        "model.product.price_list.line.write",
        vec![lines, json!({"formula": formula})],
    )
    .await;
}

/// Turns the price list off, so later passes (and other tests) do not carry it.
async fn retire(erp: &handoff::adapters::tryton::rpc::Rpc, list: i64) {
    call(
        erp,
        "model.product.price_list.write",
        vec![json!([list]), json!({"active": false})],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn tryton_computes_list_and_price_list_prices_and_a_line_edit_shows() {
    let url = tryton_url();
    let erp = rpc(&url);
    let tryton = adapter(&url);
    let run = fastrand::u32(..);
    let code = format!("PRC-{run:08X}");
    create_product(&erp, &code, "Priced gadget", "20.00", None).await;
    let variant = first_id(&erp, "product.product", json!([["code", "=", code]]))
        .await
        .unwrap();
    let name = format!("Wholesale {run:08X}");
    let list = price_list(&erp, &name, variant).await;

    let prices = tryton.read_prices().await.unwrap();
    let standard = price_of(&prices, &code, "standard").expect("the list price");
    let wholesale = price_of(&prices, &code, &name).expect("the price list's price");
    assert_eq!(standard.price.parse::<f64>().unwrap(), 20.0, "{standard:?}");
    assert_eq!(
        wholesale.price.parse::<f64>().unwrap(),
        18.0,
        "{wholesale:?}"
    );
    assert_eq!(standard.currency, "USD", "the company's currency");
    assert!(standard.active);
    assert!(
        prices
            .iter()
            .filter(|p| p.code == code)
            .all(|p| p.currency == "USD"),
        "no converted price: the EUR company keeps no price for it"
    );

    // The line's formula changes; no product does. The next pass sees the new price.
    set_formula(&erp, list, "unit_price * 0.75").await;
    let prices = tryton.read_prices().await.unwrap();
    let edited = price_of(&prices, &code, &name).unwrap();
    assert_eq!(edited.price.parse::<f64>().unwrap(), 15.0, "{edited:?}");
    retire(&erp, list).await;
    let prices = tryton.read_prices().await.unwrap();
    assert!(
        price_of(&prices, &code, &name).is_none(),
        "an inactive list is not read"
    );
}

/// The product and price examples, with the price book lookup naming `list` as the custom
/// book; Tryton asked for products every second, the whole price pass due only hourly (a
/// price-list edit and a product change bring it forward).
fn setup(url: &str, crm: std::net::SocketAddr, list: &str) -> Catalog {
    let catalog = Catalog::new(
        url,
        crm,
        ", products_every_secs: 1, prices_every_secs: 3600",
        &[
            "product_to_salesforce_product.yaml",
            "standard_price_to_salesforce.yaml",
            "price_to_salesforce_entry.yaml",
        ],
    );
    std::fs::write(
        catalog
            .mappings
            .path()
            .join("lookups/salesforce_pricebooks.yaml"),
        format!(
            "standard: {}\n\"{list}\": 01sCUSTOM0000001\n",
            crate::fakes::salesforce_catalog::STANDARD_BOOK
        ),
    )
    .unwrap();
    catalog
}

/// Our product's entries in the org: (price book, unit price text, active), oldest first.
fn entries_of(org: &salesforce::Shared, code: &str) -> Vec<(String, String, bool)> {
    let org = org.lock().unwrap();
    let Some(product) = org.products.get(code) else {
        return Vec::new();
    };
    let mut entries: Vec<&Value> = org
        .entries
        .values()
        .filter(|e| e["Product2Id"] == product.id.as_str())
        .collect();
    entries.sort_by_key(|e| e["Id"].as_str().unwrap_or_default().to_owned());
    entries
        .into_iter()
        .map(|e| {
            (
                e["Pricebook2Id"].as_str().unwrap_or_default().to_owned(),
                e["UnitPrice"].to_string(),
                e["IsActive"] == true,
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn prices_reach_salesforce_standard_first_repriced_in_place_and_deactivated() {
    let url = tryton_url();
    let erp = rpc(&url);
    let run = fastrand::u32(..);
    let code = format!("SFP-{run:08X}");
    let name = format!("Wholesale {run:08X}");
    let (addr, _log, org) = salesforce::start(&[]).await;
    let catalog = setup(&url, addr, &name);
    create_product(&erp, &code, "Priced in Salesforce", "40.00", None).await;
    let variant = first_id(&erp, "product.product", json!([["code", "=", code]]))
        .await
        .unwrap();
    let list = price_list(&erp, &name, variant).await;
    let app = catalog.start().await;
    let standard = salesforce_catalog_standard();
    let custom = "01sCUSTOM0000001".to_owned();

    let both = eventually(60, "the standard and the custom entry", async || {
        let entries = entries_of(&org, &code);
        (entries.len() == 2).then_some(entries)
    })
    .await;
    assert_eq!(
        both,
        [
            (standard.clone(), "40.00".into(), true),
            (custom.clone(), "36.00".into(), true)
        ],
        "the standard price first (Salesforce refuses a custom entry before it)"
    );

    // The price list line changes: the custom entry is updated in place.
    set_formula(&erp, list, "unit_price * 0.5").await;
    eventually(30, "the repriced custom entry", async || {
        let entries = entries_of(&org, &code);
        (entries.get(1).map(|e| e.1.as_str()) == Some("20.00")).then_some(())
    })
    .await;

    // Deactivated in Tryton: the product and both its entries.
    call(
        &erp,
        "model.product.product.write",
        vec![json!([variant]), json!({"active": false})],
    )
    .await;
    let entries = eventually(30, "the entries deactivated", async || {
        let entries = entries_of(&org, &code);
        (entries.len() == 2 && entries.iter().all(|e| !e.2)).then_some(entries)
    })
    .await;
    retire(&erp, list).await;
    assert_eq!(
        entries.len(),
        2,
        "still one entry per price book: {entries:?}"
    );
    assert_eq!(
        org.lock().unwrap().products[&code].fields["IsActive"],
        false
    );
    let dead = crate::support::jobs(&app, "state=dead").await;
    assert!(
        !dead.iter().any(|job| job["order_key"] == code.as_str()),
        "{dead:?}"
    );
}

fn salesforce_catalog_standard() -> String {
    crate::fakes::salesforce_catalog::STANDARD_BOOK.to_owned()
}

/// The company keeping prices in EUR (tests/tryton/fixture.py).
async fn europe(erp: &handoff::adapters::tryton::rpc::Rpc) -> Value {
    let party = first_id(erp, "party.party", json!([["code", "=", "COMPANY-EU"]])).await;
    json!(
        first_id(erp, "company.company", json!([["party", "=", party]]))
            .await
            .unwrap()
    )
}

/// Our product's entries: (currency, price book, unit price text), by currency then book.
fn entries_by_currency(org: &salesforce::Shared, code: &str) -> Vec<(String, String, String)> {
    let org = org.lock().unwrap();
    let Some(product) = org.products.get(code) else {
        return Vec::new();
    };
    let mut entries: Vec<(String, String, String)> = org
        .entries
        .values()
        .filter(|e| e["Product2Id"] == product.id.as_str())
        .map(|e| {
            let text = |f: &str| e[f].as_str().unwrap_or_default().to_owned();
            (
                text("CurrencyIsoCode"),
                text("Pricebook2Id"),
                e["UnitPrice"].to_string(),
            )
        })
        .collect();
    entries.sort();
    entries
}

#[tokio::test(flavor = "multi_thread")]
async fn two_price_lists_in_two_currencies_give_four_entries_and_no_converted_guess() {
    let url = tryton_url();
    let erp = rpc(&url);
    let run = fastrand::u32(..);
    let (priced, unpriced) = (format!("EUR-{run:08X}"), format!("USD-{run:08X}"));
    let name = format!("Export {run:08X}");
    let (addr, _log, org) = salesforce::start(&[]).await;
    let catalog = setup(&url, addr, &name);
    let template = create_product(&erp, &priced, "Priced in two currencies", "40.00", None).await;
    create_product(&erp, &unpriced, "Priced in dollars only", "10.00", None).await;
    let europe = europe(&erp).await;
    // The EUR company's own list price, and a price list of the same name there.
    erp.call_in(
        "model.product.template.write",
        vec![
            json!([template]),
            json!({"list_price": {"__class__": "Decimal", "decimal": "36.00"}}),
        ],
        json!({"company": europe, "companies": [europe]}),
    )
    .await
    .unwrap();
    let mut lists = Vec::new();
    for (product, company) in [(&priced, Value::Null), (&priced, europe.clone())] {
        let variant = first_id(&erp, "product.product", json!([["code", "=", product]])).await;
        let context = if company.is_null() {
            json!({})
        } else {
            json!({"company": company})
        };
        let mut values = json!({"name": name, "price": "list_price",
            "lines": [["create", [{"product": variant, "formula": "unit_price * 0.9"}]]]});
        if !company.is_null() {
            values["company"] = company.clone();
        }
        let made = erp
            .call_in(
                "model.product.price_list.create",
                vec![json!([values])],
                context,
            )
            .await
            .unwrap();
        lists.push(made[0].as_i64().unwrap());
    }
    let _app = catalog.start().await;
    let standard = salesforce_catalog_standard();
    let custom = "01sCUSTOM0000001".to_owned();
    let four = eventually(60, "four entries", async || {
        let entries = entries_by_currency(&org, &priced);
        (entries.len() == 4).then_some(entries)
    })
    .await;
    assert_eq!(
        four,
        [
            ("EUR".into(), custom.clone(), "32.40".into()),
            ("EUR".into(), standard.clone(), "36.00".into()),
            ("USD".into(), custom.clone(), "36.00".into()),
            ("USD".into(), standard.clone(), "40.00".into()),
        ]
    );
    // In each currency the standard price was made first (the fake refuses a custom entry
    // before it; entry ids count up).
    for currency in ["EUR", "USD"] {
        let org = org.lock().unwrap();
        let id_of = |book: &str| {
            org.entries
                .values()
                .find(|e| {
                    e["CurrencyIsoCode"] == currency
                        && e["Pricebook2Id"] == book
                        && e["Product2Id"] == org.products[&priced].id.as_str()
                })
                .map(|e| e["Id"].as_str().unwrap().to_owned())
        };
        assert!(id_of(&standard) < id_of(&custom), "{currency}");
    }
    let dollars = eventually(30, "the dollar-only product's entries", async || {
        let entries = entries_by_currency(&org, &unpriced);
        (!entries.is_empty()).then_some(entries)
    })
    .await;
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    assert_eq!(
        entries_by_currency(&org, &unpriced),
        [("USD".into(), standard, "10.00".into())],
        "no EUR entry without a EUR price (never a converted guess): {dollars:?}"
    );
    for list in lists {
        retire(&erp, list).await;
    }
}
