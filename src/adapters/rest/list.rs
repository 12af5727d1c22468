//! A REST connector's `list` operations (reconciliation): `GET path`, then each next page the
//! answer names, with the records found by the operation's JSON pointers.

use reqwest::Method;
use serde_json::Value;

use super::{Rest, id_text};
use crate::adapters::connector::ListSpec;
use crate::adapters::{Class, Failure, Listed, Listing};

impl Rest {
    pub(super) async fn list_page(
        &self,
        operation: &str,
        page: Option<&str>,
    ) -> Result<Listing, Failure> {
        let (path, spec) = self
            .operations
            .get(operation)
            .and_then(|op| op.list.as_ref().map(|list| (&op.path, list)))
            .ok_or_else(|| {
                Failure::new(
                    Class::FixConfig,
                    format!("the connector has no list operation {operation:?}"),
                )
            })?;
        let path = match page {
            // The next page as the answer named it: a path, or a URL on the base URL.
            Some(next) => next.strip_prefix(&self.base_url).unwrap_or(next).to_owned(),
            None => path.clone(),
        };
        if path.contains("://") {
            return Err(Failure::new(
                Class::FixConfig,
                format!("the next page {path:?} is not on the connector's base_url"),
            ));
        }
        let summary = format!("GET {path}");
        let (status, headers, body) = self.call(&Method::GET, &path, None, &[], &summary).await?;
        if !status.is_success() {
            return Err(self.failure(status, &headers, &body, summary));
        }
        let answer: Value = serde_json::from_str(&body).map_err(|error| {
            Failure::new(
                Class::FixConfig,
                format!("{summary} did not answer JSON: {error}"),
            )
        })?;
        page_of(&answer, spec)
            .map_err(|why| Failure::new(Class::FixConfig, format!("{summary}: {why}")))
    }
}

/// The records and the next page of one answer.
fn page_of(answer: &Value, spec: &ListSpec) -> Result<Listing, String> {
    let items = answer
        .pointer(&spec.items)
        .and_then(Value::as_array)
        .ok_or_else(|| format!("no array of records at {:?}", spec.items))?;
    let text = |item: &Value, pointer: &Option<String>| {
        pointer
            .as_deref()
            .and_then(|p| item.pointer(p))
            .and_then(id_text)
    };
    let mut listed = Vec::with_capacity(items.len());
    for item in items {
        let id = item
            .pointer(&spec.id)
            .and_then(id_text)
            .ok_or_else(|| format!("a record has no id at {:?}: {item}", spec.id))?;
        listed.push(Listed {
            key: match &spec.key {
                Some(_) => text(item, &spec.key),
                None => Some(id.clone()),
            },
            id,
            version: text(item, &spec.version),
            active: spec
                .active
                .as_deref()
                .and_then(|p| item.pointer(p))
                .and_then(Value::as_bool)
                .unwrap_or(true),
            fields: item.clone(),
        });
    }
    let next = spec
        .next
        .as_deref()
        .and_then(|p| answer.pointer(p))
        .and_then(Value::as_str)
        .filter(|next| !next.is_empty())
        .map(str::to_owned);
    Ok(Listing {
        items: listed,
        next,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_page_gives_its_records_and_the_next_page() {
        let spec = ListSpec {
            items: "/records".into(),
            next: Some("/nextRecordsUrl".into()),
            id: "/Id".into(),
            key: Some("/ERP_Code__c".into()),
            version: Some("/LastModifiedDate".into()),
            active: Some("/IsActive".into()),
        };
        let answer = json!({"records": [
            {"Id": "01t1", "ERP_Code__c": "SKU-1", "LastModifiedDate": "2026-11-30T10:00:00Z", "IsActive": false},
            {"Id": 7}
        ], "nextRecordsUrl": "/query/01g-2000"});
        let page = page_of(&answer, &spec).unwrap();
        assert_eq!(page.next.as_deref(), Some("/query/01g-2000"));
        assert_eq!(page.items[0].key.as_deref(), Some("SKU-1"));
        assert_eq!(
            page.items[0].version.as_deref(),
            Some("2026-11-30T10:00:00Z")
        );
        assert!(!page.items[0].active);
        assert_eq!(
            (page.items[1].id.as_str(), page.items[1].key.as_deref()),
            ("7", None)
        );
        assert!(page.items[1].active);
        let last = page_of(&json!({"records": [], "nextRecordsUrl": null}), &spec).unwrap();
        assert_eq!(last.next, None);
        let bad = page_of(&json!({"records": [{"Name": "x"}]}), &spec).unwrap_err();
        assert!(bad.contains("no id at \"/Id\""), "{bad}");
    }
}
