//! The embedded sled database, opened once per process.
//!
//! ```text
//! <data_dir>/index     the sled database
//!   meta      "schema_version" -> u32 BE (1: release 1, jobs in sled; 2: jobs in the queue log)
//!   queue     cross-references, versions, status, echo records, pollers, record index
//!             (queue/embedded/index.rs)
//!   sandbox   what the sandbox connectors hold (adapters/sandbox.rs)
//! <data_dir>/journal   the journal's segment files (journal/segment.rs)
//! <data_dir>/queue     the queue log and its snapshot (queue/embedded/)
//! ```
//!
//! sled holds small mutable indexes. It is flushed on a timer (`flush_every_ms`) and before each
//! commit of the queue log that follows a write to it, so a state change on disk has its
//! effects on disk; what must be durable before an acknowledgement is in the journal.

use std::path::{Path, PathBuf};
use std::time::Duration;

use backon::{BlockingRetryable, ConstantBuilder};

use thiserror::Error;

/// The layout this build writes; a store of version 1 is upgraded when the queue opens. Version
/// 3 writes the queue log's records and two index values in a compact form (version 2 wrote
/// JSON, which this build still reads): a version 2 store is marked 3 when opened, so an older
/// build refuses it instead of misreading it.
pub const SCHEMA_VERSION: u32 = 3;

#[derive(Debug, Error)]
pub enum StoreError {
    #[error("cannot open the store at {path}")]
    Open {
        path: String,
        #[source]
        source: sled::Error,
    },
    #[error(
        "the store at {path} has schema version {found}, written by a newer handoff; this build reads up to {SCHEMA_VERSION}"
    )]
    SchemaVersion { path: String, found: u32 },
    #[error("store I/O failed")]
    Io(#[from] sled::Error),
}

/// sled releases its file lock from an I/O thread shortly after the last handle is dropped, so an
/// open right after a close in the same process can find it still held: wait a little for it.
fn open_sled(
    path: &Path,
    flush_every_ms: Option<u64>,
    cache_mib: u64,
) -> Result<sled::Db, sled::Error> {
    let open = || {
        sled::Config::new()
            .path(path)
            .flush_every_ms(flush_every_ms)
            .cache_capacity(cache_mib * 1024 * 1024)
            .open()
    };
    let lock_held = |error: &sled::Error| matches!(error, sled::Error::Io(io) if io.to_string().contains("could not acquire lock"));
    let every_20ms_for_3s = ConstantBuilder::default()
        .with_delay(Duration::from_millis(20))
        .with_max_times(150);
    open.retry(every_20ms_for_3s).when(lock_held).call()
}

#[derive(Clone)]
pub struct Store {
    /// The data directory.
    pub dir: PathBuf,
    pub db: sled::Db,
    pub meta: sled::Tree,
    /// The layout the store had when it was opened.
    pub schema_version: u32,
}

impl Store {
    /// Opens the store in `dir`; sled flushes every `flush_every_ms` (never when `None`) and
    /// caches up to `cache_mib` MiB of pages.
    pub fn open(
        dir: &Path,
        flush_every_ms: Option<u64>,
        cache_mib: u64,
    ) -> Result<Store, StoreError> {
        let path = dir.display().to_string();
        let db = open_sled(&dir.join("index"), flush_every_ms, cache_mib).map_err(|source| {
            StoreError::Open {
                path: path.clone(),
                source,
            }
        })?;
        let meta = db.open_tree("meta")?;
        let schema_version = match meta.get("schema_version")? {
            None => {
                meta.insert("schema_version", &SCHEMA_VERSION.to_be_bytes())?;
                SCHEMA_VERSION
            }
            Some(raw) => {
                let found = u32::from_be_bytes(raw.as_ref().try_into().unwrap_or_default());
                if found > SCHEMA_VERSION {
                    return Err(StoreError::SchemaVersion { path, found });
                }
                if found == 2 {
                    meta.insert("schema_version", &SCHEMA_VERSION.to_be_bytes())?;
                    SCHEMA_VERSION
                } else {
                    found
                }
            }
        };
        Ok(Store {
            dir: dir.to_owned(),
            meta,
            db,
            schema_version,
        })
    }

    /// Records that the store now has layout `version` (after an upgrade).
    pub fn set_schema_version(&self, version: u32) -> Result<(), sled::Error> {
        self.meta.insert("schema_version", &version.to_be_bytes())?;
        Ok(())
    }
}

/// Writes `bytes` and their crc32 (u32 LE) to `path` durably: to a temporary file beside it,
/// fsynced, renamed over `path`, the directory fsynced. For the files a clean shutdown saves
/// beside the store (the schedule, the dedupe index), which readers check against the crc.
pub fn save_checked(path: &Path, mut bytes: Vec<u8>) -> std::io::Result<()> {
    use std::io::Write;
    let crc = crc32fast::hash(&bytes);
    bytes.extend_from_slice(&crc.to_le_bytes());
    let partial = path.with_extension("partial");
    let mut file = std::fs::File::create(&partial)?;
    file.write_all(&bytes)?;
    file.sync_all()?;
    std::fs::rename(&partial, path)?;
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::File::open(dir)?.sync_all()
}
