//! The overview: counts now and since the count began, the last hour's deliveries, the oldest
//! waiting job, flows and connectors. Its `#live` part reloads itself from `/ui/live`.

use std::collections::BTreeMap;

use axum::Extension;
use axum::extract::State;
use axum::response::Html;
use maud::{Markup, PreEscaped, html};

use super::Shared;
use super::layout::{self, state, table, time};
use crate::adapters::rest::encode;
use crate::dashboard::auth::Who;
use crate::dashboard::data::{self, Overview, count, total};
use crate::metrics::Minute;
use crate::sync::ConnectorStatus;

const REFRESH: &str = "setInterval(async()=>{try{const r=await fetch('/ui/live');\
if(r.ok)document.getElementById('live').innerHTML=await r.text();}catch(e){}},2000);";

pub async fn page(State(ui): Shared, Extension(who): Extension<Who>) -> Html<String> {
    let body = html! {
        div #live { (live_part(&data::overview(&ui.engine))) }
        script { (PreEscaped(REFRESH)) }
    };
    layout::page("Overview", &who, body)
}

pub async fn live(State(ui): Shared) -> Html<String> {
    Html(live_part(&data::overview(&ui.engine)).into_string())
}

/// The overview's refreshing part.
fn live_part(data: &Overview) -> Markup {
    let since = time(data.counted_since_ms);
    let waiting = |s: &str| total(&data.waiting, s);
    let outcome = |s: &str| total(&data.outcomes_since_start, s);
    let flows: Vec<Vec<Markup>> = data
        .flows_since_start
        .keys()
        .map(|flow| {
            let mut row = vec![html! {
                a href={ "/ui/events?flow=" (encode(flow)) } { (flow) }
            }];
            row.extend(
                ["done", "retrying", "parked", "held", "dead", "skipped"]
                    .map(|s| html! { (count(&data.flows_since_start, flow, s)) }),
            );
            row
        })
        .collect();
    let connectors: Vec<Vec<Markup>> = data
        .connectors
        .iter()
        .map(|c| connector_row(data, c))
        .collect();
    html! {
        div.cards {
            div.card { "received" b #received { (data.journal.events) } }
            div.card { "delivered" b #delivered { (outcome("done")) } }
            div.card { "retrying" b { (waiting("retrying")) } }
            div.card { "parked" b { (waiting("parked")) } }
            div.card { "held" b #held-count { (waiting("held")) } }
            div.card { "dead" b #dead-count { (waiting("dead")) } }
            div.card { "skipped" b { (outcome("skipped")) } }
        }
        p.note {
            "Received: events in the journal. Delivered and skipped: since " (since)
            ". Retrying, parked, held and dead: waiting now."
        }
        h2 { "Deliveries in the last hour" }
        (chart(&data.last_hour, data.now_ms))
        @if let Some(oldest) = &data.oldest_waiting {
            p {
                "Oldest waiting job: "
                a href={ "/ui/events/" (oldest.id) } { "#" (oldest.id) }
                " " (state(oldest.state.as_str())) " since " (time(oldest.created_ms))
                @if let Some(reason) = &oldest.reason { " (" (reason.message) ")" }
            }
        }
        h2 { "Flows (since " (since) ")" }
        (table(&["flow", "delivered", "retried", "parked", "held", "dead", "skipped"], &flows))
        h2 { "Connectors" }
        (table(
            &["connector", "circuit", "delivered", "waiting", "retrying", "parked", "held", "dead", "poller lag", "last error"],
            &connectors,
        ))
        @if !data.instances.is_empty() {
            h2 { "Instances" }
            p.note { "Delivered counts and the chart are this instance's; waiting counts are every instance's." }
            (table(&["instance", "partitions", "leased now", "alive until"], &instances(data)))
        }
    }
}

/// The instances sharing PostgreSQL and the partitions each holds.
fn instances(data: &Overview) -> Vec<Vec<Markup>> {
    data.instances
        .iter()
        .map(|member| {
            let parts: Vec<String> = member.partitions.iter().map(i16::to_string).collect();
            vec![
                html! { (member.name) @if member.this_instance { " (this one)" } },
                html! { (member.partitions.len()) ": " (parts.join(" ")) },
                html! { (member.leased) },
                html! { (time(member.alive_until_ms)) },
            ]
        })
        .collect()
}

fn connector_row(data: &Overview, c: &ConnectorStatus) -> Vec<Markup> {
    let name = c.name.as_str();
    let waiting = |s: &str| count(&data.waiting, name, s);
    let poller = match &c.poller {
        Some(p) => {
            let lag = match p.last_ok_ms {
                Some(at) => format!("{} s", (data.now_ms - at) / 1000),
                None => "not yet".into(),
            };
            // Orders in the ERP handoff neither made nor linked: never written back.
            html! {
                (lag)
                @if p.not_ours > 0 {
                    " · "
                    span title={
                        "orders handoff neither created nor linked; never written back (newest: "
                        (p.not_ours_newest.join(", ")) ")"
                    } { (p.not_ours) " not ours" }
                }
            }
        }
        None => html! { "—" },
    };
    vec![
        html! {
            a href={ "/ui/events?connector=" (encode(name)) } { (name) }
            @if c.sandbox { " " small { "(sandbox)" } }
        },
        html! { (c.circuit) @if c.paused.is_some() { " · paused" } },
        html! { (count(&data.outcomes_since_start, name, "done")) },
        html! { (waiting("ready") + waiting("leased")) },
        html! { (waiting("retrying")) },
        html! { (waiting("parked")) },
        html! { (waiting("held")) },
        html! { (waiting("dead")) },
        poller,
        html! { @if let Some(error) = &c.last_error { (error.message) } },
    ]
}

/// Delivered (green) and failed (red) attempts per minute over the last hour, as SVG bars.
fn chart(minutes: &[Minute], now_ms: i64) -> Markup {
    let now_minute = now_ms / 60_000;
    let bars: BTreeMap<i64, (u64, u64)> = minutes
        .iter()
        .map(|m| (m.minute, (m.delivered, m.failed)))
        .collect();
    let top = bars.values().map(|(d, f)| d + f).max().unwrap_or(0).max(1) as f64;
    let total: u64 = bars.values().map(|(d, _)| d).sum();
    html! {
        svg #chart width="600" height="80" viewBox="0 0 600 80" role="img" aria-label="deliveries per minute" {
            rect width="600" height="80" fill="#fff" stroke="#e3e6eb" {}
            @for (minute, (delivered, failed)) in &bars {
                @let x = (59 - (now_minute - minute)).clamp(0, 59) * 10;
                @let d = (*delivered as f64 / top * 76.0).round();
                @let f = (*failed as f64 / top * 76.0).round();
                rect x=(x) y=(78.0 - d) width="8" height=(d) fill="#34a853" {
                    title { (delivered) " delivered" }
                }
                rect x=(x) y=(78.0 - d - f) width="8" height=(f) fill="#d93025" {
                    title { (failed) " failed" }
                }
            }
        }
        p { (total) " delivered in the last hour" }
    }
}
