//! `connectors/*.yaml`: one file per external system, read into a [`Connector`] with its adapter.
//!
//! ```yaml
//! kind: rest                     # sandbox | rest | tryton
//! role: erp                      # erp | crm
//! description: Our ERP
//! concurrency: 8                 # deliveries in flight at once
//! retry: { schedule_secs: [5, 300, 1800], max_retry_after_secs: 3600 }
//! breaker: { failures: 5, open_secs: 5, max_open_secs: 30 }
//! base_url: http://127.0.0.1:9000
//! auth: { bearer_env: ERP_TOKEN }          # or { basic: { user_env, password_env } },
//!   # or { header: { name: Authorization, value_env: ERP_KEY, prefix: "token " } },
//!   # or { oauth2: { token_url: /oauth/token, client_id_env, client_secret_env, scope } }
//! idempotency_header: Idempotency-Key
//! idempotency_format: text                 # or uuid (a UUID derived from the job's key)
//! timeouts: { connect_secs: 5, request_secs: 30 }
//! rate_limit: { per_second: 10, burst: 10 }
//! probe_path: /health                      # "test connection" GETs this (default /)
//! errors:                                  # answers → classes, before the status defaults
//!   - { status: 400, body: "IDEMPOTENCY_ERROR", class: done }
//! operations:
//!   upsert_customer: { method: PUT, path: "/customers/{match}", id: /id }
//!   create_sales_order:
//!     method: POST
//!     path: /orders
//!     id: /id                              # or `location`: the Location header's last segment
//!     find: { path: "/orders?reference={match}", id: /0/id }   # find before create
//!   update_customer_by_id:
//!     method: POST
//!     path: /customers
//!     find: { path: "/customers?code={match}", id: /0/id,
//!             update: { method: PUT, path: "/customers/{id}" } }   # found → updated in place
//!   update_opportunity: { method: PATCH, path: "/opportunities/{/id}", omit: [id] }
//! ```
//!
//! A Tryton ERP (adapters/tryton): `kind: tryton`, `base_url`, `auth: { basic: … }` (its login)
//! and `tryton: { database: crm, confirm: true, poll_every_secs: 10, poll_from: now }`.
//!
//! The connector's name is the file name without `.yaml`; mappings name it in `target.connector`.
//!
//! `spec.rs` is the file as read; this module builds a [`Connector`] (its adapter, sandbox and
//! poller) from it.

mod spec;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

pub use spec::*;

use super::rest::Rest;
use super::rest::rules::ErrorRule;
pub use super::sandbox::Role;
use super::sandbox::Sandbox;
use super::tryton::Tryton;
use super::tryton::rpc::Rpc;
use super::{Adapter, Poller};
use crate::config::SecretLookup;
use crate::problem::Problem;
use crate::queue::retry::RetryPolicy;

/// A configured external system.
pub struct Connector {
    pub name: String,
    pub role: Role,
    pub description: String,
    pub concurrency: usize,
    pub retry: RetryPolicy,
    pub breaker: BreakerSpec,
    pub adapter: Arc<dyn Adapter>,
    /// The sandbox behind it, when it is one (operators can advance its orders).
    pub sandbox: Option<Arc<Sandbox>>,
    /// Asked for order status changes, when the system sends no webhooks (Tryton).
    pub poller: Option<Arc<dyn Poller>>,
    /// Where its products and prices are read, when it masters them (asked every
    /// `tryton.products_every_secs`, and by a backfill).
    pub products: Option<Arc<dyn crate::adapters::ProductSource>>,
}

/// Reads every connector file in `dir` (problems with file:line:col). Sandbox connectors keep
/// what they hold in `store` (`handoff check` passes none: a sandbox without storage).
pub fn load_dir(
    dir: &Path,
    secrets: &SecretLookup,
    store: Option<&sled::Db>,
) -> Result<Vec<Connector>, Vec<Problem>> {
    let mut connectors = Vec::new();
    let mut problems = Vec::new();
    for path in crate::problem::yaml_files(dir) {
        let (name, file, spec) = crate::problem::read_yaml::<ConnectorSpec>(&path);
        match spec.and_then(|spec| build(&file, name, spec, secrets, store)) {
            Ok(connector) => connectors.push(connector),
            Err(problem) => problems.push(problem),
        }
    }
    match problems.is_empty() {
        true => Ok(connectors),
        false => Err(problems),
    }
}

fn build(
    file: &str,
    name: String,
    spec: ConnectorSpec,
    secrets: &SecretLookup,
    store: Option<&sled::Db>,
) -> Result<Connector, Problem> {
    let at = spec.kind.referenced;
    // A missing secret is the `auth:` entry's problem: point there, not at `kind:`.
    let auth_line = std::fs::read_to_string(file).ok().and_then(|text| {
        text.lines()
            .position(|line| line.starts_with("auth:"))
            .map(|n| n + 1)
    });
    let problem = |message: String| match auth_line {
        Some(line) if message.starts_with("environment variable") => Problem {
            location: format!("{file}:{line}:1"),
            message: format!("auth: {message}"),
        },
        _ => Problem {
            location: format!("{file}:{}:{}", at.line(), at.column()),
            message,
        },
    };
    let mut sandbox = None;
    let mut poller: Option<Arc<dyn Poller>> = None;
    let mut products: Option<Arc<dyn crate::adapters::ProductSource>> = None;
    let timeouts = (
        Duration::from_secs(spec.timeouts.connect_secs),
        Duration::from_secs(spec.timeouts.request_secs),
    );
    let adapter: Arc<dyn Adapter> = match spec.kind.value {
        Kind::Sandbox => {
            let role = spec.role.ok_or_else(|| {
                problem("a sandbox connector needs `role: erp` or `role: crm`".into())
            })?;
            let built = Arc::new(match store {
                Some(store) => {
                    Sandbox::open(store, &name, role).map_err(|e| problem(e.to_string()))?
                }
                None => Sandbox::detached(&name, role),
            });
            sandbox = Some(built.clone());
            built
        }
        Kind::Rest => {
            let base_url = spec
                .base_url
                .clone()
                .ok_or_else(|| problem("a rest connector needs `base_url`".into()))?;
            let rules = error_rules(file, &spec.errors)?;
            Arc::new(Rest::new(base_url, &spec, rules, timeouts, secrets).map_err(problem)?)
        }
        Kind::Tryton => {
            let base_url = spec
                .base_url
                .clone()
                .ok_or_else(|| problem("a tryton connector needs `base_url`".into()))?;
            let tryton = spec.tryton.clone().ok_or_else(|| {
                problem("a tryton connector needs `tryton: { database: … }`".into())
            })?;
            let Some(AuthSpec::Basic {
                user_env,
                password_env,
            }) = &spec.auth
            else {
                return Err(problem(
                    "a tryton connector needs `auth: { basic: { user_env, password_env } }` (its login)"
                        .into(),
                ));
            };
            let secret = |name: &str| {
                secrets(name)
                    .filter(|value| !value.is_empty())
                    .ok_or_else(|| problem(format!("environment variable {name} is not set")))
            };
            let login = (secret(user_env)?, secret(password_env)?);
            let from = tryton.poll_from.as_str();
            if !matches!(from, "now" | "all") && chrono::DateTime::parse_from_rfc3339(from).is_err()
            {
                return Err(problem(format!(
                    "tryton.poll_from {from:?} is not `now`, `all` or an RFC 3339 time"
                )));
            }
            let rpc = Rpc::new(&base_url, &tryton.database, login, timeouts);
            let every = tryton.poll_every_secs;
            let built = Arc::new(Tryton::new(rpc, tryton));
            if every > 0 {
                poller = Some(built.clone());
            }
            // Tryton masters products: asked every `products_every_secs` (when not 0), and by
            // `handoff products backfill` at any time.
            products = Some(built.clone());
            built
        }
    };
    if spec.concurrency == 0 {
        return Err(problem("concurrency must be at least 1".into()));
    }
    Ok(Connector {
        role: spec.role.unwrap_or(Role::Erp),
        name,
        description: spec.description,
        concurrency: spec.concurrency,
        retry: spec.retry,
        breaker: spec.breaker,
        adapter,
        sandbox,
        poller,
        products,
    })
}

/// Compiles the `errors:` rules; a bad pattern is reported where it is written.
fn error_rules(file: &str, specs: &[ErrorRuleSpec]) -> Result<Vec<ErrorRule>, Problem> {
    specs
        .iter()
        .map(|spec| {
            let body = match &spec.body {
                None => None,
                Some(pattern) => Some(regex::Regex::new(&pattern.value).map_err(|error| {
                    let at = pattern.referenced;
                    Problem {
                        location: format!("{file}:{}:{}", at.line(), at.column()),
                        message: format!("bad body pattern: {error}"),
                    }
                })?),
            };
            Ok(ErrorRule {
                status: spec.status,
                body,
                verdict: spec.class,
                retry_after: spec.retry_after_secs.map(Duration::from_secs),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_connector_files_load() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("connectors");
        let secrets = |_: &str| Some("set".to_owned());
        for dir in [root.clone(), root.join("examples")] {
            let loaded = load_dir(&dir, &secrets, None).unwrap_or_else(|p| panic!("{p:?}"));
            assert!(!loaded.is_empty(), "{}", dir.display());
        }
    }

    #[test]
    fn a_tryton_connector_without_its_login_is_refused_with_the_line() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("erp.yaml"),
            "kind: tryton\nbase_url: http://127.0.0.1:1\ntryton: { database: crm }\n",
        )
        .unwrap();
        let problems = load_dir(dir.path(), &|_: &str| None, None).err().unwrap();
        assert!(
            problems[0].location.ends_with("erp.yaml:1:7"),
            "{problems:?}"
        );
        assert!(problems[0].message.contains("auth"), "{problems:?}");
    }

    #[test]
    fn a_bad_error_pattern_is_reported_where_it_is_written() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("crm.yaml"),
            "kind: rest\nbase_url: http://127.0.0.1:1\nerrors:\n  - { status: 400, body: \"LOCK(\", class: transient }\n",
        )
        .unwrap();
        let problems = load_dir(dir.path(), &|_: &str| None, None).err().unwrap();
        assert!(
            problems[0].location.ends_with("crm.yaml:4:26"),
            "{problems:?}"
        );
        assert!(
            problems[0].message.contains("bad body pattern"),
            "{problems:?}"
        );
    }

    #[test]
    fn an_unset_oauth2_secret_is_named() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("crm.yaml"),
            "kind: rest\nbase_url: http://127.0.0.1:1\nauth: { oauth2: { token_url: /t, client_id_env: SF_ID, client_secret_env: SF_SECRET } }\n",
        )
        .unwrap();
        let only_id = |name: &str| (name == "SF_ID").then(|| "id".to_owned());
        let problems = load_dir(dir.path(), &only_id, None).err().unwrap();
        assert!(
            problems[0].message.contains("SF_SECRET is not set"),
            "{problems:?}"
        );
    }
}
