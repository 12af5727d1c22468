//! Echo detection: a CRM event that differs from the last one applied for its record only in
//! fields handoff itself wrote there (and in fields every save changes) is handoff's own write
//! coming back, not a change to sync.

use serde_json::Value;

use crate::queue::records::Echo;

pub fn is_echo(before: &Value, after: &Value, echo: &Echo, ignore: &[String]) -> bool {
    let mut changed = Vec::new();
    diff(before, after, None, &mut changed);
    changed
        .iter()
        .all(|field| echo.fields.contains_key(*field) || ignore.iter().any(|i| i == field))
}

/// The echo record without the fields this CRM event holds with another value than handoff
/// wrote (the CRM changed them since); `None` when nothing changed.
pub fn changed_by_crm(echo: &Echo, event: &Value) -> Option<Echo> {
    let mut leaves = Vec::new();
    leaves_of(event, None, &mut leaves);
    let mut kept = echo.clone();
    kept.fields.retain(|field, written| {
        leaves
            .iter()
            .filter(|(name, _)| name == field)
            .all(|(_, value)| same(value, written))
    });
    (kept.fields.len() != echo.fields.len()).then_some(kept)
}

fn leaves_of<'a>(value: &'a Value, name: Option<&'a str>, out: &mut Vec<(&'a str, &'a Value)>) {
    match value {
        Value::Object(map) => {
            for (key, value) in map {
                leaves_of(value, Some(key), out);
            }
        }
        leaf => out.extend(name.map(|name| (name, leaf))),
    }
}

/// Equal, taking `"12.50"` and `12.5` as the same (CRMs give numbers back as text).
fn same(a: &Value, b: &Value) -> bool {
    let number = |v: &Value| match v {
        Value::Number(n) => crate::mapping::expr::parse_decimal(&n.to_string()),
        Value::String(s) => crate::mapping::expr::parse_decimal(s),
        _ => None,
    };
    a == b || matches!((number(a), number(b)), (Some(x), Some(y)) if x == y)
}

/// The names of the leaf fields that differ (the last key on the path).
fn diff<'a>(before: &'a Value, after: &'a Value, name: Option<&'a str>, out: &mut Vec<&'a str>) {
    match (before, after) {
        (Value::Object(a), Value::Object(b)) => {
            for (key, value) in a {
                diff(value, b.get(key).unwrap_or(&Value::Null), Some(key), out);
            }
            for (key, value) in b {
                if !a.contains_key(key) {
                    diff(&Value::Null, value, Some(key), out);
                }
            }
        }
        (a, b) if a != b => out.push(name.unwrap_or("")),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn only_written_and_ignored_fields_changed_is_an_echo() {
        let echo = Echo {
            fields: json!({"id": "006A", "ERP_Status__c": "Shipped"})
                .as_object()
                .unwrap()
                .clone(),
            at_ms: 0,
        };
        let ignore = vec!["LastModifiedDate".to_owned()];
        let before = json!({"data": {"Id": "006A", "Amount": "10", "LastModifiedDate": "1", "ERP_Status__c": "Confirmed"}});
        let echoed = json!({"data": {"Id": "006A", "Amount": "10", "LastModifiedDate": "2", "ERP_Status__c": "Shipped"}});
        assert!(is_echo(&before, &echoed, &echo, &ignore));
        let real = json!({"data": {"Id": "006A", "Amount": "12", "LastModifiedDate": "2", "ERP_Status__c": "Shipped"}});
        assert!(!is_echo(&before, &real, &echo, &ignore));
    }

    #[test]
    fn fields_the_crm_changed_since_leave_the_echo_record() {
        let echo = Echo {
            fields: json!({"ERP_Status__c": "Shipped", "Invoice_Amount__c": 12.5})
                .as_object()
                .unwrap()
                .clone(),
            at_ms: 0,
        };
        let same = json!({"data": {"ERP_Status__c": "Shipped", "Invoice_Amount__c": "12.50"}});
        assert_eq!(changed_by_crm(&echo, &same), None);
        let changed =
            json!({"data": {"ERP_Status__c": "Closed by hand", "Invoice_Amount__c": "12.5"}});
        let kept = changed_by_crm(&echo, &changed).unwrap();
        assert_eq!(
            kept.fields.keys().collect::<Vec<_>>(),
            ["Invoice_Amount__c"]
        );
    }
}
