//! Reading the journal in order from a remembered position, as the router does.

use std::fs::File;
use std::io::{self, BufReader, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::segment::{self, Records};

/// Where a record starts: its segment (named by its first seq) and the byte offset in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Position {
    pub segment: u64,
    pub offset: u64,
}

/// An in-order reader of committed records that remembers where it is.
pub struct Tail {
    dir: PathBuf,
    /// The next record to read and where it starts (`None`: not located yet).
    next_seq: u64,
    at: Option<Position>,
}

impl Tail {
    /// Starts at record `seq`; `at` is its position when known (from a saved cursor).
    pub fn new(dir: &Path, seq: u64, at: Option<Position>) -> Tail {
        Tail {
            dir: dir.to_owned(),
            next_seq: seq.max(1),
            at,
        }
    }

    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    pub fn position(&self) -> Option<Position> {
        self.at
    }

    /// Moves to the journal's end without reading what lies between (the records there were
    /// all ignored on arrival, see `Journal::end`).
    pub fn skip_to(&mut self, seq: u64, at: Position) {
        if seq > self.next_seq {
            self.next_seq = seq;
            self.at = Some(at);
        }
    }

    /// Up to `max` records below `limit` (the first seq not yet committed), with positions.
    pub fn read(&mut self, limit: u64, max: usize) -> io::Result<Vec<(u64, Position, Vec<u8>)>> {
        let mut out = Vec::new();
        while self.next_seq < limit && out.len() < max {
            let at = match self.at {
                Some(at) => at,
                None => self.locate()?,
            };
            let mut file = File::open(segment::segment_path(&self.dir, at.segment))?;
            file.seek(SeekFrom::Start(at.offset))?;
            let mut records = Records::at(BufReader::new(file), self.next_seq, at.offset);
            let before = out.len();
            while self.next_seq < limit && out.len() < max {
                let start = records.offset;
                let Some(record) = records.next() else { break };
                let (seq, payload) = record?;
                out.push((
                    seq,
                    Position {
                        segment: at.segment,
                        offset: start,
                    },
                    payload,
                ));
                self.next_seq = seq + 1;
                self.at = Some(Position {
                    segment: at.segment,
                    offset: records.offset,
                });
            }
            if out.len() == before {
                // The segment ends here: the next record starts the next segment.
                self.at = Some(self.next_segment(at.segment)?);
            }
        }
        Ok(out)
    }

    /// Finds the record `next_seq` by scanning its segment (only when no position was saved).
    fn locate(&mut self) -> io::Result<Position> {
        let segments = segment::list(&self.dir)?;
        let Some((path, first)) = segments
            .iter()
            .rev()
            .find(|(_, first)| *first <= self.next_seq)
            .cloned()
        else {
            return Err(not_found(self.next_seq));
        };
        let mut records = Records::new(BufReader::new(File::open(path)?), first);
        loop {
            let start = records.offset;
            match records.next() {
                Some(Ok((seq, _))) if seq + 1 == self.next_seq => {
                    return Ok(Position {
                        segment: first,
                        offset: records.offset,
                    });
                }
                Some(Ok((seq, _))) if seq == self.next_seq => {
                    return Ok(Position {
                        segment: first,
                        offset: start,
                    });
                }
                Some(Ok(_)) => continue,
                Some(Err(error)) => return Err(error),
                None if first == self.next_seq => {
                    return Ok(Position {
                        segment: first,
                        offset: 0,
                    });
                }
                None => {
                    return Ok(Position {
                        segment: first,
                        offset: records.offset,
                    });
                }
            }
        }
    }

    fn next_segment(&self, current: u64) -> io::Result<Position> {
        segment::list(&self.dir)?
            .into_iter()
            .find(|(_, first)| *first > current && *first <= self.next_seq)
            .map(|(_, first)| Position {
                segment: first,
                offset: 0,
            })
            .filter(|at| at.segment == self.next_seq)
            .ok_or_else(|| not_found(self.next_seq))
    }
}

fn not_found(seq: u64) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        format!("journal record {seq} is missing"),
    )
}
