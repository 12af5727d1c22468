//! Load generator for the benchmarks in BENCHMARKS.md.
//!
//! ```text
//! cargo build --release
//! target/release/loadgen                    # acks: durable webhook acks, and a bare axum baseline
//! target/release/loadgen --flow orders      # won opportunities → sales orders at a loopback ERP
//! target/release/loadgen --flow orders --compare-nodered true   # + the same flow in Node-RED
//! target/release/loadgen --flow orders --rate 3500              # a steady offered load
//! target/release/loadgen --flow orders --postgres-url URL        # handoff on PostgreSQL
//! target/release/loadgen --flow orders --postgres-url URL --postgres-floor true   # its floor
//! target/release/loadgen --flow restart --store /tmp/r1m --kill true   # restart after SIGKILL
//! target/release/loadgen --flow restart     # restart with every order still queued
//! target/release/loadgen --flow dashboard --requests 1000000 --duration-secs 300
//! target/release/loadgen --flow tryton --requests 200 --accounts 8 --erp-concurrency 4
//! target/release/loadgen --flow catalog --requests 10000   # product backfill from Tryton
//! target/release/loadgen --target http://127.0.0.1:8080 --secret whsec_…   # an existing server
//! ```
//!
//! Each of `--concurrency` workers keeps one HTTP/1.1 keep-alive connection and sends its share
//! of the pre-signed requests back to back. A run is bounded by `--requests` and
//! `--duration-secs`, whichever comes first; every process it starts is stopped by its PID.

mod catalog;
mod client;
mod dashboard;
mod floor;
mod nodered;
mod orders;
mod servers;
mod tryton;

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};

const DEMO_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Flow {
    /// Durable acks only (the ingest benchmark), compared with a bare axum handler.
    Acks,
    /// Won opportunities delivered as sales orders to a loopback ERP sink.
    Orders,
    /// Orders queued behind a paused ERP, then a restart: how soon does delivery resume?
    Restart,
    /// A store of `--requests` jobs (2% dead letters, the rest queued): dashboard pages timed.
    Dashboard,
    /// Sales orders created in a real Tryton directly and through handoff: the overhead.
    Tryton,
    /// `--requests` products in a real Tryton backfilled into a CRM sink (product sync).
    Catalog,
}

#[derive(Debug, Parser)]
#[command(about = "Sends signed webhooks to handoff and reports throughput and latency")]
pub struct Args {
    #[arg(long, value_enum, default_value = "acks")]
    flow: Flow,
    /// Base URL of a running handoff (acks only); without it, handoff is spawned on a temporary
    /// data dir.
    #[arg(long)]
    target: Option<String>,
    /// The Standard Webhooks secret of the target's `crm` source.
    #[arg(long, default_value = DEMO_SECRET)]
    secret: String,
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Upper bound on requests sent (each body is distinct).
    #[arg(long, default_value_t = 400_000)]
    requests: usize,
    /// Orders: offer at most this many requests per second (a steady load) instead of as many
    /// as the server answers.
    #[arg(long)]
    rate: Option<f64>,
    /// Upper bound on the run's length.
    #[arg(long, default_value_t = 20)]
    duration_secs: u64,
    /// Approximate size of each body.
    #[arg(long, default_value_t = 2048)]
    body_bytes: usize,
    /// Also measure a bare baseline, same bodies and concurrency: for acks an axum handler that
    /// only answers 202; for orders a relay that answers 202 and posts each body to a sink
    /// (no journal, queue or mapping).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    compare_bare: bool,
    /// Orders: also run the same orders through the same flow built in Node-RED (installed
    /// from npm into target/nodered on first use; benches/nodered/), with the same bodies and
    /// sink.
    #[arg(long, default_value_t = false, action = clap::ArgAction::Set)]
    compare_nodered: bool,
    /// Acks: also route the events through the repo's mappings (the engine then works beside
    /// ingest, as in the orders flow); without it the server has no mappings and only journals.
    #[arg(long, default_value_t = false, action = clap::ArgAction::Set)]
    with_mappings: bool,
    /// Threads of the generator's own runtime (it shares the machine with the server).
    #[arg(long, default_value_t = 2)]
    client_threads: usize,
    /// Distinct CRM accounts the orders are spread over (orders and restart).
    #[arg(long, default_value_t = 2000)]
    accounts: usize,
    /// Deliveries in flight to the ERP sink (the connector's `concurrency`).
    #[arg(long, default_value_t = 64)]
    erp_concurrency: usize,
    /// The Tryton server of `--flow tryton` (tests/tryton/start_tryton.sh starts one).
    #[arg(long, default_value = "http://127.0.0.1:8069")]
    tryton_url: String,
    /// Restart: keep the store of queued orders in this directory; when it already holds one,
    /// skip the queueing and only time a restart on it (stopped after the first orders arrive,
    /// so the store stays nearly full for the next run).
    #[arg(long)]
    store: Option<PathBuf>,
    /// Run handoff on PostgreSQL (`[store] backend = "postgres"`) at this URL instead of its
    /// embedded store (orders flow; benches/postgres.sh starts a server and reads its WAL).
    #[arg(long)]
    postgres_url: Option<String>,
    /// Orders with `--postgres-url`: run the durable floor with its journal in a table there
    /// (floor.rs) instead of handoff: the least any service durable on PostgreSQL must do.
    #[arg(long, default_value_t = false, action = clap::ArgAction::Set)]
    postgres_floor: bool,
    /// Restart: stop handoff with SIGKILL instead of SIGTERM before the timed start, so the
    /// start is a recovery after a crash.
    #[arg(long, default_value_t = false, action = clap::ArgAction::Set)]
    kill: bool,
    /// The repository, for its mappings/ and schemas/.
    #[arg(long, default_value = ".")]
    repo: PathBuf,
    /// Internal: run the bare 202 server on this address.
    #[arg(long, hide = true)]
    bare_server: Option<String>,
    /// Internal: run the loopback ERP sink on this address.
    #[arg(long, hide = true)]
    sink_server: Option<String>,
    /// Internal: run the bare relay (the orders flow's baseline) on this address…
    #[arg(long, hide = true)]
    relay_server: Option<String>,
    /// … posting each body to this sink.
    #[arg(long, hide = true)]
    relay_to: Option<String>,
    /// Internal: run the durable floor (floor.rs) on this address, to `--relay-to`, journaling
    /// into this directory (`--relay-dir`).
    #[arg(long, hide = true)]
    durable_relay_server: Option<String>,
    #[arg(long, hide = true)]
    relay_dir: Option<PathBuf>,
    /// Internal: the durable floor journals into PostgreSQL at this URL instead.
    #[arg(long, hide = true)]
    relay_pg_url: Option<String>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if let Some(addr) = &args.bare_server {
        return servers::bare_server(addr);
    }
    if let Some(addr) = &args.sink_server {
        return servers::sink_server(addr);
    }
    if let (Some(addr), Some(to), Some(dir)) =
        (&args.durable_relay_server, &args.relay_to, &args.relay_dir)
    {
        return floor::durable_relay_server(
            addr,
            to,
            args.erp_concurrency,
            &args.repo,
            dir,
            args.relay_pg_url.as_deref(),
            &args.secret,
        );
    }
    if let (Some(addr), Some(to)) = (&args.relay_server, &args.relay_to) {
        return servers::relay_server(addr, to, args.erp_concurrency);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.client_threads)
        .enable_all()
        .build()?;
    runtime.block_on(async {
        match args.flow {
            Flow::Acks => acks(&args).await,
            Flow::Orders => orders::orders(&args).await,
            Flow::Restart => orders::restart(&args).await,
            Flow::Dashboard => dashboard::dashboard(&args).await,
            Flow::Tryton => tryton::compare(&args).await,
            Flow::Catalog => catalog::run(&args).await,
        }
    })
}

/// Distinct ~`body_bytes` opportunity bodies, signed up front.
fn presign(args: &Args) -> anyhow::Result<Vec<client::Signed>> {
    let ts = chrono::Utc::now().timestamp();
    let padding = "x".repeat(args.body_bytes.saturating_sub(400));
    (0..args.requests)
        .map(|n| {
            let body = serde_json::json!({
                "type": "opportunity.updated",
                "object": "Opportunity",
                "data": {
                    "Id": format!("006{:015}", n % 5000),
                    "AccountId": format!("001{:015}", n % 1000),
                    "Name": "Load test opportunity",
                    "StageName": "Closed Won",
                    "Amount": "15000.50",
                    "CurrencyIsoCode": "EUR",
                    "LastModifiedDate": "2026-11-20T09:15:00Z",
                    "Description": padding,
                }
            });
            client::sign(
                &args.secret,
                format!("msg_load_{ts}_{n}"),
                ts,
                body.to_string(),
            )
        })
        .collect()
}

async fn acks(args: &Args) -> anyhow::Result<()> {
    println!(
        "signing {} distinct bodies of ~{} bytes …",
        args.requests, args.body_bytes
    );
    let requests = presign(args)?;
    let duration = Duration::from_secs(args.duration_secs);
    if let Some(target) = &args.target {
        let report = client::load(target, &requests, args.concurrency, duration).await?;
        report.print("target");
        return Ok(());
    }
    let dir = servers::temp_dir()?;
    let config = dir.join("handoff.toml");
    let no_mappings = dir.join("no-mappings");
    std::fs::create_dir_all(&no_mappings)?;
    let mappings = match args.with_mappings {
        true => args.repo.join("mappings").canonicalize()?,
        false => no_mappings,
    };
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:0\"\ndata_dir = {:?}\nmappings_dir = {:?}\n[log]\nformat = \"json\"\nlevel = \"warn,handoff::cli=info,handoff::journal=info\"\n\
             [sources.crm]\npreset = \"standard_webhooks\"\nsecret_env = \"LOADGEN_SECRET\"\n\
             tolerance_secs = 3600\nobject_id = \"/data/Id\"\n\
             [[sources.crm.events]]\ntype = \"opportunity.won\"\nobject = \"Opportunity\"\n",
            dir.join("data").display().to_string(),
            mappings.display().to_string()
        ),
    )?;
    let handoff = servers::spawn_handoff(&config, &args.secret)?;
    let base = handoff.base();
    let load = client::load(&base, &requests, args.concurrency, duration);
    let report = handoff.cpu_per_request(load, |r| r.ok).await;
    handoff.stop();
    let report = report?;
    report.print("handoff");
    if args.compare_bare {
        let bare = servers::spawn_self("--bare-server")?;
        let base = bare.base();
        let load = client::load(&base, &requests, args.concurrency, duration);
        let bare_report = bare.cpu_per_request(load, |r| r.ok).await;
        bare.stop();
        let bare_report = bare_report?;
        bare_report.print("bare");
        println!(
            "   ratio: handoff reaches {:.0}% of the bare axum handler's rate",
            100.0 * report.rate() / bare_report.rate()
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
