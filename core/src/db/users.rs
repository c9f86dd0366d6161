//! Users: accounts that own rooms, watch and pay.

use super::exec::Target;
use super::{mysql_insert_id, sqlite_insert_id, DbError, Executor};

/// Creates a user and returns its id. Usernames are unique.
pub async fn create(
    exec: impl Executor<'_>,
    username: &str,
    password_hash: &str,
    role: &str,
    now_ms: i64,
) -> Result<i64, DbError> {
    const SQL: &str =
        "INSERT INTO users (username, password_hash, role, created_at) VALUES (?, ?, ?, ?)";
    let mut handle = exec.connection().await?;
    match handle.target() {
        Target::Mysql(conn) => {
            let done = sqlx::query(SQL)
                .bind(username)
                .bind(password_hash)
                .bind(role)
                .bind(now_ms)
                .execute(conn)
                .await?;
            mysql_insert_id(done.last_insert_id())
        }
        Target::Sqlite(conn) => {
            let done = sqlx::query(SQL)
                .bind(username)
                .bind(password_hash)
                .bind(role)
                .bind(now_ms)
                .execute(conn)
                .await?;
            sqlite_insert_id(done.last_insert_rowid())
        }
    }
}

/// A row of `users`. `Debug` leaves the password hash out.
#[derive(Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct User {
    /// User id.
    pub id: i64,
    /// Unique login name.
    pub username: String,
    /// The password's PHC string (argon2id).
    pub password_hash: String,
    /// `viewer`, `streamer` or `admin`.
    pub role: String,
    /// Creation time, unix milliseconds.
    pub created_at: i64,
}

impl std::fmt::Debug for User {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("User")
            .field("id", &self.id)
            .field("username", &self.username)
            .field("password_hash", &"***")
            .field("role", &self.role)
            .field("created_at", &self.created_at)
            .finish()
    }
}

const USER_COLUMNS: &str = "id, username, password_hash, role, created_at";

/// The user with `id`, if any.
pub async fn get(exec: impl Executor<'_>, id: i64) -> Result<Option<User>, DbError> {
    let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE id = ?");
    let user = super::exec::on_conn!(exec, conn => {
        sqlx::query_as::<_, User>(&sql).bind(id).fetch_optional(conn).await?
    });
    Ok(user)
}

/// The user called `username`, if any.
pub async fn by_username(exec: impl Executor<'_>, username: &str) -> Result<Option<User>, DbError> {
    let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE username = ?");
    let user = super::exec::on_conn!(exec, conn => {
        sqlx::query_as::<_, User>(&sql).bind(username).fetch_optional(conn).await?
    });
    Ok(user)
}

/// Whether `err` is the unique-username violation of [`create`].
pub fn is_duplicate(err: &DbError) -> bool {
    matches!(err, DbError::Query(sqlx::Error::Database(db)) if db.is_unique_violation())
}
