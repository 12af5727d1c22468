//! Mappings: YAML files that turn a CRM event into an ERP document.
//!
//! The pipeline is spec (serde of the YAML, with locations) → compile (every problem at once,
//! with file:line:col) → eval (pure: lookups and cross-references come in through the context).
//! Built so far: the expression language of field rules, `expr`.

pub mod expr;
