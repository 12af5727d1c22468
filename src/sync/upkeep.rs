//! Upkeep, every [`EVERY`]: the queue moves the effects of recent settles to sled in one
//! batch, writes a snapshot when one is due and deletes the log
//! segments nothing points into; the journal deletes the segments that lie wholly before its
//! retention window and that neither the router nor any open job or dead letter still reads
//! (the queue copies the events of the few that would otherwise hold an old segment).

use std::sync::Arc;
use std::time::Duration;

use crate::journal::Journal;
use crate::queue::{Queue, QueueError};

pub const EVERY: Duration = Duration::from_secs(1);

pub async fn run(journal: Arc<Journal>, queue: Arc<dyn Queue>, retention_secs: u64) {
    loop {
        tokio::time::sleep(EVERY).await;
        let (journal, queue) = (journal.clone(), queue.clone());
        let done =
            tokio::task::spawn_blocking(move || once(&journal, queue.as_ref(), retention_secs));
        match done.await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => tracing::warn!(%error, "queue upkeep failed; trying again"),
            Err(_) => return,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum UpkeepError {
    #[error(transparent)]
    Queue(#[from] QueueError),
    #[error(transparent)]
    Journal(#[from] crate::journal::JournalError),
}

/// One round of upkeep.
pub fn once(journal: &Journal, queue: &dyn Queue, retention_secs: u64) -> Result<(), UpkeepError> {
    let cutoff = chrono::Utc::now().timestamp() - i64::try_from(retention_secs).unwrap_or(i64::MAX);
    let kept_from = journal.kept_from(cutoff)?;
    let needed = queue.upkeep(kept_from, &|job| {
        journal
            .read(job.seq, job.at)
            .ok()
            .map(|envelope| envelope.data)
    })?;
    let removed = journal.remove_before(kept_from.min(needed))?;
    if removed > 0 {
        tracing::info!(
            removed,
            "journal segments past the retention window deleted"
        );
    }
    Ok(())
}
