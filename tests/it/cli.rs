//! The binary's commands: `check` reports problems with locations; `healthcheck` asks `/readyz`.

use std::process::Command;

fn handoff() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_handoff"));
    command.env_remove("HANDOFF_CONFIG");
    command
}

/// Runs `handoff check --config <config>`; returns whether it passed, and what it printed.
fn check(config: &std::path::Path) -> (bool, String) {
    let output = handoff()
        .arg("check")
        .arg("--config")
        .arg(config)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    (output.status.success(), stdout)
}

#[test]
fn check_passes_on_the_embedded_defaults() {
    let output = handoff()
        .arg("check")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    assert!(stdout.contains("ok:"), "{stdout}");
}

#[test]
fn check_reports_every_problem_with_its_location() {
    let dir = tempfile::tempdir().unwrap();
    let mappings = dir.path().join("mappings");
    std::fs::create_dir(&mappings).unwrap();
    std::fs::write(
        mappings.join("broken.yaml"),
        "flow: x\nfields:\n  a: [1, 2\n",
    )
    .unwrap();
    let config = dir.path().join("handoff.toml");
    std::fs::write(
        &config,
        format!(
            "mappings_dir = {:?}\nconnectors_dir = {:?}\n[sources.crm]\npreset = \"github\"\nsecret_env = \"SURELY_UNSET_SECRET_VAR\"\n",
            mappings.display().to_string(),
            dir.path().join("none").display().to_string()
        ),
    )
    .unwrap();
    let (passed, stdout) = check(&config);
    assert!(!passed);
    assert!(
        stdout.contains("sources.crm: environment variable SURELY_UNSET_SECRET_VAR is not set"),
        "{stdout}"
    );
    let yaml_line = stdout
        .lines()
        .find(|l| l.contains("broken.yaml:"))
        .unwrap_or_else(|| panic!("{stdout}"));
    let location = yaml_line.split(": ").next().unwrap();
    let mut parts = location.rsplit(':');
    let col: u32 = parts.next().unwrap().parse().unwrap();
    let line: u32 = parts.next().unwrap().parse().unwrap();
    assert!(line >= 3 && col >= 1, "{yaml_line}");
    assert!(stdout.contains("2 problem(s)"), "{stdout}");
}

#[test]
fn check_rejects_unknown_keys_readably() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("handoff.toml");
    std::fs::write(
        &config,
        "listen = \"127.0.0.1:1\"\n[ingest]\nmax_body = 5\n",
    )
    .unwrap();
    let (passed, stdout) = check(&config);
    assert!(!passed);
    assert!(stdout.contains("unknown field `max_body`"), "{stdout}");
}

#[test]
fn healthcheck_fails_when_nothing_answers() {
    let output = handoff()
        .args(["healthcheck", "--url", "http://127.0.0.1:9"])
        .output()
        .unwrap();
    assert!(!output.status.success());
}

#[test]
fn help_explains_the_commands() {
    let output = handoff().arg("--help").output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    for command in ["serve", "check", "healthcheck"] {
        assert!(stdout.contains(command), "{stdout}");
    }
}

#[test]
fn serve_refuses_to_start_with_a_broken_mapping() {
    let dir = tempfile::tempdir().unwrap();
    let mappings = dir.path().join("mappings");
    std::fs::create_dir(&mappings).unwrap();
    let good = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("mappings/account_to_customer.yaml"),
    )
    .unwrap();
    std::fs::write(
        mappings.join("broken.yaml"),
        good.replace("trim($.data.Name)", "trim($.data.Name"),
    )
    .unwrap();
    let lookups = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("mappings/lookups");
    std::fs::create_dir(mappings.join("lookups")).unwrap();
    for table in ["payment_terms.yaml", "countries.yaml"] {
        std::fs::copy(lookups.join(table), mappings.join("lookups").join(table)).unwrap();
    }
    let config = dir.path().join("handoff.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:0\"\ndata_dir = {:?}\nmappings_dir = {:?}\nschemas_dir = {:?}\n",
            dir.path().join("data").display().to_string(),
            mappings.display().to_string(),
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("schemas")
                .display()
                .to_string(),
        ),
    )
    .unwrap();
    let output = handoff()
        .args(["serve", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("the mappings have 1 problem(s)"),
        "{stderr}"
    );
    assert!(
        stderr.contains("broken.yaml:15:9: expected ',' or ')'"),
        "{stderr}"
    );
}

#[test]
fn mapping_test_and_run_work_on_the_shipped_mappings() {
    let root = env!("CARGO_MANIFEST_DIR");
    let output = handoff()
        .args(["mapping", "test"])
        .current_dir(root)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    assert!(stdout.contains(" passed, 0 failed"), "{stdout}");

    let (passed, stdout) =
        mapping_run(r#"{"data": {"Id": "001X", "Name": "Zeta", "Credit_Limit__c": 12.345}}"#);
    assert!(passed, "{stdout}");
    let document: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(document["credit_limit"].to_string(), "12.35");
    assert_eq!(document["payment_terms"], "NET30");

    let (passed, stdout) = mapping_run(r#"{"data": {"Id": "001Y", "Name": " "}}"#);
    assert!(!passed);
    assert!(
        stdout.starts_with("error [required]: field name"),
        "{stdout}"
    );
}

/// `handoff mapping run mappings/account_to_customer.yaml --event <event>`: passed, and stdout.
fn mapping_run(event: &str) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("event.json");
    std::fs::write(&path, event).unwrap();
    let output = handoff()
        .args([
            "mapping",
            "run",
            "mappings/account_to_customer.yaml",
            "--event",
        ])
        .arg(&path)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    (output.status.success(), stdout)
}

/// A stock hold on a connector that cannot check stock would never hold: `check` refuses it.
/// Runs `check` on a copy of the shipped mappings that `edit` changes (the shipped connectors
/// and schemas beside them).
fn check_edited_mappings(edit: impl FnOnce(&std::path::Path)) -> (bool, String) {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().unwrap();
    let mappings = dir.path().join("mappings");
    crate::support::copy_dir(&root.join("mappings"), &mappings);
    edit(&mappings);
    let config = dir.path().join("handoff.toml");
    std::fs::write(
        &config,
        format!(
            "mappings_dir = {:?}\nconnectors_dir = {:?}\nschemas_dir = {:?}\n",
            mappings.display().to_string(),
            root.join("connectors").display().to_string(),
            root.join("schemas").display().to_string(),
        ),
    )
    .unwrap();
    check(&config)
}

#[test]
fn check_refuses_a_stock_hold_on_a_connector_without_a_stock_view() {
    let (passed, stdout) = check_edited_mappings(|mappings| {
        let path = mappings.join("opportunity_to_sales_order.yaml");
        let text = std::fs::read_to_string(&path).unwrap();
        let held = text.replacen("holds:\n", "holds:\n  - { stock: true }\n", 1);
        assert_ne!(held, text, "the shipped mapping has a holds list");
        std::fs::write(&path, held).unwrap();
    });
    assert!(!passed, "{stdout}");
    assert!(
        stdout.contains("holds: stock needs a connector that can check stock"),
        "{stdout}"
    );
}

/// A `reconcile:` block naming a connector that is not there, or a list operation a
/// connector does not have, is found by `check`, not when a run starts.
#[test]
fn check_finds_reconcile_blocks_the_connectors_cannot_serve() {
    let (passed, stdout) = check_edited_mappings(|mappings| {
        for (file, block) in [
            (
                "account_to_customer.yaml",
                "  source: { connector: salesforce, operation: list_accounts, wrap: data }\n  target: list_customers\n",
            ),
            (
                "opportunity_to_sales_order.yaml",
                "  source: { connector: crm, operation: list_opportunities, wrap: data }\n  target: list_sales_orders\n",
            ),
        ] {
            let path = mappings.join(file);
            let text = std::fs::read_to_string(&path).unwrap();
            std::fs::write(&path, format!("{text}\nreconcile:\n{block}")).unwrap();
        }
    });
    assert!(!passed, "{stdout}");
    assert!(
        stdout.contains(
            "mapping account_to_customer: reconcile.source: connector \"salesforce\" has no file"
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains(
            "mapping opportunity_to_sales_order: reconcile.source: connector \"crm\" (sandbox) has no list operation \"list_opportunities\""
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains("reconcile.target: connector \"erp\" (sandbox) has no list operation \"list_sales_orders\""),
        "{stdout}"
    );
}

/// `check` with a copy of the shipped config and every secret set passes, as `serve` does.
#[test]
fn check_passes_on_a_copy_of_the_example_config_with_its_secrets() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("handoff.toml");
    std::fs::copy(root.join("config.example.toml"), &config).unwrap();
    let mut command = handoff();
    command
        .current_dir(root)
        .arg("check")
        .arg("--config")
        .arg(&config);
    for name in [
        "CRM_WEBHOOK_SECRET",
        "HUBSPOT_CLIENT_SECRET",
        "STRIPE_WEBHOOK_SECRET",
        "GITHUB_WEBHOOK_SECRET",
        "SHOPIFY_WEBHOOK_SECRET",
        "ERP_WEBHOOK_SECRET",
    ] {
        command.env(name, "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
    }
    // The CLI's own token variable is not a config key.
    command.env("HANDOFF_API_TOKEN", "a-token-for-the-cli");
    let output = command.output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    assert!(!stdout.contains("warning"), "{stdout}");
}

/// Mistakes are named where they are: a typo in a rule's key, an event no source sends, a
/// connector secret that is not set (at its `auth:` line, without false alarms for the
/// mappings that use the connector), an unknown override variable.
#[test]
fn check_names_each_mistake_where_it_is() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().unwrap();
    let mappings = dir.path().join("mappings");
    crate::support::copy_dir(&root.join("mappings"), &mappings);
    let orders = mappings.join("opportunity_to_sales_order.yaml");
    let text = std::fs::read_to_string(&orders).unwrap();
    std::fs::write(&orders, text.replacen("required: true", "requird: true", 1)).unwrap();
    let accounts = mappings.join("account_to_customer.yaml");
    let text = std::fs::read_to_string(&accounts).unwrap();
    std::fs::write(
        &accounts,
        text.replace("event: account.updated", "event: acount.updated"),
    )
    .unwrap();
    let connectors = dir.path().join("connectors");
    std::fs::create_dir(&connectors).unwrap();
    std::fs::write(
        connectors.join("erp.yaml"),
        "kind: rest\nrole: erp\nbase_url: http://127.0.0.1:9\nauth: { bearer_env: SURELY_UNSET_ERP_TOKEN }\noperations: {}\n",
    )
    .unwrap();
    std::fs::copy(
        root.join("connectors/crm.yaml"),
        connectors.join("crm.yaml"),
    )
    .unwrap();
    let config = dir.path().join("handoff.toml");
    std::fs::write(
        &config,
        format!(
            "mappings_dir = {:?}\nconnectors_dir = {:?}\nschemas_dir = {:?}\n\
             [sources.crm]\npreset = \"standard_webhooks\"\nsecret_env = \"CRM_SECRET_FOR_CHECK\"\n\
             [[sources.crm.events]]\ntype = \"account.updated\"\nobject = \"Account\"\n",
            mappings.display().to_string(),
            connectors.display().to_string(),
            root.join("schemas").display().to_string(),
        ),
    )
    .unwrap();
    let run = |extra: &[(&str, &str)]| {
        let mut command = handoff();
        command.arg("check").arg("--config").arg(&config).env(
            "CRM_SECRET_FOR_CHECK",
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        );
        for (k, v) in extra {
            command.env(k, v);
        }
        let output = command.output().unwrap();
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    let stdout = run(&[]);
    let orders_file = orders.display().to_string();
    assert!(
        stdout.contains(&format!("{orders_file}:"))
            && stdout.contains("unknown field `requird`")
            && !stdout.contains("<input>"),
        "{stdout}"
    );
    let auth_at = format!(
        "{}:4:1: auth: environment variable SURELY_UNSET_ERP_TOKEN",
        connectors.join("erp.yaml").display()
    );
    assert!(stdout.contains(&auth_at), "{stdout}");
    assert!(!stdout.contains("has no file"), "false alarms: {stdout}");
    // The typo'd event only shows once the mapping file parses: fix the rule's key first.
    std::fs::write(
        &orders,
        std::fs::read_to_string(&orders)
            .unwrap()
            .replace("requird", "required"),
    )
    .unwrap();
    let stdout = run(&[("SURELY_UNSET_ERP_TOKEN", "t")]);
    assert!(
        stdout.contains("warning: mapping account_to_customer: waits for event \"acount.updated\""),
        "{stdout}"
    );
    let stdout = run(&[
        ("SURELY_UNSET_ERP_TOKEN", "t"),
        ("HANDOFF_LOG__COLOUR", "red"),
    ]);
    assert!(
        stdout.contains("environment variable HANDOFF_LOG__COLOUR"),
        "{stdout}"
    );
    assert!(
        !stdout.contains("handoff.toml"),
        "blamed on the file: {stdout}"
    );
}

/// A source whose events carry their fields where no mapping reads them is found by `check`
/// (the Salesforce events used to carry `/sObject/*` while the shipped mappings read `$.data`).
#[test]
fn check_finds_a_source_whose_events_no_mapping_can_read() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("handoff.toml");
    std::fs::write(
        &config,
        "[sources.salesforce]\npreset = \"salesforce_outbound\"\norganization_ids = [\"00D000000000062EAA\"]\n\
         object_id = \"/sObject/Id\"\n[[sources.salesforce.events]]\ntype = \"opportunity.won\"\n\
         object = \"Opportunity\"\nwhen = { \"/sObject/StageName\" = \"Closed Won\" }\n",
    )
    .unwrap();
    let output = handoff()
        .current_dir(root)
        .arg("check")
        .arg("--config")
        .arg(&config)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("warning: mapping opportunity_to_sales_order: reads $.data")
            && stdout.contains("carry their data under /sObject"),
        "{stdout}"
    );
}

/// `handoff mapping bench` of the shipped account mapping on `event` for a second.
fn mapping_bench(event: &str) -> std::process::Output {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("event.json");
    std::fs::write(&path, event).unwrap();
    let mapping = "mappings/account_to_customer.yaml";
    handoff()
        .args(["mapping", "bench", mapping, "--seconds", "1", "--event"])
        .arg(&path)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap()
}

/// `handoff mapping bench FILE --event EVENT.json --seconds N` prints the rate and µs per mapping.
#[test]
fn mapping_bench_measures_an_integrators_mapping() {
    let output = mapping_bench(r#"{"data": {"Id": "001X", "Name": "Zeta"}}"#);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    let rate: f64 = stdout
        .split("account_to_customer: ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{stdout}"));
    assert!(rate > 100.0, "{stdout}");
    assert!(stdout.contains("µs per mapping"), "{stdout}");
    // An event the mapping refuses has no figure.
    let refused = mapping_bench(r#"{"data": {"Id": "001Y", "Name": " "}}"#);
    assert!(!refused.status.success());
}
