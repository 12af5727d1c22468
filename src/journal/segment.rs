//! Segment files: the on-disk form of the journal.
//!
//! ```text
//! <data_dir>/journal/<first seq, 20 digits>.log      segments, rolled at SEGMENT_BYTES
//!
//! record = len: u32 LE | crc32: u32 LE (of seq ++ payload) | seq: u64 LE | payload (len bytes)
//! ```
//!
//! Sequence numbers are contiguous from 1. On open the last segment is scanned and cut after its
//! last whole record, so a write torn by a crash never reaches a reader. A new segment's directory
//! entry is fsynced before the segment is used.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// A segment is closed once it grows past this.
pub const SEGMENT_BYTES: u64 = 128 * 1024 * 1024;
const HEADER: usize = 16;
/// A record larger than this is corruption, not data (bodies are limited far below it).
const MAX_RECORD: u32 = 256 * 1024 * 1024;

/// The segment being appended to.
pub struct Writer {
    dir: PathBuf,
    file: File,
    /// Bytes of whole records in `file`.
    len: u64,
    next_seq: u64,
    buffer: Vec<u8>,
}

impl Writer {
    /// Opens the journal directory, repairing a torn tail.
    pub fn open(dir: &Path) -> io::Result<Writer> {
        fs::create_dir_all(dir)?;
        let segments = list(dir)?;
        let (path, first) = match segments.last() {
            Some(last) => last.clone(),
            None => {
                let path = segment_path(dir, 1);
                create_synced(dir, &path)?;
                (path, 1)
            }
        };
        let mut file = OpenOptions::new().read(true).write(true).open(&path)?;
        let (len, last_seq) = scan(&mut file)?;
        if file.metadata()?.len() != len {
            file.set_len(len)?;
            file.sync_all()?;
        }
        file.seek(SeekFrom::Start(len))?;
        Ok(Writer {
            dir: dir.to_owned(),
            file,
            len,
            next_seq: last_seq.map_or(first, |seq| seq + 1),
            buffer: Vec::new(),
        })
    }

    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Adds a record to the pending write; returns its sequence number.
    pub fn push(&mut self, payload: &[u8]) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        let len = u32::try_from(payload.len()).expect("records are far below 4 GiB");
        let mut crc = crc32fast::Hasher::new();
        crc.update(&seq.to_le_bytes());
        crc.update(payload);
        self.buffer.extend_from_slice(&len.to_le_bytes());
        self.buffer.extend_from_slice(&crc.finalize().to_le_bytes());
        self.buffer.extend_from_slice(&seq.to_le_bytes());
        self.buffer.extend_from_slice(payload);
        seq
    }

    /// Writes the pending records and fsyncs. On failure the file is cut back to its last whole
    /// record and the sequence numbers handed out since are reused.
    pub fn commit(&mut self, first_pending_seq: u64) -> io::Result<()> {
        let result = self.write_and_sync();
        if result.is_err() {
            self.buffer.clear();
            self.next_seq = first_pending_seq;
            let _ = self.file.set_len(self.len);
            let _ = self.file.seek(SeekFrom::Start(self.len));
        }
        result
    }

    fn write_and_sync(&mut self) -> io::Result<()> {
        if self.len >= SEGMENT_BYTES && !self.buffer.is_empty() {
            let path = segment_path(&self.dir, self.next_seq_of_buffer());
            create_synced(&self.dir, &path)?;
            self.file = OpenOptions::new().read(true).write(true).open(&path)?;
            self.len = 0;
        }
        self.file.write_all(&self.buffer)?;
        self.file.sync_data()?;
        self.len += self.buffer.len() as u64;
        self.buffer.clear();
        Ok(())
    }

    /// The sequence number of the first record in the pending buffer.
    fn next_seq_of_buffer(&self) -> u64 {
        let bytes: [u8; 8] = self.buffer[8..16].try_into().expect("a whole header");
        u64::from_le_bytes(bytes)
    }
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

fn segment_path(dir: &Path, first_seq: u64) -> PathBuf {
    dir.join(format!("{first_seq:020}.log"))
}

/// Creates an empty file and makes its directory entry durable.
fn create_synced(dir: &Path, path: &Path) -> io::Result<()> {
    File::create(path)?.sync_all()?;
    File::open(dir)?.sync_all()
}

/// Length of the whole records at the start of `file`, and the last one's seq.
fn scan(file: &mut File) -> io::Result<(u64, Option<u64>)> {
    file.seek(SeekFrom::Start(0))?;
    let mut reader = Records::new(BufReader::new(file.try_clone()?));
    let mut last = None;
    for record in reader.by_ref() {
        last = Some(record?.0);
    }
    Ok((reader.offset, last))
}

/// Reads records until the end or the first torn or corrupt one.
pub struct Records<R> {
    reader: R,
    pub offset: u64,
}

impl<R: Read> Records<R> {
    pub fn new(reader: R) -> Self {
        Records { reader, offset: 0 }
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
        if len > MAX_RECORD {
            return None;
        }
        let mut payload = vec![0; len as usize];
        if read_full(&mut self.reader, &mut payload).ok()? < payload.len() {
            return None;
        }
        let mut hasher = crc32fast::Hasher::new();
        hasher.update(&seq.to_le_bytes());
        hasher.update(&payload);
        if hasher.finalize() != crc {
            return None;
        }
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
        .map(|(path, _)| File::open(path))
        .collect::<io::Result<Vec<_>>>()?;
    Ok(files
        .into_iter()
        .flat_map(|file| Records::new(BufReader::with_capacity(1 << 20, file)))
        .filter(move |record| !matches!(record, Ok((seq, _)) if *seq < from)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_a_torn_tail_is_cut() {
        let dir = tempfile::tempdir().unwrap();
        let mut writer = Writer::open(dir.path()).unwrap();
        let first = writer.next_seq();
        writer.push(b"one");
        writer.push(b"two");
        writer.commit(first).unwrap();
        drop(writer);

        // A crash mid-write leaves half a record behind.
        let (path, _) = list(dir.path()).unwrap().pop().unwrap();
        let mut file = OpenOptions::new().append(true).open(&path).unwrap();
        file.write_all(&[9, 0, 0, 0, 1, 2]).unwrap();
        drop(file);

        let mut writer = Writer::open(dir.path()).unwrap();
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
        let mut writer = Writer::open(dir.path()).unwrap();
        writer.push(b"good");
        writer.push(b"flipped");
        writer.commit(1).unwrap();
        drop(writer);
        let (path, _) = list(dir.path()).unwrap().pop().unwrap();
        let mut bytes = fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        fs::write(&path, bytes).unwrap();
        let writer = Writer::open(dir.path()).unwrap();
        assert_eq!(writer.next_seq(), 2);
    }
}
