//! The connections a [`RedisStore`](super::RedisStore) talks through: per
//! Tokio runtime that uses it, one multiplexed, self-reconnecting
//! connection to a standalone Redis, or (feature `cluster`) a Redis Cluster
//! connection that routes each command to the master owning its key's
//! slot, made at once or on first use.
//!
//! # One connection per runtime
//! A redis-rs connection is driven by a task on the runtime that made it.
//! A command sent from another runtime (actix-web runs one per worker
//! thread) crosses threads twice, to that task and back: one store cloned
//! into every actix-web worker served `/read` at 0.41 of the no-session
//! ceiling in run AP of `sessionkit-bench`, a store per worker at 0.56. So
//! [`Conns`] keeps the connection made where the store was built and makes
//! another, lazily, for each other runtime the store (with its clones) is
//! used from, up to [`MAX_RUNTIMES`] at once; a store cloned into every
//! worker then runs like a store per worker. Each further runtime shares the
//! first connection (and a warning says so once).
//!
//! A runtime that shuts down gives its connection back: a task spawned on
//! it when its connection was made is dropped with the runtime, and
//! dropping it marks the connection dead. The next runtime that needs a
//! connection drops the dead ones and takes their place, so a process that
//! runs one short-lived runtime after another (a runtime per job, or
//! `#[tokio::test]` functions sharing one store, each test on a runtime of
//! its own) never runs out of connections and never sends a command through
//! one whose driving task died with its runtime. A store also outlives the
//! runtime that connected it: every other runtime has a connection of its
//! own. (Past 63 live runtimes at once, or if redis-rs refuses to make a
//! connection, the further runtimes share the first connection, with a
//! warning, even when the runtime that made it is gone.)

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::{Cmd, Pipeline, RedisFuture, Value};
use tokio::runtime::{Handle, Id};
use tokio::sync::oneshot;

use crate::store::background::spawn_flagged;

/// How many runtimes get a connection of their own (the first included).
pub(crate) const MAX_RUNTIMES: usize = 64;

/// How to make a connection for another runtime.
#[derive(Clone)]
pub(crate) enum Maker {
    /// A standalone Redis.
    Single {
        client: redis::Client,
        config: ConnectionManagerConfig,
    },
    /// A Redis Cluster.
    #[cfg(feature = "cluster")]
    Cluster(redis::cluster::ClusterClient),
}

impl Maker {
    /// A connection made now, on the current runtime (a store's first,
    /// unless it is lazy).
    pub(super) async fn connect(&self) -> redis::RedisResult<Conn> {
        match self {
            Maker::Single { client, config } => Ok(Conn::Single(
                ConnectionManager::new_with_config(client.clone(), config.clone()).await?,
            )),
            #[cfg(feature = "cluster")]
            Maker::Cluster(client) => Ok(Conn::Cluster(client.get_async_connection().await?)),
        }
    }

    /// A connection made by its first command, on the runtime that sends it.
    /// Must run inside a Tokio runtime.
    pub(super) fn make(&self) -> redis::RedisResult<Conn> {
        match self {
            Maker::Single { client, config } => Ok(Conn::Single(
                ConnectionManager::new_lazy_with_config(client.clone(), config.clone())?,
            )),
            #[cfg(feature = "cluster")]
            Maker::Cluster(client) => Ok(Conn::LazyCluster(Arc::new(LazyCluster::new(
                client.clone(),
            )))),
        }
    }
}

/// Whether a runtime is still running: a task spawned on it holds a guard
/// whose drop, when the runtime shuts down and drops its tasks, clears the
/// flag. The task ends when the watch is dropped (the store, or the dead
/// connection, going away), so a long-lived runtime keeps no task for a
/// store that is gone.
struct Watch {
    live: Arc<AtomicBool>,
    /// Dropping it wakes the task, which then ends.
    _stop: oneshot::Sender<()>,
}

impl Watch {
    /// Watches the runtime of `handle`.
    fn spawn(handle: &Handle) -> Watch {
        let live = Arc::new(AtomicBool::new(true));
        let (stop, stopped) = oneshot::channel::<()>();
        spawn_flagged(handle, &live, async move {
            let _ = stopped.await;
        });
        Watch { live, _stop: stop }
    }

    fn is_live(&self) -> bool {
        self.live.load(Ordering::Acquire)
    }
}

/// Another runtime's connection.
struct Slot {
    runtime: Id,
    conn: Conn,
    watch: Watch,
}

/// A store's connections, one per runtime that uses it (see the module
/// docs); shared by the store's clones.
///
/// The other runtimes' connections are an immutable list swapped whole
/// (`arc-swap`, which redis-rs's `ConnectionManager` already uses) when a
/// runtime is added or dead ones are dropped: finding one takes no lock and
/// writes no memory another core reads, so workers on many cores do not
/// contend on every command. Adding one takes a mutex. Naming the current
/// runtime does clone its handle (one shared reference count up and down),
/// as every tokio timer does: redis-rs's response timeout already makes one
/// per command. Under callgrind (`bench/callgrind.sh`, the shared actix-web
/// Redis store's `/read`), `get` takes ~240 instructions a call, ~100 with
/// the once-set slots this list replaced (which could not be given back):
/// 0.3 % of the request.
pub(crate) struct Conns {
    /// The runtime the store was built on (if any), and its connection.
    first_runtime: Option<(Id, Watch)>,
    first: Conn,
    /// The other runtimes' connections, dead ones included until the next
    /// one is added.
    others: ArcSwap<Vec<Arc<Slot>>>,
    /// Held while the list is replaced.
    adding: Mutex<()>,
    maker: Maker,
    /// Whether a warning that a runtime shares the first connection (too
    /// many runtimes, or a connection that could not be made) was logged.
    warned: AtomicBool,
    /// How the clustered store's subscriber connects.
    subscribe: SubscribeSetup,
}

/// How the clustered store's subscriber reaches Redis: with the store's TLS
/// root certificate (a `rediss://` server under a private CA accepts the
/// store's connections and would refuse a plain client's) and within a
/// bound (a server that takes the connection and never answers would stall
/// resubscribing).
#[derive(Clone, Debug)]
#[cfg_attr(not(feature = "cluster"), allow(dead_code))]
pub(crate) struct SubscribeSetup {
    #[cfg(feature = "redis-tls")]
    pub(crate) tls_root: Option<Vec<u8>>,
    /// Bound on connecting and subscribing, together.
    pub(crate) timeout: std::time::Duration,
}

impl Default for SubscribeSetup {
    fn default() -> Self {
        SubscribeSetup {
            #[cfg(feature = "redis-tls")]
            tls_root: None,
            timeout: std::time::Duration::from_secs(5),
        }
    }
}

#[cfg_attr(not(feature = "cluster"), allow(dead_code))]
impl SubscribeSetup {
    /// A client for `url`, with the store's TLS root certificate if it has
    /// one and `url` is a TLS one (`rediss://`; a plain node given to
    /// subscribe through still gets a plain client).
    pub(crate) fn client(&self, url: &str) -> redis::RedisResult<redis::Client> {
        #[cfg(feature = "redis-tls")]
        if let Some(root) = self.tls_root.as_ref().filter(|_| {
            url.get(..9)
                .is_some_and(|scheme| scheme.eq_ignore_ascii_case("rediss://"))
        }) {
            return redis::Client::build_with_tls(
                url,
                redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(root.clone()),
                },
            );
        }
        redis::Client::open(url)
    }
}

impl Conns {
    /// `first` is the connection made on the current runtime (if any).
    /// Sets how the clustered store's subscriber connects (see [`SubscribeSetup`]).
    pub(crate) fn with_subscribe(mut self, setup: SubscribeSetup) -> Self {
        self.subscribe = setup;
        self
    }

    /// How the clustered store's subscriber connects.
    #[cfg_attr(not(feature = "cluster"), allow(dead_code))]
    pub(crate) fn subscribe_setup(&self) -> &SubscribeSetup {
        &self.subscribe
    }

    pub(crate) fn new(first: Conn, maker: Maker) -> Self {
        Conns {
            first_runtime: Handle::try_current()
                .ok()
                .map(|h| (h.id(), Watch::spawn(&h))),
            first,
            others: ArcSwap::from_pointee(Vec::new()),
            adding: Mutex::new(()),
            maker,
            subscribe: SubscribeSetup::default(),
            warned: AtomicBool::new(false),
        }
    }

    /// The connection of the current runtime, made now (lazily: it connects
    /// on its first command) if this runtime has none yet. Outside a Tokio
    /// runtime, the first connection.
    pub(crate) fn get(&self) -> Conn {
        let Ok(handle) = Handle::try_current() else {
            return self.first.clone();
        };
        let id = handle.id();
        if self.first_runtime.as_ref().is_some_and(|(r, _)| *r == id) {
            return self.first.clone();
        }
        match find(&self.others.load(), id) {
            Some(conn) => conn,
            None => self.add(&handle),
        }
    }

    /// Makes the connection of the runtime of `handle` (unless a concurrent
    /// call just did), dropping the connections of runtimes that have shut
    /// down; or hands out the first one when every slot is taken by a live
    /// runtime or the connection cannot be made.
    #[cold]
    fn add(&self, handle: &Handle) -> Conn {
        let id = handle.id();
        // Never poisoned in practice (nothing below panics while holding
        // it); if it were, the list is still consistent.
        let _adding = self.adding.lock().unwrap_or_else(|e| e.into_inner());
        let current = self.others.load_full();
        if let Some(conn) = find(&current, id) {
            return conn;
        }
        let mut next: Vec<Arc<Slot>> = current
            .iter()
            .filter(|s| s.watch.is_live())
            .cloned()
            .collect();
        if next.len() + 1 >= MAX_RUNTIMES {
            if next.len() < current.len() {
                self.others.store(Arc::new(next));
            }
            self.warn_once(format_args!(
                "a RedisStore is used from more than {MAX_RUNTIMES} Tokio runtimes at once; \
                 the further ones share its first connection (their commands cross threads, \
                 slower)"
            ));
            return self.first.clone();
        }
        match self.maker.make() {
            Ok(conn) => {
                let dropped = current.len() - next.len();
                next.push(Arc::new(Slot {
                    runtime: id,
                    conn: conn.clone(),
                    watch: Watch::spawn(handle),
                }));
                let connections = 1 + next.len();
                self.others.store(Arc::new(next));
                tracing::debug!(
                    runtime = %id,
                    connections,
                    dropped,
                    "a RedisStore opened a connection for another Tokio runtime"
                );
                conn
            }
            Err(e) => {
                // Making a lazy connection does no I/O: only a setting
                // redis-rs rejects fails here, and the first connection,
                // made with the same settings, already works. Said once:
                // every later command of this runtime comes back here.
                self.warn_once(format_args!(
                    "a RedisStore could not open a connection for a runtime, which shares \
                     its first connection instead: {e}"
                ));
                self.first.clone()
            }
        }
    }

    fn warn_once(&self, message: std::fmt::Arguments<'_>) {
        if !self.warned.swap(true, Ordering::Relaxed) {
            tracing::warn!("{message}");
        }
    }

    /// Whether these are Redis Cluster connections.
    #[cfg(feature = "cluster")]
    pub(crate) fn is_cluster(&self) -> bool {
        self.first.is_cluster()
    }

    /// How many connections the store holds for runtimes that are still
    /// running: its first (unless the runtime that made it has shut down)
    /// and one per other runtime that has used it.
    pub(crate) fn count(&self) -> usize {
        let first = self.first_runtime.as_ref().is_none_or(|(_, w)| w.is_live());
        let others = self
            .others
            .load()
            .iter()
            .filter(|s| s.watch.is_live())
            .count();
        usize::from(first) + others
    }
}

/// The live connection of runtime `id` in `slots`.
fn find(slots: &[Arc<Slot>], id: Id) -> Option<Conn> {
    slots
        .iter()
        .find(|s| s.runtime == id && s.watch.is_live())
        .map(|s| s.conn.clone())
}

/// Standalone or cluster; cheap to clone (clones share the connections).
#[derive(Clone)]
pub(crate) enum Conn {
    /// One Redis (or a primary): redis-rs' `ConnectionManager`.
    Single(ConnectionManager),
    /// A Redis Cluster: redis-rs' async `ClusterConnection`.
    #[cfg(feature = "cluster")]
    Cluster(redis::cluster_async::ClusterConnection),
    /// A Redis Cluster connected on the first command (`build_lazy`,
    /// `lazy()`): redis-rs has no lazy cluster connection of its own.
    #[cfg(feature = "cluster")]
    LazyCluster(Arc<LazyCluster>),
}

/// A cluster client and the connection it makes on first use. A failed
/// attempt is not kept: the next command tries again.
#[cfg(feature = "cluster")]
pub(crate) struct LazyCluster {
    client: redis::cluster::ClusterClient,
    conn: tokio::sync::OnceCell<redis::cluster_async::ClusterConnection>,
}

#[cfg(feature = "cluster")]
impl LazyCluster {
    pub(crate) fn new(client: redis::cluster::ClusterClient) -> Self {
        LazyCluster {
            client,
            conn: tokio::sync::OnceCell::new(),
        }
    }

    /// The connection, made now if no command has made it yet (a clone:
    /// clones share it).
    async fn get(&self) -> redis::RedisResult<redis::cluster_async::ClusterConnection> {
        self.conn
            .get_or_try_init(|| self.client.get_async_connection())
            .await
            .cloned()
    }
}

impl Conn {
    /// The cluster connection, made now if it is a lazy one that has not
    /// connected yet; `None` for a standalone Redis.
    #[cfg(feature = "cluster")]
    pub(crate) async fn cluster(
        &self,
    ) -> redis::RedisResult<Option<redis::cluster_async::ClusterConnection>> {
        match self {
            Conn::Single(_) => Ok(None),
            Conn::Cluster(c) => Ok(Some(c.clone())),
            Conn::LazyCluster(l) => l.get().await.map(Some),
        }
    }

    /// Whether this is a Redis Cluster connection (made yet or not).
    #[cfg(feature = "cluster")]
    pub(crate) fn is_cluster(&self) -> bool {
        !matches!(self, Conn::Single(_))
    }
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            #[cfg(feature = "cluster")]
            Conn::Cluster(c) => c.req_packed_command(cmd),
            #[cfg(feature = "cluster")]
            Conn::LazyCluster(l) => Box::pin(async move {
                let mut c = l.get().await?;
                c.req_packed_command(cmd).await
            }),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(pipeline, offset, count),
            #[cfg(feature = "cluster")]
            Conn::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
            #[cfg(feature = "cluster")]
            Conn::LazyCluster(l) => Box::pin(async move {
                let mut c = l.get().await?;
                c.req_packed_commands(pipeline, offset, count).await
            }),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            #[cfg(feature = "cluster")]
            Conn::Cluster(c) => c.get_db(),
            // A cluster has only database 0.
            #[cfg(feature = "cluster")]
            Conn::LazyCluster(_) => 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a runtime")
    }

    /// Lazy connections to a port nothing listens on: making them does no
    /// I/O, which is all these tests need.
    fn conns(rt: &tokio::runtime::Runtime) -> Conns {
        rt.block_on(async {
            let client = redis::Client::open("redis://127.0.0.1:1/").expect("a valid URL");
            let config = ConnectionManagerConfig::new();
            let first = ConnectionManager::new_lazy_with_config(client.clone(), config.clone())
                .expect("a lazy connection");
            Conns::new(Conn::Single(first), Maker::Single { client, config })
        })
    }

    #[test]
    fn one_connection_per_runtime_reused_within_it() {
        let a = runtime();
        let conns = conns(&a);
        for _ in 0..10 {
            a.block_on(async { conns.get() });
        }
        assert_eq!(conns.count(), 1, "one runtime, many calls");
        // Outside any runtime: the first connection, nothing new.
        let _ = conns.get();
        assert_eq!(conns.count(), 1);
        let b = runtime();
        for _ in 0..10 {
            b.block_on(async { conns.get() });
        }
        assert_eq!(conns.count(), 2, "a second runtime, one more");
        a.block_on(async { conns.get() });
        assert_eq!(conns.count(), 2);
    }

    #[test]
    fn runtimes_past_the_limit_share_the_first_connection() {
        let a = runtime();
        let conns = conns(&a);
        // All running at once: none gives its connection back.
        let running: Vec<_> = (0..MAX_RUNTIMES + 5).map(|_| runtime()).collect();
        for rt in &running {
            rt.block_on(async { conns.get() });
        }
        assert_eq!(conns.count(), MAX_RUNTIMES);
        assert!(conns.warned.load(Ordering::Relaxed), "said once");
        // They shut down: the next runtime takes a place of theirs.
        drop(running);
        let b = runtime();
        b.block_on(async { conns.get() });
        assert_eq!(conns.count(), 2, "the first and the newest");
    }

    #[test]
    fn runtimes_that_shut_down_give_their_connections_back() {
        let a = runtime();
        let conns = conns(&a);
        for _ in 0..3 * MAX_RUNTIMES {
            let rt = runtime();
            rt.block_on(async { conns.get() });
            assert_eq!(conns.count(), 2, "the first and this runtime's");
            drop(rt);
            assert_eq!(conns.count(), 1, "this runtime's is dead");
        }
        assert!(
            !conns.warned.load(Ordering::Relaxed),
            "no runtime fell back to the first connection"
        );
        assert!(conns.others.load().len() <= 1, "dead ones are dropped");
        // The runtime that made the first connection shuts down too.
        drop(a);
        assert_eq!(conns.count(), 0);
        let b = runtime();
        b.block_on(async { conns.get() });
        assert_eq!(
            conns.count(),
            1,
            "a new runtime gets a connection of its own"
        );
    }

    #[test]
    fn a_watch_sees_its_runtime_shut_down_and_ends_its_task_when_dropped() {
        let rt = runtime();
        let tasks = |rt: &tokio::runtime::Runtime| rt.metrics().num_alive_tasks();
        // Dropped: its task wakes and ends when the runtime runs next.
        let watch = Watch::spawn(rt.handle());
        assert_eq!(tasks(&rt), 1);
        drop(watch);
        rt.block_on(tokio::task::yield_now());
        assert_eq!(
            tasks(&rt),
            0,
            "no task left behind for a store that is gone"
        );
        // Its runtime shuts down, whether or not the task ever ran.
        let polled = Watch::spawn(rt.handle());
        rt.block_on(tokio::task::yield_now());
        let never_polled = Watch::spawn(rt.handle());
        assert!(polled.is_live() && never_polled.is_live());
        drop(rt);
        assert!(!polled.is_live());
        assert!(!never_polled.is_live());
    }

    #[test]
    fn one_runtime_used_from_several_threads_gets_one_connection() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .build()
            .expect("a runtime");
        let building = runtime();
        let conns = std::sync::Arc::new(conns(&building));
        rt.block_on(async {
            let tasks: Vec<_> = (0..8)
                .map(|_| {
                    let conns = conns.clone();
                    tokio::spawn(async move { drop(conns.get()) })
                })
                .collect();
            for t in tasks {
                t.await.expect("the task");
            }
        });
        assert_eq!(conns.count(), 2, "the building runtime and this one");
    }
}
