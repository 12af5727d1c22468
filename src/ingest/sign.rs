//! Signing a request the way a sender does, with the same [`Scheme`] that verifies it: what
//! `handoff send` uses to post an event file to a running handoff (and what tests use to
//! check that every preset's signing and verification agree).

use axum::http::HeaderName;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::template::Part;
use super::verify::{Scheme, SignatureFormat};
use crate::ingest::settings::{Encoding, KeyDecoding, TimestampUnit};

/// What the signature covers besides the body.
pub struct Sending<'a> {
    pub id: &'a str,
    /// Unix seconds.
    pub now: i64,
    pub method: &'a str,
    /// The full URI as the receiver sees it (for schemes that sign it).
    pub uri: &'a str,
    pub body: &'a [u8],
}

impl Scheme {
    /// The headers that sign `request` with `secret`: signature, timestamp and id.
    pub fn sign(
        &self,
        secret: &str,
        request: &Sending<'_>,
    ) -> Result<Vec<(HeaderName, String)>, String> {
        let key = match self.key {
            KeyDecoding::Raw => secret.as_bytes().to_vec(),
            KeyDecoding::Base64 => BASE64
                .decode(secret)
                .map_err(|_| "the secret is not base64".to_owned())?,
            KeyDecoding::Whsec => BASE64
                .decode(secret.strip_prefix("whsec_").unwrap_or(secret))
                .map_err(|_| "the secret is not whsec_ + base64".to_owned())?,
        };
        let timestamp = match self.timestamp.as_ref().map(|rule| rule.unit) {
            Some(TimestampUnit::Milliseconds) => (request.now * 1000).to_string(),
            _ => request.now.to_string(),
        };
        let mut signed = Vec::with_capacity(request.body.len() + 128);
        for part in &self.signed {
            match part {
                Part::Literal(text) => signed.extend_from_slice(text.as_bytes()),
                Part::Body => signed.extend_from_slice(request.body),
                Part::Timestamp => signed.extend_from_slice(timestamp.as_bytes()),
                Part::Id => signed.extend_from_slice(request.id.as_bytes()),
                Part::Method => signed.extend_from_slice(request.method.as_bytes()),
                Part::Uri => signed.extend_from_slice(request.uri.as_bytes()),
            }
        }
        let mut mac = Hmac::<Sha256>::new_from_slice(&key).map_err(|e| e.to_string())?;
        mac.update(&signed);
        let digest = mac.finalize().into_bytes();
        let signature = match self.encoding {
            Encoding::Hex => hex::encode(digest),
            Encoding::Base64 => BASE64.encode(digest),
        };
        let value = match &self.format {
            SignatureFormat::List { prefix, .. } => format!("{prefix}{signature}"),
            SignatureFormat::KeyValue {
                timestamp_key,
                signature_key,
            } => format!("{timestamp_key}={timestamp},{signature_key}={signature}"),
        };
        let mut headers = Vec::new();
        if let Some(name) = self.signature_headers.first() {
            headers.push((name.clone(), value));
        }
        if let Some(name) = self
            .timestamp
            .as_ref()
            .and_then(|rule| rule.headers.first())
        {
            headers.push((name.clone(), timestamp));
        }
        if let Some(name) = self.id_headers.first() {
            headers.push((name.clone(), request.id.to_owned()));
        }
        Ok(headers)
    }
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderMap;

    use super::*;
    use crate::ingest::preset::scheme;
    use crate::ingest::settings::Preset;
    use crate::ingest::verify::{SignedRequest, Verifier};

    #[test]
    fn every_preset_verifies_what_it_signs() {
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        for preset in [
            Preset::StandardWebhooks,
            Preset::Stripe,
            Preset::HubspotV3,
            Preset::Github,
            Preset::Shopify,
        ] {
            let scheme = scheme(preset, None, 300).unwrap().unwrap();
            let body = br#"{"type":"account.updated","data":{"Id":"001A"}}"#;
            let sending = Sending {
                id: "evt_1",
                now: 1_764_000_000,
                method: "POST",
                uri: "https://hooks.example.com/hooks/x",
                body,
            };
            let signed = scheme.sign(secret, &sending).unwrap();
            let mut headers = HeaderMap::new();
            for (name, value) in signed {
                headers.insert(name, value.parse().unwrap());
            }
            let verifier = Verifier::new(scheme, &[secret.to_owned()]).unwrap();
            let request = SignedRequest {
                headers: &headers,
                method: "POST",
                uri: "https://hooks.example.com/hooks/x",
                body,
            };
            assert!(
                verifier.verify(request, 1_764_000_010).is_ok(),
                "{preset:?}: {headers:?}"
            );
            let mut tampered = body.to_vec();
            tampered[3] = b'X';
            let request = SignedRequest {
                body: &tampered,
                ..request
            };
            assert!(
                verifier.verify(request, 1_764_000_010).is_err(),
                "{preset:?}"
            );
        }
    }
}
