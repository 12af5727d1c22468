//! The fast schema check against `jsonschema` on random documents, valid and invalid: when the
//! fast check says valid, `jsonschema` agrees; when `jsonschema` says valid and every number is
//! plain, the fast check says valid too (so it is really used).

use proptest::prelude::*;
use serde_json::{Value, json};

use super::*;

fn shipped(name: &str) -> Value {
    let path = format!("{}/schemas/{name}.json", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Every keyword of the subset and the delegated ones, on a small document.
fn wide() -> Value {
    json!({
        "type": "object",
        "required": ["code", "count"],
        "minProperties": 2,
        "maxProperties": 6,
        "properties": {
            "code": { "type": "string", "pattern": "^[A-Z]{3}$" },
            "count": { "type": "integer", "minimum": 1, "maximum": 12 },
            "name": { "type": ["string", "null"], "minLength": 1, "maxLength": 4 },
            "kind": { "enum": ["a", "b", 1] },
            "share": { "type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 100, "multipleOf": 0.5 },
            "tags": { "type": "array", "items": { "type": "string" }, "maxItems": 2, "uniqueItems": true },
            "flag": { "type": "boolean" },
            "fixed": { "const": 100 }
        },
        "additionalProperties": { "type": "number", "minimum": 0 }
    })
}

const NAMES: &[&str] = &[
    "reference",
    "customer",
    "currency",
    "order_date",
    "lines",
    "total",
    "product_code",
    "quantity",
    "unit_price",
    "line_total",
    "discount_percent",
    "description",
    "name",
    "code",
    "count",
    "kind",
    "share",
    "tags",
    "flag",
    "fixed",
    "extra",
];

const TEXTS: &[&str] = &[
    "",
    "a",
    "ab",
    "abcd",
    "abcde",
    "EUR",
    "eur",
    "EU",
    "2026-11-20",
    "20261120",
    "héé",
    "b",
];

/// Numbers near the bounds the schemas use, written as CRMs and decimals write them.
const PLAIN_NUMBERS: &[&str] = &[
    "0",
    "-0",
    "0.00",
    "-0.01",
    "0.01",
    "0.5",
    "1",
    "2",
    "12",
    "13",
    "99.5",
    "99.99",
    "100",
    "100.00",
    "100.01",
    "-1",
    "2153.59",
    "0.0000000000000000000000000001",
    "99.999999999999999999999999",
    "100.00000000000000000000001",
];

/// Numbers the fast check leaves to `jsonschema`.
const ODD_NUMBERS: &[&str] = &[
    "1.0",
    "12.0",
    "1e2",
    "1E-2",
    "-0.0",
    "12345678901234567890123456789012",
    "99.99999999999999999999999999999",
];

fn number(pool: &'static [&'static str]) -> impl Strategy<Value = Value> {
    prop::sample::select(pool)
        .prop_map(|text| Value::Number(serde_json::Number::from_string_unchecked(text.to_owned())))
}

fn leaf(pool: &'static [&'static str]) -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        prop::sample::select(TEXTS).prop_map(|t| Value::String(t.to_owned())),
        number(pool),
        number(pool),
    ]
}

fn document(pool: &'static [&'static str]) -> impl Strategy<Value = Value> {
    leaf(pool).prop_recursive(3, 48, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(
                prop::sample::select(NAMES).prop_map(str::to_owned),
                inner,
                0..8
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A sales order that is mostly right: each field from a pool of right and wrong values.
fn sales_order(pool: &'static [&'static str]) -> impl Strategy<Value = Value> {
    let line = (
        prop::sample::select(&["SKU-1", "", "x"][..]),
        number(pool),
        number(pool),
        number(pool),
        prop::option::of(number(pool)),
        any::<bool>(),
    )
        .prop_map(|(code, quantity, price, total, discount, extra)| {
            let mut line = json!({"product_code": code, "quantity": quantity, "unit_price": price, "line_total": total});
            if let Some(discount) = discount {
                line["discount_percent"] = discount;
            }
            if extra {
                line["colour"] = json!("red");
            }
            line
        });
    (
        prop::sample::select(&["EUR", "eur", "EURO", ""][..]),
        prop::sample::select(&["2026-11-20", "20.11.2026"][..]),
        prop::collection::vec(line, 0..4),
        prop::option::of(number(pool)),
        prop::sample::subsequence(&["reference", "customer", "lines"][..], 0..=3),
    )
        .prop_map(|(currency, date, lines, total, dropped)| {
            let mut order = json!({"reference": "006A", "customer": "P-7", "currency": currency, "order_date": date, "lines": lines});
            if let Some(total) = total {
                order["total"] = total;
            }
            for name in dropped {
                order.as_object_mut().unwrap().remove(name);
            }
            order
        })
}

fn agrees(schema: &Schema, document: &Value, plain: bool) -> Result<(), TestCaseError> {
    let fast = schema.fast.as_ref().expect("compiled").check(document);
    let reference = schema.reference.is_valid(document);
    if fast == Valid {
        prop_assert!(
            reference,
            "the fast check passed what jsonschema refuses: {document}"
        );
    }
    if plain && reference {
        prop_assert_eq!(
            fast,
            Valid,
            "the fast check missed a valid document: {}",
            document
        );
    }
    prop_assert_eq!(schema.is_valid(document), reference);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(600))]

    #[test]
    fn shipped_schemas_agree_on_mostly_valid_orders(order in sales_order(PLAIN_NUMBERS), odd in sales_order(ODD_NUMBERS)) {
        let schema = Schema::new(&shipped("sales_order")).unwrap();
        agrees(&schema, &order, true)?;
        agrees(&schema, &odd, false)?;
    }

    #[test]
    fn every_schema_agrees_on_random_documents(plain in document(PLAIN_NUMBERS), odd in document(ODD_NUMBERS)) {
        for schema in [shipped("sales_order"), shipped("customer"), shipped("order_status"), wide()] {
            let schema = Schema::new(&schema).unwrap();
            agrees(&schema, &plain, false)?;
            agrees(&schema, &odd, false)?;
            for member in plain.as_object().into_iter().flat_map(|m| m.values()) {
                agrees(&schema, &json!({"code": "EUR", "count": 3, "name": member}), false)?;
            }
        }
    }
}

#[test]
fn shipped_schemas_compile_to_the_fast_check() {
    for name in ["sales_order", "customer", "order_status"] {
        assert!(Schema::new(&shipped(name)).unwrap().is_compiled(), "{name}");
    }
    assert!(Schema::new(&wide()).unwrap().is_compiled());
}

#[test]
fn schemas_outside_the_subset_use_jsonschema_alone() {
    for schema in [
        json!({"allOf": [{"type": "string"}]}),
        json!({"$schema": "http://json-schema.org/draft-04/schema#", "type": "number", "minimum": 0, "exclusiveMinimum": true}),
        json!({"prefixItems": [{"type": "string"}]}),
        json!({"properties": {"a": {"$ref": "#/$defs/a"}}, "$defs": {"a": {"properties": {"b": {"$ref": "#/$defs/a"}}}}}),
    ] {
        let compiled = Schema::new(&schema).unwrap();
        assert!(!compiled.is_compiled(), "{schema}");
    }
    let draft4 = Schema::new(&json!({"$schema": "http://json-schema.org/draft-04/schema#", "type": "number", "minimum": 0, "exclusiveMinimum": true})).unwrap();
    assert!(!draft4.is_valid(&json!(0)));
    assert!(draft4.is_valid(&json!(1)));
}

#[test]
fn a_violation_is_named_by_jsonschema() {
    let schema = Schema::new(&shipped("sales_order")).unwrap();
    let order = json!({"reference": "006A", "customer": "P-7", "currency": "EUR", "order_date": "2026-11-20",
        "lines": [{"product_code": "SKU-1", "quantity": 0, "unit_price": 1, "line_total": 1}]});
    let violation = schema.validate(&order).unwrap_err();
    assert_eq!(violation.path, "/lines/0/quantity");
    assert!(
        violation
            .message
            .contains("less than or equal to the minimum of 0"),
        "{}",
        violation.message
    );
    let mut fixed = order.clone();
    fixed["lines"][0]["quantity"] = json!(2);
    assert_eq!(schema.validate(&fixed), Ok(()));
}
