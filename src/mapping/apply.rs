//! Applying a compiled mapping to an event: pure, no I/O.

use std::collections::HashMap;

use serde_json::{Map, Value};
use thiserror::Error;

use super::expr::{EvalError, Expr, Memo, Scope, Val};
use super::schema::ObjectPlan;
use super::shape::Shape;
use super::{Field, Hold, Lookups, Mapping};

/// What the caller fetched for the mapping: cross-references by kind, CRM id → ERP id.
#[derive(Debug, Clone, Default)]
pub struct Context {
    pub xrefs: HashMap<String, HashMap<String, String>>,
}

/// The mapped document with what the queue needs to deliver it.
#[derive(Debug, Clone, PartialEq)]
pub struct Document {
    pub body: Value,
    pub order_key: Option<String>,
    pub match_key: Option<String>,
    /// (kind, CRM id) that must exist in the target first.
    pub requires: Vec<(String, String)>,
    pub mapping_version: String,
}

/// The keys a job needs before its document: ordering key, match key, dependencies.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Keys {
    pub order_key: Option<String>,
    pub match_key: Option<String>,
    /// (kind, CRM id) that must exist in the target first.
    pub requires: Vec<(String, String)>,
}

/// Bad data for this mapping: never retried, dead-lettered with this text ("fix the data").
#[derive(Debug, Clone, Error, PartialEq, Eq)]
#[error("field {field} ({rule}): {message}")]
pub struct MappingError {
    /// The target field, `lines[2].quantity` inside lines, or `order_key`, `when`…
    pub field: String,
    /// The rule's text.
    pub rule: String,
    /// `not_a_number`, `required`, `missing_xref`, `schema`, … (see expr::EvalError).
    pub code: String,
    pub message: String,
}

impl Mapping {
    /// Whether this mapping handles the event (source, type and condition).
    pub fn handles(
        &self,
        source: &str,
        event_type: &str,
        data: &Value,
        lookups: &Lookups,
    ) -> Result<bool, MappingError> {
        if self.source.as_deref().is_some_and(|s| s != source) || self.event != event_type {
            return Ok(false);
        }
        let Some(when) = &self.when else {
            return Ok(true);
        };
        let context = Context::default();
        let scope = scope(data, None, lookups, &context);
        let value = eval(when, &scope, || "when".to_owned(), "on.when")?;
        Ok(matches!(value, Val::Bool(true)))
    }

    /// Maps `data` (the event's data) into the target document, validated against its schema.
    #[inline(never)] // its own symbol, for profiling (BENCHMARKS: issue 18)
    pub fn apply(
        &self,
        data: &Value,
        lookups: &Lookups,
        context: &Context,
    ) -> Result<Document, MappingError> {
        let mut root_slots = Vec::new();
        self.slots.root.fill(Some(data), &mut root_slots);
        let mut item_slots = Vec::new();
        let top = Memo::new(self.shared.fields);
        let per_line = Memo::new(self.shared.lines);
        let scope = Scope {
            memo: Some(&top),
            root_slots: &root_slots,
            ..scope(data, None, lookups, context)
        };
        let checks = self.checks.as_ref();
        let (mut values, mut line_values) = (Vec::new(), Vec::new());
        let (mut body, mut sure) = fields(
            &self.fields,
            &scope,
            None,
            checks.map(|c| &c.top),
            self.shapes.top.as_ref(),
            &mut values,
        )?;
        let line_checks = checks.and_then(|c| c.lines.as_ref());
        if let Some(lines) = &self.lines {
            let source = lines
                .from
                .eval(&scope)
                .map_err(|e| error(&lines.into, "lines.from", e))?;
            let items: Vec<&Value> = match source {
                Val::Json(Value::Array(items)) => items.iter().collect(),
                Val::Null => Vec::new(),
                other => {
                    return Err(MappingError {
                        field: lines.into.clone(),
                        rule: "lines.from".into(),
                        code: "type_mismatch".into(),
                        message: format!(
                            "expected a list, found {} {}",
                            other.kind(),
                            other.preview()
                        ),
                    });
                }
            };
            let mut out = Vec::with_capacity(items.len());
            for item in &items {
                self.slots.item.fill(Some(item), &mut item_slots);
            }
            let width = self.slots.item.len();
            for (n, item) in items.into_iter().enumerate() {
                per_line.clear();
                let scope = Scope {
                    item: Some(item),
                    memo: Some(&per_line),
                    item_slots: &item_slots[n * width..(n + 1) * width],
                    ..scope
                };
                if let Some(when) = &lines.when
                    && !matches!(
                        eval(
                            when,
                            &scope,
                            || format!("{}[{n}]", lines.into),
                            "lines.when"
                        )?,
                        Val::Bool(true)
                    )
                {
                    continue;
                }
                let (line, line_sure) = fields(
                    &lines.fields,
                    &scope,
                    Some((&lines.into, n)),
                    line_checks.map(|c| &c.item),
                    self.shapes.line.as_ref(),
                    &mut line_values,
                )?;
                sure = sure && line_sure;
                out.push(Value::Object(line));
            }
            sure = sure && line_checks.is_some_and(|c| c.count(out.len()));
            body.insert(lines.into.clone(), Value::Array(out));
        }
        let body = Value::Object(body);
        // Checked as it was built; else walked whole, and `jsonschema` names what is wrong.
        if !sure && let Err(violation) = self.schema.validate(&body) {
            let path = violation.path;
            return Err(MappingError {
                field: match path.trim_start_matches('/') {
                    "" => "(document)".to_owned(),
                    inner => inner.replace('/', "."),
                },
                rule: self.rule_at(&path),
                code: "schema".into(),
                message: format!(
                    "the document breaks the target schema at {path:?}: {}",
                    violation.message
                ),
            });
        }
        let keys = self.keys_in(&scope)?;
        Ok(Document {
            body,
            order_key: keys.order_key,
            match_key: keys.match_key,
            requires: keys.requires,
            mapping_version: self.version.clone(),
        })
    }

    /// The ordering key, match key and dependencies of an event, without mapping its fields.
    pub fn keys(&self, data: &Value, lookups: &Lookups) -> Result<Keys, MappingError> {
        let context = Context::default();
        self.keys_in(&scope(data, None, lookups, &context))
    }

    fn keys_in<'a>(&'a self, scope: &Scope<'a>) -> Result<Keys, MappingError> {
        let key = |expr: &'a Expr, name: &str| -> Result<Option<String>, MappingError> {
            Ok(text(eval(expr, scope, || name.to_owned(), name)?))
        };
        let mut requires = Vec::new();
        for (kind, expr) in &self.requires {
            if let Some(id) = key(expr, "requires")? {
                requires.push((kind.clone(), id));
            }
        }
        Ok(Keys {
            order_key: key(&self.order_key, "order_key")?,
            match_key: self
                .match_key
                .as_ref()
                .map(|m| key(m, "match"))
                .transpose()?
                .flatten(),
            requires,
        })
    }

    /// The reason of the first `until` hold whose condition is not true for this event.
    pub fn failed_hold(
        &self,
        data: &Value,
        lookups: &Lookups,
    ) -> Result<Option<&str>, MappingError> {
        let context = Context::default();
        let scope = scope(data, None, lookups, &context);
        for hold in &self.holds {
            if let Hold::Until { until, reason } = hold
                && !matches!(
                    eval(until, &scope, || "holds".to_owned(), "holds.until")?,
                    Val::Bool(true)
                )
            {
                return Ok(Some(reason));
            }
        }
        Ok(None)
    }

    /// Whether the flow waits for stock before the target gets the document.
    pub fn holds_for_stock(&self) -> bool {
        self.holds.iter().any(|hold| matches!(hold, Hold::Stock))
    }
}

impl Mapping {
    /// The text of the field rule that produced the value at a JSON pointer of the document,
    /// or the schema's name when no single rule did.
    fn rule_at(&self, pointer: &str) -> String {
        let segments: Vec<&str> = pointer.split('/').filter(|s| !s.is_empty()).collect();
        let (rules, path) = match (&self.lines, segments.as_slice()) {
            (Some(lines), [into, _index, rest @ ..]) if *into == lines.into => {
                (&lines.fields, rest)
            }
            _ => (&self.fields, segments.as_slice()),
        };
        let dotted = path.join(".");
        rules
            .iter()
            .find(|rule| !dotted.is_empty() && rule.name == dotted)
            .or_else(|| {
                rules.iter().find(|rule| {
                    path.first()
                        .is_some_and(|first| rule.name.split('.').next() == Some(first))
                })
            })
            .map_or_else(
                || format!("schema {}", self.schema_name),
                |rule| rule.text.clone(),
            )
    }
}

fn scope<'a>(
    data: &'a Value,
    item: Option<&'a Value>,
    lookups: &'a Lookups,
    context: &'a Context,
) -> Scope<'a> {
    Scope {
        root: data,
        item,
        lookups,
        xrefs: &context.xrefs,
        memo: None,
        root_slots: &[],
        item_slots: &[],
    }
}

/// Evaluates; the field's name is only built when there is an error to report.
#[inline(always)] // else each rule's result is copied once more, into the larger result
fn eval<'a>(
    expr: &'a Expr,
    scope: &Scope<'a>,
    field: impl Fn() -> String,
    rule: &str,
) -> Result<Val<'a>, MappingError> {
    expr.eval(scope).map_err(|e| error(&field(), rule, e))
}

fn error(field: &str, rule: &str, e: EvalError) -> MappingError {
    MappingError {
        field: field.to_owned(),
        rule: rule.to_owned(),
        code: e.code.to_owned(),
        message: e.into_message(),
    }
}

fn text(value: Val<'_>) -> Option<String> {
    match value {
        Val::Null => None,
        Val::Str(s) => Some(s.into_owned()),
        other => Some(match other.into_json() {
            Value::String(s) => s,
            json => json.to_string(),
        }),
    }
}

/// Evaluates field rules into an object; null results are left out.
/// `line` is the list's field and the element's index, inside `lines`; `shape` builds the
/// object in one go (shape.rs), with `values` (all `null`, one per rule) as its scratch space.
///
/// With `checks`, each value is checked against its property's schema as it is produced; the
/// second result says whether the object surely satisfies its schema (`false` without checks:
/// the caller validates the whole document).
fn fields<'a>(
    rules: &'a [Field],
    scope: &Scope<'a>,
    line: Option<(&str, usize)>,
    checks: Option<&ObjectPlan>,
    shape: Option<&Shape>,
    values: &mut Vec<Value>,
) -> Result<(Map<String, Value>, bool), MappingError> {
    let mut sure = checks.is_some();
    let mut given = 0u128;
    // Building takes every value out, so the space is all `null` again after each object.
    if values.len() != rules.len() {
        values.clear();
        values.resize(rules.len(), Value::Null);
    }
    for (index, rule) in rules.iter().enumerate() {
        let name = || match line {
            Some((into, n)) => format!("{into}[{n}].{}", rule.name),
            None => rule.name.clone(),
        };
        if let Some(when) = &rule.when
            && !matches!(eval(when, scope, name, &rule.text)?, Val::Bool(true))
        {
            continue;
        }
        let value = eval(&rule.expr, scope, name, &rule.text)?;
        let mut value = match (&rule.map, value) {
            (_, Val::Null) => Value::Null,
            (None, value) => value.into_json(),
            (Some(map), value) => {
                let key = text(value.clone()).unwrap_or_default();
                match (map.get(&key), &rule.default) {
                    (Some(mapped), _) => mapped.clone(),
                    (None, Some(_)) => Value::Null,
                    (None, None) => {
                        return Err(MappingError {
                            field: name(),
                            rule: rule.text.clone(),
                            code: "unmapped_value".into(),
                            message: format!(
                                "{} is not in the value map and there is no default",
                                value.preview()
                            ),
                        });
                    }
                }
            }
        };
        if matches!(&value, Value::Null) || matches!(&value, Value::String(s) if s.is_empty()) {
            value = rule.default.clone().unwrap_or(Value::Null);
        }
        if value.is_null() {
            if rule.required {
                return Err(MappingError {
                    field: name(),
                    rule: rule.text.clone(),
                    code: "required".into(),
                    message: "the value is missing and the field is required".into(),
                });
            }
            continue;
        }
        if let Some(checks) = checks {
            sure = sure && checks.value(index, &value);
            given |= 1 << index;
        }
        // The space holds `null` here: put the value in without a call to drop the `null`.
        let null = std::mem::replace(&mut values[index], value);
        debug_assert!(null.is_null());
        std::mem::forget(null);
    }
    let out = match shape {
        Some(shape) => shape.build(values),
        None => assemble(rules, values),
    };
    let sure = sure && checks.is_some_and(|checks| checks.object(given, &out));
    Ok((out, sure))
}

/// The object built member by member, where no shape could be made: plain names first, then
/// each dotted name (`invoice_address.city`) inserted into its nested object.
fn assemble(rules: &[Field], values: &mut [Value]) -> Map<String, Value> {
    let given = || {
        rules
            .iter()
            .zip(values.iter())
            .filter(|(_, value)| !value.is_null())
    };
    let mut out: Map<String, Value> = given()
        .filter(|(rule, _)| !rule.dotted)
        .map(|(rule, value)| (rule.name.clone(), value.clone()))
        .collect();
    for (rule, value) in given().filter(|(rule, _)| rule.dotted) {
        insert(&mut out, &rule.name, value.clone());
    }
    values.fill(Value::Null);
    out
}

/// Sets `name` in `object`; a dotted name (`invoice_address.city`) builds nested objects.
fn insert(object: &mut Map<String, Value>, name: &str, value: Value) {
    match name.split_once('.') {
        None => {
            object.insert(name.to_owned(), value);
        }
        Some((head, rest)) => {
            let inner = object
                .entry(head.to_owned())
                .or_insert_with(|| Value::Object(Map::new()));
            if let Value::Object(inner) = inner {
                insert(inner, rest, value);
            }
        }
    }
}
