//! The functions of the expression language, with their arities and docs (the README's function
//! table is this list). Implementations: `text.rs`, `number.rs`, `context.rs`, `date.rs`.

use std::borrow::Cow;

mod context;
mod date;
mod number;
mod prepared;
mod text;

pub use prepared::{Prepared, Unary, prepare};

use rust_decimal::prelude::ToPrimitive;

use super::Span;
use super::eval::{EvalError, Scope, number};
use super::value::Val;

/// A call's evaluated arguments; up to four stay on the stack.
pub type Args<'a> = smallvec::SmallVec<[Val<'a>; 4]>;

type Call = for<'a> fn(Args<'a>, &Scope<'a>, Span) -> Result<Val<'a>, EvalError>;

/// The `N` arguments of a call whose arity the parser checked.
pub(super) fn take<'a, const N: usize>(args: Args<'a>) -> [Val<'a>; N] {
    let mut args = args.into_iter();
    std::array::from_fn(|_| args.next().expect("arity checked"))
}

/// The one argument of a call whose arity the parser checked.
fn first(args: Args<'_>) -> Val<'_> {
    let [value] = take::<1>(args);
    value
}

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
        |a, _, s| Unary::Trim.apply(first(a), s),
    ),
    function(
        "upper",
        1,
        Some(1),
        "upper(text)",
        "text in upper case",
        |a, _, s| Unary::Upper.apply(first(a), s),
    ),
    function(
        "lower",
        1,
        Some(1),
        "lower(text)",
        "text in lower case",
        |a, _, s| Unary::Lower.apply(first(a), s),
    ),
    function(
        "concat",
        1,
        None,
        "concat(a, b, …)",
        "the arguments as text, joined; null counts as empty",
        text::concat,
    ),
    function(
        "replace",
        3,
        Some(3),
        "replace(text, from, to)",
        "every `from` in text replaced by `to`",
        text::replace,
    ),
    function(
        "substring",
        2,
        Some(3),
        "substring(text, start, length?)",
        "characters from `start` (0-based), `length` of them or to the end",
        text::substring,
    ),
    function(
        "split",
        2,
        Some(2),
        "split(text, separator)",
        "a list of the parts of text",
        text::split,
    ),
    function(
        "join",
        2,
        Some(2),
        "join(list, separator)",
        "the list's elements as text, joined",
        text::join,
    ),
    function(
        "pad_left",
        2,
        Some(3),
        "pad_left(text, width, fill?)",
        "text padded on the left to `width` characters with `fill` (a space)",
        |a, _, s| text::pad(a, s, true),
    ),
    function(
        "pad_right",
        2,
        Some(3),
        "pad_right(text, width, fill?)",
        "text padded on the right to `width` characters with `fill` (a space)",
        |a, _, s| text::pad(a, s, false),
    ),
    function(
        "decimal",
        1,
        Some(1),
        "decimal(value)",
        "a number from a number or text (`\"1,5\"` is an error: use replace first); null stays null",
        |a, _, s| Unary::Decimal.apply(first(a), s),
    ),
    function(
        "round",
        2,
        Some(3),
        "round(number, places, mode?)",
        "rounded to `places` decimals; `mode` is `half_up` (default: halves away from zero, as most CRMs) or `half_even` (halves to the even digit, as Tryton and banker's rounding); null stays null",
        number::round,
    ),
    function(
        "sum",
        1,
        Some(2),
        "sum(list, field?)",
        "the sum of the list's numbers, or of each element's `field`; an empty list is 0",
        number::sum,
    ),
    function(
        "len",
        1,
        Some(1),
        "len(value)",
        "characters in a text, elements in a list; 0 for null",
        number::len,
    ),
    function(
        "lookup",
        2,
        Some(3),
        "lookup(table, key, default?)",
        "the value for `key` in a table of mappings/lookups/, else `default` (or null)",
        context::lookup,
    ),
    function(
        "xref",
        2,
        Some(2),
        "xref(kind, crm_id)",
        "the ERP id of something already synced; an error (`missing_xref`) if it is not",
        context::xref,
    ),
    function(
        "date",
        3,
        Some(4),
        "date(value, from_format, to_format, time_zone?)",
        "a date or time re-formatted, shown in `time_zone` (an IANA name, UTC by default); formats are strftime (`%Y-%m-%d`) or `rfc3339`; times without an offset are UTC",
        date::date,
    ),
];

fn special<'a>(_: Args<'a>, _: &Scope<'a>, span: Span) -> Result<Val<'a>, EvalError> {
    Err(EvalError::new(
        "bad_argument",
        "if and coalesce are evaluated by the evaluator itself",
        span,
    ))
}

/// A value as text: strings as they are, numbers and booleans written out; `None` for null.
pub(super) fn text<'a>(value: Val<'a>, span: Span) -> Result<Option<Cow<'a, str>>, EvalError> {
    match value {
        Val::Null => Ok(None),
        Val::Str(s) => Ok(Some(s)),
        Val::Num(d) => Ok(Some(Cow::Owned(super::value::decimal_text(d)))),
        Val::Bool(b) => Ok(Some(Cow::Borrowed(if b { "true" } else { "false" }))),
        other => Err(not_text(&other, span)),
    }
}

#[cold]
fn not_text(value: &Val<'_>, span: Span) -> EvalError {
    EvalError::new(
        "type_mismatch",
        format!("expected text, found {} {}", value.kind(), value.preview()),
        span,
    )
}

pub(super) fn whole(value: Val<'_>, span: Span) -> Result<usize, EvalError> {
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

pub(super) fn list<'a>(value: &Val<'a>, span: Span) -> Result<Vec<Val<'a>>, EvalError> {
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
