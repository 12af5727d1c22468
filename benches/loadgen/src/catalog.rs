//! The product backfill benchmark: `--requests` products in a real Tryton (made once, kept for
//! later runs), then `handoff products backfill` through a handoff whose ERP is that Tryton and
//! whose CRM is the loopback sink (`PATCH /products/{code}`): how long the dry run and the real
//! run take, and how fast the products reach the CRM. Then reconciliation of that flow over all
//! of them: a deep pass with nothing to repair, and one after 1% of the CRM's products were
//! deleted, which creates them again.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Value, json};

use crate::Args;
use crate::servers;

/// The code prefix of the benchmark's products.
const PREFIX: &str = "BENCH-";
/// Templates created per call.
const BATCH: usize = 50;

async fn call(
    rpc: &handoff::adapters::tryton::rpc::Rpc,
    method: &str,
    params: Vec<Value>,
) -> anyhow::Result<Value> {
    rpc.call(method, params)
        .await
        .map_err(|f| anyhow::anyhow!("{method}: {}", f.message))
}

/// Makes sure Tryton has `count` products coded `BENCH-00000`…; returns how many it made.
async fn ensure_products(args: &Args, count: usize) -> anyhow::Result<usize> {
    let rpc = crate::tryton::rpc(args);
    let have = call(
        &rpc,
        "model.product.product.search_count",
        vec![json!([["code", "like", format!("{PREFIX}%")]])],
    )
    .await?
    .as_u64()
    .unwrap_or(0) as usize;
    if have >= count {
        return Ok(0);
    }
    let unit = crate::tryton::first_id(&rpc, "product.uom", json!([["name", "=", "Unit"]])).await?;
    let goods = crate::tryton::first_id(
        &rpc,
        "product.category",
        json!([["name", "=", "Goods"], ["accounting", "=", true]]),
    )
    .await?;
    let started = Instant::now();
    for first in (have..count).step_by(BATCH) {
        let templates: Vec<Value> = (first..count.min(first + BATCH))
            .map(|n| {
                json!({"name": format!("Benchmark product {n}"), "type": "goods",
                       "default_uom": unit, "sale_uom": unit, "salable": true,
                       "list_price": {"__class__": "Decimal", "decimal": format!("{}.{:02}", 1 + n % 500, n % 100)},
                       "account_category": goods,
                       "products": [["create", [{"suffix_code": format!("{PREFIX}{n:05}")}]]]})
            })
            .collect();
        call(
            &rpc,
            "model.product.template.create",
            vec![json!(templates)],
        )
        .await?;
        eprint!(
            "\r  creating products in Tryton: {} of {count}",
            first + BATCH
        );
    }
    eprintln!();
    println!(
        "  made {} products in Tryton in {:.1} s",
        count - have,
        started.elapsed().as_secs_f64()
    );
    Ok(count - have)
}

fn write_setup(args: &Args, sink: &str) -> anyhow::Result<std::path::PathBuf> {
    let dir = servers::temp_dir()?;
    let (mappings, connectors) = (dir.join("mappings"), dir.join("connectors"));
    std::fs::create_dir_all(mappings.join("lookups"))?;
    std::fs::create_dir_all(&connectors)?;
    let mapping = std::fs::read_to_string(
        args.repo
            .join("mappings/examples/product_to_salesforce_product.yaml"),
    )
    .context("run from the repo or pass --repo")?;
    // The benchmark's products may have been made moments ago: none is "in flight".
    std::fs::write(
        mappings.join("product_to_salesforce_product.yaml"),
        mapping.replace("in_flight_secs: 300", "in_flight_secs: 0"),
    )?;
    std::fs::write(
        connectors.join("erp.yaml"),
        format!(
            "kind: tryton\nrole: erp\nbase_url: {}\n\
             auth: {{ basic: {{ user_env: TRYTON_USER, password_env: TRYTON_PASSWORD }} }}\n\
             tryton: {{ database: crm, poll_every_secs: 0 }}\n",
            args.tryton_url
        ),
    )?;
    std::fs::write(
        connectors.join("crm.yaml"),
        format!(
            "kind: rest\nrole: crm\nbase_url: {sink}\nconcurrency: {}\n\
             operations:\n  upsert_product: {{ method: PATCH, path: \"/products/{{match}}\", id: /id }}\n  \
             list_products: {{ method: GET, path: \"/products?limit=500\", list: {{ items: /products, next: /next, id: /id, key: /code }} }}\n",
            args.erp_concurrency
        ),
    )?;
    let config = dir.join("handoff.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:0\"\ndata_dir = {:?}\nmappings_dir = {:?}\nconnectors_dir = {:?}\n\
             schemas_dir = {:?}\n[log]\nformat = \"json\"\nlevel = \"warn,handoff::cli=info\"\n",
            dir.join("data").display().to_string(),
            mappings.display().to_string(),
            connectors.display().to_string(),
            args.repo
                .join("schemas")
                .canonicalize()?
                .display()
                .to_string(),
        ),
    )?;
    Ok(config)
}

/// Runs a backfill and waits for its report; returns it and how long it took.
async fn backfill(
    http: &reqwest::Client,
    base: &str,
    dry_run: bool,
) -> anyhow::Result<(Value, f64)> {
    let started = Instant::now();
    let path = format!("{base}/api/v1/connectors/erp/products/backfill");
    let answer = http
        .post(format!("{path}?dry_run={dry_run}"))
        .send()
        .await?;
    if !answer.status().is_success() {
        bail!("backfill: {} {}", answer.status(), answer.text().await?);
    }
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let run: Value = http.get(&path).send().await?.json().await?;
        match run["state"].as_str() {
            Some("running") => continue,
            Some("done") => return Ok((run["report"].clone(), started.elapsed().as_secs_f64())),
            _ => bail!("backfill failed: {run}"),
        }
    }
}

pub async fn run(args: &Args) -> anyhow::Result<()> {
    let count = args.requests;
    println!(
        "product backfill of {count} products from Tryton at {}",
        args.tryton_url
    );
    ensure_products(args, count).await?;
    let sink = servers::spawn_self("--sink-server")?;
    let config = write_setup(args, &sink.base())?;
    let handoff = servers::spawn_handoff_with(
        &config,
        &args.secret,
        &[
            ("TRYTON_USER", "admin"),
            ("TRYTON_PASSWORD", "admin-secret"),
        ],
    )?;
    let http = reqwest::Client::new();
    let (preview, dry_secs) = backfill(&http, &handoff.base(), true).await?;
    let products = preview["products"].as_u64().unwrap_or(0);
    println!(
        "  dry run: {products} products and {} prices read in {dry_secs:.1} s ({:.0} products/s)",
        preview["prices"],
        products as f64 / dry_secs
    );
    let usage = handoff.usage();
    let started = Instant::now();
    let (report, real_secs) = backfill(&http, &handoff.base(), false).await?;
    println!(
        "  backfill: {} product events and {} price events journaled in {real_secs:.1} s",
        report["products_journaled"], report["prices_journaled"]
    );
    let deadline = Instant::now() + Duration::from_secs(args.duration_secs.max(600));
    loop {
        let stats: Value = http
            .get(format!("{}/stats", sink.base()))
            .send()
            .await?
            .json()
            .await?;
        let arrived = stats["products"].as_u64().unwrap_or(0);
        if arrived >= products {
            break;
        }
        if Instant::now() > deadline {
            bail!("only {arrived} of {products} products reached the CRM sink");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let total = started.elapsed().as_secs_f64();
    println!(
        "  all {products} products in the CRM {total:.1} s after the backfill started ({:.0} products/s end to end)",
        products as f64 / total
    );
    handoff.usage().print_since(&usage, products, "product");
    reconciliation(&http, &handoff, &sink.base(), products).await?;
    handoff.stop();
    Ok(())
}

/// Runs a reconciliation of the product flow and waits for it; returns it and its seconds.
async fn reconcile(http: &reqwest::Client, base: &str, deep: bool) -> anyhow::Result<(Value, f64)> {
    let started = Instant::now();
    let answer = http
        .post(format!("{base}/api/v1/reconcile/runs"))
        .json(&json!({"flow": "product_to_salesforce_product", "deep": deep, "repair": "safe"}))
        .send()
        .await?;
    if !answer.status().is_success() {
        bail!("reconcile: {} {}", answer.status(), answer.text().await?);
    }
    let id = answer.json::<Value>().await?["id"].clone();
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let run: Value = http
            .get(format!("{base}/api/v1/reconcile/runs/{id}"))
            .send()
            .await?
            .json()
            .await?;
        if run["state"] != "running" {
            return Ok((run, started.elapsed().as_secs_f64()));
        }
    }
}

async fn reconciliation(
    http: &reqwest::Client,
    handoff: &servers::Spawned,
    sink: &str,
    products: u64,
) -> anyhow::Result<()> {
    let base = handoff.base();
    let show = |what: &str, run: &Value, secs: f64| {
        println!(
            "  reconcile ({what}): {} {} records compared with {} in the CRM in {secs:.1} s \
             ({:.0} records/s): {}; {} repaired{}",
            run["state"],
            run["compared"],
            run["target_records"],
            run["compared"].as_f64().unwrap_or(0.0) / secs,
            run["counts"],
            run["repairs"],
            if run["dry_run"] == true {
                " (dry run)"
            } else {
                ""
            }
        );
    };
    // The first run of a flow is a dry run; the ids-and-versions pass, then the deep one.
    let (run, secs) = reconcile(http, &base, false).await?;
    show("first, ids and versions", &run, secs);
    let usage = handoff.usage();
    let (run, secs) = reconcile(http, &base, true).await?;
    show("deep", &run, secs);
    handoff
        .usage()
        .print_since(&usage, products, "record compared");
    // 1% deleted in the CRM: found missing and created again (under the example's cap).
    let gone = (products / 100).max(1);
    let listed: Value = http
        .get(format!("{sink}/products?limit={gone}"))
        .send()
        .await?
        .json()
        .await?;
    for product in listed["products"].as_array().into_iter().flatten() {
        let code = product["code"].as_str().unwrap_or_default();
        http.delete(format!("{sink}/products/{code}"))
            .send()
            .await?;
    }
    let started = Instant::now();
    let (run, secs) = reconcile(http, &base, false).await?;
    show(&format!("after {gone} deleted in the CRM"), &run, secs);
    loop {
        let stats: Value = http
            .get(format!("{sink}/stats"))
            .send()
            .await?
            .json()
            .await?;
        if stats["products"].as_u64().unwrap_or(0) >= products {
            break;
        }
        if started.elapsed() > Duration::from_secs(120) {
            bail!("the deleted products did not come back: {stats}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!(
        "  the {gone} deleted products were back in the CRM {:.1} s after the run started",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
