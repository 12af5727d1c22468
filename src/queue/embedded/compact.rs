//! The compact binary form of the queue log's `created` and `changed` records and of the
//! index's cross-references and applied versions: fields in a fixed order, numbers as LEB128
//! varints (signed ones zigzagged), text as a length and its bytes, an absent value as a
//! length of 0 and a present one as its length + 1. A `created` record is ~120 B this way
//! against ~440 B of JSON, a delivered job's `changed` ~350 B against ~800 B.
//!
//! Older data (JSON) still reads: the queue log tells the two apart by the record's kind
//! byte (record.rs), the index by the value's first byte ([`TAG`]; JSON starts with `{`).

use serde_json::Value;

use crate::journal::Position;
use crate::queue::job::Failing;
use crate::queue::records::{Applied, Echo, Effect, Xref};
use crate::queue::{Attempt, Reason, State};

/// First byte of a compact index value (never the first byte of JSON).
pub const TAG: u8 = 1;
/// First byte of an applied version with the delivered document's digest (after release 3).
pub const TAG_DIGEST: u8 = 2;

/// Appends fields to a buffer.
pub struct Out<'a>(pub &'a mut Vec<u8>);

impl Out<'_> {
    pub fn u64(&mut self, mut n: u64) {
        while n >= 0x80 {
            self.0.push((n as u8) | 0x80);
            n >>= 7;
        }
        self.0.push(n as u8);
    }

    pub fn i64(&mut self, n: i64) {
        self.u64(((n << 1) ^ (n >> 63)) as u64);
    }

    pub fn bool(&mut self, b: bool) {
        self.0.push(u8::from(b));
    }

    pub fn str(&mut self, text: &str) {
        self.u64(text.len() as u64);
        self.0.extend_from_slice(text.as_bytes());
    }

    pub fn opt_str(&mut self, text: Option<&str>) {
        match text {
            None => self.u64(0),
            Some(text) => {
                self.u64(text.len() as u64 + 1);
                self.0.extend_from_slice(text.as_bytes());
            }
        }
    }

    /// An optional number: 0 for none, n + 1 otherwise.
    pub fn opt_u64(&mut self, n: Option<u64>) {
        self.u64(n.map_or(0, |n| n + 1));
    }

    pub fn opt_i64(&mut self, n: Option<i64>) {
        match n {
            None => self.bool(false),
            Some(n) => {
                self.bool(true);
                self.i64(n);
            }
        }
    }

    pub fn state(&mut self, state: State) {
        let n = State::ALL.iter().position(|s| *s == state).expect("listed");
        self.0.push(n as u8);
    }

    pub fn position(&mut self, at: Position) {
        self.u64(at.segment);
        self.u64(at.offset);
    }

    pub fn reason(&mut self, reason: Option<&Reason>) {
        match reason {
            None => self.bool(false),
            Some(reason) => {
                self.bool(true);
                self.str(&reason.code);
                self.str(&reason.message);
            }
        }
    }

    pub fn failing(&mut self, failing: Option<Failing>) {
        match failing {
            None => self.bool(false),
            Some(failing) => {
                self.bool(true);
                self.u64(failing.failures.into());
                self.i64(failing.since_ms);
            }
        }
    }

    pub fn attempt(&mut self, attempt: Option<&Attempt>) {
        let Some(attempt) = attempt else {
            return self.bool(false);
        };
        self.bool(true);
        self.u64(attempt.n.into());
        self.i64(attempt.started_ms);
        self.u64(attempt.duration_ms);
        self.str(&attempt.request);
        self.str(&attempt.response);
        self.state(attempt.outcome);
        self.reason(attempt.reason.as_ref());
    }

    pub fn xref(&mut self, xref: &Xref) {
        self.str(&xref.system);
        self.str(&xref.kind);
        self.str(&xref.crm_id);
        self.str(&xref.external_id);
        self.str(&xref.flow);
        self.u64(xref.job);
        self.i64(xref.at_ms);
    }

    /// An applied version without its digest (see `digest`).
    pub fn applied(&mut self, applied: &Applied) {
        self.opt_str(applied.version.as_deref());
        self.u64(applied.seq);
        self.position(applied.at);
    }

    /// A digest that may be missing (0).
    pub fn digest(&mut self, digest: Option<u64>) {
        self.u64(digest.unwrap_or(0));
    }

    pub fn effects(&mut self, effects: &[Effect]) {
        self.u64(effects.len() as u64);
        for effect in effects {
            match effect {
                Effect::Xref(xref) => {
                    self.0.push(0);
                    self.xref(xref);
                }
                Effect::Applied {
                    flow,
                    record,
                    applied,
                } => {
                    // Kind 1 (release 3) had no digest.
                    self.0.push(4);
                    self.str(flow);
                    self.str(record);
                    self.applied(applied);
                    self.digest(applied.digest);
                }
                Effect::Status { order, status } => {
                    self.0.push(2);
                    self.str(order);
                    self.str(status);
                }
                Effect::Echo { record, echo } => {
                    self.0.push(3);
                    self.str(record);
                    self.i64(echo.at_ms);
                    let fields = serde_json::to_string(&echo.fields).expect("JSON maps serialize");
                    self.str(&fields);
                }
            }
        }
    }
}

/// Reads fields back in the order they were written; `None` when the bytes run out or do
/// not fit.
pub struct In<'a>(pub &'a [u8]);

impl In<'_> {
    pub fn u64(&mut self) -> Option<u64> {
        let mut n = 0u64;
        for shift in (0..64).step_by(7) {
            let (&byte, rest) = self.0.split_first()?;
            self.0 = rest;
            n |= u64::from(byte & 0x7f).checked_shl(shift)?;
            if byte < 0x80 {
                return Some(n);
            }
        }
        None
    }

    pub fn u32(&mut self) -> Option<u32> {
        u32::try_from(self.u64()?).ok()
    }

    pub fn i64(&mut self) -> Option<i64> {
        let n = self.u64()?;
        Some(((n >> 1) as i64) ^ -((n & 1) as i64))
    }

    pub fn bool(&mut self) -> Option<bool> {
        let (&byte, rest) = self.0.split_first()?;
        self.0 = rest;
        match byte {
            0 => Some(false),
            1 => Some(true),
            _ => None,
        }
    }

    fn bytes(&mut self, len: u64) -> Option<String> {
        let (text, rest) = self.0.split_at_checked(usize::try_from(len).ok()?)?;
        self.0 = rest;
        String::from_utf8(text.to_vec()).ok()
    }

    pub fn str(&mut self) -> Option<String> {
        let len = self.u64()?;
        self.bytes(len)
    }

    pub fn opt_str(&mut self) -> Option<Option<String>> {
        match self.u64()? {
            0 => Some(None),
            len => self.bytes(len - 1).map(Some),
        }
    }

    pub fn opt_u64(&mut self) -> Option<Option<u64>> {
        Some(self.u64()?.checked_sub(1))
    }

    pub fn opt_i64(&mut self) -> Option<Option<i64>> {
        Some(if self.bool()? {
            Some(self.i64()?)
        } else {
            None
        })
    }

    pub fn state(&mut self) -> Option<State> {
        let (&byte, rest) = self.0.split_first()?;
        self.0 = rest;
        State::ALL.get(usize::from(byte)).copied()
    }

    pub fn position(&mut self) -> Option<Position> {
        Some(Position {
            segment: self.u64()?,
            offset: self.u64()?,
        })
    }

    pub fn reason(&mut self) -> Option<Option<Reason>> {
        if !self.bool()? {
            return Some(None);
        }
        Some(Some(Reason {
            code: self.str()?,
            message: self.str()?,
        }))
    }

    pub fn failing(&mut self) -> Option<Option<Failing>> {
        if !self.bool()? {
            return Some(None);
        }
        Some(Some(Failing {
            failures: self.u32()?,
            since_ms: self.i64()?,
        }))
    }

    pub fn attempt(&mut self) -> Option<Option<Attempt>> {
        if !self.bool()? {
            return Some(None);
        }
        Some(Some(Attempt {
            n: self.u32()?,
            started_ms: self.i64()?,
            duration_ms: self.u64()?,
            request: self.str()?,
            response: self.str()?,
            outcome: self.state()?,
            reason: self.reason()?,
        }))
    }

    pub fn xref(&mut self) -> Option<Xref> {
        Some(Xref {
            system: self.str()?,
            kind: self.str()?,
            crm_id: self.str()?,
            external_id: self.str()?,
            flow: self.str()?,
            job: self.u64()?,
            at_ms: self.i64()?,
        })
    }

    pub fn applied(&mut self) -> Option<Applied> {
        Some(Applied {
            version: self.opt_str()?,
            seq: self.u64()?,
            at: self.position()?,
            digest: None,
        })
    }

    pub fn digest(&mut self) -> Option<Option<u64>> {
        Some(Some(self.u64()?).filter(|d| *d != 0))
    }

    pub fn effects(&mut self) -> Option<Vec<Effect>> {
        let count = self.u64()?;
        let mut effects = Vec::new();
        for _ in 0..count {
            let (&kind, rest) = self.0.split_first()?;
            self.0 = rest;
            effects.push(match kind {
                0 => Effect::Xref(self.xref()?),
                1 => Effect::Applied {
                    flow: self.str()?,
                    record: self.str()?,
                    applied: self.applied()?,
                },
                4 => {
                    let (flow, record) = (self.str()?, self.str()?);
                    let mut applied = self.applied()?;
                    applied.digest = self.digest()?;
                    Effect::Applied {
                        flow,
                        record,
                        applied,
                    }
                }
                2 => Effect::Status {
                    order: self.str()?,
                    status: self.str()?,
                },
                3 => {
                    let record = self.str()?;
                    let at_ms = self.i64()?;
                    let fields: serde_json::Map<String, Value> =
                        serde_json::from_str(&self.str()?).ok()?;
                    Effect::Echo {
                        record,
                        echo: Echo { fields, at_ms },
                    }
                }
                _ => return None,
            });
        }
        Some(effects)
    }

    /// Every byte was read.
    pub fn end(&self) -> Option<()> {
        self.0.is_empty().then_some(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_round_trip_at_their_edges() {
        let unsigned = [
            0,
            1,
            127,
            128,
            16_383,
            16_384,
            u64::from(u32::MAX),
            u64::MAX,
        ];
        let signed = [0, -1, 1, i64::MIN, i64::MAX, 1_764_000_000_000];
        let mut buf = Vec::new();
        let mut out = Out(&mut buf);
        unsigned.iter().for_each(|n| out.u64(*n));
        signed.iter().for_each(|n| out.i64(*n));
        out.opt_u64(None);
        out.opt_u64(Some(0));
        let mut input = In(&buf);
        for n in unsigned {
            assert_eq!(input.u64(), Some(n));
        }
        for n in signed {
            assert_eq!(input.i64(), Some(n));
        }
        assert_eq!(input.opt_u64(), Some(None));
        assert_eq!(input.opt_u64(), Some(Some(0)));
        assert_eq!(input.end(), Some(()));
        assert_eq!(input.u64(), None);
    }

    #[test]
    fn a_varint_longer_than_64_bits_is_refused() {
        assert_eq!(In(&[0xff; 11]).u64(), None);
    }

    #[test]
    fn every_effect_round_trips() {
        let effects = vec![
            Effect::Xref(Xref {
                system: "erp".into(),
                kind: "account".into(),
                crm_id: "001".into(),
                external_id: "C-1".into(),
                flow: "account_to_customer".into(),
                job: 9,
                at_ms: 5,
            }),
            Effect::Applied {
                flow: "f".into(),
                record: "r".into(),
                applied: Applied {
                    version: None,
                    seq: 3,
                    at: Position {
                        segment: 1,
                        offset: 2,
                    },
                    digest: Some(u64::MAX),
                },
            },
            Effect::Status {
                order: "o".into(),
                status: "shipped".into(),
            },
            Effect::Echo {
                record: "006".into(),
                echo: Echo {
                    fields: serde_json::json!({"StageName": "Shipped", "n": 1.5})
                        .as_object()
                        .cloned()
                        .unwrap(),
                    at_ms: -4,
                },
            },
        ];
        let mut buf = Vec::new();
        Out(&mut buf).effects(&effects);
        let mut input = In(&buf);
        assert_eq!(input.effects(), Some(effects));
        assert_eq!(input.end(), Some(()));
        // Cut short anywhere, it does not decode.
        for len in 0..buf.len() {
            assert_eq!(In(&buf[..len]).effects(), None, "cut at {len}");
        }
    }
}
