//! Order status only moves forward: draft → confirmed → shipped → invoiced → paid, and
//! cancelled from any of them. A late "confirmed" never overwrites "shipped".

const FORWARD: [&str; 5] = ["draft", "confirmed", "shipped", "invoiced", "paid"];
const CANCELLED: &str = "cancelled";

/// Whether `next` may be written over `last` (`None`: nothing written yet). Repeating the same
/// status is allowed (a retry, or new details such as a tracking number).
pub fn may_follow(last: Option<&str>, next: &str) -> bool {
    let Some(last) = last else {
        return true;
    };
    if last == CANCELLED {
        return next == CANCELLED;
    }
    if next == CANCELLED {
        return true;
    }
    match (rank(last), rank(next)) {
        (Some(last), Some(next)) => next >= last,
        // An unknown status is passed on; it does not move the order's place.
        _ => true,
    }
}

fn rank(status: &str) -> Option<usize> {
    FORWARD.iter().position(|s| *s == status)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_moves_only_forward() {
        assert!(may_follow(None, "confirmed"));
        assert!(may_follow(Some("confirmed"), "shipped"));
        assert!(may_follow(Some("shipped"), "shipped"));
        assert!(!may_follow(Some("shipped"), "confirmed"));
        assert!(!may_follow(Some("paid"), "invoiced"));
        assert!(may_follow(Some("shipped"), "cancelled"));
        assert!(!may_follow(Some("cancelled"), "shipped"));
        assert!(may_follow(Some("invoiced"), "paid"));
    }
}
