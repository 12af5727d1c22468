//! From a verified body to envelopes: split batches, find ids, apply the event-type rules.

use axum::http::{HeaderMap, HeaderName};
use chrono::{DateTime, Utc};
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::error::IngestError;
use crate::envelope::Envelope;
use crate::ingest::settings::{EventRule, Locator, SourceConfig};

/// A compiled event-type rule.
#[derive(Debug, Clone)]
pub struct Rule {
    pub event_type: String,
    pub object: String,
    pub when: Vec<(String, Value)>,
    pub object_id: Option<String>,
    pub version: Option<String>,
}

impl From<&EventRule> for Rule {
    fn from(rule: &EventRule) -> Self {
        Rule {
            event_type: rule.event_type.clone(),
            object: rule.object.clone(),
            when: rule
                .when
                .iter()
                .map(|(pointer, value)| (pointer.clone(), toml_to_json(value)))
                .collect(),
            object_id: rule.object_id.clone(),
            version: rule.version.clone(),
        }
    }
}

fn toml_to_json(value: &toml::Value) -> Value {
    serde_json::to_value(value).unwrap_or(Value::Null)
}

/// Where an event's id comes from.
#[derive(Debug, Clone)]
pub enum IdSource {
    Header(Vec<HeaderName>),
    Pointer(String),
    /// The SHA-256 of the body (and position in a batch).
    Digest,
}

/// How a source turns parsed documents into envelopes.
#[derive(Debug, Clone)]
pub struct Typing {
    pub id: IdSource,
    pub batch: Option<String>,
    pub object_id: Option<String>,
    pub version: Option<String>,
    pub rules: Vec<Rule>,
}

impl Typing {
    pub fn new(config: &SourceConfig, preset_id_headers: Vec<HeaderName>) -> Result<Self, String> {
        let id = match &config.event_id {
            Some(Locator::Header(name)) => IdSource::Header(vec![
                HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes())
                    .map_err(|_| format!("event_id header {name:?} is not a header name"))?,
            ]),
            Some(Locator::Pointer(pointer)) => IdSource::Pointer(pointer.clone()),
            None if !preset_id_headers.is_empty() => IdSource::Header(preset_id_headers),
            None => IdSource::Digest,
        };
        Ok(Typing {
            id,
            batch: config.batch.clone(),
            object_id: config.object_id.clone(),
            version: config.version.clone(),
            rules: config.events.iter().map(Rule::from).collect(),
        })
    }

    /// Splits a parsed JSON body into its events (one, or the batch array's elements).
    pub fn split(&self, body: Value) -> Result<Vec<Value>, IngestError> {
        let Some(pointer) = &self.batch else {
            return Ok(vec![body]);
        };
        match body.pointer(pointer) {
            Some(Value::Array(items)) => Ok(items.clone()),
            _ => Err(IngestError::MalformedBody(format!(
                "expected an array of events at {pointer:?}"
            ))),
        }
    }

    /// Builds the envelope of the `index`-th event of a body.
    #[allow(clippy::too_many_arguments)]
    pub fn envelope(
        &self,
        source: &str,
        data: Value,
        index: usize,
        headers: &HeaderMap,
        raw_body: &str,
        signed_at: Option<i64>,
        received_at: DateTime<Utc>,
    ) -> Result<Envelope, IngestError> {
        let base_id = match &self.id {
            IdSource::Header(names) => super::verify::first_header(headers, names)
                .map(str::to_owned)
                .ok_or_else(|| IngestError::MissingEventId(header_list(names)))?,
            IdSource::Pointer(pointer) => scalar(&data, pointer)
                .ok_or_else(|| IngestError::MissingEventId(format!("JSON pointer {pointer}")))?,
            IdSource::Digest => hex::encode(Sha256::digest(raw_body.as_bytes())),
        };
        // One header id covers a whole batch; each event needs its own.
        let id = match (&self.id, &self.batch) {
            (IdSource::Pointer(_), _) | (_, None) => base_id,
            (_, Some(_)) => format!("{base_id}#{index}"),
        };
        let rule = self.rules.iter().find(|rule| {
            rule.when
                .iter()
                .all(|(pointer, expected)| data.pointer(pointer) == Some(expected))
        });
        let object_id_pointer = rule
            .and_then(|r| r.object_id.as_ref())
            .or(self.object_id.as_ref());
        let version_pointer = rule
            .and_then(|r| r.version.as_ref())
            .or(self.version.as_ref());
        Ok(Envelope {
            id,
            source: source.to_owned(),
            event_type: rule.map(|r| r.event_type.clone()),
            ignored: rule.is_none(),
            object: rule.map(|r| r.object.clone()),
            object_id: object_id_pointer.and_then(|p| scalar(&data, p)),
            version: version_pointer.and_then(|p| scalar(&data, p)),
            signed_at,
            received_at,
            raw_body: raw_body.to_owned(),
            // Set by the caller, which knows whether `data` is the whole body.
            data_is_raw_body: false,
            data,
        })
    }
}

fn header_list(names: &[HeaderName]) -> String {
    let names: Vec<&str> = names.iter().map(HeaderName::as_str).collect();
    format!("header {}", names.join(" or "))
}

/// A string or number at `pointer`, as text.
fn scalar(data: &Value, pointer: &str) -> Option<String> {
    match data.pointer(pointer)? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn typing(batch: Option<&str>, id: IdSource) -> Typing {
        Typing {
            id,
            batch: batch.map(str::to_owned),
            object_id: Some("/data/Id".into()),
            version: Some("/data/LastModifiedDate".into()),
            rules: vec![Rule {
                event_type: "opportunity.won".into(),
                object: "Opportunity".into(),
                when: vec![
                    ("/object".into(), json!("Opportunity")),
                    ("/data/StageName".into(), json!("Closed Won")),
                ],
                object_id: None,
                version: None,
            }],
        }
    }

    #[test]
    fn first_matching_rule_types_the_event() {
        let t = typing(None, IdSource::Pointer("/id".into()));
        let data = json!({"id": "e1", "object": "Opportunity",
            "data": {"Id": "006A", "StageName": "Closed Won", "LastModifiedDate": "2026-11-01T10:00:00Z"}});
        let env = t
            .envelope("crm", data, 0, &HeaderMap::new(), "{}", None, Utc::now())
            .unwrap();
        assert_eq!(env.id, "e1");
        assert_eq!(env.event_type.as_deref(), Some("opportunity.won"));
        assert_eq!(env.object_id.as_deref(), Some("006A"));
        assert_eq!(env.version.as_deref(), Some("2026-11-01T10:00:00Z"));
    }

    #[test]
    fn unmatched_events_are_ignored_not_rejected() {
        let t = typing(None, IdSource::Digest);
        let data =
            json!({"object": "Opportunity", "data": {"Id": "006A", "StageName": "Prospecting"}});
        let env = t
            .envelope("crm", data, 0, &HeaderMap::new(), "{}", None, Utc::now())
            .unwrap();
        assert!(env.is_ignored());
        assert_eq!(env.id.len(), 64);
    }

    #[test]
    fn batches_split_and_header_ids_get_an_index() {
        let t = typing(
            Some(""),
            IdSource::Header(vec![HeaderName::from_static("x-id")]),
        );
        let events = t.split(json!([{"a": 1}, {"a": 2}])).unwrap();
        assert_eq!(events.len(), 2);
        let mut headers = HeaderMap::new();
        headers.insert("x-id", "batch-7".parse().unwrap());
        let env = t
            .envelope("h", events[1].clone(), 1, &headers, "[]", None, Utc::now())
            .unwrap();
        assert_eq!(env.id, "batch-7#1");
        assert!(matches!(
            t.split(json!({"not": "array"})),
            Err(IngestError::MalformedBody(_))
        ));
    }

    #[test]
    fn a_missing_id_is_an_error() {
        let t = typing(None, IdSource::Pointer("/id".into()));
        let err = t
            .envelope(
                "crm",
                json!({}),
                0,
                &HeaderMap::new(),
                "{}",
                None,
                Utc::now(),
            )
            .unwrap_err();
        assert!(matches!(err, IngestError::MissingEventId(_)));
    }
}
