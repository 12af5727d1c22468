//! Load generator: distinct pre-signed Standard Webhooks bodies against `POST /hooks/crm`.
//!
//! ```text
//! cargo build --release
//! target/release/loadgen                       # spawns handoff and a bare axum server, compares
//! target/release/loadgen --target http://127.0.0.1:8080 --secret whsec_…   # an existing server
//! ```
//!
//! Each of `--concurrency` workers keeps one HTTP/1.1 keep-alive connection and sends its share
//! of the pre-signed requests back to back. The run is bounded by `--requests` and
//! `--duration-secs`, whichever comes first. It prints requests/s and latency percentiles.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use base64::Engine as _;
use bytes::Bytes;
use clap::Parser;
use hmac::{Hmac, Mac};
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;
use sha2::Sha256;
use tokio::net::TcpStream;

const DEMO_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

#[derive(Debug, Parser)]
#[command(about = "Sends signed webhooks to handoff and reports throughput and latency")]
struct Args {
    /// Base URL of a running handoff; without it, handoff is spawned on a temporary data dir.
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
    /// Upper bound on the run's length.
    #[arg(long, default_value_t = 20)]
    duration_secs: u64,
    /// Approximate size of each body.
    #[arg(long, default_value_t = 2048)]
    body_bytes: usize,
    /// Also measure a bare axum handler that only answers 202 (when spawning).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    compare_bare: bool,
    /// Threads of the generator's own runtime (it shares the machine with the server).
    #[arg(long, default_value_t = 2)]
    client_threads: usize,
    /// Internal: run the bare 202 server on this address.
    #[arg(long, hide = true)]
    bare_server: Option<String>,
}

struct Report {
    sent: usize,
    ok: usize,
    failed: usize,
    elapsed: Duration,
    latencies_us: Vec<u32>,
}

impl Report {
    fn rate(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64()
    }
    fn percentile(&self, p: f64) -> f64 {
        if self.latencies_us.is_empty() {
            return 0.0;
        }
        let index = ((self.latencies_us.len() as f64 - 1.0) * p).round() as usize;
        f64::from(self.latencies_us[index]) / 1000.0
    }
    fn print(&self, name: &str) {
        println!(
            "{name:>8}: {ok} ok, {failed} failed of {sent} in {secs:.1} s = {rate:.0} req/s; \
             latency ms p50 {p50:.2}  p90 {p90:.2}  p99 {p99:.2}  p99.9 {p999:.2}  max {max:.2}",
            ok = self.ok,
            failed = self.failed,
            sent = self.sent,
            secs = self.elapsed.as_secs_f64(),
            rate = self.rate(),
            p50 = self.percentile(0.50),
            p90 = self.percentile(0.90),
            p99 = self.percentile(0.99),
            p999 = self.percentile(0.999),
            max = self.percentile(1.0),
        );
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if let Some(addr) = &args.bare_server {
        return bare_server(addr);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.client_threads)
        .enable_all()
        .build()?;
    runtime.block_on(run(args))
}

async fn run(args: Args) -> anyhow::Result<()> {
    println!(
        "signing {} distinct bodies of ~{} bytes …",
        args.requests, args.body_bytes
    );
    let requests = presign(&args)?;
    if let Some(target) = &args.target {
        let report = load(target, &requests, &args).await?;
        report.print("target");
        return Ok(());
    }
    let dir = tempfile_dir()?;
    let handoff = spawn_handoff(&dir)?;
    let report = load(&format!("http://{}", handoff.1), &requests, &args).await;
    stop(handoff);
    let report = report?;
    report.print("handoff");
    if args.compare_bare {
        let bare = spawn_bare()?;
        let bare_report = load(&format!("http://{}", bare.1), &requests, &args).await;
        stop(bare);
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

/// One signed request: (headers, body).
type Signed = (Vec<(&'static str, String)>, Bytes);

fn presign(args: &Args) -> anyhow::Result<Vec<Signed>> {
    let key = base64::engine::general_purpose::STANDARD
        .decode(args.secret.trim_start_matches("whsec_"))
        .context("--secret is not whsec_ + base64")?;
    let ts = chrono::Utc::now().timestamp();
    let padding = "x".repeat(args.body_bytes.saturating_sub(400));
    Ok((0..args.requests)
        .map(|n| {
            let id = format!("msg_load_{ts}_{n}");
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
            })
            .to_string();
            let mut mac = Hmac::<Sha256>::new_from_slice(&key).expect("any key length");
            mac.update(format!("{id}.{ts}.{body}").as_bytes());
            let sig = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
            let headers = vec![
                ("content-type", "application/json".to_owned()),
                ("webhook-id", id),
                ("webhook-timestamp", ts.to_string()),
                ("webhook-signature", format!("v1,{sig}")),
            ];
            (headers, Bytes::from(body))
        })
        .collect())
}

async fn load(base: &str, requests: &[Signed], args: &Args) -> anyhow::Result<Report> {
    let authority = base
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned();
    let deadline = Instant::now() + Duration::from_secs(args.duration_secs);
    let per_worker = requests.len().div_ceil(args.concurrency);
    let start = Instant::now();
    let mut workers = Vec::new();
    for chunk in requests.chunks(per_worker) {
        let chunk = chunk.to_vec();
        let authority = authority.clone();
        workers.push(tokio::spawn(async move {
            worker(&authority, chunk, deadline).await
        }));
    }
    let mut report = Report {
        sent: 0,
        ok: 0,
        failed: 0,
        elapsed: Duration::ZERO,
        latencies_us: Vec::with_capacity(requests.len()),
    };
    for worker in workers {
        let (ok, failed, latencies) = worker.await??;
        report.ok += ok;
        report.failed += failed;
        report.sent += ok + failed;
        report.latencies_us.extend(latencies);
    }
    report.elapsed = start.elapsed();
    report.latencies_us.sort_unstable();
    Ok(report)
}

async fn worker(
    authority: &str,
    requests: Vec<Signed>,
    deadline: Instant,
) -> anyhow::Result<(usize, usize, Vec<u32>)> {
    let stream = TcpStream::connect(authority).await?;
    stream.set_nodelay(true)?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    let (mut ok, mut failed) = (0, 0);
    let mut latencies = Vec::with_capacity(requests.len());
    for (headers, body) in requests {
        if Instant::now() >= deadline {
            break;
        }
        let mut request = Request::post("/hooks/crm").header("host", authority);
        for (name, value) in headers {
            request = request.header(name, value);
        }
        let request = request.body(Full::new(body))?;
        let started = Instant::now();
        sender.ready().await?;
        let response = sender.send_request(request).await?;
        let status = response.status();
        response.into_body().collect().await?;
        latencies.push(u32::try_from(started.elapsed().as_micros()).unwrap_or(u32::MAX));
        if status.is_success() {
            ok += 1;
        } else {
            failed += 1;
        }
    }
    Ok((ok, failed, latencies))
}

fn tempfile_dir() -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("handoff-loadgen-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

fn sibling(name: &str) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    Ok(exe.with_file_name(name))
}

/// Starts `handoff serve` on a fresh data dir; waits until it listens.
fn spawn_handoff(dir: &std::path::Path) -> anyhow::Result<Spawned> {
    let config = dir.join("handoff.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:0\"\ndata_dir = {:?}\n[log]\nformat = \"json\"\nlevel = \"warn,handoff::cli=info,handoff::journal=info\"\n\
             [sources.crm]\npreset = \"standard_webhooks\"\nsecret_env = \"LOADGEN_SECRET\"\n\
             tolerance_secs = 3600\nobject_id = \"/data/Id\"\n\
             [[sources.crm.events]]\ntype = \"opportunity.won\"\nobject = \"Opportunity\"\n",
            dir.join("data").display().to_string()
        ),
    )?;
    let mut child = Command::new(sibling("handoff")?)
        .args(["serve", "--config"])
        .arg(&config)
        .env("LOADGEN_SECRET", DEMO_SECRET)
        .stdout(Stdio::piped())
        .spawn()
        .context("start handoff (build it with cargo build --release first)")?;
    let (addr, report) = read_listen_line(&mut child)?;
    Ok((child, addr, report))
}

fn spawn_bare() -> anyhow::Result<Spawned> {
    let mut child = Command::new(std::env::current_exe()?)
        .args(["--bare-server", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .spawn()?;
    let (addr, report) = read_listen_line(&mut child)?;
    Ok((child, addr, report))
}

/// A spawned server: the process, its address, and a reader of its closing report.
type Spawned = (Child, String, std::thread::JoinHandle<Option<String>>);

/// Reads the child's stdout until it names its address (`"listen":"…"`).
fn read_listen_line(
    child: &mut Child,
) -> anyhow::Result<(String, std::thread::JoinHandle<Option<String>>)> {
    use std::io::BufRead;
    let stdout = child.stdout.take().context("no stdout")?;
    let mut lines = std::io::BufReader::new(stdout).lines();
    for line in lines.by_ref() {
        let line = line?;
        if let Some(rest) = line.split("\"listen\":\"").nth(1) {
            let addr = rest.split('"').next().unwrap_or_default().to_owned();
            // Keep the server's closing report (journal batch statistics).
            let report = std::thread::spawn(move || {
                lines
                    .map_while(Result::ok)
                    .find(|line| line.contains("journal closed"))
            });
            return Ok((addr, report));
        }
    }
    bail!("the server exited before listening")
}

/// Stops the server with SIGTERM and prints its closing report, if it has one.
fn stop((mut child, _, report): Spawned) {
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
    let _ = child.wait();
    if let Ok(Some(line)) = report.join() {
        println!("  server: {line}");
    }
}

/// The baseline: an axum handler that reads the body and answers 202, nothing else.
fn bare_server(addr: &str) -> anyhow::Result<()> {
    use axum::routing::post;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let app = axum::Router::new().route(
            "/hooks/{source}",
            post(|_body: Bytes| async { axum::http::StatusCode::ACCEPTED }),
        );
        let listener = tokio::net::TcpListener::bind(addr).await?;
        println!("{{\"listen\":\"{}\"}}", listener.local_addr()?);
        axum::serve(listener, app).await?;
        Ok(())
    })
}
