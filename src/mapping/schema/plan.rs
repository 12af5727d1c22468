//! The schema's checks resolved for a mapping's rules when it loads. Each field's value is
//! checked against its property's schema as the rule produces it, and the object's own keywords
//! (required and known members) are settled from which rules gave a value: a valid document is
//! not walked again, nor are its members' names compared with the schema's. A schema gets a
//! plan only when its object keywords can be settled this way (every rule sets a known
//! property, every required property has a rule, no keyword on the object or list as a whole
//! beyond counts); when a value's check is not sure, or a required member is missing, the whole
//! document goes through [`Schema::validate`], which decides and names the violation.

use std::sync::Arc;

use serde_json::{Map, Value};

use super::{Node, Schema, Verdict};

/// Checks of the document a mapping builds: its top object and, with `lines`, each line.
pub struct Plan {
    pub top: ObjectPlan,
    /// With `lines`: the list's count and each line's checks.
    pub lines: Option<ListPlan>,
}

pub struct ListPlan {
    /// The list's schema, for its item counts.
    list: Arc<Node>,
    pub item: ObjectPlan,
}

pub struct ObjectPlan {
    /// Per rule, in the rules' order: its property's schema (`None`: a dotted rule, whose
    /// nested object is checked whole, or a property without constraints).
    rules: Vec<Option<Arc<Node>>>,
    /// Rules that set a required property: each must give a value.
    required: u128,
    /// The nested objects of dotted rules: name, schema, whether required.
    nested: Vec<(String, Arc<Node>, bool)>,
}

/// At most this many rules per object get a plan (the required rules are a bit set).
const MAX_RULES: usize = 128;

impl Schema {
    /// The plan for an object built by rules with these `names`, with a `lines` list of rules
    /// named `line_names` if given; `None` when the schema's keywords cannot be settled so.
    pub fn plan(&self, names: &[&str], lines: Option<(&str, &[&str])>) -> Option<Plan> {
        let top = self.fast.as_ref()?;
        let plan = Plan {
            top: ObjectPlan::new(top, names, lines.map(|(into, _)| into))?,
            lines: match lines {
                None => None,
                Some((into, line_names)) => {
                    let (list, _) = property(top, into)?;
                    Some(ListPlan::new(list, line_names)?)
                }
            },
        };
        Some(plan)
    }
}

/// A property's schema and whether it is required.
fn property(node: &Node, name: &str) -> Option<(Arc<Node>, bool)> {
    node.properties
        .iter()
        .find(|(property, _, _)| property == name)
        .map(|(_, node, required)| (Arc::clone(node), *required))
}

impl ObjectPlan {
    /// `extra`: a member set by the mapping itself (the `lines` list), always present.
    fn new(node: &Node, names: &[&str], extra: Option<&str>) -> Option<ObjectPlan> {
        let object_only = !node.nothing
            && node.types.is_none_or(|t| t.object)
            && node.min_properties.is_none()
            && node.max_properties.is_none()
            && node.required_elsewhere.is_empty()
            && node.delegated.is_none()
            && node.referred.is_none();
        if !object_only || names.len() > MAX_RULES {
            return None;
        }
        let heads: Vec<&str> = names
            .iter()
            .filter_map(|name| name.split_once('.').map(|(head, _)| head))
            .collect();
        let mut plan = ObjectPlan {
            rules: Vec::with_capacity(names.len()),
            required: 0,
            nested: Vec::new(),
        };
        for (index, name) in names.iter().enumerate() {
            match name.split_once('.') {
                Some((head, _)) => {
                    plan.rules.push(None);
                    if !plan.nested.iter().any(|(known, _, _)| known == head) {
                        let (node, required) = property(node, head)?;
                        plan.nested.push((head.to_owned(), node, required));
                    }
                }
                // A plain name that is also a nested object's or the list's name would be
                // overwritten: left to the whole-document check.
                None if heads.contains(name) || extra == Some(name) => return None,
                None => {
                    let (node, required) = property(node, name)?;
                    plan.rules.push(node.constrains().then_some(node));
                    if required {
                        plan.required |= 1 << index;
                    }
                }
            }
        }
        if let Some(extra) = extra {
            property(node, extra)?;
        }
        let set =
            |name: &str| names.contains(&name) || heads.contains(&name) || extra == Some(name);
        let unset_required = node
            .properties
            .iter()
            .any(|(name, _, required)| *required && !set(name));
        (!unset_required).then_some(plan)
    }

    /// Whether a rule's value surely satisfies its property's schema.
    pub fn value(&self, rule: usize, value: &Value) -> bool {
        match &self.rules[rule] {
            Some(node) => node.check(value) == Verdict::Valid,
            None => true,
        }
    }

    /// Whether the object surely satisfies its own keywords, given the rules that gave a
    /// value (a bit per rule) and the object built.
    pub fn object(&self, given: u128, object: &Map<String, Value>) -> bool {
        given & self.required == self.required
            && self
                .nested
                .iter()
                .all(|(name, node, required)| match object.get(name) {
                    Some(value) => node.check(value) == Verdict::Valid,
                    None => !required,
                })
    }
}

impl ListPlan {
    fn new(list: Arc<Node>, names: &[&str]) -> Option<ListPlan> {
        let list_only = !list.nothing
            && list.types.is_none_or(|t| t.array)
            && list.delegated.is_none()
            && list.referred.is_none();
        if !list_only {
            return None;
        }
        let item = ObjectPlan::new(list.items.as_deref()?, names, None)?;
        Some(ListPlan { list, item })
    }

    /// Whether a list of `count` lines surely satisfies the list's counts.
    pub fn count(&self, count: usize) -> bool {
        self.list.items_fit(count)
    }
}

impl Node {
    /// Whether any value can fail this schema (`{}` and annotations alone cannot).
    fn constrains(&self) -> bool {
        self.nothing
            || self.types.is_some()
            || self.min_length.is_some()
            || self.max_length.is_some()
            || self.minimum.is_some()
            || self.maximum.is_some()
            || self.exclusive_minimum.is_some()
            || self.exclusive_maximum.is_some()
            || self.min_items.is_some()
            || self.max_items.is_some()
            || self.items.is_some()
            || self.min_properties.is_some()
            || self.max_properties.is_some()
            || !self.properties.is_empty()
            || !self.required_elsewhere.is_empty()
            || !matches!(self.additional, super::Additional::Allowed)
            || self.delegated.is_some()
            || self.referred.is_some()
    }
}
