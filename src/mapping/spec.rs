//! The YAML form of a mapping file, as written by integrators (serde, with locations).
//!
//! ```yaml
//! flow: account_to_customer
//! on: { source: crm, event: account.updated, when: "…" }       # when: optional condition
//! target: { connector: erp, operation: upsert_customer, schema: customer }
//! order_key: "$.data.Id"                  # jobs with the same key run in order
//! requires: [{ kind: customer, id: "$.data.AccountId" }]        # optional dependencies
//! match: "$.data.Id"                      # the find-or-create key in the target
//! holds:                                  # preconditions before the target gets it
//!   - { until: "$.data.Payment_Verified__c == true", reason: payment pending }
//!   - { stock: true }                     # the lines' product_code × quantity are in stock
//! fields:
//!   name: "trim($.data.Name)"             # an expression…
//!   terms: { value: "$.data.Terms", map: { "Net 30": "30D" }, default: "30D", required: true }
//! lines: { into: lines, from: "$.data.Items", when: "item.Quantity > 0", fields: { … } }
//! tests: [{ name: "…", event: { … }, context: { xrefs: { … } }, expect: { … } }]
//! ```

use std::collections::HashMap;

use indexmap::IndexMap;
use serde::Deserialize;
use serde_json::Value;
use serde_saphyr::Spanned;

pub type Text = Spanned<String>;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MappingSpec {
    pub flow: String,
    #[serde(default)]
    pub description: String,
    pub on: OnSpec,
    pub target: TargetSpec,
    pub order_key: Text,
    #[serde(default)]
    pub requires: Vec<RequireSpec>,
    #[serde(rename = "match")]
    pub match_key: Option<Text>,
    #[serde(default)]
    pub holds: Vec<Spanned<HoldSpec>>,
    pub fields: IndexMap<String, Spanned<FieldSpec>>,
    #[serde(default)]
    pub lines: Option<LinesSpec>,
    /// How `handoff reconcile` compares this flow's source and target records.
    pub reconcile: Option<Spanned<ReconcileSpec>>,
    #[serde(default)]
    pub tests: Vec<TestSpec>,
}

/// `reconcile:` in a mapping file: where the flow's records are listed on each side, which
/// fields the deep pass compares, which drift classes are repaired, and the repair cap.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReconcileSpec {
    /// The source's listing: each record is mapped as the `data` of an event of this flow.
    pub source: ListAt,
    /// The target connector's list operation (records keyed by the mapping's `match`).
    pub target: String,
    /// Fields the deep pass compares (default: every field the target lists that the
    /// document has).
    #[serde(default)]
    pub compare: Vec<String>,
    /// Classes repaired by `--repair safe` (default: `missed_event` and `unlinked`).
    #[serde(default = "safe_classes")]
    pub repair: Vec<String>,
    /// A run repairs nothing when it would repair more than this many records…
    #[serde(default = "hundred")]
    pub max_repairs: usize,
    /// …or more than this share of the records it compared.
    #[serde(default = "tenth")]
    pub max_repair_share: f64,
    /// Records changed this recently are skipped (`in_flight`): their events may be on the way.
    #[serde(default = "five_minutes")]
    pub in_flight_secs: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListAt {
    pub connector: String,
    pub operation: String,
    /// The listed record is the event's data under this key, as the source's webhooks carry
    /// it (`data`: `{"type": …, "data": record}`); without it the record is the event itself
    /// (as an ERP's product events are).
    pub wrap: Option<String>,
}

fn safe_classes() -> Vec<String> {
    vec!["missed_event".into(), "unlinked".into()]
}

fn hundred() -> usize {
    100
}

fn tenth() -> f64 {
    0.1
}

fn five_minutes() -> u64 {
    300
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OnSpec {
    /// Any source when absent.
    pub source: Option<String>,
    pub event: String,
    pub when: Option<Text>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetSpec {
    pub connector: Text,
    pub operation: String,
    /// A file `schemas/<schema>.json`.
    pub schema: Text,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequireSpec {
    pub kind: String,
    pub id: Text,
}

/// A precondition: the job is held (with `reason`) until `until` holds, or until the target has
/// every line's product in stock (`stock: true`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HoldSpec {
    pub until: Option<Text>,
    pub reason: Option<String>,
    #[serde(default)]
    pub stock: bool,
}

/// A field rule: an expression, or an expression with a value map, default and flags.
#[derive(Debug)]
pub enum FieldSpec {
    Expr(String),
    Rule(FieldRule),
}

/// By hand rather than `untagged`, so that a mistake inside a rule (`requird: true`) is named,
/// with its file, line and column, instead of "did not match any variant".
impl<'de> Deserialize<'de> for FieldSpec {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Rule;
        impl<'de> serde::de::Visitor<'de> for Rule {
            type Value = FieldSpec;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an expression, or { value, map, default, required, when }")
            }

            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<FieldSpec, E> {
                Ok(FieldSpec::Expr(text.to_owned()))
            }

            fn visit_i64<E: serde::de::Error>(self, n: i64) -> Result<FieldSpec, E> {
                Ok(FieldSpec::Expr(n.to_string()))
            }

            fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<FieldSpec, E> {
                Ok(FieldSpec::Expr(n.to_string()))
            }

            fn visit_bool<E: serde::de::Error>(self, b: bool) -> Result<FieldSpec, E> {
                Ok(FieldSpec::Expr(b.to_string()))
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<FieldSpec, A::Error> {
                FieldRule::deserialize(serde::de::value::MapAccessDeserializer::new(map))
                    .map(FieldSpec::Rule)
            }
        }
        deserializer.deserialize_any(Rule)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldRule {
    pub value: String,
    /// Source value (as text) → target value.
    #[serde(default)]
    pub map: Option<HashMap<String, Value>>,
    /// Used when the value (after the map) is null or empty.
    #[serde(default)]
    pub default: Option<Value>,
    /// A null result is an error.
    #[serde(default)]
    pub required: bool,
    /// The field is set only when this holds.
    #[serde(default)]
    pub when: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinesSpec {
    /// The target field that receives the list.
    pub into: String,
    /// An expression giving the source list.
    pub from: Text,
    /// Keeps only the elements for which this holds (`item` is the element).
    pub when: Option<Text>,
    pub fields: IndexMap<String, Spanned<FieldSpec>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestSpec {
    pub name: String,
    /// The event's data (`$`).
    pub event: Value,
    #[serde(default)]
    pub context: ContextSpec,
    /// The whole expected document.
    pub expect: Option<Value>,
    /// Or the expected error.
    pub expect_error: Option<ExpectedError>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContextSpec {
    /// kind → CRM id → ERP id.
    #[serde(default)]
    pub xrefs: HashMap<String, HashMap<String, String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpectedError {
    /// The target field whose rule fails (`lines[2].quantity` inside lines).
    pub field: String,
    /// The error code, e.g. `not_a_number`, `required`, `schema`.
    pub code: String,
}
