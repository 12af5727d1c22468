//! Quantities and prices in the unit a product is sold in: a product stocked by the piece but
//! sold by the box of 12 gets a sale line in boxes (Tryton's `sale_uom`), so 3 boxes at 60.00
//! are 3 boxes for 180.00, not 3 pieces at the price of a box.

use serde_json::json;

use crate::delivery::crm;
use crate::tryton::{
    call, create_product, decimal_text, first_id, rpc, sales_of, settled_order, tryton_url, unit_id,
};
use crate::tryton_ours::start_on_tryton;

/// A unit "Box of 12" in the category of `Unit`, made once per database.
async fn box_of_12(erp: &handoff::adapters::tryton::rpc::Rpc, unit_category: i64) -> i64 {
    if let Some(id) = first_id(erp, "product.uom", json!([["name", "=", "Box of 12"]])).await {
        return id;
    }
    let made = call(
        erp,
        "model.product.uom.create",
        vec![json!([{
            "name": "Box of 12", "symbol": "box", "category": unit_category,
            "factor": 12.0, "rate": 0.083333333333, "rounding": 1.0, "digits": 0
        }])],
    )
    .await;
    made[0].as_i64().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_product_sold_by_the_box_is_ordered_in_boxes() {
    let url = tryton_url();
    let (_fake, app, _connectors) = start_on_tryton(&url).await;
    let erp = rpc(&url);
    let run = fastrand::u32(..);

    let unit = unit_id(&erp).await;
    let category = call(
        &erp,
        "model.product.uom.read",
        vec![json!([unit]), json!(["category"])],
    )
    .await[0]["category"]
        .as_i64()
        .unwrap();
    let boxes = box_of_12(&erp, category).await;
    let code = format!("BOX-{run:08X}");
    create_product(&erp, &code, "Bolts, box of 12", "60.00", Some(boxes)).await;

    let account_id = format!("001U{run:08X}");
    let opportunity_id = format!("006U{run:08X}");
    let account = json!({"type": "account.updated", "object": "Account", "data": {
        "Id": account_id, "Name": "Box GmbH", "BillingStreet": "Kistenweg 12",
        "BillingCity": "Hamburg", "BillingPostalCode": "20095", "BillingCountryCode": "DE",
        "CurrencyIsoCode": "USD", "LastModifiedDate": "2026-11-20T09:00:00Z"}});
    crm(&app, &format!("acc-u-{run}"), &account.to_string()).await;
    let won = json!({"type": "opportunity.won", "object": "Opportunity", "data": {
        "Id": opportunity_id, "AccountId": account_id, "Name": "Boxes",
        "StageName": "Closed Won", "CloseDate": "2026-11-20", "Amount": "180.00",
        "CurrencyIsoCode": "USD", "Payment_Verified__c": true,
        "LastModifiedDate": "2026-11-20T10:00:00Z",
        "OpportunityLineItems": [
            {"ProductCode": code, "Name": "Bolts", "Quantity": 3, "UnitPrice": "60.00"}]}});
    crm(&app, &format!("opp-u-{run}"), &won.to_string()).await;

    let job = settled_order(&app).await;
    assert_eq!(job["state"], "done", "{job}");

    let sale = sales_of(&erp, &opportunity_id, json!(["lines", "total_amount"])).await;
    let lines = call(
        &erp,
        "model.sale.line.read",
        vec![
            sale[0]["lines"].clone(),
            json!(["unit", "quantity", "unit_price", "amount"]),
        ],
    )
    .await;
    assert_eq!(lines[0]["unit"], boxes, "sold in boxes: {lines}");
    assert_eq!(lines[0]["quantity"], 3.0, "{lines}");
    assert_eq!(decimal_text(&lines[0]["unit_price"]), "60", "{lines}");
    assert_eq!(decimal_text(&lines[0]["amount"]), "180", "{lines}");
}
