//! Transactions: begun on the pool or on a held connection, committed explicitly, rolled back
//! when dropped.
//!
//! Isolation is the one money needs. On MySQL/MariaDB (InnoDB, REPEATABLE READ) a repository
//! function that reads a row it is about to change locks it (`SELECT … FOR UPDATE`), so two
//! transactions on one row run one after the other. SQLite has no row locks: its
//! transactions start with `BEGIN IMMEDIATE`, taking the database's write lock up front, so a
//! second writer waits (up to the busy timeout) instead of reading a value that is about to
//! change and failing at its first write.

use sqlx::{MySql, Sqlite};

use super::exec::sealed::Handle;
use super::{Backend, Conn, Database, DbError};

/// How SQLite transactions begin: with the write lock.
const SQLITE_BEGIN: &str = "BEGIN IMMEDIATE";

/// An open transaction. [`Tx::commit`] makes its changes visible; dropping it (or
/// [`Tx::rollback`]) undoes them. Pass `&mut tx` to repository functions.
#[derive(Debug)]
pub struct Tx<'c> {
    inner: Inner<'c>,
}

#[derive(Debug)]
enum Inner<'c> {
    Mysql(sqlx::Transaction<'c, MySql>),
    Sqlite(sqlx::Transaction<'c, Sqlite>),
}

impl Database {
    /// Begins a transaction on a connection of its own, returned to the pool when the
    /// transaction ends.
    pub async fn begin(&self) -> Result<Tx<'static>, DbError> {
        let inner = match self {
            Database::Mysql(pool) => Inner::Mysql(pool.begin().await?),
            Database::Sqlite(pool) => Inner::Sqlite(pool.begin_with(SQLITE_BEGIN).await?),
        };
        Ok(Tx { inner })
    }
}

impl Conn {
    /// Begins a transaction on this connection (which the transaction borrows until it ends).
    pub async fn begin(&mut self) -> Result<Tx<'_>, DbError> {
        let inner = match self {
            Conn::Mysql(conn) => Inner::Mysql(sqlx::Connection::begin(&mut **conn).await?),
            Conn::Sqlite(conn) => {
                Inner::Sqlite(sqlx::Connection::begin_with(&mut **conn, SQLITE_BEGIN).await?)
            }
        };
        Ok(Tx { inner })
    }
}

impl Tx<'_> {
    /// Makes the transaction's changes permanent.
    pub async fn commit(self) -> Result<(), DbError> {
        match self.inner {
            Inner::Mysql(tx) => tx.commit().await?,
            Inner::Sqlite(tx) => tx.commit().await?,
        }
        Ok(())
    }

    /// Undoes the transaction's changes now (dropping it does the same, on the connection's
    /// next use).
    pub async fn rollback(self) -> Result<(), DbError> {
        match self.inner {
            Inner::Mysql(tx) => tx.rollback().await?,
            Inner::Sqlite(tx) => tx.rollback().await?,
        }
        Ok(())
    }

    /// The backend the transaction runs on.
    pub fn backend(&self) -> Backend {
        match self.inner {
            Inner::Mysql(_) => Backend::Mysql,
            Inner::Sqlite(_) => Backend::Sqlite,
        }
    }

    pub(super) fn handle(&mut self) -> Handle<'_> {
        match &mut self.inner {
            Inner::Mysql(tx) => Handle::Mysql(tx),
            Inner::Sqlite(tx) => Handle::Sqlite(tx),
        }
    }
}
