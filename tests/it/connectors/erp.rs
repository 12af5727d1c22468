//! ERPNext and NetSuite: sales orders created once under retry, customers updated in place.

use handoff::adapters::Delivery;
use serde_json::{Value, json};

use super::example;
use crate::conformance::{self, Case, Fault, FaultProxy};
use crate::fakes::{self, erpnext, netsuite};

fn delivery<'a>(operation: &'a str, document: &'a Value, key: &'a str) -> Delivery<'a> {
    Delivery {
        operation,
        document,
        idempotency_key: key,
        match_key: Some(key),
        in_doubt: false,
        accept_amounts: false,
    }
}

fn erpnext_order(po_no: &str, item: &str) -> Value {
    json!({
        "customer": "Acme GmbH", "po_no": po_no, "delivery_date": "2026-12-01", "currency": "EUR",
        "items": [
            {"item_code": item, "qty": 3, "rate": 19.99},
            {"item_code": "SKU-2", "qty": 1, "rate": 1200.10}
        ]
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn erpnext_passes_the_conformance_harness() {
    let (addr, log, site) = erpnext::start().await;
    let proxy = FaultProxy::start(&format!("http://{addr}")).await;
    let connector = example(
        "erpnext",
        &proxy.url(),
        &[("ERPNEXT_API_TOKEN", "1a2b3c4d5e6f7a8:9f8e7d6c5b4a3f2")],
        &[],
    );
    let case = Case {
        name: "erpnext",
        proxy: &proxy,
        adapter: connector.adapter.as_ref(),
        operation: "create_sales_order",
        records: [
            (erpnext_order("006A", "SKU-1"), "006A".into()),
            (erpnext_order("006B", "SKU-3"), "006B".into()),
        ],
        held: std::time::Duration::from_secs(3),
        gives_id: true,
        create_marker: "POST /api/resource/Sales%20Order",
        invalid: (erpnext_order("006X", "SKU-404"), "Item Code: SKU-404"),
        rate_limit: (
            Fault::Answer {
                status: 429,
                headers: vec![("retry-after", "60".into())],
                body: r#"{"exc_type":"TooManyRequestsError"}"#.into(),
            },
            Some(std::time::Duration::from_secs(60)),
        ),
    };
    conformance::run(&case, async |po_no| {
        erpnext::count(&site, "Sales Order", "po_no", po_no)
    })
    .await;
    // Token auth as Frappe wants it, totals to the cent.
    let posted = fakes::requests(&log, "POST /api/resource/Sales%20Order");
    assert!(
        posted
            .iter()
            .all(|r| r.header("authorization") == Some(erpnext::TOKEN))
    );
    let site = site.lock().unwrap();
    let order = site.docs["Sales Order"]
        .values()
        .find(|o| o["po_no"] == "006A")
        .unwrap();
    assert_eq!(order["grand_total"], "1260.07");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_erpnext_customer_is_found_by_the_crm_id_and_updated_in_place() {
    let (addr, log, site) = erpnext::start().await;
    let connector = example(
        "erpnext",
        &format!("http://{addr}"),
        &[("ERPNEXT_API_TOKEN", "1a2b3c4d5e6f7a8:9f8e7d6c5b4a3f2")],
        &[],
    );
    let adapter = connector.adapter.as_ref();
    let first = json!({"customer_name": "Acme GmbH", "crm_account_id": "001A", "customer_group": "Commercial"});
    let created = adapter
        .send(delivery("upsert_customer", &first, "001A"))
        .await
        .unwrap();
    assert_eq!(created.external_id.as_deref(), Some("Acme GmbH"));
    let later = json!({"customer_name": "Acme GmbH", "crm_account_id": "001A", "customer_group": "Enterprise"});
    let updated = adapter
        .send(delivery("upsert_customer", &later, "001A"))
        .await
        .unwrap();
    assert_eq!(updated.external_id.as_deref(), Some("Acme GmbH"));
    assert_eq!(
        erpnext::count(&site, "Customer", "crm_account_id", "001A"),
        1
    );
    assert_eq!(
        site.lock().unwrap().docs["Customer"]["Acme GmbH"]["customer_group"],
        "Enterprise"
    );
    let puts = fakes::requests(&log, "PUT /api/resource/Customer/Acme%20GmbH");
    assert_eq!(puts.len(), 1, "the second event updated in place");
    // A probe with a wrong token is a configuration problem.
    let wrong = example(
        "erpnext",
        &format!("http://{addr}"),
        &[("ERPNEXT_API_TOKEN", "nope:nope")],
        &[],
    );
    let refused = wrong.adapter.probe().await.unwrap_err();
    assert_eq!(
        refused.class,
        handoff::adapters::Class::FixConfig,
        "{refused:?}"
    );
    assert!(!refused.message.contains("nope:nope"), "{refused:?}");
    assert!(connector.adapter.probe().await.is_ok());
}

fn netsuite_order(external_id: Option<&str>, entity: Option<&str>) -> Value {
    let mut order = json!({
        "item": {"items": [{"item": {"id": "12"}, "quantity": 2, "rate": 19.99}]},
        "currency": {"id": "1"}
    });
    if let Some(id) = external_id {
        order["externalId"] = json!(id);
    }
    if let Some(entity) = entity {
        order["entity"] = json!({"id": entity});
    }
    order
}

#[tokio::test(flavor = "multi_thread")]
async fn netsuite_passes_the_conformance_harness() {
    let (addr, log, account) = netsuite::start().await;
    let proxy = FaultProxy::start(&format!("http://{addr}")).await;
    let connector = example(
        "netsuite",
        &proxy.url(),
        &[("NETSUITE_ACCESS_TOKEN", netsuite::TOKEN)],
        &[],
    );
    let case = Case {
        name: "netsuite",
        proxy: &proxy,
        adapter: connector.adapter.as_ref(),
        operation: "create_sales_order",
        records: [
            (netsuite_order(Some("006A"), Some("107")), "006A".into()),
            (netsuite_order(Some("006B"), Some("107")), "006B".into()),
        ],
        held: std::time::Duration::from_secs(3),
        gives_id: true,
        create_marker: "POST /services/rest/record/v1/salesOrder",
        invalid: (netsuite_order(Some("006X"), None), "USER_ERROR"),
        rate_limit: (
            Fault::Answer {
                status: 429,
                headers: vec![],
                body: r#"{"title":"Too Many Requests","status":429,"o:errorDetails":[{"detail":"Concurrency limit exceeded","o:errorCode":"CONCURRENCY_LIMIT_EXCEEDED"}]}"#.into(),
            },
            Some(std::time::Duration::from_secs(5)),
        ),
    };
    conformance::run(&case, async |key| netsuite::orders_for(&account, key)).await;
    // Every create carried a UUID idempotency key, the same one on every attempt of a record.
    let keys: Vec<String> = fakes::requests(&log, "POST /services/rest/record/v1/salesOrder")
        .iter()
        .map(|r| r.header("x-netsuite-idempotency-key").unwrap().to_owned())
        .collect();
    assert!(keys.len() >= 3, "{keys:?}");
    assert!(
        keys.iter()
            .all(|k| k.len() == 36 && k.matches('-').count() == 4),
        "{keys:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_replayed_netsuite_idempotency_key_counts_as_delivered_and_creates_nothing() {
    let (addr, log, account) = netsuite::start().await;
    let connector = example(
        "netsuite",
        &format!("http://{addr}"),
        &[("NETSUITE_ACCESS_TOKEN", netsuite::TOKEN)],
        &[],
    );
    let adapter = connector.adapter.as_ref();
    // No externalId: the find misses, so only the idempotency key protects the retry.
    let order = netsuite_order(None, Some("107"));
    let first = adapter
        .send(delivery("create_sales_order", &order, "job-7:v1"))
        .await
        .unwrap();
    assert!(first.external_id.is_some());
    let again = adapter
        .send(delivery("create_sales_order", &order, "job-7:v1"))
        .await
        .unwrap();
    assert!(again.response.contains("IDEMPOTENCY_ERROR"), "{again:?}");
    assert_eq!(account.lock().unwrap().orders.len(), 1);
    assert_eq!(account.lock().unwrap().replays, 1);
    let keys: Vec<_> = fakes::requests(&log, "POST")
        .iter()
        .map(|r| r.header("x-netsuite-idempotency-key").unwrap().to_owned())
        .collect();
    assert_eq!(keys[0], keys[1]);
    // A customer upserted twice by external id is one customer; its id comes from Location.
    let customer = json!({"companyName": "Acme GmbH", "subsidiary": {"id": "1"}});
    let a = adapter
        .send(delivery("upsert_customer", &customer, "001A"))
        .await
        .unwrap();
    let b = adapter
        .send(delivery("upsert_customer", &customer, "001A"))
        .await
        .unwrap();
    assert_eq!(a.external_id, b.external_id);
    assert!(a.external_id.is_some());
    assert_eq!(account.lock().unwrap().customers.len(), 1);
    assert_eq!(
        fakes::requests(&log, "PUT /services/rest/record/v1/customer/eid:001A").len(),
        2
    );
}
