//! Text functions: trim, upper, lower, concat, replace, substring, split, join, pad.

use std::borrow::Cow;

use super::super::Span;
use super::super::eval::{EvalError, Scope};
use super::super::value::Val;
use super::{Args, take};
use super::{list, text, whole};

pub fn concat<'a>(args: Args<'a>, _: &Scope<'a>, span: Span) -> Result<Val<'a>, EvalError> {
    let mut out = String::new();
    for arg in args {
        if let Some(t) = text(arg, span)? {
            out.push_str(&t);
        }
    }
    Ok(Val::Str(Cow::Owned(out)))
}

pub fn replace<'a>(args: Args<'a>, _: &Scope<'a>, span: Span) -> Result<Val<'a>, EvalError> {
    let [value, from, to] = take::<3>(args);
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

pub fn substring<'a>(args: Args<'a>, _: &Scope<'a>, span: Span) -> Result<Val<'a>, EvalError> {
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

pub fn split<'a>(args: Args<'a>, _: &Scope<'a>, span: Span) -> Result<Val<'a>, EvalError> {
    let [value, separator] = take::<2>(args);
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

pub fn join<'a>(args: Args<'a>, _: &Scope<'a>, span: Span) -> Result<Val<'a>, EvalError> {
    let [items, separator] = take::<2>(args);
    let separator = text(separator, span)?.unwrap_or_default();
    let parts = list(&items, span)?
        .into_iter()
        .map(|item| text(item, span).map(Option::unwrap_or_default))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Val::Str(Cow::Owned(parts.join(&separator))))
}

pub fn pad<'a>(args: Args<'a>, span: Span, left: bool) -> Result<Val<'a>, EvalError> {
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
