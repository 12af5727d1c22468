//! One source record against the target's records with its key and what handoff last
//! delivered: which drift class it is in, and why. Pure: the pass gathers the inputs.

use rust_decimal::Decimal;
use serde_json::{Map, Value};

use super::Class;
use crate::adapters::Listed;
use crate::queue::records::{Applied, Xref};
use crate::queue::{Job, State};
use crate::sync::version::older;

/// Everything known of one source record.
pub struct Facts<'a> {
    /// Its version at the source, and whether it changed within the in-flight window.
    pub version: Option<&'a str>,
    pub recent: bool,
    /// The newest job of this flow for the record that is not finished (open or dead).
    pub job: Option<&'a Job>,
    /// The target's records with the record's key.
    pub targets: &'a [Listed],
    pub applied: Option<&'a Applied>,
    pub xref: Option<&'a Xref>,
    /// Deep pass: the document the mapping makes of the record now (or why it cannot), and the
    /// digest of it; `None` in the id-and-version pass.
    pub remapped: Option<&'a Result<(Value, u64), String>>,
    /// The fields the deep pass compares (empty: every field the target lists).
    pub compare: &'a [String],
}

/// The record's class and the reason shown to operators.
pub fn classify(facts: &Facts<'_>) -> (Class, String) {
    if let Some(job) = facts.job {
        let why = job
            .reason
            .as_ref()
            .map_or(String::new(), |r| format!(": {}", r.message));
        return match job.state {
            State::Ready | State::Leased | State::Retrying => (
                Class::InFlight,
                format!("job {} is {} for it{why}", job.id, job.state.as_str()),
            ),
            _ => (
                Class::Known,
                format!("job {} is {}{why}", job.id, job.state.as_str()),
            ),
        };
    }
    if facts.recent {
        return (
            Class::InFlight,
            format!(
                "changed at the source moments ago ({}): its event may be on the way",
                facts.version.unwrap_or_default()
            ),
        );
    }
    let delivered = facts.applied.is_some() || facts.xref.is_some();
    let target = match facts.targets {
        [] if delivered => {
            let id = facts.xref.map_or("?", |x| x.external_id.as_str());
            return (
                Class::MissingInTarget,
                format!("handoff delivered it (target id {id}) but the target no longer has it"),
            );
        }
        [] => {
            return (
                Class::MissedEvent,
                "the target has no record for it and handoff never delivered it".into(),
            );
        }
        [one] => one,
        several => {
            let ids: Vec<&str> = several.iter().map(|t| t.id.as_str()).collect();
            return (
                Class::Duplicate,
                format!(
                    "the target has {} records with its key: {}",
                    ids.len(),
                    ids.join(", ")
                ),
            );
        }
    };
    match facts.xref {
        // Never delivered nor linked. (A delivery that got no id back, a CRM write-back, keeps
        // only its applied version.)
        None if facts.applied.is_none() => {
            return (
                Class::Unlinked,
                format!(
                    "the target has it as {} but handoff has no cross-reference",
                    target.id
                ),
            );
        }
        Some(xref) if xref.external_id != target.id => {
            return (
                Class::Unlinked,
                format!(
                    "handoff's cross-reference points to {}, the target's record with its key is {}",
                    xref.external_id, target.id
                ),
            );
        }
        _ => {}
    }
    let last = facts.applied.and_then(|a| a.version.as_deref());
    match (facts.version, last) {
        (Some(now), Some(last)) if older(last, now) => {
            return (
                Class::MissedEvent,
                format!("the source is at version {now}, handoff last applied {last}"),
            );
        }
        (Some(now), None) if facts.applied.is_none() => {
            return (
                Class::MissedEvent,
                format!("the source is at version {now}, handoff applied none"),
            );
        }
        _ => {}
    }
    let Some(remapped) = facts.remapped else {
        return (Class::Matched, String::new());
    };
    let (document, digest) = match remapped {
        Ok(mapped) => mapped,
        Err(why) => return (Class::Matched, format!("not compared: {why}")),
    };
    let differences = differences(document, &target.fields, facts.compare);
    if differences.is_empty() {
        return (Class::Matched, String::new());
    }
    let text = differences.join("; ");
    match facts.applied.and_then(|a| a.digest) {
        Some(delivered) if delivered != *digest => (
            Class::MissedEvent,
            format!("the mapping makes a different document now than handoff delivered: {text}"),
        ),
        _ => (
            Class::EditedInTarget,
            format!("changed in the target: {text}"),
        ),
    }
}

/// The compared fields whose values differ, as `field: document → target`.
pub fn differences(document: &Value, target: &Value, compare: &[String]) -> Vec<String> {
    let (Some(document), Some(target)) = (document.as_object(), target.as_object()) else {
        return Vec::new();
    };
    let fields: Vec<&String> = if compare.is_empty() {
        target
            .keys()
            .filter(|k| document.contains_key(*k))
            .collect()
    } else {
        compare.iter().collect()
    };
    fields
        .into_iter()
        .filter_map(|field| {
            let (ours, theirs) = (value(document, field), value(target, field));
            (!same(ours, theirs)).then(|| format!("{field}: {} → {}", shown(ours), shown(theirs)))
        })
        .collect()
}

fn value<'a>(fields: &'a Map<String, Value>, name: &str) -> &'a Value {
    fields.get(name).unwrap_or(&Value::Null)
}

/// Equal as the target would store them: numbers and decimal text by value, text trimmed,
/// an empty text and a missing value alike.
fn same(a: &Value, b: &Value) -> bool {
    let number = |v: &Value| match v {
        Value::Number(n) => n.to_string().parse::<Decimal>().ok(),
        Value::String(s) => s.trim().parse::<Decimal>().ok(),
        _ => None,
    };
    let text = |v: &Value| match v {
        Value::String(s) if !s.trim().is_empty() => Some(Value::String(s.trim().to_owned())),
        Value::String(_) | Value::Null => None,
        other => Some(other.clone()),
    };
    match (number(a), number(b)) {
        (Some(x), Some(y)) => x == y,
        _ => text(a) == text(b),
    }
}

fn shown(value: &Value) -> String {
    match value {
        Value::String(s) => format!("{s:?}"),
        Value::Null => "none".into(),
        other => crate::adapters::cut(&other.to_string(), 80),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::Position;
    use serde_json::json;

    fn target(id: &str, fields: Value) -> Listed {
        Listed {
            id: id.into(),
            key: Some("006A".into()),
            version: None,
            active: true,
            fields,
        }
    }

    fn applied(version: &str, digest: Option<u64>) -> Applied {
        Applied {
            version: Some(version.into()),
            seq: 1,
            at: Position {
                segment: 0,
                offset: 0,
            },
            digest,
        }
    }

    fn xref(external_id: &str) -> Xref {
        Xref {
            system: "erp".into(),
            kind: "sales_order".into(),
            crm_id: "006A".into(),
            external_id: external_id.into(),
            flow: "f".into(),
            job: 1,
            at_ms: 0,
        }
    }

    fn facts<'a>(
        targets: &'a [Listed],
        applied: Option<&'a Applied>,
        xref: Option<&'a Xref>,
    ) -> Facts<'a> {
        Facts {
            version: Some("2026-11-30T10:00:00Z"),
            recent: false,
            job: None,
            targets,
            applied,
            xref,
            remapped: None,
            compare: &[],
        }
    }

    #[test]
    fn each_class_is_found() {
        let one = [target("7", json!({"name": "Acme"}))];
        let two = [target("7", json!({})), target("8", json!({}))];
        let (now, old) = (
            applied("2026-11-30T10:00:00Z", Some(5)),
            applied("2026-11-29T10:00:00Z", None),
        );
        let linked = xref("7");
        let class = |f: &Facts<'_>| classify(f).0;
        assert_eq!(
            class(&facts(&one, Some(&now), Some(&linked))),
            Class::Matched
        );
        assert_eq!(
            class(&facts(&one, Some(&old), Some(&linked))),
            Class::MissedEvent
        );
        assert_eq!(class(&facts(&[], None, None)), Class::MissedEvent);
        assert_eq!(
            class(&facts(&[], Some(&now), Some(&linked))),
            Class::MissingInTarget
        );
        assert_eq!(
            class(&facts(&two, Some(&now), Some(&linked))),
            Class::Duplicate
        );
        assert_eq!(class(&facts(&one, None, None)), Class::Unlinked);
        // Delivered without an id coming back (a CRM write-back): not unlinked.
        assert_eq!(class(&facts(&one, Some(&now), None)), Class::Matched);
        assert_eq!(
            class(&facts(&one, Some(&now), Some(&xref("9")))),
            Class::Unlinked
        );
        let recent = Facts {
            recent: true,
            ..facts(&[], None, None)
        };
        assert_eq!(class(&recent), Class::InFlight);
    }

    #[test]
    fn the_deep_pass_tells_an_edit_in_the_target_from_a_changed_mapping() {
        let edited = [target(
            "7",
            json!({"name": "Acme (edited)", "code": "001A"}),
        )];
        let linked = xref("7");
        let same_doc = applied("2026-11-30T10:00:00Z", Some(5));
        let remapped = Ok((json!({"name": "Acme", "code": "001A", "phone": "1"}), 5));
        let deep = Facts {
            remapped: Some(&remapped),
            ..facts(&edited, Some(&same_doc), Some(&linked))
        };
        let (class, why) = classify(&deep);
        assert_eq!(class, Class::EditedInTarget);
        assert_eq!(
            why,
            "changed in the target: name: \"Acme\" → \"Acme (edited)\""
        );
        let other_doc = applied("2026-11-30T10:00:00Z", Some(6));
        let changed = Facts {
            remapped: Some(&remapped),
            ..facts(&edited, Some(&other_doc), Some(&linked))
        };
        assert_eq!(classify(&changed).0, Class::MissedEvent);
        let equal = [target("7", json!({"name": " Acme", "code": "001A"}))];
        let matched = Facts {
            remapped: Some(&remapped),
            ..facts(&equal, Some(&same_doc), Some(&linked))
        };
        assert_eq!(classify(&matched).0, Class::Matched);
    }

    #[test]
    fn values_compare_as_the_target_stores_them() {
        let doc = json!({"total": 1377.7, "currency": "EUR", "note": "", "description": "x"});
        let erp = json!({"total": "1377.70", "currency": "EUR", "note": null, "description": "y", "state": "done"});
        assert_eq!(differences(&doc, &erp, &[]), ["description: \"x\" → \"y\""]);
        assert_eq!(
            differences(&doc, &erp, &["total".into()]),
            Vec::<String>::new()
        );
    }
}
