//! `handoff reconcile run|report` and `handoff resync`: reconciliation on a running handoff,
//! through its API. A run goes on in the service; the command shows a progress line and then
//! the counts per drift class.

use anyhow::bail;
use clap::Subcommand;
use serde_json::{Value, json};

use super::{Api, Target, text};

#[derive(Debug, Subcommand)]
pub enum ReconcileCommand {
    /// Compare a flow's source records, its target's records and what handoff delivered;
    /// sort them into drift classes; repair the safe ones with --repair safe (a flow's first
    /// run is always a dry run).
    Run {
        /// The flow (a mapping with a `reconcile:` block); without it, every such flow.
        #[arg(long)]
        flow: Option<String>,
        /// Compare the records' fields too, not only ids and versions.
        #[arg(long)]
        deep: bool,
        /// `safe`: repair the classes the flow's `reconcile.repair` lists.
        #[arg(long)]
        repair: Option<String>,
    },
    /// A run's counts and rows (the newest run without RUN).
    Report { run: Option<u64> },
}

pub fn reconcile(command: ReconcileCommand, target: Target) -> anyhow::Result<()> {
    let api = Api::new(&target)?;
    match command {
        ReconcileCommand::Run { flow, deep, repair } => {
            let flows = match flow {
                Some(flow) => vec![flow],
                None => reconciled_flows(&api)?,
            };
            if flows.is_empty() {
                bail!("no mapping in force has a `reconcile:` block");
            }
            for flow in flows {
                let started = api.post(
                    "/api/v1/reconcile/runs",
                    Some(json!({"flow": flow, "deep": deep, "repair": repair})),
                )?;
                let id = started["id"].as_u64().unwrap_or_default();
                let run = follow(&api, id)?;
                print_run(&run, &target, false);
                if run["state"] == "failed" {
                    bail!("run {id} of flow {flow} failed: {}", text(&run["error"]));
                }
            }
            Ok(())
        }
        ReconcileCommand::Report { run } => {
            let id = match run {
                Some(id) => id,
                None => {
                    let runs = api.get("/api/v1/reconcile/runs", &[("limit", "1".into())])?;
                    runs["runs"][0]["id"]
                        .as_u64()
                        .ok_or_else(|| anyhow::anyhow!("no reconciliation run yet"))?
                }
            };
            let run = api.get(&format!("/api/v1/reconcile/runs/{id}"), &[])?;
            print_run(&run, &target, true);
            Ok(())
        }
    }
}

/// The flows with a `reconcile:` block, as the service knows them (a bad one answers 400).
fn reconciled_flows(api: &Api) -> anyhow::Result<Vec<String>> {
    let mappings = api.get("/api/v1/mappings", &[])?;
    Ok(mappings["mappings"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|m| m["reconciled"] == true)
        .filter_map(|m| m["flow"].as_str().map(str::to_owned))
        .collect())
}

/// Polls run `id` until it has finished, with a progress line on a terminal.
fn follow(api: &Api, id: u64) -> anyhow::Result<Value> {
    use std::io::{IsTerminal, Write};
    let terminal = std::io::stderr().is_terminal();
    let started = std::time::Instant::now();
    let path = format!("/api/v1/reconcile/runs/{id}");
    loop {
        std::thread::sleep(std::time::Duration::from_millis(300));
        let run = api.get(&path, &[])?;
        if run["state"] != "running" {
            if terminal {
                eprint!("\r\x1b[2K");
            }
            return Ok(run);
        }
        if terminal {
            eprint!(
                "\r\x1b[2K{}: {}, {} compared… {} s",
                text(&run["flow"]),
                text(&run["phase"]),
                run["compared"],
                started.elapsed().as_secs()
            );
            let _ = std::io::stderr().flush();
        }
    }
}

fn print_run(run: &Value, target: &Target, rows: bool) {
    if target.json {
        println!("{}", serde_json::to_string_pretty(run).unwrap_or_default());
        return;
    }
    let mode = match (run["dry_run"] == true, run["repair"] == true) {
        (true, _) => "dry run",
        (false, true) => "repairing safe classes",
        (false, false) => "report only",
    };
    println!(
        "run {} of flow {}: {} ({mode}{}), {} source records compared, {} target records",
        run["id"],
        text(&run["flow"]),
        text(&run["state"]),
        if run["deep"] == true { ", deep" } else { "" },
        run["compared"],
        run["target_records"],
    );
    for (class, n) in run["counts"].as_object().into_iter().flatten() {
        println!("  {class:<18} {n}");
    }
    let verb = if run["dry_run"] == true {
        "would be repaired"
    } else {
        "repaired"
    };
    println!("  {} record(s) {verb}", run["repairs"]);
    if let Some(note) = run["note"].as_str() {
        println!("  note: {note}");
    }
    if let Some(error) = run["error"].as_str() {
        println!("  error: {error}");
    }
    if !rows {
        return;
    }
    for (n, row) in run["rows"].as_array().into_iter().flatten().enumerate() {
        println!(
            "  [{n}] {:<17} {:<24} {}{}",
            text(&row["class"]),
            row["record"]
                .as_str()
                .or(row["key"].as_str())
                .unwrap_or("-"),
            text(&row["why"]),
            row["action"]
                .as_str()
                .map(|a| format!(" [{a}]"))
                .unwrap_or_default()
        );
    }
}

pub fn resync(flow: String, record: String, target: Target) -> anyhow::Result<()> {
    let api = Api::new(&target)?;
    let answer = api.post(
        "/api/v1/reconcile/resync",
        Some(json!({"flow": flow, "record": record})),
    )?;
    if target.json {
        println!("{}", serde_json::to_string_pretty(&answer)?);
    } else {
        println!("{}", text(&answer["message"]));
    }
    Ok(())
}
