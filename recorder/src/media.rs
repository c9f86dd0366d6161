//! ffprobe and ffmpeg: what a recording contains, and its remux to MP4.
//!
//! Both run with a time limit and `kill_on_drop`, so a job given up on (shutdown, a lost
//! lease, the limit) takes its ffmpeg with it. The remux writes a temporary file of its own
//! and renames it into place only after ffprobe accepted it: a crash leaves either no MP4 or
//! a complete, validated one.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde::Deserialize;
use tokio::process::Command;

/// Why a probe or remux failed.
#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    /// ffmpeg or ffprobe could not read the input: it is not a recording we can use.
    #[error("unreadable input: {0}")]
    Unreadable(String),
    /// The MP4 did not pass validation.
    #[error("remuxed file is not valid: {0}")]
    Invalid(String),
    /// The run took longer than its time limit and was killed.
    #[error("{tool} took longer than {limit_ms} ms and was killed")]
    TimedOut {
        /// `ffmpeg` or `ffprobe`.
        tool: &'static str,
        /// The limit.
        limit_ms: u64,
    },
    /// The tool could not be started, or a file could not be written (disk full): may pass.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

impl MediaError {
    /// Whether trying again later may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, MediaError::Io(_))
    }
}

/// What ffprobe says about a file.
#[derive(Debug, Clone, PartialEq)]
pub struct Probe {
    /// The kinds of its streams (`video`, `audio`, …), sorted.
    pub streams: Vec<String>,
    /// Its duration, when known.
    pub duration: Option<Duration>,
}

#[derive(Debug, Deserialize)]
struct ProbeJson {
    #[serde(default)]
    streams: Vec<StreamJson>,
    format: Option<FormatJson>,
}

#[derive(Debug, Deserialize)]
struct StreamJson {
    codec_type: Option<String>,
}

#[derive(Debug, Deserialize)]
struct FormatJson {
    duration: Option<String>,
}

/// The two tools and their limits.
#[derive(Debug, Clone)]
pub struct Tools {
    /// ffmpeg.
    pub ffmpeg: PathBuf,
    /// ffprobe.
    pub ffprobe: PathBuf,
    /// Longest one run may take.
    pub time_limit: Duration,
    /// How far the MP4's duration may be from the source's.
    pub duration_tolerance: Duration,
}

/// The last bytes of a tool's error output: enough to say why, bounded for the database.
fn tail(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let text = text.trim();
    let start = text
        .char_indices()
        .rev()
        .nth(500)
        .map_or(0, |(index, _)| index);
    text[start..].replace('\n', " | ")
}

impl Tools {
    async fn run(
        &self,
        tool: &'static str,
        command: &mut Command,
    ) -> Result<std::process::Output, MediaError> {
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let child = command.spawn().map_err(|err| {
            std::io::Error::new(err.kind(), format!("cannot start {tool}: {err}"))
        })?;
        match tokio::time::timeout(self.time_limit, child.wait_with_output()).await {
            Ok(output) => Ok(output?),
            // Dropping the child's future kills it.
            Err(_) => Err(MediaError::TimedOut {
                tool,
                limit_ms: u64::try_from(self.time_limit.as_millis()).unwrap_or(u64::MAX),
            }),
        }
    }

    /// Probes `path`. An input ffprobe cannot open, or one without any stream, is
    /// [`MediaError::Unreadable`].
    pub async fn probe(&self, path: &Path) -> Result<Probe, MediaError> {
        let output = self
            .run(
                "ffprobe",
                Command::new(&self.ffprobe)
                    .args(["-v", "error", "-print_format", "json"])
                    .args(["-show_entries", "format=duration:stream=codec_type"])
                    .arg(path),
            )
            .await?;
        if !output.status.success() {
            return Err(MediaError::Unreadable(format!(
                "ffprobe: {}",
                tail(&output.stderr)
            )));
        }
        let parsed: ProbeJson = serde_json::from_slice(&output.stdout)
            .map_err(|err| MediaError::Unreadable(format!("ffprobe output: {err}")))?;
        let mut streams: Vec<String> = parsed
            .streams
            .into_iter()
            .filter_map(|stream| stream.codec_type)
            .filter(|kind| kind == "video" || kind == "audio")
            .collect();
        streams.sort();
        if streams.is_empty() {
            return Err(MediaError::Unreadable(
                "no audio or video stream".to_owned(),
            ));
        }
        let duration = parsed
            .format
            .and_then(|format| format.duration)
            .and_then(|text| text.parse::<f64>().ok())
            .filter(|seconds| seconds.is_finite() && *seconds >= 0.0)
            .map(Duration::from_secs_f64);
        Ok(Probe { streams, duration })
    }

    /// Remuxes `source` into `target` (`-c copy`, `+faststart`, bit-exact so that a redo
    /// produces the same bytes) and validates it against the source: the same kinds of
    /// streams and, with `check_duration`, a duration within the tolerance (a truncated file's
    /// header may announce more than it holds). Writes a temporary file beside `target` and
    /// renames it into place only when valid.
    pub async fn remux(
        &self,
        source: &Path,
        target: &Path,
        check_duration: bool,
    ) -> Result<RemuxOutcome, MediaError> {
        let started = Instant::now();
        let source_probe = self.probe(source).await?;
        // Unique per attempt: an ffmpeg orphaned by a killed recorder may still be writing
        // the previous attempt's file.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let partial = target.with_extension(format!("{}-{nanos}.part.mp4", std::process::id()));
        let output = self
            .run(
                "ffmpeg",
                Command::new(&self.ffmpeg)
                    .args(["-hide_banner", "-nostdin", "-loglevel", "error", "-y", "-i"])
                    .arg(source)
                    .args(["-map", "0:v?", "-map", "0:a?", "-c", "copy"])
                    .args(["-movflags", "+faststart", "-map_metadata", "-1"])
                    .args(["-fflags", "+bitexact", "-flags:v", "+bitexact"])
                    .args(["-flags:a", "+bitexact", "-f", "mp4"])
                    .arg(&partial),
            )
            .await;
        let output = match output {
            Ok(output) => output,
            Err(err) => {
                let _ = tokio::fs::remove_file(&partial).await;
                return Err(err);
            }
        };
        if !output.status.success() {
            let _ = tokio::fs::remove_file(&partial).await;
            let reason = tail(&output.stderr);
            // A full disk is worth another try; anything else ffmpeg says is about the input.
            if reason.contains("No space left") {
                return Err(MediaError::Io(std::io::Error::other(format!(
                    "ffmpeg: {reason}"
                ))));
            }
            return Err(MediaError::Unreadable(format!("ffmpeg: {reason}")));
        }
        let checked = self.validate(&source_probe, &partial, check_duration).await;
        if let Err(err) = checked {
            let _ = tokio::fs::remove_file(&partial).await;
            return Err(err);
        }
        tokio::fs::rename(&partial, target).await?;
        Ok(RemuxOutcome {
            source: source_probe,
            elapsed: started.elapsed(),
        })
    }

    async fn validate(
        &self,
        source: &Probe,
        mp4: &Path,
        check_duration: bool,
    ) -> Result<(), MediaError> {
        let probe = self.probe(mp4).await.map_err(|err| match err {
            MediaError::Unreadable(reason) => MediaError::Invalid(reason),
            other => other,
        })?;
        if probe.streams != source.streams {
            return Err(MediaError::Invalid(format!(
                "streams {:?}, the source has {:?}",
                probe.streams, source.streams
            )));
        }
        if let (true, Some(source), Some(result)) =
            (check_duration, source.duration, probe.duration)
        {
            let off = source.abs_diff(result);
            if off > self.duration_tolerance {
                return Err(MediaError::Invalid(format!(
                    "duration {:.3} s, the source has {:.3} s",
                    result.as_secs_f64(),
                    source.as_secs_f64()
                )));
            }
        }
        Ok(())
    }
}

/// A successful remux.
#[derive(Debug, Clone)]
pub struct RemuxOutcome {
    /// What the source contained.
    pub source: Probe,
    /// How long probing, remuxing and validating took.
    pub elapsed: Duration,
}
