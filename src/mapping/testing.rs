//! The `tests:` block of a mapping file: run by `cargo test` (one named test per case) and by
//! `handoff mapping test`.

use serde_json::Value;

use super::expr::Val;
use super::spec::TestSpec;
use super::{Context, Lookups, Mapping};

/// Runs one case; the error says what differed.
pub fn run_case(mapping: &Mapping, lookups: &Lookups, case: &TestSpec) -> Result<(), String> {
    let context = Context {
        xrefs: case.context.xrefs.clone(),
    };
    let result = mapping.apply(&case.event, lookups, &context);
    match (&case.expect, &case.expect_error, result) {
        (Some(expected), None, Ok(document)) if same(expected, &document.body) => Ok(()),
        (Some(expected), None, Ok(document)) => Err(format!(
            "expected\n{}\ngot\n{}",
            pretty(expected),
            pretty(&document.body)
        )),
        (Some(_), None, Err(error)) => Err(format!("expected a document, got the error: {error}")),
        (None, Some(expected), Err(error))
            if error.field == expected.field && error.code == expected.code =>
        {
            Ok(())
        }
        (None, Some(expected), Err(error)) => Err(format!(
            "expected error {} on {}, got {} on {}: {error}",
            expected.code, expected.field, error.code, error.field
        )),
        (None, Some(expected), Ok(document)) => Err(format!(
            "expected error {} on {}, got the document\n{}",
            expected.code,
            expected.field,
            pretty(&document.body)
        )),
        _ => Err("a test needs exactly one of expect and expect_error".into()),
    }
}

/// Equal as JSON, with numbers compared as decimals (`25000.5` equals `25000.50`).
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(_), Value::Number(_)) => match (Val::from_json(a), Val::from_json(b)) {
            (Val::Num(x), Val::Num(y)) => x == y,
            _ => a == b,
        },
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        _ => a == b,
    }
}

fn pretty(value: &Value) -> String {
    serde_json::to_string_pretty(value).unwrap_or_default()
}
