//! A publish whose COMMIT lands after the deadline must not leave the room live: the origin
//! was told "unavailable". Its own test binary, because holding MariaDB's commits (BACKUP
//! STAGE BLOCK_COMMIT) is server-wide and would slow the other tests' publishes.
#![allow(clippy::unwrap_used, reason = "tests fail loudly on unexpected errors")]

#[allow(dead_code)]
#[path = "it/support.rs"]
mod support;

use livegate_core::db::{rooms, streams, Database};
use sqlx::Connection as _;

use support::{fixture, mysql_app_with_deadline, wait_until};

#[tokio::test]
async fn a_publish_committed_after_its_deadline_is_closed_again() {
    let Some((test_db, app)) = mysql_app_with_deadline(500).await else {
        return;
    };
    let Database::Mysql(pool) = &test_db.db else {
        unreachable!()
    };
    // Hold every commit on the server (MariaDB 10.4 or later): the publish's statements run,
    // its COMMIT waits past the deadline and then lands.
    let mut blocker = pool.acquire().await.unwrap().detach();
    if let Err(err) = sqlx::query("BACKUP STAGE START")
        .execute(&mut blocker)
        .await
    {
        livegate_core::testing::missing::<()>(&format!(
            "MariaDB's BACKUP STAGE (MariaDB 10.4 or later; the server said: {err})"
        ));
        return;
    }
    sqlx::query("BACKUP STAGE BLOCK_COMMIT")
        .execute(&mut blocker)
        .await
        .unwrap();
    let reply = app.json("on_publish", fixture("on_publish.json")).await;
    // The answer went out while the publish's COMMIT is held, so the commit lands after it.
    wait_until("the publish's COMMIT to be held", || async {
        let held: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM information_schema.processlist \
             WHERE db = DATABASE() AND info = 'COMMIT'",
        )
        .fetch_one(pool)
        .await
        .ok()?;
        (held > 0).then_some(())
    })
    .await;
    sqlx::query("BACKUP STAGE END")
        .execute(&mut blocker)
        .await
        .unwrap();
    blocker.close().await.unwrap();
    assert_eq!(reply.0, 503, "{reply:?}");

    // The origin heard "unavailable": the committed stream is closed again, the room offline.
    let db = app.db.clone();
    wait_until("the late stream to be closed", || {
        let db = db.clone();
        async move {
            let streams = streams::of_room(&db, 42).await.ok()?;
            let room = rooms::get(&db, 42).await.ok()??;
            (streams.len() == 1 && streams[0].stop_at.is_some() && !room.is_live).then_some(())
        }
    })
    .await;
    // No stale state is left for the publisher's retry.
    assert_eq!(
        app.json("on_publish", fixture("on_publish.json")).await.0,
        200
    );
    assert!(app.is_live(42).await);
    app.stop().await;
}
