//! The Tryton adapter against a real Tryton 8.2 server (tests/tryton/start_tryton.sh; the test
//! command starts it and sets TRYTON_URL, or this test starts it on 127.0.0.1:8069 and stops it
//! when the test process ends): signed
//! Account and won-Opportunity webhooks in → a party and a confirmed sale whose lines and total
//! match to the cent → shipped and invoiced in Tryton → the CRM receives confirmed, shipped,
//! invoiced, in that order, through the status poller.

use std::time::Duration;

use handoff::adapters::tryton::rpc::Rpc;
use serde_json::{Value, json};

use crate::delivery::crm;
use crate::fake_erp::{self, Fake};
use crate::support::*;

pub const DB: &str = "crm";

/// The Tryton server's base URL, starting the project's server if none answers. Once per test
/// process: two tests starting servers at once would leave one running without its pidfile.
pub fn tryton_url() -> String {
    static URL: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    URL.get_or_init(find_or_start_tryton).clone()
}

fn find_or_start_tryton() -> String {
    if let Ok(url) = std::env::var("TRYTON_URL") {
        return url;
    }
    let url = "http://127.0.0.1:8069".to_owned();
    let answers = std::process::Command::new("curl")
        .args([
            "-sf",
            "-o",
            "/dev/null",
            "-H",
            "Content-Type: application/json",
        ])
        .args([
            "-d",
            r#"{"id":0,"method":"common.server.version","params":[]}"#,
        ])
        .arg(format!("{url}/rpc/"))
        .status()
        .is_ok_and(|s| s.success());
    if !answers {
        let root = env!("CARGO_MANIFEST_DIR");
        let status = std::process::Command::new("bash")
            .arg(format!("{root}/tests/tryton/start_tryton.sh"))
            .args([
                format!("{root}/target/tryton/venv"),
                "8069".into(),
                format!("{root}/target/tryton/data"),
            ])
            .status()
            .unwrap();
        assert!(
            status.success(),
            "Tryton did not start (tests/tryton/start_tryton.sh)"
        );
        stop_when_tests_end(&format!("{root}/target/tryton/data"));
    }
    url
}

/// Stops the Tryton this test process started, by the PID in its data dir, once the process
/// has exited (a watcher outlives it; the test command stops its own server itself).
#[allow(
    clippy::zombie_processes,
    reason = "the watcher outlives this process on purpose"
)]
fn stop_when_tests_end(data: &str) {
    let root = env!("CARGO_MANIFEST_DIR");
    let watch = format!(
        "while kill -0 {} 2>/dev/null; do sleep 1; done; bash {root}/tests/tryton/stop_tryton.sh {data}",
        std::process::id()
    );
    std::process::Command::new("bash")
        .args(["-c", &watch])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start the watcher that stops Tryton");
}

pub fn rpc(url: &str) -> Rpc {
    Rpc::new(
        url,
        DB,
        ("admin".into(), "admin-secret".into()),
        (Duration::from_secs(5), Duration::from_secs(60)),
    )
}

pub async fn call(rpc: &Rpc, method: &str, params: Vec<Value>) -> Value {
    rpc.call(method, params)
        .await
        .unwrap_or_else(|f| panic!("{method}: {}", f.message))
}

/// The opportunity → sales order job once it has settled (held, done or dead).
pub async fn settled_order(app: &TestApp) -> Value {
    eventually(60, "the order settled", async || {
        let job = jobs(app, "flow=opportunity_to_sales_order")
            .await
            .into_iter()
            .next()?;
        matches!(job["state"].as_str(), Some("held" | "done" | "dead")).then_some(job)
    })
    .await
}

/// The sales Tryton holds for an opportunity (by `reference`), with `fields`.
pub async fn sales_of(erp: &Rpc, opportunity_id: &str, fields: Value) -> Value {
    call(
        erp,
        "model.sale.sale.search_read",
        vec![
            json!([["reference", "=", opportunity_id]]),
            json!(0),
            json!(5),
            Value::Null,
            fields,
        ],
    )
    .await
}

/// The first id `model` has for `domain`, if any.
pub async fn first_id(erp: &Rpc, model: &str, domain: Value) -> Option<i64> {
    let found = call(
        erp,
        &format!("model.{model}.search"),
        vec![domain, json!(0), json!(1), Value::Null],
    )
    .await;
    found[0].as_i64()
}

/// The fixture's unit `Unit` (stock is counted in it).
pub async fn unit_id(erp: &Rpc) -> i64 {
    first_id(erp, "product.uom", json!([["name", "=", "Unit"]]))
        .await
        .expect("the fixture's Unit")
}

/// Makes a salable product `code` (stocked in `Unit`, sold in `sold_in`, `Unit` when None) at
/// `price` in the fixture's Goods category; returns its template's id.
pub async fn create_product(
    erp: &Rpc,
    code: &str,
    name: &str,
    price: &str,
    sold_in: Option<i64>,
) -> i64 {
    let unit = unit_id(erp).await;
    let goods = first_id(
        erp,
        "product.category",
        json!([["name", "=", "Goods"], ["accounting", "=", true]]),
    )
    .await
    .expect("the fixture's Goods category");
    call(
        erp,
        "model.product.template.create",
        vec![json!([{
            "name": name, "type": "goods", "salable": true,
            "default_uom": unit, "sale_uom": sold_in.unwrap_or(unit),
            "list_price": {"__class__": "Decimal", "decimal": price},
            "account_category": goods,
            "products": [["create", [{"suffix_code": code}]]]
        }])],
    )
    .await[0]
        .as_i64()
        .unwrap()
}

/// A Tryton decimal (`{"__class__": "Decimal", "decimal": "180.00"}`) as plain text: `180`.
pub fn decimal_text(value: &Value) -> String {
    value["decimal"]
        .as_str()
        .unwrap_or_else(|| panic!("not a decimal: {value}"))
        .parse::<rust_decimal::Decimal>()
        .unwrap()
        .normalize()
        .to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn accounts_and_won_opportunities_become_tryton_sales_and_status_comes_back_in_order() {
    let url = tryton_url();
    let (fake, fake_addr) = Fake::start().await;
    let connectors = tempfile::tempdir().unwrap();
    fake_erp::connectors(connectors.path(), fake_addr, 5);
    std::fs::write(
        connectors.path().join("erp.yaml"),
        format!(
            "kind: tryton\nrole: erp\ndescription: Tryton 8.2 (test server)\nbase_url: {url}\n\
             auth: {{ basic: {{ user_env: TRYTON_USER, password_env: TRYTON_PASSWORD }} }}\n\
             tryton: {{ database: {DB}, confirm: true, poll_every_secs: 1 }}\n\
             retry: {{ schedule_secs: [1, 1, 1, 1, 1] }}\n"
        ),
    )
    .unwrap();
    let app = TestApp::with_connectors(connectors.path()).await;
    let run = fastrand::u32(..);
    let account_id = format!("001T{run:08X}");
    let opportunity_id = format!("006T{run:08X}");

    let account = json!({"type": "account.updated", "object": "Account", "data": {
        "Id": account_id, "Name": "Tryton Test GmbH", "BillingStreet": "Unter den Linden 1",
        "BillingCity": "Berlin", "BillingPostalCode": "10117", "BillingCountryCode": "DE",
        "Phone": "+49 30 1234567", "Email__c": "AP@tryton-test.example",
        "CurrencyIsoCode": "USD", "LastModifiedDate": "2026-11-20T09:00:00Z"}});
    crm(&app, &format!("acc-{run}"), &account.to_string()).await;
    let won = json!({"type": "opportunity.won", "object": "Opportunity", "data": {
        "Id": opportunity_id, "AccountId": account_id, "Name": "Tryton restock",
        "StageName": "Closed Won", "CloseDate": "2026-11-20", "Amount": "1377.72",
        "CurrencyIsoCode": "USD", "PO_Number__c": "PO-T-1", "Payment_Verified__c": true,
        "LastModifiedDate": "2026-11-20T10:00:00Z",
        "OpportunityLineItems": [
            {"ProductCode": "SKU-1", "Name": "Widget", "Quantity": 3, "UnitPrice": "19.49"},
            {"ProductCode": "SKU-2", "Name": "Bolt pack", "Quantity": 5, "UnitPrice": "4.50", "Discount": 10},
            {"ProductCode": "SKU-3", "Name": "Controller", "Quantity": 1, "UnitPrice": "1299.00"}]}});
    crm(&app, &format!("opp-{run}"), &won.to_string()).await;

    let job = settled_order(&app).await;
    assert_eq!(job["state"], "done", "{job}");
    let erp = rpc(&url);
    let sale = eventually(60, "the sale in Tryton", async || {
        let found = erp
            .call(
                "model.sale.sale.search_read",
                vec![
                    json!([["reference", "=", opportunity_id]]),
                    json!(0),
                    json!(5),
                    Value::Null,
                    json!([
                        "id",
                        "state",
                        "party",
                        "total_amount",
                        "lines",
                        "shipments",
                        "invoices"
                    ]),
                ],
            )
            .await
            .ok()?;
        found.as_array().filter(|f| !f.is_empty()).cloned()
    })
    .await;
    assert_eq!(sale.len(), 1, "one sale per opportunity: {sale:?}");
    let sale = &sale[0];
    assert_eq!(
        sale["state"], "processing",
        "quoted and confirmed (processing made the shipment)"
    );
    assert_eq!(sale["total_amount"]["decimal"], "1377.72", "{sale}");
    let party = call(
        &erp,
        "model.party.party.read",
        vec![
            sale["party"].clone().into_array(),
            json!(["code", "name", "email", "phone"]),
        ],
    )
    .await;
    assert_eq!(party[0]["code"], account_id.as_str());
    assert_eq!(party[0]["name"], "Tryton Test GmbH");
    assert_eq!(party[0]["email"], "ap@tryton-test.example");
    let lines = call(
        &erp,
        "model.sale.line.read",
        vec![
            sale["lines"].clone(),
            json!(["product", "quantity", "unit_price", "amount"]),
        ],
    )
    .await;
    let amounts: Vec<&str> = lines
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["amount"]["decimal"].as_str().unwrap())
        .collect();
    assert_eq!(amounts, ["58.47", "20.25", "1299.00"], "{lines}");
    let detail = api(&app, &format!("/api/v1/xrefs?id={account_id}")).await;
    assert_eq!(
        detail["xrefs"][0]["external_id"],
        sale["party"].to_string(),
        "{detail}"
    );

    let statuses = async || -> Vec<String> {
        fake.books()
            .opportunities
            .get(&opportunity_id)
            .map(|updates| {
                updates
                    .iter()
                    .map(|u| u["ERP_Status__c"].as_str().unwrap_or_default().to_owned())
                    .collect()
            })
            .unwrap_or_default()
    };
    eventually(30, "Confirmed at the CRM", async || {
        (statuses().await == ["Confirmed"]).then_some(())
    })
    .await;

    // The warehouse ships, the accountant posts the invoice.
    for step in ["assign_force", "pick", "pack", "do"] {
        call(
            &erp,
            &format!("model.stock.shipment.out.{step}"),
            vec![sale["shipments"].clone()],
        )
        .await;
    }
    eventually(30, "Shipped at the CRM", async || {
        (statuses().await.len() == 2).then_some(())
    })
    .await;
    call(
        &erp,
        "model.account.invoice.post",
        vec![sale["invoices"].clone()],
    )
    .await;
    eventually(30, "Invoiced at the CRM", async || {
        (statuses().await.len() == 3).then_some(())
    })
    .await;
    assert_eq!(statuses().await, ["Confirmed", "Shipped", "Invoiced"]);
    let updates = fake.books().opportunities[&opportunity_id].clone();
    assert_eq!(
        updates[2]["Invoice_Amount__c"].to_string(),
        "1377.72",
        "{updates:?}"
    );
    assert!(updates[1]["Tracking_Number__c"].is_string(), "{updates:?}");

    // A redelivered opportunity finds the sale: still one.
    crm(
        &app,
        &format!("opp-{run}-again"),
        &won.to_string().replace("10:00:00Z", "10:05:00Z"),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let again = call(
        &erp,
        "model.sale.sale.search",
        vec![
            json!([["reference", "=", opportunity_id]]),
            json!(0),
            Value::Null,
            Value::Null,
        ],
    )
    .await;
    assert_eq!(again.as_array().unwrap().len(), 1);
}

/// Creates (or updates) the party `customer` describes through `adapter`; returns its id.
pub async fn upsert_party(adapter: &dyn handoff::adapters::Adapter, customer: &Value) -> String {
    deliver(
        adapter,
        "upsert_customer",
        customer,
        customer["code"].as_str().unwrap(),
    )
    .await
}

/// Sends `document` through `adapter` as `operation`, `key` as idempotency and match key, as a
/// person typing into Tryton would (no handoff job); returns the id Tryton gave it.
pub async fn deliver(
    adapter: &dyn handoff::adapters::Adapter,
    operation: &str,
    document: &Value,
    key: &str,
) -> String {
    adapter
        .send(handoff::adapters::Delivery {
            operation,
            document,
            idempotency_key: key,
            match_key: Some(key),
            in_doubt: false,
            accept_amounts: false,
        })
        .await
        .unwrap()
        .external_id
        .unwrap()
}

trait IntoArray {
    fn into_array(self) -> Value;
}

impl IntoArray for Value {
    fn into_array(self) -> Value {
        json!([self])
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn tryton_passes_the_conformance_harness() {
    use crate::conformance::{self, Case, Fault, FaultProxy};

    let url = tryton_url();
    let proxy = FaultProxy::start(&url).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("erp.yaml"),
        format!(
            "kind: tryton\nrole: erp\nbase_url: {}\n\
             auth: {{ basic: {{ user_env: TRYTON_USER, password_env: TRYTON_PASSWORD }} }}\n\
             tryton: {{ database: {DB}, confirm: true, poll_every_secs: 0 }}\n\
             timeouts: {{ connect_secs: 2, request_secs: 10 }}\n",
            proxy.url()
        ),
    )
    .unwrap();
    let secrets = secrets();
    let lookup = move |name: &str| secrets.get(name).cloned();
    let connector = handoff::adapters::connector::load_dir(dir.path(), &lookup, None)
        .unwrap()
        .remove(0);
    let adapter = connector.adapter.as_ref();
    let run = fastrand::u32(..);
    let customer = json!({
        "code": format!("001C{run:08X}"), "name": "Conformance GmbH",
        "invoice_address": {"street": "Hauptstr. 5", "postal_code": "10115", "city": "Berlin"}
    });
    let party = upsert_party(adapter, &customer).await;
    let order = |reference: &str, product: &str| {
        json!({"reference": reference, "customer": party, "currency": "USD",
               "lines": [{"product_code": product, "quantity": 2, "unit_price": "19.49"}]})
    };
    let (a, b) = (format!("006CA{run:08X}"), format!("006CB{run:08X}"));
    let case = Case {
        name: "tryton",
        proxy: &proxy,
        adapter,
        operation: "create_sales_order",
        records: [
            (order(&a, "SKU-1"), a.clone()),
            (order(&b, "SKU-2"), b.clone()),
        ],
        held: Duration::from_secs(12),
        gives_id: true,
        create_marker: "model.sale.sale.create",
        invalid: (order(&format!("006CX{run:08X}"), "SKU-404"), "SKU-404"),
        // Tryton has no rate limit of its own; a reverse proxy in front of it answers 429.
        rate_limit: (
            Fault::Answer {
                status: 429,
                headers: vec![("retry-after", "2".into())],
                body: "Too Many Requests".into(),
            },
            Some(Duration::from_secs(2)),
        ),
    };
    let erp = rpc(&url);
    conformance::run(&case, async |reference| {
        let found = call(
            &erp,
            "model.sale.sale.search_count",
            vec![json!([["reference", "=", reference]])],
        )
        .await;
        found.as_u64().unwrap() as usize
    })
    .await;
}
