//! `POST /hooks/{source}`: from raw request to durable journal entry.
//!
//! ```text
//! find source → check content type → read body (limit) → authenticate on the raw bytes
//!   → parse → split into events → type them (rules) → journal.append (dedupe, fsync) → 202
//! ```
//!
//! Ingest knows nothing of mappings or adapters; it only stores what an authenticated sender
//! posted. Events that no rule gives a type, or whose type no flow handles (the `Interest`
//! predicate the wiring passes in), are stored as ignored and answered 200 so the sender stops
//! retrying. Files: `verify.rs` (the one parameterised verifier), `preset.rs` (named schemes),
//! `template.rs` (signed-bytes templates), `event.rs` (envelopes and type rules),
//! `salesforce.rs` (SOAP outbound messages), `error.rs` (refusals → responses), `sign.rs`
//! (signing as a sender does: `handoff send`, and the check that signing and verifying agree).

pub mod error;
pub mod event;
pub mod preset;
pub mod salesforce;
pub mod settings;
pub mod sign;
pub mod template;
pub mod verify;

use std::collections::HashMap;
use std::sync::Arc;

use anyhow::Context;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use chrono::Utc;

use crate::config::{Config, Origin, SecretLookup};
use crate::envelope::Envelope;
use crate::ingest::settings::{Preset, SourceConfig};
use crate::journal::Events;
use error::IngestError;
use event::{IdSource, Typing};
use verify::{SignedRequest, Verifier};

/// How a source proves who sent a request.
#[derive(Debug)]
enum Auth {
    Signature(Verifier),
    /// Salesforce outbound messages carry no signature: an org id allow-list.
    SalesforceOrganizations(Vec<String>),
    /// The secret is missing (embedded defaults only): answer 503.
    Disabled,
}

#[derive(Debug)]
struct Source {
    name: String,
    auth: Auth,
    typing: Typing,
    base_url: Option<String>,
}

/// A request body whose sender is authenticated; the only thing events are made from.
struct Authenticated<'a> {
    body: &'a str,
    signed_at: Option<i64>,
}

/// Whether any flow handles events of this source and type (asked of the mappings in force;
/// ingest itself knows nothing of mappings).
pub type Interest = dyn Fn(&str, &str) -> bool + Send + Sync;

/// The ingest side of the service.
pub struct Ingest {
    sources: HashMap<String, Source>,
    interest: Arc<Interest>,
    journal: Arc<dyn Events>,
    max_body_bytes: usize,
    /// Ack latencies (shared with the engine's by `App::build`).
    pub metrics: Arc<crate::metrics::Metrics>,
}

impl Ingest {
    /// Compiles every source. With embedded defaults a missing secret disables its source and is
    /// returned as a warning; with a config file it is an error.
    pub fn new(
        config: &Config,
        origin: &Origin,
        secrets: &SecretLookup,
        journal: Arc<dyn Events>,
        interest: Arc<Interest>,
    ) -> anyhow::Result<(Ingest, Vec<String>)> {
        let mut sources = HashMap::new();
        let mut warnings = Vec::new();
        for (name, source) in &config.sources {
            let compiled = compile(name, source, config, origin, secrets, &mut warnings)
                .with_context(|| format!("sources.{name}"))?;
            sources.insert(name.clone(), compiled);
        }
        let ingest = Ingest {
            sources,
            interest,
            journal,
            max_body_bytes: config.ingest.max_body_bytes,
            metrics: Arc::default(),
        };
        Ok((ingest, warnings))
    }

    async fn receive(
        &self,
        name: &str,
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
        body: Body,
    ) -> Result<Response, IngestError> {
        let source = self
            .sources
            .get(name)
            .ok_or_else(|| IngestError::UnknownSource(name.to_owned()))?;
        if matches!(source.auth, Auth::Disabled) {
            return Err(IngestError::SourceDisabled(name.to_owned()));
        }
        let salesforce = matches!(source.auth, Auth::SalesforceOrganizations(_));
        check_content_type(headers, salesforce)?;
        let bytes = read_body(headers, body, self.max_body_bytes).await?;
        let text = std::str::from_utf8(&bytes)
            .map_err(|_| IngestError::MalformedBody("body is not UTF-8".into()))?;

        let envelopes = match &source.auth {
            Auth::Disabled => return Err(IngestError::SourceDisabled(name.to_owned())),
            Auth::Signature(verifier) => {
                let full_uri = match verifier.scheme().signs_uri() {
                    true => full_uri(source.base_url.as_deref(), headers, uri),
                    false => String::new(),
                };
                let request = SignedRequest {
                    headers,
                    method: method.as_str(),
                    uri: &full_uri,
                    body: &bytes,
                };
                let verified = verifier.verify(request, Utc::now().timestamp())?;
                let authenticated = Authenticated {
                    body: text,
                    signed_at: verified.timestamp,
                };
                json_events(source, authenticated, headers)?
            }
            Auth::SalesforceOrganizations(allowed) => {
                let message = salesforce::parse(text)?;
                if !allowed.contains(&message.organization_id) {
                    return Err(IngestError::OrganizationNotAllowed);
                }
                let redacted = salesforce::redact_session_id(text);
                let authenticated = Authenticated {
                    body: &redacted,
                    signed_at: None,
                };
                let events = message.notifications.into_iter().map(|(_, data)| data);
                envelopes(source, authenticated, headers, events)?
            }
        };

        let mut envelopes = envelopes;
        for envelope in &mut envelopes {
            if let Some(event_type) = &envelope.event_type
                && !(self.interest)(name, event_type)
            {
                envelope.ignored = true;
            }
        }
        let (count, ignored) = (envelopes.len(), envelopes.iter().all(Envelope::is_ignored));
        self.journal.append(envelopes).await?;
        tracing::debug!(source = name, events = count, ignored, "accepted");
        if salesforce {
            return Ok((
                [(header::CONTENT_TYPE, "text/xml; charset=utf-8")],
                salesforce::ACK,
            )
                .into_response());
        }
        let (status, word) = if ignored {
            (StatusCode::OK, "ignored")
        } else {
            (StatusCode::ACCEPTED, "accepted")
        };
        let body = format!(r#"{{"events":{count},"status":"{word}"}}"#);
        Ok((status, [(header::CONTENT_TYPE, "application/json")], body).into_response())
    }
}

/// The sources `serve` would refuse, and why (for `handoff check`: the same rules, so the two
/// always agree). An embedded default without its secret is disabled, not refused.
pub fn source_problems(
    config: &Config,
    origin: &Origin,
    secrets: &SecretLookup,
) -> Vec<(String, String)> {
    let mut problems = Vec::new();
    for (name, source) in &config.sources {
        let mut warnings = Vec::new();
        if let Err(error) = compile(name, source, config, origin, secrets, &mut warnings) {
            problems.push((name.clone(), format!("{error:#}")));
        }
    }
    problems
}

fn compile(
    name: &str,
    config: &SourceConfig,
    root: &Config,
    origin: &Origin,
    secrets: &SecretLookup,
    warnings: &mut Vec<String>,
) -> anyhow::Result<Source> {
    let tolerance = config.tolerance_secs.unwrap_or(root.ingest.tolerance_secs);
    let scheme = preset::scheme(config.preset, config.signature.as_ref(), tolerance)?;
    let preset_ids = scheme
        .as_ref()
        .map(|s| s.id_headers.clone())
        .unwrap_or_default();
    let mut typing = Typing::new(config, preset_ids).map_err(anyhow::Error::msg)?;
    let auth = match scheme {
        None => {
            if config.preset == Preset::SalesforceOutbound && config.event_id.is_none() {
                typing.id = IdSource::Pointer("/NotificationId".into());
            }
            Auth::SalesforceOrganizations(config.organization_ids.clone())
        }
        Some(scheme) => match config.secret_env.resolve(secrets) {
            Ok(secrets) => Auth::Signature(Verifier::new(scheme, &secrets)?),
            Err(missing) if *origin == Origin::Embedded => {
                warnings.push(format!("source {name} is disabled: {missing}"));
                Auth::Disabled
            }
            Err(missing) => return Err(missing),
        },
    };
    Ok(Source {
        name: name.to_owned(),
        auth,
        typing,
        base_url: config
            .public_base_url
            .clone()
            .or_else(|| root.ingest.public_base_url.clone())
            .map(|url| url.trim_end_matches('/').to_owned()),
    })
}

fn json_events(
    source: &Source,
    authenticated: Authenticated<'_>,
    headers: &HeaderMap,
) -> Result<Vec<Envelope>, IngestError> {
    let parsed = serde_json::from_str(authenticated.body)
        .map_err(|e| IngestError::MalformedBody(format!("invalid JSON: {e}")))?;
    let whole_body = source.typing.batch.is_none();
    let events = source.typing.split(parsed)?;
    let mut envelopes = envelopes(source, authenticated, headers, events.into_iter())?;
    for envelope in &mut envelopes {
        envelope.data_is_raw_body = whole_body;
    }
    Ok(envelopes)
}

fn envelopes(
    source: &Source,
    authenticated: Authenticated<'_>,
    headers: &HeaderMap,
    events: impl Iterator<Item = serde_json::Value>,
) -> Result<Vec<Envelope>, IngestError> {
    let received_at = Utc::now();
    events
        .enumerate()
        .map(|(index, data)| {
            source.typing.envelope(
                &source.name,
                data,
                index,
                headers,
                authenticated.body,
                authenticated.signed_at,
                received_at,
            )
        })
        .collect()
}

/// A header's value as text, if present and printable.
fn header_str(headers: &HeaderMap, name: impl axum::http::header::AsHeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn check_content_type(headers: &HeaderMap, xml: bool) -> Result<(), IngestError> {
    let value = header_str(headers, header::CONTENT_TYPE).unwrap_or("");
    let essence = value
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let ok = if xml {
        matches!(
            essence.as_str(),
            "text/xml" | "application/xml" | "application/soap+xml"
        )
    } else {
        essence == "application/json" || essence.ends_with("+json")
    };
    if ok {
        Ok(())
    } else {
        Err(IngestError::UnsupportedMediaType(value.to_owned()))
    }
}

async fn read_body(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
) -> Result<bytes::Bytes, IngestError> {
    let declared =
        header_str(headers, header::CONTENT_LENGTH).and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|len| len > limit) {
        return Err(IngestError::BodyTooLarge(limit));
    }
    axum::body::to_bytes(body, limit).await.map_err(|error| {
        let inner = error.into_inner();
        if inner
            .downcast_ref::<http_body_util::LengthLimitError>()
            .is_some()
        {
            IngestError::BodyTooLarge(limit)
        } else {
            IngestError::MalformedBody("the body could not be read".into())
        }
    })
}

/// The URI as the sender called it: the public base URL (behind a proxy) or the Host header.
fn full_uri(base_url: Option<&str>, headers: &HeaderMap, uri: &Uri) -> String {
    let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    match base_url {
        Some(base) => format!("{base}{path}"),
        None => {
            let host = header_str(headers, header::HOST).unwrap_or("localhost");
            let scheme = header_str(headers, "x-forwarded-proto").unwrap_or("http");
            format!("{scheme}://{host}{path}")
        }
    }
}

/// The handler of `POST /hooks/{source}`.
pub async fn receive(
    State(ingest): State<Arc<Ingest>>,
    Path(source): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let started = std::time::Instant::now();
    let response = match ingest.receive(&source, &method, &uri, &headers, body).await {
        Ok(response) => response,
        Err(error) => {
            match &error {
                IngestError::Store(inner) => {
                    tracing::error!(source, error = %inner, "event not stored; answered 503")
                }
                _ => tracing::warn!(source, code = error.code(), error = %error, "webhook refused"),
            }
            error.into_response()
        }
    };
    if ingest.sources.contains_key(&source) {
        let outcome = match response.status().as_u16() {
            200..=299 => "accepted",
            500..=599 => "unavailable",
            _ => "refused",
        };
        ingest.metrics.ack(&source, outcome, started.elapsed());
    }
    response
}
