//! The command line: parse, load config, hand over. Nothing else lives here.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tokio::net::TcpListener;

use crate::app::App;
use crate::config::Config;
use crate::mapping::{Lookups, Mapping};
use crate::operate::{ConnectorsCommand, JobsCommand, ProductsCommand, ReconcileCommand, Target};

/// handoff keeps a CRM and an ERP in step: signed webhooks in, a durable journal and queue,
/// YAML mappings, ERP adapters and status back to the CRM.
#[derive(Debug, Parser)]
#[command(name = "handoff", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the service. Without --config it runs on the embedded defaults: listen on
    /// 127.0.0.1:8080, data in ./data, mappings and connectors from ./mappings and ./connectors.
    Serve {
        /// A TOML config file (see config.example.toml). HANDOFF_* variables override its keys.
        #[arg(long, env = "HANDOFF_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Check the config, connectors and mappings; print every problem with file:line:col and
    /// exit non-zero if there is any.
    Check {
        #[arg(long, env = "HANDOFF_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Move the embedded store (the data dir) into the PostgreSQL database of `[store.postgres]`,
    /// with the embedded service stopped: open jobs, dead letters and their events,
    /// cross-references and the other records, the dedupe keys of the window.
    MoveToPostgres {
        #[arg(long, env = "HANDOFF_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Work with mapping files: run their tests, or map one event as a dry run.
    Mapping {
        #[command(subcommand)]
        command: MappingCommand,
    },
    /// Operator actions on jobs of a running handoff (list, show, retry, skip, resubmit, bulk).
    Jobs {
        #[command(subcommand)]
        command: JobsCommand,
        #[command(flatten)]
        target: Target,
    },
    /// Operator actions on connectors of a running handoff (list, pause, resume, test).
    Connectors {
        #[command(subcommand)]
        command: ConnectorsCommand,
        #[command(flatten)]
        target: Target,
    },
    /// Product sync on a running handoff: the first load of an ERP's products and prices.
    Products {
        #[command(subcommand)]
        command: ProductsCommand,
        #[command(flatten)]
        target: Target,
    },
    /// Reconciliation on a running handoff: find the records a flow's source and target
    /// disagree on, say why, and repair the safe cases.
    Reconcile {
        #[command(subcommand)]
        command: ReconcileCommand,
        #[command(flatten)]
        target: Target,
    },
    /// Read one record from a flow's source again and send it through the queue.
    Resync {
        #[arg(long)]
        flow: String,
        /// The source record's id.
        #[arg(long)]
        record: String,
        #[command(flatten)]
        target: Target,
    },
    /// Sign an event file as the source's sender does and post it to a running handoff.
    Send {
        /// The source, as in `POST /hooks/{source}` (`crm`, `salesforce`, …).
        source: String,
        /// The request body: JSON (or the SOAP XML of a Salesforce outbound message).
        file: PathBuf,
        /// Base URL of the service; defaults to the configured listen address.
        #[arg(long)]
        url: Option<String>,
        #[arg(long, env = "HANDOFF_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Read a password (8 characters or more) from standard input and print its Argon2 hash,
    /// for `[dashboard] users`.
    HashPassword,
    /// Ask a running handoff whether it is ready (for container health checks). Exits 0 if so.
    Healthcheck {
        /// Base URL of the service; defaults to the configured listen address.
        #[arg(long)]
        url: Option<String>,
        #[arg(long, env = "HANDOFF_CONFIG")]
        config: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
enum MappingCommand {
    /// Run the `tests:` block of mapping files (every file in the mappings dir if none is named).
    Test {
        files: Vec<PathBuf>,
        #[arg(long, env = "HANDOFF_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Map one event and print the document, or the error, without sending anything.
    Run {
        /// The mapping file.
        file: PathBuf,
        /// A JSON file with the event's data (what the rules call `$`).
        #[arg(long)]
        event: PathBuf,
        /// A JSON file with the context: {"xrefs": {"customer": {"<crm id>": "<erp id>"}}}.
        #[arg(long)]
        context: Option<PathBuf>,
        #[arg(long, env = "HANDOFF_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Map one event again and again and print mappings per second and µs per mapping (one
    /// core, schema validation included): measure a mapping before it goes live.
    Bench {
        /// The mapping file.
        file: PathBuf,
        /// A JSON file with the event's data (what the rules call `$`).
        #[arg(long)]
        event: PathBuf,
        /// A JSON file with the context: {"xrefs": {"customer": {"<crm id>": "<erp id>"}}}.
        #[arg(long)]
        context: Option<PathBuf>,
        /// How long to measure.
        #[arg(long, default_value_t = 3)]
        seconds: u64,
        #[arg(long, env = "HANDOFF_CONFIG")]
        config: Option<PathBuf>,
    },
}

/// The first line of stdin, hashed with Argon2id and a random salt.
fn hash_password() -> anyhow::Result<()> {
    use argon2::PasswordHasher;
    use argon2::password_hash::SaltString;
    use argon2::password_hash::rand_core::OsRng;
    let mut line = String::new();
    std::io::stdin().read_line(&mut line)?;
    let password = line.trim_end_matches(['\r', '\n']);
    anyhow::ensure!(
        password.len() >= 8,
        "the password must have at least 8 characters"
    );
    let salt = SaltString::generate(&mut OsRng);
    let hash = argon2::Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    println!("{hash}");
    Ok(())
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve { config } => serve(config),
        Command::Check { config } => return check(config),
        Command::MoveToPostgres { config } => move_to_postgres(config),
        Command::Mapping { command } => return mapping(command),
        Command::Healthcheck { url, config } => healthcheck(url, config),
        Command::HashPassword => hash_password(),
        Command::Send {
            source,
            file,
            url,
            config,
        } => {
            return match crate::send::send(&source, &file, url, config.as_deref()) {
                Ok(true) => ExitCode::SUCCESS,
                Ok(false) => ExitCode::FAILURE,
                Err(error) => {
                    eprintln!("error: {error:#}");
                    ExitCode::FAILURE
                }
            };
        }
        Command::Jobs { command, target } => crate::operate::jobs(command, target),
        Command::Connectors { command, target } => crate::operate::connectors(command, target),
        Command::Products { command, target } => crate::operate::products(command, target),
        Command::Reconcile { command, target } => crate::operate::reconcile(command, target),
        Command::Resync {
            flow,
            record,
            target,
        } => crate::operate::resync(flow, record, target),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

fn serve(path: Option<PathBuf>) -> anyhow::Result<()> {
    let (config, origin) = Config::load(path.as_deref())?;
    crate::logging::init(&config);
    let engine = crate::sync::runtime(config.sync.engine_nice)?;
    let served = runtime()?.block_on(async {
        let (app, warnings) = App::build(&config, &origin, &crate::config::env_secrets)?;
        for warning in warnings {
            tracing::warn!("{warning}");
        }
        let listener = TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("cannot listen on {}", config.listen))?;
        let shutdown = shutdown_signal();
        tracing::info!(
            listen = %listener.local_addr()?,
            data_dir = %config.data_dir.display(),
            sources = config.sources.len(),
            "handoff is serving"
        );
        app.serve_with_engine_on(listener, shutdown, engine.handle())
            .await?;
        tracing::info!("stopped");
        Ok(())
    });
    // The engine's tasks have finished (serve waits for them); its idle threads go now.
    engine.shutdown_timeout(std::time::Duration::from_secs(1));
    served
}

fn move_to_postgres(path: Option<PathBuf>) -> anyhow::Result<()> {
    let (config, _) = Config::load(path.as_deref())?;
    let moved =
        crate::postgres::import::move_to_postgres(&config, &crate::config::env_secrets, &|line| {
            eprintln!("{line}")
        })?;
    println!(
        "moved {} open jobs, {} dead letters, {} events ({} still to route), {} records and {} \
         dedupe keys; start the instances with [store] backend = \"postgres\"",
        moved.jobs,
        moved.dead_letters,
        moved.events,
        moved.unrouted,
        moved.records,
        moved.dedupe_keys
    );
    Ok(())
}

fn check(path: Option<PathBuf>) -> ExitCode {
    let report = crate::check::run(path.as_deref());
    for warning in &report.warnings {
        println!("warning: {warning}");
    }
    let problems = report.problems;
    for problem in &problems {
        println!("{problem}");
    }
    if problems.is_empty() {
        println!("ok: config, connectors and mappings are valid");
        ExitCode::SUCCESS
    } else {
        println!("{} problem(s)", problems.len());
        ExitCode::FAILURE
    }
}

fn mapping(command: MappingCommand) -> ExitCode {
    let result = match command {
        MappingCommand::Test { files, config } => mapping_test(files, config),
        MappingCommand::Run {
            file,
            event,
            context,
            config,
        } => mapping_run(file, event, context, config),
        MappingCommand::Bench {
            file,
            event,
            context,
            seconds,
            config,
        } => mapping_bench(file, event, context, seconds, config),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Loads the named mapping files (or all) with the configured lookups and schemas; prints
/// every problem.
fn load_mappings(
    files: &[PathBuf],
    path: Option<PathBuf>,
) -> anyhow::Result<Option<(Vec<Mapping>, Lookups)>> {
    let (config, _) = Config::load(path.as_deref())?;
    let files = match files {
        [] => crate::problem::yaml_files(&config.mappings_dir),
        named => named.to_vec(),
    };
    match crate::mapping::load_files(&files, &config.mappings_dir, &config.schemas_dir) {
        Ok(loaded) => Ok(Some(loaded)),
        Err(problems) => {
            for problem in &problems {
                println!("{problem}");
            }
            println!("{} problem(s)", problems.len());
            Ok(None)
        }
    }
}

fn mapping_test(files: Vec<PathBuf>, config: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let Some((mappings, lookups)) = load_mappings(&files, config)? else {
        return Ok(ExitCode::FAILURE);
    };
    let (mut passed, mut failed) = (0, 0);
    for mapping in &mappings {
        for case in &mapping.tests {
            match crate::mapping::testing::run_case(mapping, &lookups, case) {
                Ok(()) => {
                    passed += 1;
                    println!("ok     {} :: {}", mapping.flow, case.name);
                }
                Err(why) => {
                    failed += 1;
                    println!("FAILED {} :: {}\n{why}", mapping.flow, case.name);
                }
            }
        }
    }
    println!("{passed} passed, {failed} failed");
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The event's data and the context (cross-references) from their JSON files.
fn event_and_context(
    event: &PathBuf,
    context: Option<&PathBuf>,
) -> anyhow::Result<(serde_json::Value, crate::mapping::Context)> {
    let read_json = |path: &PathBuf| -> anyhow::Result<serde_json::Value> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))
    };
    let data = read_json(event)?;
    let context = match context {
        Some(path) => {
            let value = read_json(path)?;
            crate::mapping::Context {
                xrefs: serde_json::from_value(value.get("xrefs").cloned().unwrap_or_default())
                    .context("context.xrefs must map kinds to {crm id: erp id}")?,
            }
        }
        None => crate::mapping::Context::default(),
    };
    Ok((data, context))
}

/// One mapping file with its lookups, and the event and context to map (None: the file has
/// problems, printed).
fn one_mapping(
    file: &PathBuf,
    event: &PathBuf,
    context: Option<PathBuf>,
    config: Option<PathBuf>,
) -> anyhow::Result<Option<(Mapping, Lookups, serde_json::Value, crate::mapping::Context)>> {
    let (data, context) = event_and_context(event, context.as_ref())?;
    let Some((mappings, lookups)) = load_mappings(std::slice::from_ref(file), config)? else {
        return Ok(None);
    };
    let mapping = mappings.into_iter().next().expect("one file, one mapping");
    Ok(Some((mapping, lookups, data, context)))
}

fn mapping_bench(
    file: PathBuf,
    event: PathBuf,
    context: Option<PathBuf>,
    seconds: u64,
    config: Option<PathBuf>,
) -> anyhow::Result<ExitCode> {
    let Some((mapping, lookups, data, context)) = one_mapping(&file, &event, context, config)?
    else {
        return Ok(ExitCode::FAILURE);
    };
    let mapping = &mapping;
    let duration = std::time::Duration::from_secs(seconds.max(1));
    match crate::mapping::bench::bench(mapping, &lookups, &data, &context, duration) {
        Ok(measured) => {
            let validation = measured.validation.as_secs_f64() * 1e6;
            let schema = match mapping.checks {
                Some(_) => format!(
                    "its values are checked against the schema as the document is built; \
                     validating the whole document instead would take {validation:.2} µs"
                ),
                None => format!("validating the whole document takes {validation:.2} µs of it"),
            };
            println!(
                "{}: {:.0} mappings/s, {:.2} µs per mapping ({} runs in {:.1} s on one core; \
                 {schema})",
                mapping.flow,
                measured.per_second(),
                measured.micros_each(),
                measured.runs,
                measured.elapsed.as_secs_f64(),
            );
            println!(
                "floor, same run: parsing the event from JSON {:.2} µs, writing the document as \
                 JSON {:.2} µs",
                measured.parse.as_secs_f64() * 1e6,
                measured.serialise.as_secs_f64() * 1e6,
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(error) => {
            println!(
                "error [{}]: {error} (the event must map before it can be measured)",
                error.code
            );
            Ok(ExitCode::FAILURE)
        }
    }
}

fn mapping_run(
    file: PathBuf,
    event: PathBuf,
    context: Option<PathBuf>,
    config: Option<PathBuf>,
) -> anyhow::Result<ExitCode> {
    let Some((mapping, lookups, data, context)) = one_mapping(&file, &event, context, config)?
    else {
        return Ok(ExitCode::FAILURE);
    };
    match mapping.apply(&data, &lookups, &context) {
        Ok(document) => {
            println!("{}", serde_json::to_string_pretty(&document.body)?);
            Ok(ExitCode::SUCCESS)
        }
        Err(error) => {
            println!("error [{}]: {error}", error.code);
            Ok(ExitCode::FAILURE)
        }
    }
}

fn healthcheck(url: Option<String>, path: Option<PathBuf>) -> anyhow::Result<()> {
    let base = match url {
        Some(url) => url,
        None => {
            let (config, _) = Config::load(path.as_deref())?;
            format!("http://{}", config.listen)
        }
    };
    runtime()?.block_on(async {
        let response = reqwest::Client::new()
            .get(format!("{}/readyz", base.trim_end_matches('/')))
            .timeout(std::time::Duration::from_secs(5))
            .send()
            .await
            .context("handoff did not answer")?;
        anyhow::ensure!(
            response.status().is_success(),
            "not ready: {}",
            response.status()
        );
        println!("ready");
        Ok(())
    })
}

/// Completes on Ctrl-C or SIGTERM. The handlers are installed when this is called, not when
/// the future is first polled: a SIGTERM that comes right after "handoff is serving" (the
/// server's loop may not have polled its shutdown future yet) stops the service cleanly
/// instead of killing it.
fn shutdown_signal() -> impl std::future::Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    let (terminate, interrupt) = {
        use tokio::signal::unix::{SignalKind, signal};
        (
            signal(SignalKind::terminate()).ok(),
            signal(SignalKind::interrupt()).ok(),
        )
    };
    async move {
        #[cfg(unix)]
        {
            let wait = |signal: Option<tokio::signal::unix::Signal>| async move {
                match signal {
                    Some(mut signal) => {
                        signal.recv().await;
                    }
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = wait(terminate) => {},
                () = wait(interrupt) => {},
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
        tracing::info!("shutting down: finishing in-flight requests");
    }
}
