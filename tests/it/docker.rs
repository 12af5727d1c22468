//! The Docker image without Docker (it is not available on these machines): the runtime stage's
//! `COPY`s are laid out under a temporary root, its `ENV` is applied with paths moved under that
//! root (and the listen address to loopback), and the binary must start and answer `/readyz`.
//! The build stage's dependency layer must stub every target Cargo.toml names.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

fn dockerfile() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("Dockerfile")).unwrap()
}

/// The instructions of the runtime stage (after the last `FROM`), continuation lines joined.
fn runtime_stage(text: &str) -> Vec<String> {
    let joined = text.replace("\\\n", " ");
    let stage = joined.rsplit("\nFROM ").next().unwrap();
    stage
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_owned)
        .collect()
}

/// `KEY=VALUE` pairs of an `ENV` line; values may be double-quoted.
fn env_pairs(line: &str) -> BTreeMap<String, String> {
    let mut pairs = BTreeMap::new();
    let mut rest = line.trim_start_matches("ENV").trim();
    while let Some((key, after)) = rest.split_once('=') {
        let (value, next) = match after.strip_prefix('"') {
            Some(quoted) => {
                let end = quoted.find('"').unwrap();
                (&quoted[..end], &quoted[end + 1..])
            }
            None => after.split_once(char::is_whitespace).unwrap_or((after, "")),
        };
        pairs.insert(key.trim().to_owned(), value.to_owned());
        rest = next.trim();
    }
    pairs
}

#[test]
fn the_image_layout_starts_and_answers_readyz() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let root = tempfile::tempdir().unwrap();
    let under = |path: &str| -> PathBuf { root.path().join(path.trim_start_matches('/')) };
    let mut env = BTreeMap::new();
    let mut workdir = PathBuf::from("/");
    for line in runtime_stage(&dockerfile()) {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words[0] {
            "COPY" if !line.contains("--from") => {
                let (from, to) = (repo.join(words[1]), under(words[2]));
                std::fs::create_dir_all(to.parent().unwrap()).unwrap();
                let status = std::process::Command::new("cp")
                    .args(["-r"])
                    .arg(&from)
                    .arg(&to)
                    .status()
                    .unwrap();
                assert!(status.success(), "COPY {from:?}");
            }
            "ENV" => env.extend(env_pairs(&line)),
            "WORKDIR" => workdir = PathBuf::from(words[1]),
            _ => {}
        }
    }
    assert!(
        under("/etc/handoff/schemas/sales_order.json").exists(),
        "schemas are copied"
    );
    assert_eq!(env["HANDOFF_SCHEMAS_DIR"], "/etc/handoff/schemas");
    std::fs::create_dir_all(under(&env["HANDOFF_DATA_DIR"])).unwrap();
    std::fs::create_dir_all(under(workdir.to_str().unwrap())).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_handoff"));
    command
        .arg("serve")
        .current_dir(under(workdir.to_str().unwrap()))
        .env_remove("HANDOFF_CONFIG")
        .env("DASHBOARD_TOKEN", "a-token-of-thirty-two-characters")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    for (key, value) in &env {
        let value = match value.starts_with('/') {
            true => under(value).display().to_string(),
            false => value.clone(),
        };
        command.env(key, value);
    }
    // The image listens on every address; here loopback stands in for it.
    command.env("HANDOFF_LISTEN", format!("127.0.0.1:{port}"));
    let mut child = command.spawn().unwrap();
    let ready = (0..100).any(|_| {
        std::thread::sleep(Duration::from_millis(100));
        std::net::TcpStream::connect(("127.0.0.1", port))
            .ok()
            .and_then(|mut stream| {
                use std::io::{Read, Write};
                stream
                    .write_all(b"GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                    .ok()?;
                let mut answer = String::new();
                stream.read_to_string(&mut answer).ok()?;
                answer.starts_with("HTTP/1.1 200").then_some(())
            })
            .is_some()
    });
    let _ = child.kill();
    let output = child.wait_with_output().unwrap();
    assert!(ready, "{}", String::from_utf8_lossy(&output.stderr));
}

#[test]
fn the_dependency_layer_stubs_every_target() {
    let text = dockerfile();
    let manifest =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml")).unwrap();
    let manifest: toml::Table = toml::from_str(&manifest).unwrap();
    let mut paths = vec!["src/main.rs".to_owned()];
    for kind in ["bin", "test", "bench"] {
        for target in manifest
            .get(kind)
            .and_then(|t| t.as_array())
            .into_iter()
            .flatten()
        {
            let path = match target.get("path").and_then(|p| p.as_str()) {
                Some(path) => path.to_owned(),
                None => {
                    let name = target["name"].as_str().unwrap();
                    match kind {
                        "test" => format!("tests/{name}.rs"),
                        "bench" => format!("benches/{name}.rs"),
                        _ => format!("src/bin/{name}.rs"),
                    }
                }
            };
            paths.push(path);
        }
    }
    // Every other workspace member: its manifest is copied and its main stubbed.
    for member in manifest["workspace"]["members"].as_array().unwrap() {
        let member = member.as_str().unwrap();
        if member != "." {
            paths.push(format!("{member}/src/main.rs"));
            assert!(
                text.contains(&format!("COPY {member}/Cargo.toml")),
                "the dependency layer does not copy {member}/Cargo.toml"
            );
        }
    }
    for path in paths {
        assert!(
            text.contains(&path),
            "the dependency layer has no stub for {path}"
        );
    }
    assert!(text.contains("CARGO_PROFILE_RELEASE_STRIP=symbols"));
}
