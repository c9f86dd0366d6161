//! Orphaned multipart uploads, against moto (the S3 server here that lists multipart
//! uploads): the sweep aborts those older than `storage.s3.orphan_upload_max_age_s` that no
//! job names, and leaves young ones, jobs' ones and other prefixes' ones alone.

use std::sync::Arc;

use livegate_core::db::{now_ms, recording_jobs};
use livegate_recorder::storage::s3::S3Storage;

use crate::support::{self, dirs, envs, start, unique, Env, MotoServer};

/// The ids of the multipart uploads the server holds, sorted.
async fn held(storage: &S3Storage) -> Vec<String> {
    let listed = storage
        .client()
        .list_multipart_uploads()
        .bucket(storage.bucket())
        .send()
        .await
        .unwrap();
    let mut ids: Vec<String> = listed
        .uploads()
        .iter()
        .filter_map(|upload| upload.upload_id().map(str::to_owned))
        .collect();
    ids.sort();
    ids
}

/// A job interrupted in the middle of its upload, waiting an hour for its next attempt (as
/// after a storage outage): it will resume `upload_id`, however old that is.
async fn job_resuming(env: &Env, key: &str, upload_id: &str) {
    let now = now_ms();
    let id = support::job_mid_upload(&env.db, "earlier", key, upload_id, now).await;
    let next_attempt = now + 3_600_000;
    let retrying =
        recording_jobs::retry_later(&env.db, id, "earlier", "storage down", next_attempt, now);
    assert!(retrying.await.unwrap());
}

/// Runs the service with `max_age_s` until it has swept once, listing the server's uploads.
async fn sweep_once(env: &Env, server: &MotoServer, prefix: &str, max_age_s: u64) {
    let dirs = dirs();
    let mut s3 = server.config();
    s3.key_prefix = prefix.to_owned();
    s3.orphan_upload_max_age_s = max_age_s;
    let storage = Arc::new(S3Storage::new(&s3));
    let config = support::with_s3(support::config(&dirs), s3);
    let running = start(config, env, storage).await;
    livegate_tests::wait_until("a sweep that listed the uploads", || async {
        let text = support::metrics(running.admin).await;
        text.lines()
            .any(|line| {
                line == "livegate_recorder_orphan_upload_sweeps_total{outcome=\"listed\"} 1"
            })
            .then_some(())
    })
    .await;
    running.stop().await;
}

#[tokio::test]
async fn orphaned_uploads_past_the_configured_age_are_aborted_and_the_rest_left_alone() {
    let Some(server) = MotoServer::start().await else {
        return;
    };
    for env in envs().await {
        let name = env.name();
        let prefix = format!("{}/", unique("recordings"));
        let storage = S3Storage::new(&server.config());
        let orphan = support::begin_upload(&storage, &format!("{prefix}9/1-orphan.mp4")).await;
        let resumable_key = format!("{prefix}9/1-resumable.mp4");
        let resumable = support::begin_upload(&storage, &resumable_key).await;
        let elsewhere =
            support::begin_upload(&storage, &format!("{}/9/1-x.mp4", unique("other"))).await;
        job_resuming(&env, &resumable_key, &resumable).await;
        let before = held(&storage).await;
        for id in [&orphan, &resumable, &elsewhere] {
            assert!(before.contains(id), "{name}: {id} begun");
        }

        // moto says every upload began on 2010-11-10. Allowed 30 years, that is young:
        // nothing is aborted.
        sweep_once(&env, &server, &prefix, 30 * 365 * 86_400).await;
        assert_eq!(held(&storage).await, before, "{name}: young uploads stay");

        // Allowed a day, it is old: the orphan is aborted; the upload a job will resume, and
        // one outside the recorder's prefix, stay.
        sweep_once(&env, &server, &prefix, 86_400).await;
        let after = held(&storage).await;
        assert!(!after.contains(&orphan), "{name}: the orphan is aborted");
        assert!(after.contains(&resumable), "{name}: the job's upload stays");
        assert!(
            after.contains(&elsewhere),
            "{name}: another prefix's upload stays"
        );
        assert_eq!(after.len(), before.len() - 1, "{name}: {after:?}");
    }
}
