//! A generic REST connector: every operation is a method and a path template from the
//! connector file; the body is the mapped document. Creating operations with a `find` look the
//! record up by its natural key first, so a retry after a lost answer finds what the first
//! attempt made (and update it in place when the file says how); the idempotency header carries
//! the job's key for targets that honour one.
//!
//! - `auth`   credentials, OAuth2 client-credentials tokens cached and refreshed
//! - `rules`  the connector's error rules (status and body pattern → class)
//! - `pace`   the connector's rate limit
//! - `list`   `list` operations: pages of records for reconciliation (paced by the same limit)

pub mod auth;
mod list;
pub mod pace;
pub mod rules;

use std::collections::BTreeMap;
use std::time::Duration;

use reqwest::header::{HeaderMap, LOCATION};
use reqwest::{Method, StatusCode};
use serde_json::Value;
use sha2::{Digest, Sha256};

use self::auth::Auth;
use self::pace::Pace;
use self::rules::ErrorRule;
use super::connector::{ConnectorSpec, IdempotencyFormat, OperationSpec};
use super::{Adapter, BoxFuture, Delivered, Delivery, Failure, Listing, http};
use crate::adapters::Class;
use crate::config::SecretLookup;

pub struct Rest {
    base_url: String,
    auth: Auth,
    idempotency_header: Option<String>,
    idempotency_format: IdempotencyFormat,
    operations: BTreeMap<String, OperationSpec>,
    rules: Vec<ErrorRule>,
    pace: Option<Pace>,
    probe_path: String,
    client: reqwest::Client,
}

/// One answer: status, headers, body.
type Answer = (StatusCode, HeaderMap, String);

impl Rest {
    pub fn new(
        base_url: String,
        spec: &ConnectorSpec,
        rules: Vec<ErrorRule>,
        (connect, request): (Duration, Duration),
        secrets: &SecretLookup,
    ) -> Result<Rest, String> {
        let base_url = base_url.trim_end_matches('/').to_owned();
        let client = http::client(connect, request);
        let auth = Auth::new(spec.auth.as_ref(), &base_url, &client, secrets)?;
        for (name, operation) in &spec.operations {
            let update = operation.find.as_ref().and_then(|f| f.update.as_ref());
            for method in std::iter::once(&operation.method).chain(update.map(|u| &u.method)) {
                Method::from_bytes(method.as_bytes())
                    .map_err(|_| format!("operation {name}: unknown method {method:?}"))?;
            }
        }
        let pace = match &spec.rate_limit {
            Some(limit) if !limit.per_second.is_finite() || limit.per_second <= 0.0 => {
                return Err("rate_limit.per_second must be above 0".into());
            }
            Some(limit) => Some(Pace::new(limit.per_second, limit.burst.max(1))),
            None => None,
        };
        Ok(Rest {
            base_url,
            auth,
            idempotency_header: spec.idempotency_header.clone(),
            idempotency_format: spec.idempotency_format,
            operations: spec.operations.clone(),
            rules,
            pace,
            probe_path: spec.probe_path.clone().unwrap_or_else(|| "/".into()),
            client,
        })
    }

    /// Sends one request (waiting for the rate limit, with credentials); a 401 to an OAuth2
    /// token fetches a new token and sends once more.
    async fn call(
        &self,
        method: &Method,
        path: &str,
        body: Option<&Value>,
        headers: &[(&str, &str)],
        summary: &str,
    ) -> Result<Answer, Failure> {
        let mut retried = false;
        loop {
            if let Some(pace) = &self.pace {
                pace.wait().await;
            }
            let mut request = self
                .client
                .request(method.clone(), format!("{}{path}", self.base_url));
            if let Some(body) = body {
                request = request.json(body);
            }
            for (name, value) in headers {
                request = request.header(*name, *value);
            }
            let (request, token) = self.auth.apply(request).await?;
            let answer = http::exchange(request, summary).await?;
            match token {
                Some(token) if answer.0 == StatusCode::UNAUTHORIZED && !retried => {
                    self.auth.refused(&token).await;
                    retried = true;
                }
                _ => return Ok(answer),
            }
        }
    }

    /// The id of the record `find` locates, if there is one.
    async fn find(&self, path: &str, pointer: &str) -> Result<Option<String>, Failure> {
        let summary = format!("GET {path}");
        let (status, headers, body) = self.call(&Method::GET, path, None, &[], &summary).await?;
        if status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !status.is_success() {
            return Err(self.failure(status, &headers, &body, summary));
        }
        let found: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
        Ok(found.pointer(pointer).and_then(id_text))
    }

    /// A non-2xx answer as a failure: the connector's error rules first, then the status.
    fn failure(
        &self,
        status: StatusCode,
        headers: &HeaderMap,
        body: &str,
        request: String,
    ) -> Failure {
        let mut failure = http::failure(status, headers, body, request);
        if let Some(rule) = rules::first_match(&self.rules, status, body)
            && let Some(class) = rule.verdict.class()
        {
            failure.class = class;
            failure.retry_after = failure.retry_after.or(rule.retry_after);
        }
        failure
    }

    fn is_done(&self, status: StatusCode, body: &str) -> bool {
        rules::first_match(&self.rules, status, body)
            .is_some_and(|rule| rule.verdict == rules::Verdict::Done)
    }

    async fn deliver(&self, delivery: Delivery<'_>) -> Result<Delivered, Failure> {
        let operation = self.operations.get(delivery.operation).ok_or_else(|| {
            Failure::new(
                Class::FixConfig,
                format!("the connector has no operation {:?}", delivery.operation),
            )
        })?;
        let body = without(delivery.document, &operation.omit);
        if let Some(find) = &operation.find {
            let find_path = fill(&find.path, &delivery, None)?;
            if let Some(id) = self.find(&find_path, &find.id).await? {
                return match &find.update {
                    None => Ok(Delivered {
                        external_id: Some(id.clone()),
                        request: format!("GET {find_path}"),
                        response: format!("found existing record {id}; not created again"),
                    }),
                    Some(update) => {
                        let method = Method::from_bytes(update.method.as_bytes()).expect("checked");
                        let path = fill(&update.path, &delivery, Some(&id))?;
                        let summary = format!("{method} {path}");
                        let body = without(&body, &update.omit);
                        let (status, headers, text) = self
                            .call(&method, &path, Some(&body), &[], &summary)
                            .await?;
                        if !status.is_success() {
                            return Err(self.failure(status, &headers, &text, summary));
                        }
                        Ok(Delivered {
                            external_id: Some(id),
                            request: summary,
                            response: format!("{status} {}", super::cut(&text, 2000)),
                        })
                    }
                };
            }
        }
        let method = Method::from_bytes(operation.method.as_bytes()).expect("checked at load");
        let path = fill(&operation.path, &delivery, None)?;
        let mut summary = format!("{method} {path}");
        let key = match self.idempotency_format {
            IdempotencyFormat::Text => delivery.idempotency_key.to_owned(),
            IdempotencyFormat::Uuid => uuid_from(delivery.idempotency_key),
        };
        let mut headers = Vec::new();
        if let Some(header) = &self.idempotency_header {
            headers.push((header.as_str(), key.as_str()));
            summary.push_str(&format!(" ({header}: {key})"));
        }
        let (status, answer_headers, text) = self
            .call(&method, &path, Some(&body), &headers, &summary)
            .await?;
        if !status.is_success() {
            if self.is_done(status, &text) {
                return self
                    .already_done(operation, &delivery, summary, status, &text)
                    .await;
            }
            return Err(self.failure(status, &answer_headers, &text, summary));
        }
        let external_id = match operation.id.as_deref() {
            Some("location") => answer_headers
                .get(LOCATION)
                .and_then(|value| value.to_str().ok())
                .and_then(|location| location.trim_end_matches('/').rsplit('/').next())
                .map(str::to_owned),
            Some(pointer) => serde_json::from_str::<Value>(&text)
                .ok()
                .and_then(|answer| answer.pointer(pointer).and_then(id_text)),
            None => None,
        };
        Ok(Delivered {
            external_id,
            request: summary,
            response: format!("{status} {}", super::cut(&text, 2000)),
        })
    }

    /// The target says an earlier attempt took effect (an error rule with `class: done`):
    /// delivered, with the record's id when the operation can find it.
    async fn already_done(
        &self,
        operation: &OperationSpec,
        delivery: &Delivery<'_>,
        summary: String,
        status: StatusCode,
        text: &str,
    ) -> Result<Delivered, Failure> {
        let external_id = match &operation.find {
            Some(find) => {
                let path = fill(&find.path, delivery, None)?;
                self.find(&path, &find.id).await?
            }
            None => None,
        };
        Ok(Delivered {
            external_id,
            request: summary,
            response: format!(
                "{status} {} (an earlier attempt took effect)",
                super::cut(text, 2000)
            ),
        })
    }
}

impl Adapter for Rest {
    fn kind(&self) -> &'static str {
        "rest"
    }

    fn send<'a>(&'a self, delivery: Delivery<'a>) -> BoxFuture<'a, Result<Delivered, Failure>> {
        Box::pin(self.deliver(delivery))
    }

    fn updates_found(&self, operation: &str) -> bool {
        self.operations
            .get(operation)
            .and_then(|op| op.find.as_ref())
            .is_none_or(|find| find.update.is_some())
    }

    fn list<'a>(
        &'a self,
        operation: &'a str,
        page: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Listing, Failure>> {
        Box::pin(self.list_page(operation, page))
    }

    fn lists(&self, operation: &str) -> bool {
        self.operations
            .get(operation)
            .is_some_and(|op| op.list.is_some())
    }

    fn probe(&self) -> BoxFuture<'_, Result<String, Failure>> {
        Box::pin(async move {
            let summary = format!("GET {}", self.probe_path);
            let (status, headers, body) = self
                .call(&Method::GET, &self.probe_path, None, &[], &summary)
                .await?;
            if status.is_server_error() || matches!(status.as_u16(), 401 | 403 | 429) {
                return Err(self.failure(status, &headers, &body, summary));
            }
            Ok(format!("{summary} answered {status}"))
        })
    }
}

/// The document without the `omit` fields.
fn without(document: &Value, omit: &[String]) -> Value {
    match document {
        Value::Object(fields) if !omit.is_empty() => Value::Object(
            fields
                .iter()
                .filter(|(name, _)| !omit.contains(name))
                .map(|(name, value)| (name.clone(), value.clone()))
                .collect(),
        ),
        _ => document.clone(),
    }
}

/// A UUID (version 8, RFC 9562) made from the SHA-256 of `key`: the same key gives the same UUID.
fn uuid_from(key: &str) -> String {
    let mut bytes: [u8; 16] = Sha256::digest(key.as_bytes())[..16].try_into().expect("16");
    bytes[6] = (bytes[6] & 0x0f) | 0x80;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex = hex::encode(bytes);
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

/// Fills `{match}`, `{id}` (a found record's id) and `{/pointer}` in a path template,
/// URL-encoded.
fn fill(template: &str, delivery: &Delivery<'_>, id: Option<&str>) -> Result<String, Failure> {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let close = rest[open..]
            .find('}')
            .map(|n| open + n)
            .unwrap_or(rest.len() - 1);
        let name = &rest[open + 1..close];
        let value = match name {
            "match" => delivery.match_key.map(str::to_owned),
            "id" => id.map(str::to_owned),
            pointer => delivery.document.pointer(pointer).and_then(id_text),
        };
        let value = value.ok_or_else(|| {
            Failure::new(
                Class::FixData,
                format!("the path {template:?} needs {{{name}}}, which the document does not have"),
            )
        })?;
        out.push_str(&encode(&value));
        rest = &rest[close + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

fn id_text(value: &Value) -> Option<String> {
    match value {
        Value::String(text) => Some(text.clone()),
        Value::Number(number) => Some(number.to_string()),
        _ => None,
    }
}

/// Everything but RFC 3986's unreserved characters (`A-Z a-z 0-9 - _ . ~`) is escaped.
const RESERVED: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// Percent-encodes everything but unreserved characters (a path segment or a query value).
pub fn encode(text: &str) -> String {
    percent_encoding::utf8_percent_encode(text, RESERVED).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_filled_and_encoded() {
        let document = serde_json::json!({"id": "006 A/B", "n": 7});
        let delivery = Delivery {
            operation: "x",
            document: &document,
            idempotency_key: "k",
            match_key: Some("a&b"),
            in_doubt: false,
            accept_amounts: false,
        };
        assert_eq!(
            fill("/o/{/id}?m={match}&n={/n}", &delivery, None).unwrap(),
            "/o/006%20A%2FB?m=a%26b&n=7"
        );
        assert_eq!(fill("/o/{id}", &delivery, Some("9")).unwrap(), "/o/9");
        let missing = fill("/o/{/nope}", &delivery, None).unwrap_err();
        assert_eq!(missing.class, Class::FixData);
    }

    #[test]
    fn the_same_key_gives_the_same_uuid() {
        let a = uuid_from("job-1:v3");
        assert_eq!(a, uuid_from("job-1:v3"));
        assert_ne!(a, uuid_from("job-1:v4"));
        let parts: Vec<&str> = a.split('-').collect();
        assert_eq!(
            parts.iter().map(|p| p.len()).collect::<Vec<_>>(),
            [8, 4, 4, 4, 12]
        );
        assert!(parts[2].starts_with('8'), "{a}");
        assert!(matches!(&parts[3][..1], "8" | "9" | "a" | "b"), "{a}");
    }

    #[test]
    fn omitted_fields_are_not_sent() {
        let document = serde_json::json!({"id": "1", "properties": {"a": 1}});
        assert_eq!(
            without(&document, &["id".into()]),
            serde_json::json!({"properties": {"a": 1}})
        );
    }
}
