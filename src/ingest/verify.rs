//! One parameterised signature verifier for every scheme (see REFERENCE.md).
//!
//! A [`Scheme`] says where the signature and timestamp are, which bytes are signed, how the
//! signature is encoded and how the secret becomes a key; presets are just values of it
//! (`preset.rs`). Verification runs on the raw bytes, before any parsing, and compares in
//! constant time against every active key (rotation) and every signature the header carries.

use axum::http::{HeaderMap, HeaderName};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;
use thiserror::Error;

use super::template::Part;
use crate::ingest::settings::{Encoding, KeyDecoding, TimestampUnit};

type HmacSha256 = Hmac<Sha256>;

/// How a scheme signs, independent of any secret.
#[derive(Debug, Clone)]
pub struct Scheme {
    /// Header names tried in order; the first present carries the signature.
    pub signature_headers: Vec<HeaderName>,
    pub format: SignatureFormat,
    pub signed: Vec<Part>,
    pub encoding: Encoding,
    pub key: KeyDecoding,
    pub timestamp: Option<TimestampRule>,
    /// Header names tried in order for the event id (`{id}` and dedupe).
    pub id_headers: Vec<HeaderName>,
    /// HubSpot v3 signs the URI with some percent-escapes decoded.
    pub decode_uri: bool,
}

#[derive(Debug, Clone)]
pub enum SignatureFormat {
    /// `prefix` + encoded signature; with a separator, a list of them (any may match).
    List {
        prefix: String,
        separator: Option<String>,
    },
    /// Stripe's `t=<time>,v1=<sig>,v1=<sig>,v0=<ignored>`.
    KeyValue {
        timestamp_key: String,
        signature_key: String,
    },
}

#[derive(Debug, Clone)]
pub struct TimestampRule {
    /// Empty when the timestamp is inside the signature header (Stripe).
    pub headers: Vec<HeaderName>,
    pub unit: TimestampUnit,
    pub tolerance_past_secs: i64,
    pub tolerance_future_secs: i64,
}

/// The parts of a request a signature can cover.
#[derive(Debug, Clone, Copy)]
pub struct SignedRequest<'a> {
    pub headers: &'a HeaderMap,
    pub method: &'a str,
    /// The full URI as the sender called it (scheme, host, path and query).
    pub uri: &'a str,
    pub body: &'a [u8],
}

/// What verification proved: the sender's signing time and id, when the scheme has them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Verified {
    /// Unix seconds.
    pub timestamp: Option<i64>,
    pub id: Option<String>,
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum SignatureError {
    #[error("missing signature header {0}")]
    MissingSignature(String),
    #[error("missing header {0}, which the signature covers")]
    MissingHeader(String),
    #[error("malformed timestamp")]
    MalformedTimestamp,
    #[error("timestamp is {0} s away from now, outside the replay window")]
    OutsideWindow(i64),
    #[error("no signature matched")]
    NoMatch,
}

impl Scheme {
    /// Whether the request URI is part of the signed bytes (then it must be rebuilt).
    pub fn signs_uri(&self) -> bool {
        self.signed.contains(&Part::Uri)
    }
}

impl SignatureError {
    pub fn code(&self) -> &'static str {
        match self {
            SignatureError::MissingSignature(_) | SignatureError::MissingHeader(_) => {
                "missing_signature"
            }
            SignatureError::MalformedTimestamp | SignatureError::OutsideWindow(_) => {
                "timestamp_out_of_window"
            }
            SignatureError::NoMatch => "invalid_signature",
        }
    }
}

/// A scheme with its keys. Its `Debug` never shows the keys.
#[derive(Clone)]
pub struct Verifier {
    scheme: Scheme,
    /// One keyed MAC per active secret, cloned per request (the key schedule runs once).
    macs: Vec<HmacSha256>,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("scheme", &self.scheme)
            .field("keys", &self.macs.len())
            .finish()
    }
}

#[derive(Debug, Error)]
#[error("secret number {index} cannot be decoded as {decoding:?}")]
pub struct KeyError {
    index: usize,
    decoding: KeyDecoding,
}

impl Verifier {
    pub fn new(scheme: Scheme, secrets: &[String]) -> Result<Verifier, KeyError> {
        let macs = secrets
            .iter()
            .enumerate()
            .map(|(index, secret)| {
                let key = decode_key(secret, scheme.key).ok_or(KeyError {
                    index: index + 1,
                    decoding: scheme.key,
                })?;
                Ok(HmacSha256::new_from_slice(&key).expect("HMAC takes keys of any length"))
            })
            .collect::<Result<_, _>>()?;
        Ok(Verifier { scheme, macs })
    }

    pub fn scheme(&self) -> &Scheme {
        &self.scheme
    }

    /// Checks the request against every key; `now` is unix seconds.
    pub fn verify(&self, req: SignedRequest<'_>, now: i64) -> Result<Verified, SignatureError> {
        let scheme = &self.scheme;
        let header = first_header(req.headers, &scheme.signature_headers)
            .ok_or_else(|| SignatureError::MissingSignature(names(&scheme.signature_headers)))?;
        let (candidates, header_timestamp) = split_signatures(&scheme.format, header);

        let timestamp = match &scheme.timestamp {
            None => None,
            Some(rule) => {
                let text = match header_timestamp {
                    Some(text) => text,
                    None => first_header(req.headers, &rule.headers)
                        .ok_or_else(|| SignatureError::MissingHeader(names(&rule.headers)))?,
                };
                Some(check_window(text, rule, now)?)
            }
        };
        let id = first_header(req.headers, &scheme.id_headers).map(str::to_owned);

        let mut signed = Vec::with_capacity(req.body.len() + 128);
        for part in &scheme.signed {
            match part {
                Part::Literal(text) => signed.extend_from_slice(text.as_bytes()),
                Part::Body => signed.extend_from_slice(req.body),
                Part::Timestamp => signed.extend_from_slice(timestamp.unwrap_or_default().1),
                Part::Id => signed.extend_from_slice(
                    id.as_deref()
                        .ok_or_else(|| SignatureError::MissingHeader(names(&scheme.id_headers)))?
                        .as_bytes(),
                ),
                Part::Method => signed.extend_from_slice(req.method.as_bytes()),
                Part::Uri if scheme.decode_uri => {
                    signed.extend_from_slice(hubspot_decode_uri(req.uri).as_bytes())
                }
                Part::Uri => signed.extend_from_slice(req.uri.as_bytes()),
            }
        }

        let decoded: Vec<Vec<u8>> = candidates
            .iter()
            .filter_map(|c| decode_signature(c, scheme.encoding))
            .collect();
        for mac in &self.macs {
            let mut mac = mac.clone();
            mac.update(&signed);
            let expected = mac.finalize().into_bytes();
            if decoded
                .iter()
                .any(|candidate| bool::from(candidate.as_slice().ct_eq(expected.as_slice())))
            {
                return Ok(Verified {
                    timestamp: timestamp.map(|(secs, _)| secs),
                    id,
                });
            }
        }
        Err(SignatureError::NoMatch)
    }
}

/// The value of the first of `names` that the request has.
pub fn first_header<'h>(headers: &'h HeaderMap, names: &[HeaderName]) -> Option<&'h str> {
    names
        .iter()
        .find_map(|name| headers.get(name)?.to_str().ok())
}

fn names(list: &[HeaderName]) -> String {
    list.iter()
        .map(HeaderName::as_str)
        .collect::<Vec<_>>()
        .join(" or ")
}

/// The candidate signatures in a header, and the timestamp it carries (Stripe).
fn split_signatures<'h>(
    format: &SignatureFormat,
    header: &'h str,
) -> (Vec<&'h str>, Option<&'h str>) {
    match format {
        SignatureFormat::List { prefix, separator } => {
            let items: Vec<&str> = match separator {
                Some(sep) => header.split(sep.as_str()).collect(),
                None => vec![header],
            };
            let sigs = items
                .into_iter()
                .filter_map(|item| item.trim().strip_prefix(prefix.as_str()))
                .collect();
            (sigs, None)
        }
        SignatureFormat::KeyValue {
            timestamp_key,
            signature_key,
        } => {
            let mut sigs = Vec::new();
            let mut timestamp = None;
            for pair in header.split(',') {
                if let Some((key, value)) = pair.trim().split_once('=') {
                    if key == signature_key {
                        sigs.push(value);
                    } else if key == timestamp_key {
                        timestamp = Some(value);
                    }
                }
            }
            (sigs, timestamp)
        }
    }
}

/// Returns the timestamp in unix seconds, with its text (which is what gets signed).
fn check_window<'t>(
    text: &'t str,
    rule: &TimestampRule,
    now: i64,
) -> Result<(i64, &'t [u8]), SignatureError> {
    let raw: i64 = text
        .trim()
        .parse()
        .map_err(|_| SignatureError::MalformedTimestamp)?;
    let secs = match rule.unit {
        TimestampUnit::Seconds => raw,
        TimestampUnit::Milliseconds => raw.div_euclid(1000),
    };
    let age = now.saturating_sub(secs);
    if age > rule.tolerance_past_secs || -age > rule.tolerance_future_secs {
        return Err(SignatureError::OutsideWindow(age));
    }
    Ok((secs, text.as_bytes()))
}

fn decode_key(secret: &str, decoding: KeyDecoding) -> Option<Vec<u8>> {
    match decoding {
        KeyDecoding::Raw => Some(secret.as_bytes().to_vec()),
        KeyDecoding::Base64 => BASE64.decode(secret).ok(),
        KeyDecoding::Whsec => BASE64
            .decode(secret.strip_prefix("whsec_").unwrap_or(secret))
            .ok(),
    }
}

fn decode_signature(text: &str, encoding: Encoding) -> Option<Vec<u8>> {
    match encoding {
        Encoding::Hex => hex::decode(text).ok(),
        Encoding::Base64 => BASE64.decode(text).ok(),
    }
}

/// HubSpot decodes these escapes in the URI before signing (its v3 validation guide); the `?`
/// that starts the query is already literal.
fn hubspot_decode_uri(uri: &str) -> String {
    const ESCAPES: [(&str, &str); 12] = [
        ("%3A", ":"),
        ("%2F", "/"),
        ("%3F", "?"),
        ("%40", "@"),
        ("%21", "!"),
        ("%24", "$"),
        ("%27", "'"),
        ("%28", "("),
        ("%29", ")"),
        ("%2A", "*"),
        ("%2C", ","),
        ("%3B", ";"),
    ];
    if !uri.contains('%') {
        return uri.to_owned();
    }
    let mut out = uri.to_owned();
    for (escape, plain) in ESCAPES {
        out = out
            .replace(escape, plain)
            .replace(&escape.to_lowercase(), plain);
    }
    out
}

#[cfg(test)]
mod tests;
