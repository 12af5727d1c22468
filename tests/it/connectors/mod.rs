//! The shipped connector files (`connectors/examples/*.yaml`) against recording servers that
//! follow each system's published API (`fakes/`), each through the conformance harness and
//! then on what is particular to it.

mod catalog;
mod crm;
mod erp;

use std::collections::HashMap;

use handoff::adapters::connector::{self, Connector};

/// `connectors/examples/{name}.yaml` as shipped, with its `base_url` pointed at `url`, a 1 s
/// request timeout and `changes` (lines starting with the same key replaced).
pub fn example(name: &str, url: &str, secrets: &[(&str, &str)], changes: &[&str]) -> Connector {
    let root = env!("CARGO_MANIFEST_DIR");
    let text = std::fs::read_to_string(format!("{root}/connectors/examples/{name}.yaml")).unwrap();
    let base_url = format!("base_url: {url}");
    let mut replace = vec![
        base_url.as_str(),
        "timeouts: { connect_secs: 1, request_secs: 1 }",
    ];
    replace.extend(changes);
    let key = |line: &str| line.split(':').next().unwrap_or_default().to_owned();
    let mut lines: Vec<String> = text
        .lines()
        .map(|line| {
            match replace
                .iter()
                .find(|r| !line.starts_with(' ') && key(r) == key(line))
            {
                Some(with) => with.to_string(),
                None => line.to_owned(),
            }
        })
        .collect();
    for change in &replace {
        if !lines.iter().any(|line| key(line) == key(change)) {
            lines.push(change.to_string());
        }
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(format!("{name}.yaml")), lines.join("\n")).unwrap();
    let secrets: HashMap<String, String> = secrets
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let lookup = move |name: &str| secrets.get(name).cloned();
    let mut loaded = connector::load_dir(dir.path(), &lookup, None)
        .unwrap_or_else(|problems| panic!("{name}: {problems:?}"));
    loaded.remove(0)
}
