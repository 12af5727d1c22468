//! `handoff jobs …`, `handoff connectors …`: the operator's actions from a shell, as calls to a
//! running handoff's JSON API (the same calls the dashboard makes). Tables for people, `--json`
//! for scripts; an API error is printed with its code and the command exits non-zero.
//! `reconcile.rs` holds `handoff reconcile …` and `handoff resync`.

mod reconcile;
pub use reconcile::{ReconcileCommand, reconcile, resync};

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::{Args, Subcommand, ValueEnum};
use serde_json::{Value, json};

use crate::config::Config;

/// Where the API is, and how to print.
#[derive(Debug, Args)]
pub struct Target {
    /// Base URL of the running service; defaults to the configured listen address.
    #[arg(long, global = true)]
    url: Option<String>,
    #[arg(long, global = true, env = "HANDOFF_CONFIG")]
    config: Option<PathBuf>,
    /// Print the API's JSON answer instead of a table.
    #[arg(long, global = true)]
    json: bool,
    /// A bearer token of the `[dashboard] tokens` list (when the API needs one).
    #[arg(long, global = true, env = "HANDOFF_API_TOKEN", hide_env_values = true)]
    token: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum JobsCommand {
    /// List jobs, newest first.
    List {
        /// ready, leased, retrying, parked, held, dead, done or skipped.
        #[arg(long)]
        state: Option<String>,
        #[arg(long)]
        flow: Option<String>,
        #[arg(long)]
        connector: Option<String>,
        /// A CRM or ERP record id, or an ordering key.
        #[arg(long)]
        record: Option<String>,
        /// A reason code such as fix_data or dependency.
        #[arg(long)]
        reason: Option<String>,
        /// Only jobs older than this id (the next page).
        #[arg(long)]
        before: Option<u64>,
        /// How many jobs (1 to 500).
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// Show one job: the event, the mapped document, every attempt, cross-references.
    Show { id: u64 },
    /// Run a dead, parked, held or retrying job again now.
    Retry { id: u64 },
    /// Settle a dead, parked, held or retrying job as skipped.
    Skip { id: u64 },
    /// Let a job held as `amount_mismatch` through with the ERP's own figures.
    Accept { id: u64 },
    /// Run a job again on corrected event data (or on its data as it is, after a mapping fix),
    /// re-mapped with the current mapping, under a new idempotency key.
    Resubmit {
        id: u64,
        /// A JSON file with the corrected event data (what mapping rules call `$`).
        #[arg(long)]
        payload: Option<PathBuf>,
    },
    /// Retry or skip every dead letter with one reason code.
    Bulk {
        #[arg(long)]
        reason: String,
        #[arg(long, value_enum)]
        action: BulkAction,
    },
    /// Dead letters grouped by reason.
    Dead,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum BulkAction {
    Retry,
    Skip,
}

#[derive(Debug, Subcommand)]
pub enum ConnectorsCommand {
    /// Every connector with its circuit and pause state.
    List,
    /// Stop deliveries through a connector (jobs wait; nothing is lost).
    Pause { name: String },
    /// Let deliveries through a paused connector again.
    Resume { name: String },
    /// Ask the connector's system whether it answers.
    Test { name: String },
    /// Run every retrying job of the connector now instead of at its scheduled time.
    RetryNow { name: String },
}

#[derive(Debug, Subcommand)]
pub enum ProductsCommand {
    /// Product sync's first load: every product and price of an ERP that masters them,
    /// journaled like the polls' events (the same ids: a second run adds nothing). With
    /// --dry-run it only reads and counts, and shows which flows would take them.
    Backfill {
        /// The ERP connector (a Tryton connector).
        #[arg(long, default_value = "erp")]
        connector: String,
        #[arg(long)]
        dry_run: bool,
    },
}

pub fn products(command: ProductsCommand, target: Target) -> anyhow::Result<()> {
    use std::io::{IsTerminal, Write};
    let api = Api::new(&target)?;
    let ProductsCommand::Backfill { connector, dry_run } = command;
    let path = format!("/api/v1/connectors/{connector}/products/backfill");
    let started = std::time::Instant::now();
    api.post(&format!("{path}?dry_run={dry_run}"), None)?;
    // It runs in the service; a line a second says where it is.
    let terminal = std::io::stderr().is_terminal();
    let run = loop {
        std::thread::sleep(std::time::Duration::from_millis(500));
        let run = api.get(&path, &[])?;
        if run["state"] != "running" {
            break run;
        }
        if terminal {
            eprint!(
                "\r\x1b[2K{connector}: {}… {} s",
                text(&run["phase"]),
                started.elapsed().as_secs()
            );
            let _ = std::io::stderr().flush();
        }
    };
    if terminal {
        eprint!("\r\x1b[2K");
    }
    if run["state"] == "failed" {
        bail!(
            "the backfill of {connector} failed: {}",
            text(&run["error"])
        );
    }
    let report = &run["report"];
    if target.json {
        println!("{}", serde_json::to_string_pretty(report)?);
        return Ok(());
    }
    let count = |key: &str| report[key].as_u64().unwrap_or(0);
    let verb = if dry_run { "would go to" } else { "went to" };
    println!(
        "{connector}: {} products ({} new to the journal), {} prices ({} changed) in {:.1} s",
        count("products"),
        count("products_journaled"),
        count("prices"),
        count("prices_journaled"),
        started.elapsed().as_secs_f64()
    );
    let flows = report["flows"].as_object().cloned().unwrap_or_default();
    if flows.is_empty() {
        println!("no mapping in force takes product or price events: nothing is sent on");
    }
    for (flow, events) in flows {
        println!("  {events} event(s) {verb} flow {flow}");
    }
    if dry_run {
        println!("dry run: nothing was journaled; run again without --dry-run to load them");
    }
    Ok(())
}

pub fn jobs(command: JobsCommand, target: Target) -> anyhow::Result<()> {
    let api = Api::new(&target)?;
    let answer = match &command {
        JobsCommand::List {
            state,
            flow,
            connector,
            record,
            reason,
            before,
            limit,
        } => {
            let mut query = vec![("limit", limit.to_string())];
            let optional = [
                ("state", state),
                ("flow", flow),
                ("connector", connector),
                ("record", record),
                ("reason", reason),
            ];
            for (name, value) in optional {
                if let Some(value) = value {
                    query.push((name, value.clone()));
                }
            }
            if let Some(before) = before {
                query.push(("before", before.to_string()));
            }
            api.get("/api/v1/jobs", &query)?
        }
        JobsCommand::Show { id } => api.get(&format!("/api/v1/jobs/{id}"), &[])?,
        JobsCommand::Retry { id } => api.post(&format!("/api/v1/jobs/{id}/retry"), None)?,
        JobsCommand::Skip { id } => api.post(&format!("/api/v1/jobs/{id}/skip"), None)?,
        JobsCommand::Accept { id } => api.post(&format!("/api/v1/jobs/{id}/accept"), None)?,
        JobsCommand::Resubmit { id, payload } => {
            let body = match payload {
                Some(path) => {
                    let text = std::fs::read_to_string(path)
                        .with_context(|| format!("cannot read {}", path.display()))?;
                    let payload: Value = serde_json::from_str(&text)
                        .with_context(|| format!("{} is not JSON", path.display()))?;
                    json!({ "payload": payload })
                }
                None => json!({}),
            };
            api.post(&format!("/api/v1/jobs/{id}/resubmit"), Some(body))?
        }
        JobsCommand::Bulk { reason, action } => {
            let action = match action {
                BulkAction::Retry => "retry",
                BulkAction::Skip => "skip",
            };
            let body = json!({ "reason": reason, "action": action });
            api.post("/api/v1/jobs/bulk", Some(body))?
        }
        JobsCommand::Dead => api.get("/api/v1/dead-letters", &[])?,
    };
    if target.json {
        println!("{}", serde_json::to_string_pretty(&answer)?);
        return Ok(());
    }
    match command {
        JobsCommand::List { .. } => print_jobs(&answer),
        JobsCommand::Show { .. } => print_job(&answer)?,
        JobsCommand::Bulk { .. } => println!("{} job(s) changed", answer["count"]),
        JobsCommand::Dead => {
            let groups = answer["groups"].as_array().cloned().unwrap_or_default();
            if groups.is_empty() {
                println!("no dead letters");
            }
            for group in &groups {
                println!(
                    "{:<22} {:>6}  e.g. {}",
                    text(&group["reason"]),
                    group["count"],
                    text(&group["example"])
                );
            }
        }
        _ => print_jobs(&json!({ "jobs": [answer["job"].clone()] })),
    }
    Ok(())
}

pub fn connectors(command: ConnectorsCommand, target: Target) -> anyhow::Result<()> {
    let api = Api::new(&target)?;
    let answer = match &command {
        ConnectorsCommand::List => api.get("/api/v1/connectors", &[])?,
        ConnectorsCommand::Pause { name } => {
            api.post(&format!("/api/v1/connectors/{name}/pause"), None)?
        }
        ConnectorsCommand::Resume { name } => {
            api.post(&format!("/api/v1/connectors/{name}/resume"), None)?
        }
        ConnectorsCommand::Test { name } => {
            api.post(&format!("/api/v1/connectors/{name}/test"), None)?
        }
        ConnectorsCommand::RetryNow { name } => {
            api.post(&format!("/api/v1/connectors/{name}/retry-now"), None)?
        }
    };
    if target.json {
        println!("{}", serde_json::to_string_pretty(&answer)?);
        return Ok(());
    }
    if let ConnectorsCommand::Test { name } = command {
        let verdict = if answer["ok"] == json!(true) {
            "ok"
        } else {
            "FAILED"
        };
        println!("{name}: {verdict}: {}", text(&answer["message"]));
        if verdict == "FAILED" {
            bail!("{name} did not answer as expected");
        }
        return Ok(());
    }
    if let ConnectorsCommand::RetryNow { name } = &command {
        println!("{name}: {} retrying job(s) released", answer["released"]);
        return Ok(());
    }
    let list = match answer.get("connectors") {
        Some(list) => list.clone(),
        None => json!([answer["connector"].clone()]),
    };
    println!(
        "{:<12} {:<8} {:<5} {:<8} paused",
        "name", "kind", "role", "circuit"
    );
    for connector in list.as_array().into_iter().flatten() {
        println!(
            "{:<12} {:<8} {:<5} {:<8} {}",
            text(&connector["name"]),
            text(&connector["kind"]),
            text(&connector["role"]),
            text(&connector["circuit"]),
            text(&connector["paused"]),
        );
    }
    Ok(())
}

/// One job for people: what it is, where it stands and what comes next, its attempts, and the
/// document as mapped now (`--json` prints everything).
fn print_job(answer: &Value) -> anyhow::Result<()> {
    let job = &answer["job"];
    println!(
        "job {}  {}  {} → {} ({})",
        job["id"],
        text(&job["state"]),
        text(&job["flow"]),
        text(&job["connector"]),
        text(&job["operation"])
    );
    println!(
        "record {}  order {}",
        text(&job["object_id"]),
        text(&job["order_key"])
    );
    if !job["reason"].is_null() {
        println!(
            "reason {}: {}",
            text(&job["reason"]["code"]),
            text(&job["reason"]["message"])
        );
    }
    if let Some(due) = job["due_ms"].as_i64() {
        let at = chrono::DateTime::from_timestamp_millis(due).unwrap_or_default();
        println!("next   {}", at.format("%Y-%m-%d %H:%M:%S UTC"));
    }
    println!("idempotency key {}", text(&answer["idempotency_key"]));
    for attempt in answer["attempts"].as_array().into_iter().flatten() {
        let at =
            chrono::DateTime::from_timestamp_millis(attempt["started_ms"].as_i64().unwrap_or(0))
                .unwrap_or_default();
        println!(
            "  #{} {}  {} ms  {}  → {}  {}",
            attempt["n"],
            at.format("%H:%M:%S"),
            attempt["duration_ms"],
            text(&attempt["outcome"]),
            text(&attempt["request"]),
            text(&attempt["response"])
        );
    }
    if !answer["document"].is_null() {
        println!(
            "document\n{}",
            serde_json::to_string_pretty(&answer["document"])?
        );
    }
    Ok(())
}

fn print_jobs(answer: &Value) {
    println!(
        "{:>8}  {:<9} {:<28} {:<20} reason",
        "id", "state", "flow", "record"
    );
    for job in answer["jobs"].as_array().into_iter().flatten() {
        let reason = match &job["reason"] {
            Value::Null => String::new(),
            reason => format!("{}: {}", text(&reason["code"]), text(&reason["message"])),
        };
        println!(
            "{:>8}  {:<9} {:<28} {:<20} {}",
            job["id"].to_string(),
            text(&job["state"]),
            text(&job["flow"]),
            text(&job["object_id"]),
            reason
        );
    }
    if let Some(next) = answer["next_before"].as_u64() {
        println!("more: --before {next}");
    }
}

/// A JSON value as plain text ("" for null).
pub(super) fn text(value: &Value) -> String {
    match value {
        Value::Null => String::new(),
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

pub(super) struct Api {
    base: String,
    client: reqwest::Client,
    runtime: tokio::runtime::Runtime,
}

impl Api {
    pub(super) fn new(target: &Target) -> anyhow::Result<Api> {
        let base = match &target.url {
            Some(url) => url.trim_end_matches('/').to_owned(),
            None => {
                let (config, _) = Config::load(target.config.as_deref())?;
                format!("http://{}", config.listen)
            }
        };
        let mut headers = reqwest::header::HeaderMap::new();
        if let Some(token) = &target.token {
            let mut value = reqwest::header::HeaderValue::from_str(&format!("Bearer {token}"))
                .context("the API token has characters a header cannot carry")?;
            value.set_sensitive(true);
            headers.insert(reqwest::header::AUTHORIZATION, value);
        }
        Ok(Api {
            base,
            client: reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(30))
                .default_headers(headers)
                .build()?,
            runtime: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?,
        })
    }

    pub(super) fn get(&self, path: &str, query: &[(&str, String)]) -> anyhow::Result<Value> {
        self.send(self.client.get(format!("{}{path}", self.base)).query(query))
    }

    pub(super) fn post(&self, path: &str, body: Option<Value>) -> anyhow::Result<Value> {
        let request = self.client.post(format!("{}{path}", self.base));
        self.send(match body {
            Some(body) => request.json(&body),
            None => request,
        })
    }

    fn send(&self, request: reqwest::RequestBuilder) -> anyhow::Result<Value> {
        self.runtime.block_on(async {
            let response = request
                .send()
                .await
                .with_context(|| format!("handoff at {} did not answer", self.base))?;
            let status = response.status();
            let body: Value = response.json().await.unwrap_or(Value::Null);
            if !status.is_success() {
                bail!(
                    "{status}: [{}] {}",
                    text(&body["error"]["code"]),
                    text(&body["error"]["message"])
                );
            }
            Ok(body)
        })
    }
}
