//! Products changed in a real Tryton (`adapters/tryton/products.rs`): a new product, a list
//! price edited on its template (which leaves the variant's `write_date` alone), and a
//! deactivated product (hidden from searches unless asked for) are each seen once, with ids
//! that stay the same when the same change is read again.

use serde_json::{Value, json};

use handoff::adapters::ProductChange;
use handoff::adapters::tryton::{Tryton, TrytonSpec};

use crate::tryton::{DB, call, rpc, tryton_url};

fn adapter(url: &str) -> Tryton {
    let spec: TrytonSpec = serde_json::from_value(json!({ "database": DB })).unwrap();
    Tryton::new(rpc(url), spec)
}

/// Our product among the changes, if it is there.
fn ours<'a>(changes: &'a [ProductChange], code: &str) -> Option<&'a ProductChange> {
    changes.iter().find(|c| c.code == code)
}

#[tokio::test(flavor = "multi_thread")]
async fn new_repriced_and_deactivated_products_are_each_seen_with_stable_ids() {
    let url = tryton_url();
    let erp = rpc(&url);
    let tryton = adapter(&url);
    let code = format!("PRD-{:08X}", fastrand::u32(..));
    let first = |model: &str, domain: Value| {
        let erp = &erp;
        let model = model.to_owned();
        async move {
            call(
                erp,
                &format!("model.{model}.search"),
                vec![domain, json!(0), json!(1), Value::Null],
            )
            .await[0]
                .as_i64()
                .unwrap()
        }
    };
    let unit = first("product.uom", json!([["name", "=", "Unit"]])).await;
    let goods = first(
        "product.category",
        json!([["name", "=", "Goods"], ["accounting", "=", true]]),
    )
    .await;
    let before = tryton.read_changed_products(None).await.unwrap().cursor;
    let template = call(
        &erp,
        "model.product.template.create",
        vec![json!([{
            "name": "Sync test gadget", "type": "goods", "salable": true,
            "default_uom": unit, "sale_uom": unit,
            "list_price": {"__class__": "Decimal", "decimal": "10.00"},
            "account_category": goods,
            "products": [["create", [{"suffix_code": code}]]]
        }])],
    )
    .await[0]
        .as_i64()
        .unwrap();

    // New: seen after the cursor taken before it, active, with its price and unit.
    let found = tryton
        .read_changed_products(before.as_deref())
        .await
        .unwrap();
    let (changes, cursor) = (found.changes, found.cursor);
    let created = ours(&changes, &code).expect("the new product").clone();
    assert!(created.active);
    assert_eq!(
        created.list_price.parse::<f64>().unwrap(),
        10.0,
        "{created:?}"
    );
    assert_eq!(created.sale_unit, "Unit");
    assert_eq!(created.data()["code"], code.as_str());
    // Read again (the cursor overlaps): the same change, the same id.
    let again = tryton
        .read_changed_products(cursor.as_deref())
        .await
        .unwrap()
        .changes;
    assert_eq!(
        ours(&again, &code).map(ProductChange::event_id),
        Some(created.event_id())
    );

    // Repriced on the template: a new change, with a new id.
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    call(
        &erp,
        "model.product.template.write",
        vec![
            json!([template]),
            json!({"list_price": {"__class__": "Decimal", "decimal": "12.50"}}),
        ],
    )
    .await;
    let found = tryton
        .read_changed_products(cursor.as_deref())
        .await
        .unwrap();
    let (changes, cursor) = (found.changes, found.cursor);
    let repriced = ours(&changes, &code).expect("the repriced product").clone();
    assert_eq!(repriced.list_price.parse::<f64>().unwrap(), 12.5);
    assert_ne!(repriced.event_id(), created.event_id());

    // Deactivated: still seen (inactive), again with a new id.
    let variant = first("product.product", json!([["code", "=", code]])).await;
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    call(
        &erp,
        "model.product.product.write",
        vec![json!([variant]), json!({"active": false})],
    )
    .await;
    let changes = tryton
        .read_changed_products(cursor.as_deref())
        .await
        .unwrap()
        .changes;
    let gone = ours(&changes, &code).expect("the deactivated product");
    assert!(!gone.active, "{gone:?}");
    assert_ne!(gone.event_id(), repriced.event_id());
}

/// The `product.changed` events journaled for product `code`.
fn journaled(app: &crate::support::TestApp, code: &str) -> usize {
    let prefix = format!("product:{code}:");
    app.envelopes()
        .iter()
        .filter(|e| e.event_type.as_deref() == Some("product.changed") && e.id.starts_with(&prefix))
        .count()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_service_journals_each_product_change_once() {
    use crate::support::eventually;
    let url = tryton_url();
    let (_fake, app, _connectors) =
        crate::tryton_ours::start_on_tryton_with(&url, ", products_every_secs: 1").await;
    let erp = rpc(&url);
    let code = format!("SVC-{:08X}", fastrand::u32(..));
    let unit = call(
        &erp,
        "model.product.uom.search",
        vec![
            json!([["name", "=", "Unit"]]),
            json!(0),
            json!(1),
            Value::Null,
        ],
    )
    .await[0]
        .as_i64()
        .unwrap();
    let goods = call(
        &erp,
        "model.product.category.search",
        vec![
            json!([["name", "=", "Goods"], ["accounting", "=", true]]),
            json!(0),
            json!(1),
            Value::Null,
        ],
    )
    .await[0]
        .as_i64()
        .unwrap();
    call(
        &erp,
        "model.product.template.create",
        vec![json!([{
            "name": "Service test gadget", "type": "goods", "salable": true,
            "default_uom": unit, "sale_uom": unit,
            "list_price": {"__class__": "Decimal", "decimal": "5.00"},
            "account_category": goods,
            "products": [["create", [{"suffix_code": code}]]]
        }])],
    )
    .await;
    eventually(30, "the new product journaled", async || {
        (journaled(&app, &code) == 1).then_some(())
    })
    .await;
    let event = app
        .envelopes()
        .into_iter()
        .find(|e| e.id.starts_with(&format!("product:{code}:")))
        .unwrap();
    assert_eq!(event.source, "erp");
    assert_eq!(event.data["code"], code.as_str());
    assert_eq!(event.data["active"], true);
    // Asked again every second (with the cursor's overlap): the same change, stored once.
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    assert_eq!(journaled(&app, &code), 1);
}
