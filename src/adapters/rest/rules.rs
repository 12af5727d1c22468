//! A connector's error rules: a target's own way of saying what went wrong, turned into the
//! engine's classes before the status-code defaults (`adapters::http::class_of`) apply.
//!
//! ```yaml
//! errors:
//!   - { status: 403, body: REQUEST_LIMIT_EXCEEDED, class: rate_limited, retry_after_secs: 60 }
//!   - { status: 400, body: UNABLE_TO_LOCK_ROW, class: transient }
//!   - { status: 400, body: IDEMPOTENCY_ERROR, class: done }   # the first attempt took effect
//! ```
//!
//! Rules are tried in order; the first whose status (if given) and body pattern (a regular
//! expression, if given) both match decides.

use std::time::Duration;

use regex::Regex;
use reqwest::StatusCode;
use serde::Deserialize;

use crate::adapters::Class;

/// What a matching answer means.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Transient,
    RateLimited,
    InDoubt,
    FixData,
    FixConfig,
    /// The target already has what this request asks for (a replayed idempotency key, a
    /// duplicate): the delivery counts as done.
    Done,
}

impl Verdict {
    pub fn class(self) -> Option<Class> {
        match self {
            Verdict::Transient => Some(Class::Transient),
            Verdict::RateLimited => Some(Class::RateLimited),
            Verdict::InDoubt => Some(Class::InDoubt),
            Verdict::FixData => Some(Class::FixData),
            Verdict::FixConfig => Some(Class::FixConfig),
            Verdict::Done => None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct ErrorRule {
    pub status: Option<u16>,
    pub body: Option<Regex>,
    pub verdict: Verdict,
    /// Waits this long when the answer has no `Retry-After`.
    pub retry_after: Option<Duration>,
}

impl ErrorRule {
    fn matches(&self, status: StatusCode, body: &str) -> bool {
        self.status.is_none_or(|want| want == status.as_u16())
            && self
                .body
                .as_ref()
                .is_none_or(|pattern| pattern.is_match(body))
    }
}

/// The first rule that matches this answer.
pub fn first_match<'a>(
    rules: &'a [ErrorRule],
    status: StatusCode,
    body: &str,
) -> Option<&'a ErrorRule> {
    rules.iter().find(|rule| rule.matches(status, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_rule_whose_status_and_body_match_decides() {
        let rule = |status, body: &str, verdict| ErrorRule {
            status,
            body: Some(Regex::new(body).unwrap()),
            verdict,
            retry_after: None,
        };
        let rules = [
            rule(Some(403), "REQUEST_LIMIT_EXCEEDED", Verdict::RateLimited),
            rule(Some(400), "UNABLE_TO_LOCK_ROW|IDLE", Verdict::Transient),
            rule(None, "IDEMPOTENCY_ERROR", Verdict::Done),
        ];
        let limit = r#"[{"errorCode":"REQUEST_LIMIT_EXCEEDED"}]"#;
        let found = first_match(&rules, StatusCode::FORBIDDEN, limit).unwrap();
        assert_eq!(found.verdict, Verdict::RateLimited);
        assert!(first_match(&rules, StatusCode::BAD_REQUEST, limit).is_none());
        let lock = first_match(&rules, StatusCode::BAD_REQUEST, "x UNABLE_TO_LOCK_ROW").unwrap();
        assert_eq!(lock.verdict, Verdict::Transient);
        let replay = first_match(&rules, StatusCode::CONFLICT, "IDEMPOTENCY_ERROR").unwrap();
        assert_eq!(replay.verdict.class(), None);
    }
}
