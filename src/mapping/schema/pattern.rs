//! The `pattern`s target schemas use for codes and dates (`^[A-Z]{3}$`, `^\d{4}-\d{2}-\d{2}$`),
//! checked without a regular-expression engine: an anchored run of single characters, each a
//! literal, `\d` or a class of ranges, each repeated a fixed number of times. A text matches when
//! it has exactly as many characters as the pattern and each falls in its place's set. Any other
//! pattern is not compiled here and stays with `jsonschema` (`pattern_tests` hold both to the
//! same answers).

/// A compiled pattern: the sets, one per character of a matching text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    places: Vec<Set>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Set {
    /// Inclusive ranges of characters (a literal is a range of one).
    Ranges(Vec<(char, char)>),
}

impl Pattern {
    /// The pattern, when it is in the subset; `None` leaves it to `jsonschema`.
    pub fn compile(pattern: &str) -> Option<Pattern> {
        let body = pattern.strip_prefix('^')?.strip_suffix('$')?;
        let mut chars = body.chars().peekable();
        let mut places = Vec::new();
        while let Some(c) = chars.next() {
            let set = match c {
                '\\' => match chars.next()? {
                    'd' => Set::Ranges(vec![('0', '9')]),
                    e if is_escapable(e) => Set::Ranges(vec![(e, e)]),
                    _ => return None,
                },
                '[' => class(&mut chars)?,
                c if is_meta(c) => return None,
                c => Set::Ranges(vec![(c, c)]),
            };
            let count = match chars.peek() {
                Some('{') => {
                    chars.next();
                    let mut digits = String::new();
                    loop {
                        match chars.next()? {
                            '}' => break,
                            d if d.is_ascii_digit() => digits.push(d),
                            _ => return None,
                        }
                    }
                    digits
                        .parse::<usize>()
                        .ok()
                        .filter(|n| (1..=64).contains(n))?
                }
                Some('?' | '*' | '+') => return None,
                _ => 1,
            };
            places.extend(std::iter::repeat_n(set, count));
        }
        (!places.is_empty()).then_some(Pattern { places })
    }

    pub fn matches(&self, text: &str) -> bool {
        let mut chars = text.chars();
        for place in &self.places {
            let Some(c) = chars.next() else {
                return false;
            };
            let Set::Ranges(ranges) = place;
            if !ranges.iter().any(|(low, high)| (*low..=*high).contains(&c)) {
                return false;
            }
        }
        chars.next().is_none()
    }
}

/// `[A-Z0-9_]`: literal characters and ranges; negation, escapes and anything unusual are not
/// compiled.
fn class(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) -> Option<Set> {
    let mut ranges = Vec::new();
    loop {
        let low = chars.next()?;
        match low {
            ']' if !ranges.is_empty() => return Some(Set::Ranges(ranges)),
            '^' | '[' | ']' | '\\' | '-' => return None,
            _ => {}
        }
        if chars.peek() == Some(&'-') {
            chars.next();
            let high = chars.next()?;
            if matches!(high, ']' | '[' | '\\' | '^' | '-') || high < low {
                return None;
            }
            ranges.push((low, high));
        } else {
            ranges.push((low, low));
        }
    }
}

/// Characters with a meaning of their own in a regular expression.
fn is_meta(c: char) -> bool {
    matches!(
        c,
        '.' | '^' | '$' | '|' | '(' | ')' | '[' | ']' | '{' | '}' | '?' | '*' | '+' | '\\'
    )
}

/// `\.`, `\-`…: an escaped character that stands for itself.
fn is_escapable(c: char) -> bool {
    is_meta(c) || c == '-' || c == '/'
}

#[cfg(test)]
mod pattern_tests {
    use serde_json::json;

    use super::*;

    const PATTERNS: &[&str] = &[
        "^[A-Z]{3}$",
        "^[A-Z]{2}$",
        r"^\d{4}-\d{2}-\d{2}$",
        "^[A-Za-z0-9_]{1}x$",
        r"^SKU\-[0-9]{3}$",
        r"^\.[a-c]$",
        "^é[à-ü]{2}$",
    ];

    const TEXTS: &[&str] = &[
        "",
        "EUR",
        "eur",
        "EU",
        "EURO",
        "EUR\n",
        "\nEUR",
        "FR",
        "ÉU",
        "2026-11-30",
        "2026-11-3",
        "2026-11-300",
        "2026/11/30",
        "٢٠٢٦-١١-٣٠",
        "２０２６-11-30",
        "ax",
        "_x",
        "-x",
        "SKU-001",
        "SKU-01a",
        ".b",
        "xb",
        "éàü",
        "éaü",
        "E\u{301}UR",
    ];

    /// Every compiled pattern answers as `jsonschema` does, on texts near and far from it.
    #[test]
    fn compiled_patterns_agree_with_jsonschema() {
        for pattern in PATTERNS {
            let compiled = Pattern::compile(pattern).unwrap_or_else(|| panic!("{pattern}"));
            let reference =
                jsonschema::validator_for(&json!({ "pattern": pattern })).expect("valid pattern");
            for text in TEXTS {
                assert_eq!(
                    compiled.matches(text),
                    reference.is_valid(&json!(text)),
                    "{pattern} on {text:?}"
                );
            }
        }
    }

    #[test]
    fn anything_else_is_left_to_jsonschema() {
        for pattern in [
            "[A-Z]{3}",
            "^[A-Z]{3}",
            "^[A-Z]+$",
            "^[A-Z]{2,3}$",
            "^[^A-Z]$",
            "^(a|b)$",
            "^a.c$",
            r"^\w$",
            r"^[\d]$",
            "^[Z-A]$",
            "^$",
            "^a{0}$",
        ] {
            assert_eq!(Pattern::compile(pattern), None, "{pattern}");
        }
    }
}
