//! Redis Cluster support for [`RedisStore`] (feature `cluster`).
//!
//! # Key layout on a cluster
//! Every script of the store touches several keys at once: a session and
//! its owner's index set (create, update, delete), the old and the new
//! session (regenerate, atomic by contract), or an owner set and all of its
//! sessions (revoke). Redis Cluster runs a script only when all of its keys
//! live in one hash slot. A session key can only be derived from the session
//! id (a load knows nothing else), and a regenerated id is random, so no
//! per-session or per-owner hash tag keeps these keys together. The store
//! therefore puts the key prefix inside a hash tag: `{sessionkit:}<hash>`
//! and `{sessionkit:}owner:<hash>`. All of one store's keys share one slot,
//! every script stays atomic, and the owner index keeps its guarantees.
//!
//! The cost: one application's sessions live on one master (plus its
//! replicas). Use distinct prefixes to spread several applications over
//! the masters. A prefix that already holds a hash tag (`app:{eu}:`) is
//! kept as it is.
//!
//! # Connections
//! redis-rs' async `ClusterConnection` routes each command to the master of
//! its key's slot and follows `MOVED`/`ASK` redirections. `SCAN` is sent to
//! every master in turn (a cluster `SCAN` only sees the keys of the node it
//! runs on), found with `CLUSTER NODES`. With
//! [`lazy`](super::RedisStoreBuilder::lazy) or
//! [`build_lazy`](super::RedisStoreBuilder::build_lazy) the cluster
//! connection is made by the first command (redis-rs has no lazy cluster
//! connection of its own: the store keeps the client and a once-cell); a
//! failed attempt is not kept, the next command tries again.

use std::sync::LazyLock;
use std::time::Duration;

use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
use redis::{Cmd, FromRedisValue, RedisResult, Script};

use super::{RedisStore, RedisStoreBuilder};
use crate::error::StoreError;
use crate::id::SessionId;
use crate::record::SessionData;

/// `delete.lua` followed by `PUBLISH`es, in one script: the clustered
/// store's logout is deleted and announced in one atomic round trip, so no
/// node can read the session between the two. (`PUBLISH` is keyless, so
/// this also runs on a cluster; it is broadcast to every node from there.)
static DELETE_AND_PUBLISH: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(
        include_str!("index.lua"),
        "local function delete_sessions()\n",
        include_str!("delete.lua"),
        "\nend\n",
        "local existed = delete_sessions()\n",
        "-- ARGV[#KEYS + 2] channel, then the messages to publish on it.\n",
        "local channel = ARGV[#KEYS + 2]\n",
        "for i = #KEYS + 3, #ARGV do redis.call('PUBLISH', channel, ARGV[i]) end\n",
        "return existed\n",
    ))
});

impl<T: SessionData> RedisStore<T> {
    /// A builder for a store on a Redis Cluster reached through `nodes`
    /// (seed URLs like `redis://10.0.0.1:7000/`; one reachable node is
    /// enough, the others are discovered). See the [module docs](super) for
    /// the key layout on a cluster.
    pub fn cluster_builder<I, S>(nodes: I) -> RedisStoreBuilder<T>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let nodes: Vec<String> = nodes.into_iter().map(Into::into).collect();
        let mut builder = Self::builder(nodes.first().cloned().unwrap_or_default());
        builder.cluster_nodes = Some(nodes);
        builder
    }

    /// Connects to a Redis Cluster with the defaults (prefix `{sessionkit:}`).
    pub async fn connect_cluster<I, S>(nodes: I) -> Result<Self, StoreError>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self::cluster_builder(nodes).connect().await
    }

    /// The store's connections, shared (the clustered store publishes its
    /// invalidations through them).
    pub(crate) fn shared_connections(&self) -> std::sync::Arc<super::Conns> {
        self.conns.clone()
    }

    /// Deletes sessions like [`Store::delete`](crate::Store::delete) and, in
    /// the same script run, publishes `messages` on `channel`. Says, per id,
    /// whether it existed.
    pub(crate) async fn delete_and_publish(
        &self,
        ids: &[SessionId],
        channel: &str,
        messages: &[Vec<u8>],
    ) -> Result<Vec<bool>, StoreError> {
        let mut extra: Vec<&[u8]> = Vec::with_capacity(messages.len() + 1);
        extra.push(channel.as_bytes());
        extra.extend(messages.iter().map(Vec::as_slice));
        self.run_delete(&DELETE_AND_PUBLISH, ids, &extra).await
    }

    /// Whether this store talks to a Redis Cluster.
    pub fn is_cluster(&self) -> bool {
        self.conns.is_cluster()
    }
}

/// Connects a cluster client through the seed nodes.
/// A cluster client for the seed nodes (no I/O: it connects when asked).
pub(super) fn client(
    nodes: &[String],
    response_timeout: Option<Duration>,
    connection_timeout: Option<Duration>,
) -> RedisResult<redis::cluster::ClusterClient> {
    let mut builder = ClusterClientBuilder::new(nodes.iter().map(String::as_str));
    if let Some(t) = response_timeout {
        builder = builder.response_timeout(t);
    }
    if let Some(t) = connection_timeout {
        builder = builder.connection_timeout(t);
    }
    builder.build()
}

/// The prefix inside a hash tag, unless it already holds one (see the
/// module docs for why all of a store's keys share one slot).
pub(super) fn hash_tagged(prefix: String) -> String {
    if has_hash_tag(&prefix) {
        prefix
    } else if prefix.is_empty() || prefix.starts_with('}') {
        // Wrapped, these would make an empty tag (`{}`, `{}x}`), which Redis
        // ignores: it would hash whole keys, a store's keys would spread
        // over slots, and its multi-key scripts fail with CROSSSLOT (first
        // seen at a login). A fixed word is tagged instead.
        format!("{{sessionkit}}{prefix}")
    } else {
        format!("{{{prefix}}}")
    }
}

/// Whether Redis would hash only part of a key starting with `prefix`: a `{`
/// followed later by a `}` with at least one character in between.
fn has_hash_tag(prefix: &str) -> bool {
    prefix
        .find('{')
        .and_then(|open| prefix[open + 1..].find('}'))
        .is_some_and(|len| len > 0)
}

/// The addresses of the masters that serve slots, from `CLUSTER NODES`.
pub(super) async fn masters(conn: &mut ClusterConnection) -> RedisResult<Vec<(String, u16)>> {
    let text: String = redis::cmd("CLUSTER").arg("NODES").query_async(conn).await?;
    Ok(parse_masters(&text))
}

/// Parses `CLUSTER NODES`: `<id> <ip:port@cport[,host]> <flags> <master>
/// <ping> <pong> <epoch> <link> <slot>...`; keeps healthy masters with slots.
fn parse_masters(text: &str) -> Vec<(String, u16)> {
    text.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let flags = fields.get(2)?;
            let is_master = flags.split(',').any(|f| f == "master");
            let failing = flags.split(',').any(|f| f == "fail" || f == "noaddr");
            if !is_master || failing || fields.len() < 9 {
                return None;
            }
            let addr = fields[1].split(['@', ',']).next()?;
            let (host, port) = addr.rsplit_once(':')?;
            (!host.is_empty()).then(|| Some((host.to_owned(), port.parse().ok()?)))?
        })
        .collect()
}

/// Runs one command on the node at `addr`.
pub(super) async fn query_on<V: FromRedisValue>(
    conn: &mut ClusterConnection,
    cmd: Cmd,
    (host, port): &(String, u16),
) -> RedisResult<V> {
    let routing = RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress {
        host: host.clone(),
        port: *port,
    });
    let value = conn.route_command(cmd, routing).await?;
    Ok(redis::from_redis_value(value)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_prefix_without_a_hash_tag_is_wrapped_in_one() {
        assert_eq!(hash_tagged("sessionkit:".into()), "{sessionkit:}");
        assert_eq!(hash_tagged("app:{eu}:".into()), "app:{eu}:");
        // `{}` is no hash tag for Redis: the whole key would be hashed.
        assert_eq!(hash_tagged("a{}b".into()), "{a{}b}");
        // Wrapping these would make an empty tag: a fixed one instead.
        assert_eq!(hash_tagged(String::new()), "{sessionkit}");
        assert_eq!(hash_tagged("}x".into()), "{sessionkit}}x");
        assert_eq!(hash_tagged("a}b".into()), "{a}b}");
        for prefix in ["", "}x", "}", "a}b", "sessionkit:", "{}"] {
            assert!(has_hash_tag(&hash_tagged(prefix.into())), "{prefix:?}");
        }
    }

    #[test]
    fn only_healthy_masters_with_slots_are_scanned() {
        let text = "\
a1 127.0.0.1:7000@17000 myself,master - 0 0 1 connected 0-5460
b2 127.0.0.1:7001@17001,host-b master - 0 0 2 connected 5461-10922
c3 127.0.0.1:7002@17002 slave b2 0 0 2 connected
d4 127.0.0.1:7003@17003 master,fail - 0 0 3 disconnected 10923-16383
e5 :0@0 master,noaddr - 0 0 0 disconnected
f6 127.0.0.1:7005@17005 master - 0 0 4 connected
garbage
";
        assert_eq!(
            parse_masters(text),
            vec![("127.0.0.1".into(), 7000), ("127.0.0.1".into(), 7001)]
        );
    }
}
