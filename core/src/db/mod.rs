//! The database layer: one API over MySQL/MariaDB (production) and SQLite (embedded default).
//!
//! Repository functions are grouped by domain ([`rooms`], [`streams`], [`users`], [`gifts`],
//! [`orders`], [`recording_jobs`], [`covers`], [`messages`], [`chat`], [`audit`]) and take any
//! [`Executor`]: the pool, a held [`Conn`], or a [`Tx`]. No SQL lives outside this module.
//! Every time is unix milliseconds. The schema lives in versioned migrations per backend under
//! `core/migrations/{mysql,sqlite}/`, applied by [`Database::migrate`].

pub mod audit;
pub mod chat;
pub mod columns;
pub mod covers;
pub(crate) mod exec;
pub mod gifts;
pub mod idempotency;
pub mod live;
pub mod messages;
pub mod orders;
pub mod payments;
pub mod recording_jobs;
mod recordings;
pub mod revocations;
pub mod rooms;
pub mod sessions;
pub mod streams;
#[cfg(feature = "testing")]
pub mod testing;
mod tx;
pub mod users;

use std::str::FromStr;
use std::time::Duration;

use serde::Deserialize;
use sqlx::mysql::{MySqlConnectOptions, MySqlPool, MySqlPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions};

use crate::config::Problems;
use crate::secret::Secret;

pub use exec::Executor;
pub use recording_jobs::{JobState, NewRecordingJob, RecordingJobRow};
pub use recordings::{InterruptedRecording, NewInterruptedRecording};
pub use rooms::{NewRoom, Room, RoomChanges, RoomCursor};
pub use streams::{NewStream, OriginIds, StartOutcome, Stream};
pub use tx::Tx;
pub use users::User;

static MYSQL_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/mysql");
static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

/// The `[database]` section shared by the services.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DbConfig {
    /// Connection URL: `mysql://user:pass@host:3306/db` (MariaDB too) or `sqlite:path/to.db`
    /// (`sqlite::memory:` for a throw-away database). May be `env:NAME` or `file:PATH`.
    /// Default: `sqlite:livegate.db`.
    pub url: Secret,
    /// Largest number of pooled connections (MySQL; SQLite always uses one writer). Default: 16.
    pub max_connections: u32,
    /// How long a query may wait for a free connection before the database counts as
    /// unavailable, in milliseconds. Default: 500.
    pub acquire_timeout_ms: u64,
    /// Whether to apply pending migrations at start. Default: true.
    pub migrate_on_start: bool,
    /// Longest a statement may run, and wait for a row lock, on MySQL/MariaDB, in
    /// milliseconds (lock waits are cut at whole seconds, at least one). A request that gave
    /// up still has its statement running on the server and its connection out of the pool
    /// until the statement ends: this bounds that. Default: the service's request deadline.
    pub statement_timeout_ms: Option<u64>,
}

impl Default for DbConfig {
    fn default() -> Self {
        Self {
            url: Secret::new("sqlite:livegate.db"),
            max_connections: 16,
            acquire_timeout_ms: 500,
            migrate_on_start: true,
            statement_timeout_ms: None,
        }
    }
}

impl DbConfig {
    /// Records problems under `section` (e.g. `database`).
    pub fn validate(&self, section: &str, problems: &mut Problems) {
        if Backend::of_url(self.url.expose()).is_none() {
            problems.add(
                format!("{section}.url"),
                "must start with `mysql://`, `mariadb://` or `sqlite:`",
            );
        }
        problems.check(
            self.max_connections > 0,
            &format!("{section}.max_connections"),
            "must be at least 1",
        );
        problems.check(
            self.acquire_timeout_ms > 0,
            &format!("{section}.acquire_timeout_ms"),
            "must be at least 1",
        );
        problems.check(
            self.statement_timeout_ms != Some(0),
            &format!("{section}.statement_timeout_ms"),
            "must be at least 1",
        );
    }
}

/// Which database engine a URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// MySQL or MariaDB.
    Mysql,
    /// SQLite (a file or memory).
    Sqlite,
}

impl Backend {
    /// The backend a connection URL names, if any.
    pub fn of_url(url: &str) -> Option<Backend> {
        if url.starts_with("mysql://") || url.starts_with("mariadb://") {
            Some(Backend::Mysql)
        } else if url.starts_with("sqlite:") {
            Some(Backend::Sqlite)
        } else {
            None
        }
    }
}

/// How long a SQLite file may take to open (and be created) at start-up.
const SQLITE_FIRST_OPEN: Duration = Duration::from_secs(30);

/// Why a database operation failed.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The database could not be reached in time (pool timeout, connection refused or lost).
    #[error("database unavailable")]
    Unavailable(#[source] sqlx::Error),
    /// A SQLite database file did not open within the start-up deadline.
    #[error("the SQLite database did not open within {} s: is its disk stalled?", .0.as_secs())]
    OpenTimedOut(Duration),
    /// The URL names no supported backend.
    #[error("unsupported database URL: expected mysql://, mariadb:// or sqlite:")]
    UnsupportedUrl,
    /// Applying migrations failed.
    #[error("database migration failed")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// Any other database error (constraint violation, bad SQL, decoding).
    #[error("database error")]
    Query(#[source] sqlx::Error),
    /// An insert succeeded but the database reported no usable id for the new row.
    #[error("the database reported no id for the inserted row")]
    NoInsertId,
}

impl DbError {
    /// Whether the failure means "cannot reach the database" rather than "the query failed".
    pub fn is_unavailable(&self) -> bool {
        matches!(self, DbError::Unavailable(_) | DbError::OpenTimedOut(_))
    }
}

impl From<sqlx::Error> for DbError {
    fn from(err: sqlx::Error) -> Self {
        match err {
            sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::WorkerCrashed => DbError::Unavailable(err),
            other => DbError::Query(other),
        }
    }
}

/// Whether a `sqlite:` URL names a database that lives in memory, not in a file.
fn is_in_memory(url: &str) -> bool {
    url.contains(":memory:") || url.contains("mode=memory")
}

/// Creates a missing SQLite database file readable and writable by its owner only: it holds
/// stream keys and password hashes, and SQLite gives the `-wal` and `-shm` files it makes
/// beside it the same permissions. An empty file is a new database to SQLite. A file that
/// exists is left as its owner set it.
async fn create_private(path: &std::path::Path) {
    let mut file = tokio::fs::OpenOptions::new();
    file.write(true).create_new(true);
    #[cfg(unix)]
    file.mode(0o600);
    // Any failure (a missing directory, no permission) is SQLite's to report, in the words
    // an operator knows, when it opens the file next.
    if let Err(err) = file.open(path).await {
        if err.kind() != std::io::ErrorKind::AlreadyExists {
            tracing::debug!(error = %err, path = %path.display(), "cannot create the SQLite file");
        }
    }
}

/// A connection pool to one of the supported backends.
#[derive(Debug, Clone)]
pub enum Database {
    /// MySQL or MariaDB.
    Mysql(MySqlPool),
    /// SQLite.
    Sqlite(SqlitePool),
}

/// One pooled connection, held across several repository calls so that they share it (a
/// publish's room lookup and its write: one checkout instead of two). Returned to the pool
/// when dropped.
#[derive(Debug)]
pub enum Conn {
    /// MySQL or MariaDB.
    Mysql(sqlx::pool::PoolConnection<sqlx::MySql>),
    /// SQLite.
    Sqlite(sqlx::pool::PoolConnection<sqlx::Sqlite>),
}

impl Database {
    /// Connects according to `config` (lazily for MySQL: the first query opens a connection,
    /// so a service can start while the database is still down).
    pub async fn connect(config: &DbConfig) -> Result<Database, DbError> {
        let url = config.url.expose();
        let acquire = Duration::from_millis(config.acquire_timeout_ms);
        match Backend::of_url(url) {
            Some(Backend::Mysql) => {
                let url = url.replacen("mariadb://", "mysql://", 1);
                let options = MySqlConnectOptions::from_str(&url)?;
                let limits = config.statement_timeout_ms.map(SessionLimits::new);
                Ok(Database::Mysql(
                    MySqlPoolOptions::new()
                        .after_connect(move |conn, _meta| {
                            Box::pin(async move {
                                if let Some(limits) = limits {
                                    limits.apply(conn).await?;
                                }
                                Ok(())
                            })
                        })
                        .max_connections(config.max_connections)
                        // A full pool, kept: opening a connection (handshake, session
                        // settings) never lands on a publish's path.
                        .min_connections(config.max_connections)
                        .idle_timeout(None)
                        .acquire_timeout(acquire)
                        // No ping before every checkout (a round trip per query): a broken
                        // connection fails its query, counts as unavailable, and is dropped.
                        .test_before_acquire(false)
                        .connect_lazy_with(options),
                ))
            }
            Some(Backend::Sqlite) => {
                let options = SqliteConnectOptions::from_str(url)?
                    .create_if_missing(true)
                    .journal_mode(SqliteJournalMode::Wal)
                    .busy_timeout(acquire)
                    .foreign_keys(true);
                // The first open of a file may create it and switch it to WAL, both of which
                // write and sync: on a disk busy writing back recordings that takes longer
                // than a query may wait for the pool, and the pool would give up on its
                // connection and the service would not start. It is done once here under a
                // start-up deadline; the pool's own open then finds the file ready.
                let first = tokio::time::timeout(SQLITE_FIRST_OPEN, async {
                    if !is_in_memory(url) {
                        create_private(options.get_filename()).await;
                    }
                    sqlx::ConnectOptions::connect(&options).await
                })
                .await;
                match first {
                    Ok(conn) => sqlx::Connection::close(conn?).await?,
                    Err(_) => return Err(DbError::OpenTimedOut(SQLITE_FIRST_OPEN)),
                }
                // One connection: SQLite has a single writer anyway, and an in-memory database
                // exists only inside the connection that created it.
                let pool = SqlitePoolOptions::new()
                    .max_connections(1)
                    .min_connections(1)
                    .idle_timeout(None)
                    .max_lifetime(None)
                    .acquire_timeout(acquire)
                    .connect_with(options)
                    .await?;
                Ok(Database::Sqlite(pool))
            }
            None => Err(DbError::UnsupportedUrl),
        }
    }

    /// Opens every connection of a MySQL pool now rather than on first use, so that no
    /// request pays for a handshake; the pool keeps them (`min_connections` is the pool size,
    /// no idle timeout). A no-op for SQLite.
    pub async fn warm_up(&self) -> Result<(), DbError> {
        if let Database::Mysql(pool) = self {
            let mut held = Vec::new();
            for _ in 0..pool.options().get_max_connections() {
                held.push(pool.acquire().await?);
            }
        }
        Ok(())
    }

    /// Takes a connection out of the pool (waiting at most `acquire_timeout_ms`).
    pub async fn acquire(&self) -> Result<Conn, DbError> {
        Ok(match self {
            Database::Mysql(pool) => Conn::Mysql(pool.acquire().await?),
            Database::Sqlite(pool) => Conn::Sqlite(pool.acquire().await?),
        })
    }

    /// The backend behind this pool.
    pub fn backend(&self) -> Backend {
        match self {
            Database::Mysql(_) => Backend::Mysql,
            Database::Sqlite(_) => Backend::Sqlite,
        }
    }

    /// Applies every migration not yet applied. Safe to run concurrently with itself.
    pub async fn migrate(&self) -> Result<(), DbError> {
        match self {
            Database::Mysql(pool) => {
                // On a connection of its own, without the request limits: a migration may
                // rightly run for long.
                let mut conn = pool.acquire().await?.detach();
                SessionLimits::UNLIMITED.apply(&mut conn).await?;
                let migrated = MYSQL_MIGRATIONS.run(&mut conn).await;
                let _ = sqlx::Connection::close(conn).await;
                migrated?;
            }
            Database::Sqlite(pool) => SQLITE_MIGRATIONS.run(pool).await?,
        }
        Ok(())
    }

    /// A cheap round trip, for readiness checks.
    pub async fn ping(&self) -> Result<(), DbError> {
        match self {
            Database::Mysql(pool) => sqlx::query("SELECT 1").execute(pool).await.map(drop)?,
            Database::Sqlite(pool) => sqlx::query("SELECT 1").execute(pool).await.map(drop)?,
        }
        Ok(())
    }

    /// Closes every pooled connection.
    pub async fn close(&self) {
        match self {
            Database::Mysql(pool) => pool.close().await,
            Database::Sqlite(pool) => pool.close().await,
        }
    }
}

/// Per-session limits of MySQL/MariaDB connections.
#[derive(Debug, Clone, Copy)]
struct SessionLimits {
    /// `innodb_lock_wait_timeout`, whole seconds.
    lock_wait_s: u64,
    /// MariaDB `max_statement_time` / MySQL `max_execution_time`, milliseconds (0 = none).
    statement_ms: u64,
}

impl SessionLimits {
    /// The servers' defaults.
    const UNLIMITED: SessionLimits = SessionLimits {
        lock_wait_s: 50,
        statement_ms: 0,
    };

    fn new(timeout_ms: u64) -> Self {
        Self {
            lock_wait_s: timeout_ms.div_ceil(1000).max(1),
            statement_ms: timeout_ms.max(1),
        }
    }

    async fn apply(self, conn: &mut sqlx::MySqlConnection) -> Result<(), sqlx::Error> {
        let SessionLimits {
            lock_wait_s,
            statement_ms,
        } = self;
        // MariaDB's `max_statement_time` is in seconds; MySQL, which lacks it, has
        // `max_execution_time` in milliseconds (for SELECTs).
        let mariadb = format!(
            "SET SESSION innodb_lock_wait_timeout = {lock_wait_s}, \
             max_statement_time = {}.{:03}",
            statement_ms / 1000,
            statement_ms % 1000
        );
        match sqlx::query(&mariadb).execute(&mut *conn).await {
            Ok(_) => Ok(()),
            Err(sqlx::Error::Database(_)) => {
                let mysql = format!(
                    "SET SESSION innodb_lock_wait_timeout = {lock_wait_s}, \
                     max_execution_time = {statement_ms}"
                );
                sqlx::query(&mysql).execute(&mut *conn).await.map(drop)
            }
            Err(err) => Err(err),
        }
    }
}

/// The id MySQL reported for an inserted row: 0 means none was generated, and an id beyond
/// `i64` cannot be stored back; both are errors, never a made-up id.
pub(crate) fn mysql_insert_id(reported: u64) -> Result<i64, DbError> {
    match i64::try_from(reported) {
        Ok(id) if id > 0 => Ok(id),
        _ => Err(DbError::NoInsertId),
    }
}

/// The rowid SQLite reported for an inserted row (0 when nothing was inserted).
pub(crate) fn sqlite_insert_id(reported: i64) -> Result<i64, DbError> {
    if reported > 0 {
        Ok(reported)
    } else {
        Err(DbError::NoInsertId)
    }
}

/// Unix time in milliseconds.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_insert_without_a_usable_id_is_an_error() {
        assert!(matches!(mysql_insert_id(0), Err(DbError::NoInsertId)));
        assert!(matches!(
            mysql_insert_id(u64::MAX),
            Err(DbError::NoInsertId)
        ));
        assert!(matches!(sqlite_insert_id(0), Err(DbError::NoInsertId)));
        assert_eq!(mysql_insert_id(7).unwrap(), 7);
        assert_eq!(sqlite_insert_id(7).unwrap(), 7);
    }
}
