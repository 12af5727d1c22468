//! Segment files: the on-disk form of the journal.
//!
//! ```text
//! <data_dir>/journal/<first seq, 20 digits>.log   segments, each preallocated
//! <data_dir>/journal/spare.tmp                     the next segment, allocated ahead of time
//!
//! record = len: u32 LE | crc32: u32 LE (of seq ++ payload) | seq: u64 LE | payload (len bytes)
//! ```
//!
//! Sequence numbers are contiguous from 1. Segments are preallocated with `fallocate` because
//! `fdatasync` into allocated blocks skips the file-size update that an append must commit
//! (0.33 ms against 0.6 ms per fsync here, BENCHMARKS.md); zero-filling them instead was cheaper
//! per fsync still, but its bulk writes slowed the fsyncs around them. A background thread
//! prepares the spare so that rolling over never waits. A reader stops at the first record that
//! is not whole, correct and next in sequence: the zeros after the last record, or a write torn
//! by a crash. On open the last segment is cut after its last good record and writing continues in a
//! fresh segment. Each new segment's directory entry is fsynced before the segment is used.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;

use super::tail::Position;

/// Default size of a segment.
pub const SEGMENT_BYTES: u64 = 64 * 1024 * 1024;
const HEADER: usize = 16;
/// A record larger than this is corruption, not data (bodies are limited far below it).
const MAX_RECORD: u32 = 256 * 1024 * 1024;
const SPARE: &str = "spare.tmp";

/// Why a commit failed.
#[derive(Debug, thiserror::Error)]
pub enum CommitError {
    /// No next segment could be made (a full disk): nothing was written, the journal can go on
    /// once there is space.
    #[error("cannot start the next journal segment: {0}")]
    RollOver(#[source] io::Error),
    /// A write or fsync failed: after a failed fsync the kernel may have dropped dirty pages, so
    /// no later fsync proves anything about this file.
    #[error("journal write or fsync failed: {0}")]
    Write(#[source] io::Error),
}

/// The segment being written.
pub struct Writer {
    dir: PathBuf,
    segment_bytes: u64,
    file: File,
    /// The first seq of `file` (its name).
    first: u64,
    /// Bytes of whole records in `file`.
    len: u64,
    next_seq: u64,
    buffer: Vec<u8>,
    spare: Spare,
    /// The owner decides where segments end (`roll_over`); a commit never rolls over by itself.
    manual_roll: bool,
}

/// The next segment.
enum Spare {
    Preparing(JoinHandle<io::Result<PathBuf>>),
    Ready(PathBuf),
    /// Preparing it failed (a full disk); the next roll-over or probe tries again.
    Missing,
}

impl Spare {
    fn spawn(dir: PathBuf, segment_bytes: u64) -> Spare {
        let thread = std::thread::Builder::new()
            .name("journal-spare".into())
            .spawn(move || prepare_spare(dir, segment_bytes))
            .expect("spawn the spare-segment thread");
        Spare::Preparing(thread)
    }
}

impl Writer {
    /// Opens the journal directory: cuts the last segment after its last good record and starts
    /// a new segment.
    pub fn open(dir: &Path, segment_bytes: u64) -> io::Result<Writer> {
        fs::create_dir_all(dir)?;
        let mut next_seq = 1;
        if let Some((path, first)) = list(dir)?.pop() {
            let mut file = OpenOptions::new().read(true).write(true).open(&path)?;
            let (len, last_seq) = scan(&mut file, first)?;
            if len == 0 {
                drop(file);
                fs::remove_file(&path)?;
            } else {
                file.set_len(len)?;
                file.sync_all()?;
            }
            next_seq = last_seq.map_or(first, |seq| seq + 1);
        }
        let first_spare = prepare_spare(dir.to_owned(), segment_bytes)?;
        let file = install(dir, &first_spare, next_seq)?;
        Ok(Writer {
            dir: dir.to_owned(),
            segment_bytes,
            file,
            first: next_seq,
            len: 0,
            next_seq,
            buffer: Vec::new(),
            spare: Spare::spawn(dir.to_owned(), segment_bytes),
            manual_roll: false,
        })
    }

    /// Like `open`, but segments end only where the owner calls [`Writer::roll_over`]: the
    /// queue log gives each record its position when it is appended, before it is written.
    pub fn open_manual(dir: &Path, segment_bytes: u64) -> io::Result<Writer> {
        let mut writer = Writer::open(dir, segment_bytes)?;
        writer.manual_roll = true;
        Ok(writer)
    }

    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Where the next record will start (after the last committed one).
    pub fn end(&self) -> Position {
        Position {
            segment: self.first,
            offset: self.len,
        }
    }

    /// Adds a record to the pending write; returns its sequence number.
    pub fn push(&mut self, payload: &[u8]) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        let len = u32::try_from(payload.len()).expect("records are far below 4 GiB");
        self.buffer.extend_from_slice(&len.to_le_bytes());
        self.buffer
            .extend_from_slice(&checksum(seq, payload).to_le_bytes());
        self.buffer.extend_from_slice(&seq.to_le_bytes());
        self.buffer.extend_from_slice(payload);
        seq
    }

    /// Writes the pending records and fsyncs. On failure nothing of the batch counts: the next
    /// batch overwrites it and reuses its sequence numbers.
    pub fn commit(&mut self, first_pending_seq: u64) -> Result<(), CommitError> {
        let result = self.write_and_sync(first_pending_seq);
        if result.is_err() {
            self.buffer.clear();
            self.next_seq = first_pending_seq;
            let _ = self.file.seek(SeekFrom::Start(self.len));
        }
        result
    }

    fn write_and_sync(&mut self, first_pending_seq: u64) -> Result<(), CommitError> {
        if !self.manual_roll
            && self.len > 0
            && self.len + self.buffer.len() as u64 > self.segment_bytes
        {
            self.roll_over(first_pending_seq)
                .map_err(CommitError::RollOver)?;
        }
        self.file
            .write_all(&self.buffer)
            .map_err(CommitError::Write)?;
        self.file.sync_data().map_err(CommitError::Write)?;
        self.len += self.buffer.len() as u64;
        self.buffer.clear();
        Ok(())
    }

    /// Closes the full segment (cut to its records) and continues in the spare, whose first
    /// record will be `first_seq`. Nothing may be pending.
    pub fn roll_over(&mut self, first_seq: u64) -> io::Result<()> {
        self.file.set_len(self.len)?;
        self.file.sync_all()?;
        let spare = self.take_spare()?;
        self.file = install(&self.dir, &spare, first_seq)?;
        self.first = first_seq;
        self.len = 0;
        self.spare = Spare::spawn(self.dir.clone(), self.segment_bytes);
        Ok(())
    }

    /// The spare's path, waiting for it or preparing it now; on failure none is left.
    fn take_spare(&mut self) -> io::Result<PathBuf> {
        match std::mem::replace(&mut self.spare, Spare::Missing) {
            Spare::Preparing(thread) => thread
                .join()
                .map_err(|_| io::Error::other("the spare-segment thread panicked"))?,
            Spare::Ready(path) => Ok(path),
            Spare::Missing => prepare_spare(self.dir.clone(), self.segment_bytes),
        }
    }

    /// Whether the journal can go on: the spare segment is ready, or still being prepared. A
    /// spare that failed (disk full) is tried again here, so readiness comes back with space.
    pub fn check_spare(&mut self) -> io::Result<()> {
        if let Spare::Preparing(thread) = &self.spare
            && !thread.is_finished()
        {
            return Ok(());
        }
        let path = self.take_spare()?;
        self.spare = Spare::Ready(path);
        Ok(())
    }
}

fn checksum(seq: u64, payload: &[u8]) -> u32 {
    let mut crc = crc32fast::Hasher::new();
    crc.update(&seq.to_le_bytes());
    crc.update(payload);
    crc.finalize()
}

/// Creates the spare segment with its blocks allocated (reading as zeros) and makes it durable.
fn prepare_spare(dir: PathBuf, segment_bytes: u64) -> io::Result<PathBuf> {
    let path = dir.join(SPARE);
    let file = File::create(&path)?;
    allocate(&file, segment_bytes)?;
    file.sync_all()?;
    Ok(path)
}

#[cfg(target_os = "linux")]
fn allocate(file: &File, len: u64) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let len = libc::off_t::try_from(len).unwrap_or(libc::off_t::MAX);
    // SAFETY: `file` is an open descriptor for the duration of the call.
    if unsafe { libc::fallocate(file.as_raw_fd(), 0, 0, len) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Elsewhere a sparse file: correct, with appends' fsync cost.
#[cfg(not(target_os = "linux"))]
fn allocate(file: &File, len: u64) -> io::Result<()> {
    file.set_len(len)
}

/// Renames the spare to the segment starting at `first_seq`, durably; returns it open.
fn install(dir: &Path, spare: &Path, first_seq: u64) -> io::Result<File> {
    let path = segment_path(dir, first_seq);
    fs::rename(spare, &path)?;
    File::open(dir)?.sync_all()?;
    OpenOptions::new().write(true).open(&path)
}

/// The record that starts at byte `offset` of `file`, whatever its seq: (seq, payload), or
/// `None` when no whole, correct record starts there.
pub fn read_at(file: &File, offset: u64) -> io::Result<Option<(u64, Vec<u8>)>> {
    use std::os::unix::fs::FileExt;
    let mut header = [0u8; HEADER];
    file.read_exact_at(&mut header, offset)?;
    let len = u32::from_le_bytes(header[0..4].try_into().expect("4 bytes"));
    let crc = u32::from_le_bytes(header[4..8].try_into().expect("4 bytes"));
    let seq = u64::from_le_bytes(header[8..16].try_into().expect("8 bytes"));
    if len > MAX_RECORD {
        return Ok(None);
    }
    let mut payload = vec![0; len as usize];
    file.read_exact_at(&mut payload, offset + HEADER as u64)?;
    Ok((checksum(seq, &payload) == crc).then_some((seq, payload)))
}

/// Bytes a record of `payload_len` bytes takes in a segment.
pub fn record_len(payload_len: usize) -> u64 {
    (HEADER + payload_len) as u64
}

/// Segment files in order, with their first sequence numbers.
pub fn list(dir: &Path) -> io::Result<Vec<(PathBuf, u64)>> {
    let mut segments = Vec::new();
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        let first = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".log"))
            .and_then(|n| n.parse::<u64>().ok());
        if let Some(first) = first {
            segments.push((path, first));
        }
    }
    segments.sort_by_key(|(_, first)| *first);
    Ok(segments)
}

pub fn segment_path(dir: &Path, first_seq: u64) -> PathBuf {
    dir.join(format!("{first_seq:020}.log"))
}

/// Length of the good records at the start of `file`, and the last one's seq.
fn scan(file: &mut File, first: u64) -> io::Result<(u64, Option<u64>)> {
    file.seek(SeekFrom::Start(0))?;
    let mut reader = Records::new(BufReader::new(file.try_clone()?), first);
    let mut last = None;
    for record in reader.by_ref() {
        last = Some(record?.0);
    }
    Ok((reader.offset, last))
}

/// Reads a segment's records until the first that is torn, corrupt, zero or out of sequence.
pub struct Records<R> {
    reader: R,
    pub offset: u64,
    expected_seq: u64,
}

impl<R: Read> Records<R> {
    /// `first` is the segment's first sequence number (from its name).
    pub fn new(reader: R, first: u64) -> Self {
        Records::at(reader, first, 0)
    }

    /// Reads from byte `offset` of a segment, where the record `seq` starts.
    pub fn at(reader: R, seq: u64, offset: u64) -> Self {
        Records {
            reader,
            offset,
            expected_seq: seq,
        }
    }
}

impl<R: Read> Iterator for Records<R> {
    type Item = io::Result<(u64, Vec<u8>)>;

    fn next(&mut self) -> Option<Self::Item> {
        let mut header = [0u8; HEADER];
        if read_full(&mut self.reader, &mut header).ok()? < HEADER {
            return None;
        }
        let len = u32::from_le_bytes(header[0..4].try_into().ok()?);
        let crc = u32::from_le_bytes(header[4..8].try_into().ok()?);
        let seq = u64::from_le_bytes(header[8..16].try_into().ok()?);
        if len > MAX_RECORD || seq != self.expected_seq {
            return None;
        }
        let mut payload = vec![0; len as usize];
        if read_full(&mut self.reader, &mut payload).ok()? < payload.len() {
            return None;
        }
        if checksum(seq, &payload) != crc {
            return None;
        }
        self.expected_seq += 1;
        self.offset += (HEADER + payload.len()) as u64;
        Some(Ok((seq, payload)))
    }
}

/// Like `read_exact`, but a short read at the end is a count, not an error.
fn read_full(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}

/// Every record with `seq >= from`, across segments, in order.
pub fn read_from(
    dir: &Path,
    from: u64,
) -> io::Result<impl Iterator<Item = io::Result<(u64, Vec<u8>)>> + use<>> {
    let segments = list(dir)?;
    // Skip whole segments that end before `from`.
    let start = segments
        .iter()
        .rposition(|(_, first)| *first <= from)
        .unwrap_or(0);
    let files = segments[start..]
        .iter()
        .map(|(path, first)| Ok((File::open(path)?, *first)))
        .collect::<io::Result<Vec<_>>>()?;
    Ok(files
        .into_iter()
        .flat_map(|(file, first)| Records::new(BufReader::with_capacity(1 << 20, file), first))
        .filter(move |record| !matches!(record, Ok((seq, _)) if *seq < from)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_a_torn_tail_is_cut() {
        let dir = tempfile::tempdir().unwrap();
        let mut writer = Writer::open(dir.path(), 4096).unwrap();
        let first = writer.next_seq();
        writer.push(b"one");
        writer.push(b"two");
        writer.commit(first).unwrap();
        drop(writer);

        // A crash mid-write leaves half a record behind the last good one.
        let (path, _) = list(dir.path()).unwrap().pop().unwrap();
        let mut file = OpenOptions::new().write(true).open(&path).unwrap();
        file.seek(SeekFrom::Start(2 * HEADER as u64 + 6)).unwrap();
        file.write_all(&[9, 0, 0, 0, 1, 2]).unwrap();
        drop(file);

        let mut writer = Writer::open(dir.path(), 4096).unwrap();
        assert_eq!(writer.next_seq(), 3);
        let seq = writer.push(b"three");
        writer.commit(seq).unwrap();
        let all: Vec<(u64, Vec<u8>)> = read_from(dir.path(), 0)
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert_eq!(
            all,
            vec![
                (1, b"one".to_vec()),
                (2, b"two".to_vec()),
                (3, b"three".to_vec())
            ]
        );
        let tail: Vec<u64> = read_from(dir.path(), 2)
            .unwrap()
            .map(|r| r.unwrap().0)
            .collect();
        assert_eq!(tail, vec![2, 3]);
    }

    #[test]
    fn a_corrupt_record_ends_the_readable_journal() {
        let dir = tempfile::tempdir().unwrap();
        let mut writer = Writer::open(dir.path(), 4096).unwrap();
        writer.push(b"good");
        writer.push(b"flipped");
        writer.commit(1).unwrap();
        drop(writer);
        let (path, _) = list(dir.path()).unwrap().pop().unwrap();
        let mut bytes = fs::read(&path).unwrap();
        let last = 2 * HEADER + b"good".len() + b"flipped".len() - 1;
        bytes[last] ^= 0xff;
        fs::write(&path, bytes).unwrap();
        let writer = Writer::open(dir.path(), 4096).unwrap();
        assert_eq!(writer.next_seq(), 2);
    }

    #[test]
    fn segments_roll_over_and_read_back_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let mut writer = Writer::open(dir.path(), 256).unwrap();
        for n in 0..20u64 {
            let seq = writer.push(&[n as u8; 40]);
            writer.commit(seq).unwrap();
        }
        drop(writer);
        assert!(list(dir.path()).unwrap().len() > 3);
        let writer = Writer::open(dir.path(), 256).unwrap();
        assert_eq!(writer.next_seq(), 21);
        let seqs: Vec<u64> = read_from(dir.path(), 0)
            .unwrap()
            .map(|r| r.unwrap().0)
            .collect();
        assert_eq!(seqs, (1..=20).collect::<Vec<_>>());
        let tail: Vec<u64> = read_from(dir.path(), 17)
            .unwrap()
            .map(|r| r.unwrap().0)
            .collect();
        assert_eq!(tail, vec![17, 18, 19, 20]);
    }
}
