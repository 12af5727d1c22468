//! The orders flow built in Node-RED, the tool people use for this today: HTTP in, the Standard
//! Webhooks HMAC check and the mapping in a function node, an HTTP request to the same sink
//! (benches/nodered/flows.json). Nothing is durable: an event is gone if the process dies.
//! Node-RED is installed from npm into `target/nodered` on first use.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::Args;
use crate::client::Signed;
use crate::servers::{self, Spawned};

const VERSION: &str = "node-red@4.1.8";

pub async fn run(args: &Args, opportunities: &[Signed]) -> anyhow::Result<()> {
    let prefix = args.repo.join("target/nodered");
    let red = prefix.join("node_modules/node-red/red.js");
    if !red.exists() {
        println!("installing {VERSION} from npm into {} …", prefix.display());
        let status = Command::new("npm")
            .args(["install", "--silent", "--no-audit", "--no-fund", "--prefix"])
            .arg(&prefix)
            .arg(VERSION)
            .status()
            .context("run npm")?;
        if !status.success() {
            bail!("npm install {VERSION} failed");
        }
    }
    println!(
        "Node-RED ({VERSION}: HTTP in, HMAC check and mapping in a function node, HTTP request to the sink; nothing durable) …"
    );
    let sink = servers::spawn_self("--sink-server")?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let user_dir = servers::temp_dir()?.join("nodered");
    std::fs::create_dir_all(&user_dir)?;
    let settings = args
        .repo
        .join("benches/nodered/settings.js")
        .canonicalize()?;
    let child = Command::new("node")
        .arg(&red)
        .arg("--settings")
        .arg(&settings)
        .env("NODERED_PORT", port.to_string())
        .env("NODERED_USER_DIR", &user_dir)
        .env("LOADGEN_SECRET", &args.secret)
        .env("SINK_URL", sink.base())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .context("start node")?;
    let addr = format!("127.0.0.1:{port}");
    let nodered = Spawned::external(child, addr.clone());
    wait_listening(&addr, Duration::from_secs(60))?;
    crate::orders::through(args, &nodered, &sink, opportunities, "node-red").await?;
    let (rss, peak) = nodered.memory_mib();
    println!(
        "  memory (node-red): RSS {rss:.0} MiB, peak RSS {peak:.0} MiB; its user dir holds {:.1} MiB",
        servers::du_mib(&user_dir)
    );
    nodered.kill();
    sink.stop();
    let _ = std::fs::remove_dir_all(user_dir.parent().unwrap_or(Path::new("/nonexistent")));
    Ok(())
}

fn wait_listening(addr: &str, limit: Duration) -> anyhow::Result<()> {
    let start = Instant::now();
    while std::net::TcpStream::connect(addr).is_err() {
        if start.elapsed() > limit {
            bail!("Node-RED did not listen on {addr} within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}
