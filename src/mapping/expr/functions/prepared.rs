//! Calls prepared when the expression is parsed: one-argument functions called without an
//! argument list, and `round` and `date` with their constant arguments (places, mode, formats,
//! time zone) read once instead of on every event. Each gives exactly what the general call
//! gives; a call whose constant arguments are not literals, or are wrong (the error belongs to
//! the event being mapped), stays a general call.

use std::borrow::Cow;

use rust_decimal::RoundingStrategy;

use super::super::Span;
use super::super::eval::{EvalError, Scope, number};
use super::super::parser::{Expr, Node};
use super::super::value::Val;
use super::{Function, date, text, whole};

#[derive(Debug, Clone)]
pub enum Prepared {
    /// `decimal`, `trim`, `upper` or `lower` of one value.
    Unary(Unary, Expr),
    /// `round(value, places, mode?)` with literal places and mode.
    Round(Expr, u32, RoundingStrategy),
    /// `date(value, from, to, zone?)` with literal formats and zone.
    Date(Expr, Box<date::Formats>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unary {
    Decimal,
    Trim,
    Upper,
    Lower,
}

/// The call prepared, or `None` when it stays a general call.
pub fn prepare(function: &'static Function, args: &mut Vec<Expr>) -> Option<Prepared> {
    let unary = match function.name {
        "decimal" => Some(Unary::Decimal),
        "trim" => Some(Unary::Trim),
        "upper" => Some(Unary::Upper),
        "lower" => Some(Unary::Lower),
        _ => None,
    };
    if let Some(unary) = unary {
        return Some(Prepared::Unary(unary, args.pop()?));
    }
    let literal = |n: usize| match args.get(n).map(|a| &a.node) {
        Some(Node::Str(s)) => Some(Some(s.clone())),
        None => Some(None),
        _ => None,
    };
    let span = Span { start: 0, end: 0 };
    let prepared = match function.name {
        "round" => {
            let Some(Node::Num(places)) = args.get(1).map(|a| &a.node) else {
                return None;
            };
            let places = u32::try_from(whole(Val::Num(*places), span).ok()?)
                .ok()
                .filter(|p| *p <= 28)?;
            let strategy = match literal(2)?.as_deref() {
                None | Some("half_up") => RoundingStrategy::MidpointAwayFromZero,
                Some("half_even") => RoundingStrategy::MidpointNearestEven,
                Some(_) => return None,
            };
            args.truncate(1);
            Prepared::Round(args.pop()?, places, strategy)
        }
        "date" => {
            let (from, to) = (literal(1)??, literal(2)??);
            let zone = date::time_zone(literal(3)?.as_deref()).ok()?;
            args.truncate(1);
            Prepared::Date(args.pop()?, Box::new(date::Formats::new(&from, &to, zone)))
        }
        _ => return None,
    };
    Some(prepared)
}

impl Prepared {
    pub fn eval<'a>(&'a self, scope: &Scope<'a>, span: Span) -> Result<Val<'a>, EvalError> {
        match self {
            Prepared::Unary(unary, arg) => unary.apply(arg.eval_arg(scope)?, span),
            Prepared::Round(value, places, strategy) => match value.eval_arg(scope)? {
                Val::Null => Ok(Val::Null),
                value => Ok(Val::Num(super::number::round_to(
                    number(value, span)?,
                    *places,
                    *strategy,
                ))),
            },
            Prepared::Date(value, formats) => formats.reformat(value.eval_arg(scope)?, span),
        }
    }

    /// The expressions evaluated by the call (the prepared constants are not expressions).
    pub fn args(&self) -> &Expr {
        match self {
            Prepared::Unary(_, arg) | Prepared::Round(arg, ..) | Prepared::Date(arg, _) => arg,
        }
    }

    pub fn args_mut(&mut self) -> &mut Expr {
        match self {
            Prepared::Unary(_, arg) | Prepared::Round(arg, ..) | Prepared::Date(arg, _) => arg,
        }
    }

    /// What distinguishes two prepared calls of the same argument (for `Expr::shape`).
    pub fn constants(&self) -> String {
        match self {
            Prepared::Unary(unary, _) => format!("{unary:?}"),
            Prepared::Round(_, places, strategy) => format!("round{places}{strategy:?}"),
            Prepared::Date(_, formats) => format!("date{}", formats.key()),
        }
    }
}

impl Unary {
    pub fn apply<'a>(self, value: Val<'a>, span: Span) -> Result<Val<'a>, EvalError> {
        let change: fn(&str) -> Cow<'_, str> = match self {
            Unary::Decimal => {
                return match value {
                    Val::Null => Ok(Val::Null),
                    other => Ok(Val::Num(number(other, span)?)),
                };
            }
            Unary::Trim => |t| Cow::Borrowed(t.trim()),
            Unary::Upper => |t| change_case(t, true),
            Unary::Lower => |t| change_case(t, false),
        };
        // Text borrowed from the event stays borrowed when the change only slices it.
        Ok(match text(value, span)? {
            None => Val::Null,
            Some(Cow::Borrowed(t)) => Val::Str(change(t)),
            Some(Cow::Owned(t)) => Val::Str(Cow::Owned(change(&t).into_owned())),
        })
    }
}

/// `upper` and `lower`: text already in the asked case (plain ASCII) is kept as it is.
fn change_case(t: &str, upper: bool) -> Cow<'_, str> {
    let unchanged = t.bytes().all(|b| {
        b.is_ascii()
            && !(if upper {
                b.is_ascii_lowercase()
            } else {
                b.is_ascii_uppercase()
            })
    });
    match (unchanged, upper) {
        (true, _) => Cow::Borrowed(t),
        (false, true) => Cow::Owned(t.to_uppercase()),
        (false, false) => Cow::Owned(t.to_lowercase()),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use proptest::prelude::*;
    use serde_json::{Value, json};

    use super::super::super::parser::parse;
    use super::*;

    /// Each call with literal constants (prepared), and the same call reading its constants
    /// from the event (a general call).
    const CALLS: &[(&str, &str)] = &[
        ("round($.v, 2)", "round($.v, $.two)"),
        ("round($.v, 0, 'half_even')", "round($.v, $.zero, $.even)"),
        ("round($.v, 1, 'half_up')", "round($.v, $.one, $.up)"),
        ("round(decimal($.v), 3)", "round(decimal($.v), $.three)"),
        (
            "date($.v, '%Y-%m-%d', '%d/%m/%Y')",
            "date($.v, $.day, $.french)",
        ),
        (
            "date($.v, '%Y-%m-%dT%H:%M:%S%z', '%Y-%m-%d %H:%M', 'Europe/Paris')",
            "date($.v, $.offset, $.minute, $.paris)",
        ),
        (
            "date($.v, '%Y-%m-%d %H:%M', 'rfc3339')",
            "date($.v, $.minute, $.rfc)",
        ),
        (
            "date($.v, 'rfc3339', '%Y-%m-%d')",
            "date($.v, $.rfc, $.day)",
        ),
        ("date($.v, '%Q', '%Y')", "date($.v, $.bad, $.year)"),
        ("date($.v, '%Y', '%Q')", "date($.v, $.year, $.bad)"),
    ];

    fn constants() -> Value {
        json!({
            "zero": 0, "one": 1, "two": 2, "three": 3, "even": "half_even", "up": "half_up",
            "day": "%Y-%m-%d", "french": "%d/%m/%Y", "offset": "%Y-%m-%dT%H:%M:%S%z",
            "minute": "%Y-%m-%d %H:%M", "paris": "Europe/Paris", "rfc": "rfc3339",
            "bad": "%Q", "year": "%Y",
        })
    }

    fn any_value() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            "[ a-zA-Z0-9.éß-]{0,12}".prop_map(Value::from),
            "-?[1-9][0-9]{0,5}(\\.[0-9]{1,5})?".prop_map(|t| Value::Number(t.parse().unwrap())),
            "-?[0-9]{1,6}(\\.[0-9]{1,5})?".prop_map(Value::from),
            // Halves, where the rounding modes differ.
            "-?[1-9][0-9]{0,3}\\.[0-9]{0,3}5".prop_map(|t| Value::Number(t.parse().unwrap())),
            "20[0-9]{2}-[01][0-9]-[0-3][0-9]( [0-2][0-9]:[0-5][0-9])?".prop_map(Value::from),
            "20[0-9]{2}-[01][0-9]-[0-3][0-9]T[0-2][0-9]:[0-5][0-9]:[0-5][0-9](Z|[+-]0[0-9]:?00)"
                .prop_map(Value::from),
            Just(json!({"a": 1})),
            Just(json!([1, "x"])),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(3000))]

        /// A prepared call gives what the general call gives: the same value, or the same
        /// error (code, message and span).
        #[test]
        fn prepared_calls_agree_with_general_calls(value in any_value(), call in 0..CALLS.len()) {
            let (text, general) = CALLS[call];
            let (prepared, general) = (parse(text).unwrap(), parse(general).unwrap());
            prop_assert!(matches!(prepared.node, Node::Prepared(_)), "{} is not prepared", text);
            prop_assert!(matches!(general.node, Node::Call(..)), "{} is prepared", text);
            let mut root = constants();
            root["v"] = value;
            let (lookups, xrefs) = (HashMap::new(), HashMap::new());
            let scope = Scope { root: &root, item: None, lookups: &lookups, xrefs: &xrefs, memo: None, root_slots: &[], item_slots: &[] };
            let outcome = |result: Result<Val<'_>, EvalError>| match result {
                Ok(value) => Ok(value.into_json()),
                Err(e) => Err((e.code, e.message.clone(), e.span.start)),
            };
            prop_assert_eq!(
                outcome(prepared.eval(&scope)),
                outcome(general.eval(&scope)),
                "{} on {}", text, root["v"]
            );
        }
    }

    #[test]
    fn calls_with_arguments_that_are_not_literals_stay_general() {
        for text in [
            "round($.v, $.places)",
            "round($.v, 2, $.mode)",
            "round($.v, 29)",
            "round($.v, 1.5)",
            "round($.v, 2, 'up')",
            "date($.v, $.format, '%Y')",
            "date($.v, '%Y', '%Y', 'Mars/Olympus')",
        ] {
            let parsed = parse(text).unwrap();
            assert!(matches!(parsed.node, Node::Call(..)), "{text}");
        }
    }
}
