//! Pictures: a recording's poster (one frame of its MP4) and a live room's snapshot (one
//! keyframe pulled from the origin), both as one JPEG on ffmpeg's standard output, scaled down
//! to a width.

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;

use super::{tail, MediaError, Tools};

/// Largest JPEG accepted from ffmpeg: one frame is far smaller.
const MAX_JPEG_BYTES: usize = 8 * 1024 * 1024;

/// How a picture is taken.
#[derive(Debug, Clone, Copy)]
pub struct PictureOptions {
    /// Widest the picture may be, in pixels (narrower sources keep their width).
    pub max_width: u32,
    /// ffmpeg's JPEG quality, 2 (best) to 31.
    pub quality: u8,
}

fn jpeg_args(options: PictureOptions) -> [String; 10] {
    [
        "-frames:v".to_owned(),
        "1".to_owned(),
        "-vf".to_owned(),
        // Even heights keep the JPEG encoder's chroma subsampling happy.
        format!(
            "scale=w=min(iw\\,{}):h=-2,format=yuvj420p",
            options.max_width
        ),
        "-c:v".to_owned(),
        "mjpeg".to_owned(),
        "-q:v".to_owned(),
        options.quality.to_string(),
        "-f".to_owned(),
        "image2pipe".to_owned(),
    ]
}

fn jpeg_of(tool: &str, output: std::process::Output) -> Result<Bytes, MediaError> {
    if !output.status.success() {
        return Err(MediaError::Unreadable(format!(
            "{tool}: {}",
            tail(&output.stderr)
        )));
    }
    let jpeg = output.stdout;
    // A JPEG starts with SOI (FF D8); nothing at all means there was no video frame.
    if jpeg.len() < 4 || jpeg[..2] != [0xFF, 0xD8] {
        return Err(MediaError::Unreadable(format!(
            "{tool}: no video frame to take a picture of"
        )));
    }
    if jpeg.len() > MAX_JPEG_BYTES {
        return Err(MediaError::Unreadable(format!(
            "{tool}: the picture is {} bytes, more than {MAX_JPEG_BYTES}",
            jpeg.len()
        )));
    }
    Ok(Bytes::from(jpeg))
}

impl Tools {
    /// A poster of `mp4`: the frame at `at`, or at half its `duration` when shorter (a
    /// recording's first frames are often black).
    pub async fn poster(
        &self,
        mp4: &Path,
        at: Duration,
        duration: Option<Duration>,
        options: PictureOptions,
    ) -> Result<Bytes, MediaError> {
        let at = duration.map_or(at, |duration| at.min(duration / 2));
        let output = self
            .run(
                "ffmpeg",
                self.command(&self.ffmpeg)
                    .args(["-hide_banner", "-nostdin", "-loglevel", "error"])
                    .args(["-ss", &format!("{:.3}", at.as_secs_f64())])
                    .arg("-i")
                    .arg(mp4)
                    .args(["-an", "-sn", "-dn"])
                    .args(jpeg_args(options))
                    .arg("pipe:1"),
            )
            .await?;
        jpeg_of("poster", output)
    }

    /// A snapshot of the live stream at `url`: its first keyframe (only keyframes are
    /// decoded), within `limit`.
    pub async fn snapshot(
        &self,
        url: &str,
        limit: Duration,
        options: PictureOptions,
    ) -> Result<Bytes, MediaError> {
        let output = self
            .run_for(
                "ffmpeg",
                self.command(&self.ffmpeg)
                    .args(["-hide_banner", "-nostdin", "-loglevel", "error"])
                    .args(["-skip_frame", "nokey", "-i", url])
                    .args(["-an", "-sn", "-dn"])
                    .args(jpeg_args(options))
                    .arg("pipe:1"),
                limit,
            )
            .await?;
        jpeg_of("snapshot", output)
    }
}
