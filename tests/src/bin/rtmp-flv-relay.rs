//! HTTP-FLV in front of nginx-rtmp (see `livegate_tests::flv_relay`), for bench scripts: each
//! `GET /{app}/{stream}.flv` is one ffmpeg pull of `rtmp://RTMP/{app}/{stream}`.
//!
//! ```text
//! rtmp-flv-relay --rtmp 127.0.0.1:1935 [--listen 127.0.0.1:0]
//! ```
//!
//! Stdout gets `listening <addr>` once the port is open; on SIGUSR1, and once more when it
//! stops (SIGINT, SIGTERM), `pulls open=<now> peak=<most at once> total=<since start>`.

use std::io::Write as _;
use std::net::SocketAddr;
use std::process::ExitCode;

use clap::Parser;
use livegate_tests::flv_relay::{FlvRelay, PullCounts};
use tokio::signal::unix::{signal, SignalKind};

/// HTTP-FLV relay for nginx-rtmp.
#[derive(Debug, Parser)]
struct Args {
    /// nginx-rtmp's RTMP address.
    #[arg(long)]
    rtmp: SocketAddr,
    /// Where to listen.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
}

fn print(pulls: &PullCounts) {
    println!(
        "pulls open={} peak={} total={}",
        pulls.open(),
        pulls.peak(),
        pulls.total()
    );
    let _ = std::io::stdout().flush();
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    // Handlers first: the address line tells scripts they may signal.
    let (Ok(mut usr1), Ok(mut term)) = (
        signal(SignalKind::user_defined1()),
        signal(SignalKind::terminate()),
    ) else {
        eprintln!("rtmp-flv-relay: cannot handle signals");
        return ExitCode::FAILURE;
    };
    let relay = match FlvRelay::start_on(args.listen, args.rtmp).await {
        Ok(relay) => relay,
        Err(err) => {
            eprintln!("rtmp-flv-relay: listen on {}: {err}", args.listen);
            return ExitCode::FAILURE;
        }
    };
    println!("listening {}", relay.addr);
    let _ = std::io::stdout().flush();
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            _ = term.recv() => break,
            _ = usr1.recv() => print(&relay.pulls),
        }
    }
    print(&relay.pulls);
    ExitCode::SUCCESS
}
