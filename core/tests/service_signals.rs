//! Signals, in a test binary of their own: they go to the whole process.
#![allow(clippy::unwrap_used, reason = "tests fail loudly on unexpected errors")]

use livegate_core::service::{Shutdown, Signals, Stop};

fn send(signal: &str) {
    let status = std::process::Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(std::process::id().to_string())
        .status()
        .unwrap();
    assert!(status.success());
}

#[tokio::test]
async fn sigterm_drains_and_sigint_or_a_second_sigterm_stops_at_once() {
    // SIGTERM: a drain.
    let shutdown = Shutdown::new();
    let signals = Signals::install().unwrap();
    send("TERM");
    let stop = shutdown
        .run_with_signals(signals, shutdown.requested())
        .await;
    assert_eq!(stop, Stop::Drain);

    // SIGINT: at once.
    let shutdown = Shutdown::new();
    let signals = Signals::install().unwrap();
    send("INT");
    let stop = shutdown
        .run_with_signals(signals, shutdown.requested())
        .await;
    assert_eq!(stop, Stop::Now);

    // A second SIGTERM while draining: at once.
    let shutdown = Shutdown::new();
    let signals = Signals::install().unwrap();
    let watched = shutdown.clone();
    let run = async {
        assert_eq!(watched.requested().await, Stop::Drain);
        send("TERM");
        livegate_tests::wait_until("the second SIGTERM to stop at once", || async {
            (watched.kind() == Stop::Now).then_some(Stop::Now)
        })
        .await
    };
    send("TERM");
    assert_eq!(shutdown.run_with_signals(signals, run).await, Stop::Now);
}
