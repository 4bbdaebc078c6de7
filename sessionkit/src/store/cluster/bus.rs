//! The invalidation bus: Redis pub/sub between the nodes of a fleet.
//!
//! Each node publishes one [`Invalidation`] per changed or removed session
//! on the channel and keeps one subscription to it, in a background task.
//! While subscribed, the task applies other nodes' messages to the local
//! cache. When the subscription drops (connection killed, server restart,
//! network trouble) the task empties the cache and the store bypasses it
//! until the task has subscribed again, retrying with exponential backoff
//! and jitter (backon). Messages that fail authentication or parsing are
//! ignored and counted (`sessionkit_cluster_messages_rejected_total`).
//!
//! The task runs on the runtime the store was built on. Should that runtime
//! shut down while the store lives on (built on a set-up runtime, or shared
//! by `#[tokio::test]`s that each run a runtime of their own), the task is
//! dropped with it: a guard it owns then empties the cache and stops the
//! store from trusting it (no invalidation reaches it any more), and the
//! store's next load or write starts a new subscriber on the runtime that
//! makes it, serving from Redis until that one has subscribed.
//!
//! Redis Cluster broadcasts classic `PUBLISH` to every node over its
//! cluster bus, so one subscription to any node of a cluster sees every
//! message the bus delivers (best effort: a broken bus link between the
//! publishing master and the subscribed node can drop messages while both
//! connections stay up; sharded pub/sub would tie the subscription to the
//! slot's master and is not used yet).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use futures_util::StreamExt;
use tokio::sync::oneshot;

use super::cache::LocalCache;
use super::message::{Invalidation, InvalidationKind, MessageKey, NodeId, Rejection};
use crate::error::StoreError;
use crate::record::SessionData;
use crate::store::redis::{Conns, SubscribeSetup};

/// First delay before resubscribing, and the cap.
const RECONNECT_MIN: Duration = Duration::from_millis(100);
const RECONNECT_MAX: Duration = Duration::from_secs(5);
/// How often the subscription is checked with a `PING`, and how long the
/// answer may take: a connection that died without a word (a network
/// partition sends no FIN) counts as lost after at most the sum.
const HEALTH_INTERVAL: Duration = Duration::from_secs(5);
const HEALTH_TIMEOUT: Duration = Duration::from_secs(2);

/// Publishes this node's messages; owns the subscriber task (aborted on drop).
pub(crate) struct Bus {
    conns: Arc<Conns>,
    pub(crate) channel: String,
    pub(crate) key: MessageKey,
    pub(crate) node: NodeId,
    /// The subscriber task; replaced when its runtime shut down under it.
    task: parking_lot::Mutex<tokio::task::JoinHandle<()>>,
    /// Set when the subscriber task was dropped before its store (its
    /// runtime shut down): nobody listens for invalidations.
    orphaned: Arc<AtomicBool>,
    /// Starts another subscriber task on the current runtime.
    restart: Box<dyn Fn() -> tokio::task::JoinHandle<()> + Send + Sync>,
}

impl Drop for Bus {
    fn drop(&mut self) {
        self.task.get_mut().abort();
    }
}

/// Owned by a subscriber task (moved into it, so that it goes with the task
/// even if the task never ran): when the task is dropped, the cache it
/// kept honest is emptied and bypassed, and the store told to start
/// another.
struct Orphaned<T: SessionData> {
    cache: Weak<LocalCache<T>>,
    flag: Arc<AtomicBool>,
}

impl<T: SessionData> Drop for Orphaned<T> {
    fn drop(&mut self) {
        // Nothing the cache holds can be trusted once nobody listens.
        if let Some(cache) = self.cache.upgrade() {
            if cache.is_subscribed() {
                // Counted as a lost subscription, which it is.
                lost_subscription(&cache);
            } else {
                cache.go_dark();
            }
        }
        self.flag.store(true, Ordering::Release);
    }
}

impl Bus {
    /// Starts the subscriber; the store serves in bypass mode until it has
    /// subscribed, which the returned receiver reports (connecting waits for
    /// it up to `subscribe_wait`; a lazy store does not wait). Must run
    /// inside a Tokio runtime (the task is spawned there).
    pub(crate) fn spawn<T: SessionData>(
        conns: Arc<Conns>,
        subscribe_urls: Vec<String>,
        channel: String,
        key: MessageKey,
        node: NodeId,
        cache: &Arc<LocalCache<T>>,
    ) -> (Self, oneshot::Receiver<()>) {
        let (ready_tx, ready_rx) = oneshot::channel();
        let orphaned = Arc::new(AtomicBool::new(false));
        let subscriber = Subscriber {
            setup: conns.subscribe_setup().clone(),
            cache: Arc::downgrade(cache),
            urls: subscribe_urls,
            channel: channel.clone(),
            key: key.clone(),
            node,
        };
        let task = subscriber.start(Some(ready_tx), &orphaned);
        let restart = {
            let orphaned = orphaned.clone();
            Box::new(move || subscriber.start(None, &orphaned))
        };
        let bus = Bus {
            conns,
            channel,
            key,
            node,
            task: parking_lot::Mutex::new(task),
            orphaned,
            restart,
        };
        (bus, ready_rx)
    }

    /// Starts a new subscriber on the current runtime if the last one was
    /// dropped with its runtime (see the module docs). One atomic load when
    /// it was not; outside a Tokio runtime, nothing.
    pub(crate) fn revive(&self) {
        if self.orphaned.load(Ordering::Acquire) {
            self.restart_subscriber();
        }
    }

    #[cold]
    fn restart_subscriber(&self) {
        if tokio::runtime::Handle::try_current().is_err() {
            return;
        }
        let mut task = self.task.lock();
        if !self.orphaned.swap(false, Ordering::AcqRel) {
            return; // another caller just did
        }
        *task = (self.restart)();
        tracing::warn!(
            "the cache invalidation subscriber stopped with the Tokio runtime it ran on; \
             subscribing again on this one (the cache is bypassed until then)"
        );
    }

    /// A message as sent on the channel (authenticated with the fleet's key).
    pub(crate) fn encode(&self, m: &Invalidation) -> Vec<u8> {
        m.encode(&self.key, &self.channel)
    }

    /// Counts a message published (here, or by a save script).
    pub(crate) fn count_published(&self, kind: InvalidationKind) {
        metrics::counter!("sessionkit_cluster_published_total", "kind" => kind.label())
            .increment(1);
    }

    /// Publishes the messages in one round trip; returns when Redis has
    /// handed them to the subscribers.
    pub(crate) async fn publish(&self, messages: &[Invalidation]) -> Result<(), StoreError> {
        if messages.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        for m in messages {
            pipe.cmd("PUBLISH")
                .arg(&self.channel)
                .arg(self.encode(m))
                .ignore();
        }
        let mut conn = self.conns.get();
        pipe.query_async::<()>(&mut conn).await.map_err(|e| {
            StoreError::Unavailable(format!("publishing a cache invalidation failed: {e}"))
        })?;
        // Counted once Redis took them: a failed publish is not one.
        for m in messages {
            self.count_published(m.kind);
        }
        Ok(())
    }
}

/// The background task's state. Holds the cache weakly: it ends when the
/// store is dropped.
#[derive(Clone)]
struct Subscriber<T> {
    /// TLS root certificate and time bound, as the store connects.
    setup: SubscribeSetup,
    cache: Weak<LocalCache<T>>,
    urls: Vec<String>,
    channel: String,
    key: MessageKey,
    node: NodeId,
}

impl<T: SessionData> Subscriber<T> {
    /// Spawns a task running a copy of this subscriber on the current
    /// runtime; `orphaned` is set if the task is dropped before the store.
    fn start(
        &self,
        ready: Option<oneshot::Sender<()>>,
        orphaned: &Arc<AtomicBool>,
    ) -> tokio::task::JoinHandle<()> {
        let guard = Orphaned {
            cache: self.cache.clone(),
            flag: orphaned.clone(),
        };
        let subscriber = self.clone();
        tokio::spawn(async move {
            let _guard = guard;
            subscriber.run(ready).await;
        })
    }

    async fn run(self, mut ready: Option<oneshot::Sender<()>>) {
        let mut backoff = self.backoff();
        let mut next_url = 0;
        loop {
            let url = &self.urls[next_url % self.urls.len().max(1)];
            next_url += 1;
            match self.subscribe(url).await {
                Ok(pubsub) => {
                    let Some(cache) = self.cache.upgrade() else {
                        return;
                    };
                    cache.go_live();
                    drop(cache);
                    if let Some(tx) = ready.take() {
                        let _ = tx.send(());
                    }
                    backoff = self.backoff();
                    let (mut sink, mut messages) = pubsub.split();
                    let mut health = tokio::time::interval(HEALTH_INTERVAL);
                    health.tick().await;
                    loop {
                        tokio::select! {
                            msg = messages.next() => {
                                let Some(msg) = msg else { break };
                                let Some(cache) = self.cache.upgrade() else {
                                    return;
                                };
                                self.apply(&cache, msg.get_payload_bytes());
                            }
                            _ = health.tick() => {
                                let pong = tokio::time::timeout(
                                    HEALTH_TIMEOUT,
                                    sink.ping::<redis::Value>(),
                                );
                                if !matches!(pong.await, Ok(Ok(_))) {
                                    break;
                                }
                            }
                        }
                    }
                    let Some(cache) = self.cache.upgrade() else {
                        return;
                    };
                    lost_subscription(&cache);
                    tracing::warn!(
                        "lost the cache invalidation subscription; local cache emptied and \
                         bypassed until resubscribed"
                    );
                }
                Err(e) => {
                    if self.cache.strong_count() == 0 {
                        return;
                    }
                    tracing::warn!(error = %e, "subscribing to cache invalidations failed; retrying");
                }
            }
            let delay = backoff.next().unwrap_or(RECONNECT_MAX);
            tokio::time::sleep(delay).await;
        }
    }

    fn backoff(&self) -> impl Iterator<Item = Duration> {
        ExponentialBuilder::default()
            .with_min_delay(RECONNECT_MIN)
            .with_max_delay(RECONNECT_MAX)
            .with_jitter()
            .without_max_times()
            .build()
    }

    async fn subscribe(&self, url: &str) -> redis::RedisResult<redis::aio::PubSub> {
        let client = self.setup.client(url)?;
        let connect = async {
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.subscribe(&self.channel).await?;
            Ok(pubsub)
        };
        tokio::time::timeout(self.setup.timeout, connect)
            .await
            .unwrap_or_else(|_| {
                Err(redis::RedisError::from(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "connecting and subscribing timed out",
                )))
            })
    }

    fn apply(&self, cache: &LocalCache<T>, payload: &[u8]) {
        if Invalidation::sender(payload) == Some(self.node) {
            cache.counters.own_ignored.fetch_add(1, Ordering::Relaxed);
            return;
        }
        match Invalidation::decode(payload, &self.key, &self.channel) {
            Err(reason) => reject(cache, reason),
            Ok(m) if m.node == self.node => {
                cache.counters.own_ignored.fetch_add(1, Ordering::Relaxed);
            }
            Ok(m) => {
                match m.kind {
                    super::message::InvalidationKind::Saved => cache.drop_older(m.key, m.version),
                    _ => cache.forget(m.key),
                }
                // Counted once applied, so whoever watches the counter sees the effect.
                cache.counters.invalidations.fetch_add(1, Ordering::Relaxed);
                metrics::counter!("sessionkit_cluster_invalidations_total", "kind" => m.kind.label())
                    .increment(1);
            }
        }
    }
}

/// The subscription is gone: the cache is emptied and bypassed, and the
/// loss counted.
fn lost_subscription<T: SessionData>(cache: &LocalCache<T>) {
    cache.go_dark();
    cache
        .counters
        .subscription_losses
        .fetch_add(1, Ordering::Relaxed);
    metrics::counter!("sessionkit_cluster_subscription_lost_total").increment(1);
}

fn reject<T: SessionData>(cache: &LocalCache<T>, reason: Rejection) {
    let total = cache.counters.rejected.fetch_add(1, Ordering::Relaxed) + 1;
    metrics::counter!("sessionkit_cluster_messages_rejected_total", "reason" => reason.label())
        .increment(1);
    // Says why, quotes nothing: the payload is attacker-controlled. A
    // warning at the 1st, 2nd, 4th, 8th… rejection, debug otherwise: a
    // steady stream (another application on the channel, a flood) must not
    // flood the log, and the metric carries the rate.
    if total.is_power_of_two() {
        tracing::warn!(
            reason = reason.label(),
            rejected_so_far = total,
            "ignored an invalid cache invalidation message (warned at powers of two; see sessionkit_cluster_messages_rejected_total)"
        );
    } else {
        tracing::debug!(
            reason = reason.label(),
            "ignored an invalid cache invalidation message"
        );
    }
}
