//! Publishers: an ffmpeg encoding a `lavfi` test pattern at the chosen bitrate to FLV on its
//! standard output, a relay here that puts a wall-clock stamp (see [`super::stamp`]) in front of
//! every video frame, and a second ffmpeg pushing the stamped FLV to the origin unchanged
//! (`-c copy`). The stamp is taken as the frame leaves the encoder, so the latency measured
//! is the delivery chain's: RTMP push, origin, proxy and viewer.

use std::process::Stdio;
use std::time::Duration;

use livegate_core::service::CancellationToken;
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::process::{Child, Command};

use super::stamp;

/// What one publisher pushes, and where.
#[derive(Debug, Clone)]
pub(crate) struct PublisherSpec {
    /// The stream's name on the origin (the room id).
    pub(crate) stream: String,
    /// The full RTMP URL, stream key included; never printed.
    pub(crate) url: String,
    /// The stream key, to blank it out of ffmpeg's messages.
    pub(crate) key: Option<String>,
    /// Total bitrate (video plus 64 kbit/s of audio).
    pub(crate) bitrate_kbps: u32,
}

/// How a publisher went.
#[derive(Debug, Clone, Serialize)]
pub struct PublisherReport {
    /// The stream it pushed.
    pub stream: String,
    /// Video frames stamped and passed on.
    pub frames: u64,
    /// FLV bytes passed on.
    pub bytes: u64,
    /// Whether it pushed until asked to stop.
    pub ran_to_end: bool,
    /// What went wrong, with ffmpeg's last words (stream key blanked).
    pub error: Option<String>,
}

const AUDIO_KBPS: u32 = 64;

fn encoder(bitrate_kbps: u32) -> Command {
    let video = bitrate_kbps.saturating_sub(AUDIO_KBPS).max(50).to_string() + "k";
    let mut command = Command::new("ffmpeg");
    command
        .args(["-hide_banner", "-loglevel", "error", "-nostdin", "-re"])
        .args(["-f", "lavfi", "-i", "testsrc2=size=640x360:rate=25"])
        .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100"])
        .args([
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-tune",
            "zerolatency",
        ])
        .args(["-b:v", &video, "-maxrate", &video, "-bufsize", &video])
        // One-second GOPs: a new viewer waits at most a second for a keyframe from the origin.
        .args(["-g", "25", "-keyint_min", "25", "-pix_fmt", "yuv420p"])
        .args(["-c:a", "aac", "-b:a", &format!("{AUDIO_KBPS}k")])
        .args(["-f", "flv", "pipe:1"]);
    command
}

fn pusher(url: &str) -> Command {
    let mut command = Command::new("ffmpeg");
    command
        .args(["-hide_banner", "-loglevel", "error", "-nostdin"])
        // The input arrives in real time already: read it as it comes.
        .args(["-fflags", "nobuffer", "-f", "flv", "-i", "pipe:0"])
        .args(["-c", "copy", "-f", "flv", url]);
    command
}

fn spawn(mut command: Command, stdin: bool) -> std::io::Result<Child> {
    command
        .stdin(if stdin { Stdio::piped() } else { Stdio::null() })
        .stdout(if stdin { Stdio::null() } else { Stdio::piped() })
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
}

/// Pushes until `stop` is cancelled or something breaks.
pub(crate) async fn run(spec: PublisherSpec, stop: CancellationToken) -> PublisherReport {
    let mut report = PublisherReport {
        stream: spec.stream.clone(),
        frames: 0,
        bytes: 0,
        ran_to_end: false,
        error: None,
    };
    let mut encode = match spawn(encoder(spec.bitrate_kbps), false) {
        Ok(child) => child,
        Err(err) => {
            report.error = Some(format!("starting ffmpeg (encoder): {err}"));
            return report;
        }
    };
    let mut push = match spawn(pusher(&spec.url), true) {
        Ok(child) => child,
        Err(err) => {
            report.error = Some(format!("starting ffmpeg (pusher): {err}"));
            return report;
        }
    };
    let (Some(from), Some(to)) = (encode.stdout.take(), push.stdin.take()) else {
        report.error = Some("ffmpeg's pipes are missing".to_owned());
        return report;
    };
    let relayed = tokio::select! {
        relayed = relay(from, to, &mut report) => Some(relayed),
        () = stop.cancelled() => None,
    };
    // Closing the pusher's input (dropped with the relay) lets it finish the RTMP session.
    let _ = encode.start_kill();
    let pushed = tokio::time::timeout(Duration::from_secs(5), push.wait()).await;
    if pushed.is_err() {
        let _ = push.start_kill();
    }
    match relayed {
        None => report.ran_to_end = true,
        Some(outcome) => {
            let mut said = stderr_of(&mut push).await;
            if said.is_empty() {
                said = stderr_of(&mut encode).await;
            }
            said = redact(&said, spec.key.as_deref());
            let what = match outcome {
                Ok(()) => "the encoder stopped".to_owned(),
                Err(err) => err.to_string(),
            };
            report.error = Some(if said.is_empty() {
                what
            } else {
                format!("{what}: {}", said.trim())
            });
        }
    }
    let _ = encode.wait().await;
    report
}

/// `text` without the stream key: every `key=` value blanked, and the key itself wherever
/// it still appears (when it is long enough not to match ordinary words).
fn redact(text: &str, key: Option<&str>) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("key=") {
        out.push_str(&rest[..at + 4]);
        out.push_str("<redacted>");
        rest = &rest[at + 4..];
        let end = rest
            .find(|c: char| c.is_whitespace() || matches!(c, '&' | '\'' | '"' | ':'))
            .unwrap_or(rest.len());
        rest = &rest[end..];
    }
    out.push_str(rest);
    match key.filter(|key| key.len() >= 6) {
        Some(key) => out.replace(key, "<redacted>"),
        None => out,
    }
}

async fn stderr_of(child: &mut Child) -> String {
    let Some(mut stderr) = child.stderr.take() else {
        return String::new();
    };
    let mut text = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(2), stderr.read_to_end(&mut text)).await;
    // The last lines say why; keep them short.
    let text = String::from_utf8_lossy(&text);
    let tail: Vec<&str> = text.lines().rev().take(3).collect();
    tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
}

/// Copies FLV tag by tag, adding a stamp to every video frame (AVC NAL unit packets).
async fn relay(
    mut from: impl AsyncRead + Unpin,
    mut to: impl AsyncWrite + Unpin,
    report: &mut PublisherReport,
) -> std::io::Result<()> {
    let mut header = [0u8; 13];
    from.read_exact(&mut header).await?;
    to.write_all(&header).await?;
    let mut tag_header = [0u8; 11];
    let mut data = Vec::new();
    loop {
        match from.read_exact(&mut tag_header).await {
            Ok(_) => {}
            Err(err) if err.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(err) => return Err(err),
        }
        let size = u32::from_be_bytes([0, tag_header[1], tag_header[2], tag_header[3]]) as usize;
        data.resize(size + 4, 0);
        from.read_exact(&mut data).await?;
        data.truncate(size);
        let is_frame =
            tag_header[0] & 0x1f == 9 && size >= 5 && data[0] & 0x0f == 7 && data[1] == 1;
        if is_frame {
            // AVC packet: 1 byte frame type/codec, 1 byte packet type, 3 bytes composition
            // time, then length-prefixed NAL units; the stamp goes first.
            let sei = stamp::sei_nal(super::metrics::now_ms());
            data.splice(5..5, sei);
            report.frames += 1;
        }
        let size = data.len() as u32;
        let size_bytes = size.to_be_bytes();
        tag_header[1..4].copy_from_slice(&size_bytes[1..]);
        to.write_all(&tag_header).await?;
        to.write_all(&data).await?;
        to.write_all(&(size + 11).to_be_bytes()).await?;
        report.bytes += u64::from(size) + 15;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stream_key_never_shows() {
        let said = "rtmp://127.0.0.1:1/live/1?key=s3cr3t-key: Connection refused";
        assert_eq!(
            redact(said, Some("s3cr3t-key")),
            "rtmp://127.0.0.1:1/live/1?key=<redacted>: Connection refused"
        );
        assert_eq!(
            redact("publish s3cr3t-key failed", Some("s3cr3t-key")),
            "publish <redacted> failed"
        );
        assert_eq!(redact("no key here", Some("k")), "no key here");
    }
}
