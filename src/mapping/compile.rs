//! Spec → `Mapping`: every problem in a file is collected and reported with file:line:col and a
//! caret under the offending text, before anything runs.

use std::collections::HashMap;
use std::path::Path;

use serde_json::{Map, Value};
use serde_saphyr::{Location, Spanned};
use sha2::{Digest, Sha256};

use super::expr::{self, Expr, Node};
use super::shape::Shape;
use super::spec::{FieldSpec, MappingSpec, ReconcileSpec, Text};
use super::{Field, Hold, Lines, Mapping, Shapes, Shared};
use crate::problem::{Problem, read_yaml, yaml_files};

/// Lookup tables by name (file stem in `mappings/lookups/`).
pub type Lookups = HashMap<String, Map<String, Value>>;

/// Where a file's text is, for turning locations into `file:line:col` and caret snippets.
struct SourceText<'a> {
    file: &'a str,
    text: &'a str,
}

impl SourceText<'_> {
    /// A problem at the `offset`-th byte of the scalar that starts at `at`.
    fn problem(&self, at: Location, offset: usize, message: impl Into<String>) -> Problem {
        let line_no = at.line() as usize;
        let line = self
            .text
            .lines()
            .nth(line_no.saturating_sub(1))
            .unwrap_or("");
        let start = (at.column() as usize).saturating_sub(1);
        let quoted = matches!(
            line[start.min(line.len())..].chars().next(),
            Some('"' | '\'')
        );
        let column = start + usize::from(quoted) + offset + 1;
        let caret = format!("{}^", " ".repeat(column.saturating_sub(1)));
        Problem {
            location: format!("{}:{line_no}:{column}", self.file),
            message: format!("{}\n    {line}\n    {caret}", message.into()),
        }
    }
}

/// Compiles one mapping file. `schemas` are the target schemas by name.
pub fn compile(
    file: &str,
    text: &str,
    lookups: &Lookups,
    schemas: &HashMap<String, Value>,
) -> Result<Mapping, Vec<Problem>> {
    let source = SourceText { file, text };
    let spec: MappingSpec =
        serde_saphyr::from_str(text).map_err(|error| vec![Problem::yaml(file, &error)])?;
    let mut problems = Vec::new();
    let mut expr = |text: &Text| compile_expr(&source, text, lookups, &mut problems);

    let when = spec.on.when.as_ref().map(&mut expr);
    let order_key = expr(&spec.order_key);
    let match_key = spec.match_key.as_ref().map(&mut expr);
    let requires: Vec<_> = spec
        .requires
        .iter()
        .map(|r| (r.kind.clone(), expr(&r.id)))
        .collect();
    let holds: Vec<Option<Hold>> = spec
        .holds
        .iter()
        .map(|hold| match (&hold.value.until, hold.value.stock) {
            (Some(text), false) => expr(text).map(|until| Hold::Until {
                until,
                reason: hold
                    .value
                    .reason
                    .clone()
                    .unwrap_or_else(|| format!("waiting until {}", text.value)),
            }),
            (None, true) => Some(Hold::Stock),
            _ => None,
        })
        .collect();
    let lines_from = spec.lines.as_ref().map(|l| expr(&l.from));
    let lines_when = spec
        .lines
        .as_ref()
        .and_then(|l| l.when.as_ref())
        .map(&mut expr);

    let fields = compile_fields(&source, &spec.fields, lookups, &mut problems);
    let line_fields = spec
        .lines
        .as_ref()
        .map(|l| compile_fields(&source, &l.fields, lookups, &mut problems));

    for hold in &spec.holds {
        let stock_without_lines = hold.value.stock
            && !spec.lines.as_ref().is_some_and(|l| {
                l.fields.contains_key("product_code") && l.fields.contains_key("quantity")
            });
        let message = match (&hold.value.until, hold.value.stock) {
            (Some(_), true) | (None, false) => {
                "a hold has either `until: <condition>` or `stock: true`"
            }
            (None, true) if stock_without_lines => {
                "`stock: true` needs `lines` with `product_code` and `quantity` fields"
            }
            _ => continue,
        };
        problems.push(source.problem(hold.referenced, 0, message));
    }
    if let Some(reconcile) = &spec.reconcile {
        check_reconcile(&source, reconcile, spec.match_key.is_some(), &mut problems);
    }
    let schema_name = &spec.target.schema;
    let schema = match schemas.get(&schema_name.value) {
        Some(schema) => {
            check_against_schema(&source, &spec, schema, &mut problems);
            super::schema::Schema::new(schema)
                .map_err(|e| {
                    problems.push(source.problem(
                        schema_name.referenced,
                        0,
                        format!("schema {} is invalid: {e}", schema_name.value),
                    ))
                })
                .ok()
        }
        None => {
            let known: Vec<&str> = schemas.keys().map(String::as_str).collect();
            problems.push(source.problem(
                schema_name.referenced,
                0,
                format!(
                    "no schema named {:?} in schemas/ (known: {})",
                    schema_name.value,
                    known.join(", ")
                ),
            ));
            None
        }
    };

    if !problems.is_empty() {
        return Err(problems);
    }
    let unwrap = |e: Option<Expr>| e.expect("no problems means every expression compiled");
    let mut mapping = Mapping {
        flow: spec.flow,
        version: hex::encode(&Sha256::digest(text.as_bytes())[..8]),
        source: spec.on.source,
        event: spec.on.event,
        when: when.map(unwrap),
        connector: spec.target.connector.value,
        operation: spec.target.operation,
        schema_name: schema_name.value.clone(),
        order_key: unwrap(order_key),
        match_key: match_key.map(unwrap),
        requires: requires.into_iter().map(|(k, e)| (k, unwrap(e))).collect(),
        holds: holds.into_iter().map(Option::unwrap).collect(),
        fields: fields.into_iter().map(Option::unwrap).collect(),
        lines: spec.lines.map(|l| Lines {
            into: l.into,
            from: unwrap(lines_from.flatten()),
            when: lines_when.flatten(),
            fields: line_fields
                .unwrap_or_default()
                .into_iter()
                .map(Option::unwrap)
                .collect(),
        }),
        checks: None,
        schema: schema.expect("no problems means the schema compiled"),
        tests: spec.tests,
        reconcile: spec.reconcile.map(|r| r.value),
        shared: Shared::default(),
        slots: expr::Slots::default(),
        shapes: Shapes::default(),
    };
    mapping.shapes = Shapes {
        top: Shape::new(&mapping.fields),
        line: mapping.lines.as_ref().and_then(|l| Shape::new(&l.fields)),
    };
    share_repeats(&mut mapping);
    mapping.slots = assign_slots(&mut mapping);
    mapping.checks = plan_checks(&mapping);
    Ok(mapping)
}

/// A `reconcile:` block names known drift classes, a sane cap, and needs the flow's `match`
/// (the key target records are matched by).
fn check_reconcile(
    source: &SourceText<'_>,
    reconcile: &Spanned<ReconcileSpec>,
    has_match: bool,
    problems: &mut Vec<Problem>,
) {
    let spec = &reconcile.value;
    let mut complain =
        |message: String| problems.push(source.problem(reconcile.referenced, 0, message));
    if !has_match {
        complain("`reconcile` needs the flow's `match`: target records are matched by it".into());
    }
    for class in &spec.repair {
        if !crate::sync::reconcile::REPAIRABLE.contains(&class.as_str()) {
            complain(format!(
                "reconcile.repair: {class:?} cannot be repaired (repairable: {})",
                crate::sync::reconcile::REPAIRABLE.join(", ")
            ));
        }
    }
    if !(0.0..=1.0).contains(&spec.max_repair_share) {
        complain("reconcile.max_repair_share is a share between 0 and 1".into());
    }
}

/// The schema's checks for the mapping's rules, made once.
fn plan_checks(mapping: &Mapping) -> Option<super::schema::Plan> {
    fn names(fields: &[Field]) -> Vec<&str> {
        fields.iter().map(|f| f.name.as_str()).collect()
    }
    let line_names = mapping.lines.as_ref().map(|l| names(&l.fields));
    let lines = mapping
        .lines
        .as_ref()
        .zip(line_names.as_deref())
        .map(|(l, n)| (l.into.as_str(), n));
    mapping.schema.plan(&names(&mapping.fields), lines)
}

/// Sub-expressions repeated among the fields, and among a line's rules, get memo slots.
fn share_repeats(mapping: &mut Mapping) {
    mapping.shared.fields = expr::share(
        mapping
            .fields
            .iter_mut()
            .flat_map(|f| std::iter::once(&mut f.expr).chain(f.when.as_mut())),
    );
    if let Some(lines) = &mut mapping.lines {
        mapping.shared.lines = expr::share(
            lines.when.as_mut().into_iter().chain(
                lines
                    .fields
                    .iter_mut()
                    .flat_map(|f| std::iter::once(&mut f.expr).chain(f.when.as_mut())),
            ),
        );
    }
}

/// The event's members every rule reads get a place in a table filled once per scope.
fn assign_slots(mapping: &mut Mapping) -> expr::Slots {
    let top = (mapping.when.iter_mut())
        .chain(std::iter::once(&mut mapping.order_key))
        .chain(mapping.match_key.as_mut())
        .chain(mapping.requires.iter_mut().map(|(_, e)| e))
        .chain(mapping.holds.iter_mut().filter_map(|hold| match hold {
            Hold::Until { until, .. } => Some(until),
            Hold::Stock => None,
        }))
        .chain(
            mapping
                .fields
                .iter_mut()
                .flat_map(|f| std::iter::once(&mut f.expr).chain(f.when.as_mut())),
        )
        .map(|e| (e, false));
    let lines = mapping.lines.as_mut().into_iter().flat_map(|l| {
        let line = l.when.as_mut().into_iter().chain(
            l.fields
                .iter_mut()
                .flat_map(|f| std::iter::once(&mut f.expr).chain(f.when.as_mut())),
        );
        std::iter::once((&mut l.from, false)).chain(line.map(|e| (e, true)))
    });
    expr::Slots::assign(top.chain(lines))
}

fn compile_expr(
    source: &SourceText<'_>,
    text: &Text,
    lookups: &Lookups,
    problems: &mut Vec<Problem>,
) -> Option<Expr> {
    parse_at(
        source,
        &text.value,
        At::Scalar(text.referenced),
        lookups,
        problems,
    )
}

/// Where an expression's text sits: its own scalar (columns point into it), or inside a field
/// table, where only the table's start is known.
#[derive(Clone, Copy)]
enum At {
    Scalar(Location),
    Table(Location),
}

impl SourceText<'_> {
    fn problem_at(&self, at: At, offset: usize, text: &str, message: String) -> Problem {
        match at {
            At::Scalar(location) => self.problem(location, offset, message),
            At::Table(location) => self.problem(
                location,
                0,
                format!("{message} (in {text:?} at character {})", offset + 1),
            ),
        }
    }
}

/// Parses an expression, checking the lookup tables it names.
fn parse_at(
    source: &SourceText<'_>,
    text: &str,
    at: At,
    lookups: &Lookups,
    problems: &mut Vec<Problem>,
) -> Option<Expr> {
    let parsed = match expr::parse(text) {
        Ok(parsed) => parsed,
        Err(error) => {
            problems.push(source.problem_at(at, error.span.start, text, error.message));
            return None;
        }
    };
    let before = problems.len();
    parsed.visit(&mut |e: &Expr| {
        if let Node::Call(function, args) = &e.node
            && function.name == "lookup"
            && let Some(table) = args.first().and_then(Expr::as_str_literal)
            && !lookups.contains_key(table)
        {
            let mut known: Vec<&str> = lookups.keys().map(String::as_str).collect();
            known.sort_unstable();
            let message = format!(
                "no lookup table {table:?} in mappings/lookups/ (known: {})",
                known.join(", ")
            );
            problems.push(source.problem_at(at, args[0].span.start, text, message));
        }
    });
    (problems.len() == before).then_some(parsed)
}

fn compile_fields(
    source: &SourceText<'_>,
    specs: &indexmap::IndexMap<String, Spanned<FieldSpec>>,
    lookups: &Lookups,
    problems: &mut Vec<Problem>,
) -> Vec<Option<Field>> {
    specs
        .iter()
        .map(|(name, spec)| {
            let (text, rule, at) = match &spec.value {
                FieldSpec::Expr(text) => (text.as_str(), None, At::Scalar(spec.referenced)),
                FieldSpec::Rule(rule) => {
                    (rule.value.as_str(), Some(rule), At::Table(spec.referenced))
                }
            };
            let expr = parse_at(source, text, at, lookups, problems);
            let when = match rule.and_then(|r| r.when.as_deref()) {
                Some(when) => Some(parse_at(source, when, at, lookups, problems)?),
                None => None,
            };
            Some(Field {
                dotted: name.contains('.'),
                name: name.clone(),
                text: text.to_owned(),
                expr: expr?,
                map: rule.and_then(|r| r.map.clone()),
                default: rule.and_then(|r| r.default.clone()),
                required: rule.is_some_and(|r| r.required),
                when,
            })
        })
        .collect()
}

/// Target fields the schema lacks, and required schema fields no rule sets.
fn check_against_schema(
    source: &SourceText<'_>,
    spec: &MappingSpec,
    schema: &Value,
    problems: &mut Vec<Problem>,
) {
    let schema_at = spec.target.schema.referenced;
    check_level(
        source,
        &spec.fields,
        spec.lines.as_ref().map(|l| l.into.as_str()),
        schema,
        schema_at,
        &spec.target.schema.value,
        problems,
    );
    if let Some(lines) = &spec.lines {
        match schema.pointer(&format!("/properties/{}/items", lines.into)) {
            Some(items) => check_level(
                source,
                &lines.fields,
                None,
                items,
                lines.from.referenced,
                &format!("{}.{}[]", spec.target.schema.value, lines.into),
                problems,
            ),
            None => problems.push(source.problem(
                lines.from.referenced,
                0,
                format!(
                    "schema {} has no list field {:?}",
                    spec.target.schema.value, lines.into
                ),
            )),
        }
    }
}

fn check_level(
    source: &SourceText<'_>,
    fields: &indexmap::IndexMap<String, Spanned<FieldSpec>>,
    extra: Option<&str>,
    schema: &Value,
    schema_at: Location,
    schema_name: &str,
    problems: &mut Vec<Problem>,
) {
    let properties = schema.get("properties").and_then(Value::as_object);
    for (name, spec) in fields {
        let top = name.split('.').next().unwrap_or(name);
        if properties.is_some_and(|p| !p.contains_key(top)) {
            let known: Vec<&str> = properties
                .into_iter()
                .flat_map(|p| p.keys().map(String::as_str))
                .collect();
            problems.push(source.problem(
                spec.referenced,
                0,
                format!(
                    "{schema_name} has no field {name:?} (it has: {})",
                    known.join(", ")
                ),
            ));
        }
    }
    for required in schema
        .get("required")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let Some(required) = required.as_str() else {
            continue;
        };
        let set = |name: &String| name == required || name.starts_with(&format!("{required}."));
        if !fields.keys().any(set) && extra != Some(required) {
            problems.push(source.problem(
                schema_at,
                0,
                format!("{schema_name} requires {required:?}, which no field rule sets"),
            ));
        }
    }
}

/// Reads every `*.yaml` lookup table in `dir`.
pub fn load_lookups(dir: &Path) -> Result<Lookups, Vec<Problem>> {
    let mut lookups = Lookups::new();
    let mut problems = Vec::new();
    for path in yaml_files(dir) {
        let (name, _, loaded) = read_yaml::<Map<String, Value>>(&path);
        match loaded {
            Ok(table) => {
                lookups.insert(name, table);
            }
            Err(problem) => problems.push(problem),
        }
    }
    if problems.is_empty() {
        Ok(lookups)
    } else {
        Err(problems)
    }
}
