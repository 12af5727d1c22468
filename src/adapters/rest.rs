//! A generic REST connector: every operation is a method and a path template from the
//! connector file; the body is the mapped document. Creating operations with a `find` look the
//! record up by its natural key first, so a retry after a lost answer finds what the first
//! attempt made; the idempotency header carries the job's key for targets that honour one.

use std::collections::BTreeMap;
use std::time::Duration;

use reqwest::Method;
use serde_json::Value;

use super::connector::{AuthSpec, OperationSpec};
use super::{Adapter, BoxFuture, Delivered, Delivery, Failure, http};
use crate::config::SecretLookup;
use crate::queue::Class;

pub struct Rest {
    base_url: String,
    auth: Auth,
    idempotency_header: Option<String>,
    operations: BTreeMap<String, OperationSpec>,
    client: reqwest::Client,
}

/// Credentials, resolved from the environment at start.
enum Auth {
    None,
    Bearer(String),
    Basic(String, String),
    Header(String, String),
}

impl Rest {
    pub fn new(
        base_url: String,
        auth: Option<AuthSpec>,
        idempotency_header: Option<String>,
        operations: BTreeMap<String, OperationSpec>,
        (connect, request): (Duration, Duration),
        secrets: &SecretLookup,
    ) -> Result<Rest, String> {
        let secret = |name: &str| {
            secrets(name)
                .filter(|value| !value.is_empty())
                .ok_or_else(|| format!("environment variable {name} is not set"))
        };
        let auth = match auth {
            None => Auth::None,
            Some(AuthSpec::BearerEnv(name)) => Auth::Bearer(secret(&name)?),
            Some(AuthSpec::Basic {
                user_env,
                password_env,
            }) => Auth::Basic(secret(&user_env)?, secret(&password_env)?),
            Some(AuthSpec::Header { name, value_env }) => Auth::Header(name, secret(&value_env)?),
        };
        for (name, operation) in &operations {
            Method::from_bytes(operation.method.as_bytes())
                .map_err(|_| format!("operation {name}: unknown method {:?}", operation.method))?;
        }
        Ok(Rest {
            base_url: base_url.trim_end_matches('/').to_owned(),
            auth,
            idempotency_header,
            operations,
            client: http::client(connect, request),
        })
    }

    fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        let builder = self
            .client
            .request(method, format!("{}{path}", self.base_url));
        match &self.auth {
            Auth::None => builder,
            Auth::Bearer(token) => builder.bearer_auth(token),
            Auth::Basic(user, password) => builder.basic_auth(user, Some(password)),
            Auth::Header(name, value) => builder.header(name.as_str(), value.as_str()),
        }
    }

    /// The id of the record `find` locates, if there is one.
    async fn find(
        &self,
        path: &str,
        pointer: &str,
        summary: &str,
    ) -> Result<Option<String>, Failure> {
        let (status, headers, body) =
            http::exchange(self.request(Method::GET, path), summary).await?;
        if status.as_u16() == 404 {
            return Ok(None);
        }
        if !status.is_success() {
            return Err(http::failure(status, &headers, &body, summary.to_owned()));
        }
        let found: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
        Ok(found.pointer(pointer).and_then(id_text))
    }

    async fn deliver(&self, delivery: Delivery<'_>) -> Result<Delivered, Failure> {
        let operation = self.operations.get(delivery.operation).ok_or_else(|| {
            Failure::new(
                Class::FixConfig,
                format!("the connector has no operation {:?}", delivery.operation),
            )
        })?;
        let method = Method::from_bytes(operation.method.as_bytes()).expect("checked at load");
        let path = fill(&operation.path, &delivery)?;
        let mut summary = format!("{method} {path}");
        if let Some(find) = &operation.find {
            let find_path = fill(&find.path, &delivery)?;
            let found = self
                .find(&find_path, &find.id, &format!("GET {find_path}"))
                .await?;
            if let Some(id) = found {
                return Ok(Delivered {
                    external_id: Some(id.clone()),
                    request: format!("GET {find_path}"),
                    response: format!("found existing record {id}; not created again"),
                });
            }
        }
        let mut request = self.request(method, &path).json(delivery.document);
        if let Some(header) = &self.idempotency_header {
            request = request.header(header.as_str(), delivery.idempotency_key);
            summary.push_str(&format!(" ({header}: {})", delivery.idempotency_key));
        }
        let (status, headers, body) = http::exchange(request, &summary).await?;
        if !status.is_success() {
            return Err(http::failure(status, &headers, &body, summary));
        }
        let answer: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
        let external_id = operation
            .id
            .as_deref()
            .and_then(|pointer| answer.pointer(pointer))
            .and_then(id_text);
        Ok(Delivered {
            external_id,
            request: summary,
            response: format!("{status} {}", super::cut(&body, 2000)),
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

    fn probe(&self) -> BoxFuture<'_, Result<String, Failure>> {
        Box::pin(async move {
            let response = self
                .request(Method::GET, "/")
                .send()
                .await
                .map_err(|error| http::error_failure(error, "GET /".into()))?;
            Ok(format!("GET / answered {}", response.status()))
        })
    }
}

/// Fills `{match}` and `{/pointer}` in a path template, URL-encoded.
fn fill(template: &str, delivery: &Delivery<'_>) -> Result<String, Failure> {
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

/// Percent-encodes everything but unreserved characters.
fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(byte as char)
            }
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
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
        };
        assert_eq!(
            fill("/o/{/id}?m={match}&n={/n}", &delivery).unwrap(),
            "/o/006%20A%2FB?m=a%26b&n=7"
        );
        let missing = fill("/o/{/nope}", &delivery).unwrap_err();
        assert_eq!(missing.class, Class::FixData);
    }
}
