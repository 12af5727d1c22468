//! The named signature presets, each a value of the one parameterised [`Scheme`].
//!
//! Facts per scheme are in REFERENCE.md (headers, signed bytes, encodings, key handling, windows).

use axum::http::HeaderName;

use super::template::{self, Part};
use super::verify::{Scheme, SignatureFormat, TimestampRule};
use crate::ingest::settings::{Encoding, HmacParams, KeyDecoding, Preset, TimestampUnit};

fn headers(names: &[&str]) -> Vec<HeaderName> {
    names
        .iter()
        .map(|name| HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes()))
        .collect::<Result<_, _>>()
        .expect("preset header names are valid")
}

fn window(
    headers: Vec<HeaderName>,
    unit: TimestampUnit,
    tolerance_secs: u64,
) -> Option<TimestampRule> {
    let tolerance = i64::try_from(tolerance_secs).unwrap_or(i64::MAX);
    Some(TimestampRule {
        headers,
        unit,
        tolerance_past_secs: tolerance,
        tolerance_future_secs: tolerance,
    })
}

fn single(prefix: &str) -> SignatureFormat {
    SignatureFormat::List {
        prefix: prefix.to_owned(),
        separator: None,
    }
}

/// The scheme of a preset; `None` for `salesforce_outbound`, which has no signature.
pub fn scheme(
    preset: Preset,
    params: Option<&HmacParams>,
    tolerance_secs: u64,
) -> Result<Option<Scheme>, template::TemplateError> {
    let scheme = match preset {
        Preset::StandardWebhooks => Scheme {
            signature_headers: headers(&["webhook-signature", "svix-signature"]),
            format: SignatureFormat::List {
                prefix: "v1,".to_owned(),
                separator: Some(" ".to_owned()),
            },
            signed: vec![
                Part::Id,
                Part::Literal(".".into()),
                Part::Timestamp,
                Part::Literal(".".into()),
                Part::Body,
            ],
            encoding: Encoding::Base64,
            key: KeyDecoding::Whsec,
            timestamp: window(
                headers(&["webhook-timestamp", "svix-timestamp"]),
                TimestampUnit::Seconds,
                tolerance_secs,
            ),
            id_headers: headers(&["webhook-id", "svix-id"]),
            decode_uri: false,
        },
        Preset::Stripe => Scheme {
            signature_headers: headers(&["stripe-signature"]),
            format: SignatureFormat::KeyValue {
                timestamp_key: "t".to_owned(),
                signature_key: "v1".to_owned(),
            },
            signed: vec![Part::Timestamp, Part::Literal(".".into()), Part::Body],
            encoding: Encoding::Hex,
            // Stripe keys with the whole `whsec_…` string, not decoded.
            key: KeyDecoding::Raw,
            timestamp: window(vec![], TimestampUnit::Seconds, tolerance_secs),
            id_headers: vec![],
            decode_uri: false,
        },
        Preset::HubspotV3 => Scheme {
            signature_headers: headers(&["x-hubspot-signature-v3"]),
            format: single(""),
            signed: vec![Part::Method, Part::Uri, Part::Body, Part::Timestamp],
            encoding: Encoding::Base64,
            key: KeyDecoding::Raw,
            timestamp: window(
                headers(&["x-hubspot-request-timestamp"]),
                TimestampUnit::Milliseconds,
                tolerance_secs,
            ),
            id_headers: vec![],
            decode_uri: true,
        },
        Preset::Github => Scheme {
            signature_headers: headers(&["x-hub-signature-256"]),
            format: single("sha256="),
            signed: vec![Part::Body],
            encoding: Encoding::Hex,
            key: KeyDecoding::Raw,
            timestamp: None,
            id_headers: headers(&["x-github-delivery"]),
            decode_uri: false,
        },
        Preset::Shopify => Scheme {
            signature_headers: headers(&["x-shopify-hmac-sha256"]),
            format: single(""),
            signed: vec![Part::Body],
            encoding: Encoding::Base64,
            key: KeyDecoding::Raw,
            timestamp: None,
            id_headers: headers(&["x-shopify-webhook-id"]),
            decode_uri: false,
        },
        Preset::Hmac => {
            let params = params.expect("config validation requires [signature] for hmac");
            Scheme {
                signature_headers: headers(&[params.header.as_str()]),
                format: SignatureFormat::List {
                    prefix: params.prefix.clone(),
                    separator: params.separator.clone(),
                },
                signed: template::parse(&params.signed)?,
                encoding: params.encoding,
                key: params.key,
                timestamp: params.timestamp_header.as_deref().and_then(|header| {
                    window(headers(&[header]), params.timestamp_unit, tolerance_secs)
                }),
                id_headers: params
                    .id_header
                    .as_deref()
                    .map(|h| headers(&[h]))
                    .unwrap_or_default(),
                decode_uri: false,
            }
        }
        Preset::SalesforceOutbound => return Ok(None),
    };
    Ok(Some(scheme))
}
