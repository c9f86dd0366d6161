//! Real media made by ffmpeg from its `lavfi` test sources.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The test pattern and tone, encoded as H.264 and AAC with a keyframe every two seconds.
const ENCODE: [&str; 20] = [
    "-f",
    "lavfi",
    "-i",
    VIDEO_SOURCE,
    "-f",
    "lavfi",
    "-i",
    AUDIO_SOURCE,
    "-c:v",
    "libx264",
    "-preset",
    "ultrafast",
    "-g",
    "50",
    "-pix_fmt",
    "yuv420p",
    "-c:a",
    "aac",
    "-b:a",
    "64k",
];

fn ffmpeg(args: &[&str]) {
    crate::require_tool("ffmpeg");
    let output = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-nostdin", "-y"])
        .args(args)
        .output()
        .expect("run ffmpeg");
    assert!(
        output.status.success(),
        "ffmpeg {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

const VIDEO_SOURCE: &str = "testsrc2=size=640x360:rate=25";
const AUDIO_SOURCE: &str = "sine=frequency=440:sample_rate=44100";

/// Writes an HLS rendition of `seconds` of test pattern into `dir` as SRS names it:
/// `{stream}.m3u8` and `{stream}-{N}.ts`, two-second segments.
pub fn make_hls(dir: &Path, stream: &str, seconds: u32) -> PathBuf {
    std::fs::create_dir_all(dir).expect("create HLS directory");
    let playlist = dir.join(format!("{stream}.m3u8"));
    let segments = dir.join(format!("{stream}-%d.ts"));
    let duration = seconds.to_string();
    // `-t` after the inputs: an output option, so the endless sources stop together.
    let mut args = ENCODE.to_vec();
    args.extend([
        "-t",
        &duration,
        "-f",
        "hls",
        "-hls_time",
        "2",
        "-hls_list_size",
        "0",
        "-hls_segment_filename",
        segments.to_str().expect("UTF-8 temp path"),
        playlist.to_str().expect("UTF-8 temp path"),
    ]);
    ffmpeg(&args);
    playlist
}

/// Writes `seconds` of test pattern as an FLV file at about `video_kbps` (H.264 + AAC).
pub fn make_flv(path: &Path, seconds: u32, video_kbps: u32) {
    let duration = seconds.to_string();
    let rate = format!("{video_kbps}k");
    let buffer = format!("{}k", video_kbps * 2);
    let mut args = ENCODE.to_vec();
    args.extend([
        "-t",
        &duration,
        "-b:v",
        &rate,
        "-minrate",
        &rate,
        "-maxrate",
        &rate,
        "-bufsize",
        &buffer,
        "-f",
        "flv",
        path.to_str().expect("UTF-8 temp path"),
    ]);
    ffmpeg(&args);
}

/// Writes `seconds` of test pattern as an MPEG-TS file (H.264 + AAC), as HLS segments and
/// TS recordings carry it.
pub fn make_ts(path: &Path, seconds: u32) {
    let duration = seconds.to_string();
    let mut args = ENCODE.to_vec();
    args.extend([
        "-t",
        &duration,
        "-f",
        "mpegts",
        path.to_str().expect("UTF-8 temp path"),
    ]);
    ffmpeg(&args);
}

/// Writes a file of `len` pseudo-random bytes (a stand-in media segment for throughput tests).
pub fn make_blob(path: &Path, len: usize) {
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let bytes: Vec<u8> = (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect();
    std::fs::write(path, bytes).expect("write blob");
}
