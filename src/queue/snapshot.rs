//! The schedule as a clean shutdown leaves it, read back on the next open instead of scanning
//! and decoding every `o/` entry (at a million queued jobs the scan takes seconds).
//!
//! ```text
//! <data_dir>/schedule.snap
//!   "handoff schedule 1\n"
//!   token u64 | names u32 | names: (len u32, UTF-8)… | entries u64
//!   entries, in id order: id u64 | key name u32 | connector name u32 | state u8 | flags u8
//!                         [due i64] [waits_for: kind, id] [reason]    (strings: len u32, UTF-8)
//!   crc32 of everything before it, u32
//! ```
//!
//! # Invariants
//!
//! - The file is trusted only when the store's clean-shutdown marker (`keys::CLEAN`) holds the
//!   same token. `Queue::close_clean` writes the file (fsynced, renamed into place) before the
//!   marker; `Queue::open` removes the marker before any work, so a file left by an earlier run
//!   is never read after a later crash: that open scans `o/`, which is the truth.
//! - At a clean shutdown the schedule equals the `o/` entries (every change is written before it
//!   is placed, and nothing is leased), so reading either gives the same schedule.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::job::{JobId, State};
use super::lines::Entry;

const MAGIC: &[u8] = b"handoff schedule 1\n";
const DUE: u8 = 1;
const WAITS_FOR: u8 = 2;
const REASON: u8 = 4;
const IN_DOUBT: u8 = 8;

pub fn path(data_dir: &Path) -> PathBuf {
    data_dir.join("schedule.snap")
}

/// Writes `entries` (in id order) under `token`, durably, replacing any earlier file.
pub fn write<'a>(
    data_dir: &Path,
    token: u64,
    entries: impl ExactSizeIterator<Item = (JobId, &'a Entry)> + Clone,
) -> std::io::Result<()> {
    let mut names: HashMap<&str, u32> = HashMap::new();
    let mut order: Vec<&str> = Vec::new();
    for (_, entry) in entries.clone() {
        for name in [&*entry.key, &*entry.connector] {
            names.entry(name).or_insert_with(|| {
                order.push(name);
                order.len() as u32 - 1
            });
        }
    }
    let mut out = Vec::with_capacity(64 + entries.len() * 24);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&token.to_le_bytes());
    out.extend_from_slice(&(order.len() as u32).to_le_bytes());
    for name in &order {
        text(&mut out, name);
    }
    out.extend_from_slice(&(entries.len() as u64).to_le_bytes());
    for (id, entry) in entries {
        out.extend_from_slice(&id.to_le_bytes());
        out.extend_from_slice(&names[&*entry.key].to_le_bytes());
        out.extend_from_slice(&names[&*entry.connector].to_le_bytes());
        out.push(state_code(entry.state));
        let flags = [
            (entry.due.is_some(), DUE),
            (entry.waits_for.is_some(), WAITS_FOR),
            (entry.reason.is_some(), REASON),
            (entry.in_doubt, IN_DOUBT),
        ]
        .iter()
        .filter(|(set, _)| *set)
        .fold(0, |flags, (_, bit)| flags | bit);
        out.push(flags);
        if let Some(due) = entry.due {
            out.extend_from_slice(&due.to_le_bytes());
        }
        if let Some(on) = &entry.waits_for {
            text(&mut out, &on.0);
            text(&mut out, &on.1);
        }
        if let Some(reason) = &entry.reason {
            text(&mut out, reason);
        }
    }
    crate::store::save_checked(&path(data_dir), out)
}

/// Hands every entry of the file written under `token` to `place`, in id order; `None` when
/// there is no such file or it does not check out (then the caller starts over from the store).
/// Entries are placed as they are read: a million of them in a list first would double the
/// memory a restart needs.
pub fn read(data_dir: &Path, token: u64, mut place: impl FnMut(JobId, Entry)) -> Option<()> {
    let raw = std::fs::read(path(data_dir)).ok()?;
    let (body, crc) = raw.split_at_checked(raw.len().checked_sub(4)?)?;
    if crc32fast::hash(body) != u32::from_le_bytes(crc.try_into().ok()?) {
        tracing::warn!("schedule snapshot fails its checksum; scanning the store instead");
        return None;
    }
    let mut input = Input(body.strip_prefix(MAGIC)?);
    if input.u64()? != token {
        return None;
    }
    let names: Vec<Arc<str>> = (0..input.u32()?)
        .map(|_| input.text().map(Arc::from))
        .collect::<Option<_>>()?;
    for _ in 0..input.u64()? {
        let id = input.u64()?;
        let key = names.get(input.u32()? as usize)?.clone();
        let connector = names.get(input.u32()? as usize)?.clone();
        let state = *State::ALL.get(input.byte()? as usize)?;
        let flags = input.byte()?;
        let due = match flags & DUE {
            0 => None,
            _ => Some(input.u64()? as i64),
        };
        let waits_for = match flags & WAITS_FOR {
            0 => None,
            _ => Some(Box::new((
                input.text()?.to_owned(),
                input.text()?.to_owned(),
            ))),
        };
        let reason = match flags & REASON {
            0 => None,
            _ => Some(input.text()?.into()),
        };
        let in_doubt = flags & IN_DOUBT != 0;
        place(
            id,
            Entry {
                key,
                connector,
                state,
                due,
                waits_for,
                reason,
                in_doubt,
            },
        );
    }
    input.0.is_empty().then_some(())
}

/// Removes the file (after it was read: the next clean shutdown writes a new one).
pub fn remove(data_dir: &Path) {
    let _ = std::fs::remove_file(path(data_dir));
}

fn state_code(state: State) -> u8 {
    State::ALL
        .iter()
        .position(|s| *s == state)
        .expect("every state is in ALL") as u8
}

fn text(out: &mut Vec<u8>, text: &str) {
    out.extend_from_slice(&(text.len() as u32).to_le_bytes());
    out.extend_from_slice(text.as_bytes());
}

/// What is left of the file to read.
struct Input<'a>(&'a [u8]);

impl<'a> Input<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, rest) = self.0.split_at_checked(n)?;
        self.0 = rest;
        Some(head)
    }

    fn byte(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }

    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }

    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }

    fn text(&mut self) -> Option<&'a str> {
        let len = self.u32()? as usize;
        std::str::from_utf8(self.take(len)?).ok()
    }
}
