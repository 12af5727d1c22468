//! Typed runtime configuration. The `[ingest]` table and `[sources.*]` entries are typed next to
//! ingest (`ingest/settings.rs`).
//!
//! Loaded from TOML (a file given with `--config`, or the embedded `config.example.toml` when no
//! file is given), then overridden by `HANDOFF_*` environment variables, then checked by
//! [`Config::validate`]. Unknown keys are rejected everywhere, so a typo is an error, not a
//! silently ignored setting.
//!
//! Environment overrides name a key path in upper case with `__` between table levels:
//! `HANDOFF_LISTEN=0.0.0.0:8080`, `HANDOFF_LOG__FORMAT=json`,
//! `HANDOFF_INGEST__MAX_BODY_BYTES=2097152`. The value is read as a TOML value when it parses as
//! one (numbers, booleans) and as a string otherwise.
//!
//! Secrets never appear in the file: a source names the environment variable that holds its
//! secret (`secret_env = "CRM_WEBHOOK_SECRET"`), read once at start by [`SecretEnv::resolve`].

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde::Deserialize;

use crate::ingest::settings::{IngestConfig, SourceConfig};

/// The configuration `handoff serve` uses when no `--config` is given.
pub const EMBEDDED_DEFAULTS: &str = include_str!("../config.example.toml");

/// Environment variables with this prefix override config keys.
const ENV_PREFIX: &str = "HANDOFF_";
/// The CLI's own variables (the config file, the API token), not config keys: an override
/// never reads them.
pub const ENV_NOT_A_KEY: &[&str] = &["HANDOFF_CONFIG", "HANDOFF_API_TOKEN"];

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Address the HTTP server binds.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// Directory of the embedded store (journal, queue, cross-references).
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    /// Directory of the YAML mapping files.
    #[serde(default = "default_mappings_dir")]
    pub mappings_dir: PathBuf,
    /// Directory of the YAML connector files.
    #[serde(default = "default_connectors_dir")]
    pub connectors_dir: PathBuf,
    /// Directory of the JSON Schemas of the target documents (`customer.json`, …).
    #[serde(default = "default_schemas_dir")]
    pub schemas_dir: PathBuf,
    #[serde(default)]
    pub store: StoreConfig,
    #[serde(default)]
    pub log: LogConfig,
    #[serde(default)]
    pub ingest: IngestConfig,
    #[serde(default)]
    pub sync: SyncConfig,
    /// Who may use the dashboard and the API.
    #[serde(default)]
    pub dashboard: DashboardConfig,
    /// Limits on HTTP connections (slow or greedy clients).
    #[serde(default)]
    pub http: HttpConfig,
    /// Webhook senders, by the name used in `POST /hooks/{name}`.
    #[serde(default)]
    pub sources: BTreeMap<String, SourceConfig>,
}

/// How long a client may take and how many connections it may hold (`[http]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// A request's headers must arrive within this long, or the connection is closed.
    pub header_read_timeout_secs: u64,
    /// A whole request (body included) must be read and answered within this long (408).
    pub request_timeout_secs: u64,
    /// Open connections from one client address, at most; more are closed at once.
    pub max_connections_per_address: usize,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            header_read_timeout_secs: 10,
            request_timeout_secs: 30,
            max_connections_per_address: 256,
        }
    }
}

/// Dashboard and API access. With no users and no tokens both are open (fine on loopback only).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DashboardConfig {
    /// People who log in: name, an Argon2 hash (`handoff hash-password`), role.
    pub users: Vec<UserConfig>,
    /// Bearer tokens for scripts and the CLI, read from the environment.
    pub tokens: Vec<TokenConfig>,
    /// Mark the session cookie `Secure` (set when users reach handoff over https).
    pub secure_cookies: bool,
    /// A session ends this long after login.
    pub session_hours: u64,
    /// Serve the dashboard and the API without login on a non-loopback address (only behind
    /// access control of your own). Without it handoff refuses to start that way.
    pub open_access: bool,
}

impl Default for DashboardConfig {
    fn default() -> Self {
        DashboardConfig {
            users: Vec::new(),
            tokens: Vec::new(),
            secure_cookies: false,
            session_hours: 12,
            open_access: false,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserConfig {
    pub name: String,
    pub password_hash: String,
    pub role: Role,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    pub name: String,
    pub token_env: String,
    pub role: Role,
}

/// `viewer` sees everything and changes nothing; `operator` may also act.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Viewer,
    Operator,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// Where events and jobs live: `embedded` (the data dir; the default) or `postgres`
    /// (several instances sharing one PostgreSQL, `[store.postgres]`).
    #[serde(default)]
    pub backend: Backend,
    #[serde(default)]
    pub postgres: PostgresConfig,
    /// Size of one journal segment file; each is allocated ahead of use.
    #[serde(default = "default_segment_bytes")]
    pub journal_segment_bytes: u64,
    /// How long the journal keeps events, in seconds (at least the dedupe window). Older
    /// segments are deleted once no open job or dead letter needs them; the queue copies the
    /// event of one that does before its segment goes.
    #[serde(default = "default_journal_retention_secs")]
    pub journal_retention_secs: u64,
    /// Size of one queue log segment (at most 12 MiB). A drained queue keeps about two.
    #[serde(default = "default_queue_segment_bytes")]
    pub queue_segment_bytes: u64,
    /// How often sled (the cross-references and other small indexes) is written to disk at
    /// the latest; the queue log's commits also flush it after it changed.
    #[serde(default = "default_flush_every_ms")]
    pub flush_every_ms: u64,
    /// Memory sled may use to cache its pages, in MiB.
    #[serde(default = "default_cache_mib")]
    pub cache_mib: u64,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            backend: Backend::default(),
            postgres: PostgresConfig::default(),
            journal_segment_bytes: default_segment_bytes(),
            journal_retention_secs: default_journal_retention_secs(),
            queue_segment_bytes: default_queue_segment_bytes(),
            flush_every_ms: default_flush_every_ms(),
            cache_mib: default_cache_mib(),
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Backend {
    #[default]
    Embedded,
    Postgres,
}

/// `[store.postgres]`: the shared database of several instances.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresConfig {
    /// The environment variable holding the connection URL (`postgres://user:password@host/db`);
    /// the URL and its password are never logged.
    #[serde(default = "default_url_env")]
    pub url_env: String,
    /// Connections each instance keeps open.
    #[serde(default = "default_pool_size")]
    pub pool_size: usize,
    /// Seconds to wait for a connection before an operation fails.
    #[serde(default = "default_connect_timeout_secs")]
    pub connect_timeout_secs: u64,
    /// How long an instance's lease on its partitions (and on the router's and pollers' roles)
    /// lasts without renewal: a stopped instance's work moves to the others within it.
    #[serde(default = "default_lease_secs")]
    pub lease_secs: u64,
}

impl Default for PostgresConfig {
    fn default() -> Self {
        Self {
            url_env: default_url_env(),
            pool_size: default_pool_size(),
            connect_timeout_secs: default_connect_timeout_secs(),
            lease_secs: default_lease_secs(),
        }
    }
}

fn default_url_env() -> String {
    "DATABASE_URL".to_owned()
}
fn default_pool_size() -> usize {
    16
}
fn default_connect_timeout_secs() -> u64 {
    5
}
fn default_lease_secs() -> u64 {
    10
}

fn default_flush_every_ms() -> u64 {
    200
}

fn default_journal_retention_secs() -> u64 {
    7 * 24 * 3600
}

fn default_queue_segment_bytes() -> u64 {
    crate::queue::embedded::SEGMENT_BYTES
}

fn default_cache_mib() -> u64 {
    64
}

/// The delivery engine.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SyncConfig {
    /// How long a job waits for a record it requires (a customer for an order) before it becomes
    /// a dead letter that says so.
    pub park_timeout_secs: u64,
    /// How often a held job's precondition (payment, stock) is checked again; a newer event for
    /// the same record rechecks it at once.
    pub hold_recheck_secs: u64,
    /// Fields a CRM changes on every save. An event that differs from the last one applied only
    /// in these and in fields handoff itself wrote is an echo of handoff's own write, and skipped.
    pub echo_ignore_fields: Vec<String>,
    /// On shutdown, how long deliveries in flight may take to finish.
    pub shutdown_grace_secs: u64,
    /// The niceness (0–19) of the engine's threads (routing, mapping, delivery; they run on a
    /// runtime of their own). Above 0, webhook acks get the larger share of a short CPU and
    /// deliveries catch up from the durable queue; 0 (the default) shares it evenly.
    pub engine_nice: i32,
}

impl Default for SyncConfig {
    fn default() -> Self {
        SyncConfig {
            park_timeout_secs: 86400,
            hold_recheck_secs: 300,
            echo_ignore_fields: [
                "LastModifiedDate",
                "SystemModstamp",
                "LastModifiedById",
                "hs_lastmodifieddate",
            ]
            .map(String::from)
            .to_vec(),
            shutdown_grace_secs: 10,
            engine_nice: 0,
        }
    }
}

fn default_segment_bytes() -> u64 {
    crate::journal::segment::SEGMENT_BYTES
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// `pretty` for people, `json` for log collectors.
    #[serde(default)]
    pub format: LogFormat,
    /// A tracing filter: `info`, `handoff=debug,tower_http=info`, …
    #[serde(default = "default_log_level")]
    pub level: String,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    #[default]
    Pretty,
    Json,
}

/// One environment variable name or several.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(untagged)]
pub enum SecretEnv {
    #[default]
    None,
    One(String),
    Many(Vec<String>),
}

impl SecretEnv {
    pub fn names(&self) -> Vec<&str> {
        match self {
            SecretEnv::None => vec![],
            SecretEnv::One(name) => vec![name.as_str()],
            SecretEnv::Many(names) => names.iter().map(String::as_str).collect(),
        }
    }

    /// Reads the secrets through `lookup` (the process environment in production, a table in
    /// tests). Of a rotation list, the variables that are set count (the previous secret is
    /// usually unset); it is an error only when none is. Errors name variables, never values.
    pub fn resolve(&self, lookup: &SecretLookup) -> anyhow::Result<Vec<String>> {
        let names = self.names();
        let secrets: Vec<String> = names
            .iter()
            .filter_map(|name| lookup(name).filter(|value| !value.is_empty()))
            .collect();
        if secrets.is_empty() {
            match names.as_slice() {
                [one] => bail!("environment variable {one} is not set"),
                many => bail!(
                    "none of the environment variables {} is set",
                    many.join(", ")
                ),
            }
        }
        Ok(secrets)
    }
}

/// Finds a secret by its environment variable name.
pub type SecretLookup = dyn Fn(&str) -> Option<String> + Send + Sync;

/// The process environment as a [`SecretLookup`].
pub fn env_secrets(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8080))
}
fn default_data_dir() -> PathBuf {
    PathBuf::from("./data")
}
fn default_mappings_dir() -> PathBuf {
    PathBuf::from("./mappings")
}
fn default_connectors_dir() -> PathBuf {
    PathBuf::from("./connectors")
}
fn default_schemas_dir() -> PathBuf {
    PathBuf::from("./schemas")
}
fn default_log_level() -> String {
    "info".to_owned()
}
impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::default(),
            level: default_log_level(),
        }
    }
}

/// Where the configuration came from; embedded defaults are a demo and tolerate missing secrets.
/// Names the environment variable behind a config error when the file alone is fine.
fn blame(
    base: &toml::Table,
    overrides: &[(String, String)],
    error: toml::de::Error,
) -> anyhow::Error {
    if base.clone().try_into::<Config>().is_ok() {
        for (name, value) in overrides {
            let mut alone = base.clone();
            if override_key(&mut alone, &name[ENV_PREFIX.len()..], value).is_ok()
                && let Err(own) = alone.try_into::<Config>()
            {
                return anyhow::anyhow!(
                    "environment variable {name}: {} (HANDOFF_* variables override config keys; \
                     unset it or fix its name)",
                    own.message()
                );
            }
        }
    }
    error.into()
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    Embedded,
    File(PathBuf),
}

impl Config {
    /// Loads the file (or the embedded defaults), applies `HANDOFF_*` overrides, validates.
    pub fn load(path: Option<&Path>) -> anyhow::Result<(Config, Origin)> {
        let (text, origin) = match path {
            Some(path) => (
                std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read config file {}", path.display()))?,
                Origin::File(path.to_owned()),
            ),
            None => (EMBEDDED_DEFAULTS.to_owned(), Origin::Embedded),
        };
        let name = match &origin {
            Origin::File(path) => path.display().to_string(),
            Origin::Embedded => "embedded defaults (config.example.toml)".to_owned(),
        };
        let config = Self::parse(&text, std::env::vars()).map_err(|error| {
            match error.to_string().starts_with("environment variable") {
                true => error,
                false => error.context(format!("invalid configuration in {name}")),
            }
        })?;
        Ok((config, origin))
    }

    /// Parses TOML text with the given environment applied on top.
    pub fn parse(
        text: &str,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> anyhow::Result<Config> {
        let base: toml::Table = toml::from_str(text)?;
        let overrides: Vec<(String, String)> = env
            .into_iter()
            .filter(|(name, _)| {
                name.starts_with(ENV_PREFIX) && !ENV_NOT_A_KEY.contains(&name.as_str())
            })
            .collect();
        let mut table = base.clone();
        for (name, value) in &overrides {
            override_key(&mut table, &name[ENV_PREFIX.len()..], value)
                .with_context(|| format!("environment variable {name}"))?;
        }
        let config: Config = match table.try_into() {
            Ok(config) => config,
            Err(error) => return Err(blame(&base, &overrides, error)),
        };
        config.validate()?;
        Ok(config)
    }

    /// Checks what types cannot: names, pointers, preset parameters.
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.ingest.max_body_bytes == 0 {
            bail!("ingest.max_body_bytes must be above 0");
        }
        if self.store.journal_segment_bytes < 64 * 1024 {
            bail!("store.journal_segment_bytes must be at least 65536");
        }
        if !(0..=19).contains(&self.sync.engine_nice) {
            bail!(
                "sync.engine_nice must be from 0 (same priority as ingest) to 19, not {}",
                self.sync.engine_nice
            );
        }
        for (name, source) in &self.sources {
            source
                .validate()
                .with_context(|| format!("sources.{name}"))?;
            if !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            {
                bail!("source name {name:?} may hold only letters, digits, '_' and '-'");
            }
        }
        Ok(())
    }
}

/// Sets `path` (upper case, `__` between levels) in `table` to `value`.
fn override_key(table: &mut toml::Table, path: &str, value: &str) -> anyhow::Result<()> {
    let keys: Vec<String> = path.split("__").map(str::to_ascii_lowercase).collect();
    let (last, parents) = keys.split_last().context("empty key")?;
    let mut current = table;
    for key in parents {
        current = current
            .entry(key.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()))
            .as_table_mut()
            .with_context(|| format!("{key} is not a table"))?;
    }
    let parsed = toml::from_str::<toml::Table>(&format!("v = {value}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(value.to_owned()));
    current.insert(last.clone(), parsed);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::settings::Preset;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn example_config_loads_and_documents_every_source_preset() {
        let config = Config::parse(EMBEDDED_DEFAULTS, env(&[])).unwrap();
        assert_eq!(config.listen, default_listen());
        assert_eq!(config.data_dir, PathBuf::from("./data"));
        let presets: Vec<Preset> = config.sources.values().map(|s| s.preset).collect();
        for preset in [
            Preset::StandardWebhooks,
            Preset::Stripe,
            Preset::HubspotV3,
            Preset::Github,
            Preset::Shopify,
            Preset::Hmac,
            Preset::SalesforceOutbound,
        ] {
            assert!(presets.contains(&preset), "example lacks {preset:?}");
        }
    }

    #[test]
    fn env_overrides_nested_keys_with_typed_values() {
        let config = Config::parse(
            EMBEDDED_DEFAULTS,
            env(&[
                ("HANDOFF_LISTEN", "0.0.0.0:9000"),
                ("HANDOFF_LOG__FORMAT", "json"),
                ("HANDOFF_INGEST__MAX_BODY_BYTES", "2048"),
                ("HANDOFF_CONFIG", "ignored.toml"),
                ("OTHER", "x"),
            ]),
        )
        .unwrap();
        assert_eq!(config.listen.port(), 9000);
        assert_eq!(config.log.format, LogFormat::Json);
        assert_eq!(config.ingest.max_body_bytes, 2048);
    }

    #[test]
    fn engine_niceness_defaults_to_0_and_stays_in_range() {
        assert_eq!(Config::parse("", env(&[])).unwrap().sync.engine_nice, 0);
        let err = Config::parse("[sync]\nengine_nice = 25\n", env(&[])).unwrap_err();
        assert!(
            format!("{err:#}").contains("sync.engine_nice must be from 0"),
            "{err:#}"
        );
    }

    #[test]
    fn unknown_keys_are_rejected_from_file_and_env() {
        let err = Config::parse("listen = \"127.0.0.1:1\"\nlisten_port = 3\n", env(&[]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("listen_port"), "{err}");
        let err = Config::parse("", env(&[("HANDOFF_LOG__COLOUR", "red")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("colour"), "{err}");
        assert!(
            err.starts_with("environment variable HANDOFF_LOG__COLOUR"),
            "the variable is named: {err}"
        );
    }

    #[test]
    fn the_clis_own_variables_are_never_config_overrides() {
        let config = Config::parse(
            crate::config::EMBEDDED_DEFAULTS,
            env(&[
                ("HANDOFF_API_TOKEN", "s3cret"),
                ("HANDOFF_CONFIG", "x.toml"),
            ]),
        );
        assert!(config.is_ok(), "{:?}", config.err());
        // Every variable a CLI argument reads is one of them.
        use clap::CommandFactory;
        fn walk(command: &clap::Command, out: &mut Vec<String>) {
            for arg in command.get_arguments() {
                if let Some(env) = arg.get_env() {
                    out.push(env.to_string_lossy().into_owned());
                }
            }
            for sub in command.get_subcommands() {
                walk(sub, out);
            }
        }
        let mut used = Vec::new();
        walk(&crate::cli::Cli::command(), &mut used);
        assert!(used.iter().any(|v| v == "HANDOFF_API_TOKEN"), "{used:?}");
        for name in used.iter().filter(|v| v.starts_with(ENV_PREFIX)) {
            assert!(
                ENV_NOT_A_KEY.contains(&name.as_str()),
                "{name} would be read as a config key"
            );
        }
    }

    #[test]
    fn source_mistakes_are_named() {
        let err = Config::parse("[sources.crm]\npreset = \"github\"\n", env(&[])).unwrap_err();
        assert!(format!("{err:#}").contains("sources.crm: secret_env is required"));
        let err = Config::parse(
            "[sources.crm]\npreset = \"github\"\nsecret_env = \"X\"\nobject_id = \"Id\"\n",
            env(&[]),
        )
        .unwrap_err();
        assert!(format!("{err:#}").contains("not a JSON pointer"));
        let err = Config::parse(
            "[sources.x]\npreset = \"hmac\"\nsecret_env = \"X\"\n[sources.x.signature]\nheader = \"h\"\nsigned = \"{nope}\"\n",
            env(&[]),
        )
        .unwrap_err();
        assert!(format!("{err:#}").contains("{nope}"), "{err:#}");
        let err = Config::parse(
            "[sources.x]\npreset = \"hmac\"\nsecret_env = \"X\"\n[sources.x.signature]\nheader = \"bad header\"\n",
            env(&[]),
        )
        .unwrap_err();
        assert!(
            format!("{err:#}").contains("not a valid HTTP header name"),
            "{err:#}"
        );
        let err = Config::parse("[sources.sf]\npreset = \"salesforce_outbound\"\n", env(&[]))
            .unwrap_err();
        assert!(format!("{err:#}").contains("organization_ids"));
    }

    #[test]
    fn secrets_resolve_by_name_and_errors_never_carry_values() {
        let secret = SecretEnv::Many(vec!["HANDOFF_T_SURELY_UNSET_1".into()]);
        let err = secret.resolve(&env_secrets).unwrap_err().to_string();
        assert!(err.contains("HANDOFF_T_SURELY_UNSET_1"));
        let rotation = SecretEnv::Many(vec!["NEW".into(), "OLD".into()]);
        let only_new = |name: &str| (name == "NEW").then(|| "s3cret".to_owned());
        assert_eq!(rotation.resolve(&only_new).unwrap(), vec!["s3cret"]);
        let err = rotation.resolve(&|_: &str| None).unwrap_err().to_string();
        assert_eq!(err, "none of the environment variables NEW, OLD is set");
    }
}
