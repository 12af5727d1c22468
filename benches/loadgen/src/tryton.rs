//! The Tryton overhead benchmark: the same sales orders (two lines, quoted and confirmed) created
//! by a plain JSON-RPC client and through handoff (signed webhooks → mapping → queue → Tryton
//! adapter), same server, same concurrency, one after the other; reports both rates and the ratio.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::bail;
use handoff::adapters::tryton::rpc::{Rpc, decimal};
use serde_json::{Value, json};

use crate::Args;
use crate::client;
use crate::servers;

pub fn rpc(args: &Args) -> Rpc {
    Rpc::new(
        &args.tryton_url,
        "crm",
        ("admin".into(), "admin-secret".into()),
        (Duration::from_secs(5), Duration::from_secs(120)),
    )
}

pub async fn first_id(rpc: &Rpc, model: &str, domain: Value) -> anyhow::Result<i64> {
    let found = rpc
        .call(
            &format!("model.{model}.search"),
            vec![domain, json!(0), json!(1), Value::Null],
        )
        .await
        .map_err(|f| anyhow::anyhow!(f.message))?;
    found[0]
        .as_i64()
        .ok_or_else(|| anyhow::anyhow!("no {model} (is the fixture loaded?)"))
}

/// Creates, quotes and confirms `args.requests` sales with `args.erp_concurrency` clients.
async fn direct(args: &Args, run: u32) -> anyhow::Result<f64> {
    let rpc = Arc::new(rpc(args));
    let shared = rpc.clone();
    let call = move |method: &'static str, params: Vec<Value>| {
        let rpc = shared.clone();
        async move {
            rpc.call(method, params)
                .await
                .map_err(|f| anyhow::anyhow!("{method}: {}", f.message))
        }
    };
    let country = first_id(&rpc, "country.country", json!([["code", "=", "DE"]])).await?;
    let currency = first_id(&rpc, "currency.currency", json!([["code", "=", "USD"]])).await?;
    let products = [
        first_id(&rpc, "product.product", json!([["code", "=", "SKU-1"]])).await?,
        first_id(&rpc, "product.product", json!([["code", "=", "SKU-2"]])).await?,
    ];
    let unit = first_id(&rpc, "product.uom", json!([["name", "=", "Unit"]])).await?;
    let context = rpc
        .context()
        .await
        .map_err(|f| anyhow::anyhow!(f.message))?;
    let mut parties = Vec::new();
    for a in 0..args.accounts {
        let created = call("model.party.party.create", vec![json!([{
            "name": format!("Direct {run} {a}"), "code": format!("DIRECT-{run:08X}-{a}"),
            "addresses": [["create", [{"street": "1 Main St", "city": "Berlin", "postal_code": "10115", "country": country}]]],
        }])]).await?;
        let party = created[0].as_i64().unwrap_or_default();
        let address = first_id(&rpc, "party.address", json!([["party", "=", party]])).await?;
        parties.push((party, address));
    }
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    let per_client = args.requests.div_ceil(args.erp_concurrency);
    for c in 0..args.erp_concurrency {
        let (call, parties, context) = (call.clone(), parties.clone(), context.clone());
        tasks.spawn(async move {
            for n in (c * per_client)..((c + 1) * per_client) {
                let (party, address) = parties[n % parties.len()];
                let created = call("model.sale.sale.create", vec![json!([{
                    "party": party, "invoice_address": address, "shipment_address": address,
                    "currency": currency, "company": context["company"],
                    "reference": format!("DIRECT-{run:08X}-{n}"),
                    "lines": [["create", [
                        {"type": "line", "product": products[0], "unit": unit, "quantity": 10, "unit_price": decimal("19.99"), "description": "Widget"},
                        {"type": "line", "product": products[1], "unit": unit, "quantity": 5, "unit_price": decimal("4.05"), "description": "Bolt pack"},
                    ]]],
                }])]).await?;
                let id = created[0].clone();
                call("model.sale.sale.quote", vec![json!([id])]).await?;
                call("model.sale.sale.confirm", vec![json!([id])]).await?;
            }
            anyhow::Ok(())
        });
    }
    while let Some(done) = tasks.join_next().await {
        done??;
    }
    let rate = (per_client * args.erp_concurrency) as f64 / started.elapsed().as_secs_f64();
    println!(
        "  direct: {} sales in {:.1} s = {rate:.2} sales/s",
        per_client * args.erp_concurrency,
        started.elapsed().as_secs_f64()
    );
    Ok(rate)
}

/// The same sales through handoff.
async fn through_handoff(args: &Args, run: u32) -> anyhow::Result<f64> {
    let dir = servers::temp_dir()?;
    let connectors = dir.join("connectors");
    std::fs::create_dir_all(&connectors)?;
    std::fs::write(
        connectors.join("erp.yaml"),
        format!(
            "kind: tryton\nrole: erp\nbase_url: {}\nconcurrency: {}\n\
             auth: {{ basic: {{ user_env: TRYTON_USER, password_env: TRYTON_PASSWORD }} }}\n\
             tryton: {{ database: crm, confirm: true, poll_every_secs: 0 }}\n\
             timeouts: {{ connect_secs: 5, request_secs: 120 }}\n",
            args.tryton_url, args.erp_concurrency
        ),
    )?;
    std::fs::write(connectors.join("crm.yaml"), "kind: sandbox\nrole: crm\n")?;
    let config = crate::orders::write_config(&dir, &connectors, args)?;
    let handoff = servers::spawn_handoff_with(
        &config,
        &args.secret,
        &[
            ("TRYTON_USER", "admin"),
            ("TRYTON_PASSWORD", "admin-secret"),
        ],
    )?;
    let ts = chrono::Utc::now().timestamp();
    let accounts: Vec<_> = (0..args.accounts)
        .map(|a| {
            let body = json!({"type": "account.updated", "object": "Account", "data": {
                "Id": format!("001H{run:08X}{a:04}"), "Name": format!("Through handoff {a}"),
                "BillingStreet": "1 Main St", "BillingCity": "Berlin", "BillingPostalCode": "10115",
                "BillingCountryCode": "DE", "CurrencyIsoCode": "USD", "LastModifiedDate": "2026-11-20T09:00:00Z"}});
            client::sign(&args.secret, format!("acc-{run}-{a}"), ts, body.to_string())
        })
        .collect::<anyhow::Result<_>>()?;
    client::load(&handoff.base(), &accounts, 4, Duration::from_secs(60)).await?;
    wait_done(&handoff, args.accounts as u64).await?;
    let orders: Vec<_> = (0..args.requests)
        .map(|n| {
            let body = json!({"type": "opportunity.won", "object": "Opportunity", "data": {
                "Id": format!("006H{run:08X}{n:06}"), "AccountId": format!("001H{run:08X}{:04}", n % args.accounts),
                "Name": "Through handoff", "StageName": "Closed Won", "CloseDate": "2026-11-20",
                "CurrencyIsoCode": "USD", "LastModifiedDate": "2026-11-20T10:00:00Z",
                "OpportunityLineItems": [
                    {"ProductCode": "SKU-1", "Name": "Widget", "Quantity": 10, "UnitPrice": "19.99"},
                    {"ProductCode": "SKU-2", "Name": "Bolt pack", "Quantity": 5, "UnitPrice": "4.50", "Discount": 10}]}});
            client::sign(&args.secret, format!("opp-{run}-{n}"), ts, body.to_string())
        })
        .collect::<anyhow::Result<_>>()?;
    let started = Instant::now();
    client::load(&handoff.base(), &orders, 4, Duration::from_secs(60)).await?;
    wait_done(&handoff, (args.accounts + args.requests) as u64).await?;
    let elapsed = started.elapsed().as_secs_f64();
    let rate = args.requests as f64 / elapsed;
    println!(
        "  handoff: {} sales in {elapsed:.1} s = {rate:.2} sales/s",
        args.requests
    );
    handoff.stop();
    let _ = std::fs::remove_dir_all(&dir);
    Ok(rate)
}

/// Waits until `count` ERP jobs are done; fails on a dead letter.
async fn wait_done(handoff: &servers::Spawned, count: u64) -> anyhow::Result<()> {
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(900);
    loop {
        let overview: Value = http
            .get(format!("{}/api/v1/overview", handoff.base()))
            .send()
            .await?
            .json()
            .await?;
        let outcomes = &overview["outcomes_since_start"]["erp"];
        if outcomes["dead"].as_u64().unwrap_or(0) > 0 {
            let dead: Value = http
                .get(format!("{}/api/v1/dead-letters", handoff.base()))
                .send()
                .await?
                .json()
                .await?;
            bail!("dead letters: {dead}");
        }
        if outcomes["done"].as_u64().unwrap_or(0) >= count {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("only {outcomes} after 15 minutes");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub async fn compare(args: &Args) -> anyhow::Result<()> {
    let run = fastrand::u32(..);
    println!(
        "{} sales with 2 lines each, {} at a time, Tryton at {}",
        args.requests, args.erp_concurrency, args.tryton_url
    );
    let direct = direct(args, run).await?;
    let handoff = through_handoff(args, run).await?;
    println!(
        "   ratio: handoff reaches {:.0}% of the direct JSON-RPC rate",
        100.0 * handoff / direct
    );
    Ok(())
}
