//! The recorder's job table against real databases: SQLite always, MariaDB/MySQL from
//! `LIVEGATE_TEST_MYSQL_URL` (required under CI).
#![allow(clippy::unwrap_used, reason = "tests fail loudly on unexpected errors")]

use livegate_core::db::recording_jobs::{self, NewRecordingJob, Remuxed};
use livegate_core::db::testing::{backends, TestDatabase};
use livegate_core::db::JobState;

fn new_job(path: &str, stream_id: Option<i64>) -> NewRecordingJob<'_> {
    NewRecordingJob {
        source_path: path,
        room_id: 42,
        stream_id,
        origin_kind: if stream_id.is_some() {
            "srs"
        } else {
            "unknown"
        },
        started_at: 1_733_000_000_000,
    }
}

#[tokio::test]
async fn the_first_input_creates_the_row_and_the_second_finds_it() {
    for backend in backends() {
        let test_db = TestDatabase::create(backend).await.unwrap();
        let db = &test_db.db;
        let path = "/rec/42-1733000000.flv";
        let (watched, created) = recording_jobs::discover(db, &new_job(path, None), 10)
            .await
            .unwrap();
        assert!(created, "{backend:?}");
        assert_eq!(watched.job_state(), JobState::Discovered);
        assert_eq!(watched.stream_id, None);
        let (called, created) = recording_jobs::discover(db, &new_job(path, Some(7)), 20)
            .await
            .unwrap();
        assert!(!created, "{backend:?}");
        assert_eq!(called.id, watched.id);
        assert_eq!(
            called.stream_id,
            Some(7),
            "{backend:?}: the callback's stream is kept"
        );
        assert_eq!(called.origin_kind, "srs");
        // A third announcement without a stream changes nothing.
        let (again, _) = recording_jobs::discover(db, &new_job(path, None), 30)
            .await
            .unwrap();
        assert_eq!(again.stream_id, Some(7));
        assert_eq!(recording_jobs::list(db, 10).await.unwrap().len(), 1);
    }
}

#[tokio::test]
async fn a_lease_keeps_others_out_until_it_runs_out() {
    for backend in backends() {
        let test_db = TestDatabase::create(backend).await.unwrap();
        let db = &test_db.db;
        let (row, _) = recording_jobs::discover(db, &new_job("/rec/a.flv", None), 0)
            .await
            .unwrap();
        let a = recording_jobs::claim_next(db, "a", 1_000, 100)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(a.id, row.id);
        assert!(
            recording_jobs::claim_next(db, "b", 1_000, 200)
                .await
                .unwrap()
                .is_none(),
            "{backend:?}"
        );
        assert!(recording_jobs::claim(db, row.id, "b", 1_000, 200)
            .await
            .unwrap()
            .is_none());
        assert!(
            !recording_jobs::set_state(db, row.id, "b", JobState::Remuxing, 200)
                .await
                .unwrap()
        );
        assert!(
            recording_jobs::set_state(db, row.id, "a", JobState::Remuxing, 200)
                .await
                .unwrap()
        );
        assert!(recording_jobs::extend(db, row.id, "a", 2_000)
            .await
            .unwrap());
        // `a` went quiet: past its lease `b` takes over, and `a`'s writes are refused.
        let b = recording_jobs::claim_next(db, "b", 5_000, 2_500)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(b.job_state(), JobState::Remuxing);
        let remuxed = Remuxed {
            work_path: "/work/1.mp4",
            size_bytes: 10,
            checksum: "ab",
            object_key: "k",
            part_size: 5,
        };
        assert!(
            !recording_jobs::set_remuxed(db, row.id, "a", &remuxed, 2_600)
                .await
                .unwrap()
        );
        assert!(
            recording_jobs::set_remuxed(db, row.id, "b", &remuxed, 2_600)
                .await
                .unwrap()
        );
        assert!(
            recording_jobs::set_upload(db, row.id, "b", Some("up-1"), 1, 2_700)
                .await
                .unwrap()
        );
        let row = recording_jobs::get(db, row.id).await.unwrap().unwrap();
        assert_eq!(row.job_state(), JobState::Uploading);
        assert_eq!(
            (row.upload_id.as_deref(), row.parts_done),
            (Some("up-1"), 1)
        );
        // A restarted `b` takes its own job back at once.
        assert!(recording_jobs::claim_next(db, "b", 9_000, 3_000)
            .await
            .unwrap()
            .is_some());
    }
}

#[tokio::test]
async fn a_retry_waits_for_its_time_and_a_failure_is_final() {
    for backend in backends() {
        let test_db = TestDatabase::create(backend).await.unwrap();
        let db = &test_db.db;
        let (row, _) = recording_jobs::discover(db, &new_job("/rec/b.flv", None), 0)
            .await
            .unwrap();
        recording_jobs::claim_next(db, "a", 1_000, 100)
            .await
            .unwrap()
            .unwrap();
        assert!(
            recording_jobs::retry_later(db, row.id, "a", "storage down", 5_000, 200)
                .await
                .unwrap()
        );
        assert!(
            recording_jobs::claim_next(db, "b", 9_000, 4_999)
                .await
                .unwrap()
                .is_none(),
            "{backend:?}"
        );
        let again = recording_jobs::claim_next(db, "b", 9_000, 5_000)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (again.attempts, again.error.as_deref()),
            (1, Some("storage down"))
        );
        assert!(
            recording_jobs::fail(db, row.id, "b", "unreadable input", 5_100)
                .await
                .unwrap()
        );
        assert!(recording_jobs::claim_next(db, "c", 99_000, 90_000)
            .await
            .unwrap()
            .is_none());
        assert!(recording_jobs::claim(db, row.id, "c", 99_000, 90_000)
            .await
            .unwrap()
            .is_none());
        // Parking a file that has a row changes nothing; a new one is written failed.
        assert!(
            !recording_jobs::park(db, &new_job("/rec/b.flv", None), "x", 1)
                .await
                .unwrap()
        );
        assert!(
            recording_jobs::park(db, &new_job("/rec/.c.mp4", None), "left behind", 1)
                .await
                .unwrap()
        );
        let parked = recording_jobs::by_source(db, "/rec/.c.mp4")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (parked.job_state(), parked.error.as_deref()),
            (JobState::Failed, Some("left behind"))
        );
        let counts = recording_jobs::count_by_state(db).await.unwrap();
        assert_eq!(counts, [("failed".to_owned(), 2)]);
    }
}
