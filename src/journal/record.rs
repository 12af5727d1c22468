//! The payload of one journal record: a small JSON header, then the raw body byte for byte.
//!
//! ```text
//! header_len: u32 LE | header (JSON: every envelope field but the raw body) | raw body
//! ```
//!
//! When the event's data is the parsed raw body (a single JSON event), the header leaves `data`
//! out and reading parses the raw body again: the body is stored once and written without escaping.

use std::borrow::Cow;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::envelope::Envelope;

#[derive(Serialize, Deserialize)]
struct Header<'a> {
    id: Cow<'a, str>,
    source: Cow<'a, str>,
    event_type: Option<Cow<'a, str>>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    ignored: bool,
    object: Option<Cow<'a, str>>,
    object_id: Option<Cow<'a, str>>,
    version: Option<Cow<'a, str>>,
    signed_at: Option<i64>,
    received_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    data: Option<Cow<'a, Value>>,
}

/// The fields the dedupe rebuild needs, read without touching the body.
#[derive(Deserialize)]
pub struct Key {
    pub id: String,
    pub source: String,
    pub received_at: DateTime<Utc>,
}

pub fn encode(envelope: &Envelope) -> Vec<u8> {
    let header = Header {
        id: Cow::Borrowed(&envelope.id),
        source: Cow::Borrowed(&envelope.source),
        event_type: envelope.event_type.as_deref().map(Cow::Borrowed),
        ignored: envelope.ignored,
        object: envelope.object.as_deref().map(Cow::Borrowed),
        object_id: envelope.object_id.as_deref().map(Cow::Borrowed),
        version: envelope.version.as_deref().map(Cow::Borrowed),
        signed_at: envelope.signed_at,
        received_at: envelope.received_at,
        data: (!envelope.data_is_raw_body).then_some(Cow::Borrowed(&envelope.data)),
    };
    let mut out = Vec::with_capacity(256 + envelope.raw_body.len());
    out.extend_from_slice(&[0; 4]);
    serde_json::to_writer(&mut out, &header).expect("headers serialize");
    let header_len = u32::try_from(out.len() - 4).expect("headers are small");
    out[..4].copy_from_slice(&header_len.to_le_bytes());
    out.extend_from_slice(envelope.raw_body.as_bytes());
    out
}

fn split(payload: &[u8]) -> Option<(&[u8], &[u8])> {
    let len = u32::from_le_bytes(payload.get(..4)?.try_into().ok()?) as usize;
    let header = payload.get(4..4 + len)?;
    Some((header, &payload[4 + len..]))
}

pub fn decode(payload: &[u8]) -> Option<Envelope> {
    let (header, raw) = split(payload)?;
    let header: Header<'_> = serde_json::from_slice(header).ok()?;
    let raw_body = std::str::from_utf8(raw).ok()?.to_owned();
    let (data, data_is_raw_body) = match header.data {
        Some(data) => (data.into_owned(), false),
        None => (serde_json::from_str(&raw_body).ok()?, true),
    };
    Some(Envelope {
        id: header.id.into_owned(),
        source: header.source.into_owned(),
        event_type: header.event_type.map(Cow::into_owned),
        ignored: header.ignored,
        object: header.object.map(Cow::into_owned),
        object_id: header.object_id.map(Cow::into_owned),
        version: header.version.map(Cow::into_owned),
        signed_at: header.signed_at,
        received_at: header.received_at,
        raw_body,
        data,
        data_is_raw_body,
    })
}

pub fn decode_key(payload: &[u8]) -> Option<Key> {
    serde_json::from_slice(split(payload)?.0).ok()
}

/// Whether the record was ignored on arrival: the header's one flag, the rest skipped unparsed
/// (no strings copied, no time parsed; the router asks this of every record).
pub fn is_ignored(payload: &[u8]) -> Option<bool> {
    #[derive(Deserialize)]
    struct Flag {
        #[serde(default)]
        ignored: bool,
    }
    serde_json::from_slice::<Flag>(split(payload)?.0)
        .ok()
        .map(|flag| flag.ignored)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn envelope(data_is_raw_body: bool) -> Envelope {
        let raw = r#"{"object":"Account","data":{"Name":"Ac\"me"}}"#;
        Envelope {
            id: "e1".into(),
            source: "crm".into(),
            event_type: Some("account.updated".into()),
            ignored: false,
            object: Some("Account".into()),
            object_id: None,
            version: Some("7".into()),
            signed_at: Some(5),
            received_at: Utc::now(),
            raw_body: raw.into(),
            data: if data_is_raw_body {
                serde_json::from_str(raw).unwrap()
            } else {
                json!({"Name": "x"})
            },
            data_is_raw_body,
        }
    }

    #[test]
    fn round_trips_with_and_without_separate_data() {
        for whole in [true, false] {
            let original = envelope(whole);
            let bytes = encode(&original);
            assert_eq!(decode(&bytes).unwrap(), original);
            assert_eq!(decode_key(&bytes).unwrap().id, "e1");
        }
        let ignored = Envelope {
            ignored: true,
            ..envelope(true)
        };
        assert_eq!(is_ignored(&encode(&ignored)), Some(true));
        assert_eq!(is_ignored(&encode(&envelope(false))), Some(false));
        assert_eq!(is_ignored(b"garbage"), None);
        let stored_once = encode(&envelope(true));
        assert_eq!(stored_once.windows(4).filter(|w| w == b"Ac\\\"").count(), 1);
    }

    #[test]
    fn garbage_does_not_decode() {
        assert!(decode(b"").is_none());
        assert!(decode(&[200, 0, 0, 0, b'{']).is_none());
    }
}
