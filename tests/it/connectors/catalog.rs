//! The shipped Salesforce connector's catalog operations against a fake org that enforces
//! Salesforce's rules: a product upserted by its ERP code stays one record; a price book entry
//! is found before it is created, and a found one is updated without the fields Salesforce
//! takes only at create (`find.update.omit`); a custom price waits for the standard one.

use handoff::adapters::{Class, Delivery};
use serde_json::{Value, json};

use super::example;
use crate::fakes::salesforce_catalog::STANDARD_BOOK;
use crate::fakes::{self, salesforce};

const SF_SECRETS: [(&str, &str); 2] = [
    ("SALESFORCE_CLIENT_ID", salesforce::CLIENT_ID),
    ("SALESFORCE_CLIENT_SECRET", salesforce::CLIENT_SECRET),
];

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

fn entry(product: &str, book: &str, price: &str) -> Value {
    json!({"Product2Id": product, "Pricebook2Id": book, "CurrencyIsoCode": "EUR",
           "UnitPrice": price.parse::<serde_json::Number>().unwrap(), "IsActive": true})
}

#[tokio::test(flavor = "multi_thread")]
async fn products_upsert_by_code_and_price_entries_are_updated_without_create_only_fields() {
    let (addr, log, org) = salesforce::start(&[]).await;
    let connector = example("salesforce", &format!("http://{addr}"), &SF_SECRETS, &[]);
    let adapter = connector.adapter.as_ref();

    // The same product twice: created, then updated; one record, one id.
    let product = json!({"Name": "Gadget", "ProductCode": "G-1", "IsActive": true,
                         "QuantityUnitOfMeasure": "Unit"});
    let created = adapter
        .send(delivery("upsert_product", &product, "G-1"))
        .await
        .unwrap();
    let renamed = json!({"Name": "Gadget 2", "ProductCode": "G-1", "IsActive": false});
    let updated = adapter
        .send(delivery("upsert_product", &renamed, "G-1"))
        .await
        .unwrap();
    let id = created
        .external_id
        .clone()
        .expect("Salesforce's product id");
    assert_eq!(updated.external_id.as_deref(), Some(id.as_str()));
    {
        let org = org.lock().unwrap();
        assert_eq!(org.products.len(), 1);
        assert_eq!(org.products["G-1"].writes, 2);
        assert_eq!(org.products["G-1"].fields["Name"], "Gadget 2");
        assert_eq!(org.products["G-1"].fields["IsActive"], false);
    }

    // A custom price book's entry before the standard price: Salesforce refuses it.
    let custom_book = "01sCUSTOM0000001";
    let early = adapter
        .send(delivery(
            "upsert_price",
            &entry(&id, custom_book, "18.00"),
            "p1",
        ))
        .await
        .unwrap_err();
    assert!(
        early.message.contains("STANDARD_PRICE_NOT_DEFINED"),
        "{early:?}"
    );
    assert_ne!(early.class, Class::Transient, "{early:?}");

    // The standard price: created; then repriced: found and updated in place, without the
    // create-only fields (the fake refuses an update that carries them).
    let standard = adapter
        .send(delivery(
            "upsert_price",
            &entry(&id, STANDARD_BOOK, "19.99"),
            "p2",
        ))
        .await
        .unwrap();
    let repriced = adapter
        .send(delivery(
            "upsert_price",
            &entry(&id, STANDARD_BOOK, "21.50"),
            "p3",
        ))
        .await
        .unwrap();
    assert_eq!(repriced.external_id, standard.external_id);
    let patches = fakes::requests(&log, "PATCH /services/data/v61.0/sobjects/PricebookEntry/");
    assert_eq!(patches.len(), 1);
    let sent: Value = serde_json::from_str(&patches[0].body).unwrap();
    let fields: Vec<&String> = sent.as_object().unwrap().keys().collect();
    assert_eq!(fields, ["IsActive", "UnitPrice"], "{sent}");
    assert_eq!(sent["UnitPrice"].to_string(), "21.50");
    adapter
        .send(delivery(
            "upsert_price",
            &entry(&id, custom_book, "18.00"),
            "p4",
        ))
        .await
        .unwrap();
    let org = org.lock().unwrap();
    assert_eq!(
        org.entries.len(),
        2,
        "one entry per book: {:?}",
        org.entries
    );
    let standard_entry = &org.entries[standard.external_id.as_deref().unwrap()];
    assert_eq!(standard_entry["UnitPrice"].to_string(), "21.50");
    assert_eq!(standard_entry["Product2Id"], id.as_str());
}

#[tokio::test(flavor = "multi_thread")]
async fn hubspot_products_are_found_by_their_unique_erp_code_and_never_created_twice() {
    use crate::fakes::hubspot;
    let (addr, log, portal) = hubspot::start(&[], 100, std::time::Duration::from_secs(10)).await;
    let connector = example(
        "hubspot",
        &format!("http://{addr}"),
        &[("HUBSPOT_PRIVATE_APP_TOKEN", hubspot::TOKEN)],
        &[],
    );
    let adapter = connector.adapter.as_ref();
    let product = |name: &str, active: &str| {
        json!({"properties": {"name": name, "hs_sku": "G-1", "erp_code": "G-1",
                              "price": "19.99", "erp_active": active}})
    };
    let created = adapter
        .send(delivery(
            "upsert_product",
            &product("Gadget", "true"),
            "G-1",
        ))
        .await
        .unwrap();
    let updated = adapter
        .send(delivery(
            "upsert_product",
            &product("Gadget 2", "false"),
            "G-1",
        ))
        .await
        .unwrap();
    assert_eq!(created.external_id, updated.external_id);
    // One made by hand in HubSpot with the same code is adopted, not duplicated.
    portal.lock().unwrap().products.insert(
        "777".into(),
        json!({"name": "By hand", "erp_code": "H-1"})
            .as_object()
            .cloned()
            .unwrap(),
    );
    let adopted = adapter
        .send(delivery(
            "upsert_product",
            &json!({"properties": {"name": "Handmade", "erp_code": "H-1"}}),
            "H-1",
        ))
        .await
        .unwrap();
    assert_eq!(adopted.external_id.as_deref(), Some("777"));
    let portal = portal.lock().unwrap();
    assert_eq!(portal.products.len(), 2, "{:?}", portal.products);
    let id = created.external_id.unwrap();
    assert_eq!(portal.products[&id]["name"], "Gadget 2");
    assert_eq!(portal.products[&id]["erp_active"], "false");
    assert_eq!(portal.products["777"]["name"], "Handmade");
    assert_eq!(
        fakes::requests(&log, "POST /crm/v3/objects/products").len(),
        1
    );
}
