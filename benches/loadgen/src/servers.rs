//! The processes a run starts: handoff itself, a bare axum baseline, and a loopback ERP sink.
//! Each runs in its own process (the sink and the baseline are this binary with a hidden flag),
//! prints `{"listen":"…"}` on stdout and is stopped by its PID.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::{Context, bail};
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post, put};
use bytes::Bytes;
use serde_json::{Value, json};

/// A spawned server: the process, its address, and a reader of its closing report.
pub struct Spawned {
    pub child: Child,
    pub addr: String,
    report: Option<Closing>,
}

/// A run that fails half way must not leave its servers behind: they are killed by PID.
impl Drop for Spawned {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl Spawned {
    /// A server this binary did not write (Node-RED), already listening on `addr`.
    pub fn external(child: Child, addr: String) -> Spawned {
        Spawned {
            child,
            addr,
            report: None,
        }
    }

    pub fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Resident and peak resident memory in MiB, from /proc.
    pub fn memory_mib(&self) -> (f64, f64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find(|line| line.starts_with(name))
                .and_then(|line| line.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
                .map_or(0.0, |kb| kb / 1024.0)
        };
        (field("VmRSS:"), field("VmHWM:"))
    }

    /// Runs `work` and prints the server's CPU time per request it reports as done (µs).
    pub async fn cpu_per_request<T>(
        &self,
        work: impl std::future::Future<Output = anyhow::Result<T>>,
        done: impl Fn(&T) -> usize,
    ) -> anyhow::Result<T> {
        let pid = self.child.id();
        let server0 = cpu_secs(pid);
        let generator0 = cpu_secs(std::process::id());
        let result = work.await?;
        let (user, system) = cpu_secs(pid) - server0;
        let generator = cpu_secs(std::process::id()) - generator0;
        let n = done(&result).max(1) as f64 / 1e6;
        println!(
            "     cpu: {:.1} µs per request in the server (user {:.1}, system {:.1}); {:.1} in the generator",
            (user + system) / n,
            user / n,
            system / n,
            (generator.0 + generator.1) / n
        );
        Ok(result)
    }

    /// Bytes the server has written to storage, from /proc (MiB).
    pub fn written_mib(&self) -> f64 {
        written_bytes(self.child.id()) as f64 / 1_048_576.0
    }

    /// The server's CPU time and bytes written so far.
    pub fn usage(&self) -> Usage {
        let pid = self.child.id();
        Usage {
            cpu: cpu_secs(pid),
            written: written_bytes(pid),
        }
    }

    /// Stops the server with SIGKILL: a crash, with no clean shutdown.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Stops the server with SIGTERM and prints its closing report, if it has one.
    pub fn stop(mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
        if let Some(Ok(Some(line))) = self.report.take().map(|report| report.join()) {
            println!("  server: {line}");
        }
    }
}

/// What a server has used so far: CPU time and bytes written to storage.
#[derive(Clone, Copy)]
pub struct Usage {
    cpu: Cpu,
    written: u64,
}

impl Usage {
    /// Prints what the server used since `earlier` per unit of `n` (delivered orders).
    pub fn print_since(&self, earlier: &Usage, n: u64, what: &str) {
        let (user, system) = self.cpu - earlier.cpu;
        let n = n.max(1) as f64;
        println!(
            "     per {what}: {:.0} µs of CPU (user {:.0}, system {:.0}), {:.2} KB written to disk",
            (user + system) * 1e6 / n,
            user * 1e6 / n,
            system * 1e6 / n,
            (self.written - earlier.written) as f64 / 1024.0 / n
        );
    }
}

fn written_bytes(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/io"))
        .unwrap_or_default()
        .lines()
        .find_map(|line| line.strip_prefix("write_bytes: "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

/// Disk space a directory tree takes (allocated blocks, as `du` counts), in MiB.
pub fn du_mib(dir: &Path) -> f64 {
    use std::os::unix::fs::MetadataExt;
    let mut bytes = 0u64;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            match entry.metadata() {
                Ok(meta) if meta.is_dir() => stack.push(entry.path()),
                Ok(meta) => bytes += meta.blocks() * 512,
                Err(_) => {}
            }
        }
    }
    bytes as f64 / 1_048_576.0
}

/// CPU time process `pid` has used so far, user and system, in seconds (from /proc).
fn cpu_secs(pid: u32) -> Cpu {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // After the command name (which may hold spaces) utime and stime are the 12th and 13th fields.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or(Vec::new(), |(_, rest)| rest.split_whitespace().collect());
    // SAFETY: sysconf only reads a system constant.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let field = |n: usize| {
        fields
            .get(n)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
            / ticks
    };
    Cpu(field(11), field(12))
}

/// User and system CPU seconds.
#[derive(Clone, Copy)]
struct Cpu(f64, f64);

impl std::ops::Sub for Cpu {
    type Output = (f64, f64);
    fn sub(self, earlier: Cpu) -> (f64, f64) {
        (self.0 - earlier.0, self.1 - earlier.1)
    }
}

pub fn temp_dir() -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("handoff-loadgen-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

fn sibling(name: &str) -> anyhow::Result<PathBuf> {
    Ok(std::env::current_exe()?.with_file_name(name))
}

/// Starts `handoff serve` on `config`; waits until it listens.
pub fn spawn_handoff(config: &Path, secret: &str) -> anyhow::Result<Spawned> {
    spawn_handoff_with(config, secret, &[])
}

/// Like [`spawn_handoff`], with more environment variables (connector secrets).
pub fn spawn_handoff_with(
    config: &Path,
    secret: &str,
    env: &[(&str, &str)],
) -> anyhow::Result<Spawned> {
    let mut child = Command::new(sibling("handoff")?)
        .args(["serve", "--config"])
        .arg(config)
        .env("LOADGEN_SECRET", secret)
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .spawn()
        .context("start handoff (build it with cargo build --release first)")?;
    read_listen_line(child_stdout(&mut child)?).map(|(addr, report)| Spawned {
        child,
        addr,
        report: Some(report),
    })
}

/// Starts this binary with a hidden server flag (`--bare-server` or `--sink-server`).
pub fn spawn_self(flag: &str) -> anyhow::Result<Spawned> {
    spawn_self_with(flag, &[])
}

/// Like [`spawn_self`], with more arguments.
pub fn spawn_self_with(flag: &str, more: &[&str]) -> anyhow::Result<Spawned> {
    let mut child = Command::new(std::env::current_exe()?)
        .args([flag, "127.0.0.1:0"])
        .args(more)
        .stdout(Stdio::piped())
        .spawn()?;
    read_listen_line(child_stdout(&mut child)?).map(|(addr, report)| Spawned {
        child,
        addr,
        report: Some(report),
    })
}

fn child_stdout(child: &mut Child) -> anyhow::Result<std::process::ChildStdout> {
    child.stdout.take().context("no stdout")
}

type Closing = std::thread::JoinHandle<Option<String>>;

/// Reads the child's stdout until it names its address (`"listen":"…"`), echoing its
/// start-up timings.
fn read_listen_line(stdout: std::process::ChildStdout) -> anyhow::Result<(String, Closing)> {
    use std::io::BufRead;
    let mut lines = std::io::BufReader::new(stdout).lines();
    for line in lines.by_ref() {
        let line = line?;
        // Start-up timings (store, schedule, journal) when the server logs them.
        if line.contains("\"handoff::app\"") {
            println!("  server: {line}");
        }
        if let Some(rest) = line.split("\"listen\":\"").nth(1) {
            let addr = rest.split('"').next().unwrap_or_default().to_owned();
            // Keep the server's closing report (queue log and journal statistics).
            // LOADGEN_SERVER_LOG=path keeps the rest of the server's log there.
            let mut kept = std::env::var_os("LOADGEN_SERVER_LOG")
                .and_then(|path| std::fs::File::create(path).ok());
            let report = std::thread::spawn(move || {
                let closing: Vec<String> = lines
                    .map_while(Result::ok)
                    .inspect(|line| {
                        if let Some(file) = &mut kept {
                            use std::io::Write;
                            let _ = writeln!(file, "{line}");
                        }
                    })
                    .filter(|line| line.contains("journal closed") || line.contains("queue closed"))
                    .collect();
                (!closing.is_empty()).then(|| closing.join("\n  server: "))
            });
            return Ok((addr, report));
        }
    }
    bail!("the server exited before listening")
}

/// Serves `app` on `addr` on a runtime of its own, announcing the address.
pub fn serve(addr: &str, app: axum::Router) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        println!("{{\"listen\":\"{}\"}}", listener.local_addr()?);
        axum::serve(listener, app).await?;
        Ok(())
    })
}

/// The baseline: an axum handler that reads the body and answers 202, nothing else.
pub fn bare_server(addr: &str) -> anyhow::Result<()> {
    let app = axum::Router::new().route(
        "/hooks/{source}",
        post(|_body: Bytes| async { StatusCode::ACCEPTED }),
    );
    serve(addr, app)
}

/// The orders flow's baseline: answers 202 at once and posts each body to the sink's
/// `/orders` (at most `concurrency` at a time, each under its own `Idempotency-Key`), with no
/// journal, queue or mapping: what two HTTP hops cost on this machine.
pub fn relay_server(addr: &str, to: &str, concurrency: usize) -> anyhow::Result<()> {
    let relay = Arc::new(Relay {
        http: reqwest::Client::new(),
        url: format!("{to}/orders"),
        slots: tokio::sync::Semaphore::new(concurrency),
        sent: AtomicU64::new(0),
    });
    let app = axum::Router::new()
        .route("/hooks/{source}", post(relay_one))
        .with_state(relay);
    serve(addr, app)
}

struct Relay {
    http: reqwest::Client,
    url: String,
    slots: tokio::sync::Semaphore,
    sent: AtomicU64,
}

async fn relay_one(State(relay): State<Arc<Relay>>, body: Bytes) -> StatusCode {
    tokio::spawn(async move {
        let _slot = relay.slots.acquire().await;
        let n = relay.sent.fetch_add(1, Ordering::Relaxed);
        post_order(&relay.http, &relay.url, format!("relay-{n}"), body).await;
    });
    StatusCode::ACCEPTED
}

/// POSTs one order's JSON to the sink under an `Idempotency-Key` and reads the answer (a
/// reference server's delivery; what the sink answers is not its concern).
pub async fn post_order(
    http: &reqwest::Client,
    url: &str,
    key: String,
    body: impl Into<reqwest::Body>,
) {
    let sent = http
        .post(url)
        .header("idempotency-key", key)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await;
    if let Ok(response) = sent {
        let _ = response.bytes().await;
    }
}

/// What the ERP sink has received.
struct Sink {
    started: Instant,
    customers: Mutex<HashSet<String>>,
    /// Products by code, as last written.
    products: Mutex<std::collections::BTreeMap<String, Value>>,
    orders: AtomicU64,
    duplicates: AtomicU64,
    keys: Mutex<HashSet<String>>,
    /// Orders received per second since the sink started.
    per_second: Mutex<Vec<u64>>,
    first_ms: AtomicU64,
    last_ms: AtomicU64,
}

/// A loopback ERP (and CRM catalog: `PATCH /products/{code}`, products counted once each,
/// listed by `GET /products?after=&limit=` and removed by `DELETE /products/{code}`):
/// `PUT /customers/{code}` and `POST /orders` answer at once with an id, the
/// `Idempotency-Key` of every order is remembered (a replay counts as a duplicate and gets the
/// same answer), and `GET /stats` reports what arrived when.
pub fn sink_server(addr: &str) -> anyhow::Result<()> {
    let sink = Arc::new(Sink {
        started: Instant::now(),
        customers: Mutex::default(),
        products: Mutex::default(),
        orders: AtomicU64::new(0),
        duplicates: AtomicU64::new(0),
        keys: Mutex::default(),
        per_second: Mutex::default(),
        first_ms: AtomicU64::new(u64::MAX),
        last_ms: AtomicU64::new(0),
    });
    let app = axum::Router::new()
        .route("/customers/{code}", put(customer))
        .route(
            "/products/{code}",
            axum::routing::patch(product).delete(delete_product),
        )
        .route("/products", get(list_products))
        .route("/orders", post(order))
        .route("/stats", get(stats))
        .with_state(sink);
    serve(addr, app)
}

async fn customer(
    State(sink): State<Arc<Sink>>,
    axum::extract::Path(code): axum::extract::Path<String>,
) -> Json<Value> {
    let id = format!("C-{code}");
    sink.customers.lock().unwrap().insert(code);
    Json(json!({ "id": id }))
}

async fn product(
    State(sink): State<Arc<Sink>>,
    axum::extract::Path(code): axum::extract::Path<String>,
    Json(body): Json<Value>,
) -> Json<Value> {
    let id = format!("P-{code}");
    sink.products.lock().unwrap().insert(code, body);
    Json(json!({ "id": id }))
}

async fn delete_product(
    State(sink): State<Arc<Sink>>,
    axum::extract::Path(code): axum::extract::Path<String>,
) -> StatusCode {
    match sink.products.lock().unwrap().remove(&code) {
        Some(_) => StatusCode::NO_CONTENT,
        None => StatusCode::NOT_FOUND,
    }
}

/// A page of products after `after` (by code), `limit` of them (default 500).
async fn list_products(
    State(sink): State<Arc<Sink>>,
    axum::extract::Query(query): axum::extract::Query<std::collections::HashMap<String, String>>,
) -> Json<Value> {
    let after = query.get("after").cloned().unwrap_or_default();
    let limit: usize = query
        .get("limit")
        .and_then(|l| l.parse().ok())
        .unwrap_or(500);
    let products = sink.products.lock().unwrap();
    let page: Vec<Value> = products
        .range::<String, _>((std::ops::Bound::Excluded(&after), std::ops::Bound::Unbounded))
        .take(limit + 1)
        .map(|(code, body)| {
            json!({"id": format!("P-{code}"), "code": code, "Name": body["Name"], "IsActive": body["IsActive"]})
        })
        .collect();
    let next = (page.len() > limit).then(|| {
        format!(
            "/products?after={}&limit={limit}",
            page[limit - 1]["code"].as_str().unwrap_or_default()
        )
    });
    Json(json!({"products": &page[..page.len().min(limit)], "next": next}))
}

async fn order(
    State(sink): State<Arc<Sink>>,
    headers: HeaderMap,
    _body: Bytes,
) -> (StatusCode, Json<Value>) {
    let key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    if !sink.keys.lock().unwrap().insert(key) {
        sink.duplicates.fetch_add(1, Ordering::Relaxed);
        return (StatusCode::OK, Json(json!({ "id": "replayed" })));
    }
    let n = sink.orders.fetch_add(1, Ordering::Relaxed) + 1;
    let ms = sink.started.elapsed().as_millis() as u64;
    sink.first_ms.fetch_min(ms, Ordering::Relaxed);
    sink.last_ms.fetch_max(ms, Ordering::Relaxed);
    {
        let mut per_second = sink.per_second.lock().unwrap();
        let second = (ms / 1000) as usize;
        if per_second.len() <= second {
            per_second.resize(second + 1, 0);
        }
        per_second[second] += 1;
    }
    (
        StatusCode::CREATED,
        Json(json!({ "id": format!("SO-{n}") })),
    )
}

async fn stats(State(sink): State<Arc<Sink>>) -> Json<Value> {
    Json(json!({
        "customers": sink.customers.lock().unwrap().len(),
        "products": sink.products.lock().unwrap().len(),
        "orders": sink.orders.load(Ordering::Relaxed),
        "duplicates": sink.duplicates.load(Ordering::Relaxed),
        "first_ms": sink.first_ms.load(Ordering::Relaxed),
        "last_ms": sink.last_ms.load(Ordering::Relaxed),
        "now_ms": sink.started.elapsed().as_millis() as u64,
        "per_second": *sink.per_second.lock().unwrap(),
    }))
}
