//! The sending side: pre-signed Standard Webhooks requests, driven over keep-alive HTTP/1.1
//! connections, with a latency report. Like wrk, it writes each request as bytes and reads only
//! the status line, `content-length` and body of the answer, so the generator takes as little
//! of the machine it shares with the server as it can (BENCHMARKS.md).

use std::time::{Duration, Instant};

use std::io::Write as _;

use anyhow::{Context, bail};
use base64::Engine as _;
use bytes::{Bytes, BytesMut};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One signed request: (headers, body).
pub type Signed = (Vec<(&'static str, String)>, Bytes);

/// Signs `body` as Standard Webhooks message `id` with a `whsec_…` secret.
pub fn sign(secret: &str, id: String, ts: i64, body: String) -> anyhow::Result<Signed> {
    let key = base64::engine::general_purpose::STANDARD
        .decode(secret.trim_start_matches("whsec_"))
        .context("the secret is not whsec_ + base64")?;
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).expect("any key length");
    mac.update(format!("{id}.{ts}.{body}").as_bytes());
    let sig = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    let headers = vec![
        ("content-type", "application/json".to_owned()),
        ("webhook-id", id),
        ("webhook-timestamp", ts.to_string()),
        ("webhook-signature", format!("v1,{sig}")),
    ];
    Ok((headers, Bytes::from(body)))
}

pub struct Report {
    pub sent: usize,
    pub ok: usize,
    pub failed: usize,
    pub elapsed: Duration,
    pub latencies_us: Vec<u32>,
    /// (ms from the start of the run when the request was written, its latency in µs), in the
    /// order sent per connection.
    pub timeline: Vec<(u32, u32)>,
}

/// The value at fraction `p` (0–1) of sorted `values`, nearest rank.
pub fn nearest_rank<T: Copy>(values: &[T], p: f64) -> Option<T> {
    let last = values.len().checked_sub(1)?;
    values.get((last as f64 * p).round() as usize).copied()
}

impl Report {
    pub fn rate(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64()
    }

    pub fn percentile(&self, p: f64) -> f64 {
        nearest_rank(&self.latencies_us, p).map_or(0.0, |us| f64::from(us) / 1000.0)
    }

    pub fn print(&self, name: &str) {
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

/// Sends `requests` to `POST {base}/hooks/crm` over `concurrency` connections, until all are sent
/// or `duration` has passed.
pub async fn load(
    base: &str,
    requests: &[Signed],
    concurrency: usize,
    duration: Duration,
) -> anyhow::Result<Report> {
    load_at(base, requests, concurrency, duration, None).await
}

/// Like [`load`], at most `rate` requests per second in all when given (each connection keeps
/// its share of the pace).
pub async fn load_at(
    base: &str,
    requests: &[Signed],
    concurrency: usize,
    duration: Duration,
    rate: Option<f64>,
) -> anyhow::Result<Report> {
    let authority = base
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned();
    let deadline = Instant::now() + duration;
    let per_worker = requests.len().div_ceil(concurrency).max(1);
    let start = Instant::now();
    let wall_start = std::time::SystemTime::now();
    let mut workers = Vec::new();
    for chunk in requests.chunks(per_worker) {
        let chunk = chunk.to_vec();
        let authority = authority.clone();
        let every = rate.map(|rate| Duration::from_secs_f64(concurrency as f64 / rate));
        workers.push(tokio::spawn(async move {
            worker(&authority, chunk, deadline, every, start).await
        }));
    }
    let mut report = Report {
        sent: 0,
        ok: 0,
        failed: 0,
        elapsed: Duration::ZERO,
        latencies_us: Vec::with_capacity(requests.len()),
        timeline: Vec::with_capacity(requests.len()),
    };
    for worker in workers {
        let (ok, failed, timeline) = worker.await??;
        report.ok += ok;
        report.failed += failed;
        report.sent += ok + failed;
        report
            .latencies_us
            .extend(timeline.iter().map(|(_, us)| *us));
        report.timeline.extend(timeline);
    }
    report.elapsed = start.elapsed();
    report.latencies_us.sort_unstable();
    if let Ok(path) = std::env::var("LOADGEN_ACKS_CSV") {
        write_timeline(&path, &report.timeline, wall_start)?;
    }
    Ok(report)
}

async fn worker(
    authority: &str,
    requests: Vec<Signed>,
    deadline: Instant,
    every: Option<Duration>,
    start: Instant,
) -> anyhow::Result<(usize, usize, Vec<(u32, u32)>)> {
    let paced_from = tokio::time::Instant::now();
    let mut stream = TcpStream::connect(authority).await?;
    stream.set_nodelay(true)?;
    let (mut ok, mut failed) = (0, 0);
    let mut latencies = Vec::with_capacity(requests.len());
    let mut out = Vec::new();
    let mut input = BytesMut::with_capacity(16 * 1024);
    for (n, (headers, body)) in requests.into_iter().enumerate() {
        if let Some(every) = every {
            tokio::time::sleep_until(paced_from + every * n as u32).await;
        }
        if Instant::now() >= deadline {
            break;
        }
        out.clear();
        write!(out, "POST /hooks/crm HTTP/1.1\r\nhost: {authority}\r\n")?;
        for (name, value) in headers {
            write!(out, "{name}: {value}\r\n")?;
        }
        write!(out, "content-length: {}\r\n\r\n", body.len())?;
        out.extend_from_slice(&body);
        let started = Instant::now();
        stream.write_all(&out).await?;
        let status = read_response(&mut stream, &mut input).await?;
        latencies.push((
            u32::try_from(started.duration_since(start).as_millis()).unwrap_or(u32::MAX),
            u32::try_from(started.elapsed().as_micros()).unwrap_or(u32::MAX),
        ));
        if (200..300).contains(&status) {
            ok += 1;
        } else {
            failed += 1;
        }
    }
    Ok((ok, failed, latencies))
}

/// Writes `unix ms when sent,latency µs` per request to `path` (with `LOADGEN_ACKS_CSV`), in the
/// order sent, to line slow acks up with what else happened then (the server's log, disk stats).
fn write_timeline(
    path: &str,
    timeline: &[(u32, u32)],
    start: std::time::SystemTime,
) -> anyhow::Result<()> {
    let start_ms = start
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    let mut sorted = timeline.to_vec();
    sorted.sort_unstable();
    let mut out = String::from("sent_unix_ms,latency_us\n");
    for (ms, us) in sorted {
        out.push_str(&format!("{},{us}\n", start_ms + u128::from(ms)));
    }
    std::fs::write(path, out).with_context(|| format!("writing {path}"))
}

/// Reads one HTTP/1.1 response with a `content-length` body (what axum sends for the answers
/// measured here) and returns its status; what follows it stays in `input`.
async fn read_response(stream: &mut TcpStream, input: &mut BytesMut) -> anyhow::Result<u16> {
    loop {
        if let Some(end) = input.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = std::str::from_utf8(&input[..end]).context("response head is not text")?;
            let status = head
                .get(9..12)
                .and_then(|code| code.parse::<u16>().ok())
                .with_context(|| format!("not an HTTP/1.1 status line: {head:.40}"))?;
            let length = head
                .lines()
                .find_map(|line| {
                    let (name, value) = line.split_once(':')?;
                    name.eq_ignore_ascii_case("content-length")
                        .then(|| value.trim().parse::<usize>().ok())?
                })
                .context("response without content-length")?;
            let whole = end + 4 + length;
            while input.len() < whole {
                if stream.read_buf(input).await? == 0 {
                    bail!("connection closed inside a response");
                }
            }
            let _ = input.split_to(whole);
            return Ok(status);
        }
        if stream.read_buf(input).await? == 0 {
            bail!("connection closed before a response");
        }
    }
}
