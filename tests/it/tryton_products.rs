//! Products changed in a real Tryton (`adapters/tryton/products.rs`): a new product, a list
//! price edited on its template (which leaves the variant's `write_date` alone), and a
//! deactivated product (hidden from searches unless asked for) are each seen once, with ids
//! that stay the same when the same change is read again.

use serde_json::json;

use handoff::adapters::ProductChange;
use handoff::adapters::tryton::{Tryton, TrytonSpec};

use crate::tryton::{DB, call, create_product, first_id, rpc, tryton_url};

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
    let before = tryton.read_changed_products(None).await.unwrap().cursor;
    let template = create_product(&erp, &code, "Sync test gadget", "10.00", None).await;

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
    let variant = first_id(&erp, "product.product", json!([["code", "=", code]]))
        .await
        .unwrap();
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
    create_product(&erp, &code, "Service test gadget", "5.00", None).await;
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
