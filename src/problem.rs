//! A problem found before anything runs (`file:line:col: message`), and reading the YAML files
//! problems are found in. Shared by `check`, the mappings and the connectors, so none of them
//! depends on another for it.

use std::path::Path;

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
        // The parser's snippet names its input `<input>`: name the file instead.
        Problem {
            location,
            message: error.to_string().replace("<input>", file),
        }
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.location, self.message)
    }
}

/// Reads and parses one YAML file: its name (the file stem), its path as text for problems, and
/// the value or the problem (with `file:line:col`).
pub fn read_yaml<T: serde::de::DeserializeOwned>(
    path: &Path,
) -> (String, String, Result<T, Problem>) {
    let file = path.display().to_string();
    let name = path
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or_default()
        .to_owned();
    let parsed = std::fs::read_to_string(path)
        .map_err(|e| Problem {
            location: file.clone(),
            message: e.to_string(),
        })
        .and_then(|text| serde_saphyr::from_str::<T>(&text).map_err(|e| Problem::yaml(&file, &e)));
    (name, file, parsed)
}

/// `*.yaml` and `*.yml` files in `dir`, sorted; none if it does not exist.
pub fn yaml_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| {
            path.is_file()
                && matches!(
                    path.extension().and_then(|e| e.to_str()),
                    Some("yaml" | "yml")
                )
        })
        .collect();
    files.sort();
    files
}
