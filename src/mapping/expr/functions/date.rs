//! Dates and times: parse with one format, print with another, in a time zone.

use std::borrow::Cow;

use super::super::Span;
use super::super::eval::{EvalError, Scope};
use super::super::value::Val;
use super::Args;
use super::text;

use chrono::{DateTime, NaiveDate, NaiveDateTime};

pub fn date<'a>(args: Args<'a>, _: &Scope<'a>, span: Span) -> Result<Val<'a>, EvalError> {
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
