//! The dashboard benchmark: a store with `--requests` jobs (2% of them dead letters, the rest
//! queued behind a paused ERP), then the overview and filtered lists timed, HTML and JSON.

use std::time::{Duration, Instant};

use crate::Args;
use crate::client;
use crate::orders::{Bench, erp_jobs, opportunities_in, print_memory};
use crate::servers;

/// Times of each page: the first request, then this many more.
const REPEATS: usize = 30;

pub async fn dashboard(args: &Args) -> anyhow::Result<()> {
    let ts = chrono::Utc::now().timestamp();
    let dead = (args.requests / 50).max(1);
    println!(
        "signing {} won opportunities ({dead} broken) …",
        args.requests
    );
    let broken = opportunities_in(args, ts, 0..dead, true)?;
    let queued = opportunities_in(args, ts, dead..args.requests, false)?;
    let bench = Bench::prepare(args)?;
    let handoff = servers::spawn_handoff(&bench.config, &args.secret)?;
    bench.load_accounts(&handoff, args, ts).await?;

    let limit = Duration::from_secs(args.duration_secs);
    let report = client::load(&handoff.base(), &broken, args.concurrency, limit).await?;
    report.print("broken orders");
    bench
        .wait_overview(
            &handoff,
            "broken orders dead",
            report.ok as u64,
            Duration::from_secs(300),
            |overview| overview["waiting"]["erp"]["dead"].as_u64().unwrap_or(0),
        )
        .await?;
    bench.pause_erp(&handoff).await?;
    let loaded = client::load(&handoff.base(), &queued, args.concurrency, limit).await?;
    loaded.print("queued orders");
    let jobs = bench
        .wait_overview(
            &handoff,
            "orders queued",
            (report.ok + loaded.ok) as u64,
            Duration::from_secs(600),
            erp_jobs,
        )
        .await?;
    println!("  {jobs} jobs in the store besides the accounts' customers");
    print_memory("loaded", &handoff);

    let base = handoff.base();
    let order = format!("006{:015}", args.requests / 2);
    let account = format!("001{:015}", 7);
    let mut pages = vec![
        ("overview page", format!("{base}/ui")),
        ("overview JSON", format!("{base}/api/v1/overview")),
        ("dead letters page", format!("{base}/ui/dead")),
        ("dead letters JSON", format!("{base}/api/v1/dead-letters")),
        (
            "events page, state=dead",
            format!("{base}/ui/events?state=dead"),
        ),
        ("jobs, state=dead", format!("{base}/api/v1/jobs?state=dead")),
        (
            "jobs, state=ready",
            format!("{base}/api/v1/jobs?state=ready"),
        ),
        (
            "events page, order id",
            format!("{base}/ui/events?record={order}"),
        ),
        (
            "jobs, order id",
            format!("{base}/api/v1/jobs?record={order}"),
        ),
        (
            "jobs, account id",
            format!("{base}/api/v1/jobs?record={account}"),
        ),
        (
            "jobs, flow",
            format!("{base}/api/v1/jobs?flow=opportunity_to_sales_order"),
        ),
        (
            "jobs, state=done (scan)",
            format!("{base}/api/v1/jobs?state=done"),
        ),
    ];
    let second =
        bench.get(format!("{base}/api/v1/jobs?state=ready")).await?["next_before"].as_u64();
    if let Some(before) = second {
        pages.push((
            "jobs, state=ready, page 2",
            format!("{base}/api/v1/jobs?state=ready&before={before}"),
        ));
    }
    println!(
        "  {:<28} {:>9} {:>9} {:>9} {:>9} {:>8}",
        "page", "first ms", "p50 ms", "p95 ms", "max ms", "bytes"
    );
    for (name, url) in pages {
        time_page(&bench, name, &url).await?;
    }
    handoff.stop();
    bench.finish();
    Ok(())
}

/// Fetches `url` 1 + REPEATS times and prints the times.
async fn time_page(bench: &Bench, name: &str, url: &str) -> anyhow::Result<()> {
    let mut times = Vec::with_capacity(REPEATS);
    let mut first = 0.0;
    let mut bytes = 0;
    for n in 0..=REPEATS {
        let start = Instant::now();
        let response = bench.http.get(url).send().await?.error_for_status()?;
        bytes = response.bytes().await?.len();
        let ms = start.elapsed().as_secs_f64() * 1000.0;
        if n == 0 {
            first = ms;
        } else {
            times.push(ms);
        }
    }
    times.sort_by(f64::total_cmp);
    let at = |p: f64| client::nearest_rank(&times, p).unwrap_or(0.0);
    println!(
        "  {name:<28} {first:>9.1} {:>9.1} {:>9.1} {:>9.1} {bytes:>8}",
        at(0.5),
        at(0.95),
        at(1.0)
    );
    Ok(())
}
