//! Number functions: decimal, round, sum, len. Decimals only, never floats.

use super::super::Span;
use super::super::eval::{EvalError, Scope, number};
use super::super::value::Val;
use super::{Args, take};
use super::{list, text, whole};

use rust_decimal::{Decimal, RoundingStrategy};
use serde_json::Value;

pub fn round<'a>(args: Args<'a>, _: &Scope<'a>, span: Span) -> Result<Val<'a>, EvalError> {
    let mut args = args.into_iter();
    let (value, places) = (args.next().expect("arity"), args.next().expect("arity"));
    let places = u32::try_from(whole(places, span)?)
        .ok()
        .filter(|p| *p <= 28)
        .ok_or_else(|| EvalError::new("bad_argument", "round takes 0 to 28 places", span))?;
    let strategy = match args
        .next()
        .map(|mode| text(mode, span))
        .transpose()?
        .flatten()
    {
        None => RoundingStrategy::MidpointAwayFromZero,
        Some(mode) if mode == "half_up" => RoundingStrategy::MidpointAwayFromZero,
        Some(mode) if mode == "half_even" => RoundingStrategy::MidpointNearestEven,
        Some(mode) => {
            return Err(EvalError::new(
                "bad_argument",
                format!("round's mode is 'half_up' or 'half_even', not {mode:?}"),
                span,
            ));
        }
    };
    if value.is_null() {
        return Ok(Val::Null);
    }
    Ok(Val::Num(round_to(number(value, span)?, places, strategy)))
}

/// `value` rounded to `places` digits after the point, and written with exactly that many.
/// Most money already has that many digits or a few more, so this divides the mantissa once
/// (in `i128`, which holds every mantissa and every power of ten up to 10^28) instead of taking
/// `rust_decimal`'s general path; the property test below holds it to that path.
pub(super) fn round_to(value: Decimal, places: u32, strategy: RoundingStrategy) -> Decimal {
    let mut rounded = if value.scale() <= places {
        value
    } else {
        let divisor = 10i128.pow(value.scale() - places);
        let mantissa = value.mantissa();
        let away = mantissa.signum();
        let (quotient, remainder) = (mantissa / divisor, (mantissa % divisor).abs());
        let up = match (2 * remainder).cmp(&divisor) {
            std::cmp::Ordering::Greater => true,
            std::cmp::Ordering::Equal => {
                strategy == RoundingStrategy::MidpointAwayFromZero || quotient % 2 != 0
            }
            std::cmp::Ordering::Less => false,
        };
        let mut result =
            Decimal::from_i128_with_scale(quotient + if up { away } else { 0 }, places);
        result.set_sign_negative(value.is_sign_negative() && !result.is_zero());
        result
    };
    rounded.rescale(places);
    rounded
}

pub fn sum<'a>(args: Args<'a>, _: &Scope<'a>, span: Span) -> Result<Val<'a>, EvalError> {
    let mut args = args.into_iter();
    let items = list(&args.next().expect("arity checked"), span)?;
    let field = args.next().map(|f| text(f, span)).transpose()?.flatten();
    let mut total = Decimal::ZERO;
    for item in items {
        let value = match (&field, item) {
            (Some(field), Val::Json(Value::Object(map))) => {
                map.get(field.as_ref()).map_or(Val::Null, Val::from_json)
            }
            (Some(_), other) => {
                return Err(EvalError::new(
                    "type_mismatch",
                    format!("sum by field needs objects, found {}", other.preview()),
                    span,
                ));
            }
            (None, value) => value,
        };
        total = total
            .checked_add(number(value, span)?)
            .ok_or_else(|| EvalError::new("not_a_number", "the sum is too large", span))?;
    }
    Ok(Val::Num(total))
}

pub fn len<'a>(args: Args<'a>, _: &Scope<'a>, span: Span) -> Result<Val<'a>, EvalError> {
    let [value] = take::<1>(args);
    let n = match &value {
        Val::Null => 0,
        Val::Str(s) => s.chars().count(),
        other => list(other, span)?.len(),
    };
    Ok(Val::Num(Decimal::from(n)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn mode(even: bool) -> RoundingStrategy {
        if even {
            RoundingStrategy::MidpointNearestEven
        } else {
            RoundingStrategy::MidpointAwayFromZero
        }
    }

    proptest! {
        #[test]
        fn round_to_agrees_with_rust_decimal(
            mantissa in any::<i64>(),
            scale in 0u32..=28,
            places in 0u32..=28,
            even in any::<bool>(),
        ) {
            let value = Decimal::from_i128_with_scale(i128::from(mantissa), scale);
            let strategy = mode(even);
            let mut expected = value.round_dp_with_strategy(places, strategy);
            expected.rescale(places);
            let got = round_to(value, places, strategy);
            prop_assert_eq!(got.to_string(), expected.to_string());
            prop_assert_eq!(got.scale(), expected.scale());
        }
    }

    #[test]
    fn round_to_halves_by_mode() {
        let cases = [
            ("2.345", 2, false, "2.35"),
            ("2.345", 2, true, "2.34"),
            ("-2.345", 2, false, "-2.35"),
            ("-2.355", 2, true, "-2.36"),
            ("-0.004", 2, false, "0.00"),
            ("19.49", 2, false, "19.49"),
            ("7", 2, false, "7.00"),
        ];
        for (value, places, even, expected) in cases {
            let strategy = mode(even);
            let value: Decimal = value.parse().unwrap();
            assert_eq!(round_to(value, places, strategy).to_string(), expected);
        }
    }
}
