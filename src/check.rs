//! `handoff check`: everything that can be wrong before anything runs, reported at once.
//!
//! It loads the config (with its sources and secrets), compiles every mapping (with its lookups
//! and target schemas) and parses every connector file; problems carry `file:line:col`.

use std::path::Path;

use crate::config::{Config, Origin};

/// One problem, printed as `location: message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub location: String,
    pub message: String,
}

impl Problem {
    /// A YAML parse or deserialization error in `file`, at its line and column when known.
    pub fn yaml(file: &str, error: &serde_saphyr::Error) -> Problem {
        let location = match error.location() {
            Some(at) => format!("{file}:{}:{}", at.line(), at.column()),
            None => file.to_owned(),
        };
        Problem {
            location,
            message: error.to_string(),
        }
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.location, self.message)
    }
}

/// Every problem in the config and the files it points to; empty means all is well.
pub fn run(config_path: Option<&Path>) -> Vec<Problem> {
    let (config, origin) = match Config::load(config_path) {
        Ok(loaded) => loaded,
        Err(error) => {
            let location = config_path.map_or("config".to_owned(), |p| p.display().to_string());
            return vec![Problem {
                location,
                message: format!("{error:#}"),
            }];
        }
    };
    let mut problems = Vec::new();
    for (name, source) in &config.sources {
        if let Err(error) = source.secret_env.resolve(&crate::config::env_secrets) {
            if origin == Origin::Embedded {
                continue; // a demo source without a secret is disabled, not broken
            }
            problems.push(Problem {
                location: format!("sources.{name}"),
                message: error.to_string(),
            });
        }
    }
    let connectors = crate::adapters::connector::load_dir(
        &config.connectors_dir,
        &crate::config::env_secrets,
        None,
    )
    .unwrap_or_else(|found| {
        problems.extend(found);
        Vec::new()
    });
    match crate::mapping::load_dir(&config.mappings_dir, &config.schemas_dir) {
        Ok((mappings, _)) => problems.extend(connector_problems(
            &mappings,
            &connectors,
            &config.connectors_dir,
        )),
        Err(found) => problems.extend(found),
    }
    problems
}

/// Mappings whose target connector has no file in the connectors directory, or cannot do
/// what the mapping asks of it (a stock hold on a connector with no availability check would
/// silently never hold).
pub fn connector_problems(
    mappings: &[crate::mapping::Mapping],
    connectors: &[crate::adapters::connector::Connector],
    dir: &Path,
) -> Vec<Problem> {
    let known: Vec<&str> = connectors.iter().map(|c| c.name.as_str()).collect();
    let mut problems = Vec::new();
    for mapping in mappings {
        let location = format!("mapping {}", mapping.flow);
        let Some(connector) = connectors.iter().find(|c| c.name == mapping.connector) else {
            problems.push(Problem {
                location,
                message: format!(
                    "target.connector {:?} has no file {}/{}.yaml (known: {})",
                    mapping.connector,
                    dir.display(),
                    mapping.connector,
                    known.join(", ")
                ),
            });
            continue;
        };
        if mapping.holds_for_stock() && !connector.adapter.checks_stock() {
            problems.push(Problem {
                location,
                message: format!(
                    "holds: stock needs a connector that can check stock, but {:?} ({}) cannot; \
                     remove the hold or target a connector that can (tryton)",
                    mapping.connector,
                    connector.adapter.kind()
                ),
            });
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    #[test]
    fn yaml_syntax_errors_carry_line_and_column() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("broken.yaml");
        std::fs::write(&path, "kind: rest\noperations:\n  name: [unclosed\n").unwrap();
        let secrets = |_: &str| None;
        let problems = crate::adapters::connector::load_dir(dir.path(), &secrets, None)
            .err()
            .unwrap();
        let problem = &problems[0];
        assert!(
            problem
                .location
                .starts_with(&format!("{}:", path.display())),
            "{problem}"
        );
        assert!(problem.location.matches(':').count() >= 2, "{problem}");
    }
}
