//! The `[ingest]` table and the `[sources.*]` entries of the config: how webhooks are received,
//! which scheme signs each sender's requests, and how its events are typed. `config.rs` holds them
//! in `Config`; ingest reads them.

use std::collections::BTreeMap;

use anyhow::{Context, bail};
use serde::Deserialize;

use crate::config::SecretEnv;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IngestConfig {
    /// Largest accepted request body; larger ones get 413.
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: usize,
    /// How long an event id is remembered for dedupe (senders retry for up to 3 days).
    #[serde(default = "default_dedupe_window_secs")]
    pub dedupe_window_secs: u64,
    /// Default replay window for schemes with a timestamp, both into the past and the future.
    #[serde(default = "default_tolerance_secs")]
    pub tolerance_secs: u64,
    /// The externally visible base URL (`https://hooks.example.com`), used by schemes that sign
    /// the full request URI (HubSpot v3) when handoff runs behind a proxy.
    #[serde(default)]
    pub public_base_url: Option<String>,
}

/// One webhook sender.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    /// The signature scheme.
    pub preset: Preset,
    /// Environment variable(s) holding the secret(s). Several are all accepted (rotation).
    #[serde(default)]
    pub secret_env: SecretEnv,
    /// Explicit scheme parameters for `preset = "hmac"`.
    #[serde(default)]
    pub signature: Option<HmacParams>,
    /// Replay window for this source, overriding `ingest.tolerance_secs`.
    #[serde(default)]
    pub tolerance_secs: Option<u64>,
    /// Overrides `ingest.public_base_url` for this source.
    #[serde(default)]
    pub public_base_url: Option<String>,
    /// `salesforce_outbound`: the Salesforce org ids allowed to post.
    #[serde(default)]
    pub organization_ids: Vec<String>,
    /// Where the sender's event id is; defaults to the preset's header.
    #[serde(default)]
    pub event_id: Option<Locator>,
    /// JSON pointer to an array of events in one body (HubSpot sends up to 100 at once: `""`).
    #[serde(default)]
    pub batch: Option<String>,
    /// JSON pointer to the record id, unless an event rule says otherwise.
    #[serde(default)]
    pub object_id: Option<String>,
    /// JSON pointer to the record version (modified time or sequence), for ordering.
    #[serde(default)]
    pub version: Option<String>,
    /// How events get their type; the first rule whose `when` holds wins. An event that no rule
    /// matches is answered 200 and recorded as ignored.
    #[serde(default)]
    pub events: Vec<EventRule>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Preset {
    StandardWebhooks,
    Stripe,
    HubspotV3,
    Github,
    Shopify,
    Hmac,
    SalesforceOutbound,
}

/// Parameters of the generic HMAC scheme.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HmacParams {
    /// Header carrying the signature.
    pub header: String,
    /// Template of the signed bytes: `{body}`, `{timestamp}`, `{id}`, `{method}`, `{uri}` and
    /// literal text, e.g. `"{timestamp}.{body}"`.
    #[serde(default = "default_signed")]
    pub signed: String,
    #[serde(default)]
    pub encoding: Encoding,
    /// Text before the signature in the header, e.g. `sha256=`.
    #[serde(default)]
    pub prefix: String,
    /// Splits a header that carries several signatures.
    #[serde(default)]
    pub separator: Option<String>,
    #[serde(default)]
    pub key: KeyDecoding,
    /// Header carrying the signing time, if the scheme has one.
    #[serde(default)]
    pub timestamp_header: Option<String>,
    #[serde(default)]
    pub timestamp_unit: TimestampUnit,
    /// Header carrying the event id, used in `{id}` and for dedupe.
    #[serde(default)]
    pub id_header: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Encoding {
    #[default]
    Hex,
    Base64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyDecoding {
    /// The secret's UTF-8 bytes.
    #[default]
    Raw,
    /// The secret is base64.
    Base64,
    /// `whsec_` + base64 (Standard Webhooks).
    Whsec,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimestampUnit {
    #[default]
    Seconds,
    Milliseconds,
}

/// Where a value is: a request header or a JSON pointer into the body.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub enum Locator {
    Header(String),
    Pointer(String),
}

/// Gives matching events a type, such as `opportunity.won`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventRule {
    /// The event type, `object.verb` by convention.
    #[serde(rename = "type")]
    pub event_type: String,
    /// The CRM object, e.g. `Opportunity`.
    pub object: String,
    /// JSON pointer → expected value; all must hold. Empty matches every event.
    #[serde(default)]
    pub when: BTreeMap<String, toml::Value>,
    /// Overrides the source's `object_id` pointer.
    #[serde(default)]
    pub object_id: Option<String>,
    /// Overrides the source's `version` pointer.
    #[serde(default)]
    pub version: Option<String>,
}

fn default_max_body_bytes() -> usize {
    1024 * 1024
}
fn default_dedupe_window_secs() -> u64 {
    72 * 3600
}
fn default_tolerance_secs() -> u64 {
    300
}
fn default_signed() -> String {
    "{body}".to_owned()
}

impl Default for IngestConfig {
    fn default() -> Self {
        Self {
            max_body_bytes: default_max_body_bytes(),
            dedupe_window_secs: default_dedupe_window_secs(),
            tolerance_secs: default_tolerance_secs(),
            public_base_url: None,
        }
    }
}

impl SourceConfig {
    pub(crate) fn validate(&self) -> anyhow::Result<()> {
        let needs_secret = self.preset != Preset::SalesforceOutbound;
        if needs_secret && self.secret_env.names().is_empty() {
            bail!("secret_env is required for preset {:?}", self.preset);
        }
        match (self.preset, &self.signature) {
            (Preset::Hmac, None) => bail!("preset \"hmac\" needs a [signature] table"),
            (Preset::Hmac, Some(params)) => {
                crate::ingest::template::parse(&params.signed).context("signature.signed")?;
                let names = [
                    Some(&params.header),
                    params.timestamp_header.as_ref(),
                    params.id_header.as_ref(),
                ];
                for name in names.into_iter().flatten() {
                    check_header_name(name)?;
                }
            }
            (_, Some(_)) => bail!("[signature] is only for preset \"hmac\""),
            (_, None) => {}
        }
        if self.preset == Preset::SalesforceOutbound && self.organization_ids.is_empty() {
            bail!("salesforce_outbound needs organization_ids (the allow-list)");
        }
        let pointers = [&self.batch, &self.object_id, &self.version]
            .into_iter()
            .flatten()
            .chain(self.events.iter().flat_map(|rule| {
                rule.when
                    .keys()
                    .chain(rule.object_id.iter())
                    .chain(rule.version.iter())
            }));
        for pointer in pointers {
            check_pointer(pointer)?;
        }
        match &self.event_id {
            Some(Locator::Pointer(pointer)) => check_pointer(pointer)?,
            Some(Locator::Header(name)) => check_header_name(name)?,
            None => {}
        }
        if let Some(url) = &self.public_base_url {
            check_base_url(url)?;
        }
        Ok(())
    }
}

fn check_pointer(pointer: &str) -> anyhow::Result<()> {
    if !pointer.is_empty() && !pointer.starts_with('/') {
        bail!("{pointer:?} is not a JSON pointer: it must be empty or start with '/'");
    }
    Ok(())
}

fn check_header_name(name: &str) -> anyhow::Result<()> {
    if axum::http::HeaderName::from_bytes(name.as_bytes()).is_err() {
        bail!("{name:?} is not a valid HTTP header name");
    }
    Ok(())
}

fn check_base_url(url: &str) -> anyhow::Result<()> {
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        bail!("public_base_url {url:?} must start with http:// or https://");
    }
    Ok(())
}
