//! The target schema of a mapping: a fast check for the keywords target schemas use, with
//! `jsonschema` kept as the reference.
//!
//! Every document handed to an adapter satisfies its schema. The fast check walks the document
//! once against a tree compiled from the schema (types, required and known properties, lengths,
//! item counts, numeric bounds compared as decimals, never as floats). It answers *valid* only
//! when it is sure; anything else (a violation, a number too large for a decimal, an `integer`
//! written with a fraction) goes to `jsonschema`, which decides and names the violation. A
//! `pattern` of fixed-length codes and dates is checked here (schema/pattern.rs). Keywords
//! that concern one value only and that the fast check does not implement (other `pattern`s,
//! `enum`, `const`, `format`, `multipleOf`, `uniqueItems`) are checked by a small `jsonschema` validator
//! compiled from that keyword alone, so both agree by construction. A schema with keywords that
//! combine or refer to other schemas (`$ref`, `allOf`, `if`, `prefixItems`, …) is checked by
//! `jsonschema` alone. A property test (`schema_tests.rs`) shows both agree on random documents.

mod pattern;
mod plan;

pub use plan::{ListPlan, ObjectPlan, Plan};

use rust_decimal::Decimal;
use serde_json::{Map, Value};

use std::str::FromStr;
use std::sync::Arc;

/// A compiled target schema.
pub struct Schema {
    /// The reference: decides whenever the fast check is not sure, and names violations.
    pub reference: jsonschema::Validator,
    /// `None` when the schema uses keywords outside the fast check's subset.
    fast: Option<Node>,
}

/// Where and why a document breaks its schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// JSON pointer into the document (`/lines/0/quantity`; empty for the whole document).
    pub path: String,
    pub message: String,
}

impl Schema {
    pub fn new(schema: &Value) -> Result<Schema, String> {
        let reference = jsonschema::validator_for(schema).map_err(|e| e.to_string())?;
        let fast = supported_draft(schema)
            .then(|| Node::compile(schema, schema, 0))
            .flatten();
        Ok(Schema { reference, fast })
    }

    /// Whether the fast check is in use (false: every document goes to `jsonschema`).
    pub fn is_compiled(&self) -> bool {
        self.fast.is_some()
    }

    pub fn is_valid(&self, document: &Value) -> bool {
        match &self.fast {
            Some(node) if node.check(document) == Verdict::Valid => true,
            _ => self.reference.is_valid(document),
        }
    }

    /// `Ok` when `document` satisfies the schema, else the first violation `jsonschema` names.
    pub fn validate(&self, document: &Value) -> Result<(), Violation> {
        if self.is_valid(document) {
            return Ok(());
        }
        match self.reference.iter_errors(document).next() {
            Some(violation) => Err(Violation {
                path: violation.instance_path().to_string(),
                message: violation.to_string(),
            }),
            None => Ok(()),
        }
    }
}

/// Drafts whose keywords in the subset mean what the fast check assumes (numeric
/// `exclusiveMinimum`, `items` as one schema): 2020-12 (the default), 2019-09, 7 and 6.
fn supported_draft(schema: &Value) -> bool {
    match schema.get("$schema").and_then(Value::as_str) {
        None => true,
        Some(uri) => ["draft/2020-12", "draft/2019-09", "draft-07", "draft-06"]
            .iter()
            .any(|draft| uri.contains(draft)),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Valid,
    /// Invalid, or not sure: `jsonschema` decides.
    Ask,
}

use Verdict::{Ask, Valid};

/// One schema, compiled. Only keywords present are checked.
#[derive(Default)]
struct Node {
    /// `false` schema: nothing is valid.
    nothing: bool,
    types: Option<Types>,
    min_length: Option<usize>,
    max_length: Option<usize>,
    minimum: Option<Decimal>,
    maximum: Option<Decimal>,
    exclusive_minimum: Option<Decimal>,
    exclusive_maximum: Option<Decimal>,
    /// How numbers are bounded, worked out from the four bounds above.
    bounds: Bounds,
    min_items: Option<usize>,
    max_items: Option<usize>,
    items: Option<Arc<Node>>,
    min_properties: Option<usize>,
    max_properties: Option<usize>,
    /// By name, in the order of the document's members (serde_json's map is sorted), each with
    /// whether it is required.
    properties: Vec<(String, Arc<Node>, bool)>,
    /// Required names that have no `properties` entry.
    required_elsewhere: Vec<String>,
    additional: Additional,
    /// A `pattern` in the subset checked here (schema/pattern.rs).
    pattern: Option<pattern::Pattern>,
    /// The keywords on this value alone that `jsonschema` checks (pattern, enum, …).
    delegated: Option<jsonschema::Validator>,
    /// `$ref` to a definition in the same schema (`#/$defs/address`), checked as well.
    referred: Option<Box<Node>>,
}

/// The numeric bounds of a schema, by how a number is checked against them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum Bounds {
    #[default]
    None,
    /// `minimum: 0` alone: read from the sign and the digits, without parsing.
    NotNegative,
    /// `exclusiveMinimum: 0` alone: the same.
    Positive,
    /// Anything else: compared as decimals.
    Decimal,
}

#[derive(Default)]
enum Additional {
    #[default]
    Allowed,
    Forbidden,
    Checked(Box<Node>),
}

/// Which JSON types a `type` keyword allows.
#[derive(Debug, Clone, Copy, Default)]
struct Types {
    null: bool,
    boolean: bool,
    string: bool,
    number: bool,
    integer: bool,
    array: bool,
    object: bool,
}

/// Keywords that only annotate.
const ANNOTATIONS: &[&str] = &[
    "$schema",
    "$id",
    "$comment",
    "$defs",
    "definitions",
    "title",
    "description",
    "default",
    "examples",
    "deprecated",
    "readOnly",
    "writeOnly",
    "contentEncoding",
    "contentMediaType",
];

/// Keywords on one value that a `jsonschema` validator of their own checks.
const DELEGATED: &[&str] = &[
    "pattern",
    "enum",
    "const",
    "format",
    "multipleOf",
    "uniqueItems",
];

impl Node {
    /// `None` when the schema uses a keyword outside the subset. `root` is the whole schema,
    /// for `$ref`s into its `$defs`; `depth` stops recursive definitions (left to jsonschema).
    fn compile(schema: &Value, root: &Value, depth: usize) -> Option<Node> {
        if depth > 16 {
            return None;
        }
        let compile = |schema: &Value| Node::compile(schema, root, depth + 1).map(Box::new);
        let object = match schema {
            Value::Bool(true) => return Some(Node::default()),
            Value::Bool(false) => {
                return Some(Node {
                    nothing: true,
                    ..Node::default()
                });
            }
            Value::Object(object) => object,
            _ => return None,
        };
        let mut node = Node::default();
        let mut delegated = Map::new();
        let mut required = Vec::new();
        for (keyword, value) in object {
            let keyword = keyword.as_str();
            match keyword {
                k if ANNOTATIONS.contains(&k) => {}
                "pattern"
                    if let Some(compiled) = value.as_str().and_then(pattern::Pattern::compile) =>
                {
                    node.pattern = Some(compiled);
                }
                k if DELEGATED.contains(&k) => {
                    delegated.insert(k.to_owned(), value.clone());
                }
                "type" => node.types = Some(Types::compile(value)?),
                "minLength" => node.min_length = Some(count(value)?),
                "maxLength" => node.max_length = Some(count(value)?),
                "minItems" => node.min_items = Some(count(value)?),
                "maxItems" => node.max_items = Some(count(value)?),
                "minProperties" => node.min_properties = Some(count(value)?),
                "maxProperties" => node.max_properties = Some(count(value)?),
                "minimum" => node.minimum = Some(bound(value)?),
                "maximum" => node.maximum = Some(bound(value)?),
                "exclusiveMinimum" => node.exclusive_minimum = Some(bound(value)?),
                "exclusiveMaximum" => node.exclusive_maximum = Some(bound(value)?),
                "items" => node.items = Some(Arc::from(compile(value)?)),
                "properties" => {
                    for (name, schema) in value.as_object()? {
                        node.properties
                            .push((name.clone(), Arc::from(compile(schema)?), false));
                    }
                }
                "$ref" => {
                    let pointer = value.as_str()?.strip_prefix('#')?;
                    node.referred = Some(compile(root.pointer(pointer)?)?);
                }
                "required" => {
                    for name in value.as_array()? {
                        required.push(name.as_str()?.to_owned());
                    }
                }
                "additionalProperties" => {
                    node.additional = match value {
                        Value::Bool(true) => Additional::Allowed,
                        Value::Bool(false) => Additional::Forbidden,
                        schema => Additional::Checked(compile(schema)?),
                    }
                }
                _ => return None,
            }
        }
        node.bounds = Bounds::of(&node);
        node.properties.sort_by(|a, b| a.0.cmp(&b.0));
        for name in required {
            match node.properties.iter_mut().find(|p| p.0 == name) {
                Some(property) => property.2 = true,
                None => node.required_elsewhere.push(name),
            }
        }
        if !delegated.is_empty() {
            node.delegated = Some(jsonschema::validator_for(&Value::Object(delegated)).ok()?);
        }
        Some(node)
    }

    fn check(&self, value: &Value) -> Verdict {
        if self.nothing {
            return Ask;
        }
        if let Some(types) = self.types
            && types.check(value) == Ask
        {
            return Ask;
        }
        let verdict = match value {
            Value::String(text) => self.check_text(text),
            Value::Number(number) => self.check_number(number.as_str()),
            Value::Array(items) => self.check_items(items),
            Value::Object(members) => self.check_members(members),
            Value::Null | Value::Bool(_) => Valid,
        };
        match (verdict, &self.delegated, &self.referred) {
            (Ask, _, _) => Ask,
            (_, Some(delegated), _) if !delegated.is_valid(value) => Ask,
            (_, _, Some(referred)) => referred.check(value),
            _ => Valid,
        }
    }

    fn check_text(&self, text: &str) -> Verdict {
        if self.pattern.as_ref().is_some_and(|p| !p.matches(text)) {
            return Ask;
        }
        if self.min_length.is_none() && self.max_length.is_none() {
            return Valid;
        }
        // Lengths count characters (code points), as JSON Schema does.
        let length = text.chars().count();
        sure(
            self.min_length.is_none_or(|min| length >= min)
                && self.max_length.is_none_or(|max| length <= max),
        )
    }

    fn check_number(&self, text: &str) -> Verdict {
        let not_negative = || {
            // A JSON number's text: `-?digits[.digits][e±digits]`.
            let negative = text.starts_with('-');
            let nonzero = text
                .bytes()
                .take_while(|b| !matches!(b, b'e' | b'E'))
                .any(|b| matches!(b, b'1'..=b'9'));
            (negative, nonzero)
        };
        match self.bounds {
            Bounds::None => Valid,
            Bounds::NotNegative => {
                let (negative, nonzero) = not_negative();
                sure(!negative || !nonzero)
            }
            Bounds::Positive => {
                let (negative, nonzero) = not_negative();
                sure(!negative && nonzero)
            }
            // A number a decimal cannot hold exactly is left to `jsonschema`.
            Bounds::Decimal => match exact_decimal(text) {
                Some(n) => sure(
                    self.minimum.is_none_or(|b| n >= b)
                        && self.maximum.is_none_or(|b| n <= b)
                        && self.exclusive_minimum.is_none_or(|b| n > b)
                        && self.exclusive_maximum.is_none_or(|b| n < b),
                ),
                None => Ask,
            },
        }
    }

    /// Whether a list of `count` items fits `minItems` and `maxItems`.
    fn items_fit(&self, count: usize) -> bool {
        self.min_items.is_none_or(|min| count >= min)
            && self.max_items.is_none_or(|max| count <= max)
    }

    fn check_items(&self, items: &[Value]) -> Verdict {
        if !self.items_fit(items.len()) {
            return Ask;
        }
        match &self.items {
            Some(node) if items.iter().any(|item| node.check(item) == Ask) => Ask,
            _ => Valid,
        }
    }

    fn check_members(&self, members: &Map<String, Value>) -> Verdict {
        if !(self.min_properties.is_none_or(|min| members.len() >= min)
            && self.max_properties.is_none_or(|max| members.len() <= max))
            || self
                .required_elsewhere
                .iter()
                .any(|name| !members.contains_key(name))
        {
            return Ask;
        }
        // Members and properties are both sorted by name: one merge finds each member's schema.
        let mut properties = self.properties.iter().peekable();
        for (name, value) in members {
            let mut known = None;
            while let Some((property, node, required)) = properties.peek() {
                match property.as_str().cmp(name.as_str()) {
                    std::cmp::Ordering::Less if *required => return Ask,
                    std::cmp::Ordering::Less => {}
                    std::cmp::Ordering::Equal => known = Some(node),
                    std::cmp::Ordering::Greater => break,
                }
                properties.next();
                if known.is_some() {
                    break;
                }
            }
            let verdict = match (known, &self.additional) {
                (Some(node), _) => node.check(value),
                (None, Additional::Checked(node)) => node.check(value),
                (None, Additional::Allowed) => Valid,
                (None, Additional::Forbidden) => Ask,
            };
            if verdict == Ask {
                return Ask;
            }
        }
        // A required property after the last member is missing.
        sure(!properties.any(|(_, _, required)| *required))
    }
}

impl Bounds {
    fn of(node: &Node) -> Bounds {
        let zero = Some(Decimal::ZERO);
        match (
            node.minimum,
            node.exclusive_minimum,
            node.maximum,
            node.exclusive_maximum,
        ) {
            (None, None, None, None) => Bounds::None,
            (m, None, None, None) if m == zero => Bounds::NotNegative,
            (None, m, None, None) if m == zero => Bounds::Positive,
            _ => Bounds::Decimal,
        }
    }
}

impl Types {
    fn compile(value: &Value) -> Option<Types> {
        let mut types = Types::default();
        let names: Vec<&str> = match value {
            Value::String(name) => vec![name],
            Value::Array(names) => names.iter().map(Value::as_str).collect::<Option<_>>()?,
            _ => return None,
        };
        for name in names {
            match name {
                "null" => types.null = true,
                "boolean" => types.boolean = true,
                "string" => types.string = true,
                "number" => types.number = true,
                "integer" => types.integer = true,
                "array" => types.array = true,
                "object" => types.object = true,
                _ => return None,
            }
        }
        Some(types)
    }

    fn check(&self, value: &Value) -> Verdict {
        sure(match value {
            Value::Null => self.null,
            Value::Bool(_) => self.boolean,
            Value::String(_) => self.string,
            // `1.0` is an integer to JSON Schema; only plain digits are sure here.
            Value::Number(n) => {
                self.number
                    || (self.integer && n.as_str().bytes().all(|b| b.is_ascii_digit() || b == b'-'))
            }
            Value::Array(_) => self.array,
            Value::Object(_) => self.object,
        })
    }
}

fn sure(valid: bool) -> Verdict {
    if valid { Valid } else { Ask }
}

/// A non-negative whole count (`minLength: 1`).
fn count(value: &Value) -> Option<usize> {
    usize::try_from(value.as_u64()?).ok()
}

/// A numeric bound, as a decimal.
fn bound(value: &Value) -> Option<Decimal> {
    match value {
        Value::Number(n) => exact_decimal(n.as_str()),
        _ => None,
    }
}

/// A JSON number's text as a decimal, when a decimal holds it exactly: no exponent, at most 28
/// digits after the point and 28 significant digits (a decimal would round more).
fn exact_decimal(text: &str) -> Option<Decimal> {
    let (mut fraction, mut significant, mut after_point) = (0, 0, false);
    for b in text.bytes() {
        match b {
            b'0' if significant == 0 => {}
            b'0'..=b'9' => significant += 1,
            b'.' => after_point = true,
            b'-' => {}
            _ => return None,
        }
        fraction += usize::from(after_point && b.is_ascii_digit());
    }
    (fraction <= 28 && significant <= 28)
        .then(|| Decimal::from_str(text).ok())
        .flatten()
}

#[cfg(test)]
#[path = "schema_tests.rs"]
mod tests;
