//! The one writer: a thread of its own with its own SQLite connection, committing whatever
//! callers have queued in one transaction (group commit), each caller's job under a savepoint
//! so that one failing job never splits the batch, and then answering each of them.
//!
//! Why a thread of its own: the writer is serial, so any round trip between an async task and
//! a connection per statement (nine statements for an allowed request) bounds throughput far
//! below what one fsync per batch allows, worst when the cores are busy and each wake-up waits
//! for one. On its own thread, with cached prepared statements, a statement costs microseconds
//! and a batch costs about its fsync.

use std::path::Path;

use prometheus::IntCounter;
use rusqlite::{Connection, TransactionBehavior};
use tokio::sync::mpsc;

use super::apply::{ChainHead, apply};
use super::connect;
use super::read::STATEMENT_CACHE;
use crate::store::batch::{Failure, Job, MAX_BATCH, answer};

/// Opens the writer's connection to the database at `path`.
pub(super) fn open(path: &Path) -> Result<Connection, rusqlite::Error> {
    let connection = connect(path, false)?;
    connection.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    // Per connection: a commit returns once it survives a power cut, not just a crash.
    connection.pragma_update(None, "synchronous", "FULL")?;
    connection.pragma_update(None, "foreign_keys", true)?;
    connection.pragma_update(None, "journal_mode", "WAL")?;
    Ok(connection)
}

/// Serves `jobs` until every sender is gone, counting each transaction it commits.
pub(super) fn run(mut connection: Connection, mut jobs: mpsc::Receiver<Job>, commits: &IntCounter) {
    while let Some(first) = jobs.blocking_recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let results = commit(&mut connection, &batch);
        if results.is_ok() {
            commits.inc();
        }
        answer(batch, results);
    }
}

/// Applies every job of `batch` in one transaction, each under a savepoint of its own: a job
/// that fails rolls back alone and its neighbours still commit together, in one fsync. Returns
/// each job's result, or why the transaction as a whole failed.
fn commit(connection: &mut Connection, batch: &[Job]) -> Result<Vec<Result<(), Failure>>, Failure> {
    // IMMEDIATE takes the write lock first: a deferred transaction that reads and then writes
    // is answered BUSY at once when another connection holds the lock.
    let mut tx = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut head: ChainHead = None;
    let mut results = Vec::with_capacity(batch.len());
    for job in batch {
        let head_before = head.clone();
        let savepoint = tx.savepoint()?;
        let result = job
            .writes
            .iter()
            .try_for_each(|write| apply(&savepoint, &mut head, write));
        if result.is_ok() {
            savepoint.commit()?;
        } else {
            // Rolls back to the savepoint and releases it (its drop behaviour); the chain's
            // head goes back with it.
            savepoint.finish()?;
            head = head_before;
        }
        results.push(result);
    }
    tx.commit()?;
    Ok(results)
}
