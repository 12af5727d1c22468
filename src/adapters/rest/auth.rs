//! A REST connector's credentials, read from the environment at start. OAuth2
//! client-credentials tokens are fetched on first use, cached until shortly before they expire
//! (`expires_in`), and fetched again when the target answers 401 (Salesforce gives no
//! `expires_in`: its sessions end by inactivity).

use std::time::Duration;

use reqwest::RequestBuilder;
use serde_json::Value;
use tokio::sync::Mutex;
use tokio::time::Instant;

use super::super::connector::AuthSpec;
use super::super::{Failure, http};
use crate::adapters::Class;
use crate::config::SecretLookup;

/// A token this close to its expiry is not used any more.
const EXPIRY_MARGIN: Duration = Duration::from_secs(30);

pub enum Auth {
    None,
    Bearer(String),
    Basic(String, String),
    Header(String, String),
    OAuth2(OAuth2),
}

pub struct OAuth2 {
    token_url: String,
    form: Vec<(&'static str, String)>,
    cached: Mutex<Option<Token>>,
    client: reqwest::Client,
}

#[derive(Clone)]
struct Token {
    access: String,
    expires: Option<Instant>,
}

impl Auth {
    pub fn new(
        spec: Option<&AuthSpec>,
        base_url: &str,
        client: &reqwest::Client,
        secrets: &SecretLookup,
    ) -> Result<Auth, String> {
        let secret = |name: &str| {
            secrets(name)
                .filter(|value| !value.is_empty())
                .ok_or_else(|| format!("environment variable {name} is not set"))
        };
        Ok(match spec {
            None => Auth::None,
            Some(AuthSpec::BearerEnv(name)) => Auth::Bearer(secret(name)?),
            Some(AuthSpec::Basic {
                user_env,
                password_env,
            }) => Auth::Basic(secret(user_env)?, secret(password_env)?),
            Some(AuthSpec::Header {
                name,
                value_env,
                prefix,
            }) => Auth::Header(name.clone(), format!("{prefix}{}", secret(value_env)?)),
            Some(AuthSpec::Oauth2 {
                token_url,
                client_id_env,
                client_secret_env,
                scope,
            }) => {
                let mut form = vec![
                    ("grant_type", "client_credentials".to_owned()),
                    ("client_id", secret(client_id_env)?),
                    ("client_secret", secret(client_secret_env)?),
                ];
                if let Some(scope) = scope {
                    form.push(("scope", scope.clone()));
                }
                let token_url = match token_url.starts_with('/') {
                    true => format!("{base_url}{token_url}"),
                    false => token_url.clone(),
                };
                Auth::OAuth2(OAuth2 {
                    token_url,
                    form,
                    cached: Mutex::new(None),
                    client: client.clone(),
                })
            }
        })
    }

    /// Adds the credentials to `request`; the OAuth2 token used, so that a 401 can drop it.
    pub async fn apply(
        &self,
        request: RequestBuilder,
    ) -> Result<(RequestBuilder, Option<String>), Failure> {
        Ok(match self {
            Auth::None => (request, None),
            Auth::Bearer(token) => (request.bearer_auth(token), None),
            Auth::Basic(user, password) => (request.basic_auth(user, Some(password)), None),
            Auth::Header(name, value) => (request.header(name.as_str(), value.as_str()), None),
            Auth::OAuth2(oauth) => {
                let token = oauth.token().await?;
                (request.bearer_auth(&token), Some(token))
            }
        })
    }

    /// The target refused `token` (401): the next request fetches a new one.
    pub async fn refused(&self, token: &str) {
        if let Auth::OAuth2(oauth) = self {
            let mut cached = oauth.cached.lock().await;
            if cached.as_ref().is_some_and(|t| t.access == token) {
                *cached = None;
            }
        }
    }
}

impl OAuth2 {
    async fn token(&self) -> Result<String, Failure> {
        let mut cached = self.cached.lock().await;
        if let Some(token) = cached.as_ref()
            && token
                .expires
                .is_none_or(|at| Instant::now() + EXPIRY_MARGIN < at)
        {
            return Ok(token.access.clone());
        }
        let fresh = self.fetch().await?;
        *cached = Some(fresh.clone());
        Ok(fresh.access)
    }

    /// POSTs the client credentials to the token URL (form-encoded, RFC 6749 §4.4).
    async fn fetch(&self) -> Result<Token, Failure> {
        let summary = "POST token (client_credentials)";
        let body = self
            .form
            .iter()
            .map(|(key, value)| format!("{key}={}", super::encode(value)))
            .collect::<Vec<_>>()
            .join("&");
        let request = self
            .client
            .post(&self.token_url)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body);
        let (status, headers, body) = http::exchange(request, summary).await?;
        if !status.is_success() {
            // 400 invalid_client / 401: the credentials are wrong, not the data.
            let mut failure = http::failure(status, &headers, &body, summary.to_owned());
            if status.is_client_error() && status.as_u16() != 429 {
                failure.class = Class::FixConfig;
            }
            failure.message = format!("the token endpoint refused: {}", failure.message);
            return Err(failure);
        }
        let answer: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
        let access = answer["access_token"].as_str().ok_or_else(|| {
            Failure::new(
                Class::FixConfig,
                "the token endpoint answered without an access_token",
            )
        })?;
        let lifetime = match &answer["expires_in"] {
            Value::Number(n) => n.to_string().parse::<u64>().ok(),
            Value::String(s) => s.parse::<u64>().ok(),
            _ => None,
        };
        Ok(Token {
            access: access.to_owned(),
            expires: lifetime.map(|secs| Instant::now() + Duration::from_secs(secs)),
        })
    }
}
