//! Comparing record versions: timestamps as instants, numbers as numbers, else as text.

use chrono::DateTime;

use crate::mapping::expr::parse_decimal;

/// Whether version `a` is strictly older than `b`.
pub fn older(a: &str, b: &str) -> bool {
    if let (Some(a), Some(b)) = (instant(a), instant(b)) {
        return a < b;
    }
    if let (Some(a), Some(b)) = (parse_decimal(a), parse_decimal(b)) {
        return a < b;
    }
    a < b
}

/// RFC 3339, or Salesforce's `2026-11-21T08:00:00.000+0000`.
pub fn instant(text: &str) -> Option<DateTime<chrono::FixedOffset>> {
    DateTime::parse_from_rfc3339(text)
        .or_else(|_| DateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f%z"))
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_compare_by_their_kind() {
        assert!(older(
            "2026-11-21T08:00:00.000+0000",
            "2026-11-21T09:00:00Z"
        ));
        assert!(!older("2026-11-21T10:00:00+01:00", "2026-11-21T09:00:00Z"));
        assert!(older("9", "10"));
        assert!(!older("10", "10"));
        assert!(older("abc", "abd"));
    }
}
