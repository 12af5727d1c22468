//! Dates and times: parse with one format, print with another, in a time zone. Formats given
//! as literals are read once, when the expression is parsed (`Formats`, used by
//! `prepared.rs`); others on each call.

use std::borrow::Cow;

use super::super::Span;
use super::super::eval::{EvalError, Scope};
use super::super::value::Val;
use super::Args;
use super::text;

use chrono::format::{Item, Parsed, StrftimeItems};
use chrono::{DateTime, Utc};

pub fn date<'a>(args: Args<'a>, _: &Scope<'a>, span: Span) -> Result<Val<'a>, EvalError> {
    let mut args = args.into_iter();
    let value = args.next().expect("arity checked");
    let from = text(args.next().expect("arity checked"), span)?.unwrap_or_default();
    let to = text(args.next().expect("arity checked"), span)?.unwrap_or_default();
    let zone = args.next().map(|z| text(z, span)).transpose()?.flatten();
    let zone = time_zone(zone.as_deref())
        .map_err(|message| EvalError::new("bad_argument", message, span))?;
    Formats::new(&from, &to, zone).reformat(value, span)
}

/// A time zone by IANA name; UTC without one.
pub fn time_zone(name: Option<&str>) -> Result<chrono_tz::Tz, String> {
    match name {
        Some(name) => name
            .parse::<chrono_tz::Tz>()
            .map_err(|_| format!("{name:?} is not a time zone (use e.g. Europe/Paris)")),
        None => Ok(chrono_tz::UTC),
    }
}

/// `date`'s formats, each read once, and its time zone.
#[derive(Clone)]
pub struct Formats {
    from: (String, Format),
    to: (String, Format),
    zone: chrono_tz::Tz,
}

impl std::fmt::Debug for Formats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Formats({})", self.key())
    }
}

/// A format: `rfc3339`, strftime items, or text that is not a format (every use fails, as
/// parsing or printing with it does).
#[derive(Clone)]
enum Format {
    Rfc3339,
    Items(Vec<Item<'static>>),
    Invalid,
}

impl Format {
    fn new(text: &str) -> Format {
        match text {
            "rfc3339" => Format::Rfc3339,
            _ => StrftimeItems::new(text)
                .parse_to_owned()
                .map_or(Format::Invalid, Format::Items),
        }
    }
}

impl Formats {
    pub fn new(from: &str, to: &str, zone: chrono_tz::Tz) -> Formats {
        Formats {
            from: (from.to_owned(), Format::new(from)),
            to: (to.to_owned(), Format::new(to)),
            zone,
        }
    }

    /// What tells two of them apart (for `Expr::shape`).
    pub fn key(&self) -> String {
        format!("{:?}{:?}{}", self.from.0, self.to.0, self.zone.name())
    }

    /// The `from` and `to` formats and the zone's name, as written.
    #[cfg(test)]
    pub fn texts(&self) -> [&str; 3] {
        [&self.from.0, &self.to.0, self.zone.name()]
    }

    /// `value` read with the `from` format and written with the `to` format in the zone;
    /// null stays null.
    pub fn reformat<'a>(&self, value: Val<'a>, span: Span) -> Result<Val<'a>, EvalError> {
        let Some(value) = text(value, span)? else {
            return Ok(Val::Null);
        };
        let bad = || {
            EvalError::new(
                "bad_date",
                format!("{value:?} does not match the date format {:?}", self.from.0),
                span,
            )
        };
        let instant = match &self.from.1 {
            Format::Rfc3339 => DateTime::parse_from_rfc3339(&value)
                .map_err(|_| bad())?
                .to_utc(),
            Format::Items(items) => instant(&value, items).ok_or_else(bad)?,
            Format::Invalid => return Err(bad()),
        };
        let local = instant.with_timezone(&self.zone);
        let not_a_format = || {
            EvalError::new(
                "bad_argument",
                format!("{:?} is not a date format", self.to.0),
                span,
            )
        };
        let out = match &self.to.1 {
            Format::Rfc3339 => local.to_rfc3339(),
            Format::Items(items) => {
                use std::fmt::Write;
                let mut out = String::new();
                write!(out, "{}", local.format_with_items(items.iter()))
                    .map_err(|_| not_a_format())?;
                out
            }
            Format::Invalid => return Err(not_a_format()),
        };
        Ok(Val::Str(Cow::Owned(out)))
    }
}

/// The instant `value` names in a format: with its offset, else a time taken as UTC, else a
/// date at midnight UTC (what chrono's `DateTime`, `NaiveDateTime` and `NaiveDate`
/// `parse_from_str` give in turn, from one parse instead of three).
fn instant(value: &str, items: &[Item<'static>]) -> Option<DateTime<Utc>> {
    let mut parsed = Parsed::new();
    chrono::format::parse(&mut parsed, value, items.iter()).ok()?;
    parsed
        .to_datetime()
        .map(|t| t.to_utc())
        .or_else(|_| parsed.to_naive_datetime_with_offset(0).map(|t| t.and_utc()))
        .or_else(|_| {
            parsed
                .to_naive_date()
                .map(|d| d.and_time(Default::default()).and_utc())
        })
        .ok()
}

#[cfg(test)]
mod tests {
    use chrono::{NaiveDate, NaiveDateTime};
    use proptest::prelude::*;

    use super::*;

    /// How an instant was read before formats were read once: three parses.
    fn three_parses(value: &str, format: &str) -> Option<DateTime<Utc>> {
        DateTime::parse_from_str(value, format)
            .map(|t| t.to_utc())
            .or_else(|_| NaiveDateTime::parse_from_str(value, format).map(|t| t.and_utc()))
            .or_else(|_| {
                NaiveDate::parse_from_str(value, format)
                    .map(|d| d.and_time(Default::default()).and_utc())
            })
            .ok()
    }

    const FORMATS: &[&str] = &[
        "%Y-%m-%d",
        "%d/%m/%Y",
        "%Y-%m-%d %H:%M",
        "%Y-%m-%dT%H:%M:%S%z",
        "%Y-%m-%dT%H:%M:%S%:z",
        "%Y-%m-%d %H:%M:%S",
        "%s",
        "%Y",
        "%Q",
    ];

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn one_parse_reads_what_three_parses_read(
            format in 0..FORMATS.len(),
            value in prop_oneof![
                "20[0-9]{2}-[01][0-9]-[0-3][0-9]( [0-2][0-9]:[0-5][0-9](:[0-5][0-9])?)?",
                "20[0-9]{2}-[01][0-9]-[0-3][0-9]T[0-2][0-9]:[0-5][0-9]:[0-5][0-9]([+-]0[0-9]:?00)?",
                "[0-3][0-9]/[01][0-9]/20[0-9]{2}",
                "1[0-9]{9}",
                "[ a-z0-9:/-]{0,12}",
            ],
        ) {
            let format = FORMATS[format];
            let Format::Items(items) = Format::new(format) else {
                prop_assert!(three_parses(&value, format).is_none());
                return Ok(());
            };
            prop_assert_eq!(instant(&value, &items), three_parses(&value, format), "{:?} as {}", value, format);
        }
    }
}
