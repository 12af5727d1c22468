//! Tryton's JSON-RPC as it answers (Tryton 8.2, see tests/tryton/): `POST /<db>/rpc/` with
//! `{"id", "method", "params"}` where the last param is the context; a session from
//! `common.db.login` sent as `Authorization: Session base64(login:uid:session)`; errors as
//! `{"error": [type, [message, description, domain]]}` with HTTP 200, or an HTTP 401 when the
//! session expired (logged in again once). Decimals travel as `{"__class__": "Decimal"}` objects,
//! never as JSON floats.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use base64::Engine as _;
use serde_json::{Value, json};
use tokio::sync::Mutex;

use crate::adapters::Class;
use crate::adapters::{Failure, cut, http};

pub struct Rpc {
    url: String,
    login: String,
    password: String,
    client: reqwest::Client,
    session: Mutex<Option<Session>>,
    next_id: AtomicU64,
}

#[derive(Clone)]
struct Session {
    header: String,
    context: Value,
}

impl Rpc {
    pub fn new(
        base_url: &str,
        database: &str,
        (login, password): (String, String),
        (connect, request): (Duration, Duration),
    ) -> Rpc {
        Rpc {
            url: format!("{}/{database}/rpc/", base_url.trim_end_matches('/')),
            login,
            password,
            client: http::client(connect, request),
            session: Mutex::new(None),
            next_id: AtomicU64::new(1),
        }
    }

    /// Calls `method` with `params` and the session's context appended.
    pub async fn call(&self, method: &str, params: Vec<Value>) -> Result<Value, Failure> {
        self.call_in(method, params, json!({})).await
    }

    /// Like [`Rpc::call`], with `extra` merged into the context (e.g. stock `locations`).
    pub async fn call_in(
        &self,
        method: &str,
        params: Vec<Value>,
        extra: Value,
    ) -> Result<Value, Failure> {
        let with = |mut session: Session| {
            if let (Some(context), Some(extra)) =
                (session.context.as_object_mut(), extra.as_object())
            {
                context.extend(extra.clone());
            }
            session
        };
        let session = with(self.session().await?);
        match self.post(method, &params, &session).await {
            Err(failure) if failure.message.starts_with("401") => {
                // The session expired (or the server restarted): log in again, once.
                *self.session.lock().await = None;
                let session = with(self.session().await?);
                self.post(method, &params, &session).await
            }
            other => other,
        }
    }

    /// The user's context (`company`, `language`…), logging in if needed.
    pub async fn context(&self) -> Result<Value, Failure> {
        Ok(self.session().await?.context)
    }

    async fn session(&self) -> Result<Session, Failure> {
        let mut held = self.session.lock().await;
        if let Some(session) = held.as_ref() {
            return Ok(session.clone());
        }
        let params = vec![
            json!(self.login),
            json!({ "password": self.password }),
            json!("en"),
        ];
        let answer = self
            .send("common.db.login", &params, None)
            .await
            .map_err(|mut f| {
                if f.message.starts_with("401") {
                    f.class = Class::FixConfig;
                    f.message = format!(
                        "Tryton refused the login of {:?} (check the password)",
                        self.login
                    );
                }
                f
            })?;
        let (Some(uid), Some(key)) = (answer.get(0), answer.get(1).and_then(Value::as_str)) else {
            return Err(Failure::new(
                Class::FixConfig,
                format!("unexpected login answer {answer}"),
            ));
        };
        let token = format!("{}:{uid}:{key}", self.login);
        let header = format!(
            "Session {}",
            base64::engine::general_purpose::STANDARD.encode(token)
        );
        let mut session = Session {
            header,
            context: json!({}),
        };
        let preferences = self
            .post("model.res.user.get_preferences", &[json!(true)], &session)
            .await?;
        session.context = json!({
            "company": preferences.get("company").cloned().unwrap_or(Value::Null),
            "language": preferences.get("language").cloned().unwrap_or(json!("en")),
        });
        *held = Some(session.clone());
        Ok(session)
    }

    async fn post(
        &self,
        method: &str,
        params: &[Value],
        session: &Session,
    ) -> Result<Value, Failure> {
        let mut params = params.to_vec();
        params.push(session.context.clone());
        self.send(method, &params, Some(&session.header)).await
    }

    async fn send(
        &self,
        method: &str,
        params: &[Value],
        auth: Option<&str>,
    ) -> Result<Value, Failure> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let summary = format!("POST {} {method}", self.url);
        let mut request = self
            .client
            .post(&self.url)
            .json(&json!({ "id": id, "method": method, "params": params }));
        if let Some(auth) = auth {
            request = request.header("Authorization", auth);
        }
        let (status, headers, body) = http::exchange(request, &summary).await?;
        if !status.is_success() {
            let mut failure = http::failure(status, &headers, &body, summary);
            failure.message = format!(
                "{} from Tryton {method}: {}",
                status.as_u16(),
                failure.message
            );
            return Err(failure);
        }
        let answer: Value = serde_json::from_str(&body).map_err(|_| {
            Failure::new(
                Class::Transient,
                format!(
                    "Tryton answered {method} with non-JSON: {}",
                    cut(&body, 200)
                ),
            )
        })?;
        if let Some(error) = answer.get("error").filter(|e| !e.is_null()) {
            return Err(error_failure(method, error, summary, &body));
        }
        Ok(answer.get("result").cloned().unwrap_or(Value::Null))
    }
}

/// A Tryton error: business errors (`UserError`, `UserWarning`, access) are the data's or the
/// configuration's to fix; a `ConcurrencyException` is worth another try.
fn error_failure(method: &str, error: &Value, request: String, body: &str) -> Failure {
    let kind = error.get(0).and_then(Value::as_str).unwrap_or("error");
    let message = error
        .get(1)
        .and_then(|detail| detail.get(0).and_then(Value::as_str).or(detail.as_str()))
        .unwrap_or(kind);
    let class = match kind {
        "UserError" | "UserWarning" => Class::FixData,
        "AccessError" | "LoginException" => Class::FixConfig,
        "ConcurrencyException" | "TooManyRequests" => Class::Transient,
        _ => Class::FixData,
    };
    Failure {
        class,
        message: format!("Tryton {method}: {kind}: {message}"),
        retry_after: None,
        request,
        response: cut(body, 2000),
        missing: None,
    }
}

/// A decimal as Tryton reads it (never a float).
pub fn decimal(text: &str) -> Value {
    json!({ "__class__": "Decimal", "decimal": text })
}

/// Plain text of a value Tryton sent: `Decimal` objects as their digits, datetimes as RFC 3339
/// (Tryton runs in UTC here), other values as they are.
pub fn plain(value: &Value) -> Value {
    match value.get("__class__").and_then(Value::as_str) {
        Some("Decimal") => value["decimal"].clone(),
        Some("datetime") => {
            let n = |k: &str| value[k].as_u64().unwrap_or(0);
            json!(format!(
                "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
                n("year"),
                n("month"),
                n("day"),
                n("hour"),
                n("minute"),
                n("second"),
                n("microsecond")
            ))
        }
        Some("date") => {
            let n = |k: &str| value[k].as_u64().unwrap_or(0);
            json!(format!(
                "{:04}-{:02}-{:02}",
                n("year"),
                n("month"),
                n("day")
            ))
        }
        _ => value.clone(),
    }
}

/// A Tryton datetime from RFC 3339 text written by [`plain`].
pub fn datetime(text: &str) -> Option<Value> {
    let at = chrono::DateTime::parse_from_rfc3339(text).ok()?.naive_utc();
    use chrono::{Datelike, Timelike};
    Some(json!({
        "__class__": "datetime", "year": at.year(), "month": at.month(), "day": at.day(),
        "hour": at.hour(), "minute": at.minute(), "second": at.second(),
        "microsecond": at.nanosecond() / 1000,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_classified_and_named() {
        let error = json!(["UserError", ["The code on party must be unique.", "", null]]);
        let failure = error_failure("model.party.party.create", &error, String::new(), "");
        assert_eq!(failure.class, Class::FixData);
        assert!(
            failure.message.contains("must be unique"),
            "{}",
            failure.message
        );
        let busy = error_failure(
            "m",
            &json!(["ConcurrencyException", ["Records were modified"]]),
            String::new(),
            "",
        );
        assert_eq!(busy.class, Class::Transient);
    }

    #[test]
    fn values_round_trip_without_floats() {
        assert_eq!(plain(&decimal("298.50")), json!("298.50"));
        let at = datetime("2026-11-23T07:39:10.861147Z").unwrap();
        assert_eq!(plain(&at), json!("2026-11-23T07:39:10.861147Z"));
    }
}
