//! The shared HTTP client and the classification of HTTP outcomes into failure classes.

use std::time::{Duration, SystemTime};

use reqwest::StatusCode;
use reqwest::header::{HeaderMap, RETRY_AFTER};

use super::Failure;
use crate::adapters::Class;

/// A client with pooled connections, the given timeouts and the proxy from the environment.
pub fn client(connect: Duration, request: Duration) -> reqwest::Client {
    reqwest::Client::builder()
        .connect_timeout(connect)
        .timeout(request)
        .pool_max_idle_per_host(64)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("handoff/", env!("CARGO_PKG_VERSION")))
        .build()
        .expect("the HTTP client builds")
}

/// The class of a non-2xx answer: 408, 5xx transient; 429 rate limited; 401, 403 and 3xx the
/// connector's configuration; other 4xx the data.
pub fn class_of(status: StatusCode) -> Class {
    match status.as_u16() {
        408 | 500..=599 => Class::Transient,
        429 => Class::RateLimited,
        300..=399 | 401 | 403 | 405 => Class::FixConfig,
        _ => Class::FixData,
    }
}

/// The class of a request that got no answer: nothing was sent (transient) or it may have
/// arrived (in doubt).
pub fn class_of_error(error: &reqwest::Error) -> Class {
    if error.is_connect() || error.is_builder() {
        Class::Transient
    } else {
        Class::InDoubt
    }
}

/// `Retry-After` as seconds or an HTTP date.
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(
        at.duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

/// Sends `request`; the answer's status, headers and body, or the failure of a request that
/// got no answer (`summary` names the request in attempts).
pub async fn exchange(
    request: reqwest::RequestBuilder,
    summary: &str,
) -> Result<(StatusCode, HeaderMap, String), Failure> {
    let response = request
        .send()
        .await
        .map_err(|error| error_failure(error, summary.to_owned()))?;
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.text().await.unwrap_or_default();
    Ok((status, headers, body))
}

/// A failure from a non-2xx answer.
pub fn failure(status: StatusCode, headers: &HeaderMap, body: &str, request: String) -> Failure {
    Failure {
        class: class_of(status),
        message: format!("{status}: {}", super::cut(body, 300)),
        retry_after: retry_after(headers),
        request,
        response: format!("{status} {}", super::cut(body, 2000)),
        missing: None,
    }
}

/// A failure from a request without an answer; names the cause, never the URL's secrets.
pub fn error_failure(error: reqwest::Error, request: String) -> Failure {
    let class = class_of_error(&error);
    let what = if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "could not connect"
    } else {
        "failed"
    };
    Failure {
        class,
        message: format!("request {what}: {}", error.without_url()),
        retry_after: None,
        request,
        response: String::new(),
        missing: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn statuses_fall_into_their_classes() {
        assert_eq!(class_of(StatusCode::SERVICE_UNAVAILABLE), Class::Transient);
        assert_eq!(class_of(StatusCode::REQUEST_TIMEOUT), Class::Transient);
        assert_eq!(class_of(StatusCode::TOO_MANY_REQUESTS), Class::RateLimited);
        assert_eq!(class_of(StatusCode::UNAUTHORIZED), Class::FixConfig);
        assert_eq!(class_of(StatusCode::FOUND), Class::FixConfig);
        assert_eq!(class_of(StatusCode::UNPROCESSABLE_ENTITY), Class::FixData);
        assert_eq!(class_of(StatusCode::BAD_REQUEST), Class::FixData);
    }

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, HeaderValue::from_static("7"));
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(7)));
        let later = SystemTime::now() + Duration::from_secs(120);
        let date = httpdate::fmt_http_date(later);
        headers.insert(RETRY_AFTER, HeaderValue::from_str(&date).unwrap());
        let read = retry_after(&headers).unwrap();
        assert!(read > Duration::from_secs(110) && read <= Duration::from_secs(120));
        headers.insert(RETRY_AFTER, HeaderValue::from_static("soon"));
        assert_eq!(retry_after(&headers), None);
    }
}
