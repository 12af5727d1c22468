//! Reconciliation against the real Tryton, with the recording CRM listing its accounts and
//! opportunities: a party edited by hand, a won opportunity whose webhook never came, a sale
//! deleted in Tryton, a second sale with the same reference, a party made by hand for an
//! account, a record changed moments ago, a held order and a sale no opportunity has each land
//! in their class; only the safe classes are repaired, the first run is a dry run, and the cap
//! stops a run.

use std::sync::Arc;

use serde_json::{Value, json};

use crate::fake_erp::{self, Fake};
use crate::support::*;
use crate::tryton::{DB, call, rpc, sales_of, tryton_url};

const CRM: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// The shipped mappings with a `reconcile:` block added to each (file, block).
pub fn reconciled_mappings(blocks: &[(&str, &str)]) -> tempfile::TempDir {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mappings = tempfile::tempdir().unwrap();
    copy_dir(&root.join("mappings"), mappings.path());
    for (file, block) in blocks {
        let path = mappings.path().join(file);
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, format!("{text}\nreconcile:\n{block}")).unwrap();
    }
    mappings
}

/// CRM connector lines for the recording CRM's listings (`page` records a page).
pub fn crm_lists(page: usize) -> String {
    format!(
        "  list_accounts: {{ method: GET, path: \"/records/Account?limit={page}\", list: {{ items: /records, next: /next, id: /Id, version: /LastModifiedDate }} }}\n  \
         list_opportunities: {{ method: GET, path: \"/records/Opportunity?limit={page}\", list: {{ items: /records, next: /next, id: /Id, version: /LastModifiedDate }} }}\n"
    )
}

fn account(id: &str, name: &str) -> Value {
    json!({"Id": id, "Name": name, "BillingStreet": "1 Main St", "BillingCity": "Berlin",
           "BillingPostalCode": "10115", "BillingCountryCode": "DE", "CurrencyIsoCode": "USD",
           "LastModifiedDate": "2026-11-20T09:00:00Z"})
}

fn won(id: &str, account: &str, version: &str, verified: bool) -> Value {
    json!({"Id": id, "AccountId": account, "Name": "Restock", "StageName": "Closed Won",
           "CloseDate": "2026-11-20", "Amount": "58.47", "CurrencyIsoCode": "USD",
           "Payment_Verified__c": verified, "LastModifiedDate": version,
           "OpportunityLineItems": [
               {"ProductCode": "SKU-1", "Name": "Widget", "Quantity": 3, "UnitPrice": "19.49"}]})
}

struct Crm {
    fake: Arc<Fake>,
}

impl Crm {
    /// The record is in the CRM (listed), and its webhook is sent when `send`.
    async fn has(&self, app: &TestApp, object: &str, data: Value, send: bool) {
        let id = data["Id"].as_str().unwrap().to_owned();
        self.fake
            .books()
            .records
            .entry(object.to_owned())
            .or_default()
            .insert(id.clone(), data.clone());
        if send {
            let kind = if object == "Account" {
                "account.updated"
            } else {
                "opportunity.won"
            };
            let body = json!({"type": kind, "object": object, "data": data}).to_string();
            let (status, reply) = app
                .post(
                    "/hooks/crm",
                    &standard_webhooks(CRM, &id, now(), &body),
                    &body,
                )
                .await;
            assert_eq!(status, 202, "{reply}");
        }
    }
}

/// Starts a run and waits until it has finished.
pub async fn reconcile(app: &TestApp, flow: &str, deep: bool, repair: bool) -> Value {
    let ask = json!({"flow": flow, "deep": deep, "repair": repair.then_some("safe")});
    let (status, run) = api_post(app, "/api/v1/reconcile/runs", ask).await;
    assert_eq!(status, 202, "{run}");
    let id = run["id"].as_u64().unwrap();
    eventually(120, "the run finished", async || {
        let run = api(app, &format!("/api/v1/reconcile/runs/{id}")).await;
        (run["state"] != "running").then_some(run)
    })
    .await
}

/// The class of the row about `id` (a record id or a key), if the run has one.
fn class_of<'a>(run: &'a Value, id: &str) -> Option<&'a str> {
    row_of(run, id).map(|row| row["class"].as_str().unwrap())
}

fn row_of<'a>(run: &'a Value, id: &str) -> Option<&'a Value> {
    run["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|row| row["record"] == id || row["key"] == id)
}

/// The service with the recording CRM (listing its records, `page` a page) and a Tryton ERP
/// with `tryton` settings, the shipped mappings with `blocks` added; the temp dirs live as long
/// as the returned value.
struct Setup {
    app: TestApp,
    fake: Arc<Fake>,
    _dirs: (tempfile::TempDir, tempfile::TempDir),
}

async fn setup(page: usize, tryton: &str, blocks: &[(&str, &str)]) -> Setup {
    let url = tryton_url();
    let (fake, fake_addr) = Fake::start().await;
    let connectors = tempfile::tempdir().unwrap();
    fake_erp::connectors(connectors.path(), fake_addr, 5);
    let crm_file = connectors.path().join("crm.yaml");
    let crm_text = std::fs::read_to_string(&crm_file).unwrap();
    std::fs::write(&crm_file, format!("{crm_text}{}", crm_lists(page))).unwrap();
    std::fs::write(
        connectors.path().join("erp.yaml"),
        format!(
            "kind: tryton\nrole: erp\nbase_url: {url}\n\
             auth: {{ basic: {{ user_env: TRYTON_USER, password_env: TRYTON_PASSWORD }} }}\n\
             tryton: {{ database: {DB}, {tryton} }}\n\
             retry: {{ schedule_secs: [1, 1, 1, 1, 1] }}\n"
        ),
    )
    .unwrap();
    let mappings = reconciled_mappings(blocks);
    let app = TestApp::start_with(
        CONFIG,
        &[
            (
                "HANDOFF_CONNECTORS_DIR",
                connectors.path().to_str().unwrap(),
            ),
            ("HANDOFF_MAPPINGS_DIR", mappings.path().to_str().unwrap()),
        ],
    )
    .await;
    Setup {
        app,
        fake,
        _dirs: (connectors, mappings),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn drift_lands_in_its_class_and_only_safe_classes_are_repaired_under_the_cap() {
    let url = tryton_url();
    let Setup { app, fake, _dirs } = setup(
        2,
        "confirm: false, poll_every_secs: 0",
        &[
            (
                "account_to_customer.yaml",
                "  source: { connector: crm, operation: list_accounts, wrap: data }\n  target: list_customers\n  \
                 compare: [name]\n  max_repair_share: 1.0\n",
            ),
            (
                "opportunity_to_sales_order.yaml",
                "  source: { connector: crm, operation: list_opportunities, wrap: data }\n  target: list_sales_orders\n  \
                 compare: [reference, total, currency]\n  max_repairs: 1\n  max_repair_share: 1.0\n",
            ),
        ],
    )
    .await;
    let crm = Crm { fake: fake.clone() };
    let run = fastrand::u32(..);
    let id = |prefix: &str, n: u32| format!("{prefix}R{run:08X}{n}");
    let (a1, a2, a3) = (id("001", 1), id("001", 2), id("001", 3));
    let old = "2026-11-20T10:00:00Z";
    crm.has(&app, "Account", account(&a1, "Reconcile One"), true)
        .await;
    crm.has(&app, "Account", account(&a2, "Reconcile Two"), true)
        .await;
    crm.has(&app, "Account", account(&a3, "Reconcile Three"), false)
        .await;
    let opp = |n| id("006", n);
    crm.has(&app, "Opportunity", won(&opp(1), &a1, old, true), true)
        .await;
    crm.has(&app, "Opportunity", won(&opp(3), &a1, old, true), false)
        .await;
    crm.has(&app, "Opportunity", won(&opp(4), &a1, old, true), true)
        .await;
    crm.has(&app, "Opportunity", won(&opp(5), &a2, old, true), true)
        .await;
    let moments_ago = chrono::Utc::now().to_rfc3339();
    crm.has(
        &app,
        "Opportunity",
        won(&opp(6), &a1, &moments_ago, true),
        false,
    )
    .await;
    crm.has(&app, "Opportunity", won(&opp(7), &a2, old, true), false)
        .await;
    crm.has(&app, "Opportunity", won(&opp(8), &a1, old, false), true)
        .await;

    let erp = rpc(&url);
    let sale_of = async |n: u32| -> Option<i64> {
        sales_of(&erp, &opp(n), json!(["id"])).await[0]["id"].as_i64()
    };
    for n in [1, 4, 5] {
        eventually(60, "the sale in Tryton", async || sale_of(n).await).await;
    }
    eventually(30, "the unverified order held", async || {
        let held = jobs(&app, "state=held").await;
        held.iter()
            .any(|j| j["object_id"] == opp(8).as_str())
            .then_some(())
    })
    .await;

    // Drift made by hand in Tryton.
    let sale4 = sale_of(4).await.unwrap();
    call(&erp, "model.sale.sale.delete", vec![json!([sale4])]).await;
    let sale5 = sale_of(5).await.unwrap();
    call(
        &erp,
        "model.sale.sale.copy",
        vec![json!([sale5]), json!({"reference": opp(5)})],
    )
    .await;
    let party = |code: String| {
        let erp = &erp;
        async move {
            call(
                erp,
                "model.party.party.search",
                vec![
                    json!([["code", "=", code]]),
                    json!(0),
                    json!(1),
                    Value::Null,
                ],
            )
            .await[0]
                .as_i64()
        }
    };
    let party2 = party(a2.clone()).await.unwrap();
    call(
        &erp,
        "model.party.party.write",
        vec![json!([party2]), json!({"name": "Two, edited by hand"})],
    )
    .await;
    let hand_dir = tempfile::tempdir().unwrap();
    let hand = crate::tryton_ours::by_hand(&url, hand_dir.path());
    let party3 = crate::tryton::upsert_party(
        hand.adapter.as_ref(),
        &json!({"code": a3, "name": "Reconcile Three", "invoice_address": {"street": "1 Main St", "city": "Berlin", "postal_code": "10115", "country": "DE"}}),
    )
    .await;
    let party1 = party(a1.clone()).await.unwrap();
    let ghost = id("006G", 0);
    crate::tryton::deliver(
        hand.adapter.as_ref(),
        "create_sales_order",
        &json!({"reference": ghost, "customer": party1.to_string(), "currency": "USD",
                "lines": [{"product_code": "SKU-1", "quantity": 1, "unit_price": "19.49"}]}),
        &ghost,
    )
    .await;

    // Orders: the first run is a dry run.
    let first = reconcile(&app, "opportunity_to_sales_order", false, true).await;
    assert_eq!(first["state"], "done", "{first}");
    assert_eq!(first["dry_run"], true, "{first}");
    assert_eq!(first["compared"], 7, "{first}");
    assert_eq!(class_of(&first, &opp(1)), None, "matched: {first}");
    assert_eq!(class_of(&first, &opp(3)), Some("missed_event"));
    assert_eq!(class_of(&first, &opp(4)), Some("missing_in_target"));
    assert_eq!(class_of(&first, &opp(5)), Some("duplicate"));
    assert_eq!(class_of(&first, &opp(6)), Some("in_flight"));
    assert_eq!(class_of(&first, &opp(7)), Some("missed_event"));
    assert_eq!(class_of(&first, &opp(8)), Some("known"));
    assert!(
        row_of(&first, &opp(8)).unwrap()["why"]
            .as_str()
            .unwrap()
            .contains("payment pending")
    );
    assert_eq!(class_of(&first, &ghost), Some("only_in_target"));
    assert_eq!(first["repairs"], 2, "would repair the two missed events");
    assert!(
        first["note"].as_str().unwrap().contains("first run"),
        "{first}"
    );
    assert_eq!(sale_of(3).await, None, "a dry run repairs nothing");

    // Two repairs are over this flow's cap of one: none is made.
    let capped = reconcile(&app, "opportunity_to_sales_order", false, true).await;
    assert_eq!(capped["state"], "capped", "{capped}");
    assert_eq!(capped["dry_run"], false);
    assert!(
        capped["note"].as_str().unwrap().contains("over the cap"),
        "{capped}"
    );
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    assert_eq!(sale_of(3).await, None, "a capped run repairs nothing");
    assert_eq!(sale_of(7).await, None);

    // One missed event left: it is replayed through the queue and becomes the sale.
    fake.books()
        .records
        .get_mut("Opportunity")
        .unwrap()
        .remove(&opp(7));
    let repaired = reconcile(&app, "opportunity_to_sales_order", false, true).await;
    assert_eq!(repaired["state"], "done", "{repaired}");
    assert_eq!(
        row_of(&repaired, &opp(3)).unwrap()["action"],
        "replayed (repair)"
    );
    eventually(60, "the missed order made in Tryton", async || {
        sale_of(3).await
    })
    .await;
    assert_eq!(
        sales_of(&erp, &opp(3), json!(["id"]))
            .await
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        sale_of(4).await,
        None,
        "a sale deleted in Tryton is reported, not made again"
    );
    assert_eq!(
        sales_of(&erp, &opp(5), json!(["id"]))
            .await
            .as_array()
            .unwrap()
            .len(),
        2
    );
    for reported in [opp(4), opp(5), ghost.clone()] {
        assert_eq!(row_of(&repaired, &reported).unwrap()["action"], Value::Null);
    }
    let after = eventually(60, "the replayed order settled", async || {
        let run = reconcile(&app, "opportunity_to_sales_order", false, false).await;
        (class_of(&run, &opp(3)).is_none()).then_some(run)
    })
    .await;
    assert_eq!(after["counts"]["missed_event"], Value::Null, "{after}");

    // Customers, deep: the hand edit is reported with both names, the party made by hand for
    // an account is adopted.
    let accounts = reconcile(&app, "account_to_customer", true, true).await;
    assert_eq!(accounts["dry_run"], true);
    let edited = row_of(&accounts, &a2).unwrap();
    assert_eq!(edited["class"], "edited_in_target", "{accounts}");
    assert_eq!(
        edited["why"],
        "changed in the target: name: \"Reconcile Two\" → \"Two, edited by hand\""
    );
    assert_eq!(edited["document"]["name"], "Reconcile Two");
    assert_eq!(edited["target"][0]["fields"]["name"], "Two, edited by hand");
    assert_eq!(class_of(&accounts, &a3), Some("unlinked"));
    assert_eq!(class_of(&accounts, &a1), None, "matched");
    let cli = tokio::process::Command::new(env!("CARGO_BIN_EXE_handoff"))
        .args([
            "reconcile",
            "run",
            "--flow",
            "account_to_customer",
            "--deep",
            "--repair",
            "safe",
        ])
        .args(["--url", &app.url("")])
        .output()
        .await
        .unwrap();
    let printed = String::from_utf8_lossy(&cli.stdout);
    assert!(
        cli.status.success(),
        "{printed}{}",
        String::from_utf8_lossy(&cli.stderr)
    );
    assert!(printed.contains("edited_in_target   1"), "{printed}");
    assert!(printed.contains("1 record(s) repaired"), "{printed}");
    let xrefs = api(&app, &format!("/api/v1/xrefs?id={a3}")).await;
    assert_eq!(xrefs["xrefs"][0]["external_id"], party3, "adopted: {xrefs}");
    let name = call(
        &erp,
        "model.party.party.read",
        vec![json!([party2]), json!(["name"])],
    )
    .await;
    assert_eq!(
        name[0]["name"], "Two, edited by hand",
        "an edit in the target is not undone"
    );

    let metrics = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(
            "handoff_drift_records{flow=\"account_to_customer\",class=\"edited_in_target\"} 1"
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains(
            "handoff_reconcile_last_success_seconds{flow=\"opportunity_to_sales_order\"}"
        )
    );
}

/// The status flow: a status the CRM lost is sent again; an order handoff did not make is not
/// compared (its status is never written).
#[tokio::test(flavor = "multi_thread")]
async fn a_status_the_crm_lacks_is_sent_again_and_orders_not_ours_are_left_alone() {
    let url = tryton_url();
    let Setup { app, fake, _dirs } = setup(
        10,
        "confirm: true, poll_every_secs: 1",
        &[(
            "order_status_to_opportunity.yaml",
            "  source: { connector: erp, operation: list_order_status }\n  target: list_opportunities\n  \
             compare: [ERP_Status__c]\n  repair: [missed_event, edited_in_target]\n  max_repair_share: 1.0\n",
        )],
    )
    .await;
    let crm = Crm { fake: fake.clone() };
    let run = fastrand::u32(..);
    let (account_id, ours, theirs) = (
        format!("001S{run:08X}"),
        format!("006S{run:08X}"),
        format!("006H{run:08X}"),
    );
    crm.has(&app, "Account", account(&account_id, "Status GmbH"), true)
        .await;
    crm.has(
        &app,
        "Opportunity",
        won(&ours, &account_id, "2026-11-20T10:00:00Z", true),
        true,
    )
    .await;
    let status_of = |id: &str| {
        let books = fake.books();
        books.records["Opportunity"][id]
            .get("ERP_Status__c")
            .cloned()
    };
    eventually(60, "the status written back", async || {
        (status_of(&ours) == Some(json!("Confirmed"))).then_some(())
    })
    .await;
    // A sale typed into Tryton for an opportunity handoff never saw.
    crm.has(
        &app,
        "Opportunity",
        won(&theirs, &account_id, "2026-11-20T10:00:00Z", true),
        false,
    )
    .await;
    let hand_dir = tempfile::tempdir().unwrap();
    let hand = crate::tryton_ours::by_hand(&url, hand_dir.path());
    let party = crate::support::api(&app, &format!("/api/v1/xrefs?id={account_id}")).await["xrefs"]
        [0]["external_id"]
        .as_str()
        .unwrap()
        .to_owned();
    crate::tryton::deliver(
        hand.adapter.as_ref(),
        "create_sales_order",
        &json!({"reference": theirs, "customer": party, "currency": "USD",
                "lines": [{"product_code": "SKU-1", "quantity": 1, "unit_price": "19.49"}]}),
        &theirs,
    )
    .await;
    // The CRM loses the status (a bulk edit, a restore).
    fake.books()
        .records
        .get_mut("Opportunity")
        .unwrap()
        .get_mut(&ours)
        .unwrap()["ERP_Status__c"] = Value::Null;
    let writes_before = fake.books().opportunities.get(&ours).map_or(0, Vec::len);

    let first = reconcile(&app, "order_status_to_opportunity", true, true).await;
    assert_eq!(first["compared"], 1, "only the order handoff made: {first}");
    let lacking = row_of(&first, &ours).unwrap();
    assert_eq!(lacking["class"], "edited_in_target", "{first}");
    assert_eq!(
        lacking["why"],
        "changed in the target: ERP_Status__c: \"Confirmed\" → none"
    );
    assert!(row_of(&first, &theirs).is_none(), "{first}");

    let repaired = reconcile(&app, "order_status_to_opportunity", true, true).await;
    assert_eq!(
        row_of(&repaired, &ours).unwrap()["action"],
        "replayed (repair)"
    );
    eventually(30, "the status sent again", async || {
        (status_of(&ours) == Some(json!("Confirmed"))).then_some(())
    })
    .await;
    assert_eq!(fake.books().opportunities[&ours].len(), writes_before + 1);
    assert!(
        !fake.books().opportunities.contains_key(&theirs),
        "never written"
    );
}
