//! Reconciliation of product sync (Tryton → Salesforce) with the shipped example mapping and
//! connector: a product deleted in Salesforce is created again, a product handoff never sent
//! is sent, a name edited in Salesforce is reported (not undone), a Product2 no Tryton product
//! has is reported.

use serde_json::{Value, json};

use crate::fakes::salesforce;
use crate::fakes::salesforce_catalog::Product;
use crate::support::*;
use crate::tryton::{create_product, rpc, tryton_url};
use crate::tryton_products::Catalog;
use crate::tryton_reconcile::reconcile;

const MAPPING: &str = "product_to_salesforce_product.yaml";

fn row_of<'a>(run: &'a Value, code: &str) -> &'a Value {
    run["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|row| row["key"] == code)
        .unwrap_or_else(|| panic!("no row for {code}: {run}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn drift_between_tryton_and_salesforce_products_is_found_and_the_safe_cases_repaired() {
    let url = tryton_url();
    let erp = rpc(&url);
    let run = fastrand::u32(..);
    let code = |n: u32| format!("RCN-{run:08X}-{n}");
    create_product(&erp, &code(1), "Deleted in Salesforce", "5.00", None).await;
    create_product(&erp, &code(3), "Renamed in Salesforce", "5.00", None).await;
    let (addr, _log, org) = salesforce::start(&[]).await;
    // Product sync off: the backfill loads what is there; a product made afterwards is never sent.
    let catalog = Catalog::new(&url, addr, "", &[MAPPING]);
    let file = catalog.mappings.path().join(MAPPING);
    let text = std::fs::read_to_string(&file).unwrap();
    let text = text
        .replace("max_repair_share: 0.1", "max_repair_share: 1.0")
        .replace("max_repairs: 100", "max_repairs: 100000")
        .replace("in_flight_secs: 300", "in_flight_secs: 0");
    std::fs::write(&file, text).unwrap();
    let app = catalog.start().await;
    let (status, _) = api_post(&app, "/api/v1/connectors/erp/products/backfill", json!({})).await;
    assert_eq!(status, 202);
    let in_salesforce = |n: u32| {
        let (org, code) = (org.clone(), code(n));
        move || org.lock().unwrap().products.get(&code).cloned()
    };
    for n in [1, 3] {
        let there = in_salesforce(n);
        eventually(60, "the backfilled product in Salesforce", async || there()).await;
    }
    // Drift: deleted and renamed in Salesforce, a Product2 made by hand, a Tryton product
    // that never reached Salesforce.
    create_product(&erp, &code(2), "Never sent", "5.00", None).await;
    {
        let mut org = org.lock().unwrap();
        org.products.remove(&code(1));
        let renamed = org.products.get_mut(&code(3)).unwrap();
        renamed
            .fields
            .insert("Name".into(), json!("Renamed by hand"));
        let mut fields = serde_json::Map::new();
        fields.insert("Name".into(), json!("Made by hand"));
        fields.insert("IsActive".into(), json!(true));
        org.products.insert(
            code(4),
            Product {
                id: "01tHAND00000001".into(),
                fields,
                writes: 1,
                modified: String::new(),
            },
        );
    }

    let first = reconcile(&app, "product_to_salesforce_product", true, true).await;
    assert_eq!(first["state"], "done", "{first}");
    assert_eq!(first["dry_run"], true);
    assert_eq!(row_of(&first, &code(1))["class"], "missing_in_target");
    assert_eq!(row_of(&first, &code(2))["class"], "missed_event");
    let renamed = row_of(&first, &code(3));
    assert_eq!(renamed["class"], "edited_in_target");
    assert_eq!(
        renamed["why"],
        "changed in the target: Name: \"Renamed in Salesforce\" → \"Renamed by hand\""
    );
    assert_eq!(row_of(&first, &code(4))["class"], "only_in_target");
    assert!(in_salesforce(1)().is_none(), "a dry run repairs nothing");

    let repaired = reconcile(&app, "product_to_salesforce_product", true, true).await;
    assert_eq!(repaired["state"], "done", "{repaired}");
    assert_eq!(row_of(&repaired, &code(1))["action"], "replayed (repair)");
    assert_eq!(row_of(&repaired, &code(2))["action"], "replayed (repair)");
    let recreated = in_salesforce(1);
    let product = eventually(30, "the deleted product created again", async || {
        recreated()
    })
    .await;
    assert_eq!(product.fields["Name"], "Deleted in Salesforce");
    let sent = in_salesforce(2);
    eventually(30, "the missed product sent", async || sent()).await;
    assert_eq!(
        in_salesforce(3)().unwrap().fields["Name"],
        "Renamed by hand",
        "reported only"
    );
    assert!(in_salesforce(4)().is_some(), "reported only");
    assert_eq!(row_of(&repaired, &code(3))["action"], Value::Null);
}
