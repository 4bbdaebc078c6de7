//! A throw-away Redis Cluster for tests (feature `testing`): three
//! cluster-enabled `redis-server` masters on free ports (each a
//! [`RedisServer`], killed by pid when dropped), joined with
//! `redis-cli --cluster create`, ready once every node reports
//! `cluster_state:ok`.
//!
//! ```no_run
//! use sessionkit::testing::redis_cluster::RedisCluster;
//!
//! let cluster = RedisCluster::start().expect("redis cluster");
//! for url in cluster.urls() {
//!     println!("{url}");
//! }
//! ```

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use super::redis_server::{RedisServer, RedisServerError};

/// A running Redis Cluster owned by the test: three masters, or one
/// ([`RedisCluster::start_single`]).
#[derive(Debug)]
pub struct RedisCluster {
    nodes: Vec<RedisServer>,
}

fn redis_cli() -> Option<PathBuf> {
    let default = PathBuf::from("/usr/bin/redis-cli");
    if default.is_file() {
        return Some(default);
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join("redis-cli"))
            .find(|p| p.is_file())
    })
}

impl RedisCluster {
    /// Starts three masters, creates the cluster (no replicas) and waits
    /// until every node reports `cluster_state:ok`.
    pub fn start() -> Result<Self, RedisServerError> {
        let mut nodes = Vec::new();
        for _ in 0..3 {
            nodes.push(RedisServer::start_with_args([
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                "nodes.conf",
                "--cluster-node-timeout",
                "5000",
            ])?);
        }
        let cli = redis_cli().ok_or(RedisServerError::NotInstalled)?;
        let output = Command::new(cli)
            .arg("--cluster")
            .arg("create")
            .args(nodes.iter().map(|n| format!("127.0.0.1:{}", n.port())))
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()?;
        if !output.status.success() {
            return Err(std::io::Error::other(format!(
                "redis-cli --cluster create failed: {}",
                String::from_utf8_lossy(&output.stdout)
            ))
            .into());
        }
        let cluster = RedisCluster { nodes };
        cluster.wait_ok(Duration::from_secs(30))?;
        Ok(cluster)
    }

    /// Starts a cluster of one master holding every slot (`CLUSTER
    /// ADDSLOTSRANGE 0 16383`), as a development set-up may run. Never having
    /// met another node, it does not know its own IP: `CLUSTER NODES` and
    /// `CLUSTER SLOTS` print an empty host for it.
    pub fn start_single() -> Result<Self, RedisServerError> {
        let node = RedisServer::start_with_args([
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            "nodes.conf",
        ])?;
        let reply = node.command("CLUSTER ADDSLOTSRANGE 0 16383")?;
        if reply.starts_with('-') {
            return Err(std::io::Error::other(format!(
                "CLUSTER ADDSLOTSRANGE failed: {}",
                reply.trim()
            ))
            .into());
        }
        let cluster = RedisCluster { nodes: vec![node] };
        cluster.wait_ok(Duration::from_secs(30))?;
        Ok(cluster)
    }

    fn wait_ok(&self, limit: Duration) -> Result<(), RedisServerError> {
        let start = Instant::now();
        while start.elapsed() < limit {
            let all_ok = self.nodes.iter().all(|n| {
                n.command("CLUSTER INFO")
                    .is_ok_and(|info| info.contains("cluster_state:ok"))
            });
            if all_ok {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(RedisServerError::NotReady(limit))
    }

    /// `redis://127.0.0.1:<port>/` of every node.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(RedisServer::url).collect()
    }

    /// The nodes, for commands like `INFO commandstats`.
    pub fn nodes(&self) -> &[RedisServer] {
        &self.nodes
    }

    /// Kills node `i` with SIGKILL (a crashed master; the others keep their
    /// slots, and serve them if `cluster-require-full-coverage` is `no`).
    pub fn kill(&mut self, i: usize) -> Result<(), RedisServerError> {
        match self.nodes.get_mut(i) {
            Some(node) => node.kill(),
            None => Err(std::io::Error::other(format!("no node {i}")).into()),
        }
    }
}
