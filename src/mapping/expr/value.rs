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

    /// A copy; values that own nothing (numbers, borrowed text, JSON from the event) are
    /// copied inline, without a call to `clone`.
    #[inline(always)]
    pub fn duplicate(&self) -> Val<'a> {
        match self {
            Val::Null => Val::Null,
            Val::Bool(b) => Val::Bool(*b),
            Val::Num(d) => Val::Num(*d),
            Val::Str(Cow::Borrowed(s)) => Val::Str(Cow::Borrowed(s)),
            Val::Json(v) => Val::Json(v),
            owned => owned.clone(),
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
    plain_decimal(text)
        .or_else(|| Decimal::from_str(text).ok())
        .or_else(|| Decimal::from_scientific(text).ok())
}

/// The common case, read directly: `-?digits(.digits)?` with at most 18 digits and not a
/// negative zero. The result is what `Decimal::from_str` gives (the same value and scale;
/// `plain_decimals_read_as_rust_decimal_does` checks that); anything else is `None`.
fn plain_decimal(text: &str) -> Option<Decimal> {
    let (negative, unsigned) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (whole, fraction) = unsigned.split_once('.').unwrap_or((unsigned, ""));
    let digits = whole.len() + fraction.len();
    if whole.is_empty() || (unsigned.len() > whole.len() && fraction.is_empty()) || digits > 18 {
        return None;
    }
    let mut mantissa: i64 = 0;
    for b in whole.bytes().chain(fraction.bytes()) {
        if !b.is_ascii_digit() {
            return None;
        }
        mantissa = mantissa * 10 + i64::from(b - b'0');
    }
    if negative && mantissa == 0 {
        return None;
    }
    let scale = u32::try_from(fraction.len()).ok()?;
    Some(Decimal::new(
        if negative { -mantissa } else { mantissa },
        scale,
    ))
}

/// A decimal as a JSON number with exactly its text. A decimal's text (`-12.50`, `0`) is always
/// a valid JSON number, so it is not parsed again (`decimal_text_is_json` checks that).
pub fn decimal_to_json(d: Decimal) -> Value {
    Value::Number(serde_json::Number::from_string_unchecked(decimal_text(d)))
}

/// A decimal's text, as its `Display` writes it (`decimal_text_matches_display` checks that),
/// without the formatting machinery: the mantissa's digits (`itoa`, two at a time) with the
/// point put in, written straight into a string of the right size.
pub fn decimal_text(d: Decimal) -> String {
    let mut buffer = itoa::Buffer::new();
    let mantissa = d.mantissa().unsigned_abs();
    // Most mantissas fit 64 bits, whose division is far cheaper than 128 bits'.
    let digits = match u64::try_from(mantissa) {
        Ok(small) => buffer.format(small),
        Err(_) => buffer.format(mantissa),
    };
    let scale = d.scale() as usize;
    let mut out = String::with_capacity(digits.len().max(scale) + 3);
    if d.is_sign_negative() {
        out.push('-');
    }
    match digits.len().checked_sub(scale) {
        // Every digit after the point: "0.", zeros up to the scale, the digits.
        None | Some(0) => {
            out.push_str("0.");
            (digits.len()..scale).for_each(|_| out.push('0'));
            out.push_str(digits);
        }
        Some(whole) => {
            out.push_str(&digits[..whole]);
            if scale > 0 {
                out.push('.');
                out.push_str(&digits[whole..]);
            }
        }
    }
    out
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

    #[test]
    fn decimal_text_matches_display() {
        use proptest::prelude::*;
        let mut runner = proptest::test_runner::TestRunner::default();
        let wide = (
            any::<u32>(),
            any::<u32>(),
            any::<u32>(),
            any::<bool>(),
            0u32..=28,
        )
            .prop_map(|(lo, mid, hi, negative, scale)| {
                Decimal::from_parts(lo, mid, hi, negative, scale)
            });
        runner
            .run(&prop_oneof![any_decimal(), wide], |d| {
                proptest::prop_assert_eq!(decimal_text(d), d.to_string());
                Ok(())
            })
            .unwrap();
        for d in [
            Decimal::ZERO,
            -Decimal::ZERO,
            Decimal::MAX,
            Decimal::MIN,
            Decimal::new(-5, 28),
        ] {
            assert_eq!(decimal_text(d), d.to_string());
        }
    }

    #[test]
    fn plain_decimals_read_as_rust_decimal_does() {
        let mut runner = proptest::test_runner::TestRunner::default();
        let text = "-?[0-9]{0,12}(\\.[0-9]{0,10})?|[0-9 .+-]{0,6}";
        runner
            .run(&proptest::string::string_regex(text).unwrap(), |text| {
                if let Some(fast) = plain_decimal(&text) {
                    let reference = Decimal::from_str(&text);
                    proptest::prop_assert!(reference.is_ok(), "{text:?}");
                    let reference = reference.unwrap();
                    proptest::prop_assert_eq!(fast, reference);
                    proptest::prop_assert_eq!(fast.to_string(), reference.to_string());
                }
                Ok(())
            })
            .unwrap();
        for text in ["0", "-0.5", "007", "123456789012345678", "1.50", "0.000"] {
            assert_eq!(plain_decimal(text), Decimal::from_str(text).ok(), "{text}");
        }
        for text in ["-0", "1.", ".5", "+1", "1e3", "1234567890123456789", ""] {
            assert_eq!(plain_decimal(text), None, "{text}");
        }
    }

    fn any_decimal() -> impl proptest::strategy::Strategy<Value = Decimal> {
        use proptest::prelude::*;
        (any::<i64>(), 0u32..28).prop_map(|(n, scale)| Decimal::new(n, scale))
    }
}
