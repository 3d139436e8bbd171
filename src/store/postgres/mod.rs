//! The PostgreSQL backend: several replicas on one database, with tokio-postgres.
//!
//! Writes go through one writer per replica (a task with its own connection, see `writer`)
//! that commits whatever callers have queued in one transaction, each caller's job under a
//! savepoint, and answers each caller once the commit returns (PostgreSQL's default
//! `synchronous_commit = on`: the commit is in the WAL on disk). Every write transaction locks
//! the audit chain's head row before anything else, so the replicas' transactions append to
//! one chain, take their row locks in one order (no deadlock), and draw sequence numbers in
//! commit order (the feed and the pending list page by them). Reads run on a small pool
//! (deadpool-postgres) beside the writer.
//!
//! Why tokio-postgres: the async driver the pool is built on, pipelining and prepared
//! statements, and about twenty crates; sqlx would bring back the layers the SQLite backend
//! dropped.

use std::str::FromStr;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use prometheus::IntCounter;
use tokio_postgres::{Config, NoTls, Row, types::ToSql};

use super::batch::{Failure, WriterQueue};
use super::{StoreError, Write};

mod apply;
mod migrate;
mod read;
mod writer;

#[cfg(test)]
pub(crate) mod tests;

/// Connections the read pool keeps at most, unless configured (`[database] max_connections`).
pub(super) const DEFAULT_READERS: usize = 10;
/// How long connecting, or waiting for a pooled connection, may take before the store answers
/// that the database is unavailable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

impl From<tokio_postgres::Error> for StoreError {
    fn from(e: tokio_postgres::Error) -> Self {
        StoreError::Database(describe(&e))
    }
}

impl From<tokio_postgres::Error> for Failure {
    fn from(e: tokio_postgres::Error) -> Self {
        Failure::Database(describe(&e))
    }
}

/// The driver's error with the server's message, which its `Display` leaves out.
fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} ({})", db.message(), db.code().code()),
        None => e.to_string(),
    }
}

/// The connection settings of `database_url` (`postgres://user[:password]@host:port/db`),
/// without ever repeating the URL, which may hold a password.
pub(super) fn config(database_url: &str) -> Result<Config, StoreError> {
    let mut config = Config::from_str(database_url)
        .map_err(|e| StoreError::Unsupported(format!("database_url: {e}")))?;
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(CONNECT_TIMEOUT);
    }
    if config.get_application_name().is_none() {
        config.application_name("jitgate");
    }
    Ok(config)
}

/// Where `config` points, for messages: database and hosts, no credentials.
fn location(config: &Config) -> String {
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .map(|host| match host {
            tokio_postgres::config::Host::Tcp(name) => name.clone(),
            tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
        })
        .collect();
    format!(
        "postgres database {} on {}",
        config.get_dbname().unwrap_or("(default)"),
        hosts.join(",")
    )
}

/// Opens a connection with `config` and drives it on a task of its own.
async fn connect(config: &Config) -> Result<tokio_postgres::Client, StoreError> {
    let (client, connection) = config.connect(NoTls).await?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::warn!(error = %describe(&e), "a database connection ended");
        }
    });
    Ok(client)
}

/// A PostgreSQL database; cheap to clone.
#[derive(Clone)]
pub(super) struct Postgres {
    pool: Pool,
    writer: WriterQueue,
}

impl std::fmt::Debug for Postgres {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Postgres")
            .field("read_only", &self.writer.is_read_only())
            .finish_non_exhaustive()
    }
}

impl Postgres {
    /// Connects, migrates the schema (under an advisory lock: replicas starting together do
    /// not race) and starts the writer.
    pub(super) async fn open(config: Config, readers: usize) -> Result<Self, StoreError> {
        let mut client = connect(&config).await?;
        migrate::run(&mut client).await?;
        drop(client);
        let (queue, jobs) = WriterQueue::open()?;
        tokio::spawn(writer::run(config.clone(), jobs, queue.commits()));
        Ok(Self {
            pool: pool(config, readers)?,
            writer: queue,
        })
    }

    /// Opens the database read-only (every transaction of its connections is): an error if
    /// it holds no jitgate schema or an older one.
    pub(super) async fn open_read_only(
        mut config: Config,
        readers: usize,
    ) -> Result<Self, StoreError> {
        let options = match config.get_options() {
            Some(options) => format!("{options} -c default_transaction_read_only=on"),
            None => "-c default_transaction_read_only=on".to_owned(),
        };
        config.options(&options);
        let client = connect(&config).await?;
        migrate::check(&client, &location(&config)).await?;
        drop(client);
        Ok(Self {
            pool: pool(config, readers)?,
            writer: WriterQueue::read_only()?,
        })
    }

    /// Migrates the schema and returns (`jitgate migrate`).
    pub(super) async fn migrate(config: &Config) -> Result<(), StoreError> {
        let mut client = connect(config).await?;
        migrate::run(&mut client).await
    }

    /// Commits `writes` together; returns once they are durable.
    pub(super) async fn write(&self, writes: Vec<Write>) -> Result<(), StoreError> {
        self.writer.write(writes).await
    }

    pub(super) fn commit_counter(&self) -> IntCounter {
        self.writer.commits()
    }

    pub(super) fn queued_writes(&self) -> usize {
        self.writer.queued()
    }

    /// Whether the database answers and takes writes (a standby does not).
    pub(super) async fn probe_writable(&self) -> Result<(), StoreError> {
        if self.writer.is_read_only() {
            return Err(StoreError::ReadOnly);
        }
        let primary = self.row("SELECT NOT pg_is_in_recovery()", &[]).await?;
        match primary.map(|row| row.try_get::<_, bool>(0)).transpose()? {
            Some(true) => Ok(()),
            _ => Err(StoreError::Database(
                "the database is a read-only standby".into(),
            )),
        }
    }

    /// The rows `sql` answers for `params`, on a pooled connection, with the statement
    /// prepared once per connection.
    async fn rows(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, StoreError> {
        let client = self
            .pool
            .get()
            .await
            .map_err(|e| StoreError::Database(format!("no database connection: {e}")))?;
        let statement = client.prepare_cached(sql).await?;
        Ok(client.query(&statement, params).await?)
    }

    /// The first row `sql` answers for `params`, if any.
    async fn row(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<Row>, StoreError> {
        Ok(self.rows(sql, params).await?.into_iter().next())
    }
}

/// The read pool for `config`, of at most `readers` connections.
fn pool(config: Config, readers: usize) -> Result<Pool, StoreError> {
    let manager = Manager::from_config(
        config,
        NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(readers.max(1))
        .runtime(Runtime::Tokio1)
        .wait_timeout(Some(CONNECT_TIMEOUT))
        .create_timeout(Some(CONNECT_TIMEOUT))
        .build()
        .map_err(|e| StoreError::Unsupported(format!("cannot build the database pool: {e}")))
}
