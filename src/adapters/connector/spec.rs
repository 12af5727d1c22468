//! What a connector file says, as serde reads it (the file's layout is in the module above).

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_saphyr::Spanned;

use crate::adapters::rest::rules::Verdict;
use crate::adapters::sandbox::Role;
use crate::adapters::tryton::TrytonSpec;
use crate::queue::retry::RetryPolicy;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Sandbox,
    Rest,
    Tryton,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectorSpec {
    pub kind: Spanned<Kind>,
    #[serde(default)]
    pub description: String,
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    #[serde(default)]
    pub retry: RetryPolicy,
    #[serde(default)]
    pub breaker: BreakerSpec,
    /// `erp` or `crm`: what the system is (a sandbox plays it; a CRM's records are watched for
    /// echoes of handoff's own writes).
    pub role: Option<Role>,
    pub base_url: Option<String>,
    pub auth: Option<AuthSpec>,
    pub idempotency_header: Option<String>,
    #[serde(default)]
    pub timeouts: TimeoutSpec,
    #[serde(default)]
    pub idempotency_format: IdempotencyFormat,
    pub rate_limit: Option<RateLimitSpec>,
    pub probe_path: Option<String>,
    #[serde(default)]
    pub errors: Vec<ErrorRuleSpec>,
    #[serde(default)]
    pub operations: BTreeMap<String, OperationSpec>,
    /// `kind: tryton`: the database, whether to confirm orders, the status poller's period.
    pub tryton: Option<TrytonSpec>,
}

fn default_concurrency() -> usize {
    8
}

/// After `failures` transient failures in a row the connector pauses for `open_secs` (doubling
/// up to `max_open_secs` while probes fail), then lets one delivery through as a probe.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BreakerSpec {
    pub failures: u32,
    pub open_secs: u64,
    pub max_open_secs: u64,
}

impl Default for BreakerSpec {
    fn default() -> Self {
        BreakerSpec {
            failures: 5,
            open_secs: 5,
            max_open_secs: 30,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TimeoutSpec {
    pub connect_secs: u64,
    pub request_secs: u64,
}

impl Default for TimeoutSpec {
    fn default() -> Self {
        TimeoutSpec {
            connect_secs: 5,
            request_secs: 30,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub enum AuthSpec {
    BearerEnv(String),
    Basic {
        user_env: String,
        password_env: String,
    },
    Header {
        name: String,
        value_env: String,
        #[serde(default)]
        prefix: String,
    },
    /// OAuth2 client credentials; `token_url` may be a path on `base_url`.
    Oauth2 {
        token_url: String,
        client_id_env: String,
        client_secret_env: String,
        scope: Option<String>,
    },
}

/// How the job's idempotency key is sent: as it is, or as a UUID derived from it (NetSuite
/// wants a UUID).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IdempotencyFormat {
    #[default]
    Text,
    Uuid,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitSpec {
    pub per_second: f64,
    #[serde(default = "one")]
    pub burst: u32,
}

fn one() -> u32 {
    1
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErrorRuleSpec {
    pub status: Option<u16>,
    /// A regular expression the answer's body must match.
    pub body: Option<Spanned<String>>,
    pub class: Verdict,
    pub retry_after_secs: Option<u64>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OperationSpec {
    pub method: String,
    /// `{match}` is the match key, `{/pointer}` a value of the document; both URL-encoded.
    pub path: String,
    /// JSON pointer to the created record's id in the answer, or `location` (the last path
    /// segment of the `Location` header).
    pub id: Option<String>,
    /// Find before create: GET this path; a record found at `id` means it exists already.
    pub find: Option<FindSpec>,
    /// Top-level fields of the document not sent in the body (an id that is in the path).
    #[serde(default)]
    pub omit: Vec<String>,
    /// A listing for reconciliation (`GET path`, page after page), not a delivery.
    pub list: Option<ListSpec>,
}

/// Where a listing's answer holds its records, each record's id, key and version, and the
/// next page (JSON pointers).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListSpec {
    /// The array of records (`""`: the answer is the array).
    pub items: String,
    /// The next page's path or URL (Salesforce's `nextRecordsUrl`, HubSpot's
    /// `paging/next/link`); absent or null on the last page.
    pub next: Option<String>,
    pub id: String,
    /// The natural key handoff matches by (default: the id).
    pub key: Option<String>,
    pub version: Option<String>,
    /// A boolean field saying whether the record is active (default: every record is).
    pub active: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FindSpec {
    pub path: String,
    pub id: String,
    /// A record found is updated in place with this request (`{id}` is its id); without it,
    /// a found record is left as it is.
    pub update: Option<UpdateSpec>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateSpec {
    pub method: String,
    pub path: String,
    /// Fields left out of the update as well (beside the operation's `omit`): those the
    /// target takes only when a record is created, e.g. a Salesforce PricebookEntry's
    /// `Product2Id` and `Pricebook2Id`.
    #[serde(default)]
    pub omit: Vec<String>,
}
