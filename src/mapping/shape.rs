//! Output objects built in their final shape: the members a scope's rules can set are known at
//! load time, so each object is a copy of a template holding every member (in name order, as
//! the map keeps them), whose values are then put in place one by one in that order. Nothing is
//! sorted or searched per event, and a dotted rule (`invoice_address.city`) fills its nested
//! object the same way. Members whose rule gave no value are taken out afterwards, and a nested
//! object that got no member at all is left out, as when objects were built by inserting.

use serde_json::{Map, Value};

use super::Field;

/// How one object is built from its rules' values.
#[derive(Debug, Clone)]
pub struct Shape {
    /// Every member, each `null`, in name order.
    template: Map<String, Value>,
    /// What goes into each member, in the template's order.
    places: Vec<Place>,
}

#[derive(Debug, Clone)]
enum Place {
    /// The value of the rule at this index.
    Rule(usize),
    /// A nested object, built from its own shape.
    Object(Shape),
}

impl Shape {
    /// The shape of an object set by `rules`; `None` when a name is both a member and a nested
    /// object's (`address` and `address.city`), which is left to member-by-member insertion.
    pub fn new(rules: &[Field]) -> Option<Shape> {
        let named: Vec<(Vec<&str>, usize)> = rules
            .iter()
            .enumerate()
            .map(|(index, rule)| (rule.name.split('.').collect(), index))
            .collect();
        Shape::of(&named)
    }

    fn of(named: &[(Vec<&str>, usize)]) -> Option<Shape> {
        let mut heads: Vec<&str> = named.iter().map(|(path, _)| path[0]).collect();
        heads.sort_unstable();
        heads.dedup();
        let mut template = Map::new();
        let mut places = Vec::with_capacity(heads.len());
        for head in heads {
            let under: Vec<&(Vec<&str>, usize)> =
                named.iter().filter(|(path, _)| path[0] == head).collect();
            let place = match under.as_slice() {
                [(path, index)] if path.len() == 1 => Place::Rule(*index),
                _ if under.iter().any(|(path, _)| path.len() == 1) => return None,
                _ => {
                    let inner: Vec<(Vec<&str>, usize)> = under
                        .iter()
                        .map(|(path, index)| (path[1..].to_vec(), *index))
                        .collect();
                    Place::Object(Shape::of(&inner)?)
                }
            };
            template.insert(head.to_owned(), Value::Null);
            places.push(place);
        }
        Some(Shape { template, places })
    }

    /// The object, taking each rule's value out of `values` (by rule index; `null`: no value),
    /// which are all `null` afterwards.
    pub fn build(&self, values: &mut [Value]) -> Map<String, Value> {
        let mut out = self.template.clone();
        let mut gaps = false;
        for (member, place) in out.values_mut().zip(&self.places) {
            match place {
                // A swap leaves the `null` behind without dropping it.
                Place::Rule(index) => std::mem::swap(member, &mut values[*index]),
                Place::Object(shape) => {
                    let inner = shape.build(values);
                    if !inner.is_empty() {
                        *member = Value::Object(inner);
                    }
                }
            }
            gaps |= member.is_null();
        }
        if gaps {
            out.retain(|_, value| !value.is_null());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn rule(name: &str) -> Field {
        Field {
            name: name.to_owned(),
            dotted: name.contains('.'),
            text: String::new(),
            expr: crate::mapping::expr::parse("null").unwrap(),
            map: None,
            default: None,
            required: false,
            when: None,
        }
    }

    /// What inserting member by member builds (apply.rs before shapes): plain names, then each
    /// dotted one into its nested object, created on first use.
    fn inserted(rules: &[Field], values: &[Value]) -> Map<String, Value> {
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
        let mut out = Map::new();
        for (rule, value) in rules.iter().zip(values) {
            if !value.is_null() {
                insert(&mut out, &rule.name, value.clone());
            }
        }
        out
    }

    #[test]
    fn a_shape_builds_what_inserting_builds_whatever_is_missing() {
        let names = [
            "zeta",
            "code",
            "invoice_address.street",
            "invoice_address.city",
            "a.b.c",
            "a.b.d",
            "a.e",
            "Name",
            "_x",
        ];
        let rules: Vec<Field> = names.iter().map(|n| rule(n)).collect();
        let shape = Shape::new(&rules).expect("no name is both a member and an object");
        let samples = [json!("text"), json!(12.5), json!({"k": 1}), json!([])];
        // Every subset of the rules giving a value.
        for given in 0u32..(1 << names.len()) {
            let values: Vec<Value> = (0..names.len())
                .map(|i| match given >> i & 1 {
                    1 => samples[i % samples.len()].clone(),
                    _ => Value::Null,
                })
                .collect();
            let mut scratch = values.clone();
            let built = shape.build(&mut scratch);
            assert_eq!(built, inserted(&rules, &values), "given {given:b}");
            assert!(scratch.iter().all(Value::is_null), "the values are taken");
            // The same member order as a map built by inserting.
            let keys = |m: &Map<String, Value>| m.keys().cloned().collect::<Vec<_>>();
            assert_eq!(keys(&built), keys(&inserted(&rules, &values)));
        }
    }

    #[test]
    fn a_name_that_is_also_an_object_has_no_shape() {
        let rules = [rule("address"), rule("address.city")];
        assert!(Shape::new(&rules).is_none());
        assert!(Shape::new(&[rule("address.city"), rule("addresses")]).is_some());
    }
}
