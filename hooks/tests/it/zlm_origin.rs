//! ZLMediaKit as an origin with an API and keepalives: start notices, restarts without one,
//! a server that dies, viewer counts and interrupted recordings. ZLMediaKit's API is a
//! [`FakeZlm`] answering like the real one, called through the real client.

use livegate_core::db::testing::backends;
use livegate_core::db::{now_ms, recording_jobs, rooms, Backend};
use livegate_hooks::reconcile::{kick, reconcile_once, KickOutcome};

use crate::support::{
    play_token, test_config, wait_until, zlm_body, zlm_config, FakeZlm, Options, TestApp, ACCEPT,
    ZLM_SECRET,
};

/// The fixture's accepted publish of `room` by connection `id`, at `hook_index`.
fn publish(room: &str, key: &str, id: &str, hook_index: i64) -> String {
    zlm_body(
        "on_publish",
        "reply_code0=True",
        &[
            ("stream", room.into()),
            ("params", format!("key={key}").into()),
            ("id", id.into()),
            ("hook_index", hook_index.into()),
        ],
    )
}

fn keepalive(hook_index: i64) -> String {
    zlm_body(
        "on_server_keepalive",
        "",
        &[("hook_index", hook_index.into())],
    )
}

async fn start_with_api(backend: Backend, fake: &FakeZlm) -> TestApp {
    let mut config = zlm_config(fake);
    config.reconcile.grace_ms = 0;
    TestApp::start(Options {
        config,
        zlm: Some(fake.client()),
        ..Options::new(backend)
    })
    .await
}

async fn viewers(app: &TestApp, room: i64) -> i64 {
    rooms::get(&app.db, room)
        .await
        .unwrap()
        .unwrap()
        .viewers_count
}

#[tokio::test]
async fn a_start_notice_closes_only_what_the_api_no_longer_lists() {
    for backend in backends() {
        let fake = FakeZlm::start().await;
        let app = start_with_api(backend, &fake).await;
        app.room(42, "k42").await;
        app.room(43, "k43").await;
        // Listed before the publishes are answered, so that no reconciliation pass (grace 0)
        // can find them missing in between.
        fake.publish("42", "10-11", 0);
        fake.publish("43", "27-17", 0);
        assert_eq!(
            app.json("on_publish", publish("42", "k42", "10-11", 1))
                .await,
            (200, ACCEPT.to_owned())
        );
        assert_eq!(
            app.json("on_publish", publish("43", "k43", "27-17", 7))
                .await,
            (200, ACCEPT.to_owned())
        );

        // A second instance with the same mediaServerId announces itself, then fails with
        // "address already in use": the running instance still lists both streams.
        let started = zlm_body("on_server_started", "", &[]);
        assert_eq!(
            app.json("on_server_started", started.clone()).await,
            (200, ACCEPT.to_owned())
        );
        assert!(app.is_live(42).await && app.is_live(43).await);

        // The instance really restarted and its publisher of 43 did not come back.
        fake.clear();
        fake.publish("42", "10-11", 0);
        assert_eq!(
            app.json("on_server_started", started).await,
            (200, ACCEPT.to_owned())
        );
        assert!(app.is_live(42).await);
        assert!(!app.is_live(43).await);
        app.wait_bus_live(43, false).await;

        // The API was asked with its secret, in the body and never in the URL.
        {
            let state = fake.state.lock().unwrap();
            assert!(state.calls.iter().all(|(api, form)| api == "getMediaList"
                && form.contains(&("secret".to_owned(), ZLM_SECRET.to_owned()))));
            assert!(state.queries.iter().all(|q| !q.contains(ZLM_SECRET)));
        }
        app.stop().await;
    }
}

#[tokio::test]
async fn reconciliation_closes_what_the_api_dropped_and_counts_its_readers() {
    for backend in backends() {
        let fake = FakeZlm::start().await;
        let app = start_with_api(backend, &fake).await;
        app.room(42, "k42").await;
        app.room(43, "k43").await;
        // Listed first: see a_start_notice_closes_only_what_the_api_no_longer_lists.
        fake.publish("42", "10-11", 0);
        fake.publish("43", "27-17", 0);
        app.json("on_publish", publish("42", "k42", "10-11", 1))
            .await;
        app.json("on_publish", publish("43", "k43", "27-17", 2))
            .await;

        // Ten short plays, none of them reported as over (they stay below flowThreshold).
        let token = format!("token={}", play_token(42, 600));
        for i in 0..10 {
            let play = zlm_body(
                "on_play",
                "reply_code0=True,schema=rtmp",
                &[
                    ("params", token.clone().into()),
                    ("id", format!("{i}-17").into()),
                ],
            );
            assert_eq!(app.json("on_play", play).await, (200, ACCEPT.to_owned()));
        }
        assert_eq!(reconcile_once(&app.state).await.unwrap(), 0);
        assert_eq!(viewers(&app, 42).await, 0);
        assert_eq!(app.bus.viewers(42).await.unwrap(), 0);

        // Two watch now: the count follows the API's.
        fake.clear();
        fake.publish("42", "10-11", 2);
        fake.publish("43", "27-17", 0);
        reconcile_once(&app.state).await.unwrap();
        assert_eq!(viewers(&app, 42).await, 2);

        // Room 43's publisher vanished without a stop; room 42 is now published by another
        // connection than the one we recorded.
        fake.clear();
        fake.publish("42", "99-1", 1);
        assert_eq!(reconcile_once(&app.state).await.unwrap(), 2);
        assert!(!app.is_live(42).await && !app.is_live(43).await);
        assert_eq!(viewers(&app, 42).await, 0);
        app.stop().await;
    }
}

#[tokio::test]
async fn a_lost_start_notice_does_not_keep_refusing_the_new_process() {
    for backend in backends() {
        let mut config = test_config();
        config.zlmediakit.keepalive_interval_ms = 100;
        config.zlmediakit.keepalive_misses = 0;
        let app = TestApp::start(Options {
            config,
            ..Options::new(backend)
        })
        .await;
        app.room(42, "k42").await;
        // The old process, well into its life.
        assert_eq!(
            app.json("on_publish", publish("42", "k42", "10-11", 500))
                .await,
            (200, ACCEPT.to_owned())
        );
        assert_eq!(
            app.json("on_server_keepalive", keepalive(510)).await,
            (200, ACCEPT.to_owned())
        );
        let old = app.open_stream(42).await;

        // It is killed and restarts; its on_server_started is lost. The new process's
        // keepalives count from 0 again: below the open stream's publish index.
        wait_until("the old process's stream to close", || async {
            app.json("on_server_keepalive", keepalive(3)).await;
            (!app.is_live(42).await).then_some(())
        })
        .await;
        // The publisher comes back to the new process.
        assert_eq!(
            app.json("on_publish", publish("42", "k42", "3-1", 4)).await,
            (200, ACCEPT.to_owned())
        );
        let new = app.open_stream(42).await;
        assert_ne!(new.id, old.id);
        assert_eq!(new.origin_hook_index, Some(4));
        app.stop().await;
    }
}

#[tokio::test]
async fn the_api_decides_whether_a_lower_index_publish_is_a_new_process() {
    for backend in backends() {
        let fake = FakeZlm::start().await;
        let app = start_with_api(backend, &fake).await;
        app.room(42, "k42").await;
        // Listed by the API from the start: a reconciliation pass (grace 0) that runs between
        // the publish and its listing would otherwise close the stream under a loaded machine.
        fake.publish("42", "10-11", 0);
        assert_eq!(
            app.json("on_publish", publish("42", "k42", "10-11", 500))
                .await,
            (200, ACCEPT.to_owned())
        );
        // A lower index while the API still carries the publish: a second publisher racing.
        assert_eq!(
            app.json("on_publish", publish("42", "k42", "11-1", 4))
                .await,
            (
                200,
                r#"{"code":-1,"msg":"room is already live"}"#.to_owned()
            )
        );
        // The origin restarted (no notice arrived) and no longer has it: the publish of the
        // new process takes the room.
        fake.clear();
        assert_eq!(
            app.json("on_publish", publish("42", "k42", "3-1", 4)).await,
            (200, ACCEPT.to_owned())
        );
        let open = app.open_stream(42).await;
        assert_eq!(open.origin_client_id.as_deref(), Some("3-1"));
        app.stop().await;
    }
}

#[tokio::test]
async fn a_silent_server_loses_its_streams_and_their_recordings_are_noted() {
    for backend in backends() {
        let mut config = test_config();
        config.zlmediakit.keepalive_interval_ms = 100;
        config.zlmediakit.keepalive_misses = 2;
        config.reconcile.interval_ms = 100;
        let app = TestApp::start(Options {
            config,
            ..Options::new(backend)
        })
        .await;
        app.room(42, "k42").await;
        app.room(43, "k43").await;
        // The notice carries the recording layout (./www, record, MP4 on).
        app.json("on_server_started", zlm_body("on_server_started", "", &[]))
            .await;
        app.json("on_publish", publish("42", "k42", "10-11", 1))
            .await;
        app.json("on_publish", publish("43", "k43", "27-17", 2))
            .await;
        // Room 42 has already closed one MP4, and the recorder has taken its job: the job
        // tells where the origin writes (ZLMediaKit's own save path is relative). Room 43's
        // comes from the server's layout.
        assert_eq!(
            app.json("on_record_mp4", zlm_body("on_record_mp4", "", &[]))
                .await,
            (200, ACCEPT.to_owned())
        );
        let queued = app.recording_jobs("recorder").await;
        let job = &queued[0].payload;
        recording_jobs::discover(
            &app.db,
            &recording_jobs::NewRecordingJob {
                source_path: &job.path,
                room_id: job.room_id,
                stream_id: job.stream_id,
                origin_kind: &job.origin_kind,
                started_at: job.enqueued_at_ms,
            },
            now_ms(),
        )
        .await
        .unwrap();
        app.json("on_server_keepalive", keepalive(3)).await;

        // SIGKILL: no stop, no exit notice, no restart. The keepalives just stop.
        wait_until("the silent server's streams to close", || async {
            (!app.is_live(42).await && !app.is_live(43).await).then_some(())
        })
        .await;
        app.wait_bus_live(42, false).await;

        // Each note follows its stream's close.
        let db = app.db.clone();
        let noted = wait_until("both interrupted recordings to be noted", || {
            let db = db.clone();
            async move {
                let noted = db.interrupted_recordings(0, 10).await.ok()?;
                (noted.len() >= 2).then_some(noted)
            }
        })
        .await;
        let dirs: Vec<_> = noted
            .iter()
            .map(|n| (n.room_id, n.directory.as_str(), n.reason.as_str()))
            .collect();
        assert_eq!(
            dirs,
            vec![
                (42, "/opt/zlmediakit/www/record/live/42/", "origin_silent"),
                (43, "./www/record/live/43/", "origin_silent"),
            ]
        );
        assert_eq!(noted[0].stream_id, app.streams(42).await[0].id);
        app.stop().await;
    }
}

#[tokio::test]
async fn a_start_notice_resets_viewer_counts() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    app.room(42, "k42").await;
    app.json("on_publish", publish("42", "k42", "10-11", 1))
        .await;
    rooms::set_viewers_count(&app.db, 42, 5).await.unwrap();
    app.json("on_server_started", zlm_body("on_server_started", "", &[]))
        .await;
    assert_eq!(viewers(&app, 42).await, 0);
    app.stop().await;
}

#[tokio::test]
async fn rooms_on_zlmediakit_are_kicked_through_close_streams() {
    let fake = FakeZlm::start().await;
    let app = start_with_api(Backend::Sqlite, &fake).await;
    app.room(42, "k42").await;
    fake.publish("42", "10-11", 0);
    app.json("on_publish", publish("42", "k42", "10-11", 1))
        .await;
    assert_eq!(
        kick(&app.state, 42).await.unwrap(),
        KickOutcome::Kicked("10-11".into())
    );
    {
        let state = fake.state.lock().unwrap();
        let (api, form) = state.calls.last().unwrap();
        assert_eq!(api, "close_streams");
        for field in [
            ("vhost", "__defaultVhost__"),
            ("app", "live"),
            ("stream", "42"),
            ("force", "1"),
        ] {
            assert!(
                form.contains(&(field.0.to_owned(), field.1.to_owned())),
                "{form:?}"
            );
        }
        assert!(state.media.is_empty());
    }
    app.stop().await;
}

#[tokio::test]
async fn the_api_client_reports_a_wrong_secret_without_the_secret() {
    use livegate_core::origin::zlm::ZlmApi;
    use livegate_core::origin::{OriginControl as _, OriginError};
    let fake = FakeZlm::start().await;
    let wrong = ZlmApi::new(
        &fake.base,
        livegate_core::Secret::new("not-the-secret-0815"),
        "zlm-1",
        std::time::Duration::from_secs(5),
    )
    .unwrap();
    let err = wrong.streams().await.unwrap_err();
    assert!(matches!(err, OriginError::Code { code: -100 }), "{err}");
    // A refused connection names neither URL nor secret.
    let gone = ZlmApi::new(
        "http://127.0.0.1:1",
        livegate_core::Secret::new("not-the-secret-0815"),
        "zlm-1",
        std::time::Duration::from_secs(5),
    )
    .unwrap();
    let err = gone.streams().await.unwrap_err();
    let printed = format!("{err} {err:?}");
    assert!(!printed.contains("not-the-secret-0815"), "{printed}");
}
