//! The repository layer against real databases: SQLite always, MariaDB/MySQL from
//! `LIVEGATE_TEST_MYSQL_URL` (required under CI). Each test gets its own freshly migrated
//! database.
#![allow(clippy::unwrap_used, reason = "tests fail loudly on unexpected errors")]

use livegate_core::db::testing::{backends, TestDatabase};
use livegate_core::db::{
    rooms, streams, users, Backend, Database, NewRoom, NewStream, OriginIds, StartOutcome, Stream,
};

async fn room(db: &Database, owner_name: &str, key: &str) -> i64 {
    let owner = users::create(db, owner_name, "hash", "streamer", 1)
        .await
        .unwrap();
    rooms::create(
        db,
        &NewRoom {
            owner_id: owner,
            title: "t",
            stream_key: key,
            stream_key_expires_at: None,
            publish_allow_cidrs: None,
        },
        1,
    )
    .await
    .unwrap()
}

fn origin(client: &str) -> OriginIds {
    OriginIds {
        kind: "srs".into(),
        server_id: "srv".into(),
        service_id: Some("svc1".into()),
        client_id: Some(client.into()),
        stream_id: Some("vid-1".into()),
        ..OriginIds::default()
    }
}

/// A publish start, committed unless refused.
async fn start(db: &Database, room_id: i64, client: &str, at: i64) -> StartOutcome {
    let origin = origin(client);
    let mut tx = db.begin().await.unwrap();
    let new = NewStream {
        room_id,
        origin: &origin,
        publisher_ip: Some("127.0.0.1"),
    };
    let outcome = streams::start(&mut tx, &new, at).await.unwrap();
    tx.commit().await.unwrap();
    outcome
}

/// A publish stop in a transaction of its own.
async fn stop(
    db: &Database,
    room_id: i64,
    server: &str,
    client: Option<&str>,
    at: i64,
) -> Option<Stream> {
    let mut tx = db.begin().await.unwrap();
    let stopped = streams::stop(&mut tx, room_id, server, client, at)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    stopped
}

/// Closes a stream by id in a transaction of its own.
async fn close(db: &Database, id: i64, at: i64) -> Option<Stream> {
    let mut tx = db.begin().await.unwrap();
    let closed = streams::close(&mut tx, id, at).await.unwrap();
    tx.commit().await.unwrap();
    closed
}

async fn each_backend<F, Fut>(test: F)
where
    F: Fn(Database, Backend) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    for backend in backends() {
        let test_db = TestDatabase::create(backend).await.unwrap();
        test(test_db.db.clone(), backend).await;
    }
}

#[tokio::test]
async fn migrations_are_idempotent() {
    each_backend(|db, _| async move {
        db.migrate().await.unwrap();
        db.ping().await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn usernames_and_stream_keys_are_unique() {
    each_backend(|db, backend| async move {
        let id = room(&db, "ana", "key-1").await;
        assert!(id > 0);
        assert!(
            users::create(&db, "ana", "h", "viewer", 1).await.is_err(),
            "{backend:?}"
        );
        let owner = users::create(&db, "bo", "h", "viewer", 1).await.unwrap();
        let dup = rooms::create(
            &db,
            &NewRoom {
                owner_id: owner,
                title: "x",
                stream_key: "key-1",
                stream_key_expires_at: None,
                publish_allow_cidrs: None,
            },
            1,
        )
        .await;
        assert!(dup.is_err(), "{backend:?}: duplicate stream key accepted");
        // Keys are case-sensitive on every backend: `KEY-1` is another key.
        let other = rooms::create(
            &db,
            &NewRoom {
                owner_id: owner,
                title: "y",
                stream_key: "KEY-1",
                stream_key_expires_at: None,
                publish_allow_cidrs: None,
            },
            1,
        )
        .await;
        assert!(other.is_ok(), "{backend:?}: keys differing in case collide");
    })
    .await;
}

#[tokio::test]
async fn the_mysql_schema_uses_portable_generated_columns() {
    let migration = include_str!("../migrations/mysql/0001_initial.sql");
    // `PERSISTENT` is MariaDB-only; `STORED` is understood by MySQL and MariaDB alike.
    let code: String = migration
        .lines()
        .filter(|line| !line.trim_start().starts_with("--"))
        .collect();
    assert!(!code.contains("PERSISTENT"));
    assert!(code.contains("STORED"));
}

#[tokio::test]
async fn foreign_keys_are_enforced() {
    each_backend(|db, backend| async move {
        let orphan = rooms::create(
            &db,
            &NewRoom {
                owner_id: 999_999,
                title: "x",
                stream_key: "k",
                stream_key_expires_at: None,
                publish_allow_cidrs: None,
            },
            1,
        )
        .await;
        assert!(orphan.is_err(), "{backend:?}: room without owner accepted");
    })
    .await;
}

#[tokio::test]
async fn room_round_trip_and_debug_hides_the_key() {
    each_backend(|db, _| async move {
        let id = room(&db, "ana", "very-secret-key").await;
        let room = rooms::get(&db, id).await.unwrap().unwrap();
        assert_eq!(room.stream_key, "very-secret-key");
        assert!(!room.is_live && !room.disabled);
        assert!(!format!("{room:?}").contains("very-secret-key"));
        rooms::set_disabled(&db, id, true).await.unwrap();
        assert!(rooms::get(&db, id).await.unwrap().unwrap().disabled);
        assert!(rooms::get(&db, id + 1000).await.unwrap().is_none());
    })
    .await;
}

#[tokio::test]
async fn start_marks_live_and_refuses_a_second_publisher() {
    each_backend(|db, _| async move {
        let id = room(&db, "ana", "k").await;
        let StartOutcome::Started(stream) = start(&db, id, "c1", 100).await else {
            panic!("first start refused");
        };
        assert!(rooms::get(&db, id).await.unwrap().unwrap().is_live);
        assert_eq!(start(&db, id, "c2", 101).await, StartOutcome::Refused);
        let open = streams::open(&db, id).await.unwrap().unwrap();
        assert_eq!(open.id, stream);
        assert_eq!(open.origin_client_id.as_deref(), Some("c1"));
        assert_eq!(open.start_at, 100);
        assert_eq!(streams::of_room(&db, id).await.unwrap().len(), 1);
    })
    .await;
}

#[tokio::test]
async fn concurrent_publishers_exactly_one_wins() {
    each_backend(|db, _| async move {
        let id = room(&db, "ana", "k").await;
        let attempts = (0..8).map(|i| {
            let db = db.clone();
            async move { start(&db, id, &format!("c{i}"), 100).await }
        });
        let outcomes = futures_join_all(attempts).await;
        let started = outcomes
            .iter()
            .filter(|o| matches!(o, StartOutcome::Started(_)))
            .count();
        assert_eq!(started, 1, "{outcomes:?}");
        assert_eq!(streams::of_room(&db, id).await.unwrap().len(), 1);
    })
    .await;
}

async fn futures_join_all<F>(futures: impl Iterator<Item = F>) -> Vec<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futures.map(tokio::spawn).collect();
    let mut out = Vec::new();
    for handle in handles {
        out.push(handle.await.unwrap());
    }
    out
}

#[tokio::test]
async fn disabled_rooms_cannot_start() {
    each_backend(|db, _| async move {
        let id = room(&db, "ana", "k").await;
        rooms::set_disabled(&db, id, true).await.unwrap();
        assert_eq!(start(&db, id, "c1", 1).await, StartOutcome::Refused);
        assert!(streams::of_room(&db, id).await.unwrap().is_empty());
    })
    .await;
}

#[tokio::test]
async fn stops_are_idempotent_and_keyed_on_the_client() {
    each_backend(|db, _| async move {
        let id = room(&db, "ana", "k").await;
        // A stop without a start changes nothing.
        assert!(stop(&db, id, "srv", Some("c0"), 5).await.is_none());

        let StartOutcome::Started(first) = start(&db, id, "c1", 10).await else {
            panic!("start refused");
        };
        let closed = stop(&db, id, "srv", Some("c1"), 20).await.unwrap();
        assert_eq!((closed.id, closed.stop_at), (first, Some(20)));
        assert!(!rooms::get(&db, id).await.unwrap().unwrap().is_live);
        // A duplicate stop finds nothing.
        assert!(stop(&db, id, "srv", Some("c1"), 21).await.is_none());

        // A new session; the old session's late stop must not end it.
        let StartOutcome::Started(second) = start(&db, id, "c2", 30).await else {
            panic!("restart refused");
        };
        assert!(stop(&db, id, "srv", Some("c1"), 31).await.is_none());
        assert!(rooms::get(&db, id).await.unwrap().unwrap().is_live);
        assert_eq!(streams::open(&db, id).await.unwrap().unwrap().id, second);
        // A stop from another origin server does not end it either.
        assert!(stop(&db, id, "other", None, 32).await.is_none());

        // A stop that names no client (ZLMediaKit) closes whatever that origin has open.
        let closed = stop(&db, id, "srv", None, 40).await.unwrap();
        assert_eq!(closed.id, second);
        assert!(!rooms::get(&db, id).await.unwrap().unwrap().is_live);
        let rows = streams::of_room(&db, id).await.unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].stop_at, Some(20));
        assert_eq!(rows[1].stop_at, Some(40));
    })
    .await;
}

#[tokio::test]
async fn close_by_id_and_open_streams_of_server() {
    each_backend(|db, _| async move {
        let a = room(&db, "ana", "ka").await;
        let b = room(&db, "bo", "kb").await;
        start(&db, a, "c1", 1).await;
        start(&db, b, "c2", 1).await;
        let open = streams::open_of_server(&db, "srv").await.unwrap();
        assert_eq!(open.len(), 2);
        assert!(streams::open_of_other_service(&db, "srv", "svc1")
            .await
            .unwrap()
            .is_empty());
        assert_eq!(
            streams::open_of_other_service(&db, "srv", "svc2")
                .await
                .unwrap()
                .len(),
            2
        );
        assert!(streams::open_of_server(&db, "elsewhere")
            .await
            .unwrap()
            .is_empty());
        let closed = close(&db, open[0].id, 9).await.unwrap();
        assert_eq!(closed.room_id, a);
        assert!(close(&db, open[0].id, 10).await.is_none());
        assert!(!rooms::get(&db, a).await.unwrap().unwrap().is_live);
        assert!(rooms::get(&db, b).await.unwrap().unwrap().is_live);
    })
    .await;
}

#[tokio::test]
async fn recordings_find_their_stream_after_it_closed() {
    each_backend(|db, _| async move {
        let id = room(&db, "ana", "k").await;
        let StartOutcome::Started(stream) = start(&db, id, "c1", 1).await else {
            panic!("start refused");
        };
        stop(&db, id, "srv", Some("c1"), 2).await;
        let found = streams::latest(&db, id, "srv", Some("c1"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(found.id, stream);
        streams::set_record_url(&db, stream, "/rec/1.flv")
            .await
            .unwrap();
        let rows = streams::of_room(&db, id).await.unwrap();
        assert_eq!(rows[0].record_url.as_deref(), Some("/rec/1.flv"));
        assert!(streams::latest(&db, id, "srv", Some("zz"))
            .await
            .unwrap()
            .is_none());
    })
    .await;
}

#[tokio::test]
async fn unreachable_mysql_is_reported_as_unavailable() {
    use livegate_core::db::DbConfig;
    use livegate_core::Secret;
    // Port 1 on loopback: nothing listens there, so the connection is refused at once.
    let db = Database::connect(&DbConfig {
        url: Secret::new("mysql://u:p@127.0.0.1:1/none"),
        acquire_timeout_ms: 300,
        ..DbConfig::default()
    })
    .await
    .unwrap();
    let err = rooms::get(&db, 1).await.unwrap_err();
    assert!(err.is_unavailable(), "{err:?}");
}

#[tokio::test]
async fn mysql_pools_keep_every_connection_open() {
    use livegate_core::db::DbConfig;
    use livegate_core::Secret;
    if livegate_core::testing::mysql_url().is_none() {
        return;
    }
    let test_db = TestDatabase::create(Backend::Mysql).await.unwrap();
    let db = Database::connect(&DbConfig {
        url: Secret::new(test_db.url.clone()),
        max_connections: 4,
        statement_timeout_ms: Some(2000),
        ..DbConfig::default()
    })
    .await
    .unwrap();
    let Database::Mysql(pool) = &db else {
        unreachable!()
    };
    // Opened ahead of use, and kept, so no publish pays for a handshake.
    db.warm_up().await.unwrap();
    livegate_tests::wait_until("four idle connections", || async {
        (pool.num_idle() >= 4).then_some(())
    })
    .await;
    // A publish's lookup and write share one checked-out connection.
    let id = room(&db, "ana", "k").await;
    let mut conn = db.acquire().await.unwrap();
    assert_eq!(rooms::get(&mut conn, id).await.unwrap().unwrap().id, id);
    let origin = origin("c1");
    let mut tx = conn.begin().await.unwrap();
    let new = NewStream {
        room_id: id,
        origin: &origin,
        publisher_ip: None,
    };
    let started = streams::start(&mut tx, &new, 1).await.unwrap();
    assert!(matches!(started, StartOutcome::Started(_)));
    tx.commit().await.unwrap();
    drop(conn);
    db.close().await;
}

#[tokio::test]
async fn repository_functions_run_on_the_pool_a_connection_or_a_transaction() {
    each_backend(|db, backend| async move {
        let id = room(&db, "ana", "k").await;
        assert_eq!(rooms::get(&db, id).await.unwrap().unwrap().id, id);
        let mut conn = db.acquire().await.unwrap();
        assert_eq!(rooms::get(&mut conn, id).await.unwrap().unwrap().id, id);
        drop(conn);

        // Dropped without commit: nothing happened.
        let mut tx = db.begin().await.unwrap();
        assert_eq!(tx.backend(), backend);
        assert!(rooms::set_disabled(&mut tx, id, true).await.unwrap());
        assert!(rooms::get(&mut tx, id).await.unwrap().unwrap().disabled);
        drop(tx);
        assert!(
            !rooms::get(&db, id).await.unwrap().unwrap().disabled,
            "{backend:?}"
        );

        let mut tx = db.begin().await.unwrap();
        rooms::set_disabled(&mut tx, id, true).await.unwrap();
        tx.rollback().await.unwrap();
        assert!(
            !rooms::get(&db, id).await.unwrap().unwrap().disabled,
            "{backend:?}"
        );

        let mut tx = db.begin().await.unwrap();
        rooms::set_disabled(&mut tx, id, true).await.unwrap();
        tx.commit().await.unwrap();
        assert!(
            rooms::get(&db, id).await.unwrap().unwrap().disabled,
            "{backend:?}"
        );
    })
    .await;
}

#[tokio::test]
async fn a_stream_started_in_a_dropped_transaction_never_happened() {
    each_backend(|db, backend| async move {
        let id = room(&db, "ana", "k").await;
        let origin = origin("c1");
        let new = NewStream {
            room_id: id,
            origin: &origin,
            publisher_ip: None,
        };
        // The publish gave up (its deadline passed) after the writes: the caller drops the
        // transaction instead of committing.
        let mut conn = db.acquire().await.unwrap();
        let mut tx = conn.begin().await.unwrap();
        let outcome = streams::start(&mut tx, &new, 1).await.unwrap();
        assert!(matches!(outcome, StartOutcome::Started(_)), "{backend:?}");
        drop(tx);
        drop(conn);
        assert!(
            !rooms::get(&db, id).await.unwrap().unwrap().is_live,
            "{backend:?}"
        );
        assert!(
            streams::of_room(&db, id).await.unwrap().is_empty(),
            "{backend:?}"
        );

        let mut tx = db.begin().await.unwrap();
        let StartOutcome::Started(stream) = streams::start(&mut tx, &new, 2).await.unwrap() else {
            panic!("{backend:?}: refused after a rollback");
        };
        tx.commit().await.unwrap();
        assert_eq!(streams::open(&db, id).await.unwrap().unwrap().id, stream);

        // A refusal inside a transaction changes nothing, even when committed.
        let mut tx = db.begin().await.unwrap();
        assert_eq!(
            streams::start(&mut tx, &new, 3).await.unwrap(),
            StartOutcome::Refused
        );
        tx.commit().await.unwrap();
        assert_eq!(streams::of_room(&db, id).await.unwrap().len(), 1);
    })
    .await;
}

#[tokio::test]
async fn a_test_database_is_dropped_even_while_a_transaction_holds_it() {
    let Some(server) = livegate_core::testing::mysql_url() else {
        return;
    };
    let test_db = TestDatabase::create(Backend::Mysql).await.unwrap();
    let name = test_db
        .url
        .rsplit('/')
        .next()
        .unwrap()
        .split('?')
        .next()
        .unwrap()
        .to_owned();
    let id = room(&test_db.db, "ana", "k").await;
    // An open transaction holds the table's metadata lock, which DROP DATABASE waits for.
    let mut tx = test_db.db.begin().await.unwrap();
    rooms::set_disabled(&mut tx, id, true).await.unwrap();
    // A thread of its own: were the drop to hang, the test fails instead of hanging with it.
    let dropping = std::thread::spawn(move || drop(test_db));
    livegate_tests::wait_until("the test database to be dropped", || {
        let done = dropping.is_finished();
        async move { done.then_some(()) }
    })
    .await;
    drop(tx);
    let admin = Database::connect(&livegate_core::db::DbConfig {
        url: livegate_core::Secret::new(server),
        max_connections: 1,
        ..livegate_core::db::DbConfig::default()
    })
    .await
    .unwrap();
    let Database::Mysql(pool) = &admin else {
        unreachable!()
    };
    let left: Option<String> = sqlx::query_scalar(
        "SELECT schema_name FROM information_schema.schemata WHERE schema_name = ?",
    )
    .bind(&name)
    .fetch_optional(pool)
    .await
    .unwrap();
    assert_eq!(left, None);
    admin.close().await;
}

#[cfg(unix)]
#[tokio::test]
async fn a_new_sqlite_database_and_its_wal_files_are_private_to_their_owner() {
    use std::os::unix::fs::PermissionsExt as _;

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("private.db");
    let config = livegate_core::db::DbConfig {
        url: livegate_core::Secret::new(format!("sqlite:{}", path.display())),
        ..livegate_core::db::DbConfig::default()
    };
    let db = Database::connect(&config).await.unwrap();
    db.migrate().await.unwrap();
    room(&db, "private", "private-key").await;
    for name in ["private.db", "private.db-wal", "private.db-shm"] {
        let mode = std::fs::metadata(dir.path().join(name))
            .unwrap_or_else(|err| panic!("{name}: {err}"))
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{name}: {mode:o}");
    }
    db.close().await;
}
