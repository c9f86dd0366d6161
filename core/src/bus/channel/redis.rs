//! The hub: the one Redis subscriber connection of a bus, and the task that keeps it.
//!
//! The connection speaks RESP3, so that it can be named (`CLIENT SETNAME`, so an operator
//! sees it in `CLIENT LIST`) and pinged while subscribed. Messages arrive as pushes and go
//! straight from the connection's reader into the [`Fanout`]; the task only connects,
//! (re)subscribes, unsubscribes channels nobody listens to any more, and notices a lost
//! connection (a disconnection push, or a failed health ping) to start over.
//!
//! The task is started by the first subscription and owned by the hub: it is aborted when the
//! last handle of the bus is dropped.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, ProtocolVersion, PushInfo, PushKind};
use tokio::sync::{broadcast, mpsc, oneshot, watch, Notify};
use tokio_util::task::AbortOnDropHandle;

use super::{Fanout, Frame};
use crate::bus::BusError;

/// Pending subscribe/unsubscribe requests for the hub task; a full queue makes `subscribe`
/// wait and `release` leave the unsubscription to the next message of that channel.
const COMMANDS_CAPACITY: usize = 1024;
/// How often an idle subscriber connection is pinged to find out it is dead.
const HEALTH_INTERVAL: Duration = Duration::from_secs(5);
/// First and longest pause between reconnection attempts.
const RECONNECT_MIN: Duration = Duration::from_millis(50);
const RECONNECT_MAX: Duration = Duration::from_secs(2);

#[derive(Debug)]
enum Command {
    /// Subscribe if not yet subscribed, then answer.
    Subscribe(String, oneshot::Sender<()>),
    /// Unsubscribe if nobody listens any more.
    Release(String),
}

/// The subscriber side of a Redis bus. See the module documentation.
pub(crate) struct Hub {
    shared: Arc<Shared>,
    commands: mpsc::Sender<Command>,
    /// Taken by the task when it starts.
    pending: Mutex<Option<mpsc::Receiver<Command>>>,
    task: OnceLock<AbortOnDropHandle<()>>,
}

struct Shared {
    fanout: Fanout,
    client: redis::Client,
    client_name: String,
    timeout: Duration,
    /// The channels the current connection is subscribed to.
    active: watch::Sender<HashSet<String>>,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The client's connection info may hold a password.
        f.debug_struct("Hub")
            .field("client_name", &self.shared.client_name)
            .finish_non_exhaustive()
    }
}

impl Hub {
    /// A hub for `client`'s server; the connection is named `client_name`.
    pub(crate) fn new(
        client: &redis::Client,
        client_name: String,
        capacity: usize,
        timeout: Duration,
    ) -> Result<Self, BusError> {
        let info = client.get_connection_info().clone();
        let settings = info
            .redis_settings()
            .clone()
            .set_protocol(ProtocolVersion::RESP3);
        let client = redis::Client::open(info.set_redis_settings(settings))?;
        let (commands, pending) = mpsc::channel(COMMANDS_CAPACITY);
        Ok(Self {
            shared: Arc::new(Shared {
                fanout: Fanout::new(capacity),
                client,
                client_name,
                timeout,
                active: watch::Sender::new(HashSet::new()),
            }),
            commands,
            pending: Mutex::new(Some(pending)),
            task: OnceLock::new(),
        })
    }

    fn start(&self) {
        self.task.get_or_init(|| {
            let receiver = self
                .pending
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .take();
            let shared = self.shared.clone();
            AbortOnDropHandle::new(tokio::spawn(async move {
                if let Some(receiver) = receiver {
                    run(shared, receiver).await;
                }
            }))
        });
    }

    /// A local receiver for `topic`, once the connection is subscribed to it.
    pub(crate) async fn subscribe(
        &self,
        topic: &str,
    ) -> Result<broadcast::Receiver<Frame>, BusError> {
        self.start();
        let (receiver, first) = self.shared.fanout.subscribe(topic);
        // A first local subscriber always asks: the hub may be about to unsubscribe the
        // channel for the subscriber that went before.
        if first || !self.shared.active.borrow().contains(topic) {
            let (done, subscribed) = oneshot::channel();
            let asked = async {
                self.commands
                    .send(Command::Subscribe(topic.to_owned(), done))
                    .await
                    .map_err(|_| BusError::Closed)?;
                subscribed.await.map_err(|_| BusError::Closed)
            };
            let outcome = match tokio::time::timeout(self.shared.timeout, asked).await {
                Ok(outcome) => outcome,
                Err(_) => Err(BusError::Timeout),
            };
            if let Err(err) = outcome {
                drop(receiver);
                self.release(topic);
                return Err(err);
            }
        }
        Ok(receiver)
    }

    /// Called when a local subscriber of `topic` goes away.
    pub(crate) fn release(&self, topic: &str) {
        let _ = self.commands.try_send(Command::Release(topic.to_owned()));
    }
}

/// Keeps a subscriber connection until the hub is dropped.
async fn run(shared: Arc<Shared>, mut commands: mpsc::Receiver<Command>) {
    let mut pause = RECONNECT_MIN;
    let mut connected_before = false;
    loop {
        let (mut conn, disconnected) = match connect(&shared).await {
            Ok(connected) => connected,
            Err(err) => {
                tracing::warn!(error = %err, retry_in_ms = pause.as_millis() as u64, "bus subscriber cannot connect to redis");
                // Requests wait meanwhile; nobody needs them answered before a connection.
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(RECONNECT_MAX);
                continue;
            }
        };
        pause = RECONNECT_MIN;
        let lost = serve(
            &shared,
            &mut conn,
            &disconnected,
            &mut commands,
            connected_before,
        )
        .await;
        connected_before = true;
        shared.active.send_replace(HashSet::new());
        match lost {
            Some(reason) => {
                tracing::warn!(reason = %reason, "bus subscriber lost its redis connection, reconnecting");
            }
            // Every hub handle is gone.
            None => return,
        }
    }
}

/// A named RESP3 connection whose pushes feed the fan-out, and what it notifies when it
/// closes.
async fn connect(shared: &Arc<Shared>) -> Result<(MultiplexedConnection, Arc<Notify>), BusError> {
    let reader = Arc::downgrade(shared);
    let disconnected = Arc::new(Notify::new());
    let closed = disconnected.clone();
    let pushes = move |push: PushInfo| {
        match push.kind {
            PushKind::Disconnection => closed.notify_one(),
            _ => {
                if let Some(shared) = reader.upgrade() {
                    on_push(&shared, push);
                }
            }
        }
        Ok::<(), std::convert::Infallible>(())
    };
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(shared.timeout))
        .set_response_timeout(Some(shared.timeout))
        .set_push_sender(pushes);
    let mut conn = shared
        .client
        .get_multiplexed_async_connection_with_config(&config)
        .await?;
    redis::cmd("CLIENT")
        .arg("SETNAME")
        .arg(&shared.client_name)
        .query_async::<()>(&mut conn)
        .await?;
    Ok((conn, disconnected))
}

fn on_push(shared: &Shared, push: PushInfo) {
    if push.kind != PushKind::Message {
        return;
    }
    let mut data = push.data.into_iter();
    let (Some(channel), Some(payload)) = (data.next(), data.next()) else {
        return;
    };
    let (Ok(channel), Ok(payload)) = (
        redis::from_redis_value::<String>(channel),
        redis::from_redis_value::<String>(payload),
    ) else {
        return;
    };
    shared.fanout.deliver(&channel, Arc::from(payload));
}

/// Subscribes to every channel with local subscribers, then follows requests until the
/// connection is lost (`Some(reason)`) or the hub is gone (`None`).
async fn serve(
    shared: &Shared,
    conn: &mut MultiplexedConnection,
    disconnected: &Notify,
    commands: &mut mpsc::Receiver<Command>,
    reconnected: bool,
) -> Option<String> {
    let mut active = HashSet::new();
    for topic in shared.fanout.names() {
        if let Err(err) = conn.subscribe(&topic).await {
            return Some(err.to_string());
        }
        active.insert(topic);
    }
    shared.active.send_replace(active.clone());
    if reconnected {
        shared.fanout.reconnected();
    }
    let mut health = tokio::time::interval(HEALTH_INTERVAL);
    health.reset();
    loop {
        tokio::select! {
            command = commands.recv() => match command? {
                Command::Subscribe(topic, done) => {
                    if !active.contains(&topic) {
                        if let Err(err) = conn.subscribe(&topic).await {
                            return Some(err.to_string());
                        }
                        active.insert(topic);
                        shared.active.send_replace(active.clone());
                    }
                    let _ = done.send(());
                }
                Command::Release(topic) => {
                    if shared.fanout.release(&topic) && active.remove(&topic) {
                        shared.active.send_replace(active.clone());
                        if let Err(err) = conn.unsubscribe(&topic).await {
                            return Some(err.to_string());
                        }
                    }
                }
            },
            () = disconnected.notified() => return Some("connection closed".to_owned()),
            _ = health.tick() => {
                if let Err(err) = redis::cmd("PING").query_async::<()>(conn).await {
                    return Some(err.to_string());
                }
            }
        }
    }
}
