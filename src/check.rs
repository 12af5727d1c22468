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
    if let Err(found) = crate::mapping::load_dir(&config.mappings_dir, &config.schemas_dir) {
        problems.extend(found);
    }
    for file in crate::mapping::compile::yaml_files(&config.connectors_dir) {
        if let Err(problem) = check_yaml(&file) {
            problems.push(problem);
        }
    }
    problems
}

fn check_yaml(path: &Path) -> Result<(), Problem> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|error| Problem {
        location: file.clone(),
        message: error.to_string(),
    })?;
    serde_saphyr::from_str::<serde_json::Value>(&text)
        .map(drop)
        .map_err(|error| Problem::yaml(&file, &error))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_syntax_errors_carry_line_and_column() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("broken.yaml");
        std::fs::write(&path, "flow: a\nfields:\n  name: [unclosed\n").unwrap();
        let problem = check_yaml(&path).unwrap_err();
        assert!(
            problem
                .location
                .starts_with(&format!("{}:", path.display())),
            "{problem}"
        );
        assert!(problem.location.matches(':').count() >= 2, "{problem}");
    }
}
