//! The dashboard's pages, server-rendered from the same data the JSON API answers with
//! (`api::*_data`): overview (refreshing itself every few seconds), events with search and
//! paging, an event's detail, dead letters by reason, edit-and-resubmit with a dry-run preview,
//! connectors, mappings; and the login form.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Extension, Form, Router};

use crate::adapters::rest::encode;
use serde_json::Value;

use super::api::{self, ApiError, JobFilter};
use super::auth::{self, Auth, Who};
use super::html::{self, button, csrf, esc, items, page, state, table, text, time};
use crate::mapping::live::LiveMappings;
use crate::queue::{Action, JobId};
use crate::sync::Engine;

#[derive(Clone)]
pub struct Ui {
    pub engine: Arc<Engine>,
    pub auth: Arc<Auth>,
    pub mappings: Arc<LiveMappings>,
}

type Shared = State<Ui>;

pub fn router(ui: Ui) -> Router {
    Router::new()
        .route("/ui/login", get(login_form).post(login))
        .route("/ui/logout", post(logout))
        .route("/ui", get(overview))
        .route("/ui/live", get(live))
        .route("/ui/events", get(events))
        .route("/ui/events/{id}", get(detail))
        .route("/ui/events/{id}/edit", get(edit))
        .route("/ui/events/{id}/preview", post(preview))
        .route("/ui/events/{id}/resubmit", post(resubmit))
        .route("/ui/events/{id}/{action}", post(act))
        .route("/ui/dead", get(dead))
        .route("/ui/dead/bulk", post(bulk))
        .route("/ui/connectors", get(connectors))
        .route("/ui/connectors/{name}/{action}", post(connector_action))
        .route("/ui/mappings", get(mappings))
        .with_state(ui)
}

/// An API error as a page.
fn failed(error: ApiError) -> Response {
    let ApiError(status, _, message) = error;
    (
        status,
        Html(format!(
            "<!doctype html><title>{status}</title><p>{}</p><p><a href=/ui>Back</a></p>",
            esc(&message)
        )),
    )
        .into_response()
}

async fn login_form() -> Html<String> {
    login_page("")
}

fn login_page(message: &str) -> Html<String> {
    Html(format!(
        "<!doctype html><html lang=en><head><meta charset=utf-8><title>Log in · handoff</title></head>\
         <body style='font:15px system-ui;max-width:22rem;margin:4rem auto'><h1>handoff</h1>\
         <p class=bad id=message>{}</p>\
         <form method=post action=/ui/login><p><label>Name<br><input name=name id=name autocomplete=username></label></p>\
         <p><label>Password<br><input name=password id=password type=password autocomplete=current-password></label></p>\
         <p><button id=login>Log in</button></p></form></body></html>",
        esc(message)
    ))
}

/// The login form's fields (a missing one is empty).
#[derive(Debug, Default, serde::Deserialize)]
struct LoginForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    password: String,
}

async fn login(
    State(ui): Shared,
    peer: Option<Extension<crate::serve::Peer>>,
    Form(LoginForm { name, password }): Form<LoginForm>,
) -> Response {
    let address = peer.map_or("unknown".to_owned(), |Extension(p)| p.0.ip().to_string());
    let keys = [format!("user:{name}"), format!("addr:{address}")];
    let now = std::time::Instant::now();
    if let Some(wait) = ui.auth.throttle.wait(&keys, now) {
        let secs = wait.as_secs().max(1);
        tracing::warn!(user = %name, client = %address, retry_after_secs = secs, "dashboard login throttled");
        return (
            StatusCode::TOO_MANY_REQUESTS,
            [(header::RETRY_AFTER, secs.to_string())],
            login_page(&format!("Too many wrong passwords: try again in {secs} s.")),
        )
            .into_response();
    }
    match ui.auth.login(&name, &password) {
        Some((id, _)) => {
            ui.auth.throttle.succeeded(&keys[0]);
            (
                StatusCode::SEE_OTHER,
                [
                    (header::SET_COOKIE, ui.auth.cookie(&id)),
                    (header::LOCATION, "/ui".to_owned()),
                ],
            )
                .into_response()
        }
        None => {
            // The delay runs from when the password was found wrong, not from when it arrived.
            ui.auth.throttle.failed(&keys, std::time::Instant::now());
            tracing::warn!(user = %name, client = %address, "dashboard login refused");
            tokio::time::sleep(Duration::from_millis(300)).await;
            (
                StatusCode::UNAUTHORIZED,
                login_page("Wrong name or password."),
            )
                .into_response()
        }
    }
}

async fn logout(State(ui): Shared, headers: HeaderMap) -> Response {
    ui.auth.logout(&headers);
    (
        StatusCode::SEE_OTHER,
        [
            (
                header::SET_COOKIE,
                format!("{}=; Path=/; Max-Age=0", auth::COOKIE),
            ),
            (header::LOCATION, "/ui/login".to_owned()),
        ],
    )
        .into_response()
}

async fn overview(State(ui): Shared, Extension(who): Extension<Who>) -> Html<String> {
    let body = format!(
        "<div id=live>{}</div><script>\
         setInterval(async()=>{{try{{const r=await fetch('/ui/live');if(r.ok)document.getElementById('live').innerHTML=await r.text();}}catch(e){{}}}},2000);\
         </script>",
        live_html(&ui.engine)
    );
    page("Overview", &who, &body)
}

async fn live(State(ui): Shared) -> Html<String> {
    Html(live_html(&ui.engine))
}

const STATES: [&str; 7] = [
    "ready", "retrying", "parked", "held", "dead", "done", "skipped",
];

/// The overview's refreshing part.
fn live_html(engine: &Engine) -> String {
    let data = api::overview_data(engine);
    let count = |part: &Value, state: &str| part.get(state).and_then(Value::as_u64).unwrap_or(0);
    let sum = |key: &str, state: &str| -> u64 {
        data[key]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(_, v)| count(v, state))
            .sum()
    };
    let since = time(&data["counted_since_ms"]);
    let mut out = format!(
        "<div class=cards><div class=card>received<b id=received>{}</b></div>\
         <div class=card>delivered<b id=delivered>{}</b></div><div class=card>retrying<b>{}</b></div>\
         <div class=card>parked<b>{}</b></div><div class=card>held<b id=held-count>{}</b></div>\
         <div class=card>dead<b id=dead-count>{}</b></div>\
         <div class=card>skipped<b>{}</b></div></div>\
         <p class=note>Received: events in the journal. Delivered and skipped: since {since}. \
         Retrying, parked, held and dead: waiting now.</p>",
        data["journal"]["events"],
        sum("outcomes_since_start", "done"),
        sum("waiting", "retrying"),
        sum("waiting", "parked"),
        sum("waiting", "held"),
        sum("waiting", "dead"),
        sum("outcomes_since_start", "skipped"),
    );
    out.push_str("<h2>Deliveries in the last hour</h2>");
    out.push_str(&chart(
        &data["last_hour"],
        data["now_ms"].as_i64().unwrap_or(0),
    ));
    if let Some(oldest) = data["oldest_waiting"].as_object() {
        out.push_str(&format!(
            "<p>Oldest waiting job: <a href=/ui/events/{0}>#{0}</a> {1} since {2} ({3})</p>",
            oldest["id"],
            state(&text(&oldest["state"])),
            time(&oldest["created_ms"]),
            esc(&text(&oldest["reason"]["message"]))
        ));
    }
    out.push_str(&format!("<h2>Flows (since {since})</h2>"));
    let flows: Vec<Vec<String>> = data["flows_since_start"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(flow, counts)| {
            let mut row = vec![format!(
                "<a href='/ui/events?flow={}'>{}</a>",
                esc(&encode(flow)),
                esc(flow)
            )];
            row.extend(
                ["done", "retrying", "parked", "held", "dead", "skipped"]
                    .map(|s| count(counts, s).to_string()),
            );
            row
        })
        .collect();
    out.push_str(&table(
        &[
            "flow",
            "delivered",
            "retried",
            "parked",
            "held",
            "dead",
            "skipped",
        ],
        &flows,
    ));
    out.push_str("<h2>Connectors</h2>");
    let rows: Vec<Vec<String>> = items(&data["connectors"])
        .map(|c| {
            let name = text(&c["name"]);
            let waiting = &data["waiting"][&name];
            let outcomes = &data["outcomes_since_start"][&name];
            let poller = match c["poller"].as_object() {
                Some(p) => {
                    let lag = match p["last_ok_ms"].as_i64() {
                        Some(at) => {
                            format!("{} s", (data["now_ms"].as_i64().unwrap_or(at) - at) / 1000)
                        }
                        None => "not yet".into(),
                    };
                    // Orders in the ERP handoff neither made nor linked: never written back.
                    match p["not_ours"].as_u64().filter(|n| *n > 0) {
                        Some(n) => format!(
                            "{lag} · <span title='orders handoff neither created nor linked; never written back (newest: {})'>{n} not ours</span>",
                            esc(&p["not_ours_newest"].to_string())
                        ),
                        None => lag,
                    }
                }
                None => "—".into(),
            };
            let sandbox = match c["sandbox"].as_bool() {
                Some(true) => " <small>(sandbox)</small>",
                _ => "",
            };
            vec![
                format!(
                    "<a href='/ui/events?connector={}'>{}</a>{sandbox}",
                    esc(&encode(&name)),
                    esc(&name)
                ),
                format!(
                    "{}{}",
                    esc(&text(&c["circuit"])),
                    if c["paused"].is_string() {
                        " · paused"
                    } else {
                        ""
                    }
                ),
                count(outcomes, "done").to_string(),
                (count(waiting, "ready") + count(waiting, "leased")).to_string(),
                count(waiting, "retrying").to_string(),
                count(waiting, "parked").to_string(),
                count(waiting, "held").to_string(),
                count(waiting, "dead").to_string(),
                poller,
                esc(&text(&c["last_error"]["message"])),
            ]
        })
        .collect();
    out.push_str(&table(
        &[
            "connector",
            "circuit",
            "delivered",
            "waiting",
            "retrying",
            "parked",
            "held",
            "dead",
            "poller lag",
            "last error",
        ],
        &rows,
    ));
    out
}

/// Delivered (green) and failed (red) attempts per minute over the last hour, as SVG bars.
fn chart(minutes: &Value, now_ms: i64) -> String {
    let now_minute = now_ms / 60_000;
    let bars: BTreeMap<i64, (u64, u64)> = items(minutes)
        .map(|m| {
            (
                m["minute"].as_i64().unwrap_or(0),
                (
                    m["delivered"].as_u64().unwrap_or(0),
                    m["failed"].as_u64().unwrap_or(0),
                ),
            )
        })
        .collect();
    let top = bars.values().map(|(d, f)| d + f).max().unwrap_or(0).max(1) as f64;
    let mut svg = String::from(
        "<svg id=chart width=600 height=80 viewBox='0 0 600 80' role=img aria-label='deliveries per minute'>\
         <rect width=600 height=80 fill='#fff' stroke='#e3e6eb'/>",
    );
    for (minute, (delivered, failed)) in &bars {
        let x = (59 - (now_minute - minute)).clamp(0, 59) * 10;
        let d = (*delivered as f64 / top * 76.0).round();
        let f = (*failed as f64 / top * 76.0).round();
        svg.push_str(&format!(
            "<rect x={x} y={} width=8 height={d} fill='#34a853'><title>{delivered} delivered</title></rect>\
             <rect x={x} y={} width=8 height={f} fill='#d93025'><title>{failed} failed</title></rect>",
            78.0 - d,
            78.0 - d - f
        ));
    }
    let total: u64 = bars.values().map(|(d, _)| d).sum();
    svg.push_str(&format!("</svg><p>{total} delivered in the last hour</p>"));
    svg
}

fn job_row(job: &Value) -> Vec<String> {
    vec![
        format!("<a href=/ui/events/{0}>#{0}</a>", job["id"]),
        esc(&text(&job["flow"])),
        esc(&text(&job["object_id"])),
        esc(&text(&job["external_id"])),
        state(&text(&job["state"])),
        esc(&text(&job["reason"]["message"])),
        time(&job["created_ms"]),
    ]
}

async fn events(
    State(ui): Shared,
    Extension(who): Extension<Who>,
    Query(filter): Query<JobFilter>,
) -> Response {
    let data = match api::list_data(&ui.engine, &filter) {
        Ok(data) => data,
        Err(error) => return failed(error),
    };
    let value = |v: &Option<String>| esc(v.as_deref().unwrap_or(""));
    let options: String = std::iter::once("")
        .chain(STATES)
        .map(|s| {
            let selected = if filter.state.as_deref() == Some(s) {
                " selected"
            } else {
                ""
            };
            format!("<option{selected}>{s}</option>")
        })
        .collect();
    let mut body = format!(
        "<form method=get action=/ui/events id=search>\
         <input name=record placeholder='CRM or ERP id' value='{}'> \
         <input name=flow placeholder=flow value='{}'> <input name=connector placeholder=connector value='{}'> \
         <select name=state>{options}</select> <input name=since placeholder='since 2026-11-23' value='{}'> \
         <button>Search</button></form>",
        value(&filter.record),
        value(&filter.flow),
        value(&filter.connector),
        value(&filter.since),
    );
    let rows: Vec<Vec<String>> = items(&data["jobs"]).map(job_row).collect();
    body.push_str(&table(
        &[
            "job", "flow", "CRM id", "ERP id", "state", "reason", "created",
        ],
        &rows,
    ));
    if let Some(next) = data["next_before"].as_u64() {
        let mut query: Vec<String> = [
            ("record", &filter.record),
            ("flow", &filter.flow),
            ("connector", &filter.connector),
            ("state", &filter.state),
            ("since", &filter.since),
        ]
        .iter()
        .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={}", encode(v))))
        .collect();
        query.push(format!("before={next}"));
        body.push_str(&format!(
            "<p><a id=next href='/ui/events?{}'>Older →</a></p>",
            esc(&query.join("&"))
        ));
    }
    page("Events", &who, &body).into_response()
}

/// What happens next to a job and what an operator can do, in the README's terms.
fn next_step(state: &str, code: &str) -> String {
    let what = match (state, code) {
        ("done", _) => "Delivered. Nothing to do.",
        ("skipped", _) => "Not needed (stale, an echo, a status that would go back, or skipped).",
        ("ready" | "leased", _) => "Being delivered now.",
        ("retrying", "rate_limited") => {
            "The target asked to slow down: the connector waits, then goes on by itself."
        }
        ("retrying", _) => {
            "The target failed or did not answer: retried on the connector's schedule, and at \
             once when the connector answers again. Retry now if you fixed the target."
        }
        ("parked", _) => {
            "Waits for a record the target does not have yet; runs by itself when it arrives."
        }
        ("held", "amount_mismatch") => {
            "The ERP's amounts differ from the CRM's: accept the ERP's figures, or fix the order \
             in the ERP and retry."
        }
        ("held", "order_changed") => {
            "The record changed after its order was created: carry the change over in the ERP, \
             then skip this job."
        }
        ("held", _) => "Waits until its hold no longer applies; rechecked by itself.",
        ("dead", "fix_data") => {
            "The data cannot be delivered as it is: fix it in the CRM (a new event follows), or \
             edit and resubmit, or fix the mapping and resubmit as it was."
        }
        ("dead", "fix_config") => {
            "The connector is misconfigured and paused: fix its credentials or file, resume it, \
             then retry."
        }
        ("dead", _) => "Gave up: check the target, then retry, or skip it.",
        _ => "",
    };
    what.to_owned()
}

/// "Next recheck: …" for a held job, "Next attempt: …" for a retrying one.
fn next_time(state: &str, due_ms: &Value) -> String {
    let label = match state {
        "held" => "Next recheck",
        "retrying" => "Next attempt",
        "parked" => "Gives up waiting",
        _ => return String::new(),
    };
    match due_ms.is_i64() {
        true => format!("<p id=next-time>{label}: {}</p>", time(due_ms)),
        false => String::new(),
    }
}

async fn detail(
    State(ui): Shared,
    Extension(who): Extension<Who>,
    Path(id): Path<JobId>,
) -> Response {
    let data = match api::job_data(&ui.engine, id) {
        Ok(data) => data,
        Err(error) => return failed(error),
    };
    let job = &data["job"];
    let current = text(&job["state"]);
    let mut body = format!(
        "<p>{} flow <b>{}</b> → connector <b>{}</b> ({}) · record {} · order {} · mapping version {} · \
         idempotency key <code>{}</code></p><p id=reason>{}{}</p>{}<p>",
        state(&current),
        esc(&text(&job["flow"])),
        esc(&text(&job["connector"])),
        esc(&text(&job["operation"])),
        esc(&text(&job["object_id"])),
        esc(&text(&job["order_key"])),
        esc(&text(&job["mapping_version"])),
        esc(&text(&data["idempotency_key"])),
        match job["reason"]["code"].as_str() {
            Some(code) => format!("<code>{}</code> ", esc(code)),
            None => String::new(),
        },
        esc(&text(&job["reason"]["message"])),
        next_time(&current, &job["due_ms"]),
    );
    let code = text(&job["reason"]["code"]);
    body.push_str(&format!(
        "<p id=next-step>{}</p>",
        esc(&next_step(&current, &code))
    ));
    // Retrying a fix_data letter as it is fails the same way: it needs an edit or a mapping fix.
    let retry_helps = !(current == "dead" && code == "fix_data");
    if matches!(current.as_str(), "dead" | "parked" | "held" | "retrying") && retry_helps {
        body.push_str(&button(
            &who,
            &format!("/ui/events/{id}/retry"),
            "Retry now",
        ));
    }
    if matches!(current.as_str(), "dead" | "parked" | "held" | "retrying") {
        body.push_str(&button(&who, &format!("/ui/events/{id}/skip"), "Skip"));
    }
    if current == "held" && job["reason"]["code"] == "amount_mismatch" {
        body.push_str(&button(
            &who,
            &format!("/ui/events/{id}/accept"),
            "Accept the ERP's figures",
        ));
    }
    // Only a job that waits for a person can be run again on edited data (the queue refuses
    // the others).
    if who.may_act() && matches!(current.as_str(), "dead" | "parked" | "held" | "retrying") {
        body.push_str(&format!(
            "<a id=edit href=/ui/events/{id}/edit>Edit and resubmit</a>"
        ));
    }
    body.push_str("</p><h2>Attempts</h2>");
    let attempts: Vec<Vec<String>> = items(&data["attempts"])
        .map(|a| {
            vec![
                a["n"].to_string(),
                time(&a["started_ms"]),
                format!("{} ms", a["duration_ms"]),
                esc(&text(&a["request"])),
                format!("<code>{}</code>", esc(&text(&a["response"]))),
                state(&text(&a["outcome"])),
            ]
        })
        .collect();
    body.push_str(&table(
        &["#", "at", "took", "request", "response", "outcome"],
        &attempts,
    ));
    body.push_str("<h2>Mapped document (by the mapping in force)</h2>");
    match data["document_error"].as_str() {
        Some(why) => body.push_str(&format!(
            "<p class=bad id=document-error>It cannot be mapped now: {}</p>",
            esc(why)
        )),
        None => body.push_str(&html::json_block(&data["document"])),
    }
    body.push_str("<h2>Event</h2>");
    body.push_str(&html::json_block(&data["event"]["data"]));
    if !job["payload"].is_null() {
        body.push_str("<h2>Resubmitted data</h2>");
        body.push_str(&html::json_block(&job["payload"]));
    }
    body.push_str("<h2>Raw payload</h2>");
    body.push_str(&format!(
        "<pre>{}</pre>",
        esc(&text(&data["event"]["raw_body"]))
    ));
    body.push_str("<h2>Cross-references</h2>");
    let xrefs: Vec<Vec<String>> = items(&data["xrefs"])
        .map(|x| {
            ["system", "kind", "crm_id", "external_id"]
                .map(|k| esc(&text(&x[k])))
                .to_vec()
        })
        .collect();
    body.push_str(&table(&["system", "kind", "CRM id", "id there"], &xrefs));
    body.push_str(&format!(
        "<h2>Order status</h2><p>{}</p>",
        esc(&text(&data["order_status"]))
    ));
    let status_history: Vec<Vec<String>> = match api::list_data(
        &ui.engine,
        &JobFilter {
            record: Some(text(&job["order_key"])),
            limit: Some(50),
            ..JobFilter::default()
        },
    ) {
        Ok(list) => items(&list["jobs"]).map(job_row).collect(),
        Err(_) => Vec::new(),
    };
    body.push_str("<h3>Every job of this order</h3>");
    body.push_str(&table(
        &[
            "job", "flow", "CRM id", "ERP id", "state", "reason", "created",
        ],
        &status_history,
    ));
    page(&format!("Event #{id}"), &who, &body).into_response()
}

async fn edit(
    State(ui): Shared,
    Extension(who): Extension<Who>,
    Path(id): Path<JobId>,
) -> Response {
    let data = match api::job_data(&ui.engine, id) {
        Ok(data) => data,
        Err(error) => return failed(error),
    };
    let current = match &data["job"]["payload"] {
        Value::Null => data["event"]["data"].clone(),
        payload => payload.clone(),
    };
    let text = serde_json::to_string_pretty(&current).unwrap_or_default();
    edit_page(&who, id, &text, "").into_response()
}

fn edit_page(who: &Who, id: JobId, payload: &str, result: &str) -> Html<String> {
    let body = format!(
        "<p>Edit the event data (what the mapping reads as <code>$</code>). Preview maps it with the \
         mapping in force without sending; Resubmit runs the job again on it under a new idempotency key.</p>\
         <form method=post id=editor>{}<textarea name=payload id=payload rows=22>{}</textarea><p>\
         <button formaction=/ui/events/{id}/preview id=preview>Preview</button> \
         <button formaction=/ui/events/{id}/resubmit id=resubmit>Resubmit</button> \
         <a href=/ui/events/{id}>Cancel</a></p></form>{result}",
        csrf(who),
        esc(payload)
    );
    page(&format!("Edit event #{id}"), who, &body)
}

/// The edit form: the payload as typed.
#[derive(Debug, Default, serde::Deserialize)]
struct EditForm {
    #[serde(default)]
    payload: String,
}

/// The edited payload: a JSON object, or why not.
fn edited(form: EditForm) -> Result<(String, Value), (String, String)> {
    let text = form.payload;
    match serde_json::from_str::<Value>(&text) {
        Ok(value) if value.is_object() => Ok((text, value)),
        Ok(_) => Err((text, "The payload must be a JSON object.".into())),
        Err(error) => Err((text, format!("Not valid JSON: {error}"))),
    }
}

async fn preview(
    State(ui): Shared,
    Extension(who): Extension<Who>,
    Path(id): Path<JobId>,
    Form(form): Form<EditForm>,
) -> Response {
    let job = match ui.engine.queue.get(id) {
        Ok(job) => job,
        Err(error) => return failed(error.into()),
    };
    let (text, result) = match edited(form) {
        Ok((text, payload)) => match crate::sync::process::dry_run(&ui.engine, &job, &payload) {
            Ok(document) => (
                text,
                format!(
                    "<h2 class=ok id=preview-ok>Preview: the mapped document</h2>{}",
                    html::json_block(&document)
                ),
            ),
            Err(error) => (
                text,
                format!(
                    "<h2 class=bad id=preview-error>The mapping refuses it</h2><p>{}</p>",
                    esc(&error)
                ),
            ),
        },
        Err((text, error)) => (
            text,
            format!("<p class=bad id=preview-error>{}</p>", esc(&error)),
        ),
    };
    edit_page(&who, id, &text, &result).into_response()
}

async fn resubmit(
    State(ui): Shared,
    Extension(who): Extension<Who>,
    Path(id): Path<JobId>,
    Form(form): Form<EditForm>,
) -> Response {
    match edited(form) {
        Ok((_, payload)) => match ui.engine.queue.resubmit(id, Some(payload)) {
            Ok(_) => Redirect::to(&format!("/ui/events/{id}")).into_response(),
            Err(error) => failed(error.into()),
        },
        Err((text, error)) => (
            StatusCode::BAD_REQUEST,
            edit_page(
                &who,
                id,
                &text,
                &format!("<p class=bad id=preview-error>{}</p>", esc(&error)),
            ),
        )
            .into_response(),
    }
}

async fn act(State(ui): Shared, Path((id, action)): Path<(JobId, String)>) -> Response {
    let action = match action.as_str() {
        "retry" => Action::Retry,
        "skip" => Action::Skip,
        "accept" => Action::Accept,
        _ => {
            return failed(ApiError(
                StatusCode::NOT_FOUND,
                "not_found",
                "no such action".into(),
            ));
        }
    };
    match ui.engine.queue.act(id, action) {
        Ok(_) => Redirect::to(&format!("/ui/events/{id}")).into_response(),
        Err(error) => failed(error.into()),
    }
}

async fn dead(State(ui): Shared, Extension(who): Extension<Who>) -> Html<String> {
    let data = api::dead_data(&ui.engine);
    let mut body = String::new();
    for group in items(&data["groups"]) {
        let reason = text(&group["reason"]);
        body.push_str(&format!(
            "<h2 class=group>{} <small>({} jobs)</small></h2><p>e.g. {}</p>",
            esc(&reason),
            group["count"],
            esc(&text(&group["example"]))
        ));
        if who.may_act() {
            for (action, label) in [("retry", "Retry all"), ("skip", "Skip all")] {
                body.push_str(&format!(
                    "<form class=inline method=post action=/ui/dead/bulk>{}<input type=hidden name=reason value='{}'>\
                     <input type=hidden name=action value={action}><button>{label}</button></form> ",
                    csrf(&who),
                    esc(&reason)
                ));
            }
        }
        let ids: Vec<u64> = items(&group["jobs"]).filter_map(Value::as_u64).collect();
        let rows: Vec<Vec<String>> = ids
            .iter()
            .filter_map(|id| ui.engine.queue.get(*id).ok())
            .map(|job| {
                let job = serde_json::to_value(&job).unwrap_or_default();
                let id = &job["id"];
                let mut row = job_row(&job);
                row.push(format!(
                    "{}{}",
                    button(&who, &format!("/ui/events/{id}/retry"), "Retry"),
                    button(&who, &format!("/ui/events/{id}/skip"), "Skip")
                ));
                row
            })
            .collect();
        body.push_str(&table(
            &[
                "job", "flow", "CRM id", "ERP id", "state", "reason", "created", "",
            ],
            &rows,
        ));
    }
    if body.is_empty() {
        body.push_str("<p id=no-dead>No dead letters.</p>");
    }
    page("Dead letters", &who, &body)
}

/// The bulk form: a reason code and `retry` or `skip`.
#[derive(Debug, Default, serde::Deserialize)]
struct BulkForm {
    #[serde(default)]
    reason: String,
    #[serde(default)]
    action: String,
}

async fn bulk(State(ui): Shared, Form(BulkForm { reason, action }): Form<BulkForm>) -> Response {
    let action = match action.as_str() {
        "retry" => Action::Retry,
        "skip" => Action::Skip,
        _ => {
            return failed(ApiError(
                StatusCode::BAD_REQUEST,
                "bad_request",
                "action must be retry or skip".into(),
            ));
        }
    };
    match api::bulk_act(&ui.engine, &reason, action) {
        Ok(_) => Redirect::to("/ui/dead").into_response(),
        Err(error) => failed(error),
    }
}

async fn connectors(
    State(ui): Shared,
    Extension(who): Extension<Who>,
    Query(query): Query<BTreeMap<String, String>>,
) -> Html<String> {
    let rows: Vec<Vec<String>> = ui
        .engine
        .connectors
        .values()
        .map(|live| {
            let status = live.status();
            // The name as a path segment in the buttons' URLs.
            let name = encode(&status.name);
            let toggle = match status.paused {
                Some(_) => button(&who, &format!("/ui/connectors/{name}/resume"), "Resume"),
                None => button(&who, &format!("/ui/connectors/{name}/pause"), "Pause"),
            };
            vec![
                esc(&status.name),
                format!(
                    "{}{}",
                    status.kind,
                    if status.sandbox { " (sandbox)" } else { "" }
                ),
                esc(&status.description),
                status.circuit.to_string(),
                esc(status.paused.as_deref().unwrap_or("")),
                format!(
                    "{toggle}{}{}",
                    button(
                        &who,
                        &format!("/ui/connectors/{name}/retry-now"),
                        "Retry waiting jobs now"
                    ),
                    button(
                        &who,
                        &format!("/ui/connectors/{name}/test"),
                        "Test connection"
                    )
                ),
            ]
        })
        .collect();
    let mut body = String::new();
    if let Some(result) = query.get("test") {
        body.push_str(&format!("<p id=test-result>{}</p>", esc(result)));
    }
    body.push_str(&table(
        &["connector", "kind", "description", "circuit", "paused", ""],
        &rows,
    ));
    page("Connectors", &who, &body)
}

async fn connector_action(
    State(ui): Shared,
    Path((name, action)): Path<(String, String)>,
) -> Response {
    let Some(live) = ui.engine.connector(&name) else {
        return failed(ApiError(
            StatusCode::NOT_FOUND,
            "not_found",
            "no such connector".into(),
        ));
    };
    match action.as_str() {
        "pause" => live.pause("paused by an operator".into()),
        "resume" => {
            live.resume();
            ui.engine.queue.wake(&name);
        }
        "retry-now" => {
            if let Err(error) = ui.engine.queue.release_retrying(&name, usize::MAX) {
                return failed(error.into());
            }
        }
        "test" => {
            let result = match live.adapter().probe().await {
                Ok(message) => format!("{name}: ok — {message}"),
                Err(failure) => format!("{name}: failed — {}", failure.message),
            };
            let query = crate::adapters::rest::encode(&result);
            return Redirect::to(&format!("/ui/connectors?test={query}")).into_response();
        }
        _ => {
            return failed(ApiError(
                StatusCode::NOT_FOUND,
                "not_found",
                "no such action".into(),
            ));
        }
    }
    Redirect::to("/ui/connectors").into_response()
}

async fn mappings(State(ui): Shared, Extension(who): Extension<Who>) -> Html<String> {
    let loaded = ui.mappings.current();
    let rows: Vec<Vec<String>> = loaded
        .mappings
        .iter()
        .map(|m| {
            vec![
                esc(&m.flow),
                format!("<code>{}</code>", esc(&m.version)),
                esc(&m.event),
                format!("{} · {}", esc(&m.connector), esc(&m.operation)),
            ]
        })
        .collect();
    let mut body = table(&["flow", "version", "event", "target"], &rows);
    let reload = serde_json::to_value(ui.mappings.last_reload()).unwrap_or_default();
    body.push_str("<h2>Last reload</h2>");
    body.push_str(&html::json_block(&reload));
    page("Mappings", &who, &body)
}
