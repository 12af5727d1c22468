//! The dashboard's page frame and small HTML helpers. Every value shown goes through [`esc`].

use std::fmt::Write as _;

use axum::response::Html;
use serde_json::Value;

use super::auth::Who;

/// Escapes text for HTML content and attribute values.
pub fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A JSON value as text (strings without quotes).
pub fn text(value: &Value) -> String {
    match value {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The elements of a JSON array (none for anything else).
pub fn items(value: &Value) -> impl DoubleEndedIterator<Item = &Value> {
    value.as_array().into_iter().flatten()
}

/// Milliseconds since the epoch as `2026-11-23 10:15:02 UTC`.
pub fn time(ms: &Value) -> String {
    ms.as_i64()
        .and_then(chrono::DateTime::from_timestamp_millis)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_default()
}

const STYLE: &str = "
body{font:14px/1.45 system-ui,sans-serif;margin:0;color:#1d2330;background:#f6f7f9}
header{background:#1d2330;color:#fff;padding:.6rem 1.2rem;display:flex;gap:1.2rem;align-items:center}
header a{color:#cfd6e4;text-decoration:none}header a:hover{color:#fff}
header .who{margin-left:auto;color:#9aa4b8}
main{padding:1rem 1.2rem;max-width:1200px}
table{border-collapse:collapse;width:100%;background:#fff;margin:.5rem 0 1rem}
th,td{text-align:left;padding:.3rem .5rem;border-bottom:1px solid #e3e6eb;vertical-align:top}
th{background:#eef0f4;font-weight:600}
pre{background:#fff;border:1px solid #e3e6eb;padding:.6rem;overflow:auto;max-height:24rem}
.state{padding:.05rem .4rem;border-radius:.3rem;background:#e3e6eb}
.done{background:#d3f2dc}.dead{background:#f8d4d4}.retrying,.parked,.held{background:#fbecc6}
.ok{color:#137333}.bad{color:#b3261e}
form.inline{display:inline}button{cursor:pointer}
textarea{width:100%;font-family:monospace}
.cards{display:flex;gap:1rem;flex-wrap:wrap}.card{background:#fff;border:1px solid #e3e6eb;padding:.6rem 1rem;min-width:9rem}
.card b{font-size:1.4rem;display:block}
";

/// The page frame: navigation, who is logged in, and `body`.
pub fn page(title: &str, who: &Who, body: &str) -> Html<String> {
    let logout = if who.name == "local" {
        "open access (no users configured)".to_owned()
    } else {
        format!(
            "{} ({:?}) <form class=inline method=post action=/ui/logout>{}<button>Log out</button></form>",
            esc(&who.name),
            who.role,
            csrf(who)
        )
    };
    Html(format!(
        "<!doctype html><html lang=en><head><meta charset=utf-8><title>{} · handoff</title>\
         <meta name=viewport content='width=device-width'><style>{STYLE}</style></head><body>\
         <header><b>handoff</b><a href=/ui>Overview</a><a href=/ui/events>Events</a>\
         <a href=/ui/dead>Dead letters</a><a href=/ui/connectors>Connectors</a>\
         <a href=/ui/mappings>Mappings</a><span class=who>{logout}</span></header>\
         <main><h1>{}</h1>{body}</main></body></html>",
        esc(title),
        esc(title)
    ))
}

/// The hidden CSRF field every form carries.
pub fn csrf(who: &Who) -> String {
    format!("<input type=hidden name=csrf value='{}'>", esc(&who.csrf))
}

/// A one-button form that POSTs to `action` (shown only to those who may act).
pub fn button(who: &Who, action: &str, label: &str) -> String {
    if !who.may_act() {
        return String::new();
    }
    format!(
        "<form class=inline method=post action='{}'>{}<button>{}</button></form> ",
        esc(action),
        csrf(who),
        esc(label)
    )
}

/// A state as a coloured tag.
pub fn state(name: &str) -> String {
    format!("<span class='state {0}'>{0}</span>", esc(name))
}

/// A table from a header row and rows of already escaped cells.
pub fn table(head: &[&str], rows: &[Vec<String>]) -> String {
    let mut out = String::from("<table><tr>");
    for h in head {
        let _ = write!(out, "<th>{}</th>", esc(h));
    }
    out.push_str("</tr>");
    for row in rows {
        out.push_str("<tr>");
        for cell in row {
            let _ = write!(out, "<td>{cell}</td>");
        }
        out.push_str("</tr>");
    }
    if rows.is_empty() {
        let _ = write!(out, "<tr><td colspan={}>nothing</td></tr>", head.len());
    }
    out.push_str("</table>");
    out
}

/// Pretty JSON in a `<pre>`.
pub fn json_block(value: &Value) -> String {
    format!(
        "<pre>{}</pre>",
        esc(&serde_json::to_string_pretty(value).unwrap_or_default())
    )
}
