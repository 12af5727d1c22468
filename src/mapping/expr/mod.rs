//! The expression language of field rules: small, purpose-built, sandboxed and deterministic.
//!
//! Why not an embedded general language: integrators write one-line rules; they need paths into
//! JSON, decimals that never pass through `f64`, and errors that point at a column. A small
//! grammar checked before anything runs gives that; no loops, no I/O, no clock.
//!
//! # Grammar
//!
//! ```text
//! expr    = or
//! or      = and { "or" and }
//! and     = not { "and" not }
//! not     = "not" not | cmp
//! cmp     = sum [ ("==" | "!=" | "<" | "<=" | ">" | ">=") sum ]
//! sum     = product { ("+" | "-") product }
//! product = unary { ("*" | "/") unary }
//! unary   = "-" unary | postfix
//! postfix = primary { "." name | "[" integer "]" }
//! primary = number | string | "true" | "false" | "null"
//!         | "$"                          the event's data
//!         | "item"                       the current element, inside `lines`
//!         | name "(" [ expr { "," expr } ] ")"   a function call
//!         | "(" expr ")"
//! string  = '…' or "…" with \\ \' \" \n \t escapes
//! number  = digits [ "." digits ]        always a decimal, never a float
//! ```
//!
//! Examples: `$.Name`, `trim($.BillingStreet)`, `coalesce($.CurrencyIsoCode, 'EUR')`,
//! `round(item.Quantity * item.UnitPrice, 2)`, `$.StageName == 'Closed Won' and $.Amount > 0`.
//!
//! A path that leads nowhere is `null`, not an error; functions decide what `null` means
//! (`coalesce` skips it, `trim(null)` is `null`, arithmetic on `null` is an error naming the path).
//! Function names and their arities are checked when the expression is parsed (`functions/`);
//! calls whose constant arguments are literals are prepared then (`functions/prepared.rs`).

mod eval;
mod functions;
mod lexer;
mod memo;
mod parser;
mod slots;
mod value;

pub use eval::{EvalError, Scope};
pub use functions::FUNCTIONS;
pub use memo::{Memo, share};
pub use parser::{Expr, Node, ParseError, parse};
pub use slots::Slots;
pub use value::{Val, decimal_text, parse_decimal};

/// A byte range in the expression text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub start: usize,
    pub end: usize,
}

#[cfg(test)]
mod tests;
