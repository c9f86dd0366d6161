//! Throw-away databases for tests: an in-memory SQLite one, or a fresh MariaDB/MySQL database
//! (`lg_test_<random>`) on the server named by `LIVEGATE_TEST_MYSQL_URL`, dropped afterwards.
//! Only compiled with the `testing` feature.

use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use sqlx::mysql::{MySqlConnectOptions, MySqlPoolOptions};
use sqlx::{ConnectOptions, Connection};

use super::{Backend, Database, DbConfig, DbError};
use crate::secret::Secret;

/// The backends to run a test suite against: SQLite always, and MySQL/MariaDB, which must be
/// configured under CI (see [`crate::testing`]: missing, it fails the test there and is
/// reported as skipped elsewhere).
pub fn backends() -> Vec<Backend> {
    let mut backends = vec![Backend::Sqlite];
    if crate::testing::mysql_url().is_some() {
        backends.push(Backend::Mysql);
    }
    backends
}

/// A migrated database that exists for one test. A MySQL database is dropped when this is.
#[derive(Debug)]
pub struct TestDatabase {
    /// The pool to use.
    pub db: Database,
    /// The URL of this very database (for services that connect by themselves).
    pub url: String,
    mysql_drop: Option<(MySqlConnectOptions, String)>,
}

fn unique_name() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "lg_test_{}_{:x}_{}",
        std::process::id(),
        nanos,
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

impl TestDatabase {
    /// Creates and migrates a database on `backend`.
    ///
    /// SQLite uses a file in a fresh temporary path (so that a service under test can open it by
    /// URL too). MySQL needs `LIVEGATE_TEST_MYSQL_URL` with an account allowed to create databases.
    pub async fn create(backend: Backend) -> Result<TestDatabase, DbError> {
        match backend {
            Backend::Sqlite => {
                let path = std::env::temp_dir().join(format!("{}.db", unique_name()));
                let url = format!("sqlite:{}", path.display());
                let db = Database::connect(&DbConfig {
                    url: Secret::new(url.clone()),
                    // A loaded machine running many tests at once can take longer than a
                    // service's default to open and migrate a file.
                    acquire_timeout_ms: 10_000,
                    ..DbConfig::default()
                })
                .await?;
                db.migrate().await?;
                Ok(TestDatabase {
                    db,
                    url,
                    mysql_drop: None,
                })
            }
            Backend::Mysql => {
                let server = crate::testing::mysql_url().ok_or(DbError::UnsupportedUrl)?;
                let server = server.replacen("mariadb://", "mysql://", 1);
                let admin = MySqlConnectOptions::from_str(&server)?;
                let name = unique_name();
                let mut conn = admin.connect().await?;
                sqlx::query(&format!("CREATE DATABASE `{name}` CHARACTER SET utf8mb4"))
                    .execute(&mut conn)
                    .await?;
                conn.close().await?;
                let options = admin.clone().database(&name);
                let pool = MySqlPoolOptions::new()
                    .max_connections(16)
                    .acquire_timeout(Duration::from_secs(10))
                    .connect_with(options)
                    .await?;
                let db = Database::Mysql(pool);
                db.migrate().await?;
                Ok(TestDatabase {
                    db,
                    url: database_url(&server, &name),
                    mysql_drop: Some((admin, name)),
                })
            }
        }
    }
}

/// `server` (a mysql:// URL) with its database path replaced by `name`.
fn database_url(server: &str, name: &str) -> String {
    let (base, query) = match server.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (server, None),
    };
    let authority_end = base
        .strip_prefix("mysql://")
        .and_then(|rest| rest.find('/').map(|i| i + "mysql://".len()))
        .unwrap_or(base.len());
    let mut url = format!("{}/{name}", &base[..authority_end]);
    if let Some(query) = query {
        url.push('?');
        url.push_str(query);
    }
    url
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        if let Some((admin, name)) = self.mysql_drop.take() {
            // Drop runs inside the test's runtime, which cannot be blocked on; a helper thread
            // with its own runtime does the asynchronous clean-up and is joined.
            let cleanup = std::thread::spawn(move || {
                let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                else {
                    return;
                };
                runtime.block_on(async move {
                    if let Ok(mut conn) = admin.connect().await {
                        // The test's pool may still hold connections, some in the middle of a
                        // rollback that its (now blocked) runtime would have finished: end
                        // them, or DROP DATABASE waits for their metadata locks forever.
                        // The column is a signed BIGINT on MariaDB, unsigned on MySQL: read
                        // it as one type on both, or the decode fails and nothing is ended.
                        let ids: Vec<i64> = sqlx::query_scalar(
                            "SELECT CAST(id AS SIGNED) FROM information_schema.processlist \
                             WHERE db = ? AND id <> CONNECTION_ID()",
                        )
                        .bind(&name)
                        .fetch_all(&mut conn)
                        .await
                        .unwrap_or_default();
                        for id in ids {
                            let _ = sqlx::query(&format!("KILL CONNECTION {id}"))
                                .execute(&mut conn)
                                .await;
                        }
                        let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS `{name}`"))
                            .execute(&mut conn)
                            .await;
                        let _ = conn.close().await;
                    }
                });
            });
            let _ = cleanup.join();
        } else if let Some(path) = self.url.strip_prefix("sqlite:") {
            for suffix in ["", "-wal", "-shm"] {
                let _ = std::fs::remove_file(format!("{path}{suffix}"));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::database_url;

    #[test]
    fn database_url_replaces_the_path() {
        assert_eq!(
            database_url("mysql://root@127.0.0.1:3306/test", "x"),
            "mysql://root@127.0.0.1:3306/x"
        );
        assert_eq!(
            database_url("mysql://u:p@h/test?ssl-mode=disabled", "x"),
            "mysql://u:p@h/x?ssl-mode=disabled"
        );
        assert_eq!(database_url("mysql://u@h:1", "x"), "mysql://u@h:1/x");
    }
}
