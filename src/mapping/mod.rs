//! Mappings: YAML files that turn a CRM event into an ERP document.
//!
//! spec (serde of the YAML, with locations, `spec.rs`) → compile (every problem at once, with
//! file:line:col and a caret, `compile.rs`) → apply (pure: lookups and cross-references come in
//! through the context, `apply.rs`). Field rules are written in the expression language of `expr`.
//! `shape.rs` builds output objects from a template made at load; `bench.rs` measures one mapping on one event (`handoff mapping bench`).
//!
//! Layout on disk: `mappings/*.yaml` (one flow each, with its `tests:`), `mappings/lookups/*.yaml`
//! (static tables, one per file), `schemas/*.json` (the target documents' JSON Schemas).

mod apply;
pub mod bench;
pub mod compile;
pub mod expr;
pub mod live;
pub mod schema;
mod shape;
pub mod spec;
pub mod testing;

use std::collections::HashMap;
use std::path::Path;

pub use apply::{Context, Document, Keys, MappingError};
pub use compile::Lookups;

use crate::problem::Problem;
use expr::Expr;

/// A compiled mapping, ready to apply.
pub struct Mapping {
    pub flow: String,
    /// The first 16 hex digits of the file's SHA-256: recorded with every job it produces.
    pub version: String,
    pub source: Option<String>,
    pub event: String,
    pub when: Option<Expr>,
    pub connector: String,
    pub operation: String,
    pub schema_name: String,
    pub order_key: Expr,
    pub match_key: Option<Expr>,
    pub requires: Vec<(String, Expr)>,
    /// Preconditions before the target gets the document.
    pub holds: Vec<Hold>,
    pub fields: Vec<Field>,
    pub lines: Option<Lines>,
    /// The target schema, compiled once.
    pub schema: schema::Schema,
    /// The schema's checks resolved for these rules (`None`: each document is validated whole).
    pub checks: Option<schema::Plan>,
    pub tests: Vec<spec::TestSpec>,
    /// How `handoff reconcile` compares this flow (none: it is not reconciled).
    pub reconcile: Option<spec::ReconcileSpec>,
    /// How many repeated sub-expressions share a memo slot (expr/memo.rs): among the fields,
    /// and among a line's rules.
    pub shared: Shared,
    /// The event's members the rules read, found once per scope (expr/slots.rs).
    pub slots: expr::Slots,
    /// How the output objects are built (shape.rs): the document's, and a line's.
    pub shapes: Shapes,
}

#[derive(Debug, Clone, Default)]
pub struct Shapes {
    pub top: Option<shape::Shape>,
    pub line: Option<shape::Shape>,
}

#[derive(Debug, Clone, Copy, Default)]
pub struct Shared {
    pub fields: usize,
    pub lines: usize,
}

impl std::fmt::Debug for Mapping {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mapping")
            .field("flow", &self.flow)
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

pub struct Field {
    pub name: String,
    /// A dotted name (`invoice_address.city`) sets a member of a nested object.
    pub dotted: bool,
    /// The rule's text, for error messages.
    pub text: String,
    pub expr: Expr,
    pub map: Option<HashMap<String, serde_json::Value>>,
    pub default: Option<serde_json::Value>,
    pub required: bool,
    pub when: Option<Expr>,
}

pub enum Hold {
    /// Held with `reason` until the condition is true.
    Until { until: Expr, reason: String },
    /// Held until the target has every line's product in stock.
    Stock,
}

pub struct Lines {
    pub into: String,
    pub from: Expr,
    pub when: Option<Expr>,
    pub fields: Vec<Field>,
}

/// Every mapping in `dir`, with the lookups of `dir/lookups` and the schemas of `schemas_dir`;
/// or every problem in all of them.
pub fn load_dir(dir: &Path, schemas_dir: &Path) -> Result<(Vec<Mapping>, Lookups), Vec<Problem>> {
    load_files(&crate::problem::yaml_files(dir), dir, schemas_dir)
}

/// The given mapping files, with the lookups of `dir/lookups` and the schemas of `schemas_dir`.
pub fn load_files(
    files: &[std::path::PathBuf],
    dir: &Path,
    schemas_dir: &Path,
) -> Result<(Vec<Mapping>, Lookups), Vec<Problem>> {
    let mut problems = Vec::new();
    let lookups = compile::load_lookups(&dir.join("lookups")).unwrap_or_else(|p| {
        problems.extend(p);
        Lookups::new()
    });
    let schemas = load_schemas(schemas_dir, &mut problems);
    let mut mappings = Vec::new();
    for path in files {
        let file = path.display().to_string();
        match std::fs::read_to_string(path) {
            Ok(text) => match compile::compile(&file, &text, &lookups, &schemas) {
                Ok(mapping) => mappings.push(mapping),
                Err(found) => problems.extend(found),
            },
            Err(error) => problems.push(Problem {
                location: file,
                message: error.to_string(),
            }),
        }
    }
    if problems.is_empty() {
        Ok((mappings, lookups))
    } else {
        Err(problems)
    }
}

fn load_schemas(dir: &Path, problems: &mut Vec<Problem>) -> HashMap<String, serde_json::Value> {
    let mut schemas = HashMap::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        let name = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default()
            .to_owned();
        let parsed = std::fs::read_to_string(&path)
            .map_err(|e| e.to_string())
            .and_then(|text| serde_json::from_str(&text).map_err(|e| e.to_string()));
        match parsed {
            Ok(schema) => {
                schemas.insert(name, schema);
            }
            Err(message) => problems.push(Problem {
                location: path.display().to_string(),
                message,
            }),
        }
    }
    schemas
}

#[cfg(test)]
mod checks_tests;
#[cfg(test)]
mod tests;
