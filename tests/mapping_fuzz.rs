//! Property test: arbitrary JSON fed to every shipped mapping never panics; the result is a
//! document or a typed mapping error.

use std::path::Path;
use std::sync::OnceLock;

use handoff::mapping::{Context, Lookups, Mapping, load_dir};
use proptest::prelude::*;
use serde_json::{Map, Value};

/// Arbitrary JSON, biased towards the shapes mappings read (objects under `data`, numbers as
/// text, arrays of objects for lines).
fn json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        "-?[0-9]{1,30}(\\.[0-9]{1,30})?"
            .prop_map(|n| serde_json::from_str(&n).unwrap_or(Value::Null)),
        "[a-zA-Z0-9 ./:-]{0,12}".prop_map(Value::String),
        "-?[0-9]{1,8}\\.[0-9]{1,4}".prop_map(Value::String),
        Just(Value::String("2026-11-20".into())),
        Just(Value::String("Closed Won".into())),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(
                prop_oneof![
                    Just("Id".to_owned()),
                    Just("Name".to_owned()),
                    Just("Quantity".to_owned()),
                    Just("UnitPrice".to_owned()),
                    Just("Discount".to_owned()),
                    Just("ProductCode".to_owned()),
                    Just("OpportunityLineItems".to_owned()),
                    Just("AccountId".to_owned()),
                    Just("CloseDate".to_owned()),
                    Just("status".to_owned()),
                    Just("reference".to_owned()),
                    Just("changed_at".to_owned()),
                    Just("invoice_amount".to_owned()),
                    Just("Credit_Limit__c".to_owned()),
                    "[a-z]{1,6}"
                ],
                inner,
                0..8,
            )
            .prop_map(|m| Value::Object(m.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

fn shipped() -> &'static (Vec<Mapping>, Lookups) {
    static SHIPPED: OnceLock<(Vec<Mapping>, Lookups)> = OnceLock::new();
    SHIPPED.get_or_init(|| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        load_dir(&root.join("mappings"), &root.join("schemas")).unwrap()
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, .. ProptestConfig::default() })]

    #[test]
    fn shipped_mappings_never_panic(data in json(), wrap in any::<bool>()) {
        let (mappings, lookups) = shipped();
        let event = if wrap { serde_json::json!({ "data": data }) } else { data };
        let context = Context::default();
        for mapping in mappings {
            match mapping.apply(&event, lookups, &context) {
                Ok(document) => prop_assert!(document.body.is_object()),
                Err(error) => prop_assert!(!error.code.is_empty() && !error.field.is_empty()),
            }
        }
    }
}
