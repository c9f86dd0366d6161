//! `livegate loadtest`: N publishers and M viewers against a running deployment, measuring
//! what viewers feel and what the servers pay.
//!
//! Publishers are ffmpeg pushing a test pattern with a wall-clock stamp in every video frame
//! ([`stamp`]); viewers are HTTP-FLV and HLS players written here, each with a token of its
//! own, a share of them with expired or forged tokens that the proxy must refuse. A run
//! measures time to first frame, stalls (through a player model, [`playout`]), delivered
//! bitrate, end-to-end latency, errors by kind, the CPU and memory of chosen processes and the
//! generator's own lateness ([`lateness`]: when it cannot run, every viewer stalls with it),
//! and writes `result.json` and `chart.svg`. It is bounded by count and time, targets loopback
//! unless told otherwise, and stops by itself.

mod args;
mod chart;
mod flv_viewer;
mod flvtags;
mod hls_viewer;
mod lateness;
mod metrics;
mod playout;
mod procstat;
mod publisher;
mod report;
mod run;
mod sampler;
mod stamp;
mod viewer;
mod warmup;

use std::path::PathBuf;
use std::process::ExitCode;

use livegate_core::service::Shutdown;

pub use args::{parse_duration, Args, Plan};
pub use lateness::Generator;
pub use metrics::{BadToken, Outcome, Percentiles, Protocol};
pub use publisher::PublisherReport;
pub use report::{BadTokens, Process, Report, Setup, Viewers};
pub use run::run;
pub use sampler::{Point, ProcessPoint};

/// Why a run could not be done (what it measured is a [`Report`], not an error).
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The arguments.
    #[error("{0}")]
    Usage(String),
    /// The streams never became playable through the proxy.
    #[error("{0}")]
    NotPlayable(String),
    /// Writing the results.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What failed.
        source: std::io::Error,
    },
    /// Drawing the chart.
    #[error("chart.svg: {0}")]
    Chart(String),
}

/// The command: runs the plan, prints the summary. Exit status 0 when every viewer with a
/// good token watched without an error and every bad token was refused, 1 when not, 64 for
/// bad arguments, 69 when the streams never became playable, 74 when results could not be
/// written.
pub fn main(args: Args) -> ExitCode {
    let plan = match Plan::new(args) {
        Ok(plan) => plan,
        Err(err) => {
            eprintln!("livegate loadtest: {err}");
            return ExitCode::from(livegate_core::service::EX_USAGE);
        }
    };
    let out = plan.out.clone();
    let outcome = tokio::runtime::Runtime::new()
        .map_err(|source| LoadError::Io {
            path: PathBuf::from("(runtime)"),
            source,
        })
        .and_then(|runtime| runtime.block_on(run(plan, Shutdown::new())));
    match outcome {
        Ok(report) => {
            print!("{}", report.summary());
            println!(
                "  results: {}  chart: {}",
                out.join("result.json").display(),
                out.join("chart.svg").display()
            );
            let clean = report.unexpected_errors == 0
                && report.bad_tokens.accepted == 0
                && report.bad_tokens.other == 0;
            if clean {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(err) => {
            eprintln!("livegate loadtest: {err}");
            ExitCode::from(match err {
                LoadError::Usage(_) => livegate_core::service::EX_USAGE,
                LoadError::NotPlayable(_) => 69,
                LoadError::Io { .. } | LoadError::Chart(_) => 74,
            })
        }
    }
}
