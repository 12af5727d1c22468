//! Evaluation: pure, over borrowed JSON; errors name the offending text and value.

use std::borrow::Cow;
use std::collections::HashMap;

use rust_decimal::Decimal;
use serde_json::{Map, Value};
use thiserror::Error;

use super::Span;
use super::parser::{BinOp, Expr, Node, Step};
use super::value::Val;

/// What an expression can see. Lookups and cross-references are data here: the mapping does no
/// I/O, its caller fetched them.
#[derive(Debug, Clone, Copy)]
pub struct Scope<'a> {
    /// `$`: the event's data.
    pub root: &'a Value,
    /// `item`: the current element inside `lines`.
    pub item: Option<&'a Value>,
    /// Lookup tables by name: key → value.
    pub lookups: &'a HashMap<String, Map<String, Value>>,
    /// Cross-references by kind: CRM id → ERP id.
    pub xrefs: &'a HashMap<String, HashMap<String, String>>,
    /// The values of this scope's shared sub-expressions (`Node::Memo`); without it each is
    /// evaluated where it occurs.
    pub memo: Option<&'a super::Memo<'a>>,
    /// The members of `$`'s table and of the line's (slots.rs), by position; empty where not
    /// filled, and then each path is walked.
    pub root_slots: &'a [Option<&'a Value>],
    pub item_slots: &'a [Option<&'a Value>],
}

/// A run-time error: the data does not fit the rule. Never retried; it names the span of the
/// rule's text and the value found. Boxed, so that every evaluation's `Result` stays the size
/// of a value (errors are rare; results are moved on every step).
#[derive(Debug, Clone, Error, PartialEq, Eq)]
#[error("{}", .0.message)]
pub struct EvalError(Box<Fault>);

/// What an [`EvalError`] says (its fields read through the error).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    /// A stable reason: `type_mismatch`, `not_a_number`, `division_by_zero`, `unknown_lookup`,
    /// `missing_xref`, `bad_date`, `bad_argument`.
    pub code: &'static str,
    pub message: String,
    pub span: Span,
}

impl std::ops::Deref for EvalError {
    type Target = Fault;

    fn deref(&self) -> &Fault {
        &self.0
    }
}

impl EvalError {
    #[cold] // errors are rare: kept out of the evaluator's frames
    pub fn new(code: &'static str, message: impl Into<String>, span: Span) -> Self {
        EvalError(Box::new(Fault {
            code,
            message: message.into(),
            span,
        }))
    }

    /// Its message, without copying it.
    pub fn into_message(self) -> String {
        self.0.message
    }
}

impl Expr {
    /// Each arm that ends in a call returns that call's result as it is (no `?` and wrapping
    /// again): a result is a value's size, and unwrapping and rewrapping copied it twice on
    /// every step.
    pub fn eval<'a>(&'a self, scope: &Scope<'a>) -> Result<Val<'a>, EvalError> {
        let span = self.span;
        match &self.node {
            Node::Prepared(call) => call.eval(scope, span),
            Node::Slot(slot) => match slot_member(slot, scope) {
                Some(member) => Ok(walk(member, &slot.rest)),
                None => slot.path.eval(scope),
            },
            Node::Memo(slot, inner) => match scope.memo {
                Some(memo) => match memo.get(*slot) {
                    Some(value) => Ok(value),
                    None => {
                        let value = inner.eval(scope)?;
                        memo.set(*slot, value.duplicate());
                        Ok(value)
                    }
                },
                None => inner.eval(scope),
            },
            Node::Binary(op, left, right) => binary(*op, left, right, scope, span),
            Node::Null => Ok(Val::Null),
            Node::Bool(b) => Ok(Val::Bool(*b)),
            Node::Num(d) => Ok(Val::Num(*d)),
            Node::Str(s) => Ok(Val::Str(Cow::Borrowed(s))),
            Node::Root => Ok(Val::from_json(scope.root)),
            Node::Item => Ok(match scope.item {
                Some(item) => Val::from_json(item),
                None => Val::Null,
            }),
            Node::Path(base, steps) => match &base.node {
                // The common case: straight down the event (or the line) without a value per step.
                Node::Root => Ok(walk(Some(scope.root), steps)),
                Node::Item => Ok(walk(scope.item, steps)),
                _ => Ok(match base.eval(scope)? {
                    Val::Json(value) => walk(Some(value), steps),
                    Val::List(mut items) => match steps.split_first() {
                        Some((Step::Index(n), rest)) if *n < items.len() => {
                            match (items.swap_remove(*n), rest.is_empty()) {
                                (value, true) => value,
                                (Val::Json(value), false) => walk(Some(value), rest),
                                _ => Val::Null,
                            }
                        }
                        _ => Val::Null,
                    },
                    _ => Val::Null,
                }),
            },
            Node::Call(function, args) => {
                let mut values = super::functions::Args::new();
                for arg in args {
                    values.push(arg.eval(scope)?);
                }
                (function.call)(values, scope, span)
            }
            Node::If(parts) => {
                let [cond, then, otherwise] = parts.as_ref();
                if truthy(&cond.eval(scope)?, cond.span)? {
                    then.eval(scope)
                } else {
                    otherwise.eval(scope)
                }
            }
            Node::Coalesce(args) => {
                for arg in args {
                    let value = arg.eval(scope)?;
                    if !matches!(&value, Val::Null)
                        && !matches!(&value, Val::Str(s) if s.is_empty())
                    {
                        return Ok(value);
                    }
                }
                Ok(Val::Null)
            }
            Node::Neg(inner) => Ok(Val::Num(-number(inner.eval(scope)?, inner.span)?)),
            Node::Not(inner) => Ok(Val::Bool(!truthy(&inner.eval(scope)?, inner.span)?)),
        }
    }
}

impl Expr {
    /// [`Expr::eval`], with the read of a filled slot (the commonest argument: `decimal(item.
    /// Quantity)`) done where it is called instead of in a call of its own.
    #[inline(always)]
    pub fn eval_arg<'a>(&'a self, scope: &Scope<'a>) -> Result<Val<'a>, EvalError> {
        if let Node::Slot(slot) = &self.node
            && let Some(member) = slot_member(slot, scope)
        {
            return Ok(walk(member, &slot.rest));
        }
        self.eval(scope)
    }
}

/// A slot's member as its scope's filled table holds it (itself `None` when the event has
/// no such member); `None` where the table is not filled (the path is then walked).
#[inline(always)]
fn slot_member<'a>(slot: &super::slots::Slot, scope: &Scope<'a>) -> Option<Option<&'a Value>> {
    let table = match slot.item {
        true => scope.item_slots,
        false => scope.root_slots,
    };
    table.get(slot.index).copied()
}

/// Follows `steps` down from `value`; a step that leads nowhere is `null`.
fn walk<'a>(value: Option<&'a Value>, steps: &'a [Step]) -> Val<'a> {
    let mut at = value;
    for step in steps {
        at = match (at, step) {
            (Some(Value::Object(map)), Step::Field(name)) => member(map, name),
            (Some(Value::Array(items)), Step::Index(n)) => items.get(*n),
            _ => None,
        };
    }
    // Not `map_or(Val::Null, …)`: its default is built, and dropped, on every call.
    match at {
        Some(value) => Val::from_json(value),
        None => Val::Null,
    }
}

/// A member of an object. Events' objects are small: a scan that compares lengths before
/// bytes is cheaper than the map's ordered search, which compares bytes at every step.
fn member<'a>(map: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    if map.len() > 12 {
        return map.get(name);
    }
    map.iter()
        .find(|(key, _)| key.len() == name.len() && key.as_str() == name)
        .map(|(_, value)| value)
}

fn binary<'a>(
    op: BinOp,
    left: &'a Expr,
    right: &'a Expr,
    scope: &Scope<'a>,
    span: Span,
) -> Result<Val<'a>, EvalError> {
    match op {
        BinOp::And => {
            let l = truthy(&left.eval(scope)?, left.span)?;
            return Ok(Val::Bool(l && truthy(&right.eval(scope)?, right.span)?));
        }
        BinOp::Or => {
            let l = truthy(&left.eval(scope)?, left.span)?;
            return Ok(Val::Bool(l || truthy(&right.eval(scope)?, right.span)?));
        }
        _ => {}
    }
    let (l, r) = (left.eval_arg(scope)?, right.eval_arg(scope)?);
    Ok(match op {
        BinOp::Eq => Val::Bool(equal(&l, &r, span)?),
        BinOp::Ne => Val::Bool(!equal(&l, &r, span)?),
        BinOp::Lt | BinOp::Le | BinOp::Gt | BinOp::Ge => {
            let ordering = match (&l, &r) {
                (Val::Num(a), Val::Num(b)) => a.cmp(b),
                (Val::Str(a), Val::Str(b)) => a.cmp(b),
                _ => {
                    return Err(cannot_compare(&l, &r, span));
                }
            };
            Val::Bool(match op {
                BinOp::Lt => ordering.is_lt(),
                BinOp::Le => ordering.is_le(),
                BinOp::Gt => ordering.is_gt(),
                _ => ordering.is_ge(),
            })
        }
        BinOp::Add | BinOp::Sub | BinOp::Mul | BinOp::Div => {
            let (a, b) = (number(l, left.span)?, number(r, right.span)?);
            let result = match op {
                BinOp::Add => a.checked_add(b),
                BinOp::Sub => a.checked_sub(b),
                BinOp::Mul => a.checked_mul(b),
                _ if b.is_zero() => {
                    return Err(EvalError::new(
                        "division_by_zero",
                        "division by zero",
                        right.span,
                    ));
                }
                _ => a.checked_div(b),
            };
            Val::Num(
                result.ok_or_else(|| {
                    EvalError::new("not_a_number", "the result is too large", span)
                })?,
            )
        }
        BinOp::And | BinOp::Or => unreachable!("handled above"),
    })
}

/// Equality with the coercions CRMs need, and no silent answer otherwise: text `"true"` /
/// `"false"` equals the boolean (HubSpot sends booleans as text), text that holds a number
/// equals the number; any other text compared with a boolean or a number, or a boolean with a
/// number, is a `type_mismatch`. `null` equals only `null`.
fn equal(l: &Val<'_>, r: &Val<'_>, span: Span) -> Result<bool, EvalError> {
    let mismatch = || cannot_compare(l, r, span);
    Ok(match (l, r) {
        (Val::Num(a), Val::Num(b)) => a == b,
        (Val::Str(a), Val::Str(b)) => a == b,
        (Val::Bool(a), Val::Bool(b)) => a == b,
        (Val::Null, other) | (other, Val::Null) => other.is_null(),
        (Val::Str(text), Val::Bool(b)) | (Val::Bool(b), Val::Str(text)) => {
            text_bool(text).ok_or_else(mismatch)? == *b
        }
        (Val::Str(text), Val::Num(n)) | (Val::Num(n), Val::Str(text)) => {
            super::value::parse_decimal(text).ok_or_else(mismatch)? == *n
        }
        (Val::Bool(_), Val::Num(_)) | (Val::Num(_), Val::Bool(_)) => return Err(mismatch()),
        _ => l.clone().into_json() == r.clone().into_json(),
    })
}

/// `cannot compare string "maybe" with boolean false` (a `type_mismatch`).
#[cold]
fn cannot_compare(l: &Val<'_>, r: &Val<'_>, span: Span) -> EvalError {
    EvalError::new(
        "type_mismatch",
        format!(
            "cannot compare {} {} with {} {}",
            l.kind(),
            l.preview(),
            r.kind(),
            r.preview()
        ),
        span,
    )
}

/// `"true"` or `"false"` (any case) as a boolean.
fn text_bool(text: &str) -> Option<bool> {
    match text.trim() {
        t if t.eq_ignore_ascii_case("true") => Some(true),
        t if t.eq_ignore_ascii_case("false") => Some(false),
        _ => None,
    }
}

/// A number, or a string that holds one (CRMs send amounts as text too). A number is taken
/// where the call is (inlined); anything else goes to [`number_of`].
#[inline(always)]
pub fn number(value: Val<'_>, span: Span) -> Result<Decimal, EvalError> {
    if let Val::Num(d) = value {
        // Nothing to drop in a number: this saves the call to `Val`'s drop on the common path.
        std::mem::forget(value);
        return Ok(d);
    }
    number_of(value, span)
}

/// [`number`] of anything but a number: text read as one, or the error. Out of line, so that
/// the common path carries none of its frame.
#[inline(never)]
fn number_of(value: Val<'_>, span: Span) -> Result<Decimal, EvalError> {
    match &value {
        Val::Num(d) => Ok(*d),
        Val::Null => Err(EvalError::new(
            "not_a_number",
            "expected a number, but the value is missing (null)",
            span,
        )),
        Val::Str(s) => super::value::parse_decimal(s).ok_or_else(|| {
            EvalError::new(
                "not_a_number",
                format!("{} is not a number", value.preview()),
                span,
            )
        }),
        _ => Err(EvalError::new(
            "not_a_number",
            format!(
                "expected a number, found {} {}",
                value.kind(),
                value.preview()
            ),
            span,
        )),
    }
}

fn truthy(value: &Val<'_>, span: Span) -> Result<bool, EvalError> {
    match value {
        Val::Bool(b) => Ok(*b),
        Val::Null => Ok(false),
        Val::Str(text) if text_bool(text).is_some() => Ok(text_bool(text) == Some(true)),
        other => Err(EvalError::new(
            "type_mismatch",
            format!(
                "expected true or false, found {} {}",
                other.kind(),
                other.preview()
            ),
            span,
        )),
    }
}
