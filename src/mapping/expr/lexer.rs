//! Tokens of the expression language, each with its span.

use super::Span;
use super::parser::ParseError;

#[derive(Debug, Clone, PartialEq)]
pub enum Token {
    Number(String),
    Str(String),
    Name(String),
    Dollar,
    Dot,
    Comma,
    LParen,
    RParen,
    LBracket,
    RBracket,
    Plus,
    Minus,
    Star,
    Slash,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

pub fn tokenize(text: &str) -> Result<Vec<(Token, Span)>, ParseError> {
    let bytes = text.as_bytes();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let start = i;
        let c = bytes[i];
        let single = |token| (token, 1);
        let (token, len) = match c {
            b' ' | b'\t' | b'\n' | b'\r' => {
                i += 1;
                continue;
            }
            b'$' => single(Token::Dollar),
            b'.' => single(Token::Dot),
            b',' => single(Token::Comma),
            b'(' => single(Token::LParen),
            b')' => single(Token::RParen),
            b'[' => single(Token::LBracket),
            b']' => single(Token::RBracket),
            b'+' => single(Token::Plus),
            b'-' => single(Token::Minus),
            b'*' => single(Token::Star),
            b'/' => single(Token::Slash),
            b'=' if bytes.get(i + 1) == Some(&b'=') => (Token::Eq, 2),
            b'!' if bytes.get(i + 1) == Some(&b'=') => (Token::Ne, 2),
            b'<' if bytes.get(i + 1) == Some(&b'=') => (Token::Le, 2),
            b'>' if bytes.get(i + 1) == Some(&b'=') => (Token::Ge, 2),
            b'<' => single(Token::Lt),
            b'>' => single(Token::Gt),
            b'\'' | b'"' => string(text, i)?,
            b'0'..=b'9' => {
                let mut end = i;
                while end < bytes.len() && bytes[end].is_ascii_digit() {
                    end += 1;
                }
                if bytes.get(end) == Some(&b'.')
                    && bytes.get(end + 1).is_some_and(u8::is_ascii_digit)
                {
                    end += 1;
                    while end < bytes.len() && bytes[end].is_ascii_digit() {
                        end += 1;
                    }
                }
                (Token::Number(text[i..end].to_owned()), end - i)
            }
            c if c.is_ascii_alphabetic() || c == b'_' => {
                let mut end = i;
                while end < bytes.len()
                    && (bytes[end].is_ascii_alphanumeric() || bytes[end] == b'_')
                {
                    end += 1;
                }
                (Token::Name(text[i..end].to_owned()), end - i)
            }
            _ => {
                let ch = text[i..].chars().next().unwrap_or('?');
                return Err(ParseError::new(
                    format!("unexpected character {ch:?}"),
                    Span {
                        start,
                        end: start + ch.len_utf8(),
                    },
                ));
            }
        };
        i += len;
        tokens.push((token, Span { start, end: i }));
    }
    Ok(tokens)
}

/// A quoted string starting at `start`; returns the token and its length in bytes.
fn string(text: &str, start: usize) -> Result<(Token, usize), ParseError> {
    let quote = text.as_bytes()[start] as char;
    let mut out = String::new();
    let mut chars = text[start + 1..].char_indices();
    while let Some((offset, ch)) = chars.next() {
        match ch {
            c if c == quote => return Ok((Token::Str(out), offset + 2)),
            '\\' => match chars.next() {
                Some((_, 'n')) => out.push('\n'),
                Some((_, 't')) => out.push('\t'),
                Some((_, c @ ('\\' | '\'' | '"'))) => out.push(c),
                Some((at, c)) => {
                    let at = start + 1 + at;
                    return Err(ParseError::new(
                        format!("unknown escape \\{c}"),
                        Span {
                            start: at - 1,
                            end: at + c.len_utf8(),
                        },
                    ));
                }
                None => break,
            },
            c => out.push(c),
        }
    }
    Err(ParseError::new(
        "unclosed string",
        Span {
            start,
            end: text.len(),
        },
    ))
}
