//! WebRTC signalling (WHEP): offers admitted only with a token for their room, capped, and
//! relayed to the origin's API port without the token.

use livegate_core::unix_now;
use livegate_tests::scripted::{Script, ScriptedOrigin};
use livegate_tests::wait_until;

use crate::support::{client, token, token_expiring, ProxyBuilder, TestProxy};

const OFFER: &str = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=offer\r\n";
const ANSWER: &str = "v=0\r\no=- 3 4 IN IP4 127.0.0.1\r\ns=answer\r\n";

/// An answer to a WHEP offer, naming its session at `location`.
fn whep_answer(location: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 201 Created\r\nConnection: Close\r\nContent-Type: application/sdp\r\nLocation: {location}\r\nContent-Length: {}\r\n\r\n{ANSWER}",
        ANSWER.len()
    )
    .into_bytes()
}

async fn signalling() -> (ScriptedOrigin, TestProxy) {
    let api = ScriptedOrigin::start(Script::Send(whep_answer(
        "/rtc/v1/whep/?action=delete&app=live&stream=42&session=s1",
    )))
    .await;
    let proxy = ProxyBuilder::new(api.addr)
        .with(&format!(
            "[webrtc]\napi_port = {}\nmax_offer_bytes = 4096",
            api.addr.port()
        ))
        .start()
        .await;
    (api, proxy)
}

async fn offer(
    proxy: &TestProxy,
    query: &str,
    bearer: Option<&str>,
    body: String,
) -> reqwest::Response {
    let mut request = client()
        .post(proxy.url(&format!("/rtc/v1/whep/?{query}")))
        .header("content-type", "application/sdp")
        .body(body);
    if let Some(bearer) = bearer {
        request = request.bearer_auth(bearer);
    }
    request.send().await.unwrap()
}

/// A WHEP offer for `room`'s stream with `token` in the query.
async fn offer_with_token(proxy: &TestProxy, room: u64, token: &str) -> reqwest::Response {
    offer(
        proxy,
        &format!("app=live&stream={room}&token={token}"),
        None,
        OFFER.into(),
    )
    .await
}

#[tokio::test]
async fn an_offer_with_a_token_reaches_the_origin_without_it() {
    let (api, proxy) = signalling().await;
    let t = token(42);
    let answer = offer(
        &proxy,
        &format!("app=live&stream=42&token={t}"),
        None,
        OFFER.into(),
    )
    .await;
    assert_eq!(answer.status(), 201);
    assert_eq!(answer.headers()["content-type"], "application/sdp");
    assert_eq!(
        answer.headers()["location"],
        "/rtc/v1/whep/?action=delete&app=live&stream=42&session=s1"
    );
    assert_eq!(answer.text().await.unwrap(), ANSWER);
    let sent = &api.heads()[0];
    assert!(
        sent.starts_with("POST /rtc/v1/whep/?app=live&stream=42 HTTP/1.1"),
        "{sent}"
    );
    assert!(
        sent.ends_with(OFFER),
        "the offer is passed on whole: {sent}"
    );
    assert!(!sent.contains(&t), "{sent}");

    // WHEP players send the token as a bearer token.
    let answer = offer(&proxy, "app=live&stream=42", Some(&token(42)), OFFER.into()).await;
    assert_eq!(answer.status(), 201);
    assert!(!api.heads()[1]
        .to_ascii_lowercase()
        .contains("authorization"));

    // The session's teardown goes back through the edge to the origin.
    let teardown = client()
        .delete(proxy.url("/rtc/v1/whep/?action=delete&app=live&stream=42&session=s1"))
        .send()
        .await
        .unwrap();
    assert_eq!(teardown.status(), 201);
    assert!(api.heads()[2].starts_with("DELETE /rtc/v1/whep/?action=delete"));
}

#[tokio::test]
async fn offers_without_a_valid_token_for_their_room_never_reach_the_origin() {
    let (api, proxy) = signalling().await;
    let cases = [
        ("app=live&stream=42".to_owned(), 403),
        (format!("app=live&stream=43&token={}", token(42)), 403),
        (
            format!(
                "app=live&stream=42&token={}",
                token_expiring(42, unix_now() - 60)
            ),
            403,
        ),
        (
            format!("app=live&stream=livestream&token={}", token(42)),
            400,
        ),
    ];
    for (query, status) in &cases {
        assert_eq!(
            offer(&proxy, query, None, OFFER.into()).await.status(),
            *status,
            "{query}"
        );
    }
    let huge = offer(
        &proxy,
        &format!("app=live&stream=42&token={}", token(42)),
        None,
        "a".repeat(8192),
    )
    .await;
    assert_eq!(huge.status(), 413);
    let get = client()
        .get(proxy.url(&format!(
            "/rtc/v1/whep/?app=live&stream=42&token={}",
            token(42)
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(get.status(), 405);
    assert_eq!(get.headers()["allow"], "POST, DELETE, PATCH, OPTIONS");

    // A revoked room gets no new sessions either.
    let revoke = format!("http://{}/revocations?room=42", proxy.admin);
    assert_eq!(client().post(revoke).send().await.unwrap().status(), 200);
    let revoked = offer(
        &proxy,
        &format!("app=live&stream=42&token={}", token(42)),
        None,
        OFFER.into(),
    )
    .await;
    assert_eq!(revoked.status(), 403);
    assert_eq!(api.requests(), 0);
}

/// An origin answering offers as SRS 6 does: WHEP sessions named on `/rtc/v1/whip/`, with
/// SRS's own session token in the query.
async fn srs_whep(forward_token: bool) -> (ScriptedOrigin, TestProxy) {
    let api = ScriptedOrigin::start(Script::Send(whep_answer(
        "/rtc/v1/whip/?action=delete&token=srs7session&app=live&stream=42&session=u1:p1",
    )))
    .await;
    let proxy = ProxyBuilder::new(api.addr)
        .forward_token(forward_token)
        .with(&format!(
            "[webrtc]\napi_port = {}\n[cors]\nallowed_origins = [\"https://player.example\"]",
            api.addr.port()
        ))
        .start()
        .await;
    (api, proxy)
}

#[tokio::test]
async fn a_whep_session_is_torn_down_through_the_edge_with_the_origin_session_token() {
    let (api, proxy) = srs_whep(false).await;
    let answer = offer(
        &proxy,
        &format!("app=live&stream=42&token={}", token(42)),
        None,
        OFFER.into(),
    )
    .await;
    assert_eq!(answer.status(), 201);
    // On the path the offer came in on: the edge serves no `/rtc/v1/whip/` (publishing).
    let location = answer.headers()["location"].to_str().unwrap().to_owned();
    assert_eq!(
        location,
        "/rtc/v1/whep/?action=delete&token=srs7session&app=live&stream=42&session=u1:p1"
    );

    // A page on another origin asks first.
    let preflight = client()
        .request(reqwest::Method::OPTIONS, proxy.url(&location))
        .header("Origin", "https://player.example")
        .header("Access-Control-Request-Method", "DELETE")
        .send()
        .await
        .unwrap();
    assert_eq!(preflight.status(), 204);
    let methods = preflight.headers()["access-control-allow-methods"]
        .to_str()
        .unwrap();
    assert!(methods.contains("DELETE"), "{methods}");

    let teardown = client()
        .delete(proxy.url(&location))
        .header("Origin", "https://player.example")
        .send()
        .await
        .unwrap();
    assert_eq!(teardown.status(), 201);
    // `token` here is SRS's session token, not a play token: SRS refuses the DELETE without it.
    let sent = &api.heads()[1];
    assert!(
        sent.starts_with(
            "DELETE /rtc/v1/whep/?action=delete&token=srs7session&app=live&stream=42&session=u1:p1 HTTP/1.1"
        ),
        "{sent}"
    );
    // Torn down by the viewer: no longer the edge's to end.
    wait_for_metric(&proxy, "livegate_proxy_webrtc_sessions_tracked 0").await;
}

/// SRS 6's answer to a WHEP offer for `stream`, naming its session `session`.
fn srs_whep_answer(stream: u64, session: &str) -> Vec<u8> {
    whep_answer(&format!(
        "/rtc/v1/whip/?action=delete&token=srs-{session}&app=live&stream={stream}&session={session}"
    ))
}

/// SRS's answer to a session's `DELETE`.
const SRS_TEARDOWN_OK: &[u8] = b"HTTP/1.1 200 OK\r\nConnection: Close\r\nContent-Length: 0\r\n\r\n";

async fn wait_for_metric(proxy: &TestProxy, line: &str) {
    wait_until(line, || async move {
        proxy.metrics().await.contains(line).then_some(())
    })
    .await;
}

/// The `DELETE`s the origin received, by the session they named.
fn teardowns(api: &ScriptedOrigin) -> Vec<String> {
    api.heads()
        .iter()
        .filter(|head| head.starts_with("DELETE "))
        .filter_map(|head| {
            let target = head.split(' ').nth(1)?;
            target
                .split('&')
                .find_map(|param| param.strip_prefix("session="))
                .map(str::to_owned)
        })
        .collect()
}

#[tokio::test]
async fn a_revocation_ends_the_rooms_whep_sessions_at_the_origin() {
    let api = ScriptedOrigin::start(Script::SendInTurn(vec![
        srs_whep_answer(42, "a"),
        srs_whep_answer(42, "b"),
        srs_whep_answer(43, "c"),
        SRS_TEARDOWN_OK.to_vec(),
    ]))
    .await;
    let proxy = ProxyBuilder::new(api.addr)
        .with(&format!("[webrtc]\napi_port = {}", api.addr.port()))
        .start()
        .await;
    let now = unix_now();
    let by = now + 3600;
    for (room, expires_at) in [(42, now + 600), (42, by + 3600), (43, now + 600)] {
        let answer = offer_with_token(&proxy, room, &token_expiring(room, expires_at)).await;
        assert_eq!(answer.status(), 201);
    }
    wait_for_metric(&proxy, "livegate_proxy_webrtc_sessions_tracked 3").await;

    // Room 42's tokens expiring within the hour: session a, not b (a later token), not c.
    let revoke = proxy.revoke(42, by).await;
    assert_eq!(revoke.status(), 200);
    wait_until("the revoked session's teardown at the origin", || {
        let sent = teardowns(&api);
        async move { (!sent.is_empty()).then_some(()) }
    })
    .await;
    // The edge sends it as SRS wants it: on SRS's own address, with SRS's session token.
    let sent = api
        .heads()
        .into_iter()
        .find(|head| head.starts_with("DELETE "))
        .unwrap();
    assert!(
        sent.starts_with(
            "DELETE /rtc/v1/whip/?action=delete&token=srs-a&app=live&stream=42&session=a HTTP/1.1"
        ),
        "{sent}"
    );
    wait_for_metric(
        &proxy,
        "livegate_proxy_webrtc_sessions_ended_total{reason=\"revoked\"} 1",
    )
    .await;
    // Every due session is taken at once: the other two are still followed.
    assert!(proxy
        .metrics()
        .await
        .contains("livegate_proxy_webrtc_sessions_tracked 2"));
    assert_eq!(teardowns(&api), ["a"]);
}

#[tokio::test]
async fn a_whep_session_ends_with_its_token_when_configured() {
    let api = ScriptedOrigin::start(Script::SendInTurn(vec![
        srs_whep_answer(42, "short"),
        SRS_TEARDOWN_OK.to_vec(),
    ]))
    .await;
    let proxy = ProxyBuilder::new(api.addr)
        .with(&format!(
            "[webrtc]\napi_port = {}\nend_at_token_expiry = true",
            api.addr.port()
        ))
        .start()
        .await;
    let expires_at = unix_now() + 4;
    let answer = offer_with_token(&proxy, 42, &token_expiring(42, expires_at)).await;
    assert_eq!(answer.status(), 201);
    wait_for_metric(&proxy, "livegate_proxy_webrtc_sessions_tracked 1").await;
    if unix_now() < expires_at {
        // Still valid: nothing sent yet.
        assert!(teardowns(&api).is_empty());
    }
    wait_for_metric(
        &proxy,
        "livegate_proxy_webrtc_sessions_ended_total{reason=\"expired\"} 1",
    )
    .await;
    assert_eq!(teardowns(&api), ["short"]);
    assert!(unix_now() > expires_at);
}

#[tokio::test]
async fn a_bearer_token_reaches_srs_where_on_play_reads_it() {
    let (api, proxy) = srs_whep(true).await;
    let t = token(42);
    let answer = offer(&proxy, "app=live&stream=42", Some(&t), OFFER.into()).await;
    assert_eq!(answer.status(), 201);
    // SRS ignores `Authorization`; its on_play hook sees the WHEP query only.
    let sent = &api.heads()[0];
    assert!(
        sent.starts_with(&format!(
            "POST /rtc/v1/whep/?app=live&stream=42&token={t} HTTP/1.1"
        )),
        "{sent}"
    );
}

#[tokio::test]
async fn the_room_checked_is_the_one_srs_reads_from_the_query() {
    let (api, proxy) = srs_whep(false).await;
    // SRS takes the last `stream`, and splits at `;` as at `&`.
    for query in [
        format!("app=live&stream=42&token={}&stream=43", token(42)),
        format!("app=live&token={}&stream=42;stream=43", token(42)),
    ] {
        let refused = offer(&proxy, &query, None, OFFER.into()).await;
        assert_eq!(refused.status(), 403, "{query}");
    }
    assert_eq!(api.requests(), 0);
}

const PLAY_ANSWER: &str =
    r#"{"code":0,"server":"vid-1","service":"s1","pid":"1","sdp":"v=0\r\n","sessionid":"u1:p1"}"#;

async fn srs_play_api() -> (ScriptedOrigin, TestProxy) {
    let api = ScriptedOrigin::start(Script::Send(
        format!(
            "HTTP/1.1 200 OK\r\nConnection: Close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{PLAY_ANSWER}",
            PLAY_ANSWER.len()
        )
        .into_bytes(),
    ))
    .await;
    let proxy = ProxyBuilder::new(api.addr)
        .with(&format!("[webrtc]\napi_port = {}", api.addr.port()))
        .start()
        .await;
    (api, proxy)
}

/// A request as SRS's `srs.sdk.js` sends it for `webrtc://EDGE/live/{room}?token=…`.
async fn play_request(proxy: &TestProxy, query: &str, stream_url: &str) -> reqwest::Response {
    let body = serde_json::json!({
        "api": proxy.url(&format!("/rtc/v1/play/?{query}")),
        "tid": "1a2b3c4",
        "streamurl": stream_url,
        "clientip": null,
        "sdp": OFFER,
    });
    client()
        .post(proxy.url(&format!("/rtc/v1/play/?{query}")))
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn the_play_api_is_gated_by_the_room_its_streamurl_names() {
    let (api, proxy) = srs_play_api().await;
    let t = token(42);
    let answer = play_request(
        &proxy,
        &format!("token={t}"),
        &format!("webrtc://edge.example/live/42?token={t}"),
    )
    .await;
    assert_eq!(answer.status(), 200);
    assert_eq!(answer.headers()["content-type"], "application/json");
    assert_eq!(answer.text().await.unwrap(), PLAY_ANSWER);
    let sent = &api.heads()[0];
    assert!(sent.starts_with("POST /rtc/v1/play/ HTTP/1.1"), "{sent}");
    assert!(!sent.contains(&t), "the token goes nowhere: {sent}");
    let body: serde_json::Value =
        serde_json::from_str(&sent[sent.find("\r\n\r\n").unwrap() + 4..]).unwrap();
    assert_eq!(body["streamurl"], "webrtc://edge.example/live/42");
    assert_eq!(body["sdp"], OFFER);
    assert_eq!(body["tid"], "1a2b3c4");

    // A query naming room 42 does not open room 43's stream.
    let other = play_request(
        &proxy,
        &format!("app=live&stream=42&token={t}"),
        "webrtc://edge.example/live/43",
    )
    .await;
    assert_eq!(other.status(), 403);
    let nameless = play_request(&proxy, &format!("token={t}"), "webrtc://edge/live/room").await;
    assert_eq!(nameless.status(), 400);
    assert_eq!(api.requests(), 1);
}
