//! The sending side: pre-signed Standard Webhooks requests, driven over keep-alive HTTP/1.1
//! connections, with a latency report.

use std::time::{Duration, Instant};

use anyhow::Context;
use base64::Engine as _;
use bytes::Bytes;
use hmac::{Hmac, Mac};
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;
use sha2::Sha256;
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
    let authority = base
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned();
    let deadline = Instant::now() + duration;
    let per_worker = requests.len().div_ceil(concurrency).max(1);
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
