//! What every backend's writer shares: a caller's writes as a [`Job`] with where to answer it,
//! why a job did not commit ([`Failure`]), and the commit counter `/metrics` shows.

use prometheus::IntCounter;
use tokio::sync::{mpsc, oneshot};

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

/// The way to a backend's writer, the same for every backend: its queue (none when the store
/// was opened read-only) and the count of its commits, for `/metrics`.
#[derive(Debug, Clone)]
pub(super) struct WriterQueue {
    queue: Option<mpsc::Sender<Job>>,
    commits: IntCounter,
}

impl WriterQueue {
    /// A queue, and the end of it the backend's writer serves.
    pub(super) fn open() -> Result<(Self, mpsc::Receiver<Job>), StoreError> {
        let (queue, jobs) = mpsc::channel(QUEUE);
        let commits = commit_counter()?;
        Ok((
            Self {
                queue: Some(queue),
                commits,
            },
            jobs,
        ))
    }

    /// No writer: every write is refused.
    pub(super) fn read_only() -> Result<Self, StoreError> {
        Ok(Self {
            queue: None,
            commits: commit_counter()?,
        })
    }

    pub(super) fn is_read_only(&self) -> bool {
        self.queue.is_none()
    }

    /// Sends `writes` to the writer and waits for its answer: returns once they are durable.
    pub(super) async fn write(&self, writes: Vec<Write>) -> Result<(), StoreError> {
        let queue = self.queue.as_ref().ok_or(StoreError::ReadOnly)?;
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

    /// The count the writer increments at each commit.
    pub(super) fn commits(&self) -> IntCounter {
        self.commits.clone()
    }

    /// Jobs waiting for the writer.
    pub(super) fn queued(&self) -> usize {
        self.queue
            .as_ref()
            .map_or(0, |queue| queue.max_capacity() - queue.capacity())
    }
}

/// The count of a writer's commits.
fn commit_counter() -> Result<IntCounter, StoreError> {
    IntCounter::new(
        "jitgate_store_commits_total",
        "Store transactions committed, each an fsync.",
    )
    .map_err(|e| StoreError::Unsupported(format!("cannot count store commits: {e}")))
}
