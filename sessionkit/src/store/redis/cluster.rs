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
//! its key's slot and follows `MOVED`/`ASK` redirections. `SCAN` (the query
//! operations: `count`, `iter`, `find_by`, `bulk_delete`) is sent to the
//! master of the store's slot, through redis-rs' own slot map: a cluster
//! `SCAN` only sees the keys of the node it runs on, and all of a store's
//! keys are on that one (while an operator moves the slot to another master,
//! keys already moved are not listed until the move ends). With
//! [`lazy`](super::RedisStoreBuilder::lazy) or
//! [`build_lazy`](super::RedisStoreBuilder::build_lazy) the cluster
//! connection is made by the first command (redis-rs has no lazy cluster
//! connection of its own: the store keeps the client and a once-cell); a
//! failed attempt is not kept, the next command tries again.

use std::sync::LazyLock;
use std::time::Duration;

use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};
use redis::{Cmd, FromRedisValue, RedisResult, Script};

use super::{RedisStore, RedisStoreBuilder};
use crate::error::StoreError;
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

/// `DELETE_AND_PUBLISH` for a revoke: deletes a listed session only if its
/// owner is still the one revoked (the owner hash follows the index
/// members), so a session given to another user since the listing survives.
static DELETE_OWNED_AND_PUBLISH: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(
        include_str!("index.lua"),
        "-- KEYS[i] record key\n",
        "-- ARGV[1] key prefix  ARGV[i + 1] index member of KEYS[i]\n",
        "-- ARGV[#KEYS + 2] owner hash  ARGV[#KEYS + 3] channel, then messages.\n",
        "local n = #KEYS\n",
        "local existed = {}\n",
        "for i, key in ipairs(KEYS) do\n",
        "  existed[i] = 0\n",
        "  local current = get_value(key)\n",
        "  if current then\n",
        "    local _, owner = parse_header(current)\n",
        "    if owner == ARGV[n + 2] then\n",
        "      redis.call('DEL', key)\n",
        "      index_remove(ARGV[1], owner, ARGV[i + 1])\n",
        "      existed[i] = 1\n",
        "    end\n",
        "  end\n",
        "end\n",
        "local channel = ARGV[n + 3]\n",
        "for i = n + 4, #ARGV do redis.call('PUBLISH', channel, ARGV[i]) end\n",
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
        keys: &[[u8; 32]],
        channel: &str,
        messages: &[Vec<u8>],
    ) -> Result<Vec<bool>, StoreError> {
        let mut extra: Vec<&[u8]> = Vec::with_capacity(messages.len() + 1);
        extra.push(channel.as_bytes());
        extra.extend(messages.iter().map(Vec::as_slice));
        self.run_delete(&DELETE_AND_PUBLISH, keys, &extra).await
    }

    /// [`RedisStore::delete_and_publish`] deleting only sessions still
    /// `owner`'s when the script runs.
    pub(crate) async fn delete_owned_and_publish(
        &self,
        keys: &[[u8; 32]],
        owner: &str,
        channel: &str,
        messages: &[Vec<u8>],
    ) -> Result<Vec<bool>, StoreError> {
        let owner = super::owner_hash(owner);
        let mut extra: Vec<&[u8]> = Vec::with_capacity(messages.len() + 2);
        extra.push(owner.as_bytes());
        extra.push(channel.as_bytes());
        extra.extend(messages.iter().map(Vec::as_slice));
        self.run_delete(&DELETE_OWNED_AND_PUBLISH, keys, &extra)
            .await
    }

    /// Whether this store talks to a Redis Cluster.
    pub fn is_cluster(&self) -> bool {
        self.conns.is_cluster()
    }
}

/// A cluster client for the seed nodes (no I/O: it connects when asked),
/// trusting `tls_root` (PEM) for `rediss://` nodes when given.
pub(super) fn client(
    nodes: &[String],
    response_timeout: Option<Duration>,
    connection_timeout: Option<Duration>,
    tls_root: Option<Vec<u8>>,
) -> RedisResult<redis::cluster::ClusterClient> {
    let mut builder = ClusterClientBuilder::new(nodes.iter().map(String::as_str));
    #[cfg(feature = "redis-tls")]
    if let Some(root) = tls_root {
        builder = builder.certs(redis::TlsCertificates {
            client_tls: None,
            root_cert: Some(root),
        });
    }
    #[cfg(not(feature = "redis-tls"))]
    let _: Option<Vec<u8>> = tls_root;
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

/// Runs one command on the master serving the slot of keys starting with
/// `prefix` (hash-tagged, so all of a store's keys share that slot), as
/// redis-rs' slot map knows it: the node's address as the cluster announces
/// it (a hostname, or the seed's address for a node that does not know its
/// own IP), not as `CLUSTER NODES` prints it.
pub(super) async fn query_on_slot_of<V: FromRedisValue>(
    conn: &mut ClusterConnection,
    cmd: Cmd,
    prefix: &str,
) -> RedisResult<V> {
    let route = Route::with_key(prefix.as_bytes(), SlotAddr::Master);
    let routing = RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(route));
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
}
