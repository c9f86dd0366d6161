//! The command line of `livegate loadtest`, checked into a [`Plan`] before anything starts.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use livegate_core::token::TokenKeys;
use livegate_core::Secret;

use super::LoadError;

/// Most viewers one run starts.
pub(crate) const MAX_VIEWERS: u32 = 20_000;
/// Most publishers one run starts.
pub(crate) const MAX_PUBLISHERS: u32 = 32;
/// Longest run.
pub(crate) const MAX_DURATION: Duration = Duration::from_secs(3600);

/// `livegate loadtest`: publishers and viewers against a running deployment.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// The proxy viewers play from.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub url_base: String,
    /// The origin's RTMP application publishers push to (its last path segment is the app
    /// viewers play from too).
    #[arg(long, default_value = "rtmp://127.0.0.1:1935/live")]
    pub rtmp: String,
    /// The room (with several publishers: the first of consecutive rooms).
    #[arg(long, default_value_t = 1)]
    pub room: u64,
    /// The rooms' stream key (or `env:NAME`, `file:PATH`).
    #[arg(long, value_name = "KEY")]
    pub publish_key: Option<String>,
    /// Publish nothing: load a stream that is already live.
    #[arg(long, conflicts_with = "publish_key")]
    pub no_publish: bool,
    /// The proxy's token key, to mint each viewer's token (or `env:NAME`, `file:PATH`).
    #[arg(long, value_name = "KEY")]
    pub token_key: String,
    /// Publishers, each to its own room (`--room`, `--room`+1, …); viewers are spread over them.
    #[arg(long, default_value_t = 1)]
    pub publishers: u32,
    /// HTTP-FLV viewers.
    #[arg(long, default_value_t = 10)]
    pub flv_viewers: u32,
    /// HLS viewers.
    #[arg(long, default_value_t = 0)]
    pub hls_viewers: u32,
    /// Each publisher's total bitrate (64 kbit/s of it audio).
    #[arg(long, default_value_t = 600)]
    pub bitrate_kbps: u32,
    /// How long every viewer watches, at least (`90s`, `2m`, `500ms`).
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Viewers start evenly over this time; all stop together at ramp + duration.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub ramp: Duration,
    /// Share of viewers (0 to 1) sent with an expired or a forged token, to be refused.
    #[arg(long, default_value_t = 0.0)]
    pub bad_token_share: f64,
    /// Where `result.json` and `chart.svg` go.
    #[arg(long, default_value = "loadtest-out")]
    pub out: PathBuf,
    /// A process whose CPU and memory to sample every second (repeat the flag).
    #[arg(long = "watch-pid", value_name = "PID")]
    pub watch_pid: Vec<u32>,
    /// How long to wait for the streams to become playable before the viewers start.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub warmup_timeout: Duration,
    /// The proxy's metrics endpoint (`http://127.0.0.1:9180/metrics`), to record how many
    /// origin pulls serve the FLV viewers.
    #[arg(long, value_name = "URL")]
    pub proxy_metrics: Option<String>,
    /// Allow targets that are not on loopback.
    #[arg(long)]
    pub allow_remote: bool,
}

/// `90s`, `2m`, `500ms`, or plain seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, scale) = if let Some(n) = text.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = text.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = text.strip_suffix('m') {
        (n, 60.0)
    } else if let Some(n) = text.strip_suffix('h') {
        (n, 3600.0)
    } else {
        (text, 1.0)
    };
    let value: f64 = number
        .trim()
        .parse()
        .map_err(|_| format!("`{text}` is not a duration (try 60s, 2m, 500ms)"))?;
    if !value.is_finite() || value < 0.0 {
        return Err(format!("`{text}` is not a duration"));
    }
    Ok(Duration::from_secs_f64(value * scale))
}

/// A checked run.
pub struct Plan {
    /// The proxy's base URL, without a trailing `/`.
    pub url_base: String,
    /// The RTMP application URL, without a trailing `/`.
    pub rtmp: String,
    /// The application viewers play from.
    pub app: String,
    /// The rooms.
    pub rooms: Vec<u64>,
    /// The stream key, when publishing.
    pub publish_key: Option<Secret>,
    /// Whether to publish.
    pub publish: bool,
    /// Signing key for good tokens.
    pub token_keys: TokenKeys,
    /// Viewers by protocol.
    pub flv_viewers: u32,
    /// HLS viewers.
    pub hls_viewers: u32,
    /// Publishers' bitrate.
    pub bitrate_kbps: u32,
    /// Watch time.
    pub duration: Duration,
    /// Ramp.
    pub ramp: Duration,
    /// Bad-token share.
    pub bad_token_share: f64,
    /// Output directory.
    pub out: PathBuf,
    /// Watched processes.
    pub watch: Vec<u32>,
    /// Warm-up limit.
    pub warmup_timeout: Duration,
    /// The proxy's metrics endpoint.
    pub proxy_metrics: Option<String>,
}

fn host_is_loopback(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

impl Plan {
    /// Checks every argument, reporting all problems at once.
    pub fn new(args: Args) -> Result<Plan, LoadError> {
        let mut problems = Vec::new();
        let url_base = args.url_base.trim_end_matches('/').to_owned();
        match url::Url::parse(&url_base) {
            Ok(url) if url.scheme() == "http" => {
                if !args.allow_remote && !url.host_str().is_some_and(host_is_loopback) {
                    problems.push("--url-base: not on loopback (add --allow-remote)".to_owned());
                }
            }
            _ => problems.push(format!("--url-base: `{url_base}` is not an http:// URL")),
        }
        let rtmp = args.rtmp.trim_end_matches('/').to_owned();
        let mut app = String::new();
        match url::Url::parse(&rtmp) {
            Ok(url) if url.scheme() == "rtmp" => {
                app = url
                    .path()
                    .trim_matches('/')
                    .rsplit('/')
                    .next()
                    .unwrap_or("")
                    .to_owned();
                if app.is_empty() {
                    problems.push("--rtmp: names no application (rtmp://host/live)".to_owned());
                }
                if !args.no_publish
                    && !args.allow_remote
                    && !url.host_str().is_some_and(host_is_loopback)
                {
                    problems.push("--rtmp: not on loopback (add --allow-remote)".to_owned());
                }
            }
            _ => problems.push(format!("--rtmp: `{rtmp}` is not an rtmp:// URL")),
        }
        let publish_key = match args.publish_key.as_deref().map(Secret::resolve).transpose() {
            Ok(key) => key,
            Err(err) => {
                problems.push(format!("--publish-key: {err}"));
                None
            }
        };
        if !args.no_publish && publish_key.is_none() && args.publish_key.is_none() {
            problems.push("--publish-key or --no-publish is required".to_owned());
        }
        let token_keys = match Secret::resolve(&args.token_key) {
            Ok(key) => TokenKeys::new([&key]).map_err(|err| err.to_string()),
            Err(err) => Err(err),
        };
        let token_keys = match token_keys {
            Ok(keys) => Some(keys),
            Err(err) => {
                problems.push(format!("--token-key: {err}"));
                None
            }
        };
        if args.publishers == 0 || args.publishers > MAX_PUBLISHERS {
            problems.push(format!("--publishers: 1 to {MAX_PUBLISHERS}"));
        }
        let viewers = args.flv_viewers.saturating_add(args.hls_viewers);
        if viewers == 0 || viewers > MAX_VIEWERS {
            problems.push(format!("--flv-viewers + --hls-viewers: 1 to {MAX_VIEWERS}"));
        }
        if !(100..=50_000).contains(&args.bitrate_kbps) {
            problems.push("--bitrate-kbps: 100 to 50000".to_owned());
        }
        if args.duration < Duration::from_secs(1) || args.duration + args.ramp > MAX_DURATION {
            problems.push("--duration: at least 1 s, and with --ramp at most an hour".to_owned());
        }
        if let Some(limit) = open_files_limit() {
            // A socket per viewer, plus the process's own files and the publishers' pipes.
            let needed = u64::from(viewers) + 64 + 8 * u64::from(args.publishers);
            if needed > limit {
                problems.push(format!(
                    "{viewers} viewers need about {needed} open files, over this process's limit of {limit} (raise `ulimit -n`)"
                ));
            }
        }
        if let Some(url) = args.proxy_metrics.as_deref() {
            if !url.starts_with("http://") {
                problems.push(format!("--proxy-metrics: `{url}` is not an http:// URL"));
            }
        }
        if !(0.0..=1.0).contains(&args.bad_token_share) {
            problems.push("--bad-token-share: 0 to 1".to_owned());
        }
        if !problems.is_empty() {
            return Err(LoadError::Usage(problems.join("\n")));
        }
        Ok(Plan {
            url_base,
            rtmp,
            app,
            rooms: (0..u64::from(args.publishers))
                .map(|i| args.room + i)
                .collect(),
            publish: !args.no_publish,
            publish_key,
            token_keys: token_keys.ok_or_else(|| LoadError::Usage("--token-key".to_owned()))?,
            flv_viewers: args.flv_viewers,
            hls_viewers: args.hls_viewers,
            bitrate_kbps: args.bitrate_kbps,
            duration: args.duration,
            ramp: args.ramp,
            bad_token_share: args.bad_token_share,
            out: args.out,
            watch: args.watch_pid,
            warmup_timeout: args.warmup_timeout,
            proxy_metrics: args.proxy_metrics,
        })
    }
}

/// The soft limit on open files, from `/proc/self/limits`.
fn open_files_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("60s"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("-1s").is_err());
    }

    #[test]
    fn loopback_is_the_default_and_every_problem_is_reported() {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            args: Args,
        }
        let parse = |line: &[&str]| {
            let mut argv = vec!["loadtest"];
            argv.extend_from_slice(line);
            Plan::new(Cli::try_parse_from(argv).unwrap().args)
        };
        let Err(LoadError::Usage(problems)) = parse(&[
            "--url-base",
            "http://203.0.113.9:8080",
            "--token-key",
            "k",
            "--bad-token-share",
            "2",
        ]) else {
            panic!("accepted");
        };
        assert!(problems.contains("not on loopback"), "{problems}");
        assert!(
            problems.contains("--publish-key or --no-publish"),
            "{problems}"
        );
        assert!(problems.contains("--bad-token-share"), "{problems}");
        let plan = parse(&[
            "--token-key",
            "k",
            "--no-publish",
            "--publishers",
            "2",
            "--room",
            "7",
        ])
        .unwrap();
        assert_eq!((plan.rooms, plan.app.as_str()), (vec![7, 8], "live"));
    }
}
