//! The schema's checks made at load time (`schema/plan.rs`) against the whole-document check
//! they stand in for: random events through every shipped mapping give the same document, or
//! the same error, with the plan and without it. The events are each mapping's first test
//! event with some of its values replaced by values that break the target schemas (negative
//! amounts, bad currency codes, numbers where text is expected, empty lists, …).

use std::path::Path;
use std::sync::LazyLock;

use proptest::prelude::*;
use serde_json::{Value, json};

use super::{Context, Lookups, Mapping, compile};

const SHIPPED: &[&str] = &[
    "opportunity_to_sales_order",
    "account_to_customer",
    "order_status_to_opportunity",
];

/// Each shipped mapping with its plan and without one, loaded once.
static LOADED: LazyLock<Vec<(Mapping, Mapping, Lookups)>> =
    LazyLock::new(|| SHIPPED.iter().map(|name| load(name)).collect());

/// The mapping with its plan and the same mapping without one.
fn load(name: &str) -> (Mapping, Mapping, Lookups) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut problems = Vec::new();
    let schemas = super::load_schemas(&root.join("schemas"), &mut problems);
    let lookups = compile::load_lookups(&root.join("mappings/lookups")).unwrap();
    let file = root.join(format!("mappings/{name}.yaml"));
    let text = std::fs::read_to_string(&file).unwrap();
    let compile = || compile::compile(name, &text, &lookups, &schemas).unwrap();
    let (planned, mut whole) = (compile(), compile());
    assert!(planned.checks.is_some(), "{name} has no plan");
    whole.checks = None;
    (planned, whole, lookups)
}

/// Every path to a leaf of `value` (object members and list elements).
fn leaves(value: &Value, at: &mut Vec<String>, out: &mut Vec<String>) {
    match value {
        Value::Object(members) => members.iter().for_each(|(name, v)| {
            at.push(name.replace('~', "~0").replace('/', "~1"));
            leaves(v, at, out);
            at.pop();
        }),
        Value::Array(items) => items.iter().enumerate().for_each(|(n, v)| {
            at.push(n.to_string());
            leaves(v, at, out);
            at.pop();
        }),
        _ => out.push(format!("/{}", at.join("/"))),
    }
    if matches!(value, Value::Array(_)) {
        out.push(format!("/{}", at.join("/")));
    }
}

fn replacement() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        Just(json!("")),
        Just(json!("  ")),
        Just(json!("EUR")),
        Just(json!("eur")),
        Just(json!("EURO")),
        Just(json!("FR")),
        Just(json!("2026-11-20")),
        Just(json!("20/11/2026")),
        Just(json!(true)),
        Just(json!({})),
        Just(json!([])),
        Just(json!(["x"])),
        "-?[0-9]{1,4}(\\.[0-9]{1,3})?".prop_map(Value::from),
        "-?[1-9][0-9]{0,3}(\\.[0-9]{1,3})?(e[0-9])?"
            .prop_map(|t| Value::Number(t.parse().unwrap())),
        Just(json!(0)),
        Just(json!(150)),
        "[a-zA-Z ]{0,8}".prop_map(Value::from),
    ]
}

/// Maps the event both ways; both must give the same result.
fn same_either_way(mapping: usize, replacements: &[(usize, Value)]) -> Result<(), TestCaseError> {
    let (planned, whole, lookups) = &LOADED[mapping];
    let case = &planned.tests[0];
    let mut event = case.event.clone();
    let mut paths = Vec::new();
    leaves(&event, &mut Vec::new(), &mut paths);
    for (pick, value) in replacements {
        if let Some(place) = event.pointer_mut(&paths[pick % paths.len()]) {
            *place = value.clone();
        }
    }
    let context = Context {
        xrefs: case.context.xrefs.clone(),
    };
    let with_plan = planned.apply(&event, lookups, &context);
    let without = whole.apply(&event, lookups, &context);
    prop_assert_eq!(with_plan, without, "{} on {}", SHIPPED[mapping], event);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(5000))]

    #[test]
    fn the_plan_decides_as_the_whole_document_check(
        mapping in 0..SHIPPED.len(),
        replacements in prop::collection::vec((any::<usize>(), replacement()), 0..5),
    ) {
        same_either_way(mapping, &replacements)?;
    }
}

/// Documents that break the schema reach the same schema error through the plan.
#[test]
fn schema_errors_are_found_with_the_plan() {
    let (planned, whole, lookups) = load("opportunity_to_sales_order");
    let case = &planned.tests[0];
    let context = Context {
        xrefs: case.context.xrefs.clone(),
    };
    for (pointer, value, field) in [
        ("/data/Amount", json!("-5"), "total"),
        ("/data/CurrencyIsoCode", json!("EURO"), "currency"),
        ("/data/Id", json!(7), "reference"),
        (
            "/data/OpportunityLineItems/0/UnitPrice",
            json!(-1),
            "lines.0.line_total",
        ),
        (
            "/data/OpportunityLineItems/1/Discount",
            json!(150),
            "lines.1.discount_percent",
        ),
        ("/data/OpportunityLineItems", json!([]), "lines"),
    ] {
        let mut event = case.event.clone();
        *event.pointer_mut(pointer).unwrap() = value;
        let error = planned.apply(&event, &lookups, &context).unwrap_err();
        assert_eq!(
            (error.code.as_str(), error.field.as_str()),
            ("schema", field)
        );
        assert_eq!(Err(error), whole.apply(&event, &lookups, &context));
    }
}

/// A required nested object that no dotted rule filled, and a bounded list, decided the same
/// either way.
#[test]
fn nested_objects_and_bounded_lists_are_decided_as_before() {
    let schemas = std::collections::HashMap::from([(
        "party".to_owned(),
        json!({"type": "object", "required": ["code", "address", "notes"],
               "properties": {"code": {"type": "string"},
                              "address": {"type": "object", "required": ["city"],
                                          "properties": {"city": {"type": "string"},
                                                         "zip": {"type": "string"}}},
                              "notes": {"type": "array", "maxItems": 2,
                                        "items": {"properties": {"text": {"type": "string"}}}}}}),
    )]);
    let text = "flow: f\non: { event: e }\ntarget: { connector: erp, operation: o, schema: party }\n\
                order_key: \"$.Id\"\nfields:\n  code: \"$.Id\"\n  address.city: \"$.City\"\n  \
                address.zip: \"$.Zip\"\nlines:\n  into: notes\n  from: \"$.Notes\"\n  fields:\n    \
                text: \"item.text\"\n";
    let lookups = Lookups::new();
    let planned = compile::compile("f.yaml", text, &lookups, &schemas).unwrap();
    let mut whole = compile::compile("f.yaml", text, &lookups, &schemas).unwrap();
    assert!(planned.checks.is_some());
    whole.checks = None;
    let context = Context::default();
    let mut errors = 0;
    for event in [
        json!({"Id": "A", "City": "Lyon", "Notes": [{"text": "x"}]}),
        json!({"Id": "A", "Zip": "69002", "Notes": []}),
        json!({"Id": "A", "Notes": []}),
        json!({"Id": "A", "City": 7, "Notes": []}),
        json!({"Id": "A", "City": "Lyon", "Notes": [{"text": "a"}, {"text": "b"}, {"text": "c"}]}),
        json!({"Id": "A", "City": "Lyon", "Notes": [{"text": 1}]}),
    ] {
        let with_plan = planned.apply(&event, &lookups, &context);
        errors += usize::from(with_plan.is_err());
        assert_eq!(
            with_plan,
            whole.apply(&event, &lookups, &context),
            "{event}"
        );
    }
    assert_eq!(errors, 5, "one valid event, five invalid ones");
}
