//! The replica's writer: a task with its own connection that commits whatever callers have
//! queued in one transaction (group commit), each caller's job under a savepoint so that one
//! failing job never splits the batch, and then answers each of them.
//!
//! Each transaction first locks the audit chain's head row: the chain stays one line with
//! several replicas writing, and since every transaction takes that lock before any other,
//! the row locks the jobs take after it (a request being approved, say) never form a cycle.
//! A lost connection fails the batch (its callers hear 503 and nothing is issued) and the next
//! batch connects again.

use prometheus::IntCounter;
use tokio::sync::mpsc;
use tokio_postgres::{Client, Config};

use super::apply::{ChainHead, Statements, apply};
use super::connect;
use crate::store::batch::{Failure, Job, MAX_BATCH, answer};

/// Locks the chain head for the transaction.
const LOCK_HEAD: &str = "SELECT seq, hash FROM audit_chain_head WHERE id = 1 FOR UPDATE";
const MOVE_HEAD: &str = "UPDATE audit_chain_head SET seq = $1, hash = $2 WHERE id = 1";

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
            connection = match connect(&config).await {
                Ok(client) => Some((client, Statements::default())),
                Err(e) => {
                    tracing::warn!(error = %e, "the store's writer cannot reach the database");
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

/// Applies every job of `batch` in one transaction, each under a savepoint of its own. Returns
/// each job's result, or why the transaction as a whole failed.
async fn commit(
    client: &mut Client,
    statements: &mut Statements,
    batch: &[Job],
) -> Result<Vec<Result<(), Failure>>, Failure> {
    let mut tx = client.transaction().await?;
    let lock = statements.get(&tx, LOCK_HEAD).await?;
    let row = tx.query_one(&lock, &[]).await?;
    let start: ChainHead = (row.try_get(0)?, row.try_get(1)?);
    let mut head = start.clone();
    let mut results = Vec::with_capacity(batch.len());
    for job in batch {
        let head_before = head.clone();
        let savepoint = tx.savepoint("job").await?;
        let mut result = Ok(());
        for write in &job.writes {
            result = apply(&savepoint, statements, &mut head, write).await;
            if result.is_err() {
                break;
            }
        }
        if result.is_ok() {
            savepoint.commit().await?;
        } else {
            savepoint.rollback().await?;
            head = head_before;
        }
        results.push(result);
    }
    if head != start {
        let update = statements.get(&tx, MOVE_HEAD).await?;
        tx.execute(&update, &[&head.0, &head.1]).await?;
    }
    tx.commit().await?;
    Ok(results)
}
