//! One job from where its row says it is to `cleaned` (or `failed`):
//! `discovered → remuxing → uploading → uploaded → recorded → cleaned`.
//!
//! Every step is safe to redo after a crash at any point: the remux writes a fresh temporary
//! file and renames it only once valid; the upload resumes the saved multipart upload or
//! finds the completed object; the stream update writes the same URL again; removing a file
//! that is already gone is fine. Every write is conditional on the worker still holding the
//! job's lease.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use livegate_core::bus::{Bus, RecordingReady};
use livegate_core::db::recording_jobs::{self, Remuxed};
use livegate_core::db::{covers, now_ms, streams, Database, DbError, JobState, RecordingJobRow};

use crate::config::{part_size_for, Config, PartChecksum, StorageKind};
use crate::files::{self, Kind};
use crate::media::picture::PictureOptions;
use crate::media::{MediaError, Source, Tools};
use crate::metrics::Metrics;
use crate::storage::digest::{digest_file, is_checksum, FileDigests, PartPlan};
use crate::storage::{
    object_key, picture_link, poster_key, Progress, Storage, StorageError, Upload,
};

/// Why a job stopped short of `cleaned`.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// It may succeed later: retried with backoff.
    #[error("{0}")]
    Transient(String),
    /// It never will: the row is `failed` with the reason.
    #[error("{0}")]
    Permanent(String),
    /// Another worker has the job now.
    #[error("the job's lease was lost")]
    LeaseLost,
}

impl From<DbError> for JobError {
    fn from(err: DbError) -> Self {
        JobError::Transient(format!("database: {err}"))
    }
}

impl From<StorageError> for JobError {
    fn from(err: StorageError) -> Self {
        match err {
            StorageError::Progress(reason) if reason == LEASE_LOST => JobError::LeaseLost,
            other => JobError::Transient(other.to_string()),
        }
    }
}

const LEASE_LOST: &str = "lease lost";

/// What the workers share.
#[derive(Debug, Clone)]
pub struct Context {
    /// The configuration.
    pub config: Arc<Config>,
    /// The database.
    pub db: Database,
    /// The bus.
    pub bus: Bus,
    /// Where MP4s go.
    pub storage: Arc<dyn Storage>,
    /// ffmpeg and ffprobe.
    pub tools: Tools,
    /// The metrics.
    pub metrics: Metrics,
}

fn held(updated: bool) -> Result<(), JobError> {
    if updated {
        Ok(())
    } else {
        Err(JobError::LeaseLost)
    }
}

/// Records upload progress on the job's row.
struct RowProgress<'a> {
    db: &'a Database,
    id: i64,
    owner: &'a str,
}

#[async_trait]
impl Progress for RowProgress<'_> {
    async fn upload_started(&mut self, upload_id: Option<&str>) -> Result<(), String> {
        match recording_jobs::set_upload(self.db, self.id, self.owner, upload_id, 0, now_ms()).await
        {
            Ok(true) => Ok(()),
            Ok(false) => Err(LEASE_LOST.to_owned()),
            Err(err) => Err(err.to_string()),
        }
    }

    async fn parts_stored(&mut self, upload_id: &str, parts: i32) -> Result<(), String> {
        match recording_jobs::set_upload(
            self.db,
            self.id,
            self.owner,
            Some(upload_id),
            parts,
            now_ms(),
        )
        .await
        {
            Ok(true) => Ok(()),
            Ok(false) => Err(LEASE_LOST.to_owned()),
            // The count is informational: a resume lists the parts the storage holds, and the
            // lease's renewal notices a lost job. A database that cannot take the write in
            // time (a busy disk stalls SQLite's commits for seconds) must not throw away an
            // upload that is under way; the next part's write records the count.
            Err(err) => {
                tracing::warn!(
                    job.id = self.id,
                    parts,
                    error = %err,
                    "could not record the upload's progress, going on"
                );
                Ok(())
            }
        }
    }
}

impl Context {
    /// The MP4 of job `id` in the work directory.
    pub fn work_path(&self, id: i64) -> PathBuf {
        self.config.remux.work_dir.join(format!("{id}.mp4"))
    }

    fn key_prefix(&self) -> &str {
        match (self.config.storage.kind, &self.config.storage.s3) {
            (StorageKind::S3, Some(s3)) => &s3.key_prefix,
            _ => "",
        }
    }

    fn part_size(&self) -> u64 {
        self.config
            .storage
            .s3
            .as_ref()
            .map_or(16 * 1024 * 1024, |s3| s3.part_size_bytes)
    }

    /// The checksum each part carries (a file of one part, its single request).
    fn part_checksum(&self) -> PartChecksum {
        self.config
            .storage
            .s3
            .as_ref()
            .map(|s3| s3.part_checksum)
            .unwrap_or_default()
    }

    /// Takes job `row` (held by `owner`) as far as it goes.
    pub async fn process(&self, mut row: RecordingJobRow, owner: &str) -> Result<(), JobError> {
        // The checksums the remux step took, handed to the upload step that follows it.
        let mut digests = None;
        loop {
            let state = row.job_state();
            tracing::debug!(job.id = row.id, state = state.as_str(), "job step");
            match state {
                JobState::Discovered | JobState::Remuxing => {
                    digests = Some(self.remux(&row, owner).await?);
                }
                JobState::Uploading => self.upload(&row, owner, digests.take()).await?,
                JobState::Uploaded => self.record(&row, owner).await?,
                JobState::Recorded => self.clean(&row, owner).await?,
                JobState::Cleaned | JobState::Failed => return Ok(()),
            }
            row = recording_jobs::get(&self.db, row.id)
                .await?
                .ok_or_else(|| JobError::Permanent("the job's row vanished".to_owned()))?;
            if row.lease_owner.as_deref() != Some(owner) {
                return Err(JobError::LeaseLost);
            }
        }
    }

    /// Remuxes the source into the work directory (unless an earlier attempt left the MP4)
    /// and checksums the MP4 in one read: the whole file's identity and, for S3, each part's.
    async fn remux(&self, row: &RecordingJobRow, owner: &str) -> Result<FileDigests, JobError> {
        held(
            recording_jobs::set_state(&self.db, row.id, owner, JobState::Remuxing, now_ms())
                .await?,
        )?;
        let source = Path::new(&row.source_path);
        let target = self.work_path(row.id);
        tokio::fs::create_dir_all(&self.config.remux.work_dir)
            .await
            .map_err(|err| JobError::Transient(format!("work directory: {err}")))?;
        // A remux that finished before a crash left a validated MP4 (it is renamed into place
        // only once valid): use it.
        let have_mp4 = tokio::fs::metadata(&target).await.is_ok();
        let mut duration = None;
        if !have_mp4 {
            if tokio::fs::metadata(source).await.is_err() {
                return self.give_up(row, owner, "the source file is gone").await;
            }
            self.remove_partials(row.id).await;
            // A file its origin never finished is recovered as far as it plays.
            let recovering = files::kind_of(source) == Kind::InProgress;
            let input = match Source::open(source).await {
                Ok(input) => input,
                Err(MediaError::Io(err)) => {
                    return Err(JobError::Transient(format!("reading the source: {err}")));
                }
                // A playlist or directory that cannot be merged stays where it is.
                Err(err) => return self.give_up(row, owner, &err.to_string()).await,
            };
            match self.tools.remux(&input, &target, !recovering).await {
                Ok(outcome) => {
                    self.metrics
                        .remux_duration
                        .observe(outcome.elapsed.as_secs_f64());
                    // The recording's length is what was stored.
                    duration = outcome.mp4.duration.or(outcome.source.duration);
                }
                Err(err @ (MediaError::Unreadable(_) | MediaError::Invalid(_))) => {
                    let reason = if recovering {
                        format!(
                            "in-progress file left behind by its origin, not recoverable: {err}"
                        )
                    } else {
                        err.to_string()
                    };
                    if let Source::File(_) = input {
                        self.park_source(row, &reason).await;
                    }
                    return self.give_up(row, owner, &reason).await;
                }
                Err(err @ MediaError::TimedOut { .. }) => {
                    return self.give_up(row, owner, &err.to_string()).await;
                }
                Err(err @ MediaError::Io(_)) => {
                    return Err(JobError::Transient(format!("remux: {err}")));
                }
            }
        }
        let reading = |err: std::io::Error| JobError::Transient(format!("reading the MP4: {err}"));
        let size = tokio::fs::metadata(&target).await.map_err(reading)?.len();
        let plan = PartPlan {
            size: part_size_for(self.part_size(), size),
            checksum: self.part_checksum(),
        };
        let part_size = plan.size;
        // S3 checks every part (a small file is one) against the checksum it is sent with.
        let in_parts = self.config.storage.kind == StorageKind::S3;
        let digests = digest_file(&target, in_parts.then_some(plan))
            .await
            .map_err(reading)?;
        let (checksum, size) = (digests.checksum.as_str(), digests.size);
        if let (Some(upload_id), Some(key)) = (row.upload_id.as_deref(), row.object_key.as_deref())
        {
            if row.checksum.as_deref() != Some(checksum) {
                // The parts already sent are of other bytes (a remux by another ffmpeg, or an
                // earlier version's identity): they must not be resumed.
                match self.storage.abort(key, upload_id).await {
                    Ok(()) => {}
                    // With credentials the storage accepts, asking again cannot change the
                    // refusal, and forgetting the upload is what keeps it from being resumed.
                    // s3s-fs refuses to abort an upload it no longer knows (one completed);
                    // one still open is left to the orphan sweep or the lifecycle rule.
                    Err(StorageError::Refused(reason)) if self.storage.check().await.is_ok() => {
                        tracing::warn!(
                            job.id = row.id,
                            key,
                            error = %reason,
                            "the upload of other bytes could not be aborted, sending a new one"
                        );
                    }
                    Err(err) => return Err(err.into()),
                }
                held(
                    recording_jobs::set_upload(&self.db, row.id, owner, None, 0, now_ms()).await?,
                )?;
            }
        }
        let key = object_key(self.key_prefix(), row.room_id, row.started_at, source);
        let work_path = target.to_string_lossy();
        let remuxed = Remuxed {
            work_path: &work_path,
            size_bytes: i64::try_from(size).unwrap_or(i64::MAX),
            checksum,
            object_key: &key,
            part_size: i64::try_from(part_size).unwrap_or(i64::MAX),
        };
        held(recording_jobs::set_remuxed(&self.db, row.id, owner, &remuxed, now_ms()).await?)?;
        if let Some(duration) = duration {
            let ms = i64::try_from(duration.as_millis()).unwrap_or(i64::MAX);
            held(recording_jobs::set_duration(&self.db, row.id, owner, ms).await?)?;
        }
        tracing::info!(job.id = row.id, room.id = row.room_id, size_bytes = size, key = %key, "remuxed");
        Ok(digests)
    }

    /// Removes what earlier, interrupted remuxes of job `id` left (their ffmpeg may still be
    /// writing: unlinking is safe, and the file is never renamed into place).
    async fn remove_partials(&self, id: i64) {
        let prefix = format!("{id}.");
        let Ok(mut entries) = tokio::fs::read_dir(&self.config.remux.work_dir).await else {
            return;
        };
        while let Ok(Some(entry)) = entries.next_entry().await {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with(&prefix)
                && (name.ends_with(".part.mp4") || name.ends_with(".part.concat"))
            {
                let _ = tokio::fs::remove_file(entry.path()).await;
            }
        }
    }

    /// Stores the MP4 and its poster. `digests`: the checksums the remux step just took of it
    /// (none after a restart: each part's is then taken as it is sent).
    async fn upload(
        &self,
        row: &RecordingJobRow,
        owner: &str,
        digests: Option<FileDigests>,
    ) -> Result<(), JobError> {
        let (Some(work_path), Some(key), Some(checksum), Some(size), Some(part_size)) = (
            row.work_path.as_deref(),
            row.object_key.as_deref(),
            // An identity of another kind (an earlier version's sha256) cannot be checked
            // against what is stored: the remux step takes the file's again.
            row.checksum
                .as_deref()
                .filter(|checksum| is_checksum(checksum)),
            row.size_bytes.and_then(|n| u64::try_from(n).ok()),
            row.part_size.and_then(|n| u64::try_from(n).ok()),
        ) else {
            if digests.is_some() {
                // The remux step has just written them: the table does not keep what it is
                // given, and starting over would only come back here.
                return Err(JobError::Transient(
                    "the job table did not keep the remuxed MP4's details".to_owned(),
                ));
            }
            // Rows written by hand or by an older version: start over (an MP4 left in the
            // work directory is used again).
            return held(
                recording_jobs::set_state(&self.db, row.id, owner, JobState::Discovered, now_ms())
                    .await?,
            );
        };
        let path = Path::new(work_path);
        if tokio::fs::metadata(path).await.is_err() {
            tracing::warn!(job.id = row.id, "the MP4 is gone, remuxing again");
            return held(
                recording_jobs::set_state(&self.db, row.id, owner, JobState::Discovered, now_ms())
                    .await?,
            );
        }
        let upload = Upload {
            path,
            key,
            size,
            checksum,
            part_size,
            upload_id: row.upload_id.as_deref(),
            part_checksums: digests
                .as_ref()
                .filter(|digests| digests.checksum == checksum && digests.size == size)
                .and_then(|digests| {
                    digests.parts_for(PartPlan {
                        size: part_size,
                        checksum: self.part_checksum(),
                    })
                }),
        };
        let started = Instant::now();
        let mut progress = RowProgress {
            db: &self.db,
            id: row.id,
            owner,
        };
        // The poster is taken from the MP4 while it goes up: neither waits for the other.
        let (stored, poster) = tokio::join!(
            self.storage.put(&upload, &mut progress),
            self.poster(row, path)
        );
        let stored = stored?;
        self.metrics
            .upload_duration
            .observe(started.elapsed().as_secs_f64());
        self.metrics.uploaded_bytes.inc_by(stored.bytes_sent);
        let poster = match poster? {
            Some(jpeg) => Some(self.store_poster(row, key, jpeg).await?),
            None => None,
        };
        held(
            recording_jobs::set_uploaded(
                &self.db,
                row.id,
                owner,
                &stored.url,
                poster.as_deref(),
                now_ms(),
            )
            .await?,
        )?;
        tracing::info!(job.id = row.id, room.id = row.room_id, key = %key, bytes_sent = stored.bytes_sent, "stored and confirmed");
        Ok(())
    }

    /// The picture options of the configuration.
    pub fn picture_options(&self) -> PictureOptions {
        PictureOptions {
            max_width: self.config.pictures.max_width,
            quality: self.config.pictures.quality,
        }
    }

    /// The recording's poster, made from its MP4; `None` for a recording without a picture to
    /// take (audio only) or with posters off. A failure that may pass is retried like the
    /// recording's upload.
    async fn poster(&self, row: &RecordingJobRow, mp4: &Path) -> Result<Option<Bytes>, JobError> {
        let pictures = &self.config.pictures;
        if !pictures.posters {
            return Ok(None);
        }
        // The remux measured the duration; only an MP4 from before that is probed again.
        let duration = match row.duration_ms.and_then(|ms| u64::try_from(ms).ok()) {
            Some(ms) => Some(Duration::from_millis(ms)),
            None => self.tools.probe(mp4).await.ok().and_then(|p| p.duration),
        };
        let at = Duration::from_millis(pictures.poster_at_ms);
        match self
            .tools
            .poster(mp4, at, duration, self.picture_options())
            .await
        {
            Ok(jpeg) => Ok(Some(jpeg)),
            Err(err) if err.is_transient() => {
                self.metrics.picture("poster", "retried");
                Err(JobError::Transient(format!("poster: {err}")))
            }
            Err(err) => {
                self.metrics.picture("poster", "none");
                tracing::warn!(job.id = row.id, room.id = row.room_id, error = %err, "no poster for this recording");
                Ok(None)
            }
        }
    }

    /// Stores the poster beside the object; returns where it is stored.
    async fn store_poster(
        &self,
        row: &RecordingJobRow,
        key: &str,
        jpeg: Bytes,
    ) -> Result<String, JobError> {
        let bytes = jpeg.len();
        let url = self.storage.put_picture(&poster_key(key), jpeg).await?;
        self.metrics.picture("poster", "stored");
        tracing::info!(
            job.id = row.id,
            room.id = row.room_id,
            bytes,
            "poster stored"
        );
        Ok(url)
    }

    async fn record(&self, row: &RecordingJobRow, owner: &str) -> Result<(), JobError> {
        let url = row
            .object_url
            .as_deref()
            .ok_or_else(|| JobError::Permanent("uploaded without an object URL".to_owned()))?;
        if let Some(stream_id) = row.stream_id {
            streams::set_record_url(&self.db, stream_id, url).await?;
        }
        if let (Some(poster_url), Some(key)) = (&row.poster_url, &row.object_key) {
            let link = picture_link(
                &self.config.pictures,
                &poster_key(key),
                poster_url,
                row.updated_at,
            );
            covers::set_poster(&self.db, row.room_id, &link, row.started_at, now_ms()).await?;
        }
        let ready = RecordingReady {
            room_id: row.room_id,
            stream_id: row.stream_id,
            job_id: row.id,
            object_url: url.to_owned(),
            size_bytes: row
                .size_bytes
                .and_then(|n| u64::try_from(n).ok())
                .unwrap_or(0),
            started_at_ms: row.started_at,
            poster_url: row.poster_url.clone(),
        };
        self.bus
            .recordings_ready()
            .publish(&ready)
            .await
            .map_err(|err| JobError::Transient(format!("bus: {err}")))?;
        held(
            recording_jobs::set_state(&self.db, row.id, owner, JobState::Recorded, now_ms())
                .await?,
        )?;
        tracing::info!(
            job.id = row.id,
            room.id = row.room_id,
            stream.id = row.stream_id.unwrap_or(0),
            "recording ready"
        );
        Ok(())
    }

    async fn clean(&self, row: &RecordingJobRow, owner: &str) -> Result<(), JobError> {
        if !self.config.storage.keep_local {
            let source = Path::new(&row.source_path);
            // A merged stream's source is its playlist or directory and every segment.
            let mut paths: Vec<PathBuf> = match Source::open(source).await {
                Ok(input) => input.files().into_iter().map(Path::to_path_buf).collect(),
                Err(_) if source.is_dir() => Vec::new(),
                Err(_) => vec![source.to_path_buf()],
            };
            paths.extend(row.work_path.clone().map(PathBuf::from));
            for path in paths {
                match tokio::fs::remove_file(&path).await {
                    Ok(()) => {}
                    Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
                    Err(err) => {
                        return Err(JobError::Transient(format!(
                            "removing {}: {err}",
                            path.display()
                        )))
                    }
                }
            }
        }
        if !self.config.storage.keep_local && Path::new(&row.source_path).is_dir() {
            // Only once empty: it may hold what the origin keeps beside the segments.
            let _ = tokio::fs::remove_dir(&row.source_path).await;
        }
        held(
            recording_jobs::set_state(&self.db, row.id, owner, JobState::Cleaned, now_ms()).await?,
        )?;
        Ok(())
    }

    /// Fails the job for good with `reason`: always an error, of any step's type.
    async fn give_up<T>(
        &self,
        row: &RecordingJobRow,
        owner: &str,
        reason: &str,
    ) -> Result<T, JobError> {
        tracing::warn!(job.id = row.id, room.id = row.room_id, path = %row.source_path, reason, "recording failed");
        held(recording_jobs::fail(&self.db, row.id, owner, reason, now_ms()).await?)?;
        Err(JobError::Permanent(reason.to_owned()))
    }

    /// Moves an input ffmpeg cannot read to the failed directory, with the reason beside it:
    /// kept for a human, out of the watched directories.
    async fn park_source(&self, row: &RecordingJobRow, reason: &str) {
        let source = Path::new(&row.source_path);
        let name = source
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_else(|| "source".to_owned());
        let dir = &self.config.remux.failed_dir;
        let target = dir.join(format!("{}-{name}", row.id));
        let moved = async {
            tokio::fs::create_dir_all(dir).await?;
            if tokio::fs::rename(source, &target).await.is_err() {
                // Another file system: copy, then remove.
                tokio::fs::copy(source, &target).await?;
                tokio::fs::remove_file(source).await?;
            }
            let note = target.with_extension("reason.txt");
            tokio::fs::write(note, format!("{}\n{reason}\n", row.source_path)).await
        }
        .await;
        match moved {
            Ok(()) => {
                tracing::info!(job.id = row.id, to = %target.display(), "unreadable input moved aside")
            }
            Err(err) => {
                tracing::warn!(job.id = row.id, error = %err, "could not move the unreadable input aside")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use livegate_core::db::DbConfig;
    use livegate_core::Secret;

    use super::*;

    async fn memory_db() -> Database {
        let config = DbConfig {
            url: Secret::new("sqlite::memory:"),
            ..DbConfig::default()
        };
        let db = Database::connect(&config).await.unwrap();
        db.migrate().await.unwrap();
        db
    }

    #[tokio::test]
    async fn a_progress_count_the_database_cannot_take_does_not_stop_the_upload() {
        let db = memory_db().await;
        let mut progress = RowProgress {
            db: &db,
            id: 1,
            owner: "worker",
        };
        // No row held by this worker: the job is someone else's, and the upload stops.
        assert_eq!(
            progress.parts_stored("upload", 1).await,
            Err(LEASE_LOST.to_owned())
        );

        db.close().await;
        // The count is informational: the upload goes on without it.
        assert_eq!(progress.parts_stored("upload", 2).await, Ok(()));
        // The upload id is what a resume needs: no part goes up before it is saved.
        assert!(progress.upload_started(Some("upload")).await.is_err());
    }
}
