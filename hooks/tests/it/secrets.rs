//! ZLMediaKit's start notice carries its whole configuration, secrets included: none of it
//! may reach a log line or a stored row.

use std::io::Write;
use std::sync::{Arc, Mutex};

use livegate_core::db::testing::backends;
use livegate_core::db::Database;
use sqlx::Row as _;

use crate::support::{zlm_body, Options, TestApp};

const API_SECRET: &str = "zlm-api-secret-Qx81-never-logged";
const HOOK_SECRET: &str = "hook-url-secret-Vb27-never-logged";

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

async fn dump(db: &Database) -> String {
    let mut out = String::new();
    for table in ["streams", "rooms", "interrupted_recordings", "users"] {
        let sql = format!("SELECT * FROM {table}");
        macro_rules! rows {
            ($pool:expr) => {
                for row in sqlx::query(&sql).fetch_all($pool).await.unwrap() {
                    for i in 0..row.len() {
                        let text: Option<String> = row.try_get_unchecked(i).ok().flatten();
                        out.push_str(&text.unwrap_or_default());
                        out.push('|');
                    }
                    out.push('\n');
                }
            };
        }
        match db {
            Database::Mysql(pool) => rows!(pool),
            Database::Sqlite(pool) => rows!(pool),
        }
    }
    out
}

#[tokio::test]
async fn the_start_notices_secrets_are_neither_logged_nor_stored() {
    let logs = Captured::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    // The test's runtime runs on this thread only, so every event of the service lands here.
    let _guard = tracing::subscriber::set_default(subscriber);
    for backend in backends() {
        let mut config = crate::support::test_config();
        config.zlmediakit.keepalive_interval_ms = 100;
        config.zlmediakit.keepalive_misses = 1;
        config.reconcile.interval_ms = 100;
        let app = TestApp::start(Options {
            config,
            ..Options::new(backend)
        })
        .await;
        app.room(42, "k42").await;
        let hook = format!("http://127.0.0.1:8085/api/v1/hook/on_publish?secret={HOOK_SECRET}");
        let started = zlm_body(
            "on_server_started",
            "",
            &[
                ("api.secret", API_SECRET.into()),
                ("hook.on_publish", hook.clone().into()),
                ("hook.on_play", hook.replace("on_publish", "on_play").into()),
            ],
        );
        assert!(started.contains(API_SECRET) && started.contains(HOOK_SECRET));
        assert_eq!(app.json("on_server_started", started.clone()).await.0, 200);
        // Twice: the second notice finds the stream below open and works through it too.
        let publish = zlm_body(
            "on_publish",
            "reply_code0=True",
            &[("params", "key=k42".into())],
        );
        assert_eq!(app.json("on_publish", publish).await.0, 200);
        assert_eq!(app.json("on_server_started", started.clone()).await.0, 200);
        // A body that is refused is not echoed either.
        let broken = started.replacen('{', r#"{"mediaServerId":"x","#, 1);
        assert_eq!(app.json("on_server_started", broken).await.0, 400);
        // Let the keepalive watch close the stream and note its recording.
        app.json(
            "on_server_keepalive",
            zlm_body("on_server_keepalive", "", &[("hook_index", 3.into())]),
        )
        .await;
        // The note follows the close: wait for it, not for the room to go offline.
        crate::support::wait_until("the interrupted recording to be noted", || async {
            let noted = app.db.interrupted_recordings(0, 10).await.ok()?;
            (!noted.is_empty()).then_some(noted)
        })
        .await;
        assert!(!app.is_live(42).await);
        assert_eq!(app.db.interrupted_recordings(0, 10).await.unwrap().len(), 1);

        let stored = dump(&app.db).await;
        assert!(stored.contains("zlm-1"), "{stored}");
        for secret in [API_SECRET, HOOK_SECRET] {
            assert!(!stored.contains(secret), "{backend:?}: stored {secret}");
        }
        app.stop().await;
    }
    let logged = String::from_utf8_lossy(&logs.0.lock().unwrap()).into_owned();
    assert!(
        logged.contains("on_server_started"),
        "nothing captured: {logged}"
    );
    for secret in [API_SECRET, HOOK_SECRET] {
        assert!(!logged.contains(secret), "logged {secret}");
    }
}
