//! The workers: each takes due jobs from the job table first, then recording jobs from the
//! bus, and runs one at a time while holding its lease.
//!
//! The job table is the truth: a bus job is acknowledged once its file has a row and the
//! attempt on it ended (done, failed for good, or scheduled for a retry with backoff on the
//! row). Only when the row cannot be written (the database is down) does the bus job go back
//! to the bus, after a backoff, to be delivered again.

use std::path::Path;
use std::time::{Duration, Instant};

use livegate_core::bus::{Job, Queue, RecordingJob};
use livegate_core::db::recording_jobs::{self, NewRecordingJob};
use livegate_core::db::{now_ms, streams, DbError, JobState, RecordingJobRow};
use livegate_core::service::CancellationToken;

use crate::files;
use crate::metrics::Metrics;
use crate::pipeline::{Context, JobError};
use crate::storage::OpenUpload;

/// How a job's run ended.
enum Ran {
    /// The attempt ended (any outcome recorded on the row).
    Ended,
    /// Shutdown: the job was handed back.
    HandedBack,
}

/// Creates (or finds) the row of a file an input announced.
pub(crate) async fn discover(
    ctx: &Context,
    path: &Path,
    room_id: i64,
    stream_id: Option<i64>,
    origin_kind: &str,
    input: &'static str,
) -> Result<RecordingJobRow, DbError> {
    let source = path.to_string_lossy();
    let new = NewRecordingJob {
        source_path: &source,
        room_id,
        stream_id,
        origin_kind,
        started_at: files::started_at_of(path, now_ms()),
    };
    let (row, created) = recording_jobs::discover(&ctx.db, &new, now_ms()).await?;
    if created {
        ctx.metrics.discovered(input);
        tracing::info!(job.id = row.id, room.id = room_id, path = %source, input, "recording discovered");
    } else {
        tracing::debug!(job.id = row.id, path = %source, input, "recording already known");
    }
    Ok(row)
}

/// Renews the row lease every third of it; returns when it is lost.
async fn hold_row(ctx: &Context, id: i64, owner: &str) -> JobError {
    let lease = Duration::from_millis(ctx.config.jobs.lease_ms);
    loop {
        tokio::time::sleep(lease / 3).await;
        let until = now_ms() + i64::try_from(lease.as_millis()).unwrap_or(i64::MAX);
        match recording_jobs::extend(&ctx.db, id, owner, until).await {
            Ok(true) => {}
            Ok(false) => return JobError::LeaseLost,
            // Keep trying while the lease lasts; the database may be back in time.
            Err(err) => {
                tracing::warn!(job.id = id, error = %err, "could not renew the job's lease")
            }
        }
    }
}

/// Runs a claimed job to the end of this attempt, recording its outcome.
async fn run(ctx: &Context, row: RecordingJobRow, owner: &str, stop: &CancellationToken) -> Ran {
    let id = row.id;
    let attempts = u32::try_from(row.attempts).unwrap_or(0);
    let started = Instant::now();
    let outcome = tokio::select! {
        outcome = ctx.process(row, owner) => outcome,
        lost = hold_row(ctx, id, owner) => Err(lost),
        () = stop.cancelled() => {
            // Dropping the work kills its ffmpeg; an upload resumes from its saved parts.
            if let Err(err) = recording_jobs::release(&ctx.db, id, owner).await {
                tracing::warn!(job.id = id, error = %err, "could not hand the job back; its lease will run out");
            }
            ctx.metrics.outcome("handed_back");
            tracing::info!(job.id = id, "shutting down, job handed back");
            return Ran::HandedBack;
        }
    };
    ctx.metrics
        .job_duration
        .observe(started.elapsed().as_secs_f64());
    match outcome {
        Ok(()) => ctx.metrics.outcome("cleaned"),
        Err(JobError::Permanent(_)) => ctx.metrics.outcome("failed"),
        Err(JobError::LeaseLost) => {
            ctx.metrics.outcome("lease_lost");
            tracing::warn!(job.id = id, "lost the job's lease, another worker has it");
        }
        Err(JobError::Transient(reason)) => {
            ctx.metrics.outcome("retried");
            let delay = ctx.config.jobs.backoff(attempts);
            let next = now_ms() + i64::try_from(delay.as_millis()).unwrap_or(i64::MAX);
            tracing::warn!(job.id = id, attempt = attempts + 1, retry_in_ms = delay.as_millis() as u64, error = %reason, "job failed, will retry");
            if let Err(err) =
                recording_jobs::retry_later(&ctx.db, id, owner, &reason, next, now_ms()).await
            {
                tracing::warn!(job.id = id, error = %err, "could not schedule the retry; the lease will run out");
            }
        }
    }
    Ran::Ended
}

fn lease_until(ctx: &Context) -> i64 {
    now_ms() + i64::try_from(ctx.config.jobs.lease_ms).unwrap_or(i64::MAX)
}

/// A job the watcher found and finished before the callback told its stream: the stream
/// gets its `record_url` now.
async fn late_stream(ctx: &Context, row: &RecordingJobRow) -> Result<(), DbError> {
    let done = matches!(row.job_state(), JobState::Recorded | JobState::Cleaned);
    if let (true, Some(stream_id), Some(url)) = (done, row.stream_id, row.object_url.as_deref()) {
        streams::set_record_url(&ctx.db, stream_id, url).await?;
        tracing::info!(
            job.id = row.id,
            stream.id = stream_id,
            "stream of a stored recording learnt late, record_url set"
        );
    }
    Ok(())
}

/// Records a bus job for a file outside the recording directories as failed, leaving the
/// file where it is: the recorder moves and deletes what it records, so it never acts on
/// a path it was merely told about.
async fn refuse(ctx: &Context, payload: &RecordingJob, reason: &str) {
    let reason = format!("refused: {reason}");
    tracing::warn!(room.id = payload.room_id, path = %payload.path, reason, "recording job refused");
    ctx.metrics.outcome("refused");
    let source = payload.path.as_str();
    let new = NewRecordingJob {
        source_path: source,
        room_id: payload.room_id,
        stream_id: payload.stream_id,
        origin_kind: &payload.origin_kind,
        started_at: now_ms(),
    };
    if let Err(err) = recording_jobs::park(&ctx.db, &new, &reason, now_ms()).await {
        tracing::warn!(path = %payload.path, error = %err, "could not record the refused job");
    }
}

/// Handles one delivery of a bus job.
async fn bus_job(
    ctx: &Context,
    queue: &Queue<RecordingJob>,
    job: Job<RecordingJob>,
    owner: &str,
    stop: &CancellationToken,
) {
    let payload = &job.payload;
    let path = Path::new(&payload.path);
    if let Err(reason) = files::confined(path, ctx.config.source_dirs()).await {
        refuse(ctx, payload, &reason).await;
        if let Err(err) = queue.ack(&job).await {
            tracing::warn!(job.id = %job.id, error = %err, "cannot acknowledge the refused job; it will be refused again");
        }
        return;
    }
    let claimed = async {
        let row = discover(
            ctx,
            path,
            payload.room_id,
            payload.stream_id,
            &payload.origin_kind,
            "bus",
        )
        .await?;
        late_stream(ctx, &row).await?;
        recording_jobs::claim(&ctx.db, row.id, owner, lease_until(ctx), now_ms()).await
    }
    .await;
    let row = match claimed {
        Ok(row) => row,
        Err(err) => {
            // Not durable yet: back to the bus after a pause.
            tracing::warn!(job.id = %job.id, error = %err, "cannot record the job, giving it back to the bus");
            tokio::select! {
                () = tokio::time::sleep(ctx.config.jobs.backoff(job.delivery.saturating_sub(1))) => {}
                () = stop.cancelled() => return,
            }
            if let Err(err) = queue.fail(&job, &format!("database: {err}")).await {
                tracing::warn!(job.id = %job.id, error = %err, "cannot give the job back; its lease will run out");
            }
            return;
        }
    };
    // No row to take: done already, failed for good, or another worker has it. The table
    // owns it either way.
    if let Some(row) = row {
        let ran = tokio::select! {
            ran = run(ctx, row, owner, stop) => ran,
            lost = queue.hold(&job) => {
                tracing::warn!(job.id = %job.id, error = %lost, "lost the bus job's lease");
                Ran::Ended
            }
        };
        if let Ran::HandedBack = ran {
            // Left unacknowledged: the row is released, and the bus delivers it again
            // once its lease runs out.
            return;
        }
    }
    if let Err(err) = queue.ack(&job).await {
        tracing::warn!(job.id = %job.id, error = %err, "cannot acknowledge the job; it will be redelivered and found done");
    }
}

/// One worker until `stop`.
pub(crate) async fn work(ctx: Context, index: usize, stop: CancellationToken) {
    let owner = format!("{}/{index}", ctx.config.instance());
    let queue = ctx.bus.recordings();
    let consumer = queue.consumer(&owner);
    let poll = Duration::from_millis(ctx.config.jobs.poll_interval_ms);
    let mut last_reclaim = Instant::now();
    tracing::debug!(worker = %owner, "worker started");
    while !stop.is_cancelled() {
        match recording_jobs::claim_next(&ctx.db, &owner, lease_until(&ctx), now_ms()).await {
            Ok(Some(row)) => {
                run(&ctx, row, &owner, &stop).await;
                continue;
            }
            Ok(None) => {}
            Err(err) => {
                tracing::warn!(error = %err, "cannot look for due jobs");
            }
        }
        let jobs = if last_reclaim.elapsed() >= queue.options().lease {
            last_reclaim = Instant::now();
            consumer.reclaim(1).await
        } else {
            tokio::select! {
                jobs = consumer.next(1, poll) => jobs,
                () = stop.cancelled() => break,
            }
        };
        match jobs {
            Ok(jobs) => {
                for job in jobs {
                    bus_job(&ctx, &queue, job, &owner, &stop).await;
                }
            }
            Err(err) => {
                tracing::warn!(error = %err, "cannot read recording jobs from the bus");
                tokio::select! {
                    () = tokio::time::sleep(poll) => {}
                    () = stop.cancelled() => break,
                }
            }
        }
    }
    tracing::debug!(worker = %owner, "worker stopped");
}

/// Refreshes the gauges from the job table and the bus, and aborts abandoned uploads, until
/// `stop`.
pub(crate) async fn housekeeping(ctx: Context, metrics: Metrics, stop: CancellationToken) {
    let every = Duration::from_secs(5);
    let sweep_every = ctx
        .config
        .storage
        .s3
        .as_ref()
        .map(|s3| Duration::from_secs(s3.orphan_upload_max_age_s.clamp(60, 3600)));
    let mut last_sweep: Option<Instant> = None;
    loop {
        if let Ok(counts) = recording_jobs::count_by_state(&ctx.db).await {
            metrics.set_states(&counts);
        }
        if let Ok(oldest) = recording_jobs::oldest_open(&ctx.db).await {
            let age = oldest.map_or(0, |at| (now_ms() - at).max(0) / 1000);
            metrics.oldest_job_age.set(age);
        }
        if let Ok(depth) = ctx.bus.recordings().outstanding().await {
            metrics
                .queue_depth
                .set(i64::try_from(depth).unwrap_or(i64::MAX));
        }
        if let (Some(every), Some(s3)) = (sweep_every, ctx.config.storage.s3.as_ref()) {
            if last_sweep.is_none_or(|at| at.elapsed() >= every) {
                last_sweep = Some(Instant::now());
                sweep(&ctx, Duration::from_secs(s3.orphan_upload_max_age_s)).await;
            }
        }
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            () = stop.cancelled() => return,
        }
    }
}

/// Aborts multipart uploads nobody will complete: those the storage lists as older than
/// `max_age` that no job names (a job may still resume its own, however old), and those of
/// failed jobs.
async fn sweep(ctx: &Context, max_age: Duration) {
    let outcome = match ctx.storage.stale_uploads(max_age).await {
        Ok(None) => {
            tracing::debug!(
                "storage cannot list multipart uploads; aborting only those the job table names"
            );
            "unlisted"
        }
        Ok(Some(stale)) => {
            let aborted = abort_orphans(ctx, &stale).await;
            if aborted > 0 {
                tracing::info!(aborted, "aborted orphaned multipart uploads");
            }
            "listed"
        }
        Err(err) => {
            tracing::warn!(error = %err, "orphaned multipart upload sweep failed");
            "failed"
        }
    };
    abort_failed_jobs_uploads(ctx, max_age).await;
    ctx.metrics.orphan_sweep(outcome);
}

/// Aborts those of `stale` that no job names; returns how many.
async fn abort_orphans(ctx: &Context, stale: &[OpenUpload]) -> u64 {
    let mut aborted = 0;
    for batch in stale.chunks(200) {
        let ids: Vec<String> = batch.iter().map(|u| u.upload_id.clone()).collect();
        // Without the job table's word nothing is aborted: it may be a job's.
        let known = match recording_jobs::known_uploads(&ctx.db, &ids).await {
            Ok(known) => known,
            Err(err) => {
                tracing::warn!(error = %err, "cannot tell orphaned uploads from jobs' uploads");
                return aborted;
            }
        };
        for upload in batch.iter().filter(|u| !known.contains(&u.upload_id)) {
            match ctx.storage.abort(&upload.key, &upload.upload_id).await {
                Ok(()) => {
                    aborted += 1;
                    ctx.metrics.orphans_aborted.inc();
                }
                Err(err) => {
                    tracing::warn!(key = %upload.key, error = %err, "cannot abort an orphaned upload")
                }
            }
        }
    }
    aborted
}

/// Aborts the uploads of jobs that failed longer than `max_age` ago.
async fn abort_failed_jobs_uploads(ctx: &Context, max_age: Duration) {
    let before = now_ms() - i64::try_from(max_age.as_millis()).unwrap_or(i64::MAX);
    let Ok(rows) = recording_jobs::abandoned_uploads(&ctx.db, before, 100).await else {
        return;
    };
    for row in rows {
        if let (Some(key), Some(upload_id)) = (&row.object_key, &row.upload_id) {
            match ctx.storage.abort(key, upload_id).await {
                Ok(()) => {
                    ctx.metrics.orphans_aborted.inc();
                    let _ = recording_jobs::clear_upload(&ctx.db, row.id).await;
                }
                Err(err) => {
                    tracing::warn!(job.id = row.id, error = %err, "cannot abort the upload of a failed job")
                }
            }
        }
    }
}
