//! Closed to attackers: a viewer can log out, wrong passwords are throttled (429), slow senders
//! and connection hogs are cut off, an open dashboard on a non-loopback address does not start,
//! a cross-site request cannot act in open mode, and a 401 says how to authenticate.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::browser::hash;
use crate::support::*;

fn with_users() -> String {
    format!(
        "{CONFIG}\n[dashboard]\nusers = [\n  {{ name = \"ops\", password_hash = \"{}\", role = \"operator\" }},\n  \
         {{ name = \"auditor\", password_hash = \"{}\", role = \"viewer\" }},\n]\n",
        hash("ops-password-1"),
        hash("auditor-password-1")
    )
}

/// Logs in with a form; returns the status and the session cookie.
async fn log_in(app: &TestApp, name: &str, password: &str) -> (u16, Option<String>) {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let response = client
        .post(app.url("/ui/login"))
        .form(&[("name", name), ("password", password)])
        .send()
        .await
        .unwrap();
    let cookie = response
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(str::to_owned);
    (response.status().as_u16(), cookie)
}

#[tokio::test]
async fn a_viewer_can_log_out_and_a_401_says_how_to_authenticate() {
    let app = TestApp::start_with(&with_users(), &[]).await;
    let unauthenticated = app
        .client
        .get(app.url("/api/v1/jobs"))
        .send()
        .await
        .unwrap();
    assert_eq!(unauthenticated.status(), 401);
    let challenge = unauthenticated.headers().get("www-authenticate").unwrap();
    assert!(
        challenge.to_str().unwrap().starts_with("Bearer"),
        "{challenge:?}"
    );

    let (status, cookie) = log_in(&app, "auditor", "auditor-password-1").await;
    assert_eq!(status, 303);
    let cookie = cookie.unwrap();
    let page = app
        .client
        .get(app.url("/ui"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let csrf = page
        .split(r#"name="csrf" value=""#)
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap()
        .to_owned();
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let logout = client
        .post(app.url("/ui/logout"))
        .header("cookie", &cookie)
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(logout.status(), 303, "a viewer may log out");
    let after = client
        .get(app.url("/ui"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(
        after.status(),
        303,
        "the session is gone: back to the login page"
    );
}

#[tokio::test]
async fn many_wrong_passwords_in_parallel_are_throttled() {
    let app = TestApp::start_with(&with_users(), &[]).await;
    let started = Instant::now();
    let guesses = (0..40).map(|n| {
        let app = &app;
        async move { log_in(app, "ops", &format!("guess-{n}")).await.0 }
    });
    let statuses = futures::future::join_all(guesses).await;
    let refused = statuses.iter().filter(|s| **s == 401).count();
    let throttled = statuses.iter().filter(|s| **s == 429).count();
    assert_eq!(refused + throttled, 40, "{statuses:?}");
    assert!(
        throttled >= 10,
        "only {throttled} of 40 throttled: {statuses:?}"
    );
    // While the name waits, even the right password is refused without being checked.
    let mut waiting = false;
    for n in 0..20 {
        if log_in(&app, "ops", &format!("again-{n}")).await.0 == 429 {
            waiting = true;
            break;
        }
    }
    assert!(waiting, "no 429 for a name with many wrong passwords");
    assert_eq!(log_in(&app, "ops", "ops-password-1").await.0, 429);
    println!(
        "40 parallel guesses in {:?}: {refused} checked, {throttled} throttled",
        started.elapsed()
    );
}

#[tokio::test]
async fn slow_senders_and_connection_hogs_are_cut_off() {
    let app = TestApp::start_with(
        CONFIG,
        &[
            ("HANDOFF_HTTP__HEADER_READ_TIMEOUT_SECS", "1"),
            ("HANDOFF_HTTP__REQUEST_TIMEOUT_SECS", "2"),
            ("HANDOFF_HTTP__MAX_CONNECTIONS_PER_ADDRESS", "4"),
        ],
    )
    .await;
    let addr = app.addr;
    tokio::task::spawn_blocking(move || {
        // Headers a byte at a time: closed within the header timeout (1 s here).
        let mut slow = std::net::TcpStream::connect(addr).unwrap();
        let started = Instant::now();
        for byte in b"POST /hooks/crm HTTP/1.1\r\nHost".iter() {
            if slow.write_all(&[*byte]).is_err() || started.elapsed() > Duration::from_secs(3) {
                break;
            }
            std::thread::sleep(Duration::from_millis(300));
        }
        slow.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        let mut buf = [0u8; 256];
        let read = slow.read(&mut buf);
        let cut = match &read {
            Ok(0) => true,
            Ok(n) => String::from_utf8_lossy(&buf[..*n]).starts_with("HTTP/1.1 408"),
            Err(error) => !matches!(
                error.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ),
        };
        assert!(cut, "a slow sender is still connected: {read:?}");
        assert!(started.elapsed() < Duration::from_secs(7), "{:?}", started.elapsed());

        // A body a byte a second: answered 408 (or cut) within the request timeout.
        let mut dribble = std::net::TcpStream::connect(addr).unwrap();
        dribble.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        dribble
            .write_all(b"POST /hooks/crm HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{")
            .unwrap();
        let started = Instant::now();
        let mut answer = Vec::new();
        for _ in 0..8 {
            std::thread::sleep(Duration::from_millis(500));
            if dribble.write_all(b" ").is_err() {
                break;
            }
        }
        let _ = dribble.read_to_end(&mut answer);
        let answer = String::from_utf8_lossy(&answer);
        assert!(
            answer.is_empty() || answer.starts_with("HTTP/1.1 408"),
            "{answer}"
        );
        assert!(started.elapsed() < Duration::from_secs(6), "{:?}", started.elapsed());

        // Four idle connections from one address; the fifth is closed at once.
        let hogs: Vec<_> = (0..4)
            .map(|_| std::net::TcpStream::connect(addr).unwrap())
            .collect();
        std::thread::sleep(Duration::from_millis(200));
        let mut fifth = std::net::TcpStream::connect(addr).unwrap();
        fifth.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        let _ = fifth.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
        let mut buf = [0u8; 64];
        let read = fifth.read(&mut buf);
        assert!(
            matches!(read, Ok(0) | Err(_)),
            "the fifth connection was served: {:?}",
            read.map(|n| String::from_utf8_lossy(&buf[..n]).into_owned())
        );
        drop(hogs);
    })
    .await
    .unwrap();
    // Once the hogs are gone, a new connection is served again.
    eventually(5, "a connection served after the hogs left", async || {
        let status = reqwest::get(app.url("/healthz")).await.ok()?.status();
        (status == 200).then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_cross_site_request_cannot_act_in_open_mode() {
    let app = TestApp::start().await;
    let client = reqwest::Client::new();
    let foreign = client
        .post(app.url("/api/v1/connectors/erp/pause"))
        .header("origin", "http://evil.example")
        .header("content-type", "application/x-www-form-urlencoded")
        .body("x=1")
        .send()
        .await
        .unwrap();
    assert_eq!(foreign.status(), 403);
    let fetch_site = client
        .post(app.url("/api/v1/connectors/erp/pause"))
        .header("sec-fetch-site", "cross-site")
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(fetch_site.status(), 403);
    // A form body with no Origin (an old browser) needs the CSRF token too.
    let form = client
        .post(app.url("/api/v1/connectors/erp/pause"))
        .header("content-type", "text/plain")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(form.status(), 403);
    let connectors = api(&app, "/api/v1/connectors").await;
    assert!(
        connectors["connectors"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["paused"].is_null()),
        "{connectors}"
    );
    // The CLI and local scripts (JSON, no Origin) still work.
    let (status, reply) = api_post(&app, "/api/v1/connectors/erp/pause", json!({})).await;
    assert_eq!(status, 200, "{reply}");
}

#[test]
fn an_open_dashboard_on_a_non_loopback_address_does_not_start() {
    let dir = tempfile::tempdir().unwrap();
    let env = |extra: &[(&str, &str)]| {
        let mut env = vec![
            ("HANDOFF_LISTEN".to_owned(), "0.0.0.0:0".to_owned()),
            (
                "HANDOFF_DATA_DIR".to_owned(),
                dir.path().display().to_string(),
            ),
        ];
        env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        env
    };
    let secrets = secrets();
    let lookup = move |name: &str| secrets.get(name).cloned();
    let origin = handoff::config::Origin::File("test.toml".into());
    let config = handoff::config::Config::parse(CONFIG, env(&[])).unwrap();
    let refused = handoff::app::App::build(&config, &origin, &lookup)
        .err()
        .unwrap();
    let message = format!("{refused:#}");
    assert!(message.contains("open_access"), "{message}");
    let config =
        handoff::config::Config::parse(CONFIG, env(&[("HANDOFF_DASHBOARD__OPEN_ACCESS", "true")]))
            .unwrap();
    let data = tempfile::tempdir().unwrap();
    let mut config = config;
    config.data_dir = data.path().to_owned();
    let (_, warnings) = handoff::app::App::build(&config, &origin, &lookup).unwrap();
    assert!(
        warnings.iter().any(|w| w.contains("open to anyone")),
        "{warnings:?}"
    );
}
