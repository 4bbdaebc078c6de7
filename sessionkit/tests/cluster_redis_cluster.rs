//! `RedisStore` and `ClusteredStore` on a real Redis Cluster of three
//! masters that this test binary starts itself (`redis-cli --cluster
//! create`): the whole conformance suite, the owner index and the query
//! operations included, plus scans on one and on three masters.

use std::sync::OnceLock;

use sessionkit::store::cluster::{ClusterOptions, ClusteredStore};
use sessionkit::store::redis::RedisStore;
use sessionkit::store::{QueryStore, Save, Store};
use sessionkit::testing::redis_cluster::RedisCluster;
use sessionkit::testing::TestData;
use sessionkit::{Record, SessionId};

fn cluster() -> &'static RedisCluster {
    static CLUSTER: OnceLock<RedisCluster> = OnceLock::new();
    CLUSTER.get_or_init(|| RedisCluster::start().unwrap_or_else(|e| panic!("{e}")))
}

fn unique_prefix() -> String {
    format!("cluster-{}:", &SessionId::generate().storage_key()[..12])
}

async fn plain_with_prefix(prefix: String) -> RedisStore<TestData> {
    let store = RedisStore::cluster_builder(cluster().urls())
        .key_prefix(prefix)
        .connect()
        .await
        .expect("connect to the test cluster");
    assert!(store.is_cluster());
    store
}

async fn plain() -> RedisStore<TestData> {
    plain_with_prefix(unique_prefix()).await
}

async fn clustered() -> ClusteredStore<TestData> {
    let store = plain().await;
    let channel = format!("invalidate-{}", store.key_prefix());
    ClusteredStore::with_store(
        store,
        cluster().urls(),
        ClusterOptions::new([7u8; 32]).channel(channel),
    )
    .await
    .expect("valid options")
}

/// Built without I/O (`build_lazy`): the cluster connection is made by the
/// first command.
async fn lazy() -> RedisStore<TestData> {
    let store = RedisStore::cluster_builder(cluster().urls())
        .key_prefix(unique_prefix())
        .build_lazy()
        .expect("build_lazy inside a runtime");
    assert!(store.is_cluster());
    store
}

/// A clustered store on a lazy cluster store, not waiting for its
/// subscription (what one actix-web worker builds in its app factory).
async fn clustered_lazy() -> ClusteredStore<TestData> {
    let store = lazy().await;
    let channel = format!("invalidate-{}", store.key_prefix());
    ClusteredStore::with_store_lazy(
        store,
        cluster().urls(),
        ClusterOptions::new([7u8; 32]).channel(channel),
    )
    .expect("valid options, inside a runtime")
}

sessionkit::store_conformance_tests!(redis_on_cluster, plain());
sessionkit::store_conformance_tests!(lazy_redis_on_cluster, lazy());
sessionkit::store_conformance_tests!(lazy_clustered_on_cluster, clustered_lazy());
sessionkit::query_store_conformance_tests!(lazy_redis_on_cluster_query, lazy());
sessionkit::server_store_conformance_tests!(redis_on_cluster_server, plain());
sessionkit::query_store_conformance_tests!(redis_on_cluster_query, plain());
sessionkit::store_conformance_tests!(clustered_on_cluster, clustered());
sessionkit::server_store_conformance_tests!(clustered_on_cluster_server, clustered());
sessionkit::query_store_conformance_tests!(clustered_on_cluster_query, clustered());

fn new_record(owner: &str) -> Record<TestData> {
    let mut r = Record::new(
        SessionId::generate(),
        TestData::default(),
        std::time::SystemTime::now(),
        &sessionkit::expiry::ExpiryPolicy::default(),
    );
    r.owner = Some(owner.to_owned());
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stores_with_different_prefixes_spread_over_the_masters_and_count_sees_them_all() {
    // One store's keys share a slot (hash-tagged prefix); many prefixes
    // land on different masters. A count through any store scans every
    // master and finds exactly its own sessions.
    let mut stores = Vec::new();
    for _ in 0..12 {
        stores.push(plain().await);
    }
    for (i, store) in stores.iter().enumerate() {
        for _ in 0..=i {
            let r = new_record("spread");
            store.save(Save::create(&r)).await.unwrap();
        }
    }
    for (i, store) in stores.iter().enumerate() {
        assert_eq!(store.count().await.unwrap(), i + 1);
    }
    let masters_used = cluster()
        .nodes()
        .iter()
        .filter(|n| {
            n.command("DBSIZE")
                .is_ok_and(|r| r.trim_start_matches(':').trim() != "0")
        })
        .count();
    assert!(masters_used >= 2, "12 prefixes all hashed to one master");
}

/// A one-master cluster (a development set-up) does not know its own IP:
/// `CLUSTER NODES` prints `:port` for it. Scans found the nodes to scan
/// there and skipped it, so `count` said 0 and a purge removed nothing; they
/// now go to the master of the store's slot through the client's slot map.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queries_see_the_sessions_of_a_one_master_cluster() {
    let single = RedisCluster::start_single().unwrap_or_else(|e| panic!("{e}"));
    let nodes = single.nodes()[0].command("CLUSTER NODES").unwrap();
    assert!(nodes.contains(" :"), "an empty IP, as assumed: {nodes}");
    let store: RedisStore<TestData> = RedisStore::cluster_builder(single.urls())
        .key_prefix(unique_prefix())
        .connect()
        .await
        .expect("connect to the one-master cluster");
    for _ in 0..3 {
        store.save(Save::create(&new_record("solo"))).await.unwrap();
    }
    assert_eq!(store.count().await.unwrap(), 3);
    assert_eq!(store.find_by(&|_| true).await.unwrap().len(), 3);
    assert_eq!(store.bulk_delete(&|_| true).await.unwrap().len(), 3);
    assert_eq!(store.count().await.unwrap(), 0);
}

/// A master whose script cache is empty (a replica promoted by a failover
/// never had the scripts; here: `SCRIPT FLUSH`) while another master is down
/// (the one that failed): writes, revokes and queries still work, the
/// missing scripts loaded again on the way (redis-rs sends that `SCRIPT
/// LOAD` to every node it can reach; the dead one does not fail it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_scripts_are_loaded_again_while_another_master_is_down() {
    let mut own = RedisCluster::start().unwrap_or_else(|e| panic!("{e}"));
    for node in own.nodes() {
        let reply = node
            .command("CONFIG SET cluster-require-full-coverage no")
            .unwrap();
        assert!(!reply.starts_with('-'), "{reply}");
    }
    let store: RedisStore<TestData> = RedisStore::cluster_builder(own.urls())
        .key_prefix(unique_prefix())
        .connect()
        .await
        .expect("connect");
    let r = new_record("failover");
    store.save(Save::create(&r)).await.unwrap();
    let holder = own
        .nodes()
        .iter()
        .position(|n| {
            n.command("DBSIZE")
                .is_ok_and(|r| r.trim_start_matches(':').trim() != "0")
        })
        .expect("the store's master holds its keys");
    own.kill((holder + 1) % 3).unwrap();
    let flush = |own: &RedisCluster| {
        let reply = own.nodes()[holder].command("SCRIPT FLUSH").unwrap();
        assert!(!reply.starts_with('-'), "{reply}");
    };
    flush(&own);

    let mut changed = store.load(&r.id.encode()).await.unwrap().unwrap();
    changed.data.counter = 5;
    let saved = store
        .save(Save::update(&changed, Some(&r.data)))
        .await
        .expect("an update with its script missing and another master down");
    assert!(saved.is_saved());
    let loaded = store.load(&r.id.encode()).await.unwrap().unwrap();
    assert_eq!(loaded.data.counter, 5);
    assert_eq!(store.count().await.unwrap(), 1);
    flush(&own);
    assert_eq!(store.delete_owner("failover").await.unwrap().len(), 1);
    let scripts = own.nodes()[holder].command("INFO commandstats").unwrap();
    assert!(scripts.contains("cmdstat_script|load"), "{scripts}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prefix_is_wrapped_in_a_hash_tag_on_a_cluster() {
    let store = plain_with_prefix("app:".into()).await;
    assert_eq!(store.key_prefix(), "{app:}");
    let tagged = plain_with_prefix("app:{eu}:".into()).await;
    assert_eq!(tagged.key_prefix(), "app:{eu}:");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_logout_reaches_nodes_subscribed_through_other_cluster_masters() {
    // Each node subscribes through a different master: classic PUBLISH is
    // broadcast over the cluster bus, so every node hears every message.
    let prefix = unique_prefix();
    let channel = format!("invalidate-{prefix}");
    let urls = cluster().urls();
    let mut nodes = Vec::new();
    for i in 0..3 {
        let store = plain_with_prefix(prefix.clone()).await;
        let mut rotated = urls.clone();
        rotated.rotate_left(i);
        let options = ClusterOptions::new([7u8; 32]).channel(channel.clone());
        nodes.push(
            ClusteredStore::with_store(store, rotated, options)
                .await
                .unwrap(),
        );
    }
    let r = new_record("alice");
    let cookie = match nodes[0].save(Save::create(&r)).await.unwrap() {
        sessionkit::store::SaveOutcome::Saved(c) => c,
        other => panic!("{other:?}"),
    };
    for n in &nodes {
        assert!(n.load(&cookie).await.unwrap().is_some());
        assert!(n.is_cached(&r.id));
    }
    assert!(nodes[2].delete(&r.id).await.unwrap());
    let start = std::time::Instant::now();
    while nodes[0].is_cached(&r.id) || nodes[1].is_cached(&r.id) {
        assert!(start.elapsed() < std::time::Duration::from_secs(2));
        tokio::task::yield_now().await;
    }
    for n in &nodes {
        assert!(n.load(&cookie).await.unwrap().is_none());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_cluster_urls_are_errors_that_quote_no_password() {
    for nodes in [
        vec!["not a url at all"],
        vec!["redis://:hunter2-secret@127.0.0.1:1/"],
        vec![],
    ] {
        let err = RedisStore::<TestData>::cluster_builder(nodes.clone())
            .connection_timeout(std::time::Duration::from_millis(200))
            .connect()
            .await
            .expect_err("cannot connect");
        let text = err.to_string();
        println!("{nodes:?} -> {text}");
        assert!(!text.contains("hunter2-secret"), "{text}");
    }
    let err = ClusteredStore::<TestData>::connect_cluster(
        &["redis://:hunter2-secret@127.0.0.1:1/"],
        ClusterOptions::new([7u8; 32]),
    )
    .await
    .expect_err("cannot connect");
    assert!(!err.to_string().contains("hunter2-secret"));
}

/// A lazy cluster store starts without a cluster: every command fails with
/// a clear, transient error (each one tries to connect again), nothing
/// panics, and bad URLs fail at build time without quoting a password.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lazy_cluster_store_starts_without_a_cluster_and_fails_each_command_cleanly() {
    let store = RedisStore::<TestData>::cluster_builder(vec!["redis://127.0.0.1:1/"])
        .connection_timeout(std::time::Duration::from_millis(200))
        .build_lazy()
        .expect("no I/O at build time");
    let cookie = SessionId::generate().encode();
    for _ in 0..2 {
        let err = store.load(&cookie).await.expect_err("no cluster there");
        assert!(err.is_transient(), "{err:?}");
    }
    let also_lazy = RedisStore::<TestData>::cluster_builder(vec!["redis://127.0.0.1:1/"])
        .connection_timeout(std::time::Duration::from_millis(200))
        .lazy()
        .connect()
        .await
        .expect("lazy connect returns at once");
    assert!(also_lazy.count().await.is_err());

    for nodes in [
        vec!["not a url at all"],
        vec!["nonsense://:hunter2-secret@127.0.0.1:1/"],
    ] {
        let err = RedisStore::<TestData>::cluster_builder(nodes.clone())
            .build_lazy()
            .expect_err("not a Redis URL");
        assert!(!err.to_string().contains("hunter2-secret"), "{err}");
    }
}
