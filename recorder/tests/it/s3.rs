//! Against a real S3-compatible server that checks signatures (s3s-fs): multipart uploads,
//! resume, presigned GETs, wrong credentials, the storage going away and coming back.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_s3::primitives::ByteStream;
use livegate_core::db::{now_ms, recording_jobs, JobState};
use livegate_core::Secret;
use livegate_recorder::config::PartChecksum;
use livegate_recorder::media::{Source, Tools};
use livegate_recorder::storage::digest::{checksum_of, digest_file, PartPlan};
use livegate_recorder::storage::s3::S3Storage;
use livegate_recorder::storage::{
    checksum_file, object_key, poster_key, Progress, Storage, StorageError, Upload,
};
use livegate_tests::media::{make_blob, make_flv};

use crate::support::{self, dirs, envs, job, record_url, start, stream, wait_state, S3Server};

/// Records progress; fails after `fail_after` stored parts (a crash mid-upload).
#[derive(Default)]
struct Recorded {
    upload_id: Option<String>,
    parts: Vec<i32>,
    fail_after: Option<i32>,
}

#[async_trait]
impl Progress for Recorded {
    async fn upload_started(&mut self, upload_id: Option<&str>) -> Result<(), String> {
        self.upload_id = upload_id.map(str::to_owned);
        Ok(())
    }

    async fn parts_stored(&mut self, _upload_id: &str, parts: i32) -> Result<(), String> {
        self.parts.push(parts);
        match self.fail_after {
            Some(limit) if parts >= limit => Err("simulated crash".to_owned()),
            _ => Ok(()),
        }
    }
}

async fn readyz(admin: std::net::SocketAddr) -> (u16, String) {
    let response = reqwest::get(format!("http://{admin}/readyz"))
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.text().await.unwrap())
}

/// The sizes of the parts the server holds of `upload_id`.
async fn stored_parts(storage: &S3Storage, key: &str, upload_id: &str) -> Vec<(i32, u64)> {
    let listed = storage
        .client()
        .list_parts()
        .bucket(storage.bucket())
        .key(key)
        .upload_id(upload_id)
        .send()
        .await
        .unwrap();
    listed
        .parts()
        .iter()
        .map(|part| {
            (
                part.part_number().unwrap(),
                part.size().unwrap().try_into().unwrap(),
            )
        })
        .collect()
}

/// A file of two whole parts and `tail` bytes, in a directory that lives as long as the guard.
fn three_part_file(tail: usize) -> (tempfile::TempDir, std::path::PathBuf, usize) {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("big.mp4");
    let size = 2 * support::PART_SIZE as usize + tail;
    make_blob(&file, size);
    (tmp, file, size)
}

#[tokio::test]
async fn a_multipart_upload_resumes_with_the_missing_parts_and_reads_back_identical() {
    let Some(server) = S3Server::start().await else {
        return;
    };
    let (_tmp, file, size) = three_part_file(123_457);
    // One part at a time, and two at once (then the crash may leave either part stored),
    // with either part checksum.
    for (parts_in_flight, part_checksum) in [
        (1, PartChecksum::Crc32c),
        (2, PartChecksum::Crc32c),
        (1, PartChecksum::Sha256),
    ] {
        let plan = PartPlan {
            size: support::PART_SIZE,
            checksum: part_checksum,
        };
        let digests = digest_file(&file, Some(plan)).await.unwrap();
        assert_eq!(digests.parts.len(), 3);
        let mut config = server.config(&server.endpoint());
        config.parts_in_flight = parts_in_flight;
        config.part_checksum = part_checksum;
        let storage = S3Storage::new(&config);
        let key = format!("recordings/7/1733000000000-big-{parts_in_flight}-{part_checksum:?}.mp4");
        let mut upload = Upload {
            path: &file,
            key: &key,
            size: size as u64,
            checksum: &digests.checksum,
            part_size: support::PART_SIZE,
            upload_id: None,
            // The first attempt has the checksum pass's part checksums, the resumed one
            // (after a restart) takes them as it sends.
            part_checksums: digests.parts_for(plan),
        };

        let mut crashing = Recorded {
            fail_after: Some(1),
            ..Recorded::default()
        };
        let err = storage.put(&upload, &mut crashing).await.unwrap_err();
        assert!(matches!(err, StorageError::Progress(_)), "{err}");
        let upload_id = crashing.upload_id.clone().unwrap();
        assert_eq!(
            server.open_uploads().len(),
            1,
            "the upload is left to resume"
        );
        let held = stored_parts(&storage, &key, &upload_id).await;
        if parts_in_flight == 1 {
            assert_eq!(held, [(1, support::PART_SIZE)]);
        }
        // Whichever part was stored first stopped the upload; the other may have been stored.
        assert!((1..3).contains(&held.len()), "{held:?}");

        upload.upload_id = Some(&upload_id);
        upload.part_checksums = None;
        let mut resumed = Recorded::default();
        let stored = storage.put(&upload, &mut resumed).await.unwrap();
        assert_eq!(stored.url, format!("s3://recordings/{key}"));
        let held_bytes: u64 = held.iter().map(|(_, size)| size).sum();
        assert_eq!(
            stored.bytes_sent,
            size as u64 - held_bytes,
            "only the missing parts were sent ({held:?} were stored)"
        );
        let counts: Vec<i32> = (held.len() as i32 + 1..=3).collect();
        assert_eq!(resumed.parts, counts);
        assert_eq!(server.get(&key).await, std::fs::read(&file).unwrap());
        assert!(server.upload_files().is_empty(), "no multipart upload left");
    }
    let storage = S3Storage::new(&server.config(&server.endpoint()));
    let key = "recordings/7/1733000000000-big-1-Crc32c.mp4";
    let (checksum, _) = checksum_file(&file).await.unwrap();
    let upload = Upload {
        path: &file,
        key,
        size: size as u64,
        checksum: &checksum,
        part_size: support::PART_SIZE,
        upload_id: None,
        part_checksums: None,
    };

    // A retry after a crash between completion and the database update sends nothing.
    let again = storage
        .put(&upload, &mut Recorded::default())
        .await
        .unwrap();
    assert_eq!(again.bytes_sent, 0);

    let url = storage
        .presign_get(key, std::time::Duration::from_secs(60))
        .await
        .unwrap();
    let fetched = reqwest::get(&url).await.unwrap();
    assert_eq!(fetched.status().as_u16(), 200);
    assert_eq!(
        fetched.bytes().await.unwrap().to_vec(),
        std::fs::read(&file).unwrap()
    );
    let tampered = format!("{}0", &url[..url.len() - 1]);
    let tampered = if tampered == url {
        format!("{}1", &url[..url.len() - 1])
    } else {
        tampered
    };
    let refused = reqwest::get(&tampered).await.unwrap().status().as_u16();
    assert!(
        refused >= 400,
        "a tampered presigned URL is refused, got {refused}"
    );
    let anonymous = reqwest::get(format!("{}/recordings/{key}", server.endpoint()))
        .await
        .unwrap()
        .status()
        .as_u16();
    assert_eq!(anonymous, 403, "the bucket is private");
}

#[tokio::test]
async fn an_upload_begun_with_other_part_checksums_is_finished_after_the_setting_changes() {
    let Some(server) = S3Server::start().await else {
        return;
    };
    let (_tmp, file, size) = three_part_file(4321);
    let (checksum, _) = checksum_file(&file).await.unwrap();
    let key = "recordings/7/1733000000000-switched.mp4";
    let mut upload = Upload {
        path: &file,
        key,
        size: size as u64,
        checksum: &checksum,
        part_size: support::PART_SIZE,
        upload_id: None,
        part_checksums: None,
    };
    // A recorder sending SHA-256 part checksums stops after a part...
    let mut before = server.config(&server.endpoint());
    before.part_checksum = PartChecksum::Sha256;
    before.parts_in_flight = 1;
    let mut crashing = Recorded {
        fail_after: Some(1),
        ..Recorded::default()
    };
    let err = S3Storage::new(&before)
        .put(&upload, &mut crashing)
        .await
        .unwrap_err();
    assert!(matches!(err, StorageError::Progress(_)), "{err}");
    let upload_id = crashing.upload_id.clone().unwrap();

    // ...and its successor, configured for CRC32C, finishes the recording: by resuming the
    // upload where the server allows it, else by a fresh one; never a second object.
    let mut after = server.config(&server.endpoint());
    after.part_checksum = PartChecksum::Crc32c;
    upload.upload_id = Some(&upload_id);
    let mut resumed = Recorded::default();
    let stored = S3Storage::new(&after)
        .put(&upload, &mut resumed)
        .await
        .unwrap();
    assert_eq!(stored.url, format!("s3://recordings/{key}"));
    assert_eq!(server.get(key).await, std::fs::read(&file).unwrap());
    assert_eq!(server.keys().await, [key.to_owned()]);
    assert!(server.upload_files().is_empty(), "no multipart upload left");
}

#[tokio::test]
async fn wrong_credentials_are_refused_with_a_clear_message() {
    let Some(server) = S3Server::start().await else {
        return;
    };
    let mut config = server.config(&server.endpoint());
    config.secret_key = Secret::new("not-the-secret-at-all");
    let storage = S3Storage::new(&config);
    let err = storage.check().await.unwrap_err();
    let message = err.to_string();
    assert!(matches!(err, StorageError::Refused(_)), "{message}");
    assert!(message.contains("storage.s3.secret_key"), "{message}");
    assert!(!message.contains("not-the-secret-at-all"), "{message}");

    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("small.mp4");
    make_blob(&file, 1000);
    let (checksum, _) = checksum_file(&file).await.unwrap();
    let upload = Upload {
        path: &file,
        key: "recordings/x.mp4",
        size: 1000,
        checksum: &checksum,
        part_size: support::PART_SIZE,
        upload_id: None,
        part_checksums: None,
    };
    let err = storage
        .put(&upload, &mut Recorded::default())
        .await
        .unwrap_err();
    assert!(matches!(err, StorageError::Refused(_)), "{err}");
    assert!(server.keys().await.is_empty());

    // The service with these credentials: not ready, saying why, and nothing deleted.
    for env in envs().await {
        let dirs = dirs();
        let (room, stream_id) = stream(&env.db).await;
        let config = support::with_s3(support::config(&dirs), config.clone());
        let running = start(config, &env, Arc::new(storage.clone())).await;
        let flv = dirs.rec.join(format!("{room}-1733000600.flv"));
        make_flv(&flv, 1, 300);
        env.bus
            .recordings()
            .push(&job(room, Some(stream_id), &flv))
            .await
            .unwrap();
        let (status, body) = readyz(running.admin).await;
        assert_eq!(status, 503, "{body}");
        assert!(
            body.contains("storage") && body.contains("secret_key"),
            "{body}"
        );
        assert!(!body.contains("not-the-secret-at-all"), "{body}");
        livegate_tests::wait_until("a refused attempt", || async {
            let row = livegate_core::db::recording_jobs::by_source(&env.db, &flv.to_string_lossy())
                .await
                .unwrap()?;
            (row.attempts >= 1).then_some(row)
        })
        .await;
        assert!(flv.exists(), "{}: the source is kept", env.name());
        running.stop().await;
    }
}

#[tokio::test]
async fn while_storage_is_down_jobs_wait_and_are_uploaded_when_it_is_back() {
    let Some(mut server) = S3Server::start().await else {
        return;
    };
    for env in envs().await {
        let dirs = dirs();
        let (room, stream_id) = stream(&env.db).await;
        server.pause();
        let config = support::with_s3(support::config(&dirs), server.config(&server.endpoint()));
        let storage = Arc::new(S3Storage::new(config.storage.s3.as_ref().unwrap()));
        let running = start(config, &env, storage).await;
        let flv = dirs.rec.join(format!("{room}-1733000700.flv"));
        make_flv(&flv, 2, 400);
        env.bus
            .recordings()
            .push(&job(room, Some(stream_id), &flv))
            .await
            .unwrap();

        let name = env.name();
        let waiting = livegate_tests::wait_until("retries while storage is down", || async {
            let row = livegate_core::db::recording_jobs::by_source(&env.db, &flv.to_string_lossy())
                .await
                .unwrap()?;
            (row.attempts >= 2 && row.job_state() == JobState::Uploading).then_some(row)
        })
        .await;
        assert!(
            waiting.error.unwrap().contains("storage unavailable"),
            "{name}"
        );
        assert!(flv.exists(), "{name}: source kept");
        assert!(
            Path::new(&waiting.work_path.unwrap()).exists(),
            "{name}: MP4 kept"
        );
        assert_eq!(readyz(running.admin).await.0, 503, "{name}");

        server.resume().await;
        let row = wait_state(&env.db, &flv, JobState::Cleaned).await;
        let key = row.object_key.clone().unwrap();
        assert_eq!(
            server.keys().await.iter().filter(|k| **k == key).count(),
            1,
            "{name}"
        );
        let bytes = server.get(&key).await;
        assert_eq!(bytes.len() as i64, row.size_bytes.unwrap(), "{name}");
        assert_eq!(Some(checksum_of(&bytes)), row.checksum, "{name}");
        assert_eq!(
            record_url(&env.db, room, stream_id).await,
            Some(format!("s3://recordings/{key}")),
            "{name}"
        );
        assert!(!flv.exists(), "{name}: source removed once stored");
        assert_eq!(readyz(running.admin).await.0, 200, "{name}");
        running.stop().await;
    }
}

#[tokio::test]
async fn the_multipart_upload_of_a_failed_job_is_aborted_once_old_enough() {
    let Some(server) = S3Server::start().await else {
        return;
    };
    for env in envs().await {
        let name = env.name();
        let dirs = dirs();
        let mut s3 = server.config(&server.endpoint());
        s3.orphan_upload_max_age_s = 1;
        let storage = S3Storage::new(&s3);
        let key = format!("recordings/9/{}.mp4", support::unique("orphan"));
        let upload_id = support::begin_upload(&storage, &key).await;
        assert_eq!(server.open_uploads().len(), 1, "{name}");

        // A job that failed for good in the middle of its upload, a while ago.
        let long_ago = livegate_core::db::now_ms() - 60_000;
        let id = support::job_mid_upload(&env.db, "old", &key, &upload_id, long_ago).await;
        assert!(
            recording_jobs::fail(&env.db, id, "old", "given up", long_ago)
                .await
                .unwrap()
        );

        let config = support::with_s3(support::config(&dirs), s3.clone());
        let running = start(config, &env, Arc::new(storage.clone())).await;
        livegate_tests::wait_until("the orphaned upload to be aborted", || async {
            let row = recording_jobs::get(&env.db, id).await.unwrap()?;
            (row.upload_id.is_none() && server.open_uploads().is_empty()).then_some(())
        })
        .await;
        assert!(server.upload_files().is_empty(), "{name}");
        running.stop().await;
    }
}

#[tokio::test]
async fn an_upload_whose_completion_was_cut_off_and_is_refused_is_done_again() {
    let Some(server) = S3Server::start().await else {
        return;
    };
    let storage = S3Storage::new(&server.config(&server.endpoint()));
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("big.mp4");
    let size = support::PART_SIZE as usize + 4321;
    make_blob(&file, size);
    let (checksum, _) = checksum_file(&file).await.unwrap();
    // Cut off before it touched the parts (completion refused), and after it took the first
    // one (the missing part's upload refused).
    for (key, took_first_part) in [
        ("recordings/9/1733000000000-cut.mp4", false),
        ("recordings/9/1733000000001-cut.mp4", true),
    ] {
        let upload = Upload {
            path: &file,
            key,
            size: size as u64,
            checksum: &checksum,
            part_size: support::PART_SIZE,
            upload_id: None,
            part_checksums: None,
        };
        // Both parts stored, then the recorder is killed during CompleteMultipartUpload.
        let mut crashing = Recorded {
            fail_after: Some(2),
            ..Recorded::default()
        };
        storage.put(&upload, &mut crashing).await.unwrap_err();
        let upload_id = crashing.upload_id.clone().unwrap();
        server.cut_off_completion(&upload_id, took_first_part);

        // Retried as the worker retries: a part sent to the broken upload may be cut off by
        // the server's refusal (a broken pipe, retried) before the refusal itself is read.
        let mut saved = Some(upload_id.clone());
        let mut stored = None;
        for _ in 0..20 {
            let attempt = Upload {
                upload_id: saved.as_deref(),
                ..upload.clone()
            };
            let mut resumed = Recorded {
                upload_id: saved.clone(),
                ..Recorded::default()
            };
            let outcome = storage.put(&attempt, &mut resumed).await;
            saved = resumed.upload_id.clone();
            match outcome {
                Ok(done) => {
                    stored = Some(done);
                    break;
                }
                Err(StorageError::Unavailable(_)) => {}
                Err(err) => panic!("{key}: {err}"),
            }
        }
        let stored = stored.expect("stored within 20 attempts");
        assert_eq!(
            stored.bytes_sent, size as u64,
            "{key}: sent again, in a fresh upload"
        );
        assert_ne!(saved.as_deref(), Some(upload_id.as_str()));
        assert_eq!(server.get(key).await, std::fs::read(&file).unwrap());
        assert!(
            server.open_uploads().is_empty(),
            "{key}: no multipart upload open"
        );
    }
}

#[tokio::test]
async fn a_job_an_earlier_version_left_unrecorded_is_stored_once() {
    let Some(server) = S3Server::start().await else {
        return;
    };
    for (n, env) in envs().await.into_iter().enumerate() {
        let variants = [(false, false), (true, false), (false, true)];
        for (v, (completed, refused_first)) in variants.into_iter().enumerate() {
            let n = (variants.len() * n + v) as i64;
            earlier_version_left(&server, &env, n, completed, refused_first).await;
        }
    }
}

/// A job an earlier version (a sha256 identity) left in `uploading`, its multipart upload one
/// part in or, with `completed`, completed but not yet recorded, is taken over by this one.
/// With `refused_first`, first by a recorder whose credentials the storage refuses: it keeps
/// the old upload to abort once it can.
async fn earlier_version_left(
    server: &S3Server,
    env: &support::Env,
    n: i64,
    completed: bool,
    refused_first: bool,
) {
    let name = format!(
        "{}, upload completed: {completed}, credentials refused first: {refused_first}",
        env.name()
    );
    let dirs = dirs();
    let (room, stream_id) = stream(&env.db).await;
    let config = support::with_s3(support::config(&dirs), server.config(&server.endpoint()));
    let s3 = config.storage.s3.clone().unwrap();
    let storage = S3Storage::new(&s3);

    // The recording, the MP4 the earlier version made of it, and the multipart upload of it
    // that version began, created with the file's sha256 as its identity.
    let flv = dirs.rec.join(format!("{room}-1733000900.flv"));
    make_flv(&flv, 20, 3000);
    // Its own key in the bucket the databases share.
    let started_at = 1_733_000_900_000 + n;
    let then = now_ms() - 120_000;
    let source_path = flv.to_string_lossy().into_owned();
    let new_job = recording_jobs::NewRecordingJob {
        source_path: &source_path,
        room_id: room,
        stream_id: Some(stream_id),
        origin_kind: "nginx-rtmp",
        started_at,
    };
    let (row, _) = recording_jobs::discover(&env.db, &new_job, then)
        .await
        .unwrap();
    let mp4 = dirs.work.join(format!("{}.mp4", row.id));
    Tools::new("ffmpeg", "ffprobe", Duration::from_secs(120))
        .remux(&Source::File(flv.clone()), &mp4, true)
        .await
        .unwrap();
    // Without its source the job can only be finished from the MP4 in the work directory.
    std::fs::remove_file(&flv).unwrap();
    let bytes = std::fs::read(&mp4).unwrap();
    let part = usize::try_from(support::PART_SIZE).unwrap();
    assert!(bytes.len() > part, "{name}: more than one part");
    let sha256 = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&bytes));
    let key = object_key(&s3.key_prefix, room, started_at, &flv);
    let created = storage
        .client()
        .create_multipart_upload()
        .bucket(storage.bucket())
        .key(&key)
        .metadata("sha256", &sha256)
        .send()
        .await
        .unwrap();
    let upload_id = created.upload_id().unwrap().to_owned();
    let sent = if completed { bytes.len() } else { part };
    let mut parts = Vec::new();
    for (index, chunk) in bytes[..sent].chunks(part).enumerate() {
        let number = i32::try_from(index).unwrap() + 1;
        let stored = storage
            .client()
            .upload_part()
            .bucket(storage.bucket())
            .key(&key)
            .upload_id(&upload_id)
            .part_number(number)
            .body(ByteStream::from(chunk.to_vec()))
            .send()
            .await
            .unwrap();
        parts.push(
            aws_sdk_s3::types::CompletedPart::builder()
                .part_number(number)
                .e_tag(stored.e_tag().unwrap())
                .build(),
        );
    }
    let parts_sent = i32::try_from(parts.len()).unwrap();
    if completed {
        storage
            .client()
            .complete_multipart_upload()
            .bucket(storage.bucket())
            .key(&key)
            .upload_id(&upload_id)
            .multipart_upload(
                aws_sdk_s3::types::CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            )
            .send()
            .await
            .unwrap();
    }
    let owner = "an-earlier-version";
    recording_jobs::claim(&env.db, row.id, owner, then + 60_000, then)
        .await
        .unwrap()
        .unwrap();
    let remuxed = recording_jobs::Remuxed {
        work_path: &mp4.to_string_lossy(),
        size_bytes: bytes.len() as i64,
        checksum: &sha256,
        object_key: &key,
        part_size: support::PART_SIZE as i64,
    };
    let held = recording_jobs::set_remuxed(&env.db, row.id, owner, &remuxed, then);
    assert!(held.await.unwrap());
    let held =
        recording_jobs::set_upload(&env.db, row.id, owner, Some(&upload_id), parts_sent, then);
    assert!(held.await.unwrap());

    if refused_first {
        let mut refused = s3.clone();
        refused.secret_key = Secret::new("not-the-secret-at-all");
        let refused_config = support::with_s3(support::config(&dirs), refused.clone());
        let running = start(refused_config, env, Arc::new(S3Storage::new(&refused))).await;
        let waiting = livegate_tests::wait_until("the refused attempt to be recorded", || {
            let source = source_path.clone();
            async move {
                recording_jobs::by_source(&env.db, &source)
                    .await
                    .unwrap()
                    .filter(|row| {
                        row.error
                            .as_deref()
                            .is_some_and(|e| e.contains("secret_key"))
                    })
            }
        })
        .await;
        running.stop().await;
        assert_eq!(
            waiting.upload_id.as_deref(),
            Some(upload_id.as_str()),
            "{name}: an upload the storage would not let it abort is not forgotten"
        );
    }

    // Its lease ran out; this version takes the job over.
    let running = start(config, env, Arc::new(storage)).await;
    let done = wait_state(&env.db, &flv, JobState::Cleaned).await;
    assert_eq!(done.id, row.id, "{name}");
    assert_eq!(done.object_key.as_deref(), Some(key.as_str()), "{name}");
    assert_eq!(done.checksum, Some(checksum_of(&bytes)), "{name}");
    if !refused_first {
        assert_eq!(
            (done.attempts, done.error.as_deref()),
            (0, None),
            "{name}: the old upload is given up before anything is sent, not found wrong after"
        );
    }
    let recording = format!("{}{room}/{started_at}-", s3.key_prefix);
    let stored: Vec<String> = server
        .keys()
        .await
        .into_iter()
        .filter(|k| k.starts_with(&recording))
        .collect();
    assert_eq!(
        stored,
        [poster_key(&key), key.clone()],
        "{name}: one object, and its poster"
    );
    assert_eq!(
        server.get(&key).await,
        bytes,
        "{name}: the MP4, read back identical"
    );
    let check = S3Storage::new(&s3);
    let head = check
        .client()
        .head_object()
        .bucket(check.bucket())
        .key(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(
        head.metadata().and_then(|m| m.get("crc64nvme")),
        done.checksum.as_ref(),
        "{name}: the object is the one this version sent, under its identity"
    );
    assert!(
        server.open_uploads().is_empty(),
        "{name}: the earlier upload aborted, none left open"
    );
    assert_eq!(
        record_url(&env.db, room, stream_id).await,
        Some(format!("s3://recordings/{key}")),
        "{name}"
    );
    assert!(!mp4.exists(), "{name}: the MP4 removed");
    running.stop().await;
}
