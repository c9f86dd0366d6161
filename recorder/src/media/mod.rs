//! ffprobe and ffmpeg: what a recording contains, its remux to MP4, and pictures of it.
//!
//! Every run has a time limit and `kill_on_drop`, so a job given up on (shutdown, a lost
//! lease, the limit) takes its ffmpeg with it; and, through util-linux's `setpriv
//! --pdeathsig`, a parent-death signal, so that a recorder killed with SIGKILL takes it too.
//! The remux writes a temporary file of its own and renames it into place only after ffprobe
//! accepted it: a crash leaves either no MP4 or a complete, validated one.

pub mod picture;
pub mod segments;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde::Deserialize;
use tokio::process::Command;

pub use segments::Source;

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
    /// Its first timestamp, when known.
    pub start: Option<Duration>,
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
    start_time: Option<String>,
}

/// How the remux lays out the MP4.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Layout {
    /// One `moov` index at the front (`+faststart`): plays everywhere, costs a second pass.
    #[default]
    Faststart,
    /// Fragmented (`frag_keyframe+empty_moov+default_base_moof`): one pass, playable up to
    /// where it was cut, less compatible with old players.
    Fragmented,
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
    /// The MP4's layout.
    pub layout: Layout,
    /// util-linux's `setpriv`, through which every run gets a parent-death signal; `None`
    /// runs the tools directly.
    pub setpriv: Option<PathBuf>,
}

impl Tools {
    /// ffmpeg at `ffmpeg` and ffprobe at `ffprobe` with a time limit, a 1 s duration
    /// tolerance, the default layout and no parent-death signal.
    pub fn new(ffmpeg: impl Into<PathBuf>, ffprobe: impl Into<PathBuf>, limit: Duration) -> Self {
        Self {
            ffmpeg: ffmpeg.into(),
            ffprobe: ffprobe.into(),
            time_limit: limit,
            duration_tolerance: Duration::from_secs(1),
            layout: Layout::Faststart,
            setpriv: None,
        }
    }
}

/// The last bytes of a tool's error output: enough to say why, bounded for the database.
pub(crate) fn tail(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let text = text.trim();
    let start = text
        .char_indices()
        .rev()
        .nth(500)
        .map_or(0, |(index, _)| index);
    text[start..].replace('\n', " | ")
}

fn seconds(text: Option<String>) -> Option<Duration> {
    text.and_then(|text| text.parse::<f64>().ok())
        .filter(|seconds| seconds.is_finite() && *seconds >= 0.0)
        .map(Duration::from_secs_f64)
}

/// Whether a tool's error output says the disk is full: worth another try, and not the
/// input's fault.
fn disk_full(stderr: &str) -> bool {
    stderr.contains("No space left") || stderr.contains("Disk quota exceeded")
}

impl Tools {
    /// A command for `program`, run through `setpriv --pdeathsig KILL` when configured: the
    /// kernel kills it when the thread that started it dies (the recorder killed with
    /// SIGKILL), which nothing in this process could do.
    pub(crate) fn command(&self, program: &Path) -> Command {
        match &self.setpriv {
            Some(setpriv) => {
                let mut command = Command::new(setpriv);
                command.args(["--pdeathsig", "KILL", "--"]).arg(program);
                command
            }
            None => Command::new(program),
        }
    }

    /// Runs `command` to its end within `limit`, collecting its output.
    pub(crate) async fn run_for(
        &self,
        tool: &'static str,
        command: &mut Command,
        limit: Duration,
    ) -> Result<std::process::Output, MediaError> {
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let child = command.spawn().map_err(|err| {
            std::io::Error::new(err.kind(), format!("cannot start {tool}: {err}"))
        })?;
        match tokio::time::timeout(limit, child.wait_with_output()).await {
            Ok(output) => Ok(output?),
            // Dropping the child's future kills it.
            Err(_) => Err(MediaError::TimedOut {
                tool,
                limit_ms: u64::try_from(limit.as_millis()).unwrap_or(u64::MAX),
            }),
        }
    }

    async fn run(
        &self,
        tool: &'static str,
        command: &mut Command,
    ) -> Result<std::process::Output, MediaError> {
        self.run_for(tool, command, self.time_limit).await
    }

    /// Probes `path`. An input ffprobe cannot open, or one without any stream, is
    /// [`MediaError::Unreadable`].
    pub async fn probe(&self, path: &Path) -> Result<Probe, MediaError> {
        let output = self
            .run(
                "ffprobe",
                self.command(&self.ffprobe)
                    .args(["-v", "error", "-print_format", "json"])
                    .args([
                        "-show_entries",
                        "format=duration,start_time:stream=codec_type",
                    ])
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
        streams.dedup();
        if streams.is_empty() {
            return Err(MediaError::Unreadable(
                "no audio or video stream".to_owned(),
            ));
        }
        let (duration, start) = match parsed.format {
            Some(format) => (seconds(format.duration), seconds(format.start_time)),
            None => (None, None),
        };
        Ok(Probe {
            streams,
            duration,
            start,
        })
    }

    /// What `source` holds: a file's probe, or for segments the first one's streams and the
    /// span from the first one's start to the last one's end (the segments of one stream
    /// carry continuous timestamps, so a missing one shows as a shorter MP4).
    async fn probe_source(&self, source: &Source) -> Result<Probe, MediaError> {
        match source {
            Source::File(path) => self.probe(path).await,
            Source::Segments { segments, .. } => {
                let (Some(first), Some(last)) = (segments.first(), segments.last()) else {
                    return Err(MediaError::Unreadable("no segments".to_owned()));
                };
                let head = self.probe(first).await?;
                let end = if segments.len() == 1 {
                    head.clone()
                } else {
                    self.probe(last).await?
                };
                let duration = match (head.start, end.start, end.duration) {
                    (Some(from), Some(last_start), Some(last_duration)) => {
                        (last_start + last_duration).checked_sub(from)
                    }
                    _ => None,
                };
                Ok(Probe {
                    streams: head.streams,
                    duration,
                    start: head.start,
                })
            }
        }
    }

    /// Remuxes `source` into `target` (`-c copy`, bit-exact so that a redo produces the same
    /// bytes, in the configured [`Layout`]) and validates it against the source: the same
    /// kinds of streams and, with `check_duration`, a duration within the tolerance (a
    /// truncated file's header may announce more than it holds). Segments are joined in
    /// order with the concat demuxer. Writes a temporary file beside `target` and renames it
    /// into place only when valid.
    pub async fn remux(
        &self,
        source: &Source,
        target: &Path,
        check_duration: bool,
    ) -> Result<RemuxOutcome, MediaError> {
        let started = Instant::now();
        // Unique per attempt: an ffmpeg orphaned by a killed recorder may still be writing
        // the previous attempt's file.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let attempt = format!("{}-{nanos}", std::process::id());
        let partial = target.with_extension(format!("{attempt}.part.mp4"));
        let list = target.with_extension(format!("{attempt}.part.concat"));
        // The source is probed while ffmpeg reads it: the probe is needed only to validate
        // the result. An input ffprobe cannot read is refused in its words, whatever ffmpeg
        // made of it.
        let (source_probe, written) = tokio::join!(
            self.probe_source(source),
            self.write_mp4(source, &partial, &list)
        );
        let _ = tokio::fs::remove_file(&list).await;
        let result = match (source_probe, written) {
            (Err(err), _) | (Ok(_), Err(err)) => Err(err),
            (Ok(source_probe), Ok(())) => self
                .validate(&source_probe, &partial, check_duration)
                .await
                .map(|mp4| (source_probe, mp4)),
        };
        let (source_probe, mp4) = match result {
            Ok(probes) => probes,
            Err(err) => {
                let _ = tokio::fs::remove_file(&partial).await;
                return Err(err);
            }
        };
        tokio::fs::rename(&partial, target).await?;
        Ok(RemuxOutcome {
            source: source_probe,
            mp4,
            elapsed: started.elapsed(),
        })
    }

    /// Runs ffmpeg from `source` into `partial` (`list`: where the concat list of segments
    /// goes).
    async fn write_mp4(
        &self,
        source: &Source,
        partial: &Path,
        list: &Path,
    ) -> Result<(), MediaError> {
        let mut command = self.command(&self.ffmpeg);
        command.args(["-hide_banner", "-nostdin", "-loglevel", "error", "-y"]);
        match source {
            Source::File(path) => {
                command.arg("-i").arg(path);
            }
            Source::Segments { segments, .. } => {
                tokio::fs::write(list, segments::concat_list(segments)).await?;
                command.args(["-f", "concat", "-safe", "0", "-i"]).arg(list);
            }
        }
        let movflags = match self.layout {
            Layout::Faststart => "+faststart",
            Layout::Fragmented => "+frag_keyframe+empty_moov+default_base_moof",
        };
        command
            .args(["-map", "0:v?", "-map", "0:a?", "-c", "copy"])
            .args(["-movflags", movflags, "-map_metadata", "-1"])
            .args(["-fflags", "+bitexact", "-flags:v", "+bitexact"])
            .args(["-flags:a", "+bitexact", "-f", "mp4"])
            .arg(partial);
        let output = self.run("ffmpeg", &mut command).await?;
        if !output.status.success() {
            let reason = tail(&output.stderr);
            // A full disk is worth another try; anything else ffmpeg says is about the input.
            if disk_full(&reason) {
                let dir = partial.parent().unwrap_or(partial);
                return Err(MediaError::Io(std::io::Error::other(format!(
                    "ffmpeg could not write the MP4 into {}: no space left ({reason})",
                    dir.display()
                ))));
            }
            return Err(MediaError::Unreadable(format!("ffmpeg: {reason}")));
        }
        Ok(())
    }

    /// Checks the MP4 against its source and says what it holds.
    async fn validate(
        &self,
        source: &Probe,
        mp4: &Path,
        check_duration: bool,
    ) -> Result<Probe, MediaError> {
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
        Ok(probe)
    }
}

/// A successful remux.
#[derive(Debug, Clone)]
pub struct RemuxOutcome {
    /// What the source contained.
    pub source: Probe,
    /// What the MP4 holds: a recovered file's MP4 holds less than its header announced.
    pub mp4: Probe,
    /// How long probing, remuxing and validating took.
    pub elapsed: Duration,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_disk_is_recognised_in_ffmpegs_words() {
        assert!(disk_full(
            "Error writing trailer of x.part.mp4: No space left on device"
        ));
        assert!(!disk_full("Invalid data found when processing input"));
    }

    #[test]
    fn tools_run_through_setpriv_when_configured() {
        let mut tools = Tools::new("ffmpeg", "ffprobe", Duration::from_secs(1));
        let direct = tools.command(Path::new("ffmpeg"));
        assert_eq!(direct.as_std().get_program(), "ffmpeg");
        tools.setpriv = Some(PathBuf::from("setpriv"));
        let wrapped = tools.command(Path::new("ffmpeg"));
        let args: Vec<_> = wrapped.as_std().get_args().collect();
        assert_eq!(wrapped.as_std().get_program(), "setpriv");
        assert_eq!(args, ["--pdeathsig", "KILL", "--", "ffmpeg"]);
    }
}
