//! A chat client over tokio-tungstenite, speaking `/ws` the way a page does.

use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::support::TestApp;

pub(crate) type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A refusal at the upgrade: status and JSON body.
#[derive(Debug)]
pub(crate) struct Refused {
    pub(crate) status: u16,
    pub(crate) body: Value,
}

/// Opens `/ws?{query}` on `app`, with `origin` when given.
pub(crate) async fn open(app: &TestApp, query: &str, origin: Option<&str>) -> Result<Ws, Refused> {
    let url = format!("{}/ws?{query}", app.base.replacen("http://", "ws://", 1));
    let mut request = url.into_client_request().unwrap();
    if let Some(origin) = origin {
        request
            .headers_mut()
            .insert("origin", HeaderValue::from_str(origin).unwrap());
    }
    match tokio_tungstenite::connect_async(request).await {
        Ok((ws, _)) => Ok(ws),
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            let status = response.status().as_u16();
            let body = response
                .body()
                .as_ref()
                .map(|body| serde_json::from_slice(body).unwrap())
                .unwrap_or(Value::Null);
            Err(Refused { status, body })
        }
        Err(err) => panic!("cannot open chat: {err}"),
    }
}

/// Opens chat for `room` with `token`, and reads the welcome frame.
pub(crate) async fn join(
    app: &TestApp,
    room: i64,
    token: &str,
    since: Option<&str>,
) -> (Ws, Value) {
    let mut query = format!("room={room}&token={}", encode(token));
    if let Some(since) = since {
        query.push_str(&format!("&since={}", encode(since)));
    }
    let mut ws = open(app, &query, None).await.unwrap();
    let welcome = next(&mut ws).await;
    assert_eq!(welcome["type"], "welcome", "{welcome}");
    (ws, welcome)
}

fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The next JSON frame (pings are answered by the library and skipped).
pub(crate) async fn next(ws: &mut Ws) -> Value {
    let patience = livegate_tests::patience();
    loop {
        let frame = tokio::time::timeout(patience, ws.next())
            .await
            .expect("a frame arrives")
            .expect("the connection is open")
            .unwrap();
        match frame {
            Message::Text(text) => return serde_json::from_str(&text).unwrap(),
            Message::Close(close) => panic!("closed: {close:?}"),
            _ => {}
        }
    }
}

/// The next frame of `kind`, skipping others (acks, frames of other kinds).
pub(crate) async fn next_of(ws: &mut Ws, kind: &str) -> Value {
    loop {
        let frame = next(ws).await;
        if frame["type"] == kind {
            return frame;
        }
    }
}

/// Sends a chat message.
pub(crate) async fn say(ws: &mut Ws, text: &str) {
    let frame = serde_json::json!({"type": "chat", "text": text, "ref": text});
    ws.send(Message::text(frame.to_string())).await.unwrap();
}

/// Sends any frame.
pub(crate) async fn send(ws: &mut Ws, frame: Value) {
    ws.send(Message::text(frame.to_string())).await.unwrap();
}

/// Reads until the server closes; its close code (`None` when the connection just ended).
pub(crate) async fn close_code(ws: &mut Ws) -> Option<u16> {
    let patience = livegate_tests::patience();
    loop {
        let frame = tokio::time::timeout(patience, ws.next())
            .await
            .expect("the server closes the connection");
        match frame {
            Some(Ok(Message::Close(close))) => return close.map(|close| u16::from(close.code)),
            Some(Ok(_)) => {}
            Some(Err(_)) | None => return None,
        }
    }
}

/// The `text` of a frame ("" when it has none).
pub(crate) fn text_of(frame: &Value) -> &str {
    frame["text"].as_str().unwrap_or_default()
}

/// `OFFSET:EPOCH` of a frame or position.
pub(crate) fn since(position: &Value) -> String {
    format!(
        "{}:{}",
        position["offset"].as_u64().unwrap(),
        position["epoch"].as_str().unwrap()
    )
}

/// A play token for `room`.
pub(crate) async fn play_token(app: &TestApp, room: i64) -> String {
    let reply = app
        .get(&format!("/api/v1/rooms/{room}/play-token"), None)
        .await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    reply.body["token"].as_str().unwrap().to_owned()
}
