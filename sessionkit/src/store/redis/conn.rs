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
//! used from, up to [`MAX_RUNTIMES`] in all; a store cloned into every
//! worker then runs like a store per worker. Each further runtime shares the
//! first connection (and a warning says so once). A runtime that has shut
//! down keeps its slot: its connection's tasks are gone with it and its id
//! is not seen again (tokio numbers runtimes with a process-wide counter,
//! though it documents ids as unique only among running runtimes), so the
//! slot is only memory. Were an id reused, that slot's connection would
//! fail one command as dropped and redis-rs would reconnect it on the
//! runtime that sent the next one. A store also outlives the runtime that
//! connected it: every other runtime has a connection of its own.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
#[cfg(feature = "cluster")]
use std::sync::Arc;
use std::sync::{Mutex, OnceLock};

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::{Cmd, Pipeline, RedisFuture, Value};
use tokio::runtime::{Handle, Id};

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

/// A store's connections, one per runtime that used it (see the module
/// docs); shared by the store's clones.
///
/// The other runtimes' connections sit in a fixed array of once-set slots
/// filled in order, with a count of the slots set: finding one reads shared
/// memory and writes none (no lock, no reference count), so workers on many
/// cores do not contend on every command. Adding one takes a mutex. Naming
/// the current runtime does clone its handle (one shared reference count
/// up and down), as every tokio timer does: redis-rs's response timeout
/// already makes one per command.
pub(crate) struct Conns {
    /// The runtime the store was built on, and its connection.
    first_runtime: Option<Id>,
    first: Conn,
    /// The other runtimes' connections; the first `len` are set.
    others: Box<[OnceLock<(Id, Conn)>]>,
    len: AtomicUsize,
    /// Held while a slot is filled.
    adding: Mutex<()>,
    maker: Maker,
    /// Whether a warning that a runtime shares the first connection (too
    /// many runtimes, or a connection that could not be made) was logged.
    warned: AtomicBool,
}

impl Conns {
    /// `first` is the connection made on the current runtime (if any).
    pub(crate) fn new(first: Conn, maker: Maker) -> Self {
        Conns {
            first_runtime: Handle::try_current().ok().map(|h| h.id()),
            first,
            others: (1..MAX_RUNTIMES).map(|_| OnceLock::new()).collect(),
            len: AtomicUsize::new(0),
            adding: Mutex::new(()),
            maker,
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
        drop(handle);
        if self.first_runtime == Some(id) {
            return self.first.clone();
        }
        match self.find(id, self.len.load(Ordering::Acquire)) {
            Some(conn) => conn,
            None => self.add(id),
        }
    }

    /// Runtime `id`'s connection among the first `len` slots.
    fn find(&self, id: Id, len: usize) -> Option<Conn> {
        self.others[..len]
            .iter()
            .filter_map(OnceLock::get)
            .find(|(r, _)| *r == id)
            .map(|(_, conn)| conn.clone())
    }

    /// Makes the connection of runtime `id` (unless a concurrent call just
    /// did), or hands out the first one when the slots are full or the
    /// connection cannot be made.
    #[cold]
    fn add(&self, id: Id) -> Conn {
        // Never poisoned in practice (nothing below panics while holding
        // it); if it were, the slots are still consistent.
        let _adding = self.adding.lock().unwrap_or_else(|e| e.into_inner());
        let len = self.len.load(Ordering::Acquire);
        if let Some(conn) = self.find(id, len) {
            return conn;
        }
        let Some(slot) = self.others.get(len) else {
            if !self.warned.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    "a RedisStore is used from more than {MAX_RUNTIMES} Tokio runtimes; the \
                     further ones share its first connection (their commands cross threads, \
                     slower)"
                );
            }
            return self.first.clone();
        };
        match self.maker.make() {
            Ok(conn) => {
                // The slot is empty: only this mutex's holder fills slots,
                // and it fills them in order.
                let _ = slot.set((id, conn.clone()));
                self.len.store(len + 1, Ordering::Release);
                tracing::debug!(
                    runtime = %id,
                    connections = len + 2,
                    "a RedisStore opened a connection for another Tokio runtime"
                );
                conn
            }
            Err(e) => {
                // Making a lazy connection does no I/O: only a setting
                // redis-rs rejects fails here, and the first connection,
                // made with the same settings, already works. Said once:
                // every later command of this runtime comes back here.
                if !self.warned.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        "a RedisStore could not open a connection for a runtime, which shares \
                         its first connection instead: {e}"
                    );
                }
                self.first.clone()
            }
        }
    }

    /// Whether these are Redis Cluster connections.
    #[cfg(feature = "cluster")]
    pub(crate) fn is_cluster(&self) -> bool {
        self.first.is_cluster()
    }

    /// How many connections the store holds: one per runtime that used it.
    pub(crate) fn count(&self) -> usize {
        1 + self.len.load(Ordering::Acquire)
    }
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
        for _ in 0..MAX_RUNTIMES + 5 {
            runtime().block_on(async { conns.get() });
        }
        assert_eq!(conns.count(), MAX_RUNTIMES);
    }

    #[test]
    fn one_runtime_used_from_several_threads_gets_one_connection() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .build()
            .expect("a runtime");
        let conns = std::sync::Arc::new(conns(&runtime()));
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
