//! [`ClusteredStore`]: Redis plus a bounded local cache on every node, kept
//! honest by invalidation messages over Redis pub/sub (feature `cluster`).
//!
//! ```no_run
//! use sessionkit::{Config, Sessions};
//! use sessionkit::store::cluster::{ClusterOptions, ClusteredStore};
//!
//! #[derive(serde::Serialize, serde::Deserialize, Default, Clone)]
//! struct User { name: Option<String> }
//!
//! # async fn run() -> Result<(), sessionkit::StoreError> {
//! // Every node of the fleet uses the same 32-byte message key.
//! let cluster_message_key = [7u8; 32];
//! let options = ClusterOptions::new(cluster_message_key);
//! let store = ClusteredStore::<User>::connect("redis://127.0.0.1:6379/", options).await?;
//! let sessions = Sessions::new(store, Config::default());
//! # let _ = sessions; Ok(()) }
//! ```
//!
//! # How it works
//! - **Reads** look in the local cache first (bounded in size, entries
//!   live at most the cache TTL). A hit returns the decoded record and sends
//!   nothing to Redis. A miss reads Redis and fills the cache.
//! - **Writes** go to Redis first (the [`RedisStore`] keeps its guarantees:
//!   compare-and-set, no resurrection, atomic regenerate), then update or
//!   drop the local entry, then publish an [`Invalidation`] carrying the
//!   node id, the session's key hash, the version now stored and what
//!   happened. The call returns after Redis has accepted the `PUBLISH`, so
//!   a logout is on its way to every node before the response leaves.
//!   Deletes (logout, destroy), updates and regenerations publish from the
//!   Lua script that writes: one round trip, the message is sent only if
//!   the write happened, and no node can read the old value from Redis
//!   after the write without the message already on its way. (An update's
//!   message carries the version it writes, which the caller computes
//!   before the script: the script refuses any other.) Owner revokes and
//!   bulk removals first list the sessions (`by_owner`, `find_by`), then
//!   delete them in batches of 256, each batch announced by the script that
//!   deletes it, so a connection lost between a delete and a separate
//!   publish cannot leave other nodes serving revoked sessions; a revoke
//!   then removes the owner's index and whatever the listing could not
//!   read, announced in a second round trip. A node forgets what it cached
//!   of any write whose outcome it does not know (an error, a cancel): it
//!   skips its own messages.
//! - **Other nodes** drop their entry when the message announces a newer
//!   version than the one they hold, or a removal. A node ignores its own
//!   messages, and ignores and counts messages whose HMAC-SHA256 tag does not
//!   verify under the shared [`MessageKey`].
//! - **Losing the subscription** (connection killed, Redis restart) empties
//!   the cache; reads then go to Redis until the node has subscribed again.
//!   Nothing a node missed while unsubscribed can be served from its cache.
//!   The same holds when the runtime the store was built on shuts down
//!   while the store lives on (its subscriber task goes with that runtime):
//!   the cache is emptied and bypassed at once, and the store's next load or
//!   write subscribes again from the runtime that makes it.
//!
//! Creates publish nothing: no node can hold a session that did not exist.
//!
//! # What "honest" means here
//! After a node's write returns, another node serves the old record only
//! until the message reaches it: the time of one pub/sub delivery. Measured
//! in `tests/cluster_invalidation.rs` (three nodes, one host, debug build,
//! 100 logouts): other nodes had dropped the session a median of about
//! 15–20 µs after the delete returned (0.4–0.8 ms counted from the start of
//! the delete call), with a worst case of about 17 ms on a loaded machine. Messages are not
//! lost silently for long: a node whose subscription drops serves nothing
//! from its cache until it has subscribed again. A connection that dies
//! without closing (a half-open TCP link) is found by the subscriber's
//! health `PING` (every 5 s, answered within 2 s): until then, up to about
//! 7 s, the node may serve from its cache what it was not told about, and
//! while a `PING` is awaited, messages wait too (up to 2 s). On Redis
//! Cluster, a message crosses the cluster bus to the node subscribed to;
//! a broken bus link there can drop messages without the subscription
//! noticing (see below); the cache TTL bounds what a missed message costs.
//! Reads racing an invalidation never re-cache the old value (see
//! the ticket rule in the cache module).
//!
//! # Redis Cluster
//! [`ClusteredStore::connect_cluster`] runs the same design on a Redis
//! Cluster; see [`crate::store::redis`] for the key layout there.

mod bus;
mod cache;
mod message;

use std::marker::PhantomData;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures_util::stream::BoxStream;
use sha2::{Digest, Sha256};

use self::bus::Bus;
use self::cache::{KeyHash, LocalCache, Lookup};
pub use self::message::{
    Invalidation, InvalidationKind, MessageKey, NodeId, Rejection, MESSAGE_LEN,
};
use crate::error::StoreError;
use crate::id::{SessionHandle, SessionId};
use crate::record::{Record, SessionData};
use crate::store::redis::{Announce, RedisStore};
use crate::store::{
    in_passes, Followed, Pass, Predicate, QueryStore, RemovalListener, Removed, Save, SaveKind,
    SaveOutcome, Store,
};

/// The default invalidation channel.
pub const DEFAULT_CHANNEL: &str = "sessionkit:invalidate";
/// The default time an entry may stay in a local cache.
pub const DEFAULT_CACHE_TTL: Duration = Duration::from_secs(30);
/// The default bound on the number of cached sessions per node.
pub const DEFAULT_CACHE_CAPACITY: u64 = 10_000;

/// The cluster settings: the message key (required), node id, cache TTL,
/// cache size and channel.
#[derive(Debug, Clone)]
#[must_use]
pub struct ClusterOptions {
    message_key: MessageKey,
    /// `None`: each store built with these options draws its own.
    node_id: Option<NodeId>,
    cache_ttl: Duration,
    cache_capacity: u64,
    channel: String,
    subscribe_wait: Duration,
}

impl ClusterOptions {
    /// Options with the defaults: a random node id, a 30 s cache TTL,
    /// 10 000 cached sessions, channel `sessionkit:invalidate`.
    ///
    /// `cluster_message_key` authenticates the bus messages; every node of
    /// the fleet needs the same one. Derive it from the application secret
    /// (the cluster-messages subkey of the key ring), never hard-code it.
    pub fn new(cluster_message_key: impl Into<MessageKey>) -> Self {
        ClusterOptions {
            message_key: cluster_message_key.into(),
            node_id: None,
            cache_ttl: DEFAULT_CACHE_TTL,
            cache_capacity: DEFAULT_CACHE_CAPACITY,
            channel: DEFAULT_CHANNEL.to_owned(),
            subscribe_wait: Duration::from_secs(5),
        }
    }

    /// This node's id on the bus. By default every store built with these
    /// options draws a random one, so options cloned into several stores
    /// (one per actix-web worker, say) still give each store its own: two
    /// stores sharing an id would ignore each other's invalidations as their
    /// own. Set one only for a single store.
    pub fn node_id(mut self, id: NodeId) -> Self {
        self.node_id = Some(id);
        self
    }

    /// How long an entry may stay cached (default 30 s): the bound on
    /// staleness should the bus misbehave in a way nobody noticed.
    pub fn cache_ttl(mut self, ttl: Duration) -> Self {
        self.cache_ttl = ttl;
        self
    }

    /// How many sessions one node caches at most (default 10 000, at most
    /// 16 777 216). The cache holds them in sets of four slots, so the
    /// number is rounded down to a multiple of four (four at least); the
    /// slots are reserved when the store is built, about 28 bytes each
    /// (280 KB for the default) before any record is cached.
    pub fn cache_capacity(mut self, entries: u64) -> Self {
        self.cache_capacity = entries;
        self
    }

    /// The pub/sub channel (default `sessionkit:invalidate`). Applications
    /// sharing one Redis need distinct channels: with distinct keys on one
    /// channel each node also receives the other application's messages,
    /// rejects them as forged and counts them in
    /// `sessionkit_cluster_messages_rejected_total`, hiding a real forgery.
    pub fn channel(mut self, channel: impl Into<String>) -> Self {
        self.channel = channel.into();
        self
    }

    /// How long connecting waits for the first subscription (default 5 s);
    /// past it the store starts in bypass mode and keeps trying. The lazy
    /// constructors ([`ClusteredStore::connect_lazy`]) do not wait.
    pub fn subscribe_wait(mut self, wait: Duration) -> Self {
        self.subscribe_wait = wait;
        self
    }

    fn validate(&self) -> Result<(), StoreError> {
        let mut problems = Vec::new();
        if self.message_key.is_all_zero() {
            problems.push("the message key is all zeros (use a secret key)");
        }
        if self.cache_ttl.is_zero() {
            problems.push("the cache TTL must be greater than zero");
        }
        if self.cache_capacity == 0 {
            problems.push("the cache capacity must be greater than zero");
        }
        if self.cache_capacity > cache::MAX_CAPACITY {
            problems.push("the cache capacity must be at most 16 777 216 sessions");
        }
        if self.channel.is_empty() {
            problems.push("the channel name is empty");
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(StoreError::Backend(format!(
                "invalid cluster options: {}",
                problems.join("; ")
            )))
        }
    }
}

/// What [`Cached`] needs from the store it wraps: saves that report the
/// version they wrote (so other nodes know which cached versions are
/// stale), and deletes that publish their invalidation in the same step.
#[async_trait]
pub trait ClusterBackend<T: SessionData>: QueryStore<T> {
    /// [`Store::save`], plus the version now stored when it saved.
    async fn save_versioned(
        &self,
        save: Save<'_, T>,
    ) -> Result<(SaveOutcome, Option<u64>), StoreError>;

    /// [`ClusterBackend::save_versioned`] that also publishes
    /// `message(version written)` on `channel` in the same atomic step, and
    /// only if the save wrote. `id_hash` is the SHA-256 of the record's id
    /// (the caller has it; a backend keyed by it need not hash again).
    /// `Ok(None)`, the default, means this backend cannot: the caller then
    /// saves with `save_versioned` and publishes on its own (one more round
    /// trip).
    async fn save_and_publish(
        &self,
        save: Save<'_, T>,
        id_hash: &[u8; 32],
        channel: &str,
        message: &(dyn Fn(u64) -> Vec<u8> + Send + Sync),
    ) -> Result<Option<(SaveOutcome, Option<u64>)>, StoreError> {
        let _ = (save, id_hash, channel, message);
        Ok(None)
    }

    /// [`QueryStore::delete_handle`] of several sessions, named by their
    /// key hashes (their handles' bytes), that also publishes `messages` on
    /// `channel`, atomically with the delete. Says, per session, whether it
    /// existed.
    async fn delete_and_publish(
        &self,
        keys: &[KeyHash],
        channel: &str,
        messages: &[Vec<u8>],
    ) -> Result<Vec<bool>, StoreError>;

    /// [`Store::delete_following`] of one session that also publishes
    /// `message` on `channel`, atomically with the delete. Says whether it
    /// deleted a session and, when it followed a regenerate, the key hash of
    /// the id it followed it to, also when the session there was already gone
    /// (a repeat of a delete whose reply was lost), for the caller to
    /// announce (the backend cannot sign messages). The default follows
    /// nothing: it is `delete_and_publish`.
    async fn delete_following_and_publish(
        &self,
        id: &SessionId,
        channel: &str,
        message: &[u8],
    ) -> Result<(Followed, Option<KeyHash>), StoreError> {
        let existed = self
            .delete_and_publish(&[key_hash(id)], channel, &[message.to_vec()])
            .await?;
        let followed = match existed == [true] {
            true => Followed::Deleted,
            false => Followed::Nothing,
        };
        Ok((followed, None))
    }

    /// [`ClusterBackend::delete_and_publish`] of sessions listed as
    /// `owner`'s that deletes only those still `owner`'s when it runs (a
    /// session given to another user between a revoke's listing and its
    /// delete is that user's now). The default does not check: it deletes
    /// them all, as `delete_and_publish`.
    async fn delete_owned_and_publish(
        &self,
        keys: &[KeyHash],
        owner: &str,
        channel: &str,
        messages: &[Vec<u8>],
    ) -> Result<Vec<bool>, StoreError> {
        let _ = owner;
        self.delete_and_publish(keys, channel, messages).await
    }

    /// [`QueryStore::delete_owner`], also returning the key hash
    /// (the SHA-256 of its id) of every session deleted, including those this node
    /// cannot decode (so they can be announced). The default takes the
    /// handles `delete_owner` reports.
    async fn delete_owner_keyed(
        &self,
        owner: &str,
    ) -> Result<(Vec<Removed>, Vec<KeyHash>), StoreError> {
        let removed = self.delete_owner(owner).await?;
        let hashes = removed.iter().map(|r| *r.handle().as_bytes()).collect();
        Ok((removed, hashes))
    }
}

#[async_trait]
impl<T: SessionData> ClusterBackend<T> for RedisStore<T> {
    async fn save_versioned(
        &self,
        save: Save<'_, T>,
    ) -> Result<(SaveOutcome, Option<u64>), StoreError> {
        RedisStore::save_versioned(self, save, None).await
    }

    async fn save_and_publish(
        &self,
        save: Save<'_, T>,
        id_hash: &[u8; 32],
        channel: &str,
        message: &(dyn Fn(u64) -> Vec<u8> + Send + Sync),
    ) -> Result<Option<(SaveOutcome, Option<u64>)>, StoreError> {
        let announce = Announce {
            channel,
            message,
            digest: *id_hash,
        };
        RedisStore::save_versioned(self, save, Some(&announce))
            .await
            .map(Some)
    }

    async fn delete_and_publish(
        &self,
        keys: &[KeyHash],
        channel: &str,
        messages: &[Vec<u8>],
    ) -> Result<Vec<bool>, StoreError> {
        RedisStore::delete_and_publish(self, keys, channel, messages).await
    }

    async fn delete_following_and_publish(
        &self,
        id: &SessionId,
        channel: &str,
        message: &[u8],
    ) -> Result<(Followed, Option<KeyHash>), StoreError> {
        RedisStore::delete_following_keyed(self, id, Some((channel, message))).await
    }

    async fn delete_owned_and_publish(
        &self,
        keys: &[KeyHash],
        owner: &str,
        channel: &str,
        messages: &[Vec<u8>],
    ) -> Result<Vec<bool>, StoreError> {
        RedisStore::delete_owned_and_publish(self, keys, owner, channel, messages).await
    }

    async fn delete_owner_keyed(
        &self,
        owner: &str,
    ) -> Result<(Vec<Removed>, Vec<KeyHash>), StoreError> {
        RedisStore::delete_owner_keyed(self, owner).await
    }
}

/// The caching decorator: a local cache in front of a [`ClusterBackend`],
/// invalidated over the bus. [`ClusteredStore`] is this over a [`RedisStore`].
pub struct Cached<S, T> {
    inner: S,
    cache: Arc<LocalCache<T>>,
    bus: Bus,
    _data: PhantomData<fn() -> T>,
}

/// Redis with a local cache per node and pub/sub invalidation.
pub type ClusteredStore<T> = Cached<RedisStore<T>, T>;

impl<S, T> std::fmt::Debug for Cached<S, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cached")
            .field("node", &self.bus.node)
            .field("channel", &self.bus.channel)
            .finish_non_exhaustive()
    }
}

/// A snapshot of a node's cache counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct CacheStats {
    /// Loads served from the cache.
    pub hits: u64,
    /// Loads that read Redis and may have filled the cache.
    pub misses: u64,
    /// Loads that read Redis because the node was not subscribed.
    pub bypassed: u64,
    /// Other nodes' authentic messages applied.
    pub invalidations: u64,
    /// Messages ignored as forged or malformed.
    pub rejected: u64,
    /// This node's own messages, ignored.
    pub own_ignored: u64,
    /// Times the subscription was lost (and the cache emptied).
    pub subscription_losses: u64,
    /// Entries cached now.
    pub entries: u64,
}

impl<T: SessionData> ClusteredStore<T> {
    /// Connects to the standalone Redis at `url` (key prefix `sessionkit:`)
    /// and subscribes to the invalidation channel.
    pub async fn connect(url: &str, options: ClusterOptions) -> Result<Self, StoreError> {
        options.validate()?;
        let store = RedisStore::connect(url).await?;
        Self::with_store(store, vec![url.to_owned()], options).await
    }

    /// Connects to a Redis Cluster through the seed `nodes` (key prefix
    /// `{sessionkit:}`); the subscription goes to the first node that
    /// accepts it.
    pub async fn connect_cluster(
        nodes: &[&str],
        options: ClusterOptions,
    ) -> Result<Self, StoreError> {
        options.validate()?;
        let store = RedisStore::connect_cluster(nodes.iter().copied()).await?;
        let urls = nodes.iter().map(|n| (*n).to_owned()).collect();
        Self::with_store(store, urls, options).await
    }

    /// Wraps a store built with [`RedisStore::builder`] (custom prefix,
    /// timeouts…). `subscribe_urls` are the Redis URLs to subscribe through
    /// (the store's own server, or any nodes of its cluster). Fails on
    /// invalid options (an all-zero key, a zero TTL or capacity, an empty
    /// channel) or an empty URL list.
    pub async fn with_store(
        store: RedisStore<T>,
        subscribe_urls: Vec<String>,
        options: ClusterOptions,
    ) -> Result<Self, StoreError> {
        check(&options, &subscribe_urls)?;
        let conn = store.shared_connections();
        Ok(Cached::new(store, conn, subscribe_urls, options).await)
    }

    /// [`ClusteredStore::connect`] without I/O: the connection is opened by
    /// the first command and the subscription by a background task, and the
    /// store serves in bypass mode (every read from Redis) until that task
    /// has subscribed. Synchronous, for code that cannot await, such as an
    /// actix-web app factory: there, one store per worker, built on the
    /// worker's thread, keeps its subscriber's task on that thread. (Its
    /// Redis commands run on the worker's own connection either way: a Redis
    /// store opens one per runtime it is used from.) Each such store is a
    /// node of the fleet with its own cache and its own random node id
    /// (unless the options set one). On a Redis Cluster, build
    /// the Redis store with
    /// `RedisStore::cluster_builder(nodes).build_lazy()` and hand it to
    /// [`ClusteredStore::with_store_lazy`].
    ///
    /// Fails on invalid options or URL, and outside a Tokio runtime.
    ///
    /// ```no_run
    /// use actix_web::{web, App, HttpServer};
    /// use sessionkit::http::actix::SessionMiddleware;
    /// use sessionkit::store::cluster::{ClusterOptions, ClusteredStore};
    /// use sessionkit::{Config, Session, Sessions};
    ///
    /// async fn hit(session: Session<u64>) -> String {
    ///     let mut visits = session.data_mut();
    ///     *visits += 1;
    ///     visits.to_string()
    /// }
    ///
    /// fn main() -> std::io::Result<()> {
    ///     // From the application's secret in real code (KeyRing::subkey).
    ///     let options = ClusterOptions::new([7u8; 32]);
    ///     actix_web::rt::System::new().block_on(async {
    ///         HttpServer::new(move || {
    ///             // Once per worker, on the worker's thread.
    ///             let store = ClusteredStore::<u64>::connect_lazy(
    ///                 "redis://127.0.0.1/",
    ///                 options.clone(),
    ///             )
    ///             .expect("valid options and URL");
    ///             let sessions = Sessions::new(store, Config::default());
    ///             App::new()
    ///                 .wrap(SessionMiddleware::new(&sessions))
    ///                 .route("/", web::get().to(hit))
    ///         })
    ///         .bind(("127.0.0.1", 8080))?
    ///         .run()
    ///         .await
    ///     })
    /// }
    /// ```
    pub fn connect_lazy(url: &str, options: ClusterOptions) -> Result<Self, StoreError> {
        // No I/O before `with_store_lazy` checks the options.
        let store = RedisStore::builder(url).build_lazy()?;
        Self::with_store_lazy(store, vec![url.to_owned()], options)
    }

    /// [`ClusteredStore::with_store`] without waiting for the subscription
    /// (see [`ClusteredStore::connect_lazy`]); pair it with
    /// [`RedisStoreBuilder::build_lazy`](crate::store::redis::RedisStoreBuilder::build_lazy)
    /// for a store that does no I/O before its first use. Fails on invalid
    /// options, an empty URL list, or outside a Tokio runtime.
    pub fn with_store_lazy(
        store: RedisStore<T>,
        subscribe_urls: Vec<String>,
        options: ClusterOptions,
    ) -> Result<Self, StoreError> {
        check(&options, &subscribe_urls)?;
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(StoreError::Backend(
                "with_store_lazy must run inside a Tokio runtime (the subscriber task is spawned on it)"
                    .into(),
            ));
        }
        let conn = store.shared_connections();
        Ok(Cached::spawn(store, conn, subscribe_urls, options).0)
    }
}

/// What every constructor checks before it starts anything: valid options
/// and at least one URL to subscribe through.
fn check(options: &ClusterOptions, subscribe_urls: &[String]) -> Result<(), StoreError> {
    options.validate()?;
    if subscribe_urls.is_empty() {
        return Err(StoreError::Backend(
            "invalid cluster options: no Redis URL to subscribe through".into(),
        ));
    }
    Ok(())
}

impl<S: ClusterBackend<T>, T: SessionData> Cached<S, T> {
    async fn new(
        inner: S,
        publish: Arc<crate::store::redis::Conns>,
        subscribe_urls: Vec<String>,
        options: ClusterOptions,
    ) -> Self {
        let wait = options.subscribe_wait;
        let (store, ready) = Self::spawn(inner, publish, subscribe_urls, options);
        let _ = tokio::time::timeout(wait, ready).await;
        store
    }

    /// The store, with its subscriber started but not waited for (the
    /// receiver fires once subscribed).
    fn spawn(
        inner: S,
        publish: Arc<crate::store::redis::Conns>,
        subscribe_urls: Vec<String>,
        options: ClusterOptions,
    ) -> (Self, tokio::sync::oneshot::Receiver<()>) {
        let cache = Arc::new(LocalCache::new(options.cache_ttl, options.cache_capacity));
        let (bus, ready) = Bus::spawn(
            publish,
            subscribe_urls,
            options.channel,
            options.message_key,
            options.node_id.unwrap_or_else(NodeId::random),
            &cache,
        );
        let store = Cached {
            inner,
            cache,
            bus,
            _data: PhantomData,
        };
        (store, ready)
    }

    /// The wrapped store.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    /// This node's id on the bus.
    pub fn node_id(&self) -> NodeId {
        self.bus.node
    }

    /// Whether the node is subscribed (and so serving from its cache).
    pub fn is_subscribed(&self) -> bool {
        self.cache.is_subscribed()
    }

    /// Whether a session is in this node's cache (for tests and diagnostics).
    pub fn is_cached(&self, id: &SessionId) -> bool {
        self.cache.contains(&key_hash(id))
    }

    /// The node's cache counters.
    pub fn stats(&self) -> CacheStats {
        let c = &self.cache.counters;
        let get = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
        CacheStats {
            hits: get(&c.hits),
            misses: get(&c.misses),
            bypassed: get(&c.bypassed),
            invalidations: get(&c.invalidations),
            rejected: get(&c.rejected),
            own_ignored: get(&c.own_ignored),
            subscription_losses: get(&c.subscription_losses),
            entries: self.cache.len(),
        }
    }

    fn message(&self, kind: InvalidationKind, key: KeyHash, version: u64) -> Invalidation {
        Invalidation {
            node: self.bus.node,
            kind,
            version,
            key,
        }
    }

    /// Forgets removed sessions locally and tells the other nodes.
    /// Deletes `listed` sessions, announcing each in the same script run as
    /// its delete (batches of [`ANNOUNCED_BATCH`]): an invalidation cannot
    /// be lost between a delete and a separate publish, and a failed or
    /// cancelled call still forgets them here. Returns those that existed.
    /// With `owner`, only sessions still that owner's are deleted (a revoke).
    async fn delete_announced(
        &self,
        kind: InvalidationKind,
        listed: Vec<Record<T, SessionHandle>>,
        owner: Option<&str>,
    ) -> Result<Vec<Removed>, StoreError> {
        let mut removed = Vec::new();
        for batch in listed.chunks(ANNOUNCED_BATCH) {
            let keys: Vec<KeyHash> = batch.iter().map(|r| *r.id.as_bytes()).collect();
            let messages: Vec<Vec<u8>> = keys
                .iter()
                .map(|key| {
                    self.message(kind, *key, 0)
                        .encode(&self.bus.key, &self.bus.channel)
                })
                .collect();
            let _forget = ForgetUnlessKnown {
                cache: &self.cache,
                keys: &keys,
            };
            let channel = &self.bus.channel;
            let deleted = match owner {
                Some(owner) => {
                    self.inner
                        .delete_owned_and_publish(&keys, owner, channel, &messages)
                        .await
                }
                None => {
                    self.inner
                        .delete_and_publish(&keys, channel, &messages)
                        .await
                }
            };
            let existed = match deleted {
                Ok(existed) => existed,
                Err(e) => return Err(e.after_removing(removed)),
            };
            for _ in &messages {
                self.bus.count_published(kind);
            }
            removed.extend(
                batch
                    .iter()
                    .zip(existed)
                    .filter(|(_, existed)| *existed)
                    .map(|(r, _)| Removed::new(r.id, r.owner.clone())),
            );
        }
        Ok(removed)
    }

    /// Before a delete of `id`: the bus revived if its task was lost, and
    /// `id`'s key hash with the signed message that announces its removal.
    fn deleting(&self, id: &SessionId) -> (KeyHash, Vec<u8>) {
        let key = key_hash(id);
        (key, self.deleting_key(key))
    }

    /// [`Cached::deleting`] of a session known by its key hash: the bus
    /// revived, and the message that announces the removal.
    fn deleting_key(&self, key: KeyHash) -> Vec<u8> {
        self.bus.revive();
        self.message(InvalidationKind::Deleted, key, 0)
            .encode(&self.bus.key, &self.bus.channel)
    }

    /// Deletes the session under `key` and announces it in one script run:
    /// no other node can read the session from Redis between the delete and
    /// the announcement ([`Store::delete`], [`QueryStore::delete_handle`]).
    async fn delete_key(&self, key: KeyHash) -> Result<bool, StoreError> {
        let message = self.deleting_key(key);
        // Forgotten however the call ends: deleted, failed or cancelled.
        let _forget = ForgetUnlessKnown {
            cache: &self.cache,
            keys: std::slice::from_ref(&key),
        };
        let existed = self
            .inner
            .delete_and_publish(&[key], &self.bus.channel, &[message])
            .await?;
        self.bus.count_published(InvalidationKind::Deleted);
        Ok(existed == [true])
    }

    /// Forgets the sessions under these key hashes here and tells the other
    /// nodes they are gone.
    async fn removed_keys(
        &self,
        kind: InvalidationKind,
        keys: &[KeyHash],
    ) -> Result<(), StoreError> {
        let messages: Vec<Invalidation> = keys
            .iter()
            .map(|&key| {
                self.cache.forget(key);
                self.message(kind, key, 0)
            })
            .collect();
        self.bus.publish(&messages).await
    }
}

/// Forgets cache entries when dropped, unless [`ForgetUnlessKnown::known`]
/// was called: a write whose outcome this node does not know (an error, a
/// reply that never came, a call cancelled with its request) may have
/// changed the session in Redis, and this node skips its own invalidations,
/// so nothing else would drop what it has cached.
struct ForgetUnlessKnown<'a, T: SessionData> {
    cache: &'a LocalCache<T>,
    keys: &'a [KeyHash],
}

impl<T: SessionData> ForgetUnlessKnown<'_, T> {
    /// The outcome is known: the caller updates the cache itself.
    fn known(mut self) {
        self.keys = &[];
    }
}

impl<T: SessionData> Drop for ForgetUnlessKnown<'_, T> {
    fn drop(&mut self) {
        for key in self.keys {
            self.cache.forget(*key);
        }
    }
}

/// Sessions per script run when a revoke or bulk delete deletes and
/// announces them together (a script blocks Redis while it runs).
const ANNOUNCED_BATCH: usize = 256;

/// The cache key: SHA-256 of the id, the same hash as
/// [`SessionId::storage_key`] (as bytes, not hex).
fn key_hash(id: &SessionId) -> KeyHash {
    Sha256::digest(id.as_bytes()).into()
}

#[async_trait]
impl<S: ClusterBackend<T>, T: SessionData> Store<T> for Cached<S, T> {
    async fn load(&self, cookie_value: &str) -> Result<Option<Record<T>>, StoreError> {
        self.bus.revive();
        let Ok(id) = SessionId::parse(cookie_value) else {
            return Ok(None);
        };
        let key = key_hash(&id);
        match self.cache.lookup(&key) {
            Lookup::Hit(record) => Ok(Some(record)),
            Lookup::Bypass => self.inner.load(cookie_value).await,
            Lookup::Miss => {
                let ticket = self.cache.ticket(&key);
                let loaded = self.inner.load(cookie_value).await?;
                if let Some(record) = &loaded {
                    self.cache.fill(key, record, ticket);
                }
                Ok(loaded)
            }
        }
    }

    /// A warm read is answered from the local cache (no Redis command).
    fn load_now(&self, cookie_value: &str) -> Option<Result<Option<Record<T>>, StoreError>> {
        let Ok(id) = SessionId::parse(cookie_value) else {
            return Some(Ok(None));
        };
        self.cache
            .hit(&key_hash(&id))
            .map(|record| Ok(Some(record)))
    }

    async fn save(&self, save: Save<'_, T>) -> Result<SaveOutcome, StoreError> {
        self.bus.revive();
        // Named here (the Redis store would draw one otherwise), so that
        // the record cached below carries the id its stored copy does.
        let save = match save.write_id() {
            0 => save.with_write_id(crate::store::new_write_id()),
            _ => save,
        };
        let record = save.record;
        let (kind, write_id) = (save.kind, save.write_id());
        let key = key_hash(&record.id);
        let ticket = self.cache.ticket(&key);
        let keys = match kind {
            SaveKind::Regenerate { old } => [key, key_hash(&old)],
            _ => [key; 2],
        };
        let unknown = ForgetUnlessKnown {
            cache: &self.cache,
            keys: &keys,
        };
        // The invalidation other nodes need, published by the save script
        // itself when the backend can (updates and regenerations; a create
        // has nothing cached anywhere to invalidate).
        let announcement = match kind {
            SaveKind::Create => None,
            SaveKind::Update => Some((InvalidationKind::Saved, key)),
            SaveKind::Regenerate { old } => Some((InvalidationKind::Regenerated, key_hash(&old))),
        };
        let encode = |version: u64| {
            let (kind, key) = announcement.expect("only announced saves publish");
            let version = if kind == InvalidationKind::Saved {
                version
            } else {
                0
            };
            self.bus.encode(&self.message(kind, key, version))
        };
        let (outcome, version, published) = match announcement {
            Some(_) => match self
                .inner
                .save_and_publish(save, &key, &self.bus.channel, &encode)
                .await?
            {
                Some((outcome, version)) => (outcome, version, true),
                None => {
                    let (outcome, version) = self.inner.save_versioned(save).await?;
                    (outcome, version, false)
                }
            },
            None => {
                let (outcome, version) = self.inner.save_versioned(save).await?;
                (outcome, version, false)
            }
        };
        unknown.known();
        let Some(version) = version.filter(|_| outcome.is_saved()) else {
            // Gone: deleted meanwhile (its deleter published that).
            self.cache.forget(key);
            if let SaveKind::Regenerate { old } = kind {
                self.cache.forget(key_hash(&old));
                // Or, with a backend that publishes apart from its saves,
                // the retry of a regenerate that landed and whose
                // announcement failed (`Resilient` then finds the new id
                // and answers saved): the old id is gone because of it and
                // no node was told. Told again here; one redundant message
                // otherwise.
                if !published {
                    let gone = self.message(InvalidationKind::Regenerated, key_hash(&old), 0);
                    self.bus.publish(&[gone]).await?;
                }
            }
            return Ok(outcome);
        };
        if version == record.version + 1 {
            // Stored exactly as given: cache it.
            let mut written = record.clone();
            written.version = version;
            written.writes = written.writes.after(write_id);
            self.cache.fill_written(key, &written, ticket);
        } else {
            // Merged with a concurrent write: what is stored is not `record`.
            self.cache.drop_older(key, version);
        }
        if let SaveKind::Regenerate { old } = kind {
            self.cache.forget(key_hash(&old));
        }
        match announcement {
            Some((kind, _)) if published => self.bus.count_published(kind),
            Some((kind, key)) => {
                let version = if kind == InvalidationKind::Saved {
                    version
                } else {
                    0
                };
                self.bus
                    .publish(&[self.message(kind, key, version)])
                    .await?;
            }
            None => {}
        }
        Ok(outcome)
    }

    async fn delete(&self, id: &SessionId) -> Result<bool, StoreError> {
        self.delete_key(key_hash(id)).await
    }

    /// As [`Store::delete`], following a recent regenerate in the same
    /// script run; the id a move led to is forgotten here and announced
    /// right after (a second publish: the script cannot sign messages).
    /// Until that announcement lands, another node that cached the new id
    /// may serve it for a round trip longer. If the reply is lost or the
    /// publish fails, the call fails; repeating it (the resilience layer's
    /// retry, or the client's) follows the moves again (they are kept for
    /// [`crate::store::MOVE_FORWARD_TTL`]) and announces the new id then.
    async fn delete_following(&self, id: &SessionId) -> Result<Followed, StoreError> {
        let (key, message) = self.deleting(id);
        let _forget = ForgetUnlessKnown {
            cache: &self.cache,
            keys: std::slice::from_ref(&key),
        };
        let (followed, moved_to) = self
            .inner
            .delete_following_and_publish(id, &self.bus.channel, &message)
            .await?;
        self.bus.count_published(InvalidationKind::Deleted);
        if let Some(moved_to) = moved_to {
            self.removed_keys(InvalidationKind::Deleted, &[moved_to])
                .await?;
        }
        Ok(followed)
    }

    fn holds_sessions(&self) -> bool {
        self.inner.holds_sessions()
    }

    fn on_removed(&self, listener: RemovalListener) {
        self.inner.on_removed(listener);
    }
}

#[async_trait]
impl<S: ClusterBackend<T>, T: SessionData> QueryStore<T> for Cached<S, T> {
    /// Lists from the backing store (the cache holds only hot sessions).
    fn iter(&self) -> BoxStream<'_, Result<Record<T, SessionHandle>, StoreError>> {
        self.inner.iter()
    }

    async fn find_by(
        &self,
        predicate: Predicate<'_, T>,
    ) -> Result<Vec<Record<T, SessionHandle>>, StoreError> {
        self.inner.find_by(predicate).await
    }

    async fn count(&self) -> Result<usize, StoreError> {
        self.inner.count().await
    }

    /// Finds the matching sessions, then deletes them in batches, each
    /// announced in the same script run as its delete (see
    /// [`Cached::delete_owner`]). A session changed between the two steps
    /// is deleted if it matched when found.
    async fn bulk_delete(&self, predicate: Predicate<'_, T>) -> Result<Vec<Removed>, StoreError> {
        // Listed again after a pass that found a listed session gone (it may
        // live on under a new id): see `QueryStore::bulk_delete`.
        in_passes(|| async move {
            let found = self.inner.find_by(predicate).await?;
            let listed = found.len();
            // Its error carries what it removed.
            let removed = self
                .delete_announced(InvalidationKind::BulkDeleted, found, None)
                .await?;
            Ok(Pass {
                missed: removed.len() < listed,
                removed,
            })
        })
        .await
    }

    async fn by_owner(&self, owner: &str) -> Result<Vec<Record<T, SessionHandle>>, StoreError> {
        self.inner.by_owner(owner).await
    }

    /// Deletes and announces in one script run, as [`Store::delete`] does.
    async fn delete_handle(&self, handle: &SessionHandle) -> Result<bool, StoreError> {
        self.delete_key(*handle.as_bytes()).await
    }

    /// Lists the owner's sessions, then deletes them in batches, each batch
    /// announced by the same script run that deletes it: no node keeps
    /// serving a revoked session because a separate publish failed after
    /// the delete (the delete then stood, and a retry found nothing left to
    /// announce). What the listing cannot read (a value this node cannot
    /// decode) and sessions the owner gained meanwhile are then deleted with
    /// the owner's index and announced separately: when that announcement
    /// fails, the error is not one to retry ([`StoreError::Backend`], not
    /// transient), since a retry would find nothing left to announce and
    /// answer success while other nodes may still serve those sessions from
    /// their caches (until [`ClusterOptions::cache_ttl`] at most).
    async fn delete_owner(&self, owner: &str) -> Result<Vec<Removed>, StoreError> {
        let listed = self.inner.by_owner(owner).await?;
        let mut removed = self
            .delete_announced(InvalidationKind::OwnerRevoked, listed, Some(owner))
            .await?;
        let (rest, hashes) = match self.inner.delete_owner_keyed(owner).await {
            Ok(rest) => rest,
            Err(e) => return Err(e.after_removing(removed)),
        };
        removed.extend(rest);
        // By key hash: a session this node could not decode (another
        // version of the session type, mid-deploy) is announced too.
        if let Err(e) = self
            .removed_keys(InvalidationKind::OwnerRevoked, &hashes)
            .await
        {
            let e = StoreError::Backend(format!(
                "{} sessions were revoked but the other nodes could not be told; they may \
                 serve them from their caches until the cache TTL: {e}",
                hashes.len()
            ));
            return Err(e.after_removing(removed));
        }
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cache_key_is_the_storage_key_hash() {
        let id = SessionId::generate();
        let hex: String = key_hash(&id).iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, id.storage_key());
    }

    #[test]
    fn invalid_options_are_refused_with_every_problem_named() {
        let err = ClusterOptions::new([0u8; 32])
            .cache_ttl(Duration::ZERO)
            .cache_capacity(0)
            .channel("")
            .validate()
            .unwrap_err()
            .to_string();
        for word in ["all zeros", "TTL", "capacity", "channel"] {
            assert!(err.contains(word), "{err}");
        }
        assert!(ClusterOptions::new([1u8; 32]).validate().is_ok());
    }

    #[test]
    fn the_cache_capacity_is_bounded_and_the_ttl_is_not() {
        let options = |capacity| ClusterOptions::new([1u8; 32]).cache_capacity(capacity);
        assert!(options(cache::MAX_CAPACITY).validate().is_ok());
        let err = options(cache::MAX_CAPACITY + 1).validate().unwrap_err();
        assert!(err.to_string().contains("at most 16 777 216"), "{err}");
        assert!(options(u64::MAX).validate().is_err());
        // A TTL past what the clock can add is "never" (moka, used before,
        // panicked on TTLs over 1 000 years).
        let long = ClusterOptions::new([1u8; 32]).cache_ttl(Duration::MAX);
        assert!(long.validate().is_ok());
    }
}

/// A revoke or bulk delete whose connection to Redis breaks right after the
/// delete, through a real Redis server: the other nodes still hear of it.
#[cfg(all(test, feature = "testing"))]
mod revoke_tests {
    use std::sync::atomic::AtomicBool;

    use super::*;
    use crate::expiry::ExpiryPolicy;
    use crate::testing::redis_server::RedisServer;

    type Data = u32;

    /// What a [`Hooked`] Redis store does besides its work.
    enum Hook {
        /// Once armed, right after its next delete of sessions returns, has
        /// Redis close every ordinary client connection (not the
        /// subscribers'): whatever the caller sends next on them fails.
        CutOffAfterDeleting {
            server: Arc<RedisServer>,
            armed: AtomicBool,
            /// `by_owner` lists nothing (sessions a revoke's listing
            /// missed: gained meanwhile, or undecodable here).
            hide_listing: bool,
            /// A regenerate whose old id is gone answers `Gone` (a plain
            /// backend: the Redis store itself would find its new id
            /// holding this very save and answer saved).
            plain_regenerate: bool,
        },
        /// `by_owner` gives its first listed session to another user right
        /// after listing (a login finishing while a revoke runs), before the
        /// caller deletes what was listed.
        /// (The ids it may be given: listings name sessions by handle.)
        ReassignAfterListing(Arc<parking_lot::Mutex<Vec<SessionId>>>),
    }

    /// A Redis store (as a cluster backend) with a [`Hook`].
    struct Hooked {
        inner: RedisStore<Data>,
        hook: Hook,
    }

    impl Hooked {
        fn arm(&self) {
            if let Hook::CutOffAfterDeleting { armed, .. } = &self.hook {
                armed.store(true, Ordering::SeqCst);
            }
        }

        /// After a delete, or a save (a backend without `save_and_publish`
        /// publishes after its save).
        fn deleted(&self) {
            if let Hook::CutOffAfterDeleting { server, armed, .. } = &self.hook {
                if armed.swap(false, Ordering::SeqCst) {
                    server.command("CLIENT KILL TYPE normal").unwrap();
                }
            }
        }
    }

    #[async_trait]
    impl Store<Data> for Hooked {
        async fn load(&self, cookie: &str) -> Result<Option<Record<Data>>, StoreError> {
            self.inner.load(cookie).await
        }
        async fn save(&self, save: Save<'_, Data>) -> Result<SaveOutcome, StoreError> {
            self.inner.save(save).await
        }
        async fn delete(&self, id: &SessionId) -> Result<bool, StoreError> {
            self.inner.delete(id).await
        }
    }

    #[async_trait]
    impl QueryStore<Data> for Hooked {
        fn iter(&self) -> BoxStream<'_, Result<Record<Data, SessionHandle>, StoreError>> {
            self.inner.iter()
        }
        async fn delete_handle(&self, handle: &SessionHandle) -> Result<bool, StoreError> {
            let out = self.inner.delete_handle(handle).await;
            self.deleted();
            out
        }
        async fn by_owner(
            &self,
            owner: &str,
        ) -> Result<Vec<Record<Data, SessionHandle>>, StoreError> {
            if let Hook::CutOffAfterDeleting {
                hide_listing: true, ..
            } = &self.hook
            {
                return Ok(Vec::new());
            }
            let listed = self.inner.by_owner(owner).await?;
            if let (Hook::ReassignAfterListing(ids), Some(first)) = (&self.hook, listed.first()) {
                let id = *ids
                    .lock()
                    .iter()
                    .find(|id| id.handle() == first.id)
                    .expect("a session the test made");
                let mut moved = first.clone().with_id(id);
                moved.owner = Some("someone-else".into());
                let changes = crate::store::MetaChanges {
                    owner: true,
                    ..crate::store::MetaChanges::NONE
                };
                let saved = self
                    .inner
                    .save(Save::update(&moved, None).with_changes(changes))
                    .await?;
                assert!(saved.is_saved());
            }
            Ok(listed)
        }
        async fn delete_owner(&self, owner: &str) -> Result<Vec<Removed>, StoreError> {
            let out = self.inner.delete_owner(owner).await;
            self.deleted();
            out
        }
        async fn bulk_delete(
            &self,
            predicate: Predicate<'_, Data>,
        ) -> Result<Vec<Removed>, StoreError> {
            let out = self.inner.bulk_delete(predicate).await;
            self.deleted();
            out
        }
    }

    #[async_trait]
    impl ClusterBackend<Data> for Hooked {
        async fn save_versioned(
            &self,
            save: Save<'_, Data>,
        ) -> Result<(SaveOutcome, Option<u64>), StoreError> {
            if let (
                Hook::CutOffAfterDeleting {
                    plain_regenerate: true,
                    ..
                },
                SaveKind::Regenerate { old },
            ) = (&self.hook, save.kind)
            {
                if self.inner.load(&old.encode()).await?.is_none() {
                    return Ok((SaveOutcome::Gone, None));
                }
            }
            let out = RedisStore::save_versioned(&self.inner, save, None).await;
            self.deleted();
            out
        }
        async fn delete_and_publish(
            &self,
            keys: &[KeyHash],
            channel: &str,
            messages: &[Vec<u8>],
        ) -> Result<Vec<bool>, StoreError> {
            let out = RedisStore::delete_and_publish(&self.inner, keys, channel, messages).await;
            self.deleted();
            out
        }
        async fn delete_owned_and_publish(
            &self,
            keys: &[KeyHash],
            owner: &str,
            channel: &str,
            messages: &[Vec<u8>],
        ) -> Result<Vec<bool>, StoreError> {
            let out =
                RedisStore::delete_owned_and_publish(&self.inner, keys, owner, channel, messages)
                    .await;
            self.deleted();
            out
        }
        async fn delete_following_and_publish(
            &self,
            id: &SessionId,
            channel: &str,
            message: &[u8],
        ) -> Result<(Followed, Option<KeyHash>), StoreError> {
            let out =
                RedisStore::delete_following_keyed(&self.inner, id, Some((channel, message))).await;
            self.deleted();
            out
        }
    }

    /// A logout that followed a regenerate and deleted the session under
    /// its new id, but could not announce that id (the connections cut
    /// right after the delete), announces it when repeated: the moves are
    /// kept, so the repeat finds where the session went although it is
    /// gone (it used to find nothing, and other nodes served the ended
    /// login from their caches for up to the cache TTL).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_followed_logout_whose_announcement_failed_announces_when_repeated() {
        let server = Arc::new(RedisServer::start().unwrap());
        let (a, b) = cut_off_pair(&server, false).await;
        let r = owned("ann");
        a.save(Save::create(&r)).await.unwrap();
        let loaded = a.load(&r.id.encode()).await.unwrap().unwrap();
        let mut moved = loaded.clone();
        moved.id = SessionId::generate();
        let out = a.save(Save::regenerate(&moved, loaded.id, None)).await;
        assert!(out.unwrap().is_saved());
        assert!(b.load(&moved.id.encode()).await.unwrap().is_some());
        assert!(b.is_cached(&moved.id));
        a.inner.arm();
        let first = a.delete_following(&loaded.id).await;
        assert!(first.is_err(), "the announcement was cut off: {first:?}");
        assert!(b.is_cached(&moved.id), "not told yet");
        // The first command on each killed connection fails; the
        // connection is then made again.
        for node in [&a.inner.inner, &b.inner] {
            let _ = node.load(&SessionId::generate().encode()).await;
        }
        let repeated = a.delete_following(&loaded.id).await;
        assert_eq!(
            repeated.unwrap(),
            Followed::Nothing,
            "already deleted by the first call"
        );
        forgotten_within_2s(&b, &moved.id, "the login a logout followed").await;
        assert!(b.load(&moved.id.encode()).await.unwrap().is_none());
    }

    /// A session given to another user between a revoke's listing and its
    /// delete is that user's: the revoke leaves it (and its new owner's
    /// index entry) alone and removes the rest.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_revoke_spares_a_session_given_to_another_user_after_listing() {
        let server = RedisServer::start().unwrap();
        let tag = &SessionId::generate().storage_key()[..12];
        let inner = redis(&server, tag).await;
        let conns = inner.shared_connections();
        let options = ClusterOptions::new([7u8; 32]).channel(format!("inv-{tag}"));
        let made = Arc::new(parking_lot::Mutex::new(Vec::new()));
        let node = Cached::new(
            Hooked {
                inner,
                hook: Hook::ReassignAfterListing(made.clone()),
            },
            conns,
            vec![server.url()],
            options,
        )
        .await;
        let mut ids = Vec::new();
        for _ in 0..3 {
            let r = owned("victim");
            node.save(Save::create(&r)).await.unwrap();
            ids.push(r.id);
        }
        *made.lock() = ids.clone();
        let removed = node.delete_owner("victim").await.unwrap();
        assert_eq!(removed.len(), 2, "{removed:?}");
        let survivors: Vec<Record<Data, SessionHandle>> =
            node.inner.inner.by_owner("someone-else").await.unwrap();
        assert_eq!(survivors.len(), 1);
        assert!(ids.iter().any(|id| id.handle() == survivors[0].id));
        assert!(node
            .inner
            .inner
            .by_owner("victim")
            .await
            .unwrap()
            .is_empty());
    }

    /// With a backend that publishes apart from its saves, a regenerate that
    /// landed and whose announcement failed is retried by `Resilient`: the
    /// retry finds the old id gone (and `Resilient` the new one there), and
    /// the other nodes must still hear that the old id is dead.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_regenerate_retried_after_its_announcement_failed_still_reaches_the_other_nodes() {
        let server = Arc::new(RedisServer::start().unwrap());
        let (a, b) = cut_off_pair(&server, true).await;
        let r = Record::new(
            SessionId::generate(),
            1,
            std::time::SystemTime::now(),
            &ExpiryPolicy::default(),
        );
        a.save(Save::create(&r)).await.unwrap();
        assert!(b.load(&r.id.encode()).await.unwrap().is_some());
        assert!(b.is_cached(&r.id));
        let mut moved = a.load(&r.id.encode()).await.unwrap().unwrap();
        moved.id = SessionId::generate();
        a.inner.arm();
        let a =
            crate::resilience::Resilient::new(a, crate::resilience::ResilienceConfig::default());
        let out = a.save(Save::regenerate(&moved, r.id, None)).await.unwrap();
        assert_eq!(out, SaveOutcome::Saved(moved.id.encode()));
        // The first command on each killed connection fails.
        let _ = b.inner.load(&SessionId::generate().encode()).await;
        forgotten_within_2s(&b, &r.id, "the id the regenerate retired").await;
    }

    /// Waits (up to 2 s) until node `b` no longer caches `id`, then checks
    /// that it does not load either; `what` names it in the failure.
    async fn forgotten_within_2s(b: &ClusteredStore<Data>, id: &SessionId, what: &str) {
        let start = std::time::Instant::now();
        while b.is_cached(id) {
            assert!(
                start.elapsed() < Duration::from_secs(2),
                "node B still serves {what}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(b.load(&id.encode()).await.unwrap().is_none());
    }

    /// What the listing missed is deleted with the owner's index and
    /// announced on its own; when that announcement fails, the revoke says
    /// so, and `Resilient` does not retry it into a success that told no one.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_revoke_whose_separate_announcement_failed_is_not_retried_into_success() {
        let server = Arc::new(RedisServer::start().unwrap());
        let tag = &SessionId::generate().storage_key()[..12];
        let inner = redis(&server, tag).await;
        let conns = inner.shared_connections();
        let backend = Hooked {
            inner,
            hook: Hook::CutOffAfterDeleting {
                server: server.clone(),
                armed: AtomicBool::new(false),
                hide_listing: true,
                plain_regenerate: false,
            },
        };
        let options = ClusterOptions::new([7u8; 32]).channel(format!("inv-{tag}"));
        let node = Cached::new(backend, conns, vec![server.url()], options).await;
        for _ in 0..2 {
            node.save(Save::create(&owned("victim"))).await.unwrap();
        }
        node.inner.arm();
        let resilient =
            crate::resilience::Resilient::new(node, crate::resilience::ResilienceConfig::default());
        let e = resilient.delete_owner("victim").await.unwrap_err();
        assert!(!e.is_transient(), "{e}");
        assert_eq!(e.removed().len(), 2, "{e}");
        assert!(e.to_string().contains("could not be told"), "{e}");
    }

    /// Node A over a [`Hook::CutOffAfterDeleting`] backend (armed later;
    /// `plain_regenerate` as given) and node B, a plain clustered store, on
    /// one prefix and channel, both subscribed.
    async fn cut_off_pair(
        server: &Arc<RedisServer>,
        plain_regenerate: bool,
    ) -> (Cached<Hooked, Data>, ClusteredStore<Data>) {
        let tag = &SessionId::generate().storage_key()[..12];
        let options = || ClusterOptions::new([7u8; 32]).channel(format!("inv-{tag}"));
        let inner = redis(server, tag).await;
        let conns = inner.shared_connections();
        let backend = Hooked {
            inner,
            hook: Hook::CutOffAfterDeleting {
                server: server.clone(),
                armed: AtomicBool::new(false),
                hide_listing: false,
                plain_regenerate,
            },
        };
        let a = Cached::new(backend, conns, vec![server.url()], options()).await;
        let b = ClusteredStore::with_store(redis(server, tag).await, vec![server.url()], options())
            .await
            .unwrap();
        let until_subscribed = async {
            while !(a.is_subscribed() && b.is_subscribed()) {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(5), until_subscribed)
            .await
            .unwrap();
        (a, b)
    }

    /// A new session of `owner`'s.
    fn owned(owner: &str) -> Record<Data> {
        let mut r = Record::new(
            SessionId::generate(),
            1,
            std::time::SystemTime::now(),
            &ExpiryPolicy::default(),
        );
        r.owner = Some(owner.to_owned());
        r
    }

    async fn redis(server: &RedisServer, tag: &str) -> RedisStore<Data> {
        RedisStore::builder(server.url())
            .key_prefix(format!("revoke-{tag}:"))
            .response_timeout(Duration::from_millis(300))
            .connect()
            .await
            .unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_revoke_or_bulk_delete_cut_off_after_its_delete_still_reaches_the_other_nodes() {
        let server = Arc::new(RedisServer::start().unwrap());
        let (a, b) = cut_off_pair(&server, false).await;
        // Sessions of one owner, cached by node B.
        for (round, owner) in ["victim", "bulk"].into_iter().enumerate() {
            let sessions: Vec<Record<Data>> = (0..3).map(|_| owned(owner)).collect();
            for r in &sessions {
                a.save(Save::create(r)).await.unwrap();
                assert!(b.load(&r.id.encode()).await.unwrap().is_some());
                assert!(b.is_cached(&r.id));
            }
            a.inner.arm();
            let _ = if round == 0 {
                a.delete_owner(owner).await.map(|_| ())
            } else {
                let owner = owner.to_owned();
                a.bulk_delete(&move |r: &Record<Data, SessionHandle>| {
                    r.owner.as_deref() == Some(&owner)
                })
                .await
                .map(|_| ())
            };
            // The first command on each killed connection fails; the
            // connection is then made again.
            for node in [&a.inner.inner, &b.inner] {
                let _ = node.load(&SessionId::generate().encode()).await;
            }
            for r in &sessions {
                let what = format!("a session {owner} deleted");
                forgotten_within_2s(&b, &r.id, &what).await;
            }
        }
    }
}
