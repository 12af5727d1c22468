//! The delivery engine against a recording ERP and CRM over HTTP (fake_erp.rs): dependency
//! parking and release, status back in order, regression and echo refused, stale events
//! skipped, an outage with Retry-After, a poison event dead-lettered then fixed and resubmitted.

use std::time::Duration;

use serde_json::{Value, json};

use crate::fake_erp::{self, Fake, Mode};
use crate::support::*;

const CRM: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const ERP: &str = "erp-shared-secret";

pub fn account(id: &str, version: &str, name: &str) -> String {
    json!({"type": "account.updated", "object": "Account", "data": {
        "Id": id, "Name": name, "BillingStreet": "1 Main St", "BillingCity": "Berlin",
        "BillingPostalCode": "10115", "BillingCountryCode": "DE", "CurrencyIsoCode": "EUR",
        "LastModifiedDate": version}})
    .to_string()
}

pub fn won(id: &str, account: &str, version: &str) -> String {
    json!({"type": "opportunity.won", "object": "Opportunity", "data": {
        "Id": id, "AccountId": account, "Name": "Restock", "StageName": "Closed Won",
        "CloseDate": "2026-11-20", "Amount": "58.47", "CurrencyIsoCode": "EUR",
        "LastModifiedDate": version,
        "OpportunityLineItems": [
            {"ProductCode": "SKU-1", "Name": "Widget", "Quantity": 3, "UnitPrice": "19.49"}]}})
    .to_string()
}

pub async fn start(
    fake_addr: std::net::SocketAddr,
    request_secs: u64,
) -> (TestApp, tempfile::TempDir) {
    let connectors = tempfile::tempdir().unwrap();
    fake_erp::connectors(connectors.path(), fake_addr, request_secs);
    let app = TestApp::with_connectors(connectors.path()).await;
    (app, connectors)
}

pub async fn crm(app: &TestApp, id: &str, body: &str) {
    let (status, reply) = app
        .post("/hooks/crm", &standard_webhooks(CRM, id, now(), body), body)
        .await;
    assert_eq!(status, 202, "{reply}");
}

pub async fn erp_status(app: &TestApp, id: &str, body: Value) {
    let body = body.to_string();
    let ts = now();
    let sig = hex::encode(hmac(ERP.as_bytes(), format!("{ts}.{body}").as_bytes()));
    let headers = json_headers(&[
        ("X-Signature", format!("sha256={sig}")),
        ("X-Timestamp", ts.to_string()),
        ("X-Event-Id", id.to_owned()),
    ]);
    let (status, reply) = app.post("/hooks/erp", &headers, &body).await;
    assert_eq!(status, 202, "{reply}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_order_waits_for_its_customer_and_status_flows_back_forward_only() {
    let (fake, addr) = Fake::start().await;
    let (app, _connectors) = start(addr, 5).await;

    crm(
        &app,
        "evt-opp-1",
        &won("006A", "001A", "2026-11-20T10:00:00Z"),
    )
    .await;
    let parked = eventually(10, "the order to park", async || {
        jobs(&app, "state=parked").await.into_iter().next()
    })
    .await;
    assert_eq!(parked["reason"]["code"], "dependency");
    assert!(
        fake.books().orders.is_empty(),
        "no order before its customer"
    );

    crm(
        &app,
        "evt-acc-1",
        &account("001A", "2026-11-20T09:00:00Z", "Acme"),
    )
    .await;
    eventually(10, "the order", async || {
        fake.books().orders.get("006A").cloned()
    })
    .await;
    let order_id = {
        let books = fake.books();
        assert_eq!(books.customers["001A"]["name"], "Acme");
        let (order_id, order) = &books.orders["006A"];
        assert_eq!(
            order["customer"], "C-001A",
            "the customer's ERP id from the xref"
        );
        assert_eq!(order["total"].to_string(), "58.47");
        assert_eq!(order["lines"][0]["line_total"].to_string(), "58.47");
        order_id.clone()
    };
    let xrefs = api(&app, "/api/v1/xrefs?id=001A").await;
    assert_eq!(xrefs["xrefs"][0]["external_id"], "C-001A");

    // Status back: confirmed, shipped; then a late "confirmed" and an ERP resend of "confirmed".
    let status = |seq: u64, status: &str| {
        json!({"order_id": order_id, "reference": "006A", "number": "SO0001", "status": status,
               "sequence": seq, "changed_at": "2026-11-21T08:00:00Z", "tracking_number": "1Z999"})
    };
    erp_status(&app, "st-1", status(1, "confirmed")).await;
    erp_status(&app, "st-2", status(2, "shipped")).await;
    eventually(10, "two CRM updates", async || {
        (fake.books().opportunities.get("006A").map_or(0, Vec::len) == 2).then_some(())
    })
    .await;
    erp_status(&app, "st-3", status(3, "confirmed")).await;
    let refused = eventually(10, "the regression to be refused", async || {
        jobs(&app, "state=skipped").await.into_iter().next()
    })
    .await;
    assert_eq!(refused["reason"]["code"], "status_regression", "{refused}");
    let updates = fake.books().opportunities["006A"].clone();
    let statuses: Vec<&str> = updates
        .iter()
        .map(|u| u["ERP_Status__c"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["Confirmed", "Shipped"]);

    // The CRM now echoes handoff's write as a new opportunity event: it is not synced again.
    let mut echoed: Value =
        serde_json::from_str(&won("006A", "001A", "2026-11-21T08:00:05Z")).unwrap();
    echoed["data"]["ERP_Status__c"] = json!("Shipped");
    echoed["data"]["Tracking_Number__c"] = json!("1Z999");
    crm(&app, "evt-opp-echo", &echoed.to_string()).await;
    let echo = eventually(10, "the echo to be skipped", async || {
        jobs(&app, "state=skipped&reason=echo")
            .await
            .into_iter()
            .next()
    })
    .await;
    assert_eq!(echo["flow"], "opportunity_to_sales_order");
    let posts = fake
        .books()
        .received
        .iter()
        .filter(|r| r.method == "POST")
        .count();
    assert_eq!(posts, 1, "one order, never re-sent");

    // Third write-back: invoiced. The CRM's webhook for it carries every field handoff wrote
    // so far (the tracking number came with "shipped"): still an echo.
    let mut invoiced = status(4, "invoiced");
    invoiced["invoice_number"] = json!("INV-7");
    invoiced["invoice_amount"] = json!("58.47");
    erp_status(&app, "st-4", invoiced).await;
    eventually(10, "the third CRM update", async || {
        (fake.books().opportunities.get("006A").map_or(0, Vec::len) == 3).then_some(())
    })
    .await;
    let mut echoed: Value =
        serde_json::from_str(&won("006A", "001A", "2026-11-21T08:00:09Z")).unwrap();
    for (field, value) in [
        ("ERP_Status__c", json!("Invoiced")),
        ("Tracking_Number__c", json!("1Z999")),
        ("ERP_Order_Number__c", json!("SO0001")),
        ("Invoice_Number__c", json!("INV-7")),
        ("Invoice_Amount__c", json!(58.47)),
        ("ERP_Status_Date__c", json!("2026-11-21")),
    ] {
        echoed["data"][field] = value;
    }
    crm(&app, "evt-opp-echo-3", &echoed.to_string()).await;
    eventually(10, "the third echo to be skipped", async || {
        let skipped = jobs(&app, "state=skipped&reason=echo").await;
        (skipped.len() == 2).then_some(())
    })
    .await;
    let posts = fake
        .books()
        .received
        .iter()
        .filter(|r| r.method == "POST")
        .count();
    assert_eq!(posts, 1, "the echo of an older write-back is no change");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_older_version_is_skipped_as_stale() {
    let (fake, addr) = Fake::start().await;
    let (app, _connectors) = start(addr, 5).await;
    crm(
        &app,
        "acc-v2",
        &account("001S", "2026-11-20T10:00:00Z", "Newer name"),
    )
    .await;
    eventually(10, "the customer", async || {
        fake.books().customers.get("001S").cloned()
    })
    .await;
    crm(
        &app,
        "acc-v1",
        &account("001S", "2026-11-20T09:00:00Z", "Older name"),
    )
    .await;
    let stale = eventually(10, "the stale job", async || {
        jobs(&app, "state=skipped&reason=stale")
            .await
            .into_iter()
            .next()
    })
    .await;
    assert_eq!(stale["event_id"], "acc-v1");
    assert_eq!(fake.books().customers["001S"]["name"], "Newer name");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_outage_delays_but_loses_nothing_and_keeps_order() {
    let (fake, addr) = Fake::start().await;
    fake.set_mode(Mode::Unavailable(Some(1)));
    let (app, _connectors) = start(addr, 5).await;
    for n in 0..3 {
        for account_n in 0..4 {
            let version = format!("2026-11-20T10:00:0{n}Z");
            let body = account(&format!("001O{account_n}"), &version, &format!("v{n}"));
            crm(&app, &format!("out-{account_n}-{n}"), &body).await;
        }
    }
    let waiting = eventually(10, "retries", async || {
        let retrying = jobs(&app, "state=retrying").await;
        (!retrying.is_empty()).then_some(retrying)
    })
    .await;
    assert_eq!(waiting[0]["reason"]["code"], "transient", "{}", waiting[0]);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let during = fake.books().received.len();
    assert!(fake.books().customers.is_empty());
    fake.set_mode(Mode::Normal);
    eventually(30, "every account delivered", async || {
        fake.books().customers_named("001O", 4, "v2").then_some(())
    })
    .await;
    let books = fake.books();
    // Per record, the versions reached the ERP in order.
    for a in 0..4 {
        let path = format!("/customers/001O{a}");
        let names = books.names_sent(&path, during);
        let mut sorted = names.clone();
        sorted.sort();
        assert_eq!(names, sorted, "in order for {path}: {names:?}");
        assert_eq!(names.last(), Some(&"v2"));
    }
    // Retry-After: 1 was honoured: no record was retried within a second of its last try.
    let first_try = books.received.first().unwrap().at;
    let second_try = books
        .received
        .iter()
        .find(|r| r.path == books.received[0].path && r.at > first_try);
    if let Some(second) = second_try {
        assert!(
            second.at - first_try >= Duration::from_millis(900),
            "retried after {:?}",
            second.at - first_try
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_poison_event_is_dead_at_once_then_fixed_and_resubmitted() {
    let (fake, addr) = Fake::start().await;
    let (app, _connectors) = start(addr, 5).await;
    crm(
        &app,
        "acc-p",
        &account("001P", "2026-11-20T10:00:00Z", "Poison Ltd"),
    )
    .await;
    eventually(10, "the customer", async || {
        fake.books().customers.get("001P").cloned()
    })
    .await;
    let mut bad: Value =
        serde_json::from_str(&won("006P", "001P", "2026-11-20T11:00:00Z")).unwrap();
    bad["data"]["OpportunityLineItems"][0]["UnitPrice"] = json!("12,50 EUR");
    crm(&app, "opp-p", &bad.to_string()).await;
    let dead = eventually(10, "the dead letter", async || {
        jobs(&app, "state=dead").await.into_iter().next()
    })
    .await;
    assert_eq!(dead["attempts"], 1, "not retried");
    assert_eq!(dead["reason"]["code"], "fix_data");
    let message = dead["reason"]["message"].as_str().unwrap();
    assert!(
        message.contains("lines[0].unit_price") && message.contains("12,50 EUR"),
        "{message}"
    );
    let groups = api(&app, "/api/v1/dead-letters").await;
    assert_eq!(groups["groups"][0]["reason"], "fix_data");

    let id = dead["id"].as_u64().unwrap();
    let detail = api(&app, &format!("/api/v1/jobs/{id}")).await;
    let mut payload = detail["event"]["data"].clone();
    payload["data"]["OpportunityLineItems"][0]["UnitPrice"] = json!("12.50");
    let (status, _) = api_post(
        &app,
        &format!("/api/v1/jobs/{id}/resubmit"),
        json!({"payload": payload}),
    )
    .await;
    assert_eq!(status, 200);
    let order = eventually(10, "the order", async || {
        fake.books().orders.get("006P").cloned()
    })
    .await;
    assert_eq!(order.1["lines"][0]["unit_price"].to_string(), "12.50");
    // The ERP has the order before the job's settle is stored (on PostgreSQL, by the next
    // settle batch).
    let detail = eventually(10, "the job done", async || {
        let detail = api(&app, &format!("/api/v1/jobs/{id}")).await;
        (detail["job"]["state"] == "done").then_some(detail)
    })
    .await;
    assert_eq!(detail["attempts"].as_array().unwrap().len(), 2);
    let key = detail["idempotency_key"].as_str().unwrap();
    assert!(key.ends_with(":r1"), "{key}");
    let sent = fake
        .books()
        .received
        .iter()
        .rev()
        .find(|r| r.method == "POST")
        .cloned()
        .unwrap();
    assert_eq!(
        sent.key.as_deref(),
        Some(key),
        "the ERP got the job's idempotency key"
    );
    let (status, reply) = api_post(&app, &format!("/api/v1/jobs/{id}/retry"), json!({})).await;
    assert_eq!(status, 409, "a done job cannot be retried: {reply}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_timeout_after_sending_is_in_doubt_and_the_retry_finds_the_order() {
    let (fake, addr) = Fake::start().await;
    let (app, _connectors) = start(addr, 1).await;
    crm(
        &app,
        "acc-d",
        &account("001D", "2026-11-20T10:00:00Z", "Doubt AG"),
    )
    .await;
    eventually(10, "the customer", async || {
        fake.books().customers.get("001D").cloned()
    })
    .await;
    // The ERP creates the order but answers after the connector's 1 s timeout.
    fake.set_mode(Mode::Slow(Duration::from_secs(2)));
    crm(&app, "opp-d", &won("006D", "001D", "2026-11-20T11:00:00Z")).await;
    eventually(10, "the order to be created", async || {
        fake.books().orders.get("006D").cloned()
    })
    .await;
    fake.set_mode(Mode::Normal);
    let done = eventually(15, "the job to settle", async || {
        jobs(&app, "flow=opportunity_to_sales_order&state=done")
            .await
            .into_iter()
            .next()
    })
    .await;
    let id = done["id"].as_u64().unwrap();
    let detail = api(&app, &format!("/api/v1/jobs/{id}")).await;
    let attempts = detail["attempts"].as_array().unwrap();
    assert_eq!(attempts[0]["reason"]["code"], "in_doubt", "{detail}");
    assert!(
        attempts.last().unwrap()["response"]
            .as_str()
            .unwrap()
            .contains("found existing"),
        "{detail}"
    );
    assert_eq!(fake.books().duplicate_orders, 0);
    assert_eq!(done["external_id"], "SO-1");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rate_limited_delivery_waits_as_long_as_asked() {
    let (fake, addr) = Fake::start().await;
    let (app, _connectors) = start(addr, 5).await;
    fake.set_mode(Mode::RateLimited(2));
    crm(
        &app,
        "acc-r",
        &account("001R", "2026-11-20T10:00:00Z", "Rate GmbH"),
    )
    .await;
    let retrying = eventually(10, "the 429 to be retried", async || {
        jobs(&app, "state=retrying").await.into_iter().next()
    })
    .await;
    assert_eq!(retrying["reason"]["code"], "rate_limited");
    let asked = retrying["due_ms"].as_i64().unwrap() - retrying["updated_ms"].as_i64().unwrap();
    assert!(
        (1900..=2100).contains(&asked),
        "Retry-After: 2 gives a 2 s wait, not {asked} ms"
    );
    fake.set_mode(Mode::Normal);
    eventually(10, "the customer", async || {
        fake.books().customers.get("001R").cloned()
    })
    .await;
}

/// A won opportunity whose lines change after its order exists is not dropped as "found
/// existing": the ERP connector leaves a found order as it is, so the job is held as
/// `order_changed`, naming what differs.
#[tokio::test(flavor = "multi_thread")]
async fn a_change_after_the_order_exists_is_held_with_what_differs() {
    let (fake, addr) = Fake::start().await;
    let (app, _connectors) = start(addr, 5).await;
    crm(
        &app,
        "acc-c",
        &account("001C", "2026-11-20T09:00:00Z", "Change AG"),
    )
    .await;
    crm(&app, "opp-c1", &won("006C", "001C", "2026-11-20T10:00:00Z")).await;
    eventually(10, "the order", async || {
        fake.books().orders.get("006C").cloned()
    })
    .await;
    let mut changed: Value =
        serde_json::from_str(&won("006C", "001C", "2026-11-20T11:00:00Z")).unwrap();
    changed["data"]["OpportunityLineItems"][0]["Quantity"] = json!(5);
    changed["data"]["Amount"] = json!("97.45");
    crm(&app, "opp-c2", &changed.to_string()).await;
    let held = eventually(10, "the change held", async || {
        jobs(&app, "state=held").await.into_iter().next()
    })
    .await;
    assert_eq!(held["reason"]["code"], "order_changed", "{held}");
    let message = held["reason"]["message"].as_str().unwrap();
    assert!(message.contains("lines[0].quantity: 3 → 5"), "{message}");
    assert!(message.contains("total: 58.47 → 97.45"), "{message}");
    // Only the date changed: not a change to the order, it goes through as found.
    let mut same: Value =
        serde_json::from_str(&won("006C", "001C", "2026-11-20T12:00:00Z")).unwrap();
    same["data"]["Name"] = json!("Restock");
    crm(&app, "opp-c3", &same.to_string()).await;
    eventually(10, "the unchanged version done", async || {
        let done = jobs(&app, "state=done&flow=opportunity_to_sales_order").await;
        (done.len() == 2).then_some(())
    })
    .await;
    let books = fake.books();
    assert_eq!(books.orders.len(), 1);
    assert_eq!(books.orders["006C"].1["total"].to_string(), "58.47");
}

/// A dead letter that a later version of the same record made moot is settled as superseded:
/// it no longer counts as dead.
#[tokio::test(flavor = "multi_thread")]
async fn a_later_delivery_supersedes_the_records_dead_letter() {
    let (fake, addr) = Fake::start().await;
    let (app, _connectors) = start(addr, 5).await;
    let mut broken: Value =
        serde_json::from_str(&account("001SUP", "2026-11-20T09:00:00Z", "Old")).unwrap();
    broken["data"]["Name"] = json!(" ");
    crm(&app, "acc-sup-1", &broken.to_string()).await;
    let dead = eventually(10, "the dead letter", async || {
        jobs(&app, "state=dead").await.into_iter().next()
    })
    .await;
    crm(
        &app,
        "acc-sup-2",
        &account("001SUP", "2026-11-20T10:00:00Z", "Fixed in the CRM"),
    )
    .await;
    eventually(10, "the customer", async || {
        fake.books().customers.get("001SUP").cloned()
    })
    .await;
    let superseded = eventually(10, "the dead letter superseded", async || {
        let job = api(&app, &format!("/api/v1/jobs/{}", dead["id"])).await;
        (job["job"]["state"] == "skipped").then_some(job)
    })
    .await;
    assert_eq!(
        superseded["job"]["reason"]["code"], "superseded",
        "{superseded}"
    );
    assert!(jobs(&app, "state=dead").await.is_empty());
}
