//! The dedupe index: which (source, event id) pairs the journal holds within the window.
//!
//! It lives in memory, owned by the committer thread, and is derived from the journal: on open,
//! the records received within the window are read back (`rebuild` in mod.rs), so a crash loses
//! nothing and nothing else has to be written on the acknowledgement path. Entries older than
//! the window are dropped as the committer goes (`expire`, at most once a minute).
//!
//! ```text
//! key: the first 16 bytes of SHA-256(source 0x00 event id)  ->  (seq, received unix secs)
//! ```
//!
//! A key is a hash so that every entry has the same small size (a million events in the window
//! take ~34 MB, not ~120 MB); two ids colliding in 128 bits is not a practical concern.
//!
//! A clean close saves the index beside the segments (`save`); the next open reads it instead
//! of reading the window's records back (`load`), but only when the journal ends where it ended
//! then, and it removes the file, so a later crash always rebuilds from the records.
//!
//! ```text
//! <data_dir>/journal/dedupe.snap
//!   "handoff dedupe 1\n" | next seq u64 | entries u64 | (key [16] | seq u64 | secs i64)… | crc32
//! ```

use std::collections::HashMap;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

const EXPIRE_EVERY: Duration = Duration::from_secs(60);
const MAGIC: &[u8] = b"handoff dedupe 1\n";
const ENTRY: usize = 32;

pub type Key = [u8; 16];

pub struct Dedupe {
    entries: HashMap<Key, (u64, i64)>,
    window_secs: i64,
    last_expiry: Instant,
}

impl Dedupe {
    pub fn new(window_secs: i64) -> Self {
        Dedupe {
            entries: HashMap::new(),
            window_secs,
            last_expiry: Instant::now(),
        }
    }

    pub fn window_secs(&self) -> i64 {
        self.window_secs
    }

    /// The first copy's seq if `key` was seen within the window before `received`.
    pub fn lookup(&self, key: &Key, received: i64) -> Option<u64> {
        let (seq, seen) = self.entries.get(key)?;
        (received - seen <= self.window_secs).then_some(*seq)
    }

    pub fn insert(&mut self, key: Key, seq: u64, received: i64) {
        self.entries.insert(key, (seq, received));
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Drops entries older than the window, at most once per `EXPIRE_EVERY` unless forced.
    pub fn expire(&mut self, now: i64, force: bool) -> usize {
        if !force && self.last_expiry.elapsed() < EXPIRE_EVERY {
            return 0;
        }
        self.last_expiry = Instant::now();
        let before = self.entries.len();
        let window = self.window_secs;
        self.entries.retain(|_, (_, seen)| now - *seen <= window);
        before - self.entries.len()
    }

    /// Writes the index for a journal that ends before `next_seq` (at a clean close).
    pub fn save(&self, dir: &Path, next_seq: u64) -> std::io::Result<()> {
        let mut out = Vec::with_capacity(MAGIC.len() + 20 + self.entries.len() * ENTRY);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&next_seq.to_le_bytes());
        out.extend_from_slice(&(self.entries.len() as u64).to_le_bytes());
        for (key, (seq, received)) in &self.entries {
            out.extend_from_slice(key);
            out.extend_from_slice(&seq.to_le_bytes());
            out.extend_from_slice(&received.to_le_bytes());
        }
        crate::store::save_checked(&path(dir), out)
    }

    /// The index a clean close saved, if the journal still ends before `next_seq`; entries
    /// older than the window at `now` are left out. The file is removed either way. It is read
    /// as a stream (the checksum checked at the end), not held whole beside the index.
    pub fn load(dir: &Path, next_seq: u64, window_secs: i64, now: i64) -> Option<Dedupe> {
        let file = File::open(path(dir)).ok();
        let _ = std::fs::remove_file(path(dir));
        let file = file?;
        let size = file.metadata().ok()?.len();
        let mut input = std::io::BufReader::with_capacity(1 << 16, file);
        let mut crc = crc32fast::Hasher::new();
        let mut read = |buf: &mut [u8]| -> Option<()> {
            input.read_exact(buf).ok()?;
            crc.update(buf);
            Some(())
        };
        let mut head = [0; MAGIC.len() + 16];
        read(&mut head)?;
        let word = |at: usize| u64::from_le_bytes(head[at..at + 8].try_into().expect("8 bytes"));
        let (saved_next_seq, count) = (word(MAGIC.len()), word(MAGIC.len() + 8));
        let fits = count.checked_mul(ENTRY as u64)? < size;
        if !head.starts_with(MAGIC) || saved_next_seq != next_seq || !fits {
            return None;
        }
        let mut dedupe = Dedupe::new(window_secs);
        dedupe.entries.reserve(usize::try_from(count).ok()?);
        let mut entry = [0; ENTRY];
        for _ in 0..count {
            read(&mut entry)?;
            let (key, rest) = entry.split_at(16);
            let seq = u64::from_le_bytes(rest[..8].try_into().expect("8 bytes"));
            let received = i64::from_le_bytes(rest[8..].try_into().expect("8 bytes"));
            if now - received <= window_secs {
                dedupe.insert(key.try_into().expect("16 bytes"), seq, received);
            }
        }
        let computed = crc.finalize();
        let mut stored = [0; 4];
        input.read_exact(&mut stored).ok()?;
        if computed != u32::from_le_bytes(stored) {
            tracing::warn!("dedupe snapshot fails its checksum; reading the journal instead");
            return None;
        }
        Some(dedupe)
    }
}

fn path(dir: &Path) -> PathBuf {
    dir.join("dedupe.snap")
}

pub fn key(source: &str, id: &str) -> Key {
    let mut hash = Sha256::new();
    hash.update(source.as_bytes());
    hash.update([0]);
    hash.update(id.as_bytes());
    let digest = hash.finalize();
    digest[..16].try_into().expect("SHA-256 is 32 bytes")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookups_respect_the_window_and_expiry_drops_old_entries() {
        let mut d = Dedupe::new(100);
        d.insert(key("crm", "a"), 1, 1000);
        d.insert(key("crm", "b"), 2, 1090);
        assert_eq!(d.lookup(&key("crm", "a"), 1100), Some(1));
        assert_eq!(d.lookup(&key("crm", "a"), 1101), None);
        assert_eq!(d.lookup(&key("other", "a"), 1000), None);
        assert_eq!(
            d.lookup(&key("cr", "m\0a"), 1000),
            None,
            "the separator counts"
        );
        assert_eq!(d.expire(1150, true), 1);
        assert_eq!(d.len(), 1);
    }

    #[test]
    fn a_saved_index_loads_once_and_only_for_the_same_journal_end() {
        let dir = tempfile::tempdir().unwrap();
        let mut d = Dedupe::new(100);
        d.insert(key("crm", "old"), 1, 900);
        d.insert(key("crm", "a"), 2, 1000);
        d.save(dir.path(), 3).unwrap();
        let loaded = Dedupe::load(dir.path(), 3, 100, 1050).unwrap();
        assert_eq!(loaded.lookup(&key("crm", "a"), 1050), Some(2));
        assert_eq!(loaded.len(), 1, "entries outside the window are left out");
        assert!(
            Dedupe::load(dir.path(), 3, 100, 1050).is_none(),
            "removed once read"
        );

        d.save(dir.path(), 3).unwrap();
        assert!(
            Dedupe::load(dir.path(), 4, 100, 1050).is_none(),
            "the journal grew since"
        );
        d.save(dir.path(), 3).unwrap();
        let mut raw = std::fs::read(path(dir.path())).unwrap();
        raw[40] ^= 1;
        std::fs::write(path(dir.path()), raw).unwrap();
        assert!(Dedupe::load(dir.path(), 3, 100, 1050).is_none(), "damaged");
    }
}
