//! The mappings in force, and their reload.
//!
//! A reload compiles every file again; only if all of them compile is the new set swapped in
//! whole. A broken edit is rejected, its problems are kept for the operator (and logged by the
//! caller), and the running version stays. Reloads come from SIGHUP and from a change on disk,
//! seen by comparing a fingerprint (path, size, modification time) of the mappings, lookups and
//! schemas directories.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{Lookups, Mapping, load_dir};
use crate::problem::Problem;

/// A compiled set of mappings.
pub struct Loaded {
    pub mappings: Vec<Mapping>,
    pub lookups: Lookups,
}

/// The outcome of the last reload, for the API and the dashboard.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ReloadStatus {
    pub at: DateTime<Utc>,
    pub ok: bool,
    pub problems: Vec<String>,
}

pub struct LiveMappings {
    dir: PathBuf,
    schemas_dir: PathBuf,
    current: RwLock<Arc<Loaded>>,
    last_reload: RwLock<ReloadStatus>,
    fingerprint: Mutex<u64>,
}

impl LiveMappings {
    /// Compiles every mapping; any problem fails the start.
    pub fn load(dir: &Path, schemas_dir: &Path) -> Result<LiveMappings, Vec<Problem>> {
        let fingerprint = fingerprint(dir, schemas_dir);
        let (mappings, lookups) = load_dir(dir, schemas_dir)?;
        Ok(LiveMappings {
            dir: dir.to_owned(),
            schemas_dir: schemas_dir.to_owned(),
            current: RwLock::new(Arc::new(Loaded { mappings, lookups })),
            last_reload: RwLock::new(ReloadStatus {
                at: Utc::now(),
                ok: true,
                problems: Vec::new(),
            }),
            fingerprint: Mutex::new(fingerprint),
        })
    }

    pub fn current(&self) -> Arc<Loaded> {
        self.current.read().expect("not poisoned").clone()
    }

    pub fn last_reload(&self) -> ReloadStatus {
        self.last_reload.read().expect("not poisoned").clone()
    }

    /// Whether the files changed since the last load or reload attempt.
    pub fn changed_on_disk(&self) -> bool {
        *self.fingerprint.lock().expect("not poisoned") != fingerprint(&self.dir, &self.schemas_dir)
    }

    /// Compiles everything again; swaps it in only if every file compiles.
    pub fn reload(&self) -> Result<(), Vec<Problem>> {
        *self.fingerprint.lock().expect("not poisoned") = fingerprint(&self.dir, &self.schemas_dir);
        let result = load_dir(&self.dir, &self.schemas_dir);
        let status = ReloadStatus {
            at: Utc::now(),
            ok: result.is_ok(),
            problems: match &result {
                Ok(_) => Vec::new(),
                Err(problems) => problems.iter().map(ToString::to_string).collect(),
            },
        };
        *self.last_reload.write().expect("not poisoned") = status;
        let (mappings, lookups) = result?;
        *self.current.write().expect("not poisoned") = Arc::new(Loaded { mappings, lookups });
        Ok(())
    }
}

fn fingerprint(dir: &Path, schemas_dir: &Path) -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    let mut files = crate::problem::yaml_files(dir);
    files.extend(crate::problem::yaml_files(&dir.join("lookups")));
    files.extend(
        std::fs::read_dir(schemas_dir)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path()),
    );
    files.sort();
    for path in files {
        path.hash(&mut hasher);
        if let Ok(meta) = std::fs::metadata(&path) {
            meta.len().hash(&mut hasher);
            meta.modified().ok().hash(&mut hasher);
        }
    }
    hasher.finish()
}

/// How often the mapping files are checked for changes.
const POLL: std::time::Duration = std::time::Duration::from_secs(1);

/// Reloads the mappings on SIGHUP and when their files change; a broken edit is logged and the
/// running version kept.
pub async fn watch(live: Arc<LiveMappings>) {
    #[cfg(unix)]
    let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    let mut poll = tokio::time::interval(POLL);
    loop {
        #[cfg(unix)]
        let signalled = async {
            match hangup.as_mut() {
                Some(signal) => signal.recv().await,
                None => std::future::pending().await,
            }
        };
        #[cfg(not(unix))]
        let signalled = std::future::pending::<Option<()>>();
        let reason = tokio::select! {
            _ = signalled => "SIGHUP",
            _ = poll.tick() => {
                if !live.changed_on_disk() {
                    continue;
                }
                "a change on disk"
            }
        };
        let reloading = live.clone();
        match tokio::task::spawn_blocking(move || reloading.reload()).await {
            Ok(Ok(())) => {
                let versions: Vec<String> = live
                    .current()
                    .mappings
                    .iter()
                    .map(|m| format!("{}@{}", m.flow, m.version))
                    .collect();
                tracing::info!(reason, mappings = %versions.join(", "), "mappings reloaded");
            }
            Ok(Err(problems)) => {
                for problem in &problems {
                    tracing::error!(reason, "{problem}");
                }
                tracing::error!(
                    reason,
                    problems = problems.len(),
                    "mapping reload rejected; the running mappings stay in force"
                );
            }
            Err(_) => return,
        }
    }
}
