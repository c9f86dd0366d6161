//! Room revocations: a running FLV response ends and the next request is refused, whether the
//! entry comes from the admin port or from the bus.

use futures_util::StreamExt as _;
use livegate_core::bus::{Bus, BusConfig, Revocation};
use livegate_core::{unix_now, Secret};
use livegate_tests::wait_until;

use crate::flv::{paced_origin, read_at_least};
use crate::support::{client, streaming_client, token, token_expiring, ProxyBuilder, TestProxy};

/// Starts an FLV viewer of room 42 and returns its body once bytes flow.
async fn watching(
    proxy: &TestProxy,
    token: &str,
) -> impl futures_util::Stream<Item = reqwest::Result<bytes::Bytes>> + Unpin {
    let response = streaming_client()
        .get(proxy.url(&format!("/live/42.flv?token={token}")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let mut body = response.bytes_stream();
    read_at_least(&mut body, 4096).await;
    body
}

/// Reads `body` until it ends, failing if it is still running after the test's patience.
async fn ends(
    body: &mut (impl futures_util::Stream<Item = reqwest::Result<bytes::Bytes>> + Unpin),
) {
    tokio::time::timeout(livegate_tests::patience(), async {
        while let Some(Ok(_)) = body.next().await {}
    })
    .await
    .expect("the revoked FLV response kept running");
}

async fn status(proxy: &TestProxy, path: &str, token: &str) -> u16 {
    client()
        .get(proxy.url(&format!("{path}?token={token}")))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn an_admin_revocation_cuts_the_room_and_spares_later_tokens() {
    let origin = paced_origin().await;
    let proxy = ProxyBuilder::new(origin.addr).start().await;
    let old = token(42);
    let mut viewer = watching(&proxy, &old).await;
    let mut other_room = {
        let response = streaming_client()
            .get(proxy.url(&format!("/live/43.flv?token={}", token(43))))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        response.bytes_stream()
    };

    // Refuse every token of room 42 expiring within the next two hours.
    let by = unix_now() + 7200;
    let revoke = proxy.revoke(42, by).await;
    assert_eq!(revoke.status(), 200);
    assert!(revoke.text().await.unwrap().contains("\"applied\":true"));
    ends(&mut viewer).await;

    assert_eq!(status(&proxy, "/live/42.flv", &old).await, 403);
    assert_eq!(status(&proxy, "/live/42.m3u8", &old).await, 403);
    // A token issued afterwards (expiring later than the entry) plays; other rooms are untouched.
    let fresh = token_expiring(42, by + 3600);
    drop(watching(&proxy, &fresh).await);
    read_at_least(&mut other_room, 4096).await;

    let metrics = proxy.metrics().await;
    assert!(
        metrics.contains(r#"livegate_proxy_token_rejections_total{reason="revoked"} 2"#),
        "{metrics}"
    );
    assert!(
        metrics.contains("livegate_proxy_flv_viewers_revoked_total 1"),
        "{metrics}"
    );
    let listed = client()
        .get(format!("http://{}/revocations", proxy.admin))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(
        listed.trim(),
        format!(r#"[{{"room_id":42,"tokens_expiring_by":{by}}}]"#)
    );
    for bad in ["", "?room=x", "?room=42&tokens_expiring_by=soon"] {
        let refused = client()
            .post(format!("http://{}/revocations{bad}", proxy.admin))
            .send()
            .await
            .unwrap();
        assert_eq!(refused.status(), 400, "{bad}");
    }
}

#[tokio::test]
async fn revocations_on_the_bus_reach_running_and_starting_proxies() {
    let Some(redis) = livegate_core::testing::redis_url() else {
        return;
    };
    let prefix = format!("lgtest-revocation-{}-{}", std::process::id(), unix_now());
    let bus_config = BusConfig {
        url: Secret::new(redis.as_str()),
        key_prefix: prefix.clone(),
        ..BusConfig::default()
    };
    let bus = Bus::connect(&bus_config).unwrap();
    let section = format!("[bus]\nurl = \"{redis}\"\nkey_prefix = \"{prefix}\"");
    let origin = paced_origin().await;
    let proxy = ProxyBuilder::new(origin.addr).with(&section).start().await;
    let old = token(42);
    let mut viewer = watching(&proxy, &old).await;
    // The proxy subscribes in the background: publish until it has taken effect.
    let revocation = Revocation {
        room_id: 42,
        tokens_expiring_by: unix_now() + 7200,
    };
    let feed = bus.revocations();
    wait_until("the running proxy to apply the revocation", || {
        let (feed, proxy, old) = (feed.clone(), &proxy, old.clone());
        async move {
            feed.publish(&revocation).await.ok()?;
            (status(proxy, "/live/42.m3u8", &old).await == 403).then_some(())
        }
    })
    .await;
    ends(&mut viewer).await;

    // A proxy that starts later reads what is in force from the bus.
    let late = ProxyBuilder::new(origin.addr).with(&section).start().await;
    wait_until("the starting proxy to read the revocation", || {
        let (late, old) = (&late, old.clone());
        async move { (status(late, "/live/42.flv", &old).await == 403).then_some(()) }
    })
    .await;
    assert_eq!(status(&late, "/live/43.flv", &token(43)).await, 200);
}
