//! What every backend's writer shares: a caller's writes as a [`Job`] with where to answer it,
//! why a job did not commit ([`Failure`]), and the commit counter `/metrics` shows.

use prometheus::IntCounter;
use tokio::sync::oneshot;

use super::{StoreError, Write};

/// Most jobs committed in one transaction.
pub(super) const MAX_BATCH: usize = 256;
/// Jobs that may wait for a writer.
pub(super) const QUEUE: usize = 4_096;

/// One caller's writes, and where to answer it.
pub(super) struct Job {
    pub(super) writes: Vec<Write>,
    pub(super) done: oneshot::Sender<Result<(), Failure>>,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Job")
            .field("writes", &self.writes.len())
            .finish()
    }
}

/// Why a job did not commit (cloned to every job of a batch that failed as a whole).
#[derive(Debug, Clone)]
pub(super) enum Failure {
    Conflict(String),
    Revoked(String),
    Database(String),
}

impl From<Failure> for StoreError {
    fn from(failure: Failure) -> Self {
        match failure {
            Failure::Conflict(message) => StoreError::Conflict(message),
            Failure::Revoked(message) => StoreError::Revoked(message),
            Failure::Database(message) => StoreError::Database(message),
        }
    }
}

/// Answers each job of `batch` with its result (or every job with the batch's failure).
pub(super) fn answer(batch: Vec<Job>, results: Result<Vec<Result<(), Failure>>, Failure>) {
    let results = match results {
        Ok(results) => results,
        Err(failure) => vec![Err(failure); batch.len()],
    };
    for (job, result) in batch.into_iter().zip(results) {
        if let Err(Failure::Database(message)) = &result {
            tracing::error!(error = %message, "store write failed");
        }
        let _ = job.done.send(result);
    }
}

/// Sends `writes` to the writer behind `queue` and waits for its answer.
pub(super) async fn submit(
    queue: &tokio::sync::mpsc::Sender<Job>,
    writes: Vec<Write>,
) -> Result<(), StoreError> {
    let (done, committed) = oneshot::channel();
    queue
        .send(Job { writes, done })
        .await
        .map_err(|_| StoreError::WriterGone)?;
    committed
        .await
        .map_err(|_| StoreError::WriterGone)?
        .map_err(StoreError::from)
}

/// The count of a writer's commits, for `/metrics`.
pub(super) fn commit_counter() -> Result<IntCounter, StoreError> {
    IntCounter::new(
        "jitgate_store_commits_total",
        "Store transactions committed, each an fsync.",
    )
    .map_err(|e| StoreError::Unsupported(format!("cannot count store commits: {e}")))
}
