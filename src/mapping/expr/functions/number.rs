//! Number functions: decimal, round, sum, len. Decimals only, never floats.

use super::super::Span;
use super::super::eval::{EvalError, Scope, number};
use super::super::value::Val;
use super::{Args, take};
use super::{list, text, whole};

use rust_decimal::{Decimal, RoundingStrategy};
use serde_json::Value;

pub fn decimal<'a>(args: Args<'a>, _: &Scope<'a>, span: Span) -> Result<Val<'a>, EvalError> {
    let [value] = take::<1>(args);
    match value {
        Val::Null => Ok(Val::Null),
        other => Ok(Val::Num(number(other, span)?)),
    }
}

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
    let value = number(value, span)?;
    let mut rounded = value.round_dp_with_strategy(places, strategy);
    rounded.rescale(places);
    Ok(Val::Num(rounded))
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
