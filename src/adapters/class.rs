//! What kind of failure an adapter met: decided once, where the target's answer is read, so
//! the engine and the queue never look at a status code.

use serde::{Deserialize, Serialize};

/// How a failure is handled, decided once at the adapter boundary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Class {
    /// Timeouts before sending, refused connections, 408, 5xx: retry on the schedule.
    Transient,
    /// 429: retry after the time the target asked for.
    RateLimited,
    /// A timeout after the request was sent: retry, checking first whether it took effect.
    InDoubt,
    /// The data cannot be delivered as it is (mapping error, 4xx validation): dead letter.
    FixData,
    /// The target has the record, but its own amounts differ from the document's beyond the
    /// currency's precision: held (`amount_mismatch`) until an operator accepts or fixes it.
    AmountMismatch,
    /// The connector is misconfigured (401, 403, unknown operation): pause it, dead letter.
    FixConfig,
}
