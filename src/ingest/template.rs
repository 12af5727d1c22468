//! The template of the bytes a sender signs, such as `{id}.{timestamp}.{body}`.

use thiserror::Error;

/// One piece of the signed bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    Literal(String),
    /// The raw request body, byte for byte.
    Body,
    Timestamp,
    Id,
    /// The HTTP method, upper case.
    Method,
    /// The full request URI as the sender called it.
    Uri,
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum TemplateError {
    #[error(
        "unknown placeholder {{{0}}}: use {{body}}, {{timestamp}}, {{id}}, {{method}} or {{uri}}"
    )]
    UnknownPlaceholder(String),
    #[error("unclosed '{{' in the template")]
    Unclosed,
    #[error("the template never uses {{body}}, so the body would not be signed")]
    NoBody,
}

/// Parses a template; the body must be part of it.
pub fn parse(template: &str) -> Result<Vec<Part>, TemplateError> {
    let mut parts = Vec::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        if open > 0 {
            parts.push(Part::Literal(rest[..open].to_owned()));
        }
        let close = rest[open..].find('}').ok_or(TemplateError::Unclosed)? + open;
        let part = match &rest[open + 1..close] {
            "body" => Part::Body,
            "timestamp" => Part::Timestamp,
            "id" => Part::Id,
            "method" => Part::Method,
            "uri" => Part::Uri,
            other => return Err(TemplateError::UnknownPlaceholder(other.to_owned())),
        };
        parts.push(part);
        rest = &rest[close + 1..];
    }
    if !rest.is_empty() {
        parts.push(Part::Literal(rest.to_owned()));
    }
    if !parts.contains(&Part::Body) {
        return Err(TemplateError::NoBody);
    }
    Ok(parts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_literals_and_placeholders() {
        assert_eq!(
            parse("{id}.{timestamp}.{body}").unwrap(),
            vec![
                Part::Id,
                Part::Literal(".".into()),
                Part::Timestamp,
                Part::Literal(".".into()),
                Part::Body
            ]
        );
        assert_eq!(parse("v0:{body}!").unwrap().len(), 3);
    }

    #[test]
    fn rejects_unknown_unclosed_and_bodiless() {
        assert_eq!(
            parse("{ts}.{body}"),
            Err(TemplateError::UnknownPlaceholder("ts".into()))
        );
        assert_eq!(parse("{body"), Err(TemplateError::Unclosed));
        assert_eq!(parse("{timestamp}"), Err(TemplateError::NoBody));
    }
}
