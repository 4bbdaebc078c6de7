//! The connection a [`RedisStore`](super::RedisStore) talks through: one
//! multiplexed, self-reconnecting connection to a standalone Redis, or
//! (feature `cluster`) a Redis Cluster connection that routes each command
//! to the master owning its key's slot, made at once or on first use.

use redis::aio::{ConnectionLike, ConnectionManager};
use redis::{Cmd, Pipeline, RedisFuture, Value};
#[cfg(feature = "cluster")]
use std::sync::Arc;

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
