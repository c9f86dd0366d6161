//! A paced HTTP-FLV origin for load tests: serves an ffmpeg-made FLV file in real time (looped)
//! on a free loopback port, prints its address, and runs until killed or for `--seconds`.
//!
//! ```text
//! flv-origin --file /tmp/stream.flv [--video-kbps 1936] [--make-seconds 30] [--seconds 0]
//! ```
//!
//! When `--file` does not exist yet it is made first (H.264 test pattern plus 64 kbit/s AAC).
//! Stdout gets one `listening <addr>` line, then `bitrate_bps <n>`, once the port is open.

use std::io::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use livegate_tests::flv::{FlvFile, FlvOrigin};
use livegate_tests::media::make_flv;

/// Paced HTTP-FLV origin.
#[derive(Debug, Parser)]
struct Args {
    /// FLV file to serve; made with ffmpeg if it does not exist.
    #[arg(long)]
    file: PathBuf,
    /// Video bitrate of a file made here, in kbit/s (audio adds 64).
    #[arg(long, default_value_t = 1936)]
    video_kbps: u32,
    /// Length of a file made here, in seconds (it is looped while serving).
    #[arg(long, default_value_t = 30)]
    make_seconds: u32,
    /// Stop after this many seconds; 0 runs until killed.
    #[arg(long, default_value_t = 0)]
    seconds: u64,
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    if !args.file.exists() {
        eprintln!(
            "flv-origin: making {} ({} s at {} kbit/s video)",
            args.file.display(),
            args.make_seconds,
            args.video_kbps
        );
        make_flv(&args.file, args.make_seconds, args.video_kbps);
    }
    let file = FlvFile::read(&args.file);
    let bitrate = file.bitrate_bps();
    let origin = FlvOrigin::start(file).await;
    let mut out = std::io::stdout().lock();
    writeln!(out, "listening {}", origin.addr).expect("write to stdout");
    writeln!(out, "bitrate_bps {bitrate}").expect("write to stdout");
    out.flush().expect("flush stdout");
    drop(out);

    let stop = async {
        if args.seconds == 0 {
            std::future::pending::<()>().await;
        } else {
            tokio::time::sleep(Duration::from_secs(args.seconds)).await;
        }
    };
    tokio::select! {
        () = stop => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    eprintln!(
        "flv-origin: stopping; {} connections accepted",
        origin
            .stats
            .accepted
            .load(std::sync::atomic::Ordering::SeqCst)
    );
}
