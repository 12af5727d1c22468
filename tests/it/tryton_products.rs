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
    assert_eq!(
        created.name, "Sync test gadget",
        "the name, not \"[CODE] name\""
    );
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

/// A service on this Tryton with the shipped mappings plus `examples` from
/// `mappings/examples/`, connectors for Tryton (with `tryton` settings, e.g.
/// `, products_every_secs: 1`) and the Salesforce fake at `crm`.
pub struct Catalog {
    pub mappings: tempfile::TempDir,
    pub connectors: tempfile::TempDir,
}

impl Catalog {
    pub fn new(url: &str, crm: std::net::SocketAddr, tryton: &str, examples: &[&str]) -> Catalog {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let mappings = tempfile::tempdir().unwrap();
        crate::support::copy_dir(&root.join("mappings"), mappings.path());
        for file in examples {
            std::fs::copy(
                root.join("mappings/examples").join(file),
                mappings.path().join(file),
            )
            .unwrap();
        }
        let connectors = tempfile::tempdir().unwrap();
        std::fs::write(
            connectors.path().join("erp.yaml"),
            format!(
                "kind: tryton\nrole: erp\nbase_url: {url}\n\
                 auth: {{ basic: {{ user_env: TRYTON_USER, password_env: TRYTON_PASSWORD }} }}\n\
                 tryton: {{ database: {DB}{tryton} }}\n"
            ),
        )
        .unwrap();
        let salesforce = std::fs::read_to_string(root.join("connectors/examples/salesforce.yaml"))
            .unwrap()
            .replace(
                "https://example.my.salesforce.com",
                &format!("http://{crm}"),
            );
        std::fs::write(connectors.path().join("crm.yaml"), salesforce).unwrap();
        Catalog {
            mappings,
            connectors,
        }
    }

    pub async fn start(&self) -> crate::support::TestApp {
        crate::support::TestApp::start_with(
            crate::support::CONFIG,
            &[
                (
                    "HANDOFF_CONNECTORS_DIR",
                    self.connectors.path().to_str().unwrap(),
                ),
                (
                    "HANDOFF_MAPPINGS_DIR",
                    self.mappings.path().to_str().unwrap(),
                ),
            ],
        )
        .await
    }
}

const PRODUCT_MAPPING: &str = "product_to_salesforce_product.yaml";

#[tokio::test(flavor = "multi_thread")]
async fn a_tryton_product_reaches_salesforce_once_and_is_deactivated_there() {
    use crate::fakes::salesforce;
    use crate::support::eventually;

    let url = tryton_url();
    let erp = rpc(&url);
    let (addr, _log, org) = salesforce::start(&[]).await;
    let catalog = Catalog::new(&url, addr, ", products_every_secs: 1", &[PRODUCT_MAPPING]);
    let app = catalog.start().await;
    let code = format!("CAT-{:08X}", fastrand::u32(..));
    let template = create_product(&erp, &code, "Catalog gadget", "7.00", None).await;
    let product = |field: &'static str| {
        let org = org.clone();
        let code = code.clone();
        move || {
            let org = org.lock().unwrap();
            org.products
                .get(&code)
                .map(|p| (p.fields.get(field).cloned(), p.writes))
        }
    };
    let name = product("Name");
    eventually(30, "the new product in Salesforce", async || name()).await;
    {
        let org = org.lock().unwrap();
        let created = &org.products[&code];
        assert_eq!(created.fields["Name"], "Catalog gadget");
        assert_eq!(created.fields["ProductCode"], code.as_str());
        assert_eq!(created.fields["IsActive"], true);
        assert_eq!(created.fields["QuantityUnitOfMeasure"], "Unit");
    }
    // Polled again every second: nothing new is sent for the same change.
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    assert_eq!(product("Name")().map(|(_, writes)| writes), Some(1));

    // Renamed on the template, then deactivated: the same Salesforce record follows.
    call(
        &erp,
        "model.product.template.write",
        vec![json!([template]), json!({"name": "Catalog gadget v2"})],
    )
    .await;
    let renamed = product("Name");
    eventually(30, "the renamed product in Salesforce", async || {
        renamed().filter(|(name, _)| name.as_ref() == Some(&json!("Catalog gadget v2")))
    })
    .await;
    let variant = first_id(&erp, "product.product", json!([["code", "=", code]])).await;
    call(
        &erp,
        "model.product.product.write",
        vec![json!([variant]), json!({"active": false})],
    )
    .await;
    let active = product("IsActive");
    eventually(30, "the product inactive in Salesforce", async || {
        active().filter(|(active, _)| active.as_ref() == Some(&json!(false)))
    })
    .await;
    let (records, writes) = {
        let org = org.lock().unwrap();
        let records = org
            .products
            .values()
            .filter(|p| p.fields["ProductCode"] == code.as_str())
            .count();
        (records, org.products[&code].writes)
    };
    assert_eq!(records, 1, "one Salesforce product for one ERP product");
    assert_eq!(writes, 3, "created, renamed, deactivated");
    let dead = crate::support::jobs(&app, "state=dead").await;
    assert!(
        !dead.iter().any(|job| job["order_key"] == code.as_str()),
        "{dead:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_backfill_previews_then_loads_every_product_once() {
    use crate::fakes::salesforce;
    use crate::support::{api_post, eventually};

    let url = tryton_url();
    let erp = rpc(&url);
    let code = format!("BKF-{:08X}", fastrand::u32(..));
    create_product(&erp, &code, "Backfilled gadget", "3.00", None).await;
    let (addr, _log, org) = salesforce::start(&[]).await;
    // Product sync off: only the backfill reads products.
    let catalog = Catalog::new(&url, addr, "", &[PRODUCT_MAPPING]);
    let app = catalog.start().await;

    // The dry run, from the command line: counts, and which flow would take them.
    let url_arg = app.url("");
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_handoff"))
            .args([
                "products",
                "backfill",
                "--dry-run",
                "--json",
                "--url",
                &url_arg,
            ])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(output.status.success(), "{output:?}");
    let preview: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let products = preview["products"].as_u64().unwrap();
    assert!(products >= 1, "{preview}");
    assert_eq!(preview["products_journaled"], 0);
    assert_eq!(
        preview["flows"]["product_to_salesforce_product"].as_u64(),
        Some(products),
        "each product would go to Salesforce: {preview}"
    );
    assert_eq!(journaled(&app, &code), 0, "a dry run journals nothing");

    // The real run, twice (it runs in the background; the API reports it): our product
    // journaled once, in Salesforce once.
    for _ in 0..2 {
        let (status, run) = api_post(
            &app,
            "/api/v1/connectors/erp/products/backfill",
            serde_json::Value::Null,
        )
        .await;
        assert_eq!(status, 202, "{run}");
        assert_eq!(run["state"], "running");
        let done = eventually(60, "the backfill finished", async || {
            let run = crate::support::api(&app, "/api/v1/connectors/erp/products/backfill").await;
            (run["state"] != "running").then_some(run)
        })
        .await;
        assert_eq!(done["state"], "done", "{done}");
        assert_eq!(done["report"]["dry_run"], false);
        assert!(done["report"]["products"].as_u64().unwrap() >= 1, "{done}");
    }
    assert_eq!(journaled(&app, &code), 1);
    let writes = eventually(30, "the backfilled product in Salesforce", async || {
        org.lock().unwrap().products.get(&code).map(|p| p.writes)
    })
    .await;
    assert_eq!(writes, 1);

    // A connector that masters no products says so.
    let (status, refused) = api_post(
        &app,
        "/api/v1/connectors/crm/products/backfill",
        serde_json::Value::Null,
    )
    .await;
    assert_eq!(status, 409, "{refused}");
}
