//! Money to the cent against a real Tryton (with its `sale_discount` module): the two lines
//! whose Tryton amounts differ from the CRM's (1 × 1299.00 at 12.5%: Tryton rounds half to
//! even; 1000 × 9.99 at 7.5%: Tryton cuts the discounted unit price to 4 decimals) hold the
//! order as `amount_mismatch` showing both figures, the sale stays unconfirmed, and an operator
//! accepting Tryton's figures lets it through.

use serde_json::json;

use crate::delivery::crm;
use crate::support::*;
use crate::tryton::{call, decimal_text, rpc, sales_of, settled_order, tryton_url};
use crate::tryton_ours::start_on_tryton;

#[tokio::test(flavor = "multi_thread")]
async fn amounts_tryton_computes_differently_hold_the_order_until_accepted() {
    let url = tryton_url();
    let (_fake, app, _connectors) = start_on_tryton(&url).await;
    let run = fastrand::u32(..);
    let account_id = format!("001M{run:08X}");
    let opportunity_id = format!("006M{run:08X}");
    let account = json!({"type": "account.updated", "object": "Account", "data": {
        "Id": account_id, "Name": "Cent GmbH", "BillingStreet": "Münzstr. 1",
        "BillingCity": "Berlin", "BillingPostalCode": "10178", "BillingCountryCode": "DE",
        "CurrencyIsoCode": "USD", "LastModifiedDate": "2026-11-20T09:00:00Z"}});
    crm(&app, &format!("acc-m-{run}"), &account.to_string()).await;
    // The CRM's arithmetic (half up, no cut unit price): 1136.63 + 9240.75.
    let won = json!({"type": "opportunity.won", "object": "Opportunity", "data": {
        "Id": opportunity_id, "AccountId": account_id, "Name": "Cents",
        "StageName": "Closed Won", "CloseDate": "2026-11-20", "Amount": "10377.38",
        "CurrencyIsoCode": "USD", "Payment_Verified__c": true,
        "LastModifiedDate": "2026-11-20T10:00:00Z",
        "OpportunityLineItems": [
            {"ProductCode": "SKU-3", "Name": "Controller", "Quantity": 1, "UnitPrice": "1299.00", "Discount": 12.5},
            {"ProductCode": "SKU-1", "Name": "Widget", "Quantity": 1000, "UnitPrice": "9.99", "Discount": 7.5}]}});
    crm(&app, &format!("opp-m-{run}"), &won.to_string()).await;

    let held = settled_order(&app).await;
    assert_eq!(held["state"], "held", "{held}");
    assert_eq!(held["reason"]["code"], "amount_mismatch", "{held}");
    let message = held["reason"]["message"].as_str().unwrap();
    for figures in [
        "Tryton 1136.62, the CRM 1136.63",
        "Tryton 9240.80, the CRM 9240.75",
        "Tryton 10377.42, the CRM 10377.38",
    ] {
        assert!(message.contains(figures), "{message}");
    }

    let erp = rpc(&url);
    let sale = || sales_of(&erp, &opportunity_id, json!(["id", "state", "lines"]));
    let found = sale().await;
    assert_eq!(found.as_array().unwrap().len(), 1, "{found}");
    assert_eq!(found[0]["state"], "draft", "not confirmed while held");
    // The discount is sent as Tryton's sale_discount keeps it: base price and discounted price.
    let lines = call(
        &erp,
        "model.sale.line.read",
        vec![
            found[0]["lines"].clone(),
            json!(["base_price", "unit_price", "amount"]),
        ],
    )
    .await;
    let figure = |line: usize, field: &str| decimal_text(&lines[line][field]);
    assert_eq!(figure(0, "base_price"), "1299", "{lines}");
    assert_eq!(figure(0, "unit_price"), "1136.625", "{lines}");
    assert_eq!(figure(0, "amount"), "1136.62", "{lines}");
    assert_eq!(figure(1, "unit_price"), "9.2408", "{lines}");
    assert_eq!(figure(1, "amount"), "9240.8", "{lines}");

    let id = held["id"].as_u64().unwrap();
    let (status, reply) = api_post(&app, &format!("/api/v1/jobs/{id}/accept"), json!({})).await;
    assert_eq!(status, 200, "{reply}");
    let done = eventually(60, "the accepted order", async || {
        let job = api(&app, &format!("/api/v1/jobs/{id}")).await;
        (job["job"]["state"] == "done").then_some(job)
    })
    .await;
    let attempts = done["attempts"].as_array().unwrap();
    let last = attempts.last().unwrap()["response"].as_str().unwrap();
    assert!(last.contains("accepted by an operator"), "{last}");
    let found = sale().await;
    assert_eq!(
        found.as_array().unwrap().len(),
        1,
        "still one sale: {found}"
    );
    assert_eq!(found[0]["state"], "processing", "confirmed once accepted");
}
