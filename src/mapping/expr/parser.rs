//! Recursive-descent parser: text → `Expr`, checking function names and arities.

use rust_decimal::Decimal;
use thiserror::Error;

use super::Span;
use super::functions::{self, Function};
use super::lexer::{Token, tokenize};

/// A parsed expression: a node and the span of text it came from.
#[derive(Debug, Clone)]
pub struct Expr {
    pub node: Node,
    pub span: Span,
}

/// One step of a path: a field of an object or an element of a list.
#[derive(Debug, Clone)]
pub enum Step {
    Field(String),
    Index(usize),
}

#[derive(Debug, Clone)]
pub enum Node {
    Null,
    Bool(bool),
    Num(Decimal),
    Str(String),
    /// `$`: the event's data.
    Root,
    /// `item`: the current element inside `lines`.
    Item,
    /// `base.name[2].other`: the steps into a value, walked in one go.
    Path(Box<Expr>, Box<[Step]>),
    Call(&'static Function, Vec<Expr>),
    /// `if(cond, then, else)`: only the branch taken is evaluated.
    If(Box<[Expr; 3]>),
    /// `coalesce(a, b, …)`: the first that is not null; later ones are not evaluated.
    Coalesce(Vec<Expr>),
    Neg(Box<Expr>),
    Not(Box<Expr>),
    Binary(BinOp, Box<Expr>, Box<Expr>),
    /// A call prepared when parsed (functions/prepared.rs): no argument list, constant
    /// arguments read once.
    Prepared(Box<functions::Prepared>),
    /// A sub-expression that occurs more than once in its scope, evaluated once per scope into
    /// this slot (memo.rs).
    Memo(usize, Box<Expr>),
    /// A path whose member is found once per scope (slots.rs).
    Slot(Box<super::slots::Slot>),
}

impl Expr {
    /// Calls `f` on this expression and every expression inside it.
    pub fn visit(&self, f: &mut impl FnMut(&Expr)) {
        f(self);
        match &self.node {
            Node::Path(inner, _) | Node::Neg(inner) | Node::Not(inner) | Node::Memo(_, inner) => {
                inner.visit(f)
            }
            Node::Prepared(call) => call.args().visit(f),
            Node::Slot(slot) => slot.path.visit(f),
            Node::Call(_, args) | Node::Coalesce(args) => args.iter().for_each(|a| a.visit(f)),
            Node::If(parts) => parts.iter().for_each(|a| a.visit(f)),
            Node::Binary(_, l, r) => {
                l.visit(f);
                r.visit(f);
            }
            Node::Null | Node::Bool(_) | Node::Num(_) | Node::Str(_) | Node::Root | Node::Item => {}
        }
    }

    /// The expressions directly inside this one.
    pub fn children_mut(&mut self) -> Vec<&mut Expr> {
        match &mut self.node {
            Node::Path(inner, _) | Node::Neg(inner) | Node::Not(inner) | Node::Memo(_, inner) => {
                vec![inner]
            }
            Node::Prepared(call) => vec![call.args_mut()],
            Node::Slot(slot) => vec![&mut slot.path],
            Node::Call(_, args) | Node::Coalesce(args) => args.iter_mut().collect(),
            Node::If(parts) => parts.iter_mut().collect(),
            Node::Binary(_, l, r) => vec![l, r],
            Node::Null | Node::Bool(_) | Node::Num(_) | Node::Str(_) | Node::Root | Node::Item => {
                vec![]
            }
        }
    }

    /// What the expression computes, written out without positions (memo slots left out): two
    /// expressions of the same shape give the same value in the same scope.
    pub fn shape(&self) -> String {
        let mut out = String::new();
        self.write_shape(&mut out);
        out
    }

    fn write_shape(&self, out: &mut String) {
        use std::fmt::Write;
        let list = |out: &mut String, items: &[Expr]| {
            for item in items {
                item.write_shape(out);
                out.push(',');
            }
        };
        match &self.node {
            Node::Null => out.push_str("null"),
            Node::Bool(b) => write!(out, "{b}").unwrap_or_default(),
            Node::Num(n) => write!(out, "n{n}").unwrap_or_default(),
            Node::Str(s) => write!(out, "{s:?}").unwrap_or_default(),
            Node::Root => out.push('$'),
            Node::Item => out.push_str("item"),
            Node::Path(base, steps) => {
                base.write_shape(out);
                for step in steps.iter() {
                    match step {
                        Step::Field(name) => write!(out, ".{name:?}").unwrap_or_default(),
                        Step::Index(n) => write!(out, "[{n}]").unwrap_or_default(),
                    }
                }
            }
            Node::Call(function, args) => {
                write!(out, "{}(", function.name).unwrap_or_default();
                list(out, args);
                out.push(')');
            }
            Node::Prepared(call) => {
                write!(out, "{}(", call.constants()).unwrap_or_default();
                call.args().write_shape(out);
                out.push(')');
            }
            Node::If(parts) => {
                out.push_str("if(");
                list(out, parts.as_slice());
                out.push(')');
            }
            Node::Coalesce(args) => {
                out.push_str("coalesce(");
                list(out, args);
                out.push(')');
            }
            Node::Neg(inner) => {
                out.push_str("-(");
                inner.write_shape(out);
                out.push(')');
            }
            Node::Not(inner) => {
                out.push_str("!(");
                inner.write_shape(out);
                out.push(')');
            }
            Node::Binary(op, l, r) => {
                write!(out, "{op:?}(").unwrap_or_default();
                l.write_shape(out);
                out.push(',');
                r.write_shape(out);
                out.push(')');
            }
            Node::Memo(_, inner) => inner.write_shape(out),
            Node::Slot(slot) => slot.path.write_shape(out),
        }
    }

    /// The literal text of a string literal.
    pub fn as_str_literal(&self) -> Option<&str> {
        match &self.node {
            Node::Str(s) => Some(s),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinOp {
    Or,
    And,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Add,
    Sub,
    Mul,
    Div,
}

#[derive(Debug, Clone, Error, PartialEq, Eq)]
#[error("{message}")]
pub struct ParseError {
    pub message: String,
    pub span: Span,
}

impl ParseError {
    pub fn new(message: impl Into<String>, span: Span) -> Self {
        ParseError {
            message: message.into(),
            span,
        }
    }
}

/// Parses one expression.
pub fn parse(text: &str) -> Result<Expr, ParseError> {
    let tokens = tokenize(text)?;
    let mut parser = Parser {
        tokens,
        pos: 0,
        end: text.len(),
    };
    let expr = parser.or()?;
    match parser.tokens.get(parser.pos) {
        None => Ok(expr),
        Some((token, span)) => Err(ParseError::new(
            format!(
                "unexpected {} after the end of the expression",
                describe(token)
            ),
            *span,
        )),
    }
}

struct Parser {
    tokens: Vec<(Token, Span)>,
    pos: usize,
    end: usize,
}

fn join(a: Span, b: Span) -> Span {
    Span {
        start: a.start,
        end: b.end,
    }
}

fn describe(token: &Token) -> String {
    match token {
        Token::Number(n) => format!("number {n}"),
        Token::Str(_) => "string".into(),
        Token::Name(n) => format!("'{n}'"),
        other => format!("{other:?}").to_lowercase(),
    }
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.pos).map(|(t, _)| t)
    }

    fn next(&mut self) -> Result<(Token, Span), ParseError> {
        let item = self.tokens.get(self.pos).cloned().ok_or_else(|| {
            ParseError::new(
                "the expression ends too early",
                Span {
                    start: self.end,
                    end: self.end,
                },
            )
        })?;
        self.pos += 1;
        Ok(item)
    }

    fn eat(&mut self, token: &Token) -> bool {
        if self.peek() == Some(token) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn expect(&mut self, token: Token, what: &str) -> Result<Span, ParseError> {
        if self.pos >= self.tokens.len() {
            let end = Span {
                start: self.end,
                end: self.end,
            };
            return Err(ParseError::new(
                format!("expected {what}, but the expression ends"),
                end,
            ));
        }
        let (found, span) = self.next()?;
        if found == token {
            Ok(span)
        } else {
            Err(ParseError::new(
                format!("expected {what}, found {}", describe(&found)),
                span,
            ))
        }
    }

    fn is_word(&self, word: &str) -> bool {
        matches!(self.peek(), Some(Token::Name(n)) if n == word)
    }

    fn binary(
        &mut self,
        op: BinOp,
        left: Expr,
        next: fn(&mut Self) -> Result<Expr, ParseError>,
    ) -> Result<Expr, ParseError> {
        let right = next(self)?;
        let span = join(left.span, right.span);
        Ok(Expr {
            node: Node::Binary(op, Box::new(left), Box::new(right)),
            span,
        })
    }

    fn or(&mut self) -> Result<Expr, ParseError> {
        let mut left = self.and()?;
        while self.is_word("or") {
            self.pos += 1;
            left = self.binary(BinOp::Or, left, Self::and)?;
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Expr, ParseError> {
        let mut left = self.not()?;
        while self.is_word("and") {
            self.pos += 1;
            left = self.binary(BinOp::And, left, Self::not)?;
        }
        Ok(left)
    }

    fn not(&mut self) -> Result<Expr, ParseError> {
        if self.is_word("not") {
            let (_, start) = self.next()?;
            let inner = self.not()?;
            let span = join(start, inner.span);
            return Ok(Expr {
                node: Node::Not(Box::new(inner)),
                span,
            });
        }
        self.cmp()
    }

    fn cmp(&mut self) -> Result<Expr, ParseError> {
        let left = self.sum()?;
        let op = match self.peek() {
            Some(Token::Eq) => BinOp::Eq,
            Some(Token::Ne) => BinOp::Ne,
            Some(Token::Lt) => BinOp::Lt,
            Some(Token::Le) => BinOp::Le,
            Some(Token::Gt) => BinOp::Gt,
            Some(Token::Ge) => BinOp::Ge,
            _ => return Ok(left),
        };
        self.pos += 1;
        self.binary(op, left, Self::sum)
    }

    fn sum(&mut self) -> Result<Expr, ParseError> {
        self.left_assoc(Self::product, |t| match t {
            Token::Plus => Some(BinOp::Add),
            Token::Minus => Some(BinOp::Sub),
            _ => None,
        })
    }

    fn product(&mut self) -> Result<Expr, ParseError> {
        self.left_assoc(Self::unary, |t| match t {
            Token::Star => Some(BinOp::Mul),
            Token::Slash => Some(BinOp::Div),
            _ => None,
        })
    }

    /// `next { op next }`, grouping to the left: `a - b - c` is `(a - b) - c`.
    fn left_assoc(
        &mut self,
        next: fn(&mut Self) -> Result<Expr, ParseError>,
        op: fn(&Token) -> Option<BinOp>,
    ) -> Result<Expr, ParseError> {
        let mut left = next(self)?;
        while let Some(op) = self.peek().and_then(op) {
            self.pos += 1;
            left = self.binary(op, left, next)?;
        }
        Ok(left)
    }

    fn unary(&mut self) -> Result<Expr, ParseError> {
        if self.peek() == Some(&Token::Minus) {
            let (_, start) = self.next()?;
            let inner = self.unary()?;
            let span = join(start, inner.span);
            return Ok(Expr {
                node: Node::Neg(Box::new(inner)),
                span,
            });
        }
        self.postfix()
    }

    fn postfix(&mut self) -> Result<Expr, ParseError> {
        let mut expr = self.primary()?;
        loop {
            if self.eat(&Token::Dot) {
                let (token, span) = self.next()?;
                let Token::Name(name) = token else {
                    return Err(ParseError::new(
                        format!(
                            "expected a field name after '.', found {}",
                            describe(&token)
                        ),
                        span,
                    ));
                };
                let span = join(expr.span, span);
                expr = step(expr, Step::Field(name), span);
            } else if self.eat(&Token::LBracket) {
                let (token, span) = self.next()?;
                let index = match token {
                    Token::Number(n) => n
                        .parse::<usize>()
                        .map_err(|_| ParseError::new("an index is a whole number", span))?,
                    other => {
                        return Err(ParseError::new(
                            format!("expected an index, found {}", describe(&other)),
                            span,
                        ));
                    }
                };
                let close = self.expect(Token::RBracket, "']'")?;
                let span = join(expr.span, close);
                expr = step(expr, Step::Index(index), span);
            } else {
                return Ok(expr);
            }
        }
    }

    fn primary(&mut self) -> Result<Expr, ParseError> {
        let (token, span) = self.next()?;
        let node = match token {
            Token::Number(n) => Node::Num(
                n.parse()
                    .map_err(|_| ParseError::new(format!("{n} is not a number"), span))?,
            ),
            Token::Str(s) => Node::Str(s),
            Token::Dollar => Node::Root,
            Token::LParen => {
                let inner = self.or()?;
                let close = self.expect(Token::RParen, "')'")?;
                return Ok(Expr {
                    node: inner.node,
                    span: join(span, close),
                });
            }
            Token::Name(name) if self.peek() == Some(&Token::LParen) => {
                return self.call(name, span);
            }
            Token::Name(name) => match name.as_str() {
                "true" => Node::Bool(true),
                "false" => Node::Bool(false),
                "null" => Node::Null,
                "item" => Node::Item,
                _ => {
                    return Err(ParseError::new(
                        format!(
                            "unknown name '{name}': paths start with $ (the event) or item (a line), functions need ( )"
                        ),
                        span,
                    ));
                }
            },
            other => {
                return Err(ParseError::new(
                    format!("expected a value, found {}", describe(&other)),
                    span,
                ));
            }
        };
        Ok(Expr { node, span })
    }

    fn call(&mut self, name: String, name_span: Span) -> Result<Expr, ParseError> {
        self.expect(Token::LParen, "'('")?;
        let mut args = Vec::new();
        if !self.eat(&Token::RParen) {
            loop {
                args.push(self.or()?);
                if self.eat(&Token::Comma) {
                    continue;
                }
                self.expect(Token::RParen, "',' or ')'")?;
                break;
            }
        }
        let span = Span {
            start: name_span.start,
            end: self.tokens[self.pos - 1].1.end,
        };
        let function = functions::find(&name).ok_or_else(|| {
            ParseError::new(
                format!("unknown function '{name}' (known: {})", functions::names()),
                name_span,
            )
        })?;
        function
            .check_arity(args.len())
            .map_err(|message| ParseError::new(message, span))?;
        let node = match name.as_str() {
            "if" => {
                let [cond, then, otherwise]: [Expr; 3] = args.try_into().expect("arity checked");
                Node::If(Box::new([cond, then, otherwise]))
            }
            "coalesce" => Node::Coalesce(args),
            _ => match functions::prepare(function, &mut args) {
                Some(prepared) => Node::Prepared(Box::new(prepared)),
                None => Node::Call(function, args),
            },
        };
        Ok(Expr { node, span })
    }
}

/// `expr` with one more step: a path grows instead of nesting (`$.a.b` is one path of two steps).
fn step(expr: Expr, next: Step, span: Span) -> Expr {
    let node = match expr.node {
        Node::Path(base, steps) => {
            let mut steps = steps.into_vec();
            steps.push(next);
            Node::Path(base, steps.into_boxed_slice())
        }
        node => Node::Path(
            Box::new(Expr {
                node,
                span: expr.span,
            }),
            Box::new([next]),
        ),
    };
    Expr { node, span }
}
