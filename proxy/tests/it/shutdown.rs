//! Draining: on SIGTERM and during a zero-downtime upgrade, running FLV responses continue for
//! the grace period while new requests go elsewhere.

use livegate_tests::wait_until;

use crate::flv::{paced_origin, read_at_least};
use crate::support::{spawn_proxy, streaming_client, token, ProxyBuilder};

#[tokio::test]
async fn sigterm_lets_running_flv_responses_finish_their_grace_period() {
    let origin = paced_origin().await;
    let mut proxy = ProxyBuilder::new(origin.addr).start().await;
    let response = streaming_client()
        .get(proxy.url(&format!("/live/42.flv?token={}", token(42))))
        .send()
        .await
        .unwrap();
    let mut body = response.bytes_stream();
    read_at_least(&mut body, 16 * 1024).await;

    proxy.process.signal("TERM");
    // The stream keeps flowing after the signal…
    read_at_least(&mut body, 64 * 1024).await;
    // …and the process exits once the grace period (3 s in tests) is over.
    wait_until("the proxy to exit after its grace period", || {
        let exited = proxy.process.try_wait();
        async move { exited.map(|_| ()) }
    })
    .await;
    wait_until("the origin connection to close", || async {
        (origin.open_connections() == 0).then_some(())
    })
    .await;
}

#[tokio::test]
async fn an_upgrade_hands_over_listeners_without_cutting_streams() {
    let origin = paced_origin().await;
    let mut old = ProxyBuilder::new(origin.addr).start().await;
    let response = streaming_client()
        .get(old.url(&format!("/live/42.flv?token={}", token(42))))
        .send()
        .await
        .unwrap();
    let mut old_stream = response.bytes_stream();
    read_at_least(&mut old_stream, 16 * 1024).await;

    // The new process waits on the upgrade socket; SIGQUIT makes the old one hand over.
    let config = old.dir.path().join("proxy.toml");
    let mut new = spawn_proxy(
        &config,
        &["--upgrade"],
        old.dir.path().join("proxy-new.log"),
    );
    let upgrade_sock = old.dir.path().join("upgrade.sock");
    wait_until("the new process to listen on the upgrade socket", || {
        let ready = upgrade_sock.exists();
        async move { ready.then_some(()) }
    })
    .await;
    old.process.signal("QUIT");

    // New requests are answered (by the new process) while the old stream still flows.
    let url = old.url(&format!("/live/42.flv?token={}", token(42)));
    let fresh = wait_until("the new process to serve", || {
        let url = url.clone();
        async move {
            let response = streaming_client().get(&url).send().await.ok()?;
            (response.status() == 200).then_some(response)
        }
    })
    .await;
    let mut fresh_stream = fresh.bytes_stream();
    read_at_least(&mut fresh_stream, 16 * 1024).await;
    read_at_least(&mut old_stream, 64 * 1024).await;

    wait_until("the old process to exit after its grace period", || {
        let exited = old.process.try_wait();
        async move { exited.map(|_| ()) }
    })
    .await;
    assert!(new.try_wait().is_none(), "the new process keeps running");
    read_at_least(&mut fresh_stream, 64 * 1024).await;
}
