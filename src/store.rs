//! The embedded sled database, opened once per process.
//!
//! Trees (each module documents its own key layout):
//!
//! ```text
//! meta      "schema_version" -> u32 BE; "ready_probe" -> unix secs (written by /readyz)
//! journal   see journal.rs
//! dedupe    see journal.rs
//! ```
//!
//! sled's own timer flush is switched off: durability comes only from the journal's group commit,
//! which fsyncs before any request is acknowledged.

use std::path::Path;

use thiserror::Error;

const SCHEMA_VERSION: u32 = 1;

#[derive(Debug, Error)]
pub enum StoreError {
    #[error("cannot open the store at {path}")]
    Open {
        path: String,
        #[source]
        source: sled::Error,
    },
    #[error("the store at {path} has schema version {found}; this build reads {SCHEMA_VERSION}")]
    SchemaVersion { path: String, found: u32 },
    #[error("store I/O failed")]
    Io(#[from] sled::Error),
}

#[derive(Clone)]
pub struct Store {
    pub db: sled::Db,
    pub meta: sled::Tree,
    pub journal: sled::Tree,
    pub dedupe: sled::Tree,
}

impl Store {
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        let path = dir.display().to_string();
        let db = sled::Config::new()
            .path(dir)
            .flush_every_ms(None)
            .cache_capacity(256 * 1024 * 1024)
            .open()
            .map_err(|source| StoreError::Open {
                path: path.clone(),
                source,
            })?;
        let meta = db.open_tree("meta")?;
        match meta.get("schema_version")? {
            None => {
                meta.insert("schema_version", &SCHEMA_VERSION.to_be_bytes())?;
            }
            Some(raw) => {
                let found = u32::from_be_bytes(raw.as_ref().try_into().unwrap_or_default());
                if found != SCHEMA_VERSION {
                    return Err(StoreError::SchemaVersion { path, found });
                }
            }
        }
        Ok(Store {
            journal: db.open_tree("journal")?,
            dedupe: db.open_tree("dedupe")?,
            meta,
            db,
        })
    }
}
