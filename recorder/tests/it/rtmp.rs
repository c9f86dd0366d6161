//! End to end: a real nginx-rtmp origin (`record all`) calling the real hooks service, whose
//! recording job the recorder turns into a stored MP4 and the stream's `record_url`.

use std::sync::Arc;
use std::time::Duration;

use livegate_core::bus::Received;
use livegate_core::db::{recording_jobs, streams, JobState};
use livegate_core::service::{Shutdown, Stop};
use livegate_core::Secret;
use livegate_hooks::state::Origins;
use livegate_recorder::storage::local::LocalStorage;
use livegate_tests::rtmp::{Publisher, RtmpOrigin};

use crate::support::{self, dirs, envs, record_url, room_with_key, start, wait_state, Env};

/// The hooks service on `env`'s database and bus; returns its URL and how to stop it.
pub(crate) async fn hooks(
    env: &Env,
) -> (
    String,
    Shutdown,
    tokio::task::JoinHandle<std::io::Result<()>>,
) {
    let mut config = livegate_hooks::Config::default();
    config.play.token_keys = vec![Secret::new("recorder-test-play-key-0123456789")];
    config.publish.attempts_per_ip_per_minute = 0;
    config.server.shutdown_grace_ms = 2000;
    config.bus = env.bus_config.clone();
    let app = livegate_hooks::App::build_with(
        config,
        livegate_hooks::Deps {
            db: env.db.clone(),
            bus: env.bus.clone(),
            origins: Origins {
                srs: None,
                zlm: None,
            },
        },
    )
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let admin = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let shutdown = Shutdown::new();
    let handle = tokio::spawn(app.run(listener, admin, shutdown.clone()));
    (base, shutdown, handle)
}

#[tokio::test]
async fn an_nginx_rtmp_recording_reaches_storage_through_the_hooks_service() {
    for env in envs().await {
        let name = env.name();
        let dirs = dirs();
        let (room, key) = room_with_key(&env.db, "live").await;
        let (base, hooks_shutdown, hooks_task) = hooks(&env).await;
        let origin = RtmpOrigin::start(&base, "?origin=rtmp-rec");
        origin.ready().await;
        let mut config = support::config(&dirs);
        config.watch.dirs = vec![origin.record_dir()];
        let running = start(config, &env, Arc::new(LocalStorage::new(&dirs.store))).await;
        let mut ready = env.bus.recordings_ready().subscribe().await.unwrap();

        let publisher = Publisher::start(&origin.url(&format!("{room}?key={key}")), 3);
        let status = publisher.finish(Duration::from_secs(60)).await;
        assert!(
            status.success(),
            "{name}: ffmpeg failed: {}",
            origin.error_log()
        );

        let event = tokio::time::timeout(support::patience(), async {
            loop {
                if let Some(Received::Message(event)) = ready.recv().await {
                    if event.room_id == room {
                        return event;
                    }
                }
            }
        })
        .await
        .expect("a recording-ready event");
        let stream = streams::of_room(&env.db, room).await.unwrap().remove(0);
        assert_eq!(event.stream_id, Some(stream.id), "{name}");
        let row = recording_jobs::get(&env.db, event.job_id)
            .await
            .unwrap()
            .unwrap();
        assert!(
            row.source_path
                .starts_with(&origin.record_dir().display().to_string()),
            "{name}: {}",
            row.source_path
        );
        let source = std::path::PathBuf::from(&row.source_path);
        let row = wait_state(&env.db, &source, JobState::Cleaned).await;
        assert_eq!(
            record_url(&env.db, room, stream.id).await,
            row.object_url,
            "{name}"
        );
        let object = std::path::PathBuf::from(row.object_url.unwrap());
        assert_eq!(support::stream_kinds(&object), ["audio", "video"], "{name}");
        assert!(
            !source.exists(),
            "{name}: the origin's file is removed once stored"
        );
        assert_eq!(
            recording_jobs::list(&env.db, 10).await.unwrap().len(),
            1,
            "{name}"
        );

        running.stop().await;
        hooks_shutdown.request(Stop::Drain);
        hooks_task.await.unwrap().unwrap();
    }
}
