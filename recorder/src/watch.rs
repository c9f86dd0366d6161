//! The directory inputs: a full scan at start-up and a `notify` watcher afterwards, both
//! feeding the [`Tracker`], whose decisions become job rows: closed recordings, and
//! in-progress files an origin left behind (once their room is offline), which the remux
//! recovers as far as they are playable or parks as failed with the reason.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use livegate_core::db::now_ms;
use livegate_core::db::recording_jobs::{self, NewRecordingJob};
use livegate_core::service::CancellationToken;
use notify::{RecursiveMode, Watcher as _};
use tokio::sync::mpsc;

use crate::files::{self, Kind, Tracker, Verdict};
use crate::pipeline::Context;
use crate::worker::discover;

/// How far an origin's clock (the time in a file's name) may be behind the hooks service's
/// (a session's start) for a file to still count as the live session's.
const SESSION_CLOCK_SLACK_MS: i64 = 60_000;

/// Most watcher events waiting; past it they are dropped and a rescan catches up.
const EVENTS_CAPACITY: usize = 4096;

/// Why the watcher could not start.
#[derive(Debug, thiserror::Error)]
#[error("cannot watch {dir}: {source}")]
pub struct WatchError {
    dir: String,
    #[source]
    source: notify::Error,
}

/// The running watcher: events arrive on the channel until it is dropped.
pub(crate) struct Watching {
    _watcher: Option<notify::RecommendedWatcher>,
    events: mpsc::Receiver<PathBuf>,
    overflowed: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

/// Starts watching the configured directories (creating them when missing).
pub(crate) fn start(ctx: &Context) -> Result<Watching, WatchError> {
    let (sender, events) = mpsc::channel(EVENTS_CAPACITY);
    let overflowed = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    if ctx.config.watch.dirs.is_empty() {
        return Ok(Watching {
            _watcher: None,
            events,
            overflowed,
        });
    }
    let flag = overflowed.clone();
    let mut watcher =
        notify::recommended_watcher(move |event: notify::Result<notify::Event>| match event {
            Ok(event) => {
                for path in event.paths {
                    if sender.try_send(path).is_err() {
                        flag.store(true, std::sync::atomic::Ordering::Relaxed);
                    }
                }
            }
            Err(_) => flag.store(true, std::sync::atomic::Ordering::Relaxed),
        })
        .map_err(|source| WatchError {
            dir: "(watcher)".to_owned(),
            source,
        })?;
    for dir in &ctx.config.watch.dirs {
        let _ = std::fs::create_dir_all(dir);
        watcher
            .watch(dir, RecursiveMode::Recursive)
            .map_err(|source| WatchError {
                dir: dir.display().to_string(),
                source,
            })?;
    }
    Ok(Watching {
        _watcher: Some(watcher),
        events,
        overflowed,
    })
}

/// Whether the watcher looks after `path`: recordings and in-progress files, and playlists
/// when HLS streams are merged.
fn wanted(ctx: &Context, path: &std::path::Path) -> bool {
    match files::kind_of(path) {
        Kind::Other => false,
        Kind::Playlist => ctx.config.watch.merge_hls,
        Kind::Recording | Kind::InProgress => true,
    }
}

fn excluded(ctx: &Context) -> Vec<PathBuf> {
    vec![
        ctx.config.remux.work_dir.clone(),
        ctx.config.remux.failed_dir.clone(),
        ctx.config.storage.local.dir.clone(),
    ]
}

/// Scans, then follows the watcher until `stop`.
pub(crate) async fn run(ctx: Context, mut watching: Watching, stop: CancellationToken) {
    let config = &ctx.config.watch;
    if config.dirs.is_empty() {
        return;
    }
    let skip = excluded(&ctx);
    let mut tracker = Tracker::new(
        Duration::from_millis(config.quiet_period_ms),
        Duration::from_millis(config.abandoned_after_ms),
    );
    let scanned = scan(&config.dirs, &skip).await;
    tracing::info!(
        files = scanned.len(),
        "start-up scan of the recording directories"
    );
    for path in scanned.into_iter().filter(|path| wanted(&ctx, path)) {
        tracker.note(path);
    }
    let mut tick = tokio::time::interval(Duration::from_millis(config.check_interval_ms));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            event = watching.events.recv() => match event {
                Some(path) => {
                    if !skip.iter().any(|dir| path.starts_with(dir)) && wanted(&ctx, &path) {
                        tracker.note(path);
                    }
                }
                None => return,
            },
            _ = tick.tick() => {
                if watching.overflowed.swap(false, std::sync::atomic::Ordering::Relaxed) {
                    tracing::warn!("watcher events were dropped, rescanning");
                    for path in scan(&config.dirs, &skip).await.into_iter().filter(|path| wanted(&ctx, path)) {
                        tracker.note(path);
                    }
                }
                // File system calls block: off the runtime's threads.
                let checked = tokio::task::spawn_blocking(move || {
                    let decided = tracker.check(Instant::now());
                    (tracker, decided)
                })
                .await;
                let ready;
                (tracker, ready) = match checked {
                    Ok(checked) => checked,
                    Err(err) => {
                        tracing::error!(error = %err, "checking the recording directories failed");
                        return;
                    }
                };
                for (path, _kind, verdict) in ready {
                    decided(&ctx, path, verdict, &mut tracker).await;
                }
            }
            () = stop.cancelled() => return,
        }
    }
}

/// [`files::scan`] off the runtime's threads (it blocks on the file system).
async fn scan(dirs: &[PathBuf], skip: &[PathBuf]) -> Vec<PathBuf> {
    let (dirs, skip) = (dirs.to_vec(), skip.to_vec());
    tokio::task::spawn_blocking(move || files::scan(&dirs, &skip))
        .await
        .unwrap_or_default()
}

async fn decided(ctx: &Context, path: PathBuf, verdict: Verdict, tracker: &mut Tracker) {
    let probe = path.clone();
    let segment = tokio::task::spawn_blocking(move || files::is_playlist_segment(&probe))
        .await
        .unwrap_or(false);
    if segment {
        tracing::debug!(path = %path.display(), "an HLS segment of a playlist, not a recording");
        return;
    }
    let Some(room_id) = files::room_of(&path) else {
        park(ctx, &path, 0, "cannot tell the room from the file's path").await;
        return;
    };
    match verdict {
        Verdict::Closed => {
            if may_still_be_written(ctx, &path, room_id).await {
                tracker.note(path);
                return;
            }
            if let Err(err) = discover(ctx, &path, room_id, None, "unknown", "watch").await {
                tracing::warn!(path = %path.display(), error = %err, "cannot record a found recording, will look again");
                // Looked at again on a later tick.
                tracker.note(path);
            }
        }
        Verdict::Abandoned(idle) => {
            // Its origin stopped writing it without finishing it. While the room is live the
            // origin may be back at it: look again later.
            match ctx.bus.live(room_id).await {
                Ok(None) => {}
                Ok(Some(_)) | Err(_) => {
                    tracker.note(path);
                    return;
                }
            }
            tracing::warn!(path = %path.display(), idle_s = idle.as_secs(), "in-progress file left behind, recovering what is playable");
            if let Err(err) = discover(ctx, &path, room_id, None, "unknown", "recovery").await {
                tracing::warn!(path = %path.display(), error = %err, "cannot record a file to recover, will look again");
                tracker.note(path);
            }
        }
    }
}

/// Whether a file with a final name may still be growing: nginx-rtmp records under the final
/// name, so a publisher that stalls for the quiet period looks done. While its room is live,
/// a file begun in the live session, or written to within the abandonment period, waits (its
/// callback comes when the publish ends); one from the room's earlier sessions does not.
async fn may_still_be_written(ctx: &Context, path: &std::path::Path, room_id: i64) -> bool {
    match ctx.bus.live(room_id).await {
        Ok(None) => false,
        Ok(Some(live)) => {
            let begun = files::started_at_of(path, now_ms());
            let abandoned_after = Duration::from_millis(ctx.config.watch.abandoned_after_ms);
            let recent = tokio::fs::metadata(path)
                .await
                .and_then(|meta| meta.modified())
                .is_ok_and(|modified| {
                    modified
                        .elapsed()
                        .map_or(true, |idle| idle < abandoned_after)
                });
            begun >= live.started_at_ms - SESSION_CLOCK_SLACK_MS || recent
        }
        // The bus cannot say: look again later rather than take a file still being written.
        Err(_) => true,
    }
}

async fn park(ctx: &Context, path: &std::path::Path, room_id: i64, reason: &str) {
    let source = path.to_string_lossy();
    let new = NewRecordingJob {
        source_path: &source,
        room_id,
        stream_id: None,
        origin_kind: "unknown",
        started_at: files::started_at_of(path, now_ms()),
    };
    match recording_jobs::park(&ctx.db, &new, reason, now_ms()).await {
        Ok(true) => {
            ctx.metrics.outcome("parked");
            tracing::warn!(path = %source, reason, "file parked as failed");
        }
        Ok(false) => {}
        Err(err) => tracing::warn!(path = %source, error = %err, "cannot park a file"),
    }
}
