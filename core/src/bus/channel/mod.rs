//! `Channel<T>`: publish/subscribe, fanned out inside the process.
//!
//! On Redis, a process holds **one** subscriber connection per bus, whatever the number of
//! channels and local subscribers (the hub, in `channel/redis.rs`). Each message that arrives is
//! handed to every local subscriber of its channel through a bounded queue of
//! [`BusConfig::events_capacity`](crate::bus::BusConfig::events_capacity) messages; a
//! subscriber that falls further behind is told how many it missed
//! ([`Received::Lagged`]) rather than slowing the others. When the connection to Redis is
//! lost the hub reconnects and subscribes again, and every subscriber is told
//! ([`Received::Reconnected`]): what was published meanwhile is gone, so a reader that must
//! not miss anything recovers from a [`Log`](crate::bus::Log).
//!
//! In process, the same fan-out without Redis. Messages are JSON on both backends.

pub(crate) mod redis;

use std::collections::HashMap;
use std::marker::PhantomData;
use std::sync::{Arc, Mutex, MutexGuard};

use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::broadcast;

use super::BusError;

/// What a subscriber receives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Received<T> {
    /// A message.
    Message(T),
    /// This subscriber fell behind and missed this many messages (the others did not wait).
    Lagged(u64),
    /// The connection to the bus was lost and is back: messages published meanwhile were
    /// missed.
    Reconnected,
}

/// What the fan-out carries.
#[derive(Debug, Clone)]
pub(crate) enum Frame {
    Message(Arc<str>),
    Reconnected,
}

/// The local side of every channel of a bus: one bounded broadcast queue per channel with
/// subscribers.
#[derive(Debug)]
pub(crate) struct Fanout {
    capacity: usize,
    // A std mutex: held to look up or insert a sender, never across an await.
    topics: Mutex<HashMap<String, broadcast::Sender<Frame>>>,
}

impl Fanout {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            topics: Mutex::new(HashMap::new()),
        }
    }

    fn topics(&self) -> MutexGuard<'_, HashMap<String, broadcast::Sender<Frame>>> {
        self.topics
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A receiver for `topic`, and whether it is the topic's first.
    pub(crate) fn subscribe(&self, topic: &str) -> (broadcast::Receiver<Frame>, bool) {
        let mut topics = self.topics();
        match topics.get(topic) {
            Some(sender) => (sender.subscribe(), false),
            None => {
                let (sender, receiver) = broadcast::channel(self.capacity);
                topics.insert(topic.to_owned(), sender);
                (receiver, true)
            }
        }
    }

    /// Hands a message to the local subscribers of `topic`; `false` when it has none.
    pub(crate) fn deliver(&self, topic: &str, payload: Arc<str>) -> bool {
        self.topics()
            .get(topic)
            .is_some_and(|sender| sender.send(Frame::Message(payload)).is_ok())
    }

    /// Tells every subscriber that messages may have been missed.
    pub(crate) fn reconnected(&self) {
        for sender in self.topics().values() {
            let _ = sender.send(Frame::Reconnected);
        }
    }

    /// Forgets `topic` if nobody subscribes to it any more; `true` if it was forgotten.
    pub(crate) fn release(&self, topic: &str) -> bool {
        let mut topics = self.topics();
        let unused = topics
            .get(topic)
            .is_some_and(|sender| sender.receiver_count() == 0);
        if unused {
            topics.remove(topic);
        }
        unused
    }

    /// The topics that have subscribers.
    pub(crate) fn names(&self) -> Vec<String> {
        self.topics().keys().cloned().collect()
    }
}

#[derive(Debug, Clone)]
pub(crate) enum Backend {
    Redis {
        hub: Arc<redis::Hub>,
        link: super::redis::Link,
    },
    Memory(Arc<Fanout>),
}

/// A publish/subscribe channel of `T`s. Clones share it.
#[derive(Debug)]
pub struct Channel<T> {
    backend: Backend,
    /// The full channel name (on Redis: `{prefix}:{name}`).
    topic: Arc<str>,
    _messages: PhantomData<fn() -> T>,
}

impl<T> Clone for Channel<T> {
    fn clone(&self) -> Self {
        Self {
            backend: self.backend.clone(),
            topic: self.topic.clone(),
            _messages: PhantomData,
        }
    }
}

/// A subscription to a channel. Dropping it unsubscribes.
#[derive(Debug)]
pub struct Subscriber<T> {
    receiver: Option<broadcast::Receiver<Frame>>,
    backend: Backend,
    topic: Arc<str>,
    _messages: PhantomData<fn() -> T>,
}

impl<T> Channel<T>
where
    T: Serialize + DeserializeOwned,
{
    pub(crate) fn new(backend: Backend, topic: String) -> Self {
        Self {
            backend,
            topic: Arc::from(topic),
            _messages: PhantomData,
        }
    }

    /// The channel's full name.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Sends `message` to every current subscriber, in every process.
    pub async fn publish(&self, message: &T) -> Result<(), BusError> {
        let payload = serde_json::to_string(message)?;
        match &self.backend {
            Backend::Redis { link, .. } => link.publish(&self.topic, &payload).await,
            Backend::Memory(fanout) => {
                // No subscriber is not an error: messages are not stored.
                fanout.deliver(&self.topic, Arc::from(payload));
                Ok(())
            }
        }
    }

    /// Subscribes to messages published from now on. On Redis this returns once the
    /// process's subscriber connection is subscribed to the channel, and fails when that
    /// does not happen within the bus timeout (Redis unreachable).
    pub async fn subscribe(&self) -> Result<Subscriber<T>, BusError> {
        let receiver = match &self.backend {
            Backend::Redis { hub, .. } => hub.subscribe(&self.topic).await?,
            Backend::Memory(fanout) => fanout.subscribe(&self.topic).0,
        };
        Ok(Subscriber {
            receiver: Some(receiver),
            backend: self.backend.clone(),
            topic: self.topic.clone(),
            _messages: PhantomData,
        })
    }
}

impl<T: DeserializeOwned> Subscriber<T> {
    /// The next message or notice; `None` when the bus is gone. A message that does not
    /// decode as `T` is skipped (and logged).
    pub async fn recv(&mut self) -> Option<Received<T>> {
        let receiver = self.receiver.as_mut()?;
        loop {
            match receiver.recv().await {
                Ok(Frame::Message(payload)) => match serde_json::from_str(&payload) {
                    Ok(message) => return Some(Received::Message(message)),
                    Err(err) => {
                        tracing::warn!(channel = %self.topic, error = %err, "skipping an undecodable message");
                    }
                },
                Ok(Frame::Reconnected) => return Some(Received::Reconnected),
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    return Some(Received::Lagged(missed))
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }
}

impl<T> Drop for Subscriber<T> {
    fn drop(&mut self) {
        // Gone first, so that the count of receivers no longer includes this one.
        drop(self.receiver.take());
        match &self.backend {
            Backend::Redis { hub, .. } => hub.release(&self.topic),
            Backend::Memory(fanout) => {
                fanout.release(&self.topic);
            }
        }
    }
}
