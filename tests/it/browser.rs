//! The dashboard in a real headless Chromium (Debian's `chromium`, driven over WebDriver by
//! `chromedriver`; the test command installs both): log in, watch the overview fill, open a dead
//! letter, edit it with a dry-run preview, resubmit it and see it delivered; a viewer cannot act;
//! an action without the CSRF token is refused; and the README's Quick start walked on the
//! dashboard with the shipped defaults. Screenshots of the pages go to target/screenshots/
//! (to tests/screenshots/, which the README shows, with UPDATE_SCREENSHOTS=1).

use std::process::{Child, Command, Stdio};

use argon2::PasswordHasher;
use argon2::password_hash::SaltString;
use serde_json::{Value, json};

use crate::delivery::{account, crm, won};
use crate::fake_erp::{self, Fake};
use crate::support::*;

/// A WebDriver session on a chromedriver this test started (stopped by PID on drop).
struct Browser {
    driver: Child,
    base: String,
    session: String,
    http: reqwest::Client,
    _profile: tempfile::TempDir,
}

impl Drop for Browser {
    /// Ends the session first (chromedriver then quits the Chromium it started; killing the
    /// driver alone would leave that Chromium running), then stops the driver by PID. Drop
    /// cannot await, so the DELETE is a plain blocking HTTP/1.1 request.
    fn drop(&mut self) {
        use std::io::{Read, Write};
        let address = self.base.trim_start_matches("http://");
        if let Ok(mut stream) = std::net::TcpStream::connect(address) {
            let _ = stream.set_read_timeout(Some(std::time::Duration::from_secs(10)));
            let request = format!(
                "DELETE /session/{} HTTP/1.1\r\nHost: {address}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                self.session
            );
            if stream.write_all(request.as_bytes()).is_ok() {
                let _ = stream.read_to_end(&mut Vec::new());
            }
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

impl Browser {
    async fn start() -> Browser {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver is installed (tests/run.sh installs Debian's chromium-driver)");
        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        eventually(20, "chromedriver to answer", async || {
            let status = http.get(format!("{base}/status")).send().await.ok()?;
            let body: Value = status.json().await.ok()?;
            body["value"]["ready"].as_bool().filter(|r| *r)
        })
        .await;
        let profile = tempfile::tempdir().unwrap();
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": "/usr/bin/chromium", "args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--window-size=1280,900", format!("--user-data-dir={}", profile.path().display())
            ]}
        }}});
        let answer: Value = http
            .post(format!("{base}/session"))
            .json(&capabilities)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let session = answer["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no WebDriver session: {answer}"))
            .to_owned();
        Browser {
            driver,
            base,
            session,
            http,
            _profile: profile,
        }
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Value) -> Value {
        let url = format!("{}/session/{}{path}", self.base, self.session);
        let answer: Value = self
            .http
            .request(method, url)
            .json(&body)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        answer["value"].clone()
    }

    async fn goto(&self, url: &str) {
        self.call(reqwest::Method::POST, "/url", json!({"url": url}))
            .await;
    }

    async fn url(&self) -> String {
        self.call(reqwest::Method::GET, "/url", json!({}))
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// The element `css` selects, waiting up to 10 s for it.
    async fn find(&self, css: &str) -> String {
        eventually(10, css, async || {
            let found = self
                .call(
                    reqwest::Method::POST,
                    "/element",
                    json!({"using": "css selector", "value": css}),
                )
                .await;
            found
                .as_object()?
                .values()
                .next()?
                .as_str()
                .map(str::to_owned)
        })
        .await
    }

    async fn click(&self, css: &str) {
        let element = self.find(css).await;
        self.call(
            reqwest::Method::POST,
            &format!("/element/{element}/click"),
            json!({}),
        )
        .await;
    }

    async fn type_into(&self, css: &str, text: &str) {
        let element = self.find(css).await;
        self.call(
            reqwest::Method::POST,
            &format!("/element/{element}/value"),
            json!({"text": text}),
        )
        .await;
    }

    async fn text(&self, css: &str) -> String {
        let element = self.find(css).await;
        let text = self
            .call(
                reqwest::Method::GET,
                &format!("/element/{element}/text"),
                json!({}),
            )
            .await;
        text.as_str().unwrap_or_default().to_owned()
    }

    async fn script(&self, script: &str) -> Value {
        self.call(
            reqwest::Method::POST,
            "/execute/async",
            json!({"script": script, "args": []}),
        )
        .await
    }

    async fn screenshot(&self, name: &str) {
        use base64::Engine as _;
        let png = self
            .call(reqwest::Method::GET, "/screenshot", json!({}))
            .await;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(png.as_str().unwrap())
            .unwrap();
        let dir = match std::env::var_os("UPDATE_SCREENSHOTS") {
            Some(_) => concat!(env!("CARGO_MANIFEST_DIR"), "/tests/screenshots"),
            None => concat!(env!("CARGO_MANIFEST_DIR"), "/target/screenshots"),
        };
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(format!("{dir}/{name}.png"), bytes).unwrap();
    }

    async fn log_in(&self, app: &TestApp, name: &str, password: &str) {
        self.call(reqwest::Method::DELETE, "/cookie", json!({}))
            .await;
        self.goto(&app.url("/ui")).await;
        assert!(
            self.url().await.ends_with("/ui/login"),
            "strangers are sent to the login page"
        );
        self.type_into("#name", name).await;
        self.type_into("#password", password).await;
        self.click("#login").await;
        self.find("#live").await;
    }

    /// POSTs a form from the page with the page's own CSRF token (or none); the status.
    async fn post_from_page(&self, path: &str, with_token: bool) -> u64 {
        let token = if with_token {
            "'csrf='+encodeURIComponent(document.querySelector('input[name=csrf]').value)"
        } else {
            "''"
        };
        let script = format!(
            "const done=arguments[0];fetch('{path}',{{method:'POST',headers:{{'content-type':'application/x-www-form-urlencoded'}},body:{token}}}).then(r=>done(r.status)).catch(e=>done(0));"
        );
        self.script(&script).await.as_u64().unwrap_or(0)
    }
}

pub fn hash(password: &str) -> String {
    let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
    argon2::Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .unwrap()
        .to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_operator_fixes_a_dead_letter_in_the_browser_and_a_viewer_cannot_act() {
    let (fake, addr) = Fake::start().await;
    let connectors = tempfile::tempdir().unwrap();
    fake_erp::connectors(connectors.path(), addr, 5);
    let config = format!(
        "{CONFIG}\n[dashboard]\nusers = [\n  {{ name = \"ops\", password_hash = \"{}\", role = \"operator\" }},\n  \
         {{ name = \"auditor\", password_hash = \"{}\", role = \"viewer\" }},\n]\n",
        hash("ops-password-1"),
        hash("auditor-password-1")
    );
    let app = TestApp::start_with(
        &config,
        &[(
            "HANDOFF_CONNECTORS_DIR",
            connectors.path().to_str().unwrap(),
        )],
    )
    .await;
    let unauthenticated = app
        .client
        .get(app.url("/api/v1/jobs"))
        .send()
        .await
        .unwrap();
    assert_eq!(unauthenticated.status(), 401);

    let browser = Browser::start().await;
    browser.log_in(&app, "ops", "ops-password-1").await;
    assert_eq!(browser.text("#received").await, "0");

    // Events arrive while the page is open: the overview fills by itself.
    crm(
        &app,
        "acc-b",
        &account("001B", "2026-11-20T10:00:00Z", "Browser GmbH"),
    )
    .await;
    eventually(10, "the customer", async || {
        fake.books().customers.get("001B").cloned()
    })
    .await;
    let mut bad: Value =
        serde_json::from_str(&won("006B", "001B", "2026-11-20T11:00:00Z")).unwrap();
    bad["data"]["OpportunityLineItems"][0]["UnitPrice"] = json!("12,50 EUR");
    crm(&app, "opp-b", &bad.to_string()).await;
    eventually(
        15,
        "the overview to show the events and the dead letter",
        async || {
            let received = browser.text("#received").await;
            let dead = browser.text("#dead-count").await;
            (received == "2" && dead == "1").then_some(())
        },
    )
    .await;
    assert!(browser.url().await.ends_with("/ui"), "no reload needed");
    browser.screenshot("overview").await;

    // The dead letter, its reason, the edit with a preview, the resubmit.
    browser.goto(&app.url("/ui/dead")).await;
    assert!(browser.text("h2.group").await.starts_with("fix_data"));
    browser.screenshot("dead-letters").await;
    browser.click("table a").await;
    assert!(browser.text("#reason").await.contains("12,50 EUR"));
    browser.click("#edit").await;
    let payload = browser
        .script("arguments[0](document.querySelector('#payload').value)")
        .await;
    let mut payload: Value = serde_json::from_str(payload.as_str().unwrap()).unwrap();
    payload["data"]["OpportunityLineItems"][0]["UnitPrice"] = json!("12.50");
    let fixed = serde_json::to_string_pretty(&payload).unwrap();
    browser
        .script(&format!(
            "document.querySelector('#payload').value={};arguments[0]()",
            serde_json::to_string(&fixed).unwrap()
        ))
        .await;
    browser.click("#preview").await;
    // The new page may still be loading when the element first appears: wait for its text.
    let preview = eventually(10, "the preview", async || {
        Some(browser.text("#preview-ok").await).filter(|t| !t.is_empty())
    })
    .await;
    assert!(preview.contains("mapped document"), "{preview}");
    let document = browser.text("main pre").await;
    assert!(document.contains("\"unit_price\": 12.50"), "{document}");
    browser.screenshot("edit-and-preview").await;
    assert!(fake.books().orders.is_empty(), "a preview sends nothing");
    browser.click("#resubmit").await;
    // The click posts the form from the preview page (`…/preview`); wait for the redirect to the
    // event page before reloading it, or a reload could repeat the preview URL (a GET of a
    // POST-only page) and cancel the post.
    let event_page = eventually(10, "the redirect to the event page", async || {
        Some(browser.url().await).filter(|url| !url.ends_with("/preview"))
    })
    .await;
    assert!(!event_page.ends_with("/resubmit"), "{event_page}");
    eventually(15, "the resubmitted job to be delivered", async || {
        browser.goto(&event_page).await;
        browser
            .text("main p span.state")
            .await
            .eq("done")
            .then_some(())
    })
    .await;
    assert!(fake.books().orders.contains_key("006B"));
    browser.screenshot("event-detail").await;

    // Without the CSRF token an operator's action is refused; with it, it goes through.
    browser.goto(&app.url("/ui/connectors")).await;
    assert_eq!(
        browser
            .post_from_page("/ui/connectors/erp/pause", false)
            .await,
        403
    );
    assert_eq!(
        browser
            .post_from_page("/ui/connectors/erp/pause", true)
            .await,
        200
    );
    browser.goto(&app.url("/ui/connectors")).await;
    assert!(
        browser
            .text("table")
            .await
            .contains("paused by an operator")
    );
    browser.screenshot("connectors").await;
    assert_eq!(
        browser
            .post_from_page("/ui/connectors/erp/resume", true)
            .await,
        200
    );

    // A viewer sees the pages but no buttons, and an action with a valid token is refused.
    browser.log_in(&app, "auditor", "auditor-password-1").await;
    browser.goto(&app.url("/ui/connectors")).await;
    let buttons = browser
        .script("arguments[0](document.querySelectorAll('main button').length)")
        .await;
    assert_eq!(buttons, json!(0));
    assert_eq!(
        browser
            .post_from_page("/ui/connectors/erp/pause", true)
            .await,
        403
    );
    browser.goto(&app.url("/ui/mappings")).await;
    browser.screenshot("mappings").await;
}

/// The README's Quick start, on the dashboard: the shipped defaults (sandbox ERP and CRM), the
/// example events from `mappings/events/`, an operator who logs in and sees both delivered,
/// the order's mapped document, the sandbox labelled as one, the ERP's confirmation and the
/// status written back to the CRM.
#[tokio::test(flavor = "multi_thread")]
async fn a_newcomer_follows_the_quick_start_on_the_dashboard() {
    let users = format!(
        "[{{ name = 'ops', password_hash = '{}', role = 'operator' }}]",
        hash("ops-password-1")
    );
    let app = TestApp::start_with(
        handoff::config::EMBEDDED_DEFAULTS,
        &[("HANDOFF_DASHBOARD__USERS", &users)],
    )
    .await;
    let browser = Browser::start().await;
    browser.log_in(&app, "ops", "ops-password-1").await;
    for (id, file) in [
        ("qs-account", "account.json"),
        ("qs-won", "won-opportunity.json"),
    ] {
        let body = std::fs::read_to_string(format!(
            "{}/mappings/events/{file}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap();
        crm(&app, id, &body).await;
    }
    eventually(15, "the overview to count both events", async || {
        (browser.text("#received").await == "2").then_some(())
    })
    .await;

    browser
        .goto(&app.url("/ui/events?flow=opportunity_to_sales_order"))
        .await;
    eventually(15, "the order delivered", async || {
        browser
            .goto(&app.url("/ui/events?flow=opportunity_to_sales_order"))
            .await;
        browser.text("table").await.contains("done").then_some(())
    })
    .await;
    browser.click("table a").await;
    assert_eq!(browser.text("main p span.state").await, "done");
    let document = browser.text("main pre").await;
    assert!(
        document.contains("006000000000001AAA") && document.contains("58.47"),
        "{document}"
    );
    browser.screenshot("quick-start-order").await;

    browser.goto(&app.url("/ui/connectors")).await;
    let connectors = browser.text("table").await;
    assert!(connectors.contains("sandbox"), "{connectors}");

    // The ERP confirms (the sandbox plays it), from the operator's page with its CSRF token.
    let status = browser
        .post_from_page(
            "/api/v1/sandbox/erp/orders/006000000000001AAA/confirm",
            true,
        )
        .await;
    assert_eq!(status, 200);
    eventually(15, "the confirmation written back to the CRM", async || {
        browser
            .goto(&app.url("/ui/events?flow=order_status_to_opportunity"))
            .await;
        browser.text("table").await.contains("done").then_some(())
    })
    .await;
    browser.screenshot("quick-start-status").await;
    app.stop().await;
}

/// An operator starts a reconciliation run on the dashboard, reads a row's source and target
/// side by side, replays a missed account and adopts one the ERP already had.
#[tokio::test(flavor = "multi_thread")]
async fn an_operator_reconciles_a_flow_on_the_dashboard() {
    let (fake, addr) = Fake::start().await;
    let connectors = tempfile::tempdir().unwrap();
    fake_erp::connectors(connectors.path(), addr, 5);
    let crm_file = connectors.path().join("crm.yaml");
    let crm_text = std::fs::read_to_string(&crm_file).unwrap();
    let lists = crate::tryton_reconcile::crm_lists(10);
    std::fs::write(&crm_file, format!("{crm_text}{lists}")).unwrap();
    let erp_file = connectors.path().join("erp.yaml");
    let erp_text = std::fs::read_to_string(&erp_file).unwrap();
    std::fs::write(
        &erp_file,
        format!(
            "{erp_text}  list_customers: {{ method: GET, path: /customers, list: {{ items: /customers, next: /next, id: /id, key: /code }} }}\n"
        ),
    )
    .unwrap();
    let mappings = crate::tryton_reconcile::reconciled_mappings(&[(
        "account_to_customer.yaml",
        "  source: { connector: crm, operation: list_accounts, wrap: data }\n  target: list_customers\n  \
         max_repair_share: 1.0\n",
    )]);
    let config = format!(
        "{CONFIG}\n[dashboard]\nusers = [{{ name = \"ops\", password_hash = \"{}\", role = \"operator\" }}]\n",
        hash("ops-password-1")
    );
    let app = TestApp::start_with(
        &config,
        &[
            (
                "HANDOFF_CONNECTORS_DIR",
                connectors.path().to_str().unwrap(),
            ),
            ("HANDOFF_MAPPINGS_DIR", mappings.path().to_str().unwrap()),
        ],
    )
    .await;
    let version = "2026-11-20T10:00:00Z";
    for (id, name) in [
        ("001W1", "Sent GmbH"),
        ("001W2", "Missed GmbH"),
        ("001W3", "Typed GmbH"),
    ] {
        let body = account(id, version, name);
        let data = serde_json::from_str::<Value>(&body).unwrap()["data"].clone();
        fake.books()
            .records
            .entry("Account".into())
            .or_default()
            .insert(id.into(), data);
        if id == "001W1" {
            crm(&app, "acc-w1", &body).await;
        }
    }
    // Someone typed the third account into the ERP by hand.
    fake.books()
        .customers
        .insert("001W3".into(), json!({"name": "Typed GmbH"}));
    eventually(10, "the sent account delivered", async || {
        fake.books().customers.get("001W1").cloned()
    })
    .await;

    let browser = Browser::start().await;
    browser.log_in(&app, "ops", "ops-password-1").await;
    browser.goto(&app.url("/ui/reconcile")).await;
    browser.click("#start button").await;
    browser.find("#run-state").await;
    let run_page = browser.url().await;
    eventually(20, "the run finished", async || {
        browser.goto(&run_page).await;
        (browser.text("#run-state").await == "done").then_some(())
    })
    .await;
    assert!(
        browser
            .text("#summary")
            .await
            .contains("3 source records compared")
    );
    assert!(
        browser
            .text("#row-0 h3")
            .await
            .contains("missed_event — 001W2")
    );
    assert!(
        browser.text("#row-0").await.contains("Missed GmbH"),
        "the source record shown"
    );
    assert!(browser.text("#row-1 h3").await.contains("unlinked — 001W3"));
    assert!(
        browser.text("#row-1").await.contains("C-001W3"),
        "the target record shown"
    );
    browser.screenshot("reconcile").await;

    browser.click("#row-0 form[action$='/replay'] button").await;
    eventually(10, "the replay noted", async || {
        browser
            .text("#row-0 .action")
            .await
            .contains("replayed (ops)")
            .then_some(())
    })
    .await;
    eventually(10, "the missed account delivered", async || {
        fake.books().customers.get("001W2").cloned()
    })
    .await;
    browser.click("#row-1 form[action$='/adopt'] button").await;
    eventually(10, "the adoption noted", async || {
        browser
            .text("#row-1 .action")
            .await
            .contains("adopted C-001W3")
            .then_some(())
    })
    .await;
    app.stop().await;
}
