//! The page frame and the small pieces every page uses. maud escapes every value it is given;
//! only the style sheet and the overview's refresh script go out as they are written here.

use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use maud::{DOCTYPE, Markup, PreEscaped, html};
use serde_json::Value;

use crate::dashboard::auth::Who;

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
form.inline{display:inline}button{cursor:pointer}.actions{margin:.6rem 0}
textarea{width:100%;font-family:monospace}
.cards{display:flex;gap:1rem;flex-wrap:wrap}.card{background:#fff;border:1px solid #e3e6eb;padding:.6rem 1rem;min-width:9rem}
.card b{font-size:1.4rem;display:block}
";

/// The page frame: navigation, who is logged in, and `body`.
pub fn page(title: &str, who: &Who, body: Markup) -> Html<String> {
    let markup = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                title { (title) " · handoff" }
                meta name="viewport" content="width=device-width";
                style { (PreEscaped(STYLE)) }
            }
            body {
                header {
                    b { "handoff" }
                    a href="/ui" { "Overview" }
                    a href="/ui/events" { "Events" }
                    a href="/ui/dead" { "Dead letters" }
                    a href="/ui/connectors" { "Connectors" }
                    a href="/ui/mappings" { "Mappings" }
                    a href="/ui/reconcile" { "Reconciliation" }
                    span.who {
                        @if who.name == "local" {
                            "open access (no users configured)"
                        } @else {
                            (who.name) " (" (format!("{:?}", who.role)) ") "
                            form.inline method="post" action="/ui/logout" {
                                (csrf(who))
                                button { "Log out" }
                            }
                        }
                    }
                }
                main {
                    h1 { (title) }
                    (body)
                }
            }
        }
    };
    Html(markup.into_string())
}

/// A page that says what went wrong, with a way back.
pub fn error_page(status: StatusCode, message: &str) -> Response {
    let markup = html! {
        (DOCTYPE)
        title { (status) }
        p { (message) }
        p { a href="/ui" { "Back" } }
    };
    (status, Html(markup.into_string())).into_response()
}

/// The hidden CSRF field every form carries.
pub fn csrf(who: &Who) -> Markup {
    html! { input type="hidden" name="csrf" value=(who.csrf); }
}

/// A one-button form that POSTs to `action` (shown only to those who may act).
pub fn button(who: &Who, action: &str, label: &str) -> Markup {
    html! {
        @if who.may_act() {
            form.inline method="post" action=(action) {
                (csrf(who))
                button { (label) }
            }
            " "
        }
    }
}

/// A state as a coloured tag.
pub fn state(name: &str) -> Markup {
    html! { span class={ "state " (name) } { (name) } }
}

/// A table from a header row and rows of cells; "nothing" when there are no rows.
pub fn table(head: &[&str], rows: &[Vec<Markup>]) -> Markup {
    html! {
        table {
            tr { @for h in head { th { (h) } } }
            @for row in rows {
                tr { @for cell in row { td { (cell) } } }
            }
            @if rows.is_empty() {
                tr { td colspan=(head.len()) { "nothing" } }
            }
        }
    }
}

/// Pretty JSON in a `<pre>`.
pub fn json_block(value: &Value) -> Markup {
    html! { pre { (serde_json::to_string_pretty(value).unwrap_or_default()) } }
}

/// Milliseconds since the epoch as `2026-11-23 10:15:02 UTC`.
pub fn time(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Role;

    fn operator(name: &str, csrf: &str) -> Who {
        Who {
            name: name.into(),
            role: Role::Operator,
            csrf: csrf.into(),
            by_token: false,
        }
    }

    /// What a CRM, an ERP or a user typed reaches the page as text, never as markup.
    #[test]
    fn every_value_is_escaped() {
        let hostile = r#""><script>alert("x")</script>"#;
        let who = operator(hostile, hostile);
        let body = html! {
            (table(&[hostile], &[vec![html! { (hostile) }, state(hostile)]]))
            (button(&who, hostile, hostile))
            (json_block(&serde_json::json!({ "name": hostile })))
        };
        let page = page(hostile, &who, body).0;
        assert!(!page.contains("<script>alert"), "{page}");
        // Attribute values are always in double quotes, and a double quote in a value is escaped.
        assert!(page.contains(r#"value="&quot;&gt;&lt;script"#), "{page}");
        assert!(
            page.contains("&quot;&gt;&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;"),
            "{page}"
        );
        let error = error_page(StatusCode::NOT_FOUND, hostile);
        assert_eq!(error.status(), StatusCode::NOT_FOUND);
    }

    #[test]
    fn a_viewer_gets_no_buttons_and_an_empty_table_says_nothing() {
        let viewer = Who {
            role: Role::Viewer,
            ..operator("v", "t")
        };
        assert_eq!(button(&viewer, "/ui/x", "Go").into_string(), "");
        let operator = operator("o", "t0k");
        let form = button(&operator, "/ui/x", "Go").into_string();
        assert!(
            form.contains(r#"action="/ui/x""#) && form.contains(r#"value="t0k""#),
            "{form}"
        );
        let empty = table(&["a", "b"], &[]).into_string();
        assert!(empty.contains(r#"<td colspan="2">nothing</td>"#), "{empty}");
    }
}
