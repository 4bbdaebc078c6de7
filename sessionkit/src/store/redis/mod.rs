//! [`RedisStore`]: sessions in Redis, one command per load and one per save,
//! with no lost updates and a per-owner index (feature `redis`).
//!
//! ```no_run
//! use sessionkit::{Config, Sessions, store::redis::RedisStore};
//!
//! #[derive(serde::Serialize, serde::Deserialize, Default, Clone)]
//! struct User { name: Option<String> }
//!
//! # async fn run() -> Result<(), sessionkit::StoreError> {
//! let store = RedisStore::<User>::builder("redis://127.0.0.1:6379/")
//!     .key_prefix("myapp:")
//!     .connect()
//!     .await?;
//! let sessions = Sessions::new(store, Config::default());
//! # let _ = sessions; Ok(()) }
//! ```
//!
//! # Layout in Redis
//! - A session lives at `<prefix><sha256(id) hex>`, as one string value
//!   `sk1:<version>:<sha256(owner) hex>:<payload>` with a TTL (`PX`) equal to
//!   the time it has left (the earlier of its idle and absolute deadlines).
//!   The key is a hash of the id, so a key listing yields no cookie value,
//!   and the payload names its session by that hash too (its handle, see
//!   [`crate::SessionHandle`]), so a dump yields no cookie value either. The
//!   data and the owner's name are readable in a dump unless stored values
//!   are sealed (feature `crypto`).
//! - Each owner has a set `<prefix>owner:<sha256(owner) hex>` of its sessions'
//!   key hashes, written by the same script as the session (so the two never
//!   disagree for long), expiring with the owner's longest-lived session.
//!   A session that expires leaves its member behind (Redis cannot tell the
//!   set); whenever a set gains a member, the script checks three random
//!   others and drops those whose session is gone, so an owner who logs in
//!   for years without logging out keeps a set of about their live sessions
//!   (the dead share stays around a third or less), and listing or revoking
//!   stays O(their sessions). Needs Redis 5 or later (effects replication of
//!   scripts).
//!
//! # Round trips
//! - **load** is one `GET`. The cookie value is parsed as a [`SessionId`]
//!   first: a malformed value (`*`, CRLF, 10 kB of junk) never reaches Redis.
//!   `GETEX` is not needed: the core enforces expiry from the record's own
//!   deadlines and writes the session back (moving the idle deadline) once
//!   less than half of the idle window is left. That write resets the key's
//!   TTL to the new remaining lifetime, so the TTL always matches the record.
//!   Extending the TTL on every read without moving the recorded deadline
//!   would keep dead sessions in memory and change nothing else.
//! - **save** is one `EVALSHA` of a Lua script, loaded once at connect
//!   (after a server restart the store reloads it on `NOSCRIPT` and sends
//!   the command again), or, to
//!   create a session without an owner (no index to keep), one plain
//!   `SET … PX … NX`. Create writes with `NX` (an id collision is an error, never an
//!   overwrite); update writes only if the key still exists (a concurrent
//!   logout is never undone: [`SaveOutcome::Gone`]); regenerate writes the new
//!   key before deleting the old one, in one script, and creates nothing if
//!   the old one is gone.
//!
//! # Concurrent updates
//! The script writes only if the stored version equals the version this
//! request loaded. On a mismatch it returns the current value instead; the
//! store then reapplies this request's changes onto it with
//! [`Save::merged_onto`] (the changed top-level data fields, flash messages
//! read and set, owner and binding if set) and tries again (up to
//! [`RedisStoreBuilder::max_merge_retries`] times). The common path stays one
//! command. When two requests change the same field, the last writer wins.
//!
//! # Why redis-rs
//! redis-rs is the most used Rust client, its `ConnectionManager` multiplexes
//! every request over one connection and reconnects on its own (the store
//! keeps one per Tokio runtime it is used from: a command sent to another
//! runtime's connection crosses threads twice), and its
//! `Script` type hashes and loads the scripts (a save builds its `EVALSHA`
//! itself: redis-rs' `ScriptInvocation` keeps every argument in a `Vec` of
//! its own and copies them into the command, about 7 % of a save's
//! instructions). fred (under
//! tower-sessions' Redis store) was measured against it in `benches/redis.rs`:
//! 64 concurrent bare `GET`s on one connection took the same time with
//! either client within the run-to-run noise (redis-rs 0.57–0.66 ms, fred
//! 0.53–0.99 ms over two runs on a shared 2-core machine), so the client
//! is not what bounds this workload and the better-known one was kept.
//! Measured since by CPU time, which is steadier than latency on a shared
//! machine (`sessionkit-bench clients`, BENCHMARKS.md): fred spends 1.2–1.4×
//! the CPU redis-rs spends per `GET` at the same number in flight.
//!
//! An update costs Redis more time than a bare `SET`: about 6–9 µs per
//! `EVALSHA` of the update script against about 1 µs per `SET`, from
//! `INFO commandstats` under `redis-benchmark` on the benchmark machine
//! (8–11 µs before the next version was computed by the caller instead of
//! by `string.format` in the script). That is the price of the version
//! check, the no-resurrection rule and the owner index in one round trip.
//! The caller also builds the whole stored value (header and payload), and
//! the update script, the one run on every write, defines no helper
//! functions: about 0.3–0.5 µs less of Redis's time per update on quiet
//! hosts (`bench/runs/lua-script-cost-*`).
//!
//! # Memory allocator
//! Each request in flight holds its allocations across the round trip. With
//! glibc's allocator and a few dozen requests in flight, glibc's per-thread
//! cache of free chunks (7 per size class by default) overflows and about
//! half of a load's allocations take its slower path. Starting the service
//! with `GLIBC_TUNABLES=glibc.malloc.tcache_count=128` (an environment
//! variable read at process start, so the library cannot set it) cut a
//! Redis-backed `GET /read` from 41.0k to 36.7k instructions and raised the
//! load benchmark's throughput share by about 0.03 (BENCHMARKS.md, "The
//! allocator"); a different global allocator such as mimalloc did the same
//! or more. Nothing changes for the in-memory and cookie stores.
//!
//! # Redis Cluster (feature `cluster`)
//! `RedisStore::connect_cluster` / `RedisStore::cluster_builder` talk to
//! a Redis Cluster through redis-rs' cluster client. The scripts touch
//! several keys at once (a session and its owner's set; the old and new
//! session on regenerate; an owner's set and all its sessions on revoke), and
//! a cluster runs a script only when all its keys share a hash slot, so on a
//! cluster the key prefix is put inside a hash tag (`{sessionkit:}<hash>`):
//! one store's keys live in one slot, every guarantee above holds unchanged,
//! and `SCAN` runs on that slot's master. The trade-off (one application's
//! sessions on one master) and why no finer tag works are explained in the
//! `cluster` submodule's source docs.
//!
//! # Payloads
//! By default a value's payload is the compact record layout: the metadata
//! (the session's handle, never its id; deadlines, version, owner) in fixed
//! binary fields and the data and flash messages as JSON, so `redis-cli GET`
//! still shows the data readably.
//! Values written as whole-record JSON by earlier releases still load.
//! [`RedisStoreBuilder::codec`] adds compression and AEAD sealing.
//!
//! # Redis settings
//! Give sessions a Redis (or a database of one) that does not evict:
//! `maxmemory-policy noeviction`, or no `maxmemory` at all. Under an
//! eviction policy Redis may drop a live session (a user logged out early)
//! or, worse, an owner's index set while the sessions it lists live on
//! (loads read the sessions, only saves touch the set, so LRU picks the
//! set first); `revoke_owner` and `by_owner` would then miss those
//! sessions. With `noeviction` a full Redis refuses writes instead, which
//! the store reports as an error (503), and nothing is lost silently.
//!
//! A server loading its data after a restart (`LOADING`), a replica cut off
//! from its master (`MASTERDOWN`) and a failover under way (`READONLY`,
//! `TRYAGAIN`, `CLUSTERDOWN`) are reported as
//! [`StoreError::Unavailable`]: transient, retried by
//! [`Resilient`](crate::resilience::Resilient).
//!
//! [`QueryStore::count`] counts the store's keys without fetching them, so
//! it also counts values that [`QueryStore::iter`] skips: ones it cannot
//! decode (e.g. after a change of codec) or whose recorded deadline has
//! passed before their TTL (a clock step on the server). Count the
//! stream of [`QueryStore::iter`] for the exact figure.

#[cfg(feature = "cluster")]
mod cluster;
mod conn;
mod value;

pub(crate) use conn::Conns;
#[cfg(feature = "cluster")]
pub(crate) use conn::SubscribeSetup;
use conn::{Conn, Maker};

use std::collections::HashSet;
use std::marker::PhantomData;
use std::sync::{Arc, LazyLock};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use futures_util::stream::{self, BoxStream, StreamExt};
use redis::aio::ConnectionManagerConfig;
use redis::{RedisError, Script, Value};
use sha2::{Digest, Sha256};

use crate::error::StoreError;
use crate::expiry::{Clock, SystemClock};
use crate::id::Named;
use crate::id::{SessionHandle, SessionId};
use crate::record::{Record, SessionData};
use crate::store::{
    in_passes, Followed, Pass, Predicate, QueryStore, Removed, Save, SaveKind, SaveOutcome, Store,
};

/// The default key prefix.
pub const DEFAULT_KEY_PREFIX: &str = "sessionkit:";

/// An invalidation the update and regenerate scripts publish themselves,
/// in the same run as the write and only when it happened (the clustered
/// store: one round trip per save instead of a save and a `PUBLISH`).
pub(crate) struct Announce<'a> {
    /// The pub/sub channel.
    pub(crate) channel: &'a str,
    /// The message, given the version the save writes (an update's; a
    /// regenerate's message does not depend on it).
    pub(crate) message: &'a (dyn Fn(u64) -> Vec<u8> + Send + Sync),
    /// SHA-256 of the saved record's id, which the caller already has (the
    /// clustered store's cache key): the save need not hash it again.
    pub(crate) digest: [u8; 32],
}

/// Every script, compiled (hashed) once per process.
struct Scripts {
    create: Script,
    update: Script,
    regenerate: Script,
    delete: Script,
    delete_following: Script,
    delete_owner: Script,
    prune_index: Script,
}

macro_rules! script {
    ($file:literal) => {
        Script::new(concat!(include_str!("index.lua"), include_str!($file)))
    };
}

static SCRIPTS: LazyLock<Scripts> = LazyLock::new(|| Scripts {
    create: script!("create.lua"),
    // Without the prelude: it inlines what it needs (see the file).
    update: Script::new(include_str!("update.lua")),
    regenerate: script!("regenerate.lua"),
    delete: script!("delete.lua"),
    delete_following: script!("delete_following.lua"),
    delete_owner: script!("delete_owner.lua"),
    prune_index: script!("prune_index.lua"),
});

/// A session store on Redis. Cheap to clone: clones share its connections,
/// one multiplexed, self-reconnecting connection per Tokio runtime that uses
/// the store (see [`RedisStore::connections`]). See the [module docs](self)
/// for the design.
pub struct RedisStore<T> {
    conns: Arc<Conns>,
    prefix: String,
    scan_batch: usize,
    max_merge_retries: u32,
    response_timeout: Duration,
    clock: Arc<dyn Clock>,
    payload: value::PayloadCodec,
    _data: PhantomData<fn() -> T>,
}

impl<T> Clone for RedisStore<T> {
    fn clone(&self) -> Self {
        RedisStore {
            conns: self.conns.clone(),
            prefix: self.prefix.clone(),
            scan_batch: self.scan_batch,
            max_merge_retries: self.max_merge_retries,
            response_timeout: self.response_timeout,
            clock: self.clock.clone(),
            payload: self.payload.clone(),
            _data: PhantomData,
        }
    }
}

impl<T> std::fmt::Debug for RedisStore<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

/// Builds a [`RedisStore`]; from [`RedisStore::builder`].
#[must_use]
pub struct RedisStoreBuilder<T> {
    url: String,
    prefix: String,
    scan_batch: usize,
    max_merge_retries: u32,
    response_timeout: Duration,
    connection_timeout: Option<Duration>,
    connect_retries: Option<usize>,
    lazy: bool,
    #[cfg(feature = "redis-tls")]
    tls_root_certificate: Option<Vec<u8>>,
    clock: Arc<dyn Clock>,
    /// `Some(nodes)`: connect to a Redis Cluster through these seed nodes.
    #[cfg(feature = "cluster")]
    cluster_nodes: Option<Vec<String>>,
    payload: value::PayloadCodec,
    _data: PhantomData<fn() -> T>,
}

impl<T> std::fmt::Debug for RedisStoreBuilder<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Not the URL: it may hold a password.
        f.debug_struct("RedisStoreBuilder")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl<T: SessionData> RedisStoreBuilder<T> {
    /// The prefix of every key this store writes (default `sessionkit:`).
    /// Give each application sharing one Redis its own.
    pub fn key_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// How many keys one `SCAN` step asks for when iterating (default 500).
    pub fn scan_batch(mut self, keys: usize) -> Self {
        self.scan_batch = keys.max(1);
        self
    }

    /// How many times a save that lost a version race is merged and retried
    /// before giving up with [`StoreError::Conflict`] (default 16).
    pub fn max_merge_retries(mut self, retries: u32) -> Self {
        self.max_merge_retries = retries;
        self
    }

    /// Fails a command that gets no answer within `timeout` with
    /// [`StoreError::Timeout`] (default 500 ms, redis-rs' default).
    pub fn response_timeout(mut self, timeout: Duration) -> Self {
        self.response_timeout = timeout;
        self
    }

    /// The clock TTLs are computed with (default the system clock). Give it
    /// the clock of your [`crate::Config`] when tests move time by hand.
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Trusts this CA (PEM) for `rediss://` instead of the system's roots:
    /// for a Redis whose certificate comes from a private CA (every node's,
    /// on a cluster).
    #[cfg(feature = "redis-tls")]
    pub fn tls_root_certificate(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.tls_root_certificate = Some(pem.into());
        self
    }

    /// Encodes stored values with `codec` instead of the plain payload: compression
    /// and, with [`CodecBuilder::seal`](crate::codec::CodecBuilder::seal) and
    /// [`KeyPurpose::StoreData`](crate::keys::KeyPurpose::StoreData),
    /// encryption, so a dump of Redis yields neither data nor session ids.
    /// Turning it on or off makes existing sessions undecodable: their users
    /// start fresh sessions (never a silently trusted plain value).
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), sessionkit::StoreError> {
    /// use sessionkit::codec::Codec;
    /// use sessionkit::keys::{KeyPurpose, KeyRing};
    /// use sessionkit::store::redis::RedisStore;
    /// let ring = KeyRing::builder().current(1, std::env::var("SESSION_SECRET").unwrap()).build().unwrap();
    /// let store = RedisStore::<u64>::builder("redis://127.0.0.1/")
    ///     .codec(Codec::builder().seal(&ring, KeyPurpose::StoreData).context("redis").build())
    ///     .connect()
    ///     .await?;
    /// # let _ = store; Ok(()) }
    /// ```
    #[cfg(feature = "crypto")]
    pub fn codec(mut self, codec: crate::codec::Codec) -> Self {
        self.payload.codec = Some(Arc::new(codec));
        self
    }

    /// Bounds each attempt to (re)connect (default: redis-rs' default).
    pub fn connection_timeout(mut self, timeout: Duration) -> Self {
        self.connection_timeout = Some(timeout);
        self
    }

    /// How many times a failed connection attempt is retried, with
    /// exponential backoff and jitter from 100 ms, both by
    /// [`connect`](Self::connect) and by every later reconnection (default:
    /// redis-rs' 6, which makes `connect` to a Redis that is down take
    /// about 11 s to fail, measured here). Lower it for a fast failure at start-up, e.g. 0
    /// when [`Resilient`](crate::resilience::Resilient) retries instead.
    /// Single-node connections only; Redis Cluster clients keep their own.
    pub fn connect_retries(mut self, retries: usize) -> Self {
        self.connect_retries = Some(retries);
        self
    }

    /// Makes [`connect`](Self::connect) return at once without reaching
    /// Redis: the connection is made on the first command, and the scripts
    /// are loaded on first use. An application can then start while Redis
    /// is down and serve what does not need sessions; session operations
    /// fail with a transient error (`503` at the HTTP edge, or the
    /// anonymous mode) until Redis answers. Pair it with
    /// [`Resilient`](crate::resilience::Resilient). On a Redis Cluster the
    /// whole cluster connection (slot map included) is made by the first
    /// command; a failed attempt is tried again by the next one.
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), sessionkit::StoreError> {
    /// use sessionkit::store::redis::RedisStore;
    /// let store = RedisStore::<u64>::builder("redis://127.0.0.1/")
    ///     .lazy()
    ///     .connect()
    ///     .await?; // returns even if Redis is down
    /// # let _ = store; Ok(()) }
    /// ```
    pub fn lazy(mut self) -> Self {
        self.lazy = true;
        self
    }

    /// Connects and loads the scripts.
    ///
    /// The URL may be `redis://[user:password@]host:port/db`, `rediss://…`
    /// (feature `redis-tls`) or `unix:///path/to/redis.sock`. Errors never
    /// quote the URL (it may hold a password).
    pub async fn connect(self) -> Result<RedisStore<T>, StoreError> {
        let maker = self.maker()?;
        let conn = if self.lazy {
            maker.make()
        } else {
            maker.connect().await
        }
        .map_err(|e| map_err(e, self.response_timeout))?;
        self.finish(conn, maker).await
    }

    /// Builds the store at once, without reaching Redis and without
    /// awaiting: what `.lazy().connect()` does, for code that cannot
    /// `.await`, such as an actix-web app factory (see
    /// [`crate::http::actix`]). A store built once before the server starts
    /// and cloned into every worker works as well: it opens a connection on
    /// each worker's runtime by that worker's first command (see
    /// [`RedisStore::connections`]).
    ///
    /// Must be called inside a Tokio runtime (actix-web's workers run one);
    /// outside, it fails with [`StoreError::Backend`]. Works for a Redis
    /// Cluster too (the cluster connection is made by the first command).
    ///
    /// ```no_run
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), sessionkit::StoreError> {
    /// use sessionkit::store::redis::RedisStore;
    /// let store = RedisStore::<u64>::builder("redis://127.0.0.1/").build_lazy()?;
    /// # let _ = store; Ok(()) }
    /// ```
    #[cfg_attr(
        feature = "actix",
        doc = r#"
With actix-web, in the app factory:

```no_run
use actix_web::{web, App, HttpServer};
use sessionkit::http::actix::SessionMiddleware;
use sessionkit::store::redis::RedisStore;
use sessionkit::{Config, Session, Sessions};

async fn hit(session: Session<u64>) -> String {
    let mut visits = session.data_mut();
    *visits += 1;
    visits.to_string()
}

fn main() -> std::io::Result<()> {
    actix_web::rt::System::new().block_on(async {
        HttpServer::new(|| {
            // Once per worker, on the worker's thread.
            let store = RedisStore::<u64>::builder("redis://127.0.0.1/")
                .build_lazy()
                .expect("a valid Redis URL");
            let sessions = Sessions::new(store, Config::default());
            App::new()
                .wrap(SessionMiddleware::new(&sessions))
                .route("/", web::get().to(hit))
        })
        .bind(("127.0.0.1", 8080))?
        .run()
        .await
    })
}
```
"#
    )]
    pub fn build_lazy(self) -> Result<RedisStore<T>, StoreError> {
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(StoreError::Backend(
                "build_lazy must run inside a Tokio runtime (the connection's tasks are spawned on it)"
                    .into(),
            ));
        }
        let maker = self.maker()?;
        let conn = maker
            .make()
            .map_err(|e| map_err(e, self.response_timeout))?;
        Ok(self.assemble(conn, maker))
    }

    /// How this store's connections are made: from the cluster's seed
    /// nodes, or the single-node client and its settings (no I/O).
    fn maker(&self) -> Result<Maker, StoreError> {
        #[cfg(feature = "cluster")]
        if let Some(nodes) = &self.cluster_nodes {
            return Ok(Maker::Cluster(self.cluster_client(nodes)?));
        }
        let (client, config) = self.client_and_config()?;
        Ok(Maker::Single { client, config })
    }

    /// The Redis Cluster client for the seed nodes (no I/O).
    #[cfg(feature = "cluster")]
    fn cluster_client(
        &self,
        nodes: &[String],
    ) -> Result<redis::cluster::ClusterClient, StoreError> {
        #[cfg(feature = "redis-tls")]
        let tls_root = self.tls_root_certificate.clone();
        #[cfg(not(feature = "redis-tls"))]
        let tls_root = None;
        cluster::client(
            nodes,
            Some(self.response_timeout),
            self.connection_timeout,
            tls_root,
        )
        .map_err(|e| {
            StoreError::Backend(format!("invalid Redis Cluster node URL ({:?})", e.kind()))
        })
    }

    /// The single-node client and its connection settings.
    fn client_and_config(&self) -> Result<(redis::Client, ConnectionManagerConfig), StoreError> {
        #[cfg(feature = "redis-tls")]
        let client = match self.tls_root_certificate.clone() {
            Some(root) => redis::Client::build_with_tls(
                self.url.as_str(),
                redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(root),
                },
            ),
            None => redis::Client::open(self.url.as_str()),
        };
        #[cfg(not(feature = "redis-tls"))]
        let client = redis::Client::open(self.url.as_str());
        let client = client.map_err(|e| {
            StoreError::Backend(format!("invalid Redis URL or TLS setup ({:?})", e.kind()))
        })?;
        let mut config =
            ConnectionManagerConfig::new().set_response_timeout(Some(self.response_timeout));
        if let Some(t) = self.connection_timeout {
            config = config.set_connection_timeout(Some(t));
        }
        if let Some(n) = self.connect_retries {
            config = config.set_number_of_retries(n);
        }
        Ok((client, config))
    }

    async fn finish(self, conn: Conn, maker: Maker) -> Result<RedisStore<T>, StoreError> {
        let lazy = self.lazy;
        let store = self.assemble(conn, maker);
        // Lazy: no round trip now; `EVALSHA` loads a missing script on first use.
        if !lazy {
            store.load_scripts().await?;
            // Said once, at start, where an operator reads it.
            if let Ok(Some(policy)) = store.eviction_policy().await {
                tracing::warn!(
                    maxmemory_policy = %policy,
                    "this Redis may evict sessions under memory pressure (maxmemory-policy is \
                     not noeviction): users would be logged out at random; give sessions a \
                     Redis with maxmemory-policy noeviction"
                );
            }
        }
        Ok(store)
    }

    /// The store, with `conn` as the current runtime's connection.
    fn assemble(self, conn: Conn, maker: Maker) -> RedisStore<T> {
        #[cfg(feature = "cluster")]
        let prefix = if self.cluster_nodes.is_some() {
            cluster::hash_tagged(self.prefix)
        } else {
            self.prefix
        };
        #[cfg(not(feature = "cluster"))]
        let prefix = self.prefix;
        // The subscriber connects and subscribes within what the store
        // allows a connection and an answer.
        let subscribe = conn::SubscribeSetup {
            #[cfg(feature = "redis-tls")]
            tls_root: self.tls_root_certificate.clone(),
            timeout: self
                .connection_timeout
                .unwrap_or(std::time::Duration::from_secs(5))
                .saturating_add(self.response_timeout),
        };
        RedisStore {
            conns: Arc::new(Conns::new(conn, maker).with_subscribe(subscribe)),
            prefix,
            scan_batch: self.scan_batch,
            max_merge_retries: self.max_merge_retries,
            response_timeout: self.response_timeout,
            clock: self.clock,
            payload: self.payload,
            _data: PhantomData,
        }
    }
}

/// A scan of the store's keys: the server's, or on a cluster the master's
/// of the store's slot (see [`RedisStore::scan_step`]).
#[derive(Default)]
struct Scan {
    /// The cursor of the next step.
    cursor: u64,
    /// The server answered cursor 0: every key has been seen.
    done: bool,
}

/// What a save script answered.
enum Reply {
    /// Written; the version now stored (filled in by the caller, which
    /// computed it: see `parse_reply`).
    Saved(u64),
    Gone,
    Conflict(Vec<u8>),
    Taken,
    BadHeader,
}

impl<T: SessionData> RedisStore<T> {
    /// A builder for a store on the Redis at `url` (see [`RedisStoreBuilder::connect`]).
    pub fn builder(url: impl Into<String>) -> RedisStoreBuilder<T> {
        RedisStoreBuilder {
            url: url.into(),
            prefix: DEFAULT_KEY_PREFIX.to_owned(),
            scan_batch: 500,
            max_merge_retries: 16,
            response_timeout: Duration::from_millis(500),
            connection_timeout: None,
            connect_retries: None,
            lazy: false,
            #[cfg(feature = "redis-tls")]
            tls_root_certificate: None,
            clock: Arc::new(SystemClock),
            #[cfg(feature = "cluster")]
            cluster_nodes: None,
            payload: value::PayloadCodec::default(),
            _data: PhantomData,
        }
    }

    /// Connects with the defaults (prefix `sessionkit:`).
    pub async fn connect(url: impl Into<String>) -> Result<Self, StoreError> {
        Self::builder(url).connect().await
    }

    /// The key prefix.
    pub fn key_prefix(&self) -> &str {
        &self.prefix
    }

    /// How many Redis connections this store (with its clones) holds: one
    /// per running Tokio runtime it has been used from, up to 64 at once (a
    /// store used from more shares its first connection among the rest). A
    /// store cloned into every actix-web worker thus talks to Redis from
    /// each worker's own thread, as fast as a store built per worker (see
    /// the `conn` module's source docs for the measurement). A runtime that
    /// shuts down takes its connection with it, and the count goes down:
    /// one short-lived runtime after another (a runtime per job or per
    /// test) each get a connection of their own, however many there are.
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), sessionkit::StoreError> {
    /// use sessionkit::store::redis::RedisStore;
    /// let store = RedisStore::<u64>::connect("redis://127.0.0.1/").await?;
    /// assert_eq!(store.connections(), 1); // the runtime it connected on
    /// # Ok(()) }
    /// ```
    pub fn connections(&self) -> usize {
        self.conns.count()
    }

    /// The current runtime's connection (made now if it has none yet).
    fn conn(&self) -> Conn {
        self.conns.get()
    }

    /// The Redis key of a session: the prefix and the SHA-256 of its id.
    pub fn key_of(&self, id: &SessionId) -> String {
        self.key_of_digest(&id_digest(id))
    }

    /// [`RedisStore::key_of`] from the id's SHA-256, for callers that also
    /// need the digest (as the index member): one hash instead of two.
    fn key_of_digest(&self, digest: &[u8; 32]) -> String {
        // Same value as `format!("{prefix}{}", id.storage_key())`, in one
        // allocation and without `fmt` (this runs on every load and save).
        let mut key = String::with_capacity(self.prefix.len() + 64);
        key.push_str(&self.prefix);
        push_hex(&mut key, digest);
        key
    }

    /// The Redis key of an owner's index set: the prefix, `owner:`, and the
    /// SHA-256 of the owner.
    pub fn owner_key_of(&self, owner: &str) -> String {
        format!("{}owner:{}", self.prefix, owner_hash(owner))
    }

    /// The server's `maxmemory-policy` when it may evict sessions (anything
    /// but `noeviction`: every session key has a TTL, so the `volatile-*`
    /// policies evict them too), `None` when it does not or the server will
    /// not say (`CONFIG` disabled or denied by an ACL). A connecting store
    /// (not a lazy one) checks it once and logs a warning: an evicted
    /// session is a user logged out at random, and a store at its memory
    /// limit with `noeviction` fails writes loudly instead.
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), sessionkit::StoreError> {
    /// use sessionkit::store::redis::RedisStore;
    /// let store = RedisStore::<u64>::connect("redis://127.0.0.1/").await?;
    /// if let Some(policy) = store.eviction_policy().await? {
    ///     eprintln!("sessions may be evicted: maxmemory-policy {policy}");
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn eviction_policy(&self) -> Result<Option<String>, StoreError> {
        let mut conn = self.conn();
        let reply: redis::RedisResult<Vec<String>> = redis::cmd("CONFIG")
            .arg("GET")
            .arg("maxmemory-policy")
            .query_async(&mut conn)
            .await;
        let reply = match reply {
            Ok(reply) => reply,
            // Renamed away, denied by an ACL, or a proxy without it.
            Err(e)
                if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::ResponseError)
                    || e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoPerm) =>
            {
                return Ok(None)
            }
            Err(e) => return Err(self.err(e)),
        };
        Ok(match reply.as_slice() {
            [_, policy] if !policy.eq_ignore_ascii_case("noeviction") => Some(policy.clone()),
            _ => None,
        })
    }

    async fn load_scripts(&self) -> Result<(), StoreError> {
        let s = &*SCRIPTS;
        let mut conn = self.conn();
        for script in [
            &s.create,
            &s.update,
            &s.regenerate,
            &s.delete,
            &s.delete_following,
            &s.delete_owner,
        ] {
            script
                .load_async(&mut conn)
                .await
                .map_err(|e| self.err(e))?;
        }
        Ok(())
    }

    fn err(&self, e: RedisError) -> StoreError {
        map_err(e, self.response_timeout)
    }

    /// Decodes the value stored for `id` (whose key digest is `digest`),
    /// refusing one that names another session (a value copied under the
    /// wrong key).
    fn decode_loaded(
        &self,
        raw: &[u8],
        id: &SessionId,
        digest: &[u8; 32],
    ) -> Result<Record<T>, StoreError> {
        let record = self.decode_named(raw)?;
        let belongs = match &record.id {
            Named::Id(stored) => stored == id,
            Named::Handle(h) => h.as_bytes() == digest,
        };
        if !belongs {
            return Err(StoreError::Decode(
                "stored session belongs to another id".into(),
            ));
        }
        Ok(record.with_id(*id))
    }

    /// Decodes a stored value found by a listing: named by its handle (the
    /// store may hold no more than that).
    fn decode_listed(&self, raw: &[u8]) -> Result<Record<T, SessionHandle>, StoreError> {
        let record = self.decode_named(raw)?;
        let handle = record.id.handle();
        Ok(record.with_id(handle))
    }

    fn decode_named(&self, raw: &[u8]) -> Result<Record<T, Named>, StoreError> {
        let stored = value::parse(raw)?;
        let mut record = self.payload.decode(stored.payload)?;
        record.version = stored.version;
        Ok(record)
    }

    /// Runs one save script and interprets its reply.
    async fn run_save(
        &self,
        record: &Record<T>,
        kind: SaveKind,
        expected_version: u64,
        write_id: u64,
        announce: Option<&Announce<'_>>,
    ) -> Result<Reply, StoreError> {
        let ttl = ttl_millis(record, self.clock.now());
        let next = expected_version
            .checked_add(1)
            .ok_or_else(|| StoreError::Backend("session version counter exhausted".into()))?;
        let owner = record.owner.as_deref().map(owner_hash).unwrap_or_default();
        // The whole value, header included, as the script will store it.
        let version = match kind {
            SaveKind::Create => 1,
            SaveKind::Update | SaveKind::Regenerate { .. } => next,
        };
        let digest = match announce {
            Some(a) => a.digest,
            None => id_digest(&record.id),
        };
        let stored = self.payload.encode_stored(
            record,
            &SessionHandle::from_bytes(digest),
            version,
            write_id,
            &owner,
        )?;
        if matches!(kind, SaveKind::Create) && record.owner.is_none() {
            return self.create_anonymous(&digest, stored, ttl).await;
        }
        let s = &*SCRIPTS;
        // The `EVALSHA` command built here rather than through redis-rs'
        // `ScriptInvocation`, which keeps every key and argument in a `Vec`
        // of its own and then copies them all into the command: about ten
        // allocations and a second copy of the value on every save. Keys and
        // index members are written as hex straight into the command.
        let (script, old_digest) = match kind {
            SaveKind::Create => (&s.create, None),
            SaveKind::Update => (&s.update, None),
            SaveKind::Regenerate { old } => (&s.regenerate, Some(id_digest(&old))),
        };
        let mut cmd = redis::Cmd::with_capacity(16, 512 + stored.len());
        cmd.arg("EVALSHA").arg(script.get_hash());
        match &old_digest {
            Some(old) => {
                cmd.arg(2)
                    .arg(KeyArg(&self.prefix, old))
                    .arg(KeyArg(&self.prefix, &digest));
            }
            None => {
                cmd.arg(1).arg(KeyArg(&self.prefix, &digest));
            }
        }
        cmd.arg(&self.prefix)
            .arg(owner)
            .arg(ttl)
            .arg(KeyArg("", &digest))
            .arg(stored);
        match (kind, &old_digest) {
            (SaveKind::Create, _) => {}
            (_, Some(old)) => {
                cmd.arg(expected_version).arg(KeyArg("", old));
            }
            (_, None) => {
                cmd.arg(expected_version);
            }
        }
        if let (Some(a), SaveKind::Update | SaveKind::Regenerate { .. }) = (announce, kind) {
            cmd.arg(a.channel).arg((a.message)(next));
        }
        // The version written is the one computed here (in the value's
        // header); the scripts answer none (see `parse_reply`).
        Ok(match parse_reply(self.eval(script, &cmd).await?)? {
            Reply::Saved(_) => Reply::Saved(version),
            other => other,
        })
    }

    /// Runs an `EVALSHA` of `script`; on `NOSCRIPT` (Redis restarted or its
    /// script cache flushed) loads the script and runs the command again,
    /// as redis-rs' `Script::invoke_async` does.
    async fn eval(&self, script: &Script, cmd: &redis::Cmd) -> Result<Value, StoreError> {
        let mut conn = self.conn();
        match cmd.query_async::<Value>(&mut conn).await {
            Err(e) if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) => {
                script
                    .load_async(&mut conn)
                    .await
                    .map_err(|e| self.err(e))?;
                cmd.query_async(&mut conn).await.map_err(|e| self.err(e))
            }
            reply => reply.map_err(|e| self.err(e)),
        }
    }

    /// Creates a session that has no owner: no index to keep, so a plain
    /// `SET … PX … NX` does what `create.lua` would (same value, same
    /// refusal to replace an existing key) without running a script, which
    /// costs Redis several times the CPU of a `SET` (`INFO commandstats` in
    /// the load benchmark). Most new sessions are anonymous (a visitor
    /// before login), so this is the common `/new` path.
    async fn create_anonymous(
        &self,
        digest: &[u8; 32],
        stored: Vec<u8>,
        ttl: u64,
    ) -> Result<Reply, StoreError> {
        let mut conn = self.conn();
        let reply: Value = redis::Cmd::with_capacity(6, 64 + self.prefix.len() + stored.len())
            .arg("SET")
            .arg(KeyArg(&self.prefix, digest))
            .arg(stored)
            .arg("PX")
            .arg(ttl)
            .arg("NX")
            .query_async(&mut conn)
            .await
            .map_err(|e| self.err(e))?;
        match reply {
            Value::Okay => Ok(Reply::Saved(1)),
            Value::Nil => Ok(Reply::Taken),
            _ => Err(StoreError::Backend("unexpected reply to SET NX".into())),
        }
    }

    /// Removes from the owner's set `set` those of `stale` whose session is
    /// still gone or another owner's when the script runs (`prune_index.lua`).
    async fn prune_index(
        &self,
        set: &str,
        owner_hex: &str,
        stale: &[String],
    ) -> Result<(), StoreError> {
        if stale.is_empty() {
            return Ok(());
        }
        let mut conn = self.conn();
        let _: i64 = SCRIPTS
            .prune_index
            .key(set)
            .arg(&self.prefix)
            .arg(owner_hex)
            .arg(stale)
            .invoke_async(&mut conn)
            .await
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// Fetches the values of `keys` in one `MGET` (nothing for no keys).
    async fn mget(&self, keys: &[String]) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let mut conn = self.conn();
        redis::cmd("MGET")
            .arg(keys)
            .query_async(&mut conn)
            .await
            .map_err(|e| self.err(e))
    }

    /// One `SCAN` step: the session keys found (owner sets and foreign keys
    /// filtered out), or `None` when the scan is over.
    async fn scan_step(&self, scan: &mut Scan) -> Result<Option<Vec<String>>, StoreError> {
        if scan.done {
            return Ok(None);
        }
        let mut cmd = redis::cmd("SCAN");
        cmd.arg(scan.cursor)
            .arg("MATCH")
            .arg(format!("{}*", glob_escape(&self.prefix)))
            .arg("COUNT")
            .arg(self.scan_batch);
        // Keys as bytes: a foreign key under the prefix that is not UTF-8
        // must not fail the whole listing (it is skipped below).
        let (next, keys): (u64, Vec<Vec<u8>>) = {
            // On a cluster, the master of the store's one slot.
            #[cfg(feature = "cluster")]
            match self.conn().cluster().await {
                Ok(Some(mut c)) => cluster::query_on_slot_of(&mut c, cmd, &self.prefix).await,
                Ok(None) => cmd.query_async(&mut self.conn()).await,
                Err(e) => Err(e),
            }
            #[cfg(not(feature = "cluster"))]
            cmd.query_async(&mut self.conn()).await
        }
        .map_err(|e| self.err(e))?;
        scan.done = next == 0;
        scan.cursor = next;
        let keys = keys
            .into_iter()
            .filter_map(|k| String::from_utf8(k).ok())
            .filter(|k| {
                k.strip_prefix(self.prefix.as_str())
                    .is_some_and(is_storage_key)
            })
            .collect();
        Ok(Some(keys))
    }

    /// Decodes fetched values, skipping missing, expired and undecodable ones
    /// (the last with a warning that names only the key hash, so one bad
    /// value cannot block listing or revoking everything else).
    fn decode_live(
        &self,
        keys: &[String],
        values: Vec<Option<Vec<u8>>>,
    ) -> Vec<Record<T, SessionHandle>> {
        let now = self.clock.now();
        keys.iter()
            .zip(values)
            .filter_map(|(key, raw)| match self.decode_listed(&raw?) {
                // A value under a key its handle is not (a restored or
                // copied dump) is not that session: a load of its id would
                // not find it, and a delete by its handle would miss it.
                // (`key` is a whole key, or an owner set's member: the
                // digest ends both.)
                Ok(r) if !key.ends_with(&*hex_of(r.id.as_bytes())) => {
                    tracing::warn!(key = %key, "skipping a session stored under another id's key");
                    None
                }
                Ok(r) if r.expired(now).is_none() => Some(r),
                Ok(_) => None,
                Err(e) => {
                    tracing::warn!(key = %key, error = %e, "skipping undecodable session");
                    None
                }
            })
            .collect()
    }
}

fn parse_reply(reply: Value) -> Result<Reply, StoreError> {
    let bad = || StoreError::Backend("unexpected reply from a sessionkit script".into());
    let Value::Array(items) = reply else {
        return Err(bad());
    };
    let mut items = items.into_iter();
    let code = match items.next() {
        Some(Value::Int(c)) => c,
        _ => return Err(bad()),
    };
    Ok(match code {
        0 => Reply::Gone,
        // The scripts answer no version: a Lua number is a double, and
        // Redis turns one past 2^63 into a wrong integer (a stored version
        // that high made a successful save look like a failure). The
        // caller knows the version it wrote.
        1 => Reply::Saved(0),
        2 => match items.next() {
            Some(Value::BulkString(v)) => Reply::Conflict(v),
            _ => return Err(bad()),
        },
        3 => Reply::Taken,
        4 => Reply::BadHeader,
        _ => return Err(bad()),
    })
}

/// SHA-256 hex of an owner: the index key never holds the owner in clear.
fn owner_hash(owner: &str) -> String {
    let mut out = String::with_capacity(64);
    push_hex(&mut out, &Sha256::digest(owner.as_bytes()).into());
    out
}

/// SHA-256 of an id: the session's key in Redis (hex, after the prefix) and
/// its member in an owner's index set (hex). About 0.35 µs here (no SHA-NI;
/// `sha256_32B` in `benches/seal.rs`), so each save hashes each id once.
fn id_digest(id: &SessionId) -> [u8; 32] {
    Sha256::digest(id.as_bytes()).into()
}

/// A key prefix and a digest's hex as one Redis argument, written straight
/// into the command (the same bytes as `prefix + hex_of(digest)`, without
/// the `String`). An empty prefix gives the bare hex (an index member).
struct KeyArg<'a>(&'a str, &'a [u8; 32]);

impl redis::ToRedisArgs for KeyArg<'_> {
    fn write_redis_args<W: ?Sized + redis::RedisWrite>(&self, out: &mut W) {
        use std::io::Write as _;
        let mut w = out.writer_for_next_arg();
        // Writes into a `Vec`: they cannot fail.
        let _ = w.write_all(self.0.as_bytes());
        let _ = w.write_all(&hex_digits(self.1));
    }
}

/// Lower-case hex of a digest: [`SessionId::storage_key`], from the digest.
fn hex_of(digest: &[u8; 32]) -> String {
    let mut out = String::with_capacity(64);
    push_hex(&mut out, digest);
    out
}

/// Appends a SHA-256 digest as 64 lowercase hex digits. Into a fixed array
/// first, then one `push_str`: a `String::push` per digit (capacity check
/// and UTF-8 encoding each) cost about 0.7k instructions on every load and
/// save (callgrind), this about a tenth of that.
fn push_hex(out: &mut String, digest: &[u8; 32]) {
    let hex = hex_digits(digest);
    out.push_str(std::str::from_utf8(&hex).expect("hex digits are ASCII"));
}

/// Every byte's two lower-case hex digits.
const HEX_PAIRS: [[u8; 2]; 256] = {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut pairs = [[0u8; 2]; 256];
    let mut b = 0;
    while b < 256 {
        pairs[b] = [DIGITS[b >> 4], DIGITS[b & 0xf]];
        b += 1;
    }
    pairs
};

/// A digest's 64 lower-case hex digits, in a fixed array: one table load
/// per byte (two nibble lookups per byte took ~310 instructions a digest
/// under callgrind, on every Redis command of a request).
fn hex_digits(digest: &[u8; 32]) -> [u8; 64] {
    let mut hex = [0u8; 64];
    for (pair, &b) in hex.chunks_exact_mut(2).zip(digest) {
        pair.copy_from_slice(&HEX_PAIRS[usize::from(b)]);
    }
    hex
}

/// Whether a key suffix is a session key hash (64 lowercase hex digits).
fn is_storage_key(suffix: &str) -> bool {
    suffix.len() == 64
        && suffix
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Escapes the glob characters of a key prefix for `SCAN MATCH`.
fn glob_escape(prefix: &str) -> String {
    let mut out = String::with_capacity(prefix.len());
    for c in prefix.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The key's TTL: the session's remaining lifetime, at least 1 ms (Redis
/// refuses 0, and a session saved at its deadline must still vanish).
fn ttl_millis<T>(record: &Record<T>, now: SystemTime) -> u64 {
    record
        .expires_at()
        .duration_since(now)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
        .clamp(1, i64::MAX as u64 / 2)
}

fn map_err(e: RedisError, timeout: Duration) -> StoreError {
    // redis-rs messages carry no command arguments, so no session data.
    use redis::{ErrorKind, ServerErrorKind as K};
    // Answers of a server that will take requests again shortly: loading
    // its data after a restart (`LOADING`, seconds to minutes with
    // persistence on), a replica cut off from its master (`MASTERDOWN`),
    // a failover or resharding under way (`READONLY`, `TRYAGAIN`,
    // `CLUSTERDOWN`), a script of someone else's running past
    // `busy-reply-threshold` (`BUSY`: every command is refused until it ends
    // or is killed). Transient, so `Resilient` retries them and trips its
    // breaker, as for a refused connection.
    let server_busy = matches!(
        e.kind(),
        ErrorKind::Server(
            K::BusyLoading | K::MasterDown | K::TryAgain | K::ClusterDown | K::ReadOnly
        )
    ) || e.code() == Some("BUSY");
    // A wrong password or a missing ACL permission is a setting to fix,
    // not an outage to wait out: not retried (redis-rs counts a failed
    // authentication as unrecoverable, which would read as "unavailable").
    let refused = matches!(
        e.kind(),
        ErrorKind::AuthenticationFailed | ErrorKind::Server(K::NoPerm)
    );
    if e.is_timeout() {
        StoreError::Timeout(timeout)
    } else if refused {
        StoreError::Backend(format!("Redis refused the credentials or the command: {e}"))
    } else if server_busy
        || e.is_io_error()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_unrecoverable_error()
    {
        StoreError::Unavailable(format!("Redis: {e}"))
    } else {
        StoreError::Backend(format!("Redis: {e}"))
    }
}

#[async_trait]
impl<T: SessionData> Store<T> for RedisStore<T> {
    async fn load(&self, cookie_value: &str) -> Result<Option<Record<T>>, StoreError> {
        let Ok(id) = SessionId::parse(cookie_value) else {
            return Ok(None);
        };
        let mut conn = self.conn();
        // Sized up front: `redis::cmd` starts empty and grows twice. The key
        // goes straight into the command (no `String` of its own).
        let digest = id_digest(&id);
        let raw: Option<Vec<u8>> = redis::Cmd::with_capacity(2, 3 + self.prefix.len() + 64)
            .arg("GET")
            .arg(KeyArg(&self.prefix, &digest))
            .query_async(&mut conn)
            .await
            .map_err(|e| match e.code() {
                // The key holds a hash, a set...: no session of ours, and
                // not an outage either (a fresh session, not a 503 on every
                // request that carries this cookie).
                Some("WRONGTYPE") => {
                    StoreError::Decode("the session's key holds no string value".into())
                }
                _ => self.err(e),
            })?;
        raw.map(|raw| self.decode_loaded(&raw, &id, &digest))
            .transpose()
    }

    async fn save(&self, save: Save<'_, T>) -> Result<SaveOutcome, StoreError> {
        Ok(self.save_versioned(save, None).await?.0)
    }

    async fn delete(&self, id: &SessionId) -> Result<bool, StoreError> {
        Ok(self.delete_many(std::slice::from_ref(id)).await? == [true])
    }

    /// Follows the `moved:` keys `regenerate.lua` leaves (one script run).
    async fn delete_following(&self, id: &SessionId) -> Result<Followed, StoreError> {
        Ok(self.delete_following_keyed(id, None).await?.0)
    }

    /// The sessions live in Redis: a delete says whether it removed one.
    fn holds_sessions(&self) -> bool {
        true
    }
}

impl<T: SessionData> RedisStore<T> {
    /// [`Store::save`], also returning the version now stored when it saved
    /// (the clustered store publishes it so other nodes know what is stale).
    pub(crate) async fn save_versioned(
        &self,
        save: Save<'_, T>,
        announce: Option<&Announce<'_>>,
    ) -> Result<(SaveOutcome, Option<u64>), StoreError> {
        let mut expected = save.record.version;
        let mut merged: Option<Record<T>> = None;
        // Every write is named, so that the last four in the stored record
        // are the session's last four writes.
        let write_id = match save.write_id() {
            0 => crate::store::new_write_id(),
            id => id,
        };
        let saved = || SaveOutcome::Saved(save.record.id.encode());
        for _ in 0..=self.max_merge_retries {
            let record = merged.as_ref().unwrap_or(save.record);
            let reply = self
                .run_save(record, save.kind, expected, write_id, announce)
                .await?;
            match reply {
                Reply::Saved(version) => {
                    // An update keeps the id, so the cookie stays as sent.
                    let outcome = match save.kind {
                        SaveKind::Update => SaveOutcome::Kept,
                        _ => SaveOutcome::Saved(save.record.id.encode()),
                    };
                    return Ok((outcome, Some(version)));
                }
                // A create finding its key taken, or a regenerate its old
                // key gone, may be that very save repeated after its reply
                // was lost (the Redis Cluster client resends a command whose
                // connection dropped): what the new key holds tells.
                Reply::Taken if save.kind == SaveKind::Create => {
                    return match self.landed(record, save.kind).await? {
                        Some(version) => Ok((saved(), Some(version))),
                        None => Err(StoreError::Conflict(
                            "session id collision: the key is already taken".into(),
                        )),
                    };
                }
                Reply::Gone if matches!(save.kind, SaveKind::Regenerate { .. }) => {
                    return Ok(match self.landed(record, save.kind).await? {
                        Some(version) => (saved(), Some(version)),
                        None => (SaveOutcome::Gone, None),
                    });
                }
                Reply::Gone => return Ok((SaveOutcome::Gone, None)),
                Reply::Taken => {
                    return Err(StoreError::Conflict(
                        "session id collision: the key is already taken".into(),
                    ))
                }
                Reply::BadHeader => {
                    return Err(StoreError::Decode(
                        "stored value has no valid sessionkit header".into(),
                    ))
                }
                Reply::Conflict(current) => {
                    // Another request saved since we loaded: keep what it
                    // wrote and reapply only what this request changed.
                    // Checked to be the session this save is about, as a
                    // load checks it.
                    let at = match save.kind {
                        SaveKind::Regenerate { old } => old,
                        _ => save.record.id,
                    };
                    let latest = self.decode_loaded(&current, &at, &id_digest(&at))?;
                    // This very write, repeated after its reply was lost
                    // (the resilience layer's retry, or the cluster client
                    // resending): it landed, perhaps with writes since.
                    // Reapplying it would put back what those replaced.
                    if save.kind == SaveKind::Update && latest.writes.contains(write_id) {
                        tracing::debug!(
                            "an update repeated after a lost reply had landed; not written again"
                        );
                        return Ok((SaveOutcome::Kept, Some(latest.version)));
                    }
                    expected = latest.version;
                    merged = Some(save.merged_onto(latest));
                }
            }
        }
        Err(StoreError::Conflict(format!(
            "session kept changing under this save; gave up after {} attempts",
            self.max_merge_retries.saturating_add(1)
        )))
    }

    /// The version stored under `record`'s id if it holds that very save
    /// (see [`crate::store::is_this_save`]); `None` if it holds nothing, an
    /// undecodable value or another session.
    async fn landed(&self, record: &Record<T>, kind: SaveKind) -> Result<Option<u64>, StoreError> {
        let stored = match self.load(&record.id.encode()).await {
            Ok(stored) => stored,
            Err(StoreError::Decode(_)) => None,
            Err(e) => return Err(e),
        };
        Ok(stored
            .filter(|stored| crate::store::is_this_save(stored, record, kind))
            .map(|stored| stored.version))
    }

    /// Deletes sessions in one script run; says, per id, whether it existed.
    async fn delete_many(&self, ids: &[SessionId]) -> Result<Vec<bool>, StoreError> {
        let digests: Vec<[u8; 32]> = ids.iter().map(id_digest).collect();
        self.run_delete(&SCRIPTS.delete, &digests, &[]).await
    }

    /// Deletes sessions by handle in one script run; says, per handle,
    /// whether it existed.
    pub(crate) async fn delete_handles(
        &self,
        handles: &[SessionHandle],
    ) -> Result<Vec<bool>, StoreError> {
        let digests: Vec<[u8; 32]> = handles.iter().map(|h| *h.as_bytes()).collect();
        self.run_delete(&SCRIPTS.delete, &digests, &[]).await
    }

    /// Runs `delete_following.lua` for `id`, and with `publish` also
    /// publishes that message on that channel in the same run. What it
    /// deleted, and when it followed a regenerate, the key hash of the id
    /// it followed it to, whether it deleted the session there or found it
    /// gone (a repeat of a delete whose reply was lost): the clustered store
    /// announces it either way.
    pub(crate) async fn delete_following_keyed(
        &self,
        id: &SessionId,
        publish: Option<(&str, &[u8])>,
    ) -> Result<(Followed, Option<[u8; 32]>), StoreError> {
        let digest = id_digest(id);
        let mut inv = SCRIPTS.delete_following.prepare_invoke();
        inv.key(self.key_of_digest(&digest));
        inv.arg(&self.prefix).arg(hex_of(&digest));
        if let Some((channel, message)) = publish {
            inv.arg(channel).arg(message);
        }
        let mut conn = self.conn();
        let reply: Vec<Value> = inv.invoke_async(&mut conn).await.map_err(|e| self.err(e))?;
        match reply.as_slice() {
            [Value::Int(0)] => Ok((Followed::Nothing, None)),
            [Value::Int(1)] => Ok((Followed::Deleted, None)),
            [Value::Int(2), Value::BulkString(member), Value::BulkString(value)] => {
                // Its owner, for the logout's event: read from the value
                // deleted. Undecodable here (another version of the data
                // type, say): `Deleted`, so the event keeps the owner the
                // logout loaded rather than none.
                let followed = match self.decode_listed(value) {
                    Ok(record) => Followed::Moved {
                        owner: record.owner,
                    },
                    Err(_) => Followed::Deleted,
                };
                Ok((followed, decode_member(member)))
            }
            [Value::Int(3), Value::BulkString(member)] => {
                Ok((Followed::Nothing, decode_member(member)))
            }
            _ => Err(StoreError::Backend(
                "unexpected reply from a sessionkit script".into(),
            )),
        }
    }

    /// Runs `delete.lua` (or a script built around it) over the sessions
    /// whose key digests are `digests`; `extra` arguments follow the index
    /// members.
    async fn run_delete(
        &self,
        script: &Script,
        digests: &[[u8; 32]],
        extra: &[&[u8]],
    ) -> Result<Vec<bool>, StoreError> {
        if digests.is_empty() {
            return Ok(Vec::new());
        }
        let mut inv = script.prepare_invoke();
        for digest in digests {
            inv.key(self.key_of_digest(digest));
        }
        inv.arg(&self.prefix);
        for digest in digests {
            inv.arg(hex_of(digest));
        }
        for arg in extra {
            inv.arg(*arg);
        }
        let mut conn = self.conn();
        let existed: Vec<i64> = inv.invoke_async(&mut conn).await.map_err(|e| self.err(e))?;
        Ok(existed.into_iter().map(|e| e == 1).collect())
    }
}

#[async_trait]
impl<T: SessionData> QueryStore<T> for RedisStore<T> {
    fn iter(&self) -> BoxStream<'_, Result<Record<T, SessionHandle>, StoreError>> {
        // SCAN may return a key twice; `seen` keeps each session once.
        let start = (None::<Scan>, false, HashSet::<String>::new());
        stream::unfold(start, move |(scan, done, mut seen)| async move {
            if done {
                return None;
            }
            let batch = async {
                let mut scan = scan.unwrap_or_default();
                let Some(keys) = self.scan_step(&mut scan).await? else {
                    return Ok::<_, StoreError>(None);
                };
                let keys: Vec<String> = keys
                    .into_iter()
                    .filter(|k| seen.insert(k.clone()))
                    .collect();
                let values = self.mget(&keys).await?;
                Ok(Some((scan, self.decode_live(&keys, values))))
            }
            .await;
            match batch {
                Ok(Some((scan, records))) => Some((
                    stream::iter(records.into_iter().map(Ok)).left_stream(),
                    (Some(scan), false, seen),
                )),
                Ok(None) => None,
                Err(e) => Some((
                    stream::once(async { Err(e) }).right_stream(),
                    (None, true, seen),
                )),
            }
        })
        .flatten()
        .boxed()
    }

    /// Counts session keys (those of the prefix that are a key hash), not
    /// values: a value this process cannot decode, which `iter` and
    /// `find_by` skip, is counted all the same.
    async fn count(&self) -> Result<usize, StoreError> {
        // Keys only: the TTL equals the remaining lifetime, so a key that
        // exists is a live session; no value needs to be fetched.
        let mut seen = HashSet::new();
        let mut scan = Scan::default();
        while let Some(keys) = self.scan_step(&mut scan).await? {
            seen.extend(keys);
        }
        Ok(seen.len())
    }

    async fn bulk_delete(&self, predicate: Predicate<'_, T>) -> Result<Vec<Removed>, StoreError> {
        // Matches are deleted in batches of one script run each, not one
        // round trip per session.
        // Listed again after a pass that found a listed session gone (it may
        // live on under a new id): see `QueryStore::bulk_delete`.
        in_passes(|| async move {
            let found = self.find_by(predicate).await?;
            let mut pass = Pass::default();
            for batch in found.chunks(self.scan_batch) {
                let handles: Vec<SessionHandle> = batch.iter().map(|r| r.id).collect();
                let existed = match self.delete_handles(&handles).await {
                    Ok(existed) => existed,
                    Err(e) => return Err(e.after_removing(pass.removed)),
                };
                for (r, existed) in batch.iter().zip(existed) {
                    if existed {
                        pass.removed.push(Removed::new(r.id, r.owner.clone()));
                    } else {
                        pass.missed = true;
                    }
                }
            }
            Ok(pass)
        })
        .await
    }

    async fn by_owner(&self, owner: &str) -> Result<Vec<Record<T, SessionHandle>>, StoreError> {
        let set = self.owner_key_of(owner);
        let mut conn = self.conn();
        // Read as bytes: a member that is not UTF-8 (written by something
        // else) is skipped like any other that is no key hash, instead of
        // failing the whole listing.
        let members: Vec<Vec<u8>> = match redis::cmd("SMEMBERS")
            .arg(&set)
            .query_async(&mut conn)
            .await
        {
            Ok(members) => members,
            // Not a set (something else wrote under the prefix): it lists
            // no session; the next save of this owner's replaces it.
            Err(e) if e.code() == Some("WRONGTYPE") => {
                tracing::warn!(key = %set, "an owner index key holds no set; listing nothing");
                Vec::new()
            }
            Err(e) => return Err(self.err(e)),
        };
        let members: Vec<String> = members
            .into_iter()
            .filter_map(|m| String::from_utf8(m).ok())
            .filter(|m| is_storage_key(m))
            .collect();
        let keys: Vec<String> = members
            .iter()
            .map(|m| format!("{}{m}", self.prefix))
            .collect();
        let values = self.mget(&keys).await?;
        let owner_hex = owner_hash(owner);
        let mut stale = Vec::new();
        let mut live = Vec::new();
        for (member, raw) in members.iter().zip(values) {
            // A member is stale when its session is gone or has another owner
            // now (an entry the script did not get to remove, e.g. expiry).
            let belongs = raw.as_deref().is_some_and(|raw| {
                value::parse(raw).is_ok_and(|s| s.owner == owner_hex.as_bytes())
            });
            if belongs {
                live.push((member.clone(), raw));
            } else {
                stale.push(member.clone());
            }
        }
        self.prune_index(&set, &owner_hex, &stale).await?;
        let (keys, values): (Vec<String>, Vec<Option<Vec<u8>>>) = live.into_iter().unzip();
        Ok(self.decode_live(&keys, values))
    }

    async fn delete_owner(&self, owner: &str) -> Result<Vec<Removed>, StoreError> {
        Ok(self.delete_owner_keyed(owner).await?.0)
    }

    async fn delete_handle(&self, handle: &SessionHandle) -> Result<bool, StoreError> {
        Ok(self.delete_handles(std::slice::from_ref(handle)).await? == [true])
    }
}

impl<T: SessionData> RedisStore<T> {
    /// [`QueryStore::delete_owner`], also returning the storage key hash of
    /// every session deleted, those whose value this process cannot decode
    /// included (a clustered store announces those too: another node, on
    /// another version of the session type, may have them cached).
    pub(crate) async fn delete_owner_keyed(
        &self,
        owner: &str,
    ) -> Result<(Vec<Removed>, Vec<[u8; 32]>), StoreError> {
        let mut conn = self.conn();
        let deleted: Vec<Vec<u8>> = SCRIPTS
            .delete_owner
            .key(self.owner_key_of(owner))
            .arg(&self.prefix)
            .arg(owner_hash(owner))
            .invoke_async(&mut conn)
            .await
            .map_err(|e| self.err(e))?;
        let mut removed = Vec::with_capacity(deleted.len());
        let mut hashes = Vec::with_capacity(deleted.len());
        for member in &deleted {
            // Reported by its index member, which is its handle: a value
            // this process cannot decode (another version of the data type)
            // was deleted and is reported all the same.
            match decode_member(member) {
                Some(hash) => {
                    hashes.push(hash);
                    removed.push(Removed::new(
                        SessionHandle::from_bytes(hash),
                        Some(owner.to_owned()),
                    ));
                }
                None => tracing::warn!("deleted a session whose index member is not a key hash"),
            }
        }
        Ok((removed, hashes))
    }
}

/// An owner index member (the session key's SHA-256, 64 lower-case hex
/// characters: a [`SessionHandle`]'s text) as bytes; `None` for anything
/// else.
fn decode_member(member: &[u8]) -> Option<[u8; 32]> {
    let handle: SessionHandle = std::str::from_utf8(member).ok()?.parse().ok()?;
    Some(*handle.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::expiry::ExpiryPolicy;

    #[test]
    fn index_members_decode_to_key_hashes_and_nothing_else_does() {
        let id = SessionId::generate();
        let member = id.storage_key();
        let hash = decode_member(member.as_bytes()).expect("a storage key");
        let hex: String = hash.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, member);
        for bad in [
            "".to_owned(),
            member[..63].to_owned(),
            format!("{member}0"),
            member.to_uppercase(),
            "g".repeat(64),
            "é".repeat(32),
        ] {
            assert_eq!(decode_member(bad.as_bytes()), None, "{bad:?}");
        }
    }

    #[test]
    fn ttl_is_the_remaining_lifetime_and_never_zero() {
        let now = SystemTime::now();
        let policy = ExpiryPolicy::default();
        let r = Record::new(SessionId::generate(), (), now, &policy);
        let want = r.expires_at().duration_since(now).unwrap().as_millis() as u64;
        assert_eq!(ttl_millis(&r, now), want);
        assert_eq!(ttl_millis(&r, r.expires_at() + Duration::from_secs(5)), 1);
    }

    #[test]
    fn hex_digits_match_format_for_every_byte() {
        for start in (0..256).step_by(32) {
            let digest: [u8; 32] = std::array::from_fn(|i| (start + i) as u8);
            let want: String = digest.iter().map(|b| format!("{b:02x}")).collect();
            assert_eq!(hex_digits(&digest), want.as_bytes());
        }
    }

    #[test]
    fn hex_matches_the_id_storage_key() {
        let id = SessionId::generate();
        let mut hex = String::new();
        push_hex(&mut hex, &Sha256::digest(id.as_bytes()).into());
        assert_eq!(hex, id.storage_key());
        assert_eq!(hex_of(&id_digest(&id)), hex);
    }

    #[test]
    fn a_key_argument_packs_as_the_key_string_would() {
        let digest = id_digest(&SessionId::generate());
        for prefix in ["", "sessionkit:", "app:ünï:"] {
            let packed = |arg: &dyn Fn(&mut redis::Cmd)| {
                let mut cmd = redis::cmd("GET");
                arg(&mut cmd);
                cmd.get_packed_command()
            };
            assert_eq!(
                packed(&|c| {
                    c.arg(KeyArg(prefix, &digest));
                }),
                packed(&|c| {
                    c.arg(format!("{prefix}{}", hex_of(&digest)));
                }),
                "{prefix:?}"
            );
        }
    }

    #[test]
    fn glob_characters_in_a_prefix_are_escaped() {
        assert_eq!(glob_escape("app:*[x]?\\"), "app:\\*\\[x\\]\\?\\\\");
    }

    #[test]
    fn only_64_lowercase_hex_digits_name_a_session_key() {
        assert!(is_storage_key(&SessionId::generate().storage_key()));
        assert!(!is_storage_key(&format!("owner:{}", "a".repeat(64))));
        assert!(!is_storage_key(&"A".repeat(64)));
        assert!(!is_storage_key(&"a".repeat(63)));
    }
}

/// The owner index's pruning against a real Redis server.
#[cfg(all(test, feature = "testing"))]
mod prune_tests {
    use super::*;
    use crate::expiry::ExpiryPolicy;
    use crate::testing::redis_server::RedisServer;

    #[tokio::test]
    async fn pruning_keeps_a_member_whose_session_came_back_to_the_owner() {
        // `by_owner` read a member as stale (gone, or another owner's);
        // by the time it prunes, the session is this owner's again. The
        // prune checks again and keeps it; a member still stale goes.
        let server = RedisServer::start().unwrap();
        let store = RedisStore::<u32>::builder(server.url())
            .key_prefix("prune:")
            .connect()
            .await
            .unwrap();
        let mut back = Record::new(
            SessionId::generate(),
            1,
            SystemTime::now(),
            &ExpiryPolicy::default(),
        );
        back.owner = Some("ann".into());
        let mut gone = back.clone();
        gone.id = SessionId::generate();
        for r in [&back, &gone] {
            store.save(Save::create(r)).await.unwrap();
        }
        server
            .command(&format!("DEL {}", store.key_of(&gone.id)))
            .unwrap();
        let set = store.owner_key_of("ann");
        let stale = [back.id.storage_key(), gone.id.storage_key()];
        store
            .prune_index(&set, &owner_hash("ann"), &stale)
            .await
            .unwrap();
        let members = server.command(&format!("SMEMBERS {set}")).unwrap();
        assert!(members.contains(&back.id.storage_key()), "{members}");
        assert!(!members.contains(&gone.id.storage_key()), "{members}");
    }

    /// A value an earlier release wrote (the compact layout naming the
    /// session by its id, or whole-record JSON) still loads by its cookie,
    /// lists by its handle and is revoked; one under another session's key
    /// is refused.
    #[tokio::test]
    async fn a_value_naming_its_session_by_id_still_loads_lists_and_revokes() {
        let server = RedisServer::start().unwrap();
        let store = RedisStore::<u32>::builder(server.url())
            .key_prefix("old:")
            .connect()
            .await
            .unwrap();
        let mut conn = redis::Client::open(server.url())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap();
        for json in [false, true] {
            let owner = if json { "json-ann" } else { "frame-ann" };
            let mut r = Record::new(
                SessionId::generate(),
                5,
                SystemTime::now(),
                &ExpiryPolicy::default(),
            );
            r.owner = Some(owner.into());
            r.version = 3;
            let payload = match json {
                true => serde_json::to_vec(&r).unwrap(),
                false => {
                    let mut payload = Vec::new();
                    crate::frame::write(&r, 3, &mut payload).unwrap();
                    payload
                }
            };
            let old = value::build(3, &owner_hash(owner), &payload);
            let _: () = redis::cmd("SET")
                .arg(store.key_of(&r.id))
                .arg(&old)
                .arg("PX")
                .arg(60_000)
                .query_async(&mut conn)
                .await
                .unwrap();
            let _: () = redis::cmd("SADD")
                .arg(store.owner_key_of(owner))
                .arg(r.id.storage_key())
                .query_async(&mut conn)
                .await
                .unwrap();
            let loaded = store.load(&r.id.encode()).await.unwrap().unwrap();
            assert_eq!((loaded.id, loaded.data, loaded.version), (r.id, 5, 3));
            let listed = store.by_owner(owner).await.unwrap();
            assert_eq!(listed.len(), 1, "json: {json}");
            assert_eq!(listed[0].id, r.id.handle());
            // The same value under another session's key names another session.
            let other = SessionId::generate();
            let _: () = redis::cmd("SET")
                .arg(store.key_of(&other))
                .arg(&old)
                .query_async(&mut conn)
                .await
                .unwrap();
            assert!(matches!(
                store.load(&other.encode()).await,
                Err(StoreError::Decode(_))
            ));
            let _: () = redis::cmd("DEL")
                .arg(store.key_of(&other))
                .query_async(&mut conn)
                .await
                .unwrap();
            let removed = store.delete_owner(owner).await.unwrap();
            assert_eq!(
                removed.iter().map(Removed::handle).collect::<Vec<_>>(),
                [r.id.handle()]
            );
            assert!(store.load(&r.id.encode()).await.unwrap().is_none());
        }
    }

    /// A Redis of its own, a store on it, and one session holding `data`.
    async fn one_session(data: u32) -> (RedisServer, RedisStore<u32>, Record<u32>) {
        let server = RedisServer::start().unwrap();
        let store = RedisStore::<u32>::builder(server.url())
            .connect()
            .await
            .unwrap();
        let r = Record::new(
            SessionId::generate(),
            data,
            SystemTime::now(),
            &ExpiryPolicy::default(),
        );
        store.save(Save::create(&r)).await.unwrap();
        (server, store, r)
    }

    /// Every write is named, with or without an id from the caller: the
    /// stored record keeps the last four, newest first, and a repeat of a
    /// named update that landed (a resend) answers saved without writing.
    #[tokio::test]
    async fn the_stored_record_keeps_its_last_four_write_ids() {
        let (_server, store, r) = one_session(0).await;
        let stored_ids = || async {
            let raw: Vec<u8> = redis::cmd("GET")
                .arg(store.key_of(&r.id))
                .query_async(&mut store.conn())
                .await
                .unwrap();
            store
                .decode_loaded(&raw, &r.id, &id_digest(&r.id))
                .unwrap()
                .writes
                .iter()
                .collect::<Vec<u64>>()
        };
        assert_eq!(stored_ids().await.len(), 1);
        for n in 1..=5 {
            let mut next = store.load(&r.id.encode()).await.unwrap().unwrap();
            next.data = n;
            store.save(Save::update(&next, None)).await.unwrap();
        }
        let ids = stored_ids().await;
        assert_eq!(ids.len(), 4);
        assert!(ids.iter().all(|&id| id != 0));
        // A named update, landed, then another write, then the repeat.
        let loaded = store.load(&r.id.encode()).await.unwrap().unwrap();
        let mut mine = loaded.clone();
        mine.data = 100;
        let save = Save::update(&mine, Some(&loaded.data)).with_write_id(42);
        store.save(save).await.unwrap();
        assert_eq!(stored_ids().await[0], 42);
        let mut other = store.load(&r.id.encode()).await.unwrap().unwrap();
        let base = other.data;
        other.data = 7;
        store.save(Save::update(&other, Some(&base))).await.unwrap();
        let out = store.save(save).await.unwrap();
        assert!(matches!(out, SaveOutcome::Kept), "{out:?}");
        let now = store.load(&r.id.encode()).await.unwrap().unwrap();
        assert_eq!(now.data, 7, "the repeat wrote nothing over the later write");
    }

    /// A value written now names its session by handle: loaded under
    /// another session's key it is refused, as one naming an id is.
    #[tokio::test]
    async fn a_value_copied_under_another_key_is_refused() {
        let (server, store, r) = one_session(5).await;
        let other = SessionId::generate();
        server
            .command(&format!(
                "COPY {} {}",
                store.key_of(&r.id),
                store.key_of(&other)
            ))
            .unwrap();
        assert!(matches!(
            store.load(&other.encode()).await,
            Err(StoreError::Decode(_))
        ));
        assert!(store.load(&r.id.encode()).await.unwrap().is_some());
    }
}
