//! `handoff send SOURCE FILE`: signs an event file the way the source's sender does (its preset,
//! its secret from the environment) and posts it to a running handoff — for a first event, a
//! test of a mapping end to end, or a replay by hand. It prints the status and the answer.

use std::path::Path;

use anyhow::Context;

use crate::config::Config;
use crate::ingest::preset;
use crate::ingest::settings::Preset;
use crate::ingest::sign::Sending;

/// Posts `file` to `/hooks/{source}` of the handoff at `url` (default: the configured listen
/// address); returns whether it was accepted (2xx).
pub fn send(
    source: &str,
    file: &Path,
    url: Option<String>,
    config_path: Option<&Path>,
) -> anyhow::Result<bool> {
    let (config, _) = Config::load(config_path)?;
    let spec = config.sources.get(source).with_context(|| {
        let known: Vec<&str> = config.sources.keys().map(String::as_str).collect();
        format!(
            "no source {source:?} in the config (known: {})",
            known.join(", ")
        )
    })?;
    let body = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
    let base = url
        .unwrap_or_else(|| format!("http://{}", config.listen))
        .trim_end_matches('/')
        .to_owned();
    let path = format!("/hooks/{source}");
    let tolerance = spec.tolerance_secs.unwrap_or(config.ingest.tolerance_secs);
    let scheme = preset::scheme(spec.preset, spec.signature.as_ref(), tolerance)
        .map_err(|e| anyhow::anyhow!("sources.{source}: {e}"))?;
    let client = reqwest::Client::new();
    let mut request = client.post(format!("{base}{path}"));
    request = match spec.preset {
        Preset::SalesforceOutbound => request
            .header("content-type", "text/xml; charset=utf-8")
            .header("soapaction", "\"\""),
        _ => request.header("content-type", "application/json"),
    };
    if let Some(scheme) = scheme {
        let secret = spec
            .secret_env
            .resolve(&crate::config::env_secrets)
            .with_context(|| format!("sources.{source}: its secret signs the request"))?
            .remove(0);
        let signed_uri = match spec
            .public_base_url
            .as_ref()
            .or(config.ingest.public_base_url.as_ref())
        {
            Some(public) => format!("{}{path}", public.trim_end_matches('/')),
            None => format!("{base}{path}"),
        };
        let id = format!("msg_{:016x}", fastrand::u64(..));
        let sending = Sending {
            id: &id,
            now: chrono::Utc::now().timestamp(),
            method: "POST",
            uri: &signed_uri,
            body: &body,
        };
        for (name, value) in scheme.sign(&secret, &sending).map_err(anyhow::Error::msg)? {
            request = request.header(name, value);
        }
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (status, answer) = runtime.block_on(async {
        let response = request
            .body(body)
            .send()
            .await
            .with_context(|| format!("handoff at {base} did not answer"))?;
        let status = response.status();
        anyhow::Ok((status, response.text().await.unwrap_or_default()))
    })?;
    println!("{status} {answer}");
    Ok(status.is_success())
}
