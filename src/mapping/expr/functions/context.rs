//! Functions that read the mapping's context: lookup tables and cross-references.

use std::borrow::Cow;

use super::super::Span;
use super::super::eval::{EvalError, Scope};
use super::super::value::Val;
use super::text;
use super::{Args, take};

pub fn lookup<'a>(args: Args<'a>, scope: &Scope<'a>, span: Span) -> Result<Val<'a>, EvalError> {
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

pub fn xref<'a>(args: Args<'a>, scope: &Scope<'a>, span: Span) -> Result<Val<'a>, EvalError> {
    let [kind, id] = take::<2>(args);
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
