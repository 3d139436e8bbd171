//! The SQLite backend: one file (WAL mode), one driver, rusqlite.
//!
//! Every write goes through one writer (a thread with its own connection, see `writer`) that
//! commits whatever callers have queued in a single transaction and then answers each caller,
//! so a caller's `write` returns only once its records are durable (`synchronous=FULL`: an
//! fsync per commit) and the cost of a commit is shared under load. Reads run on a few threads
//! of their own, each with its connection (`read`); WAL lets them read beside the writer.
//!
//! Why rusqlite for reads too, not sqlx as before: sqlx drives each SQLite connection from a
//! thread of its own and hands every statement and its rows to it and back, so a read was
//! several thread hand-offs; with rusqlite a whole read is one hand-off and a cached prepared
//! statement. Measured on the per-request read (`standing`; release build, 2 shared
//! cores, six rounds each): sqlx took 60–75 µs a read one at a time and served 26,000–34,000
//! reads/s to 32 tasks; rusqlite takes 16–20 µs and serves 58,000–79,000 reads/s. One driver
//! also means one SQLite library linked, one error type to translate, and migrations run by
//! this module (`migrate`), which keeps the table sqlx kept.

use std::path::{Path, PathBuf};
use std::time::Duration;

use prometheus::IntCounter;
use rusqlite::{Connection, OpenFlags};

use super::batch::{Failure, WriterQueue};
use super::{StoreError, Write};

mod apply;
mod migrate;
mod read;
mod writer;

#[cfg(test)]
mod tests;

/// Threads (each with a connection) reads run on.
const READERS: usize = 4;
/// How long a statement waits for a lock another connection holds.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError::Database(e.to_string())
    }
}

/// The SQLite file `database_url` names ("" = `jitgate.db` in `data_dir`; else
/// `sqlite://PATH` or `sqlite:PATH`).
pub(super) fn database_path(database_url: &str, data_dir: &Path) -> Result<PathBuf, StoreError> {
    if database_url.is_empty() {
        return Ok(data_dir.join("jitgate.db"));
    }
    let Some(rest) = database_url
        .strip_prefix("sqlite://")
        .or_else(|| database_url.strip_prefix("sqlite:"))
    else {
        return Err(StoreError::Unsupported(
            "database_url: sqlite://PATH or postgres://USER@HOST:PORT/DATABASE".into(),
        ));
    };
    if rest.is_empty() || rest.starts_with(":memory:") {
        return Err(StoreError::Unsupported(
            "database_url: an in-memory database would lose the audit trail; name a file".into(),
        ));
    }
    if rest.contains('?') {
        return Err(StoreError::Unsupported(
            "database_url: name the SQLite file only (sqlite://PATH), without ?options".into(),
        ));
    }
    Ok(PathBuf::from(rest))
}

/// Creates the database file at `path`, if missing, readable and writable by its owner only
/// (SQLite gives its `-wal` and `-shm` files the same mode): it holds the audit trail and
/// requests' reasons.
fn create_private(path: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::OpenOptionsExt;
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(source) => Err(StoreError::Create {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// A connection to the file at `path`: read-write (never creating it: `create_private` does)
/// or read-only.
fn connect(path: &Path, read_only: bool) -> Result<Connection, rusqlite::Error> {
    let access = if read_only {
        OpenFlags::SQLITE_OPEN_READ_ONLY
    } else {
        OpenFlags::SQLITE_OPEN_READ_WRITE
    };
    let connection = Connection::open_with_flags(path, access | OpenFlags::SQLITE_OPEN_NO_MUTEX)?;
    connection.busy_timeout(BUSY_TIMEOUT)?;
    Ok(connection)
}

impl From<rusqlite::Error> for Failure {
    fn from(e: rusqlite::Error) -> Self {
        Failure::Database(e.to_string())
    }
}

/// A SQLite database; cheap to clone.
#[derive(Debug, Clone)]
pub(super) struct Sqlite {
    readers: read::Readers,
    writer: WriterQueue,
}

impl Sqlite {
    /// Opens the database at `path`, creating and migrating it as needed, and starts the
    /// writer thread.
    pub(super) async fn open(path: PathBuf) -> Result<Self, StoreError> {
        create_private(&path)?;
        let (writer_path, readers_path) = (path.clone(), path.clone());
        let connection = tokio::task::spawn_blocking(move || {
            let mut connection = writer::open(&writer_path)?;
            migrate::run(&mut connection, migrate::MIGRATIONS)?;
            Ok::<_, StoreError>(connection)
        })
        .await
        .map_err(|e| StoreError::Database(format!("cannot open the database: {e}")))??;
        let (queue, jobs) = WriterQueue::open()?;
        let writer_commits = queue.commits();
        std::thread::Builder::new()
            .name("jitgate-store-writer".into())
            .spawn(move || writer::run(connection, jobs, &writer_commits))
            .map_err(|e| StoreError::Unsupported(format!("cannot start the store writer: {e}")))?;
        Ok(Self {
            readers: read::Readers::new(readers_path, false)?,
            writer: queue,
        })
    }

    /// Opens the database at `path` read-only: an error if there is none or if its schema is
    /// not this binary's.
    pub(super) async fn open_read_only(path: PathBuf) -> Result<Self, StoreError> {
        if !path.exists() {
            return Err(StoreError::Missing(path.display().to_string()));
        }
        let readers = read::Readers::new(path.clone(), true)?;
        readers
            .run(move |connection| migrate::check(connection, migrate::MIGRATIONS, &path))
            .await?;
        let writer = WriterQueue::read_only()?;
        Ok(Self { readers, writer })
    }

    /// Commits `writes` together; returns once they are durable.
    pub(super) async fn write(&self, writes: Vec<Write>) -> Result<(), StoreError> {
        self.writer.write(writes).await
    }

    fn read_only(&self) -> bool {
        self.writer.is_read_only()
    }

    pub(super) fn commit_counter(&self) -> IntCounter {
        self.writer.commits()
    }

    pub(super) fn queued_writes(&self) -> usize {
        self.writer.queued()
    }

    /// Whether a write transaction could be started: takes the write lock and lets it go.
    pub(super) async fn probe_writable(&self) -> Result<(), StoreError> {
        if self.read_only() {
            return Err(StoreError::ReadOnly);
        }
        self.readers
            .run(|connection| {
                connection.execute_batch("BEGIN IMMEDIATE; ROLLBACK")?;
                Ok(())
            })
            .await
    }
}
