//! Changes after a record exists are never dropped silently: when a newer version of a record
//! that handoff already created in the target arrives through an operation that leaves a found
//! record as it is (Tryton's and the sandbox's sales orders, a REST `find` without `update`),
//! the new document is compared with the one mapped from the version applied before. Equal:
//! it goes on (the adapter finds the record). Different: the job is held as `order_changed`,
//! showing what differs, for an operator to carry over by hand and skip.

use serde_json::Value;

use super::Engine;
use crate::mapping::live::Loaded;
use crate::mapping::{Context, Document, Mapping};
use crate::queue::records::Applied;
use crate::queue::{Job, Reason};

/// Why the job must wait for an operator, when it changes a record already created.
pub fn check(
    engine: &Engine,
    job: &Job,
    mapping: &Mapping,
    loaded: &Loaded,
    applied: Option<&Applied>,
    context: &Context,
    document: &Document,
) -> Option<Reason> {
    // A record never applied through this flow has nothing to change (no read needed).
    let applied = applied?;
    if applied.seq == job.seq {
        return None;
    }
    let live = engine.connector(&job.connector)?;
    if live.adapter().updates_found(&job.operation) {
        return None;
    }
    let crm_id = document.match_key.as_deref().or(job.object_id.as_deref())?;
    let xref = engine
        .queue
        .xref(&job.connector, &mapping.schema_name, crm_id)
        .ok()??;
    if xref.job == job.id {
        return None; // its own earlier attempt made it
    }
    let target = format!(
        "{} {} in {}",
        mapping.schema_name, xref.external_id, job.connector
    );
    let before = match engine.journal.read(applied.seq, applied.at) {
        Ok(envelope) => mapping.apply(&envelope.data, &loaded.lookups, context),
        Err(_) => {
            return Some(Reason::new(
                "order_changed",
                format!(
                    "{target} exists already and this is a newer version of {crm_id}; the version \
                     it was made from is no longer kept to compare: check it by hand, then skip"
                ),
            ));
        }
    };
    let Ok(before) = before else {
        return None; // the earlier version no longer maps: nothing to compare with
    };
    let mut differences = Vec::new();
    diff(
        &before.body,
        &document.body,
        String::new(),
        &mut differences,
    );
    if differences.is_empty() {
        return None;
    }
    let shown: Vec<&str> = differences.iter().take(20).map(String::as_str).collect();
    let more = differences.len().saturating_sub(shown.len());
    Some(Reason::new(
        "order_changed",
        format!(
            "{crm_id} changed after {target} was created: {}{}. {} does not change a record it \
             finds: carry the change over by hand, then skip this job",
            shown.join("; "),
            if more > 0 {
                format!("; {more} more")
            } else {
                String::new()
            },
            job.connector,
        ),
    ))
}

/// `lines[1].quantity: 3 → 5` for every leaf that differs.
fn diff(before: &Value, after: &Value, path: String, out: &mut Vec<String>) {
    let at = |key: &str| match path.is_empty() {
        true => key.to_owned(),
        false => format!("{path}.{key}"),
    };
    match (before, after) {
        (Value::Object(a), Value::Object(b)) => {
            for (key, value) in a {
                diff(value, b.get(key).unwrap_or(&Value::Null), at(key), out);
            }
            for (key, value) in b.iter().filter(|(k, _)| !a.contains_key(*k)) {
                diff(&Value::Null, value, at(key), out);
            }
        }
        (Value::Array(a), Value::Array(b)) => {
            for n in 0..a.len().max(b.len()) {
                let (x, y) = (
                    a.get(n).unwrap_or(&Value::Null),
                    b.get(n).unwrap_or(&Value::Null),
                );
                diff(x, y, format!("{path}[{n}]"), out);
            }
        }
        (a, b) if a != b => out.push(format!("{path}: {} → {}", show(a), show(b))),
        _ => {}
    }
}

fn show(value: &Value) -> String {
    match value {
        Value::Null => "(none)".into(),
        Value::String(text) => crate::adapters::cut(text, 60),
        other => crate::adapters::cut(&other.to_string(), 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_changed_leaf_is_named_with_both_values() {
        let before = json!({"total": 58.47, "lines": [{"product_code": "SKU-1", "quantity": 3}]});
        let after = json!({"total": 97.45, "lines": [
            {"product_code": "SKU-1", "quantity": 5}, {"product_code": "SKU-2", "quantity": 1}]});
        let mut out = Vec::new();
        diff(&before, &after, String::new(), &mut out);
        assert_eq!(
            out,
            [
                "lines[0].quantity: 3 → 5",
                "lines[1]: (none) → {\"product_code\":\"SKU-2\",\"quantity\":1}",
                "total: 58.47 → 97.45"
            ]
        );
        let mut none = Vec::new();
        diff(&before, &before, String::new(), &mut none);
        assert!(none.is_empty());
    }
}
