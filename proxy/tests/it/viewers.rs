//! Viewer counts per room: FLV responses running and distinct HLS tokens, on the admin port
//! and published to the bus.

use livegate_core::bus::{Bus, BusConfig, Received, RoomViewers};
use livegate_core::{unix_now, Secret};
use livegate_tests::wait_until;

use crate::flv::{paced_origin, read_at_least};
use crate::support::{client, streaming_client, token, token_expiring, ProxyBuilder, TestProxy};

async fn counted(proxy: &TestProxy) -> String {
    client()
        .get(format!("http://{}/viewers", proxy.admin))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

async fn flv_viewer(
    proxy: &TestProxy,
    room: u64,
) -> impl futures_util::Stream<Item = reqwest::Result<bytes::Bytes>> + Unpin {
    let response = streaming_client()
        .get(proxy.url(&format!("/live/{room}.flv?token={}", token(room))))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let mut body = response.bytes_stream();
    read_at_least(&mut body, 1024).await;
    body
}

#[tokio::test]
async fn the_admin_port_counts_flv_viewers_and_distinct_hls_tokens() {
    let origin = paced_origin().await;
    let proxy = ProxyBuilder::new(origin.addr).start().await;
    let first = flv_viewer(&proxy, 42).await;
    let second = flv_viewer(&proxy, 42).await;
    // Three HLS viewers of room 43, one of them reloading its playlist.
    let tokens: Vec<String> = (0..3)
        .map(|i| token_expiring(43, unix_now() + 3600 + i))
        .collect();
    for token in tokens.iter().chain(tokens.first()) {
        client()
            .get(proxy.url(&format!("/live/43.m3u8?token={token}")))
            .send()
            .await
            .unwrap();
    }
    assert_eq!(
        counted(&proxy).await.trim(),
        r#"[{"room_id":42,"flv":2,"hls":0},{"room_id":43,"flv":0,"hls":3}]"#
    );
    drop((first, second));
    wait_until("the FLV viewers to be uncounted", || {
        let proxy = &proxy;
        async move {
            let now = counted(proxy).await;
            (!now.contains(r#"{"room_id":42"#)).then_some(())
        }
    })
    .await;
}

#[tokio::test]
async fn counts_are_published_to_the_bus_every_interval() {
    let Some(redis) = livegate_core::testing::redis_url() else {
        return;
    };
    let prefix = format!("lgtest-viewers-{}-{}", std::process::id(), unix_now());
    let bus = Bus::connect(&BusConfig {
        url: Secret::new(redis.as_str()),
        key_prefix: prefix.clone(),
        ..BusConfig::default()
    })
    .unwrap();
    let mut reports = bus.edge_viewers().subscribe().await.unwrap();
    let origin = paced_origin().await;
    let proxy = ProxyBuilder::new(origin.addr)
        .with(&format!(
            "[bus]\nurl = \"{redis}\"\nkey_prefix = \"{prefix}\"\n[viewers]\nreport_interval_ms = 200"
        ))
        .start()
        .await;
    let viewer = flv_viewer(&proxy, 42).await;
    let watched = RoomViewers {
        room_id: 42,
        flv: 1,
        hls: 0,
    };
    let report = loop {
        match tokio::time::timeout(livegate_tests::patience(), reports.recv()).await {
            Ok(Some(Received::Message(report))) if report.rooms.contains(&watched) => break report,
            Ok(Some(_)) => {}
            other => panic!("no report with the viewer: {other:?}"),
        }
    };
    assert!(
        report.edge.starts_with(&proxy.addr.to_string()),
        "{}",
        report.edge
    );
    assert_eq!(report.valid_ms, 600);
    drop(viewer);
    loop {
        match tokio::time::timeout(livegate_tests::patience(), reports.recv()).await {
            Ok(Some(Received::Message(report))) if report.rooms.is_empty() => break,
            Ok(Some(_)) => {}
            other => panic!("the viewer was never uncounted: {other:?}"),
        }
    }
}
