//! The schedule as it stood at one point of the queue log, so that an open reads it and the log
//! after that point instead of the whole log. Written every so often while running (`upkeep`)
//! and at a clean shutdown.
//!
//! ```text
//! <data_dir>/queue/schedule.snap
//!   "handoff schedule 2\n"
//!   token u64 | replay_from u64 (first log seq not in it) | next_id u64 | cursor (text, JSON)
//!   names u32 | names: text…
//!   entries u64, in id order:
//!     id u64 | key name u32 | connector name u32 | state u8 | flags u8 | created u64
//!     [last u64] [payload u64] [due i64] [waits_for: kind, id] [reason]
//!   recent u64, in id order: id u64 | created u64 | last u64 | payload u64
//!   crc32 of everything before it, u32                           (text: len u32, UTF-8)
//! <data_dir>/queue/clean      the token of the snapshot a clean shutdown wrote, removed on open
//! ```
//!
//! # Invariants
//!
//! - The snapshot holds every record below `replay_from`; those records are on disk before the
//!   file is (the log is synced first), so replaying from there misses nothing.
//! - `clean` names the snapshot written at a clean shutdown: only then does the next open
//!   leave open jobs out of doubt. Open removes it before any work.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::queue::Cursor;
use crate::queue::job::{JobId, State};
use crate::queue::lines::{Entry, Locs};

const MAGIC: &[u8] = b"handoff schedule 2\n";
const DUE: u8 = 1;
const WAITS_FOR: u8 = 2;
const REASON: u8 = 4;
const IN_DOUBT: u8 = 8;
const LAST: u8 = 16;
const PAYLOAD: u8 = 32;

pub fn path(dir: &Path) -> PathBuf {
    dir.join("schedule.snap")
}

fn clean_path(dir: &Path) -> PathBuf {
    dir.join("clean")
}

/// What a snapshot holds besides the entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub token: u64,
    pub replay_from: u64,
    pub next_id: JobId,
    pub cursor: Cursor,
}

/// Encodes a snapshot (under the queue's lock: it only copies bytes).
pub fn encode<'a>(
    header: Header,
    entries: impl ExactSizeIterator<Item = (JobId, &'a Entry)> + Clone,
    recent: impl ExactSizeIterator<Item = (JobId, Locs)>,
) -> Vec<u8> {
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
    let mut out = Vec::with_capacity(128 + entries.len() * 40 + recent.len() * 32);
    out.extend_from_slice(MAGIC);
    for n in [header.token, header.replay_from, header.next_id] {
        out.extend_from_slice(&n.to_le_bytes());
    }
    text(
        &mut out,
        &serde_json::to_string(&header.cursor).expect("cursors serialize"),
    );
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
            (entry.at.last != 0, LAST),
            (entry.at.payload != 0, PAYLOAD),
        ]
        .iter()
        .filter(|(set, _)| *set)
        .fold(0, |flags, (_, bit)| flags | bit);
        out.push(flags);
        out.extend_from_slice(&entry.at.created.to_le_bytes());
        for pos in [entry.at.last, entry.at.payload] {
            if pos != 0 {
                out.extend_from_slice(&pos.to_le_bytes());
            }
        }
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
    out.extend_from_slice(&(recent.len() as u64).to_le_bytes());
    for (id, at) in recent {
        for n in [id, at.created, at.last, at.payload] {
            out.extend_from_slice(&n.to_le_bytes());
        }
    }
    out
}

/// Writes an encoded snapshot durably, replacing the earlier one.
pub fn write(dir: &Path, bytes: Vec<u8>) -> std::io::Result<()> {
    crate::store::save_checked(&path(dir), bytes)
}

/// Reads the snapshot: its header, then every entry handed to `place` in id order and every
/// recent job to `recent`. `None` when there is none or it does not check out.
pub fn read(
    dir: &Path,
    mut place: impl FnMut(JobId, Entry),
    mut recent: impl FnMut(JobId, Locs),
) -> Option<Header> {
    let raw = std::fs::read(path(dir)).ok()?;
    let (body, crc) = raw.split_at_checked(raw.len().checked_sub(4)?)?;
    if crc32fast::hash(body) != u32::from_le_bytes(crc.try_into().ok()?) {
        tracing::warn!("the queue's schedule snapshot fails its checksum");
        return None;
    }
    let mut input = Input(body.strip_prefix(MAGIC)?);
    let (token, replay_from, next_id) = (input.u64()?, input.u64()?, input.u64()?);
    let cursor = serde_json::from_str(input.text()?).ok()?;
    let names: Vec<Arc<str>> = (0..input.u32()?)
        .map(|_| input.text().map(Arc::from))
        .collect::<Option<_>>()?;
    for _ in 0..input.u64()? {
        let id = input.u64()?;
        let key = names.get(input.u32()? as usize)?.clone();
        let connector = names.get(input.u32()? as usize)?.clone();
        let state = *State::ALL.get(input.byte()? as usize)?;
        let flags = input.byte()?;
        let created = input.u64()?;
        let mut optional = |bit: u8| match flags & bit {
            0 => Some(0),
            _ => input.u64(),
        };
        let (last, payload) = (optional(LAST)?, optional(PAYLOAD)?);
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
        let entry = Entry {
            key,
            connector,
            state,
            due,
            waits_for,
            reason,
            in_doubt: flags & IN_DOUBT != 0,
            at: Locs {
                created,
                last,
                payload,
            },
        };
        place(id, entry);
    }
    for _ in 0..input.u64()? {
        let id = input.u64()?;
        let at = Locs {
            created: input.u64()?,
            last: input.u64()?,
            payload: input.u64()?,
        };
        recent(id, at);
    }
    input.0.is_empty().then_some(Header {
        token,
        replay_from,
        next_id,
        cursor,
    })
}

/// Marks the snapshot `token` as written at a clean shutdown.
pub fn mark_clean(dir: &Path, token: u64) -> std::io::Result<()> {
    crate::store::save_checked(&clean_path(dir), token.to_le_bytes().to_vec())
}

/// The token a clean shutdown left, removed (durably) so that a crash from now on is unclean.
pub fn take_clean(dir: &Path) -> std::io::Result<Option<u64>> {
    let path = clean_path(dir);
    let token = std::fs::read(&path).ok().and_then(|raw| {
        let (body, crc) = raw.split_at_checked(8)?;
        (crc32fast::hash(body) == u32::from_le_bytes(crc.try_into().ok()?))
            .then(|| u64::from_le_bytes(body.try_into().expect("8 bytes")))
    });
    if path.exists() {
        std::fs::remove_file(&path)?;
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(token)
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
