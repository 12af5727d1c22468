//! The login form, logging in (throttled) and out.

use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::{Extension, Form};
use maud::{DOCTYPE, html};

use super::Shared;
use crate::dashboard::auth;

pub async fn form() -> Html<String> {
    view("")
}

fn view(message: &str) -> Html<String> {
    let markup = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                title { "Log in · handoff" }
            }
            body style="font:15px system-ui;max-width:22rem;margin:4rem auto" {
                h1 { "handoff" }
                p.bad #message { (message) }
                form method="post" action="/ui/login" {
                    p { label { "Name" br; input #name name="name" autocomplete="username"; } }
                    p {
                        label {
                            "Password" br;
                            input #password name="password" type="password" autocomplete="current-password";
                        }
                    }
                    p { button #login { "Log in" } }
                }
            }
        }
    };
    Html(markup.into_string())
}

/// The login form's fields (a missing one is empty).
#[derive(Debug, Default, serde::Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    password: String,
}

pub async fn login(
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
            view(&format!("Too many wrong passwords: try again in {secs} s.")),
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
            (StatusCode::UNAUTHORIZED, view("Wrong name or password.")).into_response()
        }
    }
}

pub async fn logout(State(ui): Shared, headers: HeaderMap) -> Response {
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
