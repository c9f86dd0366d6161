//! One chat connection after the upgrade: a writer draining the outbox (with pings, the idle
//! check and the token's expiry) and a reader handling the client's frames, in one task.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message as WsMessage, Utf8Bytes, WebSocket};
use futures_util::{SinkExt as _, StreamExt as _};
use livegate_core::db::Room;

use super::access::Access;
use super::close::Close;
use super::config::MAX_FRAME_BYTES;
use super::frame::{Incoming, Outgoing};
use super::metrics::CloseLabels;
use super::rooms::Membership;
use super::send;
use crate::state::AppState;

/// Everything a connection needs, settled at the upgrade.
#[derive(Debug)]
pub struct Connection {
    /// The shared state.
    pub state: AppState,
    /// The room.
    pub room: Room,
    /// What the client may do.
    pub access: Access,
    /// Its place in the room.
    pub membership: Membership,
    /// The first frame.
    pub welcome: Outgoing,
    /// Missed messages, sent after the welcome.
    pub replay: Vec<Outgoing>,
    /// The newest offset the client has (after the replay).
    pub last_offset: u64,
}

/// How long a closing connection waits for the client's close frame.
const CLOSE_WAIT: Duration = Duration::from_secs(2);

fn now_ms() -> i64 {
    livegate_core::db::now_ms()
}

impl Connection {
    /// Whether the user may moderate the room now: the owner and admins always, moderators
    /// while they hold the role.
    pub fn moderates(&self) -> bool {
        self.access.manages || self.membership.member().is_moderator()
    }

    /// Serves the connection until either side ends it.
    pub async fn run(mut self, socket: WebSocket) {
        let (mut sink, mut stream) = socket.split();
        let outbox = self.membership.member().outbox.clone();
        let last_heard = AtomicI64::new(now_ms());
        let config = &self.state.config().chat;
        let send_timeout = Duration::from_millis(config.send_timeout_ms);
        let stop = self.state.chat().stop_token();
        let metrics = self.state.chat().metrics().clone();
        metrics.connections.inc();
        // Owned by the writer, so that the replay's memory goes once it is sent.
        let first: Vec<Outgoing> = std::iter::once(self.welcome.clone())
            .chain(std::mem::take(&mut self.replay))
            .collect();

        let reader = async {
            let mut strikes = 0u32;
            while let Some(frame) = stream.next().await {
                last_heard.store(now_ms(), Ordering::Relaxed);
                match frame {
                    Ok(WsMessage::Text(text)) if text.len() > MAX_FRAME_BYTES => {
                        outbox.close(Close::TooBig);
                        return;
                    }
                    Ok(WsMessage::Text(text)) => {
                        let answer = match serde_json::from_str::<Incoming>(&text) {
                            Ok(incoming) => send::handle(&self, incoming).await,
                            Err(_) => {
                                outbox.close(Close::Unsupported);
                                return;
                            }
                        };
                        match answer {
                            send::Answer::Done(frame) => {
                                strikes = 0;
                                outbox.push(frame);
                            }
                            send::Answer::Refused(frame) => {
                                strikes += 1;
                                outbox.push(frame);
                                if strikes >= config.abuse_strikes {
                                    outbox.close(Close::Abuse);
                                    return;
                                }
                            }
                        }
                    }
                    Ok(WsMessage::Binary(_)) => {
                        outbox.close(Close::Unsupported);
                        return;
                    }
                    Ok(WsMessage::Close(_)) => return,
                    Err(error) => {
                        if let Some(close) = Close::for_refused_frame(error) {
                            outbox.close(close);
                        }
                        return;
                    }
                    Ok(WsMessage::Ping(_) | WsMessage::Pong(_)) => {}
                }
            }
        };

        let writer = async {
            let mut last_offset = self.last_offset;
            if !write(&mut sink, first, send_timeout).await {
                return None;
            }
            let mut ping = tokio::time::interval(Duration::from_millis(config.ping_interval_ms));
            ping.tick().await;
            let expiry = expiry_in(self.access.expires_at);
            let expired = tokio::time::sleep(expiry);
            let mut expired = std::pin::pin!(expired);
            // Waited on once, not again for every frame: all connections share the token.
            let mut stopped = std::pin::pin!(stop.cancelled());
            loop {
                tokio::select! {
                    frames = outbox.next() => match frames {
                        Ok(frames) => {
                            // What the replay sent already is skipped.
                            let fresh = frames.into_iter().filter(|frame| match frame.offset {
                                Some(offset) if offset <= last_offset => false,
                                Some(offset) => {
                                    last_offset = offset;
                                    true
                                }
                                None => true,
                            });
                            if !write(&mut sink, fresh, send_timeout).await {
                                return Some(Close::TooSlow);
                            }
                        }
                        Err(close) => return Some(close),
                    },
                    _ = ping.tick() => {
                        let silent = now_ms() - last_heard.load(Ordering::Relaxed);
                        if silent > i64::try_from(config.idle_timeout_ms).unwrap_or(i64::MAX) {
                            return Some(Close::Idle);
                        }
                        let ping = sink.send(WsMessage::Ping(Default::default()));
                        if !matches!(tokio::time::timeout(send_timeout, ping).await, Ok(Ok(()))) {
                            return Some(Close::TooSlow);
                        }
                    }
                    () = &mut expired => return Some(Close::TokenExpired),
                    () = &mut stopped => return Some(Close::GoingAway),
                }
            }
        };

        let close = tokio::select! {
            close = writer => close,
            () = reader => outbox.closing(),
        };
        let reason = close.map_or("client", Close::reason);
        metrics.closed.get_or_create(&CloseLabels { reason }).inc();
        metrics.connections.dec();
        if let Some(close) = close {
            tracing::debug!(
                room.id = self.room.id,
                close = close.reason(),
                "closing chat connection"
            );
            let frame = WsMessage::Close(Some(CloseFrame {
                code: close.code(),
                reason: Utf8Bytes::from_static(close.reason()),
            }));
            let _ = tokio::time::timeout(send_timeout, sink.send(frame)).await;
            // Wait for the client's close (what it still sends is dropped): closing the TCP
            // connection at once could reset it before the client has read the close code.
            let answered = async {
                while let Some(Ok(frame)) = stream.next().await {
                    if matches!(frame, WsMessage::Close(_)) {
                        break;
                    }
                }
            };
            let _ = tokio::time::timeout(CLOSE_WAIT.min(send_timeout), answered).await;
        }
        let _ = tokio::time::timeout(send_timeout, sink.close()).await;
    }
}

/// Time left until unix second `expires_at` has passed.
fn expiry_in(expires_at: u64) -> Duration {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    Duration::from_secs(expires_at.saturating_add(1)).saturating_sub(now)
}

/// Writes `frames` and flushes them once (the socket's write buffer gathers a burst into
/// few writes); `false` when the client is gone or took longer than `timeout`.
async fn write<S>(
    sink: &mut S,
    frames: impl IntoIterator<Item = Outgoing>,
    timeout: Duration,
) -> bool
where
    S: futures_util::Sink<WsMessage> + Unpin,
{
    let written = async {
        for frame in frames {
            sink.feed(WsMessage::Text(frame.text)).await?;
        }
        sink.flush().await
    };
    matches!(tokio::time::timeout(timeout, written).await, Ok(Ok(())))
}
