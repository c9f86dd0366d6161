//! WebRTC signalling (WHEP): offers admitted only with a token for their room, capped, and
//! relayed to the origin's API port without the token.

use livegate_core::unix_now;
use livegate_tests::scripted::{Script, ScriptedOrigin};

use crate::support::{client, token, token_expiring, ProxyBuilder, TestProxy};

const OFFER: &str = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=offer\r\n";
const ANSWER: &str = "v=0\r\no=- 3 4 IN IP4 127.0.0.1\r\ns=answer\r\n";

async fn signalling() -> (ScriptedOrigin, TestProxy) {
    let api = ScriptedOrigin::start(Script::Send(
        format!(
            "HTTP/1.1 201 Created\r\nContent-Type: application/sdp\r\nLocation: /rtc/v1/whep/?action=delete&app=live&stream=42&session=s1\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{ANSWER}",
            ANSWER.len()
        )
        .into_bytes(),
    ))
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
