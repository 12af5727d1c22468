//! Who is asking: a bearer token, a session cookie from the login form, or nobody. Sessions live
//! in memory (a restart logs everyone out); passwords are checked against Argon2 hashes; every
//! state-changing request made with a cookie must carry the session's CSRF token (form field
//! `csrf` or header `X-CSRF-Token`); viewers may not change anything.
//!
//! With no users and no tokens configured handoff is open (a local trial): everyone is an
//! operator, and the pages still carry a CSRF token (one per process) so that another site
//! cannot make a browser act.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use argon2::password_hash::rand_core::{OsRng, RngCore};
use argon2::{Argon2, PasswordHash, PasswordVerifier};
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use subtle::ConstantTimeEq;

use crate::config::{DashboardConfig, Role, SecretLookup};

pub const COOKIE: &str = "handoff_session";

/// The person or script behind a request.
#[derive(Debug, Clone)]
pub struct Who {
    pub name: String,
    pub role: Role,
    /// The token forms must send back.
    pub csrf: String,
    /// Authenticated by a bearer token (no CSRF check: browsers do not send it by themselves).
    pub by_token: bool,
}

impl Who {
    pub fn may_act(&self) -> bool {
        self.role == Role::Operator
    }
}

struct Session {
    who: Who,
    expires: Instant,
}

pub struct Auth {
    users: Vec<(String, String, Role)>,
    tokens: Vec<(String, String, Role)>,
    secure_cookies: bool,
    lifetime: Duration,
    sessions: Mutex<HashMap<String, Session>>,
    /// The CSRF token of open mode.
    open_csrf: String,
    /// Wrong passwords per login name and client address.
    pub throttle: super::throttle::Throttle,
}

/// 32 random bytes from the OS, hex.
pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    OsRng.fill_bytes(&mut bytes);
    hex::encode(bytes)
}

fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

impl Auth {
    pub fn new(config: &DashboardConfig, secrets: &SecretLookup) -> anyhow::Result<Auth> {
        for user in &config.users {
            PasswordHash::new(&user.password_hash).map_err(|_| {
                anyhow::anyhow!(
                    "dashboard user {:?}: password_hash is not an Argon2 hash (make one with `handoff hash-password`)",
                    user.name
                )
            })?;
        }
        let mut tokens = Vec::new();
        for token in &config.tokens {
            let value = secrets(&token.token_env)
                .filter(|v| v.len() >= 16)
                .ok_or_else(|| {
                    anyhow::anyhow!(
                        "dashboard token {:?}: environment variable {} is unset or shorter than 16 characters",
                        token.name,
                        token.token_env
                    )
                })?;
            tokens.push((token.name.clone(), value, token.role));
        }
        Ok(Auth {
            users: config
                .users
                .iter()
                .map(|u| (u.name.clone(), u.password_hash.clone(), u.role))
                .collect(),
            tokens,
            secure_cookies: config.secure_cookies,
            lifetime: Duration::from_secs(config.session_hours.max(1) * 3600),
            sessions: Mutex::new(HashMap::new()),
            open_csrf: random_token(),
            throttle: Default::default(),
        })
    }

    /// No users and no tokens: everyone is an operator.
    pub fn is_open(&self) -> bool {
        self.users.is_empty() && self.tokens.is_empty()
    }

    /// Checks a password; on success a new session id and who it is.
    pub fn login(&self, name: &str, password: &str) -> Option<(String, Who)> {
        let (name, hash, role) = self.users.iter().find(|(n, _, _)| n == name)?;
        let parsed = PasswordHash::new(hash).ok()?;
        Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .ok()?;
        let who = Who {
            name: name.clone(),
            role: *role,
            csrf: random_token(),
            by_token: false,
        };
        let id = random_token();
        let mut sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        sessions.retain(|_, s| s.expires > now);
        sessions.insert(
            id.clone(),
            Session {
                who: who.clone(),
                expires: now + self.lifetime,
            },
        );
        Some((id, who))
    }

    pub fn logout(&self, headers: &HeaderMap) {
        if let Some(id) = cookie(headers, COOKIE) {
            let mut sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
            sessions.remove(&id);
        }
    }

    /// The `Set-Cookie` value for a session (HttpOnly, SameSite=Strict, Secure when configured).
    pub fn cookie(&self, id: &str) -> String {
        let lifetime = cookie::time::Duration::seconds(
            i64::try_from(self.lifetime.as_secs()).unwrap_or(i64::MAX),
        );
        cookie::Cookie::build((COOKIE, id.to_owned()))
            .path("/")
            .http_only(true)
            .same_site(cookie::SameSite::Strict)
            .max_age(lifetime)
            .secure(self.secure_cookies)
            .build()
            .to_string()
    }

    /// Who sent these headers, if anyone known.
    pub fn identify(&self, headers: &HeaderMap) -> Option<Who> {
        if let Some(token) = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            && let Some((name, _, role)) = self.tokens.iter().find(|(_, t, _)| same(t, token))
        {
            return Some(Who {
                name: name.clone(),
                role: *role,
                csrf: String::new(),
                by_token: true,
            });
        }
        if let Some(id) = cookie(headers, COOKIE) {
            let sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(session) = sessions.get(&id).filter(|s| s.expires > Instant::now()) {
                return Some(session.who.clone());
            }
        }
        self.is_open().then(|| Who {
            name: "local".into(),
            role: Role::Operator,
            csrf: self.open_csrf.clone(),
            by_token: false,
        })
    }
}

/// A cookie's value from the request (every `Cookie` header, parsed by the `cookie` crate).
fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(cookie::Cookie::split_parse)
        .flatten()
        .find(|c| c.name() == name)
        .map(|c| c.value().to_owned())
}

fn refuse(api: bool, status: StatusCode, code: &'static str, message: &str) -> Response {
    match api {
        true => crate::dashboard::api::ApiError(status, code, message.to_owned()).into_response(),
        false => super::pages::layout::error_page(status, message),
    }
}

/// The guard in front of `/ui` and `/api/v1`: identifies the caller, sends strangers to the
/// login page (or answers 401), refuses viewers' actions (403) and actions without the CSRF
/// token (403), and hands [`Who`] to the handlers.
pub async fn guard(State(auth): State<Arc<Auth>>, request: Request, next: Next) -> Response {
    let path = request.uri().path().to_owned();
    let api = path.starts_with("/api/");
    if path == "/ui/login" || path == "/api/v1/openapi.json" {
        return next.run(request).await;
    }
    let Some(who) = auth.identify(request.headers()) else {
        return match api {
            true => {
                let mut response = refuse(
                    true,
                    StatusCode::UNAUTHORIZED,
                    "unauthenticated",
                    "log in or send a bearer token",
                );
                response.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    header::HeaderValue::from_static("Bearer realm=\"handoff\""),
                );
                response
            }
            false => Redirect::to("/ui/login").into_response(),
        };
    };
    let acting = !matches!(*request.method(), Method::GET | Method::HEAD);
    if !acting {
        let mut request = request;
        request.extensions_mut().insert(who);
        return next.run(request).await;
    }
    // In every mode: a browser on another site may not make this one act.
    if let Some(why) = cross_site(request.headers()) {
        tracing::warn!(path = %path, why, "cross-site request refused");
        return refuse(api, StatusCode::FORBIDDEN, "cross_site", why);
    }
    // Everyone may log out (a viewer's session must not outlive their wish to end it).
    if !who.may_act() && path != "/ui/logout" {
        return refuse(
            api,
            StatusCode::FORBIDDEN,
            "read_only",
            "your role may look but not act",
        );
    }
    // Open mode's API is for local scripts and the CLI; its pages still check the token. A
    // form or text body (what a page elsewhere can send without asking) needs it there too.
    let simple = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            let v = v.to_ascii_lowercase();
            [
                "application/x-www-form-urlencoded",
                "multipart/form-data",
                "text/plain",
            ]
            .iter()
            .any(|simple| v.starts_with(simple))
        });
    let needs_csrf = !(who.by_token || (api && auth.is_open() && !simple));
    let (parts, body) = request.into_parts();
    let mut sent = parts
        .headers
        .get("x-csrf-token")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let form = parts.headers.get(header::CONTENT_TYPE).is_some_and(|v| {
        v.as_bytes()
            .starts_with(b"application/x-www-form-urlencoded")
    });
    let Ok(bytes) = axum::body::to_bytes(body, 4 * 1024 * 1024).await else {
        return refuse(
            api,
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            "the form is too large",
        );
    };
    if form && sent.is_none() {
        sent = form_field(&bytes, "csrf");
    }
    if needs_csrf && !sent.is_some_and(|token| same(&token, &who.csrf)) {
        return refuse(
            api,
            StatusCode::FORBIDDEN,
            "csrf",
            "the request lacks this session's CSRF token; reload the page and try again",
        );
    }
    let mut request = Request::from_parts(parts, Body::from(bytes));
    request.extensions_mut().insert(who);
    next.run(request).await
}

/// Why a request comes from another site, if it does: the browser's `Sec-Fetch-Site`, or an
/// `Origin` whose host is not the one asked.
fn cross_site(headers: &HeaderMap) -> Option<&'static str> {
    let fetch_site = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok());
    if matches!(fetch_site, Some("cross-site" | "same-site")) {
        return Some("the request comes from another site (Sec-Fetch-Site)");
    }
    let origin = headers.get(header::ORIGIN)?.to_str().ok()?;
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    let origin_host = origin
        .split_once("://")
        .map_or(origin, |(_, rest)| rest)
        .trim_end_matches('/');
    match host {
        Some(host) if host.eq_ignore_ascii_case(origin_host) => None,
        _ => Some("the request comes from another origin"),
    }
}

/// A field of an `application/x-www-form-urlencoded` body.
pub fn form_field(body: &[u8], name: &str) -> Option<String> {
    form_fields(body)
        .into_iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v)
}

/// Every field of an `application/x-www-form-urlencoded` body, decoded.
pub fn form_fields(body: &[u8]) -> Vec<(String, String)> {
    form_urlencoded::parse(body).into_owned().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use argon2::PasswordHasher;
    use argon2::password_hash::SaltString;

    fn hash(password: &str) -> String {
        let salt = SaltString::generate(&mut OsRng);
        Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .unwrap()
            .to_string()
    }

    #[test]
    fn passwords_tokens_and_sessions() {
        let config = DashboardConfig {
            users: vec![crate::config::UserConfig {
                name: "ops".into(),
                password_hash: hash("correct horse"),
                role: Role::Operator,
            }],
            tokens: vec![crate::config::TokenConfig {
                name: "ci".into(),
                token_env: "T".into(),
                role: Role::Viewer,
            }],
            ..DashboardConfig::default()
        };
        let auth = Auth::new(&config, &|_: &str| Some("0123456789abcdef-token".into())).unwrap();
        assert!(!auth.is_open());
        assert!(auth.login("ops", "wrong").is_none());
        assert!(auth.login("nobody", "correct horse").is_none());
        let (id, who) = auth.login("ops", "correct horse").unwrap();
        assert_eq!(who.role, Role::Operator);
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            format!("a=b; {COOKIE}={id}").parse().unwrap(),
        );
        assert_eq!(auth.identify(&headers).unwrap().csrf, who.csrf);
        let set = cookie::Cookie::parse(auth.cookie(&id)).unwrap();
        assert_eq!((set.name(), set.value()), (COOKIE, id.as_str()));
        assert_eq!(
            (set.http_only(), set.same_site(), set.path()),
            (Some(true), Some(cookie::SameSite::Strict), Some("/"))
        );
        auth.logout(&headers);
        assert!(auth.identify(&headers).is_none());
        let mut bearer = HeaderMap::new();
        bearer.insert(
            header::AUTHORIZATION,
            "Bearer 0123456789abcdef-token".parse().unwrap(),
        );
        let script = auth.identify(&bearer).unwrap();
        assert!(script.by_token && !script.may_act());
    }

    #[test]
    fn form_fields_are_decoded() {
        let fields = form_fields(b"csrf=a%2Bb&payload=%7B%22x%22%3A+1%7D&empty=");
        assert_eq!(fields[0], ("csrf".into(), "a+b".into()));
        assert_eq!(fields[1], ("payload".into(), "{\"x\": 1}".into()));
        assert_eq!(fields[2], ("empty".into(), String::new()));
    }
}
