//! Values during evaluation: JSON borrowed from the event where possible, decimals for numbers.

use std::borrow::Cow;
use std::str::FromStr;

use rust_decimal::Decimal;
use serde_json::Value;

#[derive(Debug, Clone, PartialEq)]
pub enum Val<'a> {
    Null,
    Bool(bool),
    /// Every number is a decimal: JSON numbers are read from their text (serde_json keeps it
    /// with `arbitrary_precision`), never through `f64`.
    Num(Decimal),
    Str(Cow<'a, str>),
    /// A JSON array or object from the event or the context.
    Json(&'a Value),
    List(Vec<Val<'a>>),
}

impl<'a> Val<'a> {
    /// Borrows a JSON value; a number that does not fit a decimal is kept as JSON.
    pub fn from_json(value: &'a Value) -> Val<'a> {
        match value {
            Value::Null => Val::Null,
            Value::Bool(b) => Val::Bool(*b),
            Value::Number(n) => parse_decimal(n.as_str()).map_or(Val::Json(value), Val::Num),
            Value::String(s) => Val::Str(Cow::Borrowed(s)),
            Value::Array(_) | Value::Object(_) => Val::Json(value),
        }
    }

    pub fn into_json(self) -> Value {
        match self {
            Val::Null => Value::Null,
            Val::Bool(b) => Value::Bool(b),
            Val::Num(d) => decimal_to_json(d),
            Val::Str(s) => Value::String(s.into_owned()),
            Val::Json(v) => v.clone(),
            Val::List(items) => Value::Array(items.into_iter().map(Val::into_json).collect()),
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(self, Val::Null)
    }

    /// The name of the value's type, for error messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Val::Null => "null",
            Val::Bool(_) => "boolean",
            Val::Num(_) => "number",
            Val::Str(_) => "string",
            Val::Json(Value::Array(_)) | Val::List(_) => "list",
            Val::Json(_) => "object",
        }
    }

    /// Elements of a list value.
    pub fn items(&self) -> Option<Vec<Val<'a>>> {
        match self {
            Val::Json(Value::Array(items)) => Some(items.iter().map(Val::from_json).collect()),
            Val::List(items) => Some(items.clone()),
            _ => None,
        }
    }

    /// A short rendering for error messages (cut at 60 characters).
    pub fn preview(&self) -> String {
        let text = match self {
            Val::Str(s) => format!("{:?}", s.as_ref()),
            other => other.clone().into_json().to_string(),
        };
        match text.char_indices().nth(60) {
            Some((cut, _)) => format!("{}…", &text[..cut]),
            None => text,
        }
    }
}

/// Parses decimal text, plain (`15000.50`) or scientific (`1.5e3`).
pub fn parse_decimal(text: &str) -> Option<Decimal> {
    let text = text.trim();
    Decimal::from_str(text)
        .ok()
        .or_else(|| Decimal::from_scientific(text).ok())
}

/// A decimal as a JSON number with exactly its text. A decimal's text (`-12.50`, `0`) is always
/// a valid JSON number, so it is not parsed again (`decimal_text_is_json` checks that).
pub fn decimal_to_json(d: Decimal) -> Value {
    Value::Number(serde_json::Number::from_string_unchecked(d.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_text_is_json() {
        for text in [
            "0",
            "-0.00",
            "12.50",
            "-1136.625",
            "79228162514264337593543950335",
            "0.0000000000000000000000000001",
        ] {
            let d = Decimal::from_str(text).unwrap();
            let checked = serde_json::Number::from_str(&d.to_string()).unwrap();
            assert_eq!(decimal_to_json(d), Value::Number(checked), "{text}");
        }
        let mut runner = proptest::test_runner::TestRunner::default();
        runner
            .run(&(any_decimal()), |d| {
                let checked = serde_json::Number::from_str(&d.to_string()).unwrap();
                proptest::prop_assert_eq!(decimal_to_json(d), Value::Number(checked));
                Ok(())
            })
            .unwrap();
    }

    fn any_decimal() -> impl proptest::strategy::Strategy<Value = Decimal> {
        use proptest::prelude::*;
        (any::<i64>(), 0u32..28).prop_map(|(n, scale)| Decimal::new(n, scale))
    }
}
