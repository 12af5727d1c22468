//! The delivery benchmarks: signed won-opportunity webhooks in, sales orders out to a loopback
//! ERP sink, through the repo's real mappings and the REST connector.
//!
//! - `orders`: accounts first (so every order finds its customer), then opportunities for the
//!   run's length; reports ack latency, the rate orders reached the sink, duplicates, memory.
//! - `restart`: the same with the ERP connector paused, so every order stays queued; then handoff
//!   is stopped and started again on the same store, and the run reports how long until orders
//!   flow again and how long until all are delivered.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Value, json};

use crate::Args;
use crate::client::{self, Signed};
use crate::servers::{self, Spawned};

/// A prepared run: its data dir, config file, and the sink it delivers to.
pub struct Bench {
    dir: PathBuf,
    /// The directory was given (`--store`): keep it.
    keep: bool,
    pub config: PathBuf,
    sink: Spawned,
    pub http: reqwest::Client,
}

impl Bench {
    pub fn prepare(args: &Args) -> anyhow::Result<Bench> {
        let dir = match &args.store {
            Some(dir) => dir.clone(),
            None => servers::temp_dir()?,
        };
        std::fs::create_dir_all(&dir)?;
        let sink = servers::spawn_self("--sink-server")?;
        let connectors = dir.join("connectors");
        std::fs::create_dir_all(&connectors)?;
        std::fs::write(
            connectors.join("erp.yaml"),
            format!(
                "kind: rest\nrole: erp\ndescription: loopback ERP sink (loadgen)\n\
                 concurrency: {}\nbase_url: {}\nidempotency_header: Idempotency-Key\n\
                 operations:\n  upsert_customer: {{ method: PUT, path: \"/customers/{{match}}\", id: /id }}\n  \
                 create_sales_order: {{ method: POST, path: /orders, id: /id }}\n",
                args.erp_concurrency,
                sink.base()
            ),
        )?;
        std::fs::write(connectors.join("crm.yaml"), "kind: sandbox\nrole: crm\n")?;
        let config = write_config(&dir, &connectors, args)?;
        Ok(Bench {
            dir,
            keep: args.store.is_some(),
            config,
            sink,
            http: reqwest::Client::new(),
        })
    }

    /// Signs the opportunities, starts the sink and handoff, and delivers the accounts.
    pub async fn start(args: &Args) -> anyhow::Result<(Bench, Spawned, Vec<Signed>)> {
        let ts = chrono::Utc::now().timestamp();
        println!("signing {} won opportunities …", args.requests);
        let opportunities = opportunities(args, ts)?;
        let bench = Bench::prepare(args)?;
        let url = args.postgres_url.clone().unwrap_or_default();
        let handoff = servers::spawn_handoff_with(
            &bench.config,
            &args.secret,
            &[("LOADGEN_DATABASE_URL", &url)],
        )?;
        bench.load_accounts(&handoff, args, ts).await?;
        Ok((bench, handoff, opportunities))
    }

    pub async fn get(&self, url: String) -> anyhow::Result<Value> {
        get_json(&self.http, url).await
    }

    async fn sink_stats(&self) -> anyhow::Result<Value> {
        sink_stats(&self.http, &self.sink).await
    }

    /// Polls the sink until `field` reaches `count`, printing progress every 5 s.
    pub async fn wait_for(
        &self,
        field: &str,
        count: u64,
        limit: Duration,
    ) -> anyhow::Result<Value> {
        wait_for(&self.http, &self.sink, field, count, limit).await
    }

    /// Sends one signed account per customer and waits until the sink has them all.
    pub async fn load_accounts(
        &self,
        handoff: &Spawned,
        args: &Args,
        ts: i64,
    ) -> anyhow::Result<()> {
        let accounts = (0..args.accounts)
            .map(|n| {
                let body = json!({
                    "type": "account.updated", "object": "Account",
                    "data": {
                        "Id": account_id(n), "Name": format!("Load Account {n}"),
                        "CurrencyIsoCode": "EUR", "Payment_Terms__c": "Net 30",
                        "LastModifiedDate": "2026-11-20T09:00:00Z",
                    }
                });
                client::sign(
                    &args.secret,
                    format!("msg_acc_{ts}_{n}"),
                    ts,
                    body.to_string(),
                )
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let report = client::load(&handoff.base(), &accounts, 16, Duration::from_secs(60)).await?;
        report.print("accounts");
        self.wait_for("customers", args.accounts as u64, Duration::from_secs(120))
            .await?;
        Ok(())
    }

    /// Pauses the ERP connector, so orders stay queued.
    pub async fn pause_erp(&self, handoff: &Spawned) -> anyhow::Result<()> {
        self.http
            .post(format!("{}/api/v1/connectors/erp/pause", handoff.base()))
            .send()
            .await?
            .error_for_status()?;
        Ok(())
    }

    /// Polls handoff's overview until `read` of it reaches `count` (`what` names it in the
    /// error after `limit`); returns the last reading.
    pub async fn wait_overview(
        &self,
        handoff: &Spawned,
        what: &str,
        count: u64,
        limit: Duration,
        read: impl Fn(&Value) -> u64,
    ) -> anyhow::Result<u64> {
        let start = Instant::now();
        loop {
            let got = read(
                &self
                    .get(format!("{}/api/v1/overview", handoff.base()))
                    .await?,
            );
            if got >= count {
                return Ok(got);
            }
            if start.elapsed() > limit {
                bail!("only {got} of {count} {what} in {limit:?}");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    pub fn finish(self) {
        self.sink.stop();
        if !self.keep {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

async fn get_json(http: &reqwest::Client, url: String) -> anyhow::Result<Value> {
    Ok(http
        .get(url)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?)
}

async fn sink_stats(http: &reqwest::Client, sink: &Spawned) -> anyhow::Result<Value> {
    get_json(http, format!("{}/stats", sink.base())).await
}

/// Polls `sink` until `field` reaches `count`, printing progress every 5 s.
async fn wait_for(
    http: &reqwest::Client,
    sink: &Spawned,
    field: &str,
    count: u64,
    limit: Duration,
) -> anyhow::Result<Value> {
    let start = Instant::now();
    let mut said = Instant::now();
    loop {
        let stats = sink_stats(http, sink).await?;
        let got = stats[field].as_u64().unwrap_or(0);
        if got >= count {
            return Ok(stats);
        }
        if start.elapsed() > limit {
            bail!("only {got} of {count} {field} reached the sink in {limit:?}");
        }
        if said.elapsed() > Duration::from_secs(5) {
            println!("  … {got} of {count} {field} delivered");
            said = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Sends `bodies` to `base` for the run's length at its concurrency; prints the report.
async fn send_for_the_run(
    args: &Args,
    base: &str,
    bodies: &[Signed],
    name: &str,
) -> anyhow::Result<client::Report> {
    let duration = Duration::from_secs(args.duration_secs);
    let report = client::load_at(base, bodies, args.concurrency, duration, args.rate).await?;
    report.print(name);
    Ok(report)
}

/// A handoff config on `dir` with the repo's mappings and schemas, `connectors`, and the `crm`
/// source signed with Standard Webhooks; `LOADGEN_EXTRA_TOML` is appended (tables of settings
/// to try, as `[sync]\nengine_nice = 10`).
pub fn write_config(
    dir: &std::path::Path,
    connectors: &std::path::Path,
    args: &Args,
) -> anyhow::Result<PathBuf> {
    let repo = |name: &str| -> anyhow::Result<String> {
        let path = args.repo.join(name);
        let path = path
            .canonicalize()
            .with_context(|| format!("{} (run from the repo or pass --repo)", path.display()))?;
        Ok(path.display().to_string())
    };
    let config = dir.join("handoff.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:0\"\ndata_dir = {data:?}\nmappings_dir = {mappings:?}\n\
             connectors_dir = {connectors:?}\nschemas_dir = {schemas:?}\n\
             [log]\nformat = \"json\"\nlevel = \"warn,handoff::cli=info,handoff::journal=info,handoff::app=info,handoff::queue=info\"\n\
             [sources.crm]\npreset = \"standard_webhooks\"\nsecret_env = \"LOADGEN_SECRET\"\n\
             tolerance_secs = 3600\nobject_id = \"/data/Id\"\nversion = \"/data/LastModifiedDate\"\n\
             [[sources.crm.events]]\ntype = \"opportunity.won\"\nobject = \"Opportunity\"\n\
             when = {{ \"/object\" = \"Opportunity\", \"/data/StageName\" = \"Closed Won\" }}\n\
             [[sources.crm.events]]\ntype = \"account.updated\"\nobject = \"Account\"\n\
             when = {{ \"/object\" = \"Account\" }}\n",
            data = dir.join("data").display().to_string(),
            mappings = repo("mappings")?,
            connectors = connectors.display().to_string(),
            schemas = repo("schemas")?,
        ) + match args.postgres_url {
            Some(_) => {
                "[store]\nbackend = \"postgres\"\n[store.postgres]\nurl_env = \"LOADGEN_DATABASE_URL\"\n"
            }
            None => "",
        } + &std::env::var("LOADGEN_EXTRA_TOML").unwrap_or_default(),
    )?;
    Ok(config)
}

fn account_id(n: usize) -> String {
    format!("001{n:015}")
}

/// `requests` distinct signed won opportunities with two lines each, spread over the accounts.
fn opportunities(args: &Args, ts: i64) -> anyhow::Result<Vec<Signed>> {
    opportunities_in(args, ts, 0..args.requests, false)
}

/// Signed won opportunities numbered `range`; `broken` ones lack a line's product code, so
/// their mapping fails and they become dead letters when delivered.
pub fn opportunities_in(
    args: &Args,
    ts: i64,
    range: std::ops::Range<usize>,
    broken: bool,
) -> anyhow::Result<Vec<Signed>> {
    let padding = "x".repeat(args.body_bytes.saturating_sub(900));
    let code = if broken {
        Value::Null
    } else {
        json!("SKU-001")
    };
    range
        .map(|n| {
            let body = json!({
                "type": "opportunity.won", "object": "Opportunity",
                "data": {
                    "Id": format!("006{n:015}"),
                    "AccountId": account_id(n % args.accounts),
                    "Name": format!("Load opportunity {n}"),
                    "StageName": "Closed Won", "CloseDate": "2026-11-20",
                    "Amount": "1234.50", "CurrencyIsoCode": "EUR",
                    "PO_Number__c": format!("PO-{n}"), "Payment_Terms__c": "Net 45",
                    "Payment_Verified__c": true,
                    "LastModifiedDate": "2026-11-20T09:15:00Z",
                    "OpportunityLineItems": [
                        { "ProductCode": code, "Name": "Widget", "Quantity": 10, "UnitPrice": "19.99" },
                        { "ProductCode": "SKU-002", "Name": "Bolt pack", "Quantity": 5, "UnitPrice": "4.50", "Discount": 10 },
                    ],
                    "Description": padding,
                }
            });
            client::sign(&args.secret, format!("msg_opp_{ts}_{n}"), ts, body.to_string())
        })
        .collect()
}

/// Orders per second at the sink: min, median and max over the whole seconds between the first
/// and the last delivery.
fn sustained(stats: &Value) -> (u64, u64, u64) {
    let per_second: Vec<u64> = stats["per_second"]
        .as_array()
        .map(|seconds| seconds.iter().filter_map(Value::as_u64).collect())
        .unwrap_or_default();
    let first = (stats["first_ms"].as_u64().unwrap_or(0) / 1000) as usize + 1;
    let last = (stats["last_ms"].as_u64().unwrap_or(0) / 1000) as usize;
    let mut inner: Vec<u64> = per_second
        .get(first..last)
        .map(<[u64]>::to_vec)
        .unwrap_or_default();
    inner.sort_unstable();
    match (inner.first(), inner.last()) {
        (Some(min), Some(max)) => (*min, inner[inner.len() / 2], *max),
        _ => (0, 0, 0),
    }
}

fn print_delivery(stats: &Value, acked: usize) {
    let orders = stats["orders"].as_u64().unwrap_or(0);
    let first = stats["first_ms"].as_u64().unwrap_or(0);
    let last = stats["last_ms"].as_u64().unwrap_or(0);
    let secs = (last.saturating_sub(first)) as f64 / 1000.0;
    let (min, median, max) = sustained(stats);
    println!(
        "  orders: {orders} of {acked} acked reached the sink, {} duplicates, lost {}; \
         {secs:.1} s from first to last = {:.0} orders/s; per whole second min {min} median {median} max {max}",
        stats["duplicates"],
        acked as u64 - orders.min(acked as u64),
        orders as f64 / secs.max(0.001),
    );
}

pub fn print_memory(name: &str, handoff: &Spawned) {
    let (rss, peak) = handoff.memory_mib();
    println!(
        "  memory ({name}): RSS {rss:.0} MiB, peak RSS {peak:.0} MiB; written to disk {:.0} MiB",
        handoff.written_mib()
    );
}

pub async fn orders(args: &Args) -> anyhow::Result<()> {
    if let (true, Some(url)) = (args.postgres_floor, &args.postgres_url) {
        let opportunities = opportunities(args, chrono::Utc::now().timestamp())?;
        return durable_floor(args, &opportunities, Some(url)).await;
    }
    let (bench, handoff, opportunities) = Bench::start(args).await?;
    let before = handoff.usage();
    let report = send_for_the_run(args, &handoff.base(), &opportunities, "orders").await?;
    let at_last_ack = bench.sink_stats().await?;
    println!(
        "  delivered while acks flowed: {} of {} ({:.0} orders/s)",
        at_last_ack["orders"].as_u64().unwrap_or(0),
        report.ok,
        at_last_ack["orders"].as_u64().unwrap_or(0) as f64
            / report.elapsed.as_secs_f64().max(0.001)
    );
    let stats = bench
        .wait_for("orders", report.ok as u64, Duration::from_secs(900))
        .await;
    let stats = match stats {
        Ok(stats) => stats,
        Err(error) => {
            println!("  {error}");
            bench.sink_stats().await?
        }
    };
    print_delivery(&stats, report.ok);
    print_drain(&at_last_ack, &stats);
    let delivered = stats["orders"].as_u64().unwrap_or(0);
    handoff
        .usage()
        .print_since(&before, delivered, "delivered order");
    print_memory("end of run", &handoff);
    // Upkeep runs every 5 s: give it a few rounds to snapshot and reclaim, then look.
    tokio::time::sleep(Duration::from_secs(12)).await;
    println!(
        "  data dir after the backlog drained: {:.1} MiB (journal {:.1}, queue log {:.1}, sled {:.1})",
        servers::du_mib(&bench.dir.join("data")),
        servers::du_mib(&bench.dir.join("data/journal")),
        servers::du_mib(&bench.dir.join("data/queue")),
        servers::du_mib(&bench.dir.join("data/index")),
    );
    handoff.stop();
    bench.finish();
    if args.compare_bare {
        relay_baseline(args, &opportunities).await?;
    }
    if args.compare_nodered {
        crate::nodered::run(args, &opportunities).await?;
    }
    Ok(())
}

/// How fast the backlog left at the last ack drained (from the sink's own clock).
fn print_drain(at_last_ack: &Value, end: &Value) {
    let then = at_last_ack["orders"].as_u64().unwrap_or(0);
    let now = end["orders"].as_u64().unwrap_or(0);
    let from_ms = at_last_ack["now_ms"].as_u64().unwrap_or(0);
    let to_ms = end["last_ms"].as_u64().unwrap_or(0);
    if now > then && to_ms > from_ms {
        println!(
            "  backlog at the last ack: {} orders; it drained at {:.0} orders/s",
            now - then,
            (now - then) as f64 * 1000.0 / (to_ms - from_ms) as f64
        );
    }
}

/// The floor under the orders flow: the same bodies through a relay that answers 202 and posts
/// each one to a fresh sink, with nothing in between (servers::relay_server).
async fn relay_baseline(args: &Args, opportunities: &[Signed]) -> anyhow::Result<()> {
    println!("bare relay (202, then POST to a sink; no journal, queue or mapping) …");
    let sink = servers::spawn_self("--sink-server")?;
    let concurrency = args.erp_concurrency.to_string();
    let relay = servers::spawn_self_with(
        "--relay-server",
        &[
            "--relay-to",
            &sink.base(),
            "--erp-concurrency",
            &concurrency,
        ],
    )?;
    through(args, &relay, &sink, opportunities, "relay").await?;
    relay.stop();
    sink.stop();
    durable_floor(args, opportunities, None).await
}

/// The durable floor (floor.rs): HMAC, one fsynced append before the 202 (or one committed
/// insert into PostgreSQL at `postgres`), the repo's mapping, one POST per order. What any
/// durable, mapping relay must spend here, measured in this run.
async fn durable_floor(
    args: &Args,
    opportunities: &[Signed],
    postgres: Option<&str>,
) -> anyhow::Result<()> {
    match postgres {
        Some(_) => println!(
            "durable floor on PostgreSQL (HMAC, committed insert before 202, the mapping, POST, delete; no queue state) …"
        ),
        None => println!(
            "durable floor (HMAC, fsynced append before 202, the mapping, POST; no queue) …"
        ),
    }
    let dir = servers::temp_dir()?;
    let sink = servers::spawn_self("--sink-server")?;
    let concurrency = args.erp_concurrency.to_string();
    let dir_arg = dir.to_string_lossy();
    let repo_arg = args.repo.to_string_lossy();
    let sink_base = sink.base();
    let mut floor_args = vec![
        "--relay-to",
        &sink_base,
        "--erp-concurrency",
        &concurrency,
        "--relay-dir",
        &dir_arg,
        "--secret",
        &args.secret,
        "--repo",
        &repo_arg,
    ];
    if let Some(url) = postgres {
        floor_args.extend(["--relay-pg-url", url]);
    }
    let floor = servers::spawn_self_with("--durable-relay-server", &floor_args)?;
    through(args, &floor, &sink, opportunities, "floor").await?;
    if postgres.is_none() {
        println!(
            "  written by the floor: {:.1} MiB in its journal",
            servers::du_mib(&dir)
        );
    }
    floor.stop();
    sink.stop();
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// Sends the opportunities through `server` (a relay or another tool in handoff's place), waits
/// until `sink` has every acked order, and prints the delivery and the server's CPU and bytes
/// written per order.
pub async fn through(
    args: &Args,
    server: &Spawned,
    sink: &Spawned,
    opportunities: &[Signed],
    name: &str,
) -> anyhow::Result<()> {
    let before = server.usage();
    let report = send_for_the_run(args, &server.base(), opportunities, name).await?;
    let http = reqwest::Client::new();
    let stats = wait_for(
        &http,
        sink,
        "orders",
        report.ok as u64,
        Duration::from_secs(300),
    )
    .await?;
    print_delivery(&stats, report.ok);
    let delivered = stats["orders"].as_u64().unwrap_or(0);
    server
        .usage()
        .print_since(&before, delivered, "delivered order");
    Ok(())
}

pub async fn restart(args: &Args) -> anyhow::Result<()> {
    let prepared = args
        .store
        .as_ref()
        .is_some_and(|dir| dir.join("data").exists());
    let (bench, queued, acked) = if prepared {
        let bench = Bench::prepare(args)?;
        println!("  reusing the store in {}", bench.dir.display());
        (bench, None, None)
    } else {
        let (bench, acked, queued) = queue_behind_paused_erp(args).await?;
        (bench, Some(queued), Some(acked))
    };

    let started = Instant::now();
    let handoff = servers::spawn_handoff(&bench.config, &args.secret)?;
    let listening = started.elapsed();
    bench
        .wait_for("orders", 1, Duration::from_secs(120))
        .await?;
    let first = started.elapsed();
    let queued = queued.map_or("the".to_owned(), |n| n.to_string());
    println!(
        "  restart with {queued} queued jobs: listening after {:.2} s, first order at the sink after {:.2} s",
        listening.as_secs_f64(),
        first.as_secs_f64()
    );
    print_memory("just restarted", &handoff);
    if let Some(acked) = acked.filter(|_| !bench.keep) {
        let stats = bench
            .wait_for("orders", acked as u64, Duration::from_secs(900))
            .await?;
        print_delivery(&stats, acked);
        print_memory("all delivered", &handoff);
    }
    stop(handoff, args);
    bench.finish();
    Ok(())
}

/// Stops handoff cleanly, or with SIGKILL when the run asks for a crash (`--kill`).
fn stop(handoff: Spawned, args: &Args) {
    match args.kill {
        true => {
            println!("  handoff killed (SIGKILL)");
            handoff.kill();
        }
        false => handoff.stop(),
    }
}

/// Delivers the accounts, pauses the ERP, sends the opportunities, waits until every acked one
/// is a queued job, and stops handoff: (the bench, orders acked, jobs queued).
async fn queue_behind_paused_erp(args: &Args) -> anyhow::Result<(Bench, usize, u64)> {
    let (bench, handoff, opportunities) = Bench::start(args).await?;
    bench.pause_erp(&handoff).await?;
    let report = send_for_the_run(args, &handoff.base(), &opportunities, "orders").await?;
    let queued = bench
        .wait_overview(
            &handoff,
            "orders queued",
            report.ok as u64,
            Duration::from_secs(600),
            erp_jobs,
        )
        .await?;
    println!("  {queued} jobs queued for the paused ERP");
    print_memory("all queued", &handoff);
    stop(handoff, args);
    Ok((bench, report.ok, queued))
}

/// The ERP connector's jobs per state in the overview (dead letters included).
pub fn erp_jobs(overview: &Value) -> u64 {
    overview["waiting"]["erp"]
        .as_object()
        .map(|states| states.values().filter_map(Value::as_u64).sum())
        .unwrap_or(0)
}
