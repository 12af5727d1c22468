//! An order for a product Tryton does not have yet is parked on that product (not a dead
//! letter), and runs by itself once product sync sees the product in Tryton: the sale is
//! created then, once.

use serde_json::json;

use crate::delivery::crm;
use crate::support::{eventually, jobs};
use crate::tryton::{create_product, rpc, sales_of, settled_order, tryton_url};
use crate::tryton_ours::start_on_tryton_with;

#[tokio::test(flavor = "multi_thread")]
async fn an_order_for_an_unknown_product_waits_for_it_and_runs_when_it_is_synced() {
    let url = tryton_url();
    let (_fake, app, _connectors) = start_on_tryton_with(&url, ", products_every_secs: 1").await;
    let erp = rpc(&url);
    let run = fastrand::u32(..);
    let code = format!("NEW-{run:08X}");
    let account_id = format!("001P{run:08X}");
    let opportunity_id = format!("006P{run:08X}");
    let account = json!({"type": "account.updated", "object": "Account", "data": {
        "Id": account_id, "Name": "Early GmbH", "BillingStreet": "Neue Str. 1",
        "BillingCity": "Hamburg", "BillingPostalCode": "20095", "BillingCountryCode": "DE",
        "CurrencyIsoCode": "USD", "LastModifiedDate": "2026-11-20T09:00:00Z"}});
    crm(&app, &format!("acc-p-{run}"), &account.to_string()).await;
    let won = json!({"type": "opportunity.won", "object": "Opportunity", "data": {
        "Id": opportunity_id, "AccountId": account_id, "Name": "New product",
        "StageName": "Closed Won", "CloseDate": "2026-11-20", "Amount": "50.00",
        "CurrencyIsoCode": "USD", "Payment_Verified__c": true,
        "LastModifiedDate": "2026-11-20T10:00:00Z",
        "OpportunityLineItems": [
            {"ProductCode": code, "Name": "Not yet", "Quantity": 2, "UnitPrice": "25.00"}]}});
    crm(&app, &format!("opp-p-{run}"), &won.to_string()).await;

    // Parked on the product, with why.
    let parked = eventually(60, "the order parked on its product", async || {
        jobs(&app, "flow=opportunity_to_sales_order&state=parked")
            .await
            .into_iter()
            .next()
    })
    .await;
    assert_eq!(parked["reason"]["code"], "dependency", "{parked}");
    assert_eq!(parked["waits_for"], json!(["product", code]), "{parked}");
    assert!(
        parked["reason"]["message"]
            .as_str()
            .unwrap()
            .contains(&code),
        "{parked}"
    );
    assert!(sales_of(&erp, &opportunity_id, json!(["id"])).await[0].is_null());

    // The product arrives in Tryton; product sync sees it and the order runs.
    create_product(&erp, &code, "Arrived later", "25.00", None).await;
    let job = settled_order(&app).await;
    assert_eq!(job["state"], "done", "{job}");
    let sales = sales_of(&erp, &opportunity_id, json!(["id", "state"])).await;
    assert_eq!(sales.as_array().unwrap().len(), 1, "{sales}");
    assert!(jobs(&app, "state=dead").await.is_empty());
}
