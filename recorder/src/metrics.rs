//! The service's Prometheus metrics, registered into a registry the caller owns.

use livegate_core::db::JobState;
use livegate_core::telemetry::Registry;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;

/// Labels of a job count by state.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct StateLabels {
    /// `discovered`, `remuxing`, `uploading`, `uploaded`, `recorded`, `cleaned` or `failed`.
    pub state: &'static str,
}

/// Labels of an attempt's outcome.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct OutcomeLabels {
    /// `cleaned`, `failed`, `retried`, `lease_lost`, `handed_back` or `parked`.
    pub outcome: &'static str,
}

/// Labels of a discovered recording.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct InputLabels {
    /// `bus` or `watch`.
    pub input: &'static str,
}

/// Labels of a picture taken.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct PictureLabels {
    /// `poster` or `snapshot`.
    pub kind: &'static str,
    /// `stored`, `none` (nothing to take a picture of), `failed`, `timed_out` or `retried`.
    pub outcome: &'static str,
}

/// Every metric of the recorder.
#[derive(Debug, Clone)]
pub struct Metrics {
    /// Jobs in the job table, by state.
    pub jobs: Family<StateLabels, Gauge>,
    /// Attempts, by outcome.
    pub attempts: Family<OutcomeLabels, Counter>,
    /// Recordings that got a row, by the input that saw them first.
    pub discovered: Family<InputLabels, Counter>,
    /// Bytes sent to storage.
    pub uploaded_bytes: Counter,
    /// One attempt of a job, in seconds.
    pub job_duration: Histogram,
    /// Probe, remux and validation of one file, in seconds.
    pub remux_duration: Histogram,
    /// Storing one file, in seconds.
    pub upload_duration: Histogram,
    /// Recording jobs waiting or in progress on the bus.
    pub queue_depth: Gauge,
    /// Age of the oldest job not yet final, in seconds.
    pub oldest_job_age: Gauge,
    /// Multipart uploads aborted as orphans.
    pub orphans_aborted: Counter,
    /// Sweeps for orphaned multipart uploads, by outcome: `listed` (the storage listed its
    /// uploads), `unlisted` (it cannot: only failed jobs' uploads were aborted) or `failed`.
    pub orphan_sweeps: Family<OutcomeLabels, Counter>,
    /// Posters and snapshots, by outcome.
    pub pictures: Family<PictureLabels, Counter>,
    /// Live rooms being snapshotted.
    pub snapshot_rooms: Gauge,
}

fn durations() -> Histogram {
    Histogram::new([
        0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0,
    ])
}

impl Metrics {
    /// Creates the metrics and registers them in `registry` (`livegate_recorder_…`).
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self {
            jobs: Family::default(),
            attempts: Family::default(),
            discovered: Family::default(),
            uploaded_bytes: Counter::default(),
            job_duration: durations(),
            remux_duration: durations(),
            upload_duration: durations(),
            queue_depth: Gauge::default(),
            oldest_job_age: Gauge::default(),
            orphans_aborted: Counter::default(),
            orphan_sweeps: Family::default(),
            pictures: Family::default(),
            snapshot_rooms: Gauge::default(),
        };
        registry.register(
            "jobs",
            "Jobs in the job table, by state",
            metrics.jobs.clone(),
        );
        registry.register(
            "attempts",
            "Job attempts, by outcome",
            metrics.attempts.clone(),
        );
        registry.register(
            "discovered",
            "Recordings that got a job, by the input that saw them first",
            metrics.discovered.clone(),
        );
        registry.register(
            "uploaded_bytes",
            "Bytes sent to storage",
            metrics.uploaded_bytes.clone(),
        );
        registry.register(
            "job_duration_seconds",
            "One attempt of a job",
            metrics.job_duration.clone(),
        );
        registry.register(
            "remux_duration_seconds",
            "Probe, remux and validation of one file",
            metrics.remux_duration.clone(),
        );
        registry.register(
            "upload_duration_seconds",
            "Storing one file",
            metrics.upload_duration.clone(),
        );
        registry.register(
            "queue_depth",
            "Recording jobs waiting or in progress on the bus",
            metrics.queue_depth.clone(),
        );
        registry.register(
            "oldest_job_age_seconds",
            "Age of the oldest job not yet final",
            metrics.oldest_job_age.clone(),
        );
        registry.register(
            "orphan_uploads_aborted",
            "Multipart uploads aborted as orphans",
            metrics.orphans_aborted.clone(),
        );
        registry.register(
            "orphan_upload_sweeps",
            "Sweeps for orphaned multipart uploads, by outcome",
            metrics.orphan_sweeps.clone(),
        );
        registry.register(
            "pictures",
            "Posters and snapshots taken, by kind and outcome",
            metrics.pictures.clone(),
        );
        registry.register(
            "snapshot_rooms",
            "Live rooms being snapshotted",
            metrics.snapshot_rooms.clone(),
        );
        metrics
    }

    /// Counts a picture's outcome.
    pub fn picture(&self, kind: &'static str, outcome: &'static str) {
        self.pictures
            .get_or_create(&PictureLabels { kind, outcome })
            .inc();
    }

    /// Counts an attempt's outcome.
    pub fn outcome(&self, outcome: &'static str) {
        self.attempts
            .get_or_create(&OutcomeLabels { outcome })
            .inc();
    }

    /// Counts a sweep for orphaned uploads.
    pub fn orphan_sweep(&self, outcome: &'static str) {
        self.orphan_sweeps
            .get_or_create(&OutcomeLabels { outcome })
            .inc();
    }

    /// Counts a discovery.
    pub fn discovered(&self, input: &'static str) {
        self.discovered.get_or_create(&InputLabels { input }).inc();
    }

    /// Sets the job gauges from the table's counts (states without jobs read 0).
    pub fn set_states(&self, counts: &[(String, i64)]) {
        for state in JobState::ALL {
            let count = counts
                .iter()
                .find(|(name, _)| name == state.as_str())
                .map_or(0, |(_, count)| *count);
            self.jobs
                .get_or_create(&StateLabels {
                    state: state.as_str(),
                })
                .set(count);
        }
    }
}
