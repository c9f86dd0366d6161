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

async fn wait_for_exit(
    process: &mut livegate_tests::ChildGuard,
    what: &str,
) -> std::process::ExitStatus {
    wait_until(what, || {
        let exited = process.try_wait();
        async move { exited }
    })
    .await
}

#[tokio::test]
async fn sigterm_with_nothing_running_exits_at_once() {
    let origin = paced_origin().await;
    // A grace period no test would wait out.
    let mut proxy = ProxyBuilder::new(origin.addr).grace(600).start().await;
    // An idle keep-alive connection is not a running response.
    let client = streaming_client();
    let refused = client.get(proxy.url("/live/42.flv")).send().await.unwrap();
    assert_eq!(refused.status(), 403);
    proxy.process.signal("TERM");
    let status = wait_for_exit(&mut proxy.process, "the proxy to exit").await;
    assert!(status.success(), "{status:?}");
}

#[tokio::test]
async fn sigterm_exits_when_the_last_flv_response_ends() {
    let origin = paced_origin().await;
    let mut proxy = ProxyBuilder::new(origin.addr).grace(600).start().await;
    let response = streaming_client()
        .get(proxy.url(&format!("/live/42.flv?token={}", token(42))))
        .send()
        .await
        .unwrap();
    let mut body = response.bytes_stream();
    read_at_least(&mut body, 16 * 1024).await;
    proxy.process.signal("TERM");
    read_at_least(&mut body, 64 * 1024).await;
    assert!(
        proxy.process.try_wait().is_none(),
        "still serving the viewer"
    );
    drop(body);
    let status = wait_for_exit(
        &mut proxy.process,
        "the proxy to exit after the viewer left",
    )
    .await;
    assert!(status.success(), "{status:?}");
}

#[tokio::test]
async fn an_upgrade_with_a_broken_configuration_leaves_the_old_process_serving() {
    let origin = paced_origin().await;
    let old = ProxyBuilder::new(origin.addr).start().await;
    let config = std::fs::read_to_string(old.dir.path().join("proxy.toml")).unwrap();
    let broken = old.dir.path().join("broken.toml");
    std::fs::write(
        &broken,
        config.replace(
            &format!("addresses = [\"{}\"]", origin.addr),
            "addresses = [\"origin.does-not-exist.invalid:8081\"]",
        ),
    )
    .unwrap();
    let mut new = spawn_proxy(
        &broken,
        &["--upgrade"],
        old.dir.path().join("proxy-new.log"),
    );
    let status = wait_for_exit(&mut new, "the broken new process to give up").await;
    assert!(!status.success());
    assert!(
        !old.dir.path().join("upgrade.sock").exists(),
        "the broken process never offered to take the listeners"
    );
    let response = streaming_client()
        .get(old.url(&format!("/live/42.flv?token={}", token(42))))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "the old process still serves");
}

#[tokio::test]
async fn a_taken_address_is_named_and_the_proxy_exits() {
    let origin = paced_origin().await;
    for taken_key in ["server.listen", "admin.listen"] {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let taken_addr = taken.local_addr().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let (listen, admin) = if taken_key == "server.listen" {
            (taken_addr, livegate_tests::free_addr())
        } else {
            (livegate_tests::free_addr(), taken_addr)
        };
        let config = dir.path().join("proxy.toml");
        std::fs::write(
            &config,
            ProxyBuilder::new(origin.addr).config_text(dir.path(), listen, admin),
        )
        .unwrap();
        let log = dir.path().join("proxy.log");
        let mut process = spawn_proxy(&config, &[], log.clone());
        let status = wait_for_exit(&mut process, "the proxy to exit").await;
        assert!(!status.success());
        let output = std::fs::read_to_string(&log).unwrap();
        assert!(
            output.contains(&format!("{taken_key} {taken_addr}")),
            "{taken_key}: {output}"
        );
    }
}
