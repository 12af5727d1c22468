//! The functions of the expression language, with their arities and docs (the README's function
//! table is this list).

use std::borrow::Cow;

use chrono::{DateTime, NaiveDate, NaiveDateTime};
use rust_decimal::prelude::ToPrimitive;
use rust_decimal::{Decimal, RoundingStrategy};
use serde_json::Value;

use super::Span;
use super::eval::{EvalError, Scope, number};
use super::value::Val;

type Call = for<'a> fn(Vec<Val<'a>>, &Scope<'a>, Span) -> Result<Val<'a>, EvalError>;

pub struct Function {
    pub name: &'static str,
    pub min: usize,
    /// `None`: any number of arguments from `min` on.
    pub max: Option<usize>,
    pub signature: &'static str,
    pub doc: &'static str,
    pub call: Call,
}

impl std::fmt::Debug for Function {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name)
    }
}

impl Function {
    pub fn check_arity(&self, given: usize) -> Result<(), String> {
        let ok = given >= self.min && self.max.is_none_or(|max| given <= max);
        match ok {
            true => Ok(()),
            false => Err(format!(
                "{} takes {}, given {given}: {}",
                self.name,
                match self.max {
                    Some(max) if max == self.min => format!("{max} argument(s)"),
                    Some(max) => format!("{} to {max} arguments", self.min),
                    None => format!("at least {} argument(s)", self.min),
                },
                self.signature
            )),
        }
    }
}

pub fn find(name: &str) -> Option<&'static Function> {
    FUNCTIONS.iter().find(|f| f.name == name)
}

pub fn names() -> String {
    FUNCTIONS
        .iter()
        .map(|f| f.name)
        .collect::<Vec<_>>()
        .join(", ")
}

const fn function(
    name: &'static str,
    min: usize,
    max: Option<usize>,
    signature: &'static str,
    doc: &'static str,
    call: Call,
) -> Function {
    Function {
        name,
        min,
        max,
        signature,
        doc,
        call,
    }
}

pub static FUNCTIONS: &[Function] = &[
    function(
        "coalesce",
        1,
        None,
        "coalesce(a, b, …)",
        "the first argument that is neither null nor empty; later ones are not evaluated",
        special,
    ),
    function(
        "if",
        3,
        Some(3),
        "if(condition, then, else)",
        "`then` when the condition is true, else `else`; only the branch taken is evaluated",
        special,
    ),
    function(
        "trim",
        1,
        Some(1),
        "trim(text)",
        "text without leading and trailing white space",
        |a, _, s| map_text(a, s, |t| t.trim().to_owned()),
    ),
    function(
        "upper",
        1,
        Some(1),
        "upper(text)",
        "text in upper case",
        |a, _, s| map_text(a, s, |t| t.to_uppercase()),
    ),
    function(
        "lower",
        1,
        Some(1),
        "lower(text)",
        "text in lower case",
        |a, _, s| map_text(a, s, |t| t.to_lowercase()),
    ),
    function(
        "concat",
        1,
        None,
        "concat(a, b, …)",
        "the arguments as text, joined; null counts as empty",
        concat,
    ),
    function(
        "replace",
        3,
        Some(3),
        "replace(text, from, to)",
        "every `from` in text replaced by `to`",
        replace,
    ),
    function(
        "substring",
        2,
        Some(3),
        "substring(text, start, length?)",
        "characters from `start` (0-based), `length` of them or to the end",
        substring,
    ),
    function(
        "split",
        2,
        Some(2),
        "split(text, separator)",
        "a list of the parts of text",
        split,
    ),
    function(
        "join",
        2,
        Some(2),
        "join(list, separator)",
        "the list's elements as text, joined",
        join,
    ),
    function(
        "pad_left",
        2,
        Some(3),
        "pad_left(text, width, fill?)",
        "text padded on the left to `width` characters with `fill` (a space)",
        |a, _, s| pad(a, s, true),
    ),
    function(
        "pad_right",
        2,
        Some(3),
        "pad_right(text, width, fill?)",
        "text padded on the right to `width` characters with `fill` (a space)",
        |a, _, s| pad(a, s, false),
    ),
    function(
        "decimal",
        1,
        Some(1),
        "decimal(value)",
        "a number from a number or text (`\"1,5\"` is an error: use replace first); null stays null",
        decimal,
    ),
    function(
        "round",
        2,
        Some(2),
        "round(number, places)",
        "rounded to `places` decimals, halves away from zero; null stays null",
        round,
    ),
    function(
        "sum",
        1,
        Some(2),
        "sum(list, field?)",
        "the sum of the list's numbers, or of each element's `field`; an empty list is 0",
        sum,
    ),
    function(
        "len",
        1,
        Some(1),
        "len(value)",
        "characters in a text, elements in a list; 0 for null",
        len,
    ),
    function(
        "lookup",
        2,
        Some(3),
        "lookup(table, key, default?)",
        "the value for `key` in a table of mappings/lookups/, else `default` (or null)",
        lookup,
    ),
    function(
        "xref",
        2,
        Some(2),
        "xref(kind, crm_id)",
        "the ERP id of something already synced; an error (`missing_xref`) if it is not",
        xref,
    ),
    function(
        "date",
        3,
        Some(4),
        "date(value, from_format, to_format, time_zone?)",
        "a date or time re-formatted, shown in `time_zone` (an IANA name, UTC by default); formats are strftime (`%Y-%m-%d`) or `rfc3339`; times without an offset are UTC",
        date,
    ),
];

fn special<'a>(_: Vec<Val<'a>>, _: &Scope<'a>, span: Span) -> Result<Val<'a>, EvalError> {
    Err(EvalError::new(
        "bad_argument",
        "if and coalesce are evaluated by the evaluator itself",
        span,
    ))
}

/// A value as text: strings as they are, numbers and booleans written out; `None` for null.
fn text<'a>(value: Val<'a>, span: Span) -> Result<Option<Cow<'a, str>>, EvalError> {
    match value {
        Val::Null => Ok(None),
        Val::Str(s) => Ok(Some(s)),
        Val::Num(d) => Ok(Some(Cow::Owned(d.to_string()))),
        Val::Bool(b) => Ok(Some(Cow::Borrowed(if b { "true" } else { "false" }))),
        other => Err(EvalError::new(
            "type_mismatch",
            format!("expected text, found {} {}", other.kind(), other.preview()),
            span,
        )),
    }
}

fn whole(value: Val<'_>, span: Span) -> Result<usize, EvalError> {
    let n = number(value, span)?;
    n.fract()
        .is_zero()
        .then(|| n.to_usize())
        .flatten()
        .ok_or_else(|| {
            EvalError::new(
                "bad_argument",
                format!("expected a whole number of 0 or more, found {n}"),
                span,
            )
        })
}

fn map_text<'a>(
    args: Vec<Val<'a>>,
    span: Span,
    f: impl Fn(&str) -> String,
) -> Result<Val<'a>, EvalError> {
    let [value] = <[Val; 1]>::try_from(args).expect("arity checked");
    Ok(text(value, span)?.map_or(Val::Null, |t| Val::Str(Cow::Owned(f(&t)))))
}

fn concat<'a>(args: Vec<Val<'a>>, _: &Scope<'a>, span: Span) -> Result<Val<'a>, EvalError> {
    let mut out = String::new();
    for arg in args {
        if let Some(t) = text(arg, span)? {
            out.push_str(&t);
        }
    }
    Ok(Val::Str(Cow::Owned(out)))
}

fn replace<'a>(args: Vec<Val<'a>>, _: &Scope<'a>, span: Span) -> Result<Val<'a>, EvalError> {
    let [value, from, to] = <[Val; 3]>::try_from(args).expect("arity checked");
    let (from, to) = (
        text(from, span)?.unwrap_or_default(),
        text(to, span)?.unwrap_or_default(),
    );
    if from.is_empty() {
        return Err(EvalError::new(
            "bad_argument",
            "replace needs a non-empty `from`",
            span,
        ));
    }
    Ok(text(value, span)?.map_or(Val::Null, |t| {
        Val::Str(Cow::Owned(t.replace(from.as_ref(), &to)))
    }))
}

fn substring<'a>(args: Vec<Val<'a>>, _: &Scope<'a>, span: Span) -> Result<Val<'a>, EvalError> {
    let mut args = args.into_iter();
    let value = args.next().expect("arity checked");
    let start = whole(args.next().expect("arity checked"), span)?;
    let length = args.next().map(|v| whole(v, span)).transpose()?;
    Ok(text(value, span)?.map_or(Val::Null, |t| {
        let chars = t.chars().skip(start);
        Val::Str(Cow::Owned(match length {
            Some(n) => chars.take(n).collect(),
            None => chars.collect(),
        }))
    }))
}

fn split<'a>(args: Vec<Val<'a>>, _: &Scope<'a>, span: Span) -> Result<Val<'a>, EvalError> {
    let [value, separator] = <[Val; 2]>::try_from(args).expect("arity checked");
    let separator = text(separator, span)?.unwrap_or_default();
    if separator.is_empty() {
        return Err(EvalError::new(
            "bad_argument",
            "split needs a non-empty separator",
            span,
        ));
    }
    Ok(text(value, span)?.map_or(Val::Null, |t| {
        Val::List(
            t.split(separator.as_ref())
                .map(|part| Val::Str(Cow::Owned(part.to_owned())))
                .collect(),
        )
    }))
}

fn list<'a>(value: &Val<'a>, span: Span) -> Result<Vec<Val<'a>>, EvalError> {
    match value {
        Val::Null => Ok(Vec::new()),
        other => other.items().ok_or_else(|| {
            EvalError::new(
                "type_mismatch",
                format!(
                    "expected a list, found {} {}",
                    other.kind(),
                    other.preview()
                ),
                span,
            )
        }),
    }
}

fn join<'a>(args: Vec<Val<'a>>, _: &Scope<'a>, span: Span) -> Result<Val<'a>, EvalError> {
    let [items, separator] = <[Val; 2]>::try_from(args).expect("arity checked");
    let separator = text(separator, span)?.unwrap_or_default();
    let parts = list(&items, span)?
        .into_iter()
        .map(|item| text(item, span).map(Option::unwrap_or_default))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Val::Str(Cow::Owned(parts.join(&separator))))
}

fn pad<'a>(args: Vec<Val<'a>>, span: Span, left: bool) -> Result<Val<'a>, EvalError> {
    let mut args = args.into_iter();
    let value = args.next().expect("arity checked");
    let width = whole(args.next().expect("arity checked"), span)?;
    let fill = match args.next() {
        Some(v) => text(v, span)?
            .unwrap_or_default()
            .chars()
            .next()
            .unwrap_or(' '),
        None => ' ',
    };
    Ok(text(value, span)?.map_or(Val::Null, |t| {
        let missing = width.saturating_sub(t.chars().count());
        let padding: String = std::iter::repeat_n(fill, missing).collect();
        Val::Str(Cow::Owned(if left {
            padding + &t
        } else {
            t.into_owned() + &padding
        }))
    }))
}

fn decimal<'a>(args: Vec<Val<'a>>, _: &Scope<'a>, span: Span) -> Result<Val<'a>, EvalError> {
    let [value] = <[Val; 1]>::try_from(args).expect("arity checked");
    match value {
        Val::Null => Ok(Val::Null),
        other => Ok(Val::Num(number(other, span)?)),
    }
}

fn round<'a>(args: Vec<Val<'a>>, _: &Scope<'a>, span: Span) -> Result<Val<'a>, EvalError> {
    let [value, places] = <[Val; 2]>::try_from(args).expect("arity checked");
    let places = u32::try_from(whole(places, span)?)
        .ok()
        .filter(|p| *p <= 28)
        .ok_or_else(|| EvalError::new("bad_argument", "round takes 0 to 28 places", span))?;
    if value.is_null() {
        return Ok(Val::Null);
    }
    let value = number(value, span)?;
    let mut rounded = value.round_dp_with_strategy(places, RoundingStrategy::MidpointAwayFromZero);
    rounded.rescale(places);
    Ok(Val::Num(rounded))
}

fn sum<'a>(args: Vec<Val<'a>>, _: &Scope<'a>, span: Span) -> Result<Val<'a>, EvalError> {
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

fn len<'a>(args: Vec<Val<'a>>, _: &Scope<'a>, span: Span) -> Result<Val<'a>, EvalError> {
    let [value] = <[Val; 1]>::try_from(args).expect("arity checked");
    let n = match &value {
        Val::Null => 0,
        Val::Str(s) => s.chars().count(),
        other => list(other, span)?.len(),
    };
    Ok(Val::Num(Decimal::from(n)))
}

fn lookup<'a>(args: Vec<Val<'a>>, scope: &Scope<'a>, span: Span) -> Result<Val<'a>, EvalError> {
    let mut args = args.into_iter();
    let table = text(args.next().expect("arity checked"), span)?.unwrap_or_default();
    let key = text(args.next().expect("arity checked"), span)?;
    let default = args.next().unwrap_or(Val::Null);
    let rows = scope.lookups.get(table.as_ref()).ok_or_else(|| {
        EvalError::new(
            "unknown_lookup",
            format!("no lookup table named {table:?}"),
            span,
        )
    })?;
    Ok(key
        .and_then(|key| rows.get(key.as_ref()))
        .map_or(default, Val::from_json))
}

fn xref<'a>(args: Vec<Val<'a>>, scope: &Scope<'a>, span: Span) -> Result<Val<'a>, EvalError> {
    let [kind, id] = <[Val; 2]>::try_from(args).expect("arity checked");
    let kind = text(kind, span)?.unwrap_or_default();
    let Some(id) = text(id, span)? else {
        return Ok(Val::Null);
    };
    scope
        .xrefs
        .get(kind.as_ref())
        .and_then(|ids| ids.get(id.as_ref()))
        .map(|erp| Val::Str(Cow::Borrowed(erp.as_str())))
        .ok_or_else(|| {
            EvalError::new(
                "missing_xref",
                format!("no {kind} synced yet for CRM id {id:?}"),
                span,
            )
        })
}

fn date<'a>(args: Vec<Val<'a>>, _: &Scope<'a>, span: Span) -> Result<Val<'a>, EvalError> {
    let mut args = args.into_iter();
    let value = args.next().expect("arity checked");
    let from = text(args.next().expect("arity checked"), span)?.unwrap_or_default();
    let to = text(args.next().expect("arity checked"), span)?.unwrap_or_default();
    let zone = match args.next().map(|z| text(z, span)).transpose()?.flatten() {
        Some(name) => name.parse::<chrono_tz::Tz>().map_err(|_| {
            EvalError::new(
                "bad_argument",
                format!("{name:?} is not a time zone (use e.g. Europe/Paris)"),
                span,
            )
        })?,
        None => chrono_tz::UTC,
    };
    let Some(value) = text(value, span)? else {
        return Ok(Val::Null);
    };
    let bad = || {
        EvalError::new(
            "bad_date",
            format!("{value:?} does not match the date format {from:?}"),
            span,
        )
    };
    // Times without an offset are taken as UTC.
    let instant: DateTime<chrono::Utc> = if from == "rfc3339" {
        DateTime::parse_from_rfc3339(&value)
            .map_err(|_| bad())?
            .to_utc()
    } else {
        DateTime::parse_from_str(&value, &from)
            .map(|t| t.to_utc())
            .or_else(|_| NaiveDateTime::parse_from_str(&value, &from).map(|t| t.and_utc()))
            .or_else(|_| {
                NaiveDate::parse_from_str(&value, &from)
                    .map(|d| d.and_time(Default::default()).and_utc())
            })
            .map_err(|_| bad())?
    };
    let local = instant.with_timezone(&zone);
    let out = if to == "rfc3339" {
        local.to_rfc3339()
    } else {
        let mut out = String::new();
        use std::fmt::Write;
        write!(out, "{}", local.format(&to)).map_err(|_| {
            EvalError::new("bad_argument", format!("{to:?} is not a date format"), span)
        })?;
        out
    };
    Ok(Val::Str(Cow::Owned(out)))
}
