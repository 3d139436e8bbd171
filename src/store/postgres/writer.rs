//! The replica's writer: a task with its own connection that commits whatever callers have
//! queued in one transaction (group commit), each caller's job under a savepoint so that one
//! failing job never splits the batch, and then answers each of them.
//!
//! Each transaction first locks the audit chain's head row: the chain stays one line with
//! several replicas writing, and since every transaction takes that lock before any other,
//! the row locks the jobs take after it (a request being approved, say) never form a cycle.
//! A job's statements go out pipelined with its savepoint (`apply::run_job`): about one round
//! trip per job instead of one per statement, which is what the chain lock is held for. A lost
//! connection fails the batch (its callers hear 503 and nothing is issued) and the next batch
//! connects again.

use std::sync::{Mutex, PoisonError};

use prometheus::IntCounter;
use tokio::sync::mpsc;
use tokio_postgres::{Client, Config};

use super::apply::{ChainHead, LOCK_HEAD, MOVE_HEAD, Statements, run_job};
use super::connect;
use crate::store::batch::{Failure, Job, MAX_BATCH, answer};

/// Opens the first savepoint of a batch.
const FIRST_SAVEPOINT: &str = "SAVEPOINT job";
/// Keeps what the previous job did and opens the next savepoint.
const NEXT_SAVEPOINT: &str = "RELEASE SAVEPOINT job; SAVEPOINT job";
/// Undoes a failed job.
const UNDO_JOB: &str = "ROLLBACK TO SAVEPOINT job; RELEASE SAVEPOINT job";

/// Serves `jobs` until every sender is gone, counting each transaction it commits.
pub(super) async fn run(config: Config, mut jobs: mpsc::Receiver<Job>, commits: IntCounter) {
    let mut connection: Option<(Client, Statements)> = None;
    while let Some(first) = jobs.recv().await {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        if connection
            .as_ref()
            .is_none_or(|(client, _)| client.is_closed())
        {
            connection = match open(&config).await {
                Ok(opened) => Some(opened),
                Err(e) => {
                    tracing::warn!(error = ?e, "the store's writer cannot reach the database");
                    None
                }
            };
        }
        let results = match connection.as_mut() {
            Some((client, statements)) => commit(client, statements, &batch).await,
            None => Err(Failure::Database("the database is unreachable".into())),
        };
        if results.is_ok() {
            commits.inc();
        }
        answer(batch, results);
    }
}

/// A connection with the writer's statements prepared on it.
async fn open(config: &Config) -> Result<(Client, Statements), Failure> {
    let client = connect(config)
        .await
        .map_err(|e| Failure::Database(e.to_string()))?;
    let statements = Statements::prepare(&client).await?;
    Ok((client, statements))
}

/// Applies every job of `batch` in one transaction, each under a savepoint of its own. Returns
/// each job's result, or why the transaction as a whole failed.
async fn commit(
    client: &mut Client,
    statements: &Statements,
    batch: &[Job],
) -> Result<Vec<Result<(), Failure>>, Failure> {
    let tx = client.transaction().await?;
    let row = tx.query_one(statements.get(LOCK_HEAD)?, &[]).await?;
    let start: ChainHead = (row.try_get(0)?, row.try_get(1)?);
    let head = Mutex::new(start.clone());
    let mut results = Vec::with_capacity(batch.len());
    let mut savepoint = FIRST_SAVEPOINT;
    for job in batch {
        let head_before = head.lock().unwrap_or_else(PoisonError::into_inner).clone();
        let result = run_job(&tx, statements, &head, savepoint, &job.writes).await;
        if result.is_ok() {
            savepoint = NEXT_SAVEPOINT;
        } else {
            tx.batch_execute(UNDO_JOB).await?;
            *head.lock().unwrap_or_else(PoisonError::into_inner) = head_before;
            savepoint = FIRST_SAVEPOINT;
        }
        results.push(result);
    }
    let head = head.into_inner().unwrap_or_else(PoisonError::into_inner);
    if head != start {
        tx.execute(statements.get(MOVE_HEAD)?, &[&head.0, &head.1])
            .await?;
    }
    tx.commit().await?;
    Ok(results)
}
