//! Compile-time problems of mapping files, checked on small files written here. The shipped
//! mappings' own `tests:` run in tests/mappings.rs.

use std::collections::HashMap;

use serde_json::json;

use super::compile::{Lookups, compile};

fn schemas() -> HashMap<String, serde_json::Value> {
    HashMap::from([(
        "customer".to_owned(),
        json!({"type": "object", "required": ["code", "name"],
               "properties": {"code": {"type": "string"}, "name": {"type": "string"}, "terms": {}}}),
    )])
}

fn lookups() -> Lookups {
    HashMap::from([("payment_terms".to_owned(), serde_json::Map::new())])
}

fn problems(text: &str) -> Vec<String> {
    match compile("m.yaml", text, &lookups(), &schemas()) {
        Ok(_) => vec![],
        Err(problems) => problems
            .into_iter()
            .map(|p| format!("{}: {}", p.location, p.message))
            .collect(),
    }
}

const HEAD: &str = "flow: f\non: { event: account.updated }\ntarget: { connector: erp, operation: upsert, schema: customer }\norder_key: \"$.Id\"\n";

#[test]
fn a_valid_file_compiles() {
    let text = format!(
        "{HEAD}fields:\n  code: \"$.Id\"\n  name: {{ value: \"trim($.Name)\", required: true }}\n"
    );
    assert_eq!(problems(&text), Vec::<String>::new());
}

#[test]
fn every_problem_is_reported_at_once_with_line_column_and_caret() {
    let text = format!(
        "{HEAD}fields:\n  code: \"trimm($.Id)\"\n  name: \"trim($.Name, 1)\"\n  terms: \"lookup('terms', $.T)\"\n  colour: \"$.Colour\"\n"
    );
    let found = problems(&text);
    assert_eq!(found.len(), 4, "{found:#?}");
    assert!(
        found[0].starts_with("m.yaml:6:10: unknown function 'trimm'"),
        "{}",
        found[0]
    );
    assert!(
        found[0].contains("\n    ") && found[0].contains("         ^"),
        "caret snippet: {}",
        found[0]
    );
    assert!(
        found[1].starts_with("m.yaml:7:10: trim takes 1 argument(s), given 2"),
        "{}",
        found[1]
    );
    assert!(
        found[2].starts_with("m.yaml:8:18: no lookup table \"terms\""),
        "{}",
        found[2]
    );
    assert!(
        found[3].starts_with("m.yaml:9:12: customer has no field \"colour\""),
        "{}",
        found[3]
    );
}

#[test]
fn required_target_fields_and_unknown_schemas_are_reported() {
    let text = format!("{HEAD}fields:\n  code: \"$.Id\"\n");
    let found = problems(&text);
    assert!(
        found
            .iter()
            .any(|p| p.contains("customer requires \"name\", which no field rule sets")),
        "{found:#?}"
    );
    let text = HEAD.replace("schema: customer", "schema: klant") + "fields:\n  code: \"$.Id\"\n";
    let found = problems(&text);
    assert!(
        found[0].starts_with("m.yaml:3:") && found[0].contains("no schema named \"klant\""),
        "{found:#?}"
    );
}

#[test]
fn unknown_keys_and_yaml_syntax_errors_have_locations() {
    let found = problems(&format!("{HEAD}feilds:\n  code: \"$.Id\"\n"));
    assert!(found[0].starts_with("m.yaml:5:"), "{found:#?}");
    assert!(found[0].contains("feilds"), "{found:#?}");
    let found = problems("flow: [unclosed\n");
    assert!(found[0].starts_with("m.yaml:"), "{found:#?}");
}

#[test]
fn a_schema_violation_names_the_path_and_the_rule_behind_it() {
    let text = format!(
        "{HEAD}fields:\n  code: \"$.Id\"\n  name: \"$.Name\"\n  terms: \"upper($.Terms)\"\n"
    );
    let mut schemas = schemas();
    schemas.get_mut("customer").unwrap()["properties"]["terms"] = json!({"enum": ["NET30"]});
    let mapping = compile("m.yaml", &text, &lookups(), &schemas).unwrap();
    let data = json!({"Id": "1", "Name": "A", "Terms": "net 90"});
    let error = mapping
        .apply(&data, &lookups(), &Default::default())
        .unwrap_err();
    assert_eq!(
        (error.field.as_str(), error.code.as_str()),
        ("terms", "schema")
    );
    assert_eq!(error.rule, "upper($.Terms)");
    assert!(error.message.contains("\"/terms\""), "{}", error.message);
}
