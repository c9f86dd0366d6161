//! What repository functions run on: the pool, one pooled connection, or a transaction.
//!
//! Every repository function takes `impl Executor<'_>`, so one function serves all three:
//!
//! ```ignore
//! rooms::get(&db, id).await?;            // a connection from the pool, for this call
//! rooms::get(&mut conn, id).await?;      // a connection the caller holds across calls
//! rooms::get(&mut tx, id).await?;        // inside a transaction the caller commits or drops
//! ```

use std::future::Future;
use std::pin::Pin;

use sqlx::pool::PoolConnection;
use sqlx::{MySql, MySqlConnection, Sqlite, SqliteConnection};

use super::{Conn, Database, DbError, Tx};

/// A place to run statements: `&Database`, `&mut Conn` or `&mut Tx`. Sealed: the kit decides
/// what a repository function may run on.
pub trait Executor<'a>: Send + sealed::Sealed {
    /// The connection to run on (taken from the pool for `&Database`).
    #[doc(hidden)]
    fn connection(self) -> sealed::Connecting<'a>;
}

pub(crate) mod sealed {
    use super::*;

    /// The future of [`Executor::connection`]. Boxed rather than `impl Future`: callers spawn
    /// repository calls, and the compiler cannot prove an `impl Future` returned through a
    /// lifetime-generic trait `Send` for every lifetime. One allocation per call, next to a
    /// database round trip.
    pub(crate) type Connecting<'a> =
        Pin<Box<dyn Future<Output = Result<Handle<'a>, DbError>> + Send + 'a>>;

    pub trait Sealed {}
    impl Sealed for &Database {}
    impl Sealed for &mut Conn {}
    impl Sealed for &mut Tx<'_> {}

    /// A connection borrowed from the caller, or taken from the pool for one call.
    #[derive(Debug)]
    pub enum Handle<'a> {
        MysqlPooled(PoolConnection<MySql>),
        SqlitePooled(PoolConnection<Sqlite>),
        Mysql(&'a mut MySqlConnection),
        Sqlite(&'a mut SqliteConnection),
    }

    /// The connection of a [`Handle`], by backend.
    pub(crate) enum Target<'h> {
        Mysql(&'h mut MySqlConnection),
        Sqlite(&'h mut SqliteConnection),
    }

    impl Handle<'_> {
        pub(crate) fn target(&mut self) -> Target<'_> {
            match self {
                Handle::MysqlPooled(conn) => Target::Mysql(conn),
                Handle::SqlitePooled(conn) => Target::Sqlite(conn),
                Handle::Mysql(conn) => Target::Mysql(conn),
                Handle::Sqlite(conn) => Target::Sqlite(conn),
            }
        }
    }
}

pub(crate) use sealed::Target;

impl<'a> Executor<'a> for &'a Database {
    fn connection(self) -> sealed::Connecting<'a> {
        Box::pin(async move {
            Ok(match self {
                Database::Mysql(pool) => sealed::Handle::MysqlPooled(pool.acquire().await?),
                Database::Sqlite(pool) => sealed::Handle::SqlitePooled(pool.acquire().await?),
            })
        })
    }
}

impl<'a> Executor<'a> for &'a mut Conn {
    fn connection(self) -> sealed::Connecting<'a> {
        let handle = match self {
            Conn::Mysql(conn) => sealed::Handle::Mysql(conn),
            Conn::Sqlite(conn) => sealed::Handle::Sqlite(conn),
        };
        Box::pin(std::future::ready(Ok(handle)))
    }
}

impl<'a, 'c: 'a> Executor<'a> for &'a mut Tx<'c> {
    fn connection(self) -> sealed::Connecting<'a> {
        Box::pin(std::future::ready(Ok(self.handle())))
    }
}

/// Runs `$body` with `$conn` bound to the `&mut` connection of whichever backend `$exec`
/// runs on. Placeholders (`?`) are the same in both dialects, so the SQL text is shared; write
/// the `match` on [`Target`] by hand where the dialects differ.
///
/// The second form also binds `$insert_ignore` to the dialect's "insert unless a unique key
/// is taken" (`INSERT IGNORE`, `INSERT OR IGNORE`), the one difference most statements have.
macro_rules! on_conn {
    ($exec:expr, $conn:ident => $body:expr) => {{
        let mut handle = $crate::db::Executor::connection($exec).await?;
        match handle.target() {
            $crate::db::exec::Target::Mysql($conn) => $body,
            $crate::db::exec::Target::Sqlite($conn) => $body,
        }
    }};
    ($exec:expr, $conn:ident, $insert_ignore:ident => $body:expr) => {{
        let mut handle = $crate::db::Executor::connection($exec).await?;
        match handle.target() {
            $crate::db::exec::Target::Mysql($conn) => {
                let $insert_ignore = "INSERT IGNORE";
                $body
            }
            $crate::db::exec::Target::Sqlite($conn) => {
                let $insert_ignore = "INSERT OR IGNORE";
                $body
            }
        }
    }};
}
pub(crate) use on_conn;
