//! The attack suite (see `tests/attack_support`) against [`ClusteredStore`]
//! (Redis plus a local cache per node) on a throw-away `redis-server`, over
//! real HTTP; plus the attack only a cluster has: replaying on node B a
//! cookie logged out on node A, whose cache held it.

mod attack_support;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use attack_support::{attacks, counting, random_id, App, Data, Kit};
use sessionkit::store::cluster::{ClusterOptions, ClusteredStore, MessageKey};
use sessionkit::store::redis::RedisStore;
use sessionkit::testing::redis_server::RedisServer;

fn shared() -> &'static RedisServer {
    static SERVER: OnceLock<RedisServer> = OnceLock::new();
    SERVER.get_or_init(|| RedisServer::start().expect("redis-server"))
}

/// One node of a fleet named `fleet` (its key prefix and channel).
async fn node(kit: &Kit, fleet: &str) -> ClusteredStore<Data> {
    let url = shared().url();
    let redis = RedisStore::<Data>::builder(&url)
        .key_prefix(format!("attack:{fleet}:"))
        .clock(Arc::new(kit.clock.clone()))
        .connect()
        .await
        .expect("connect");
    let options =
        ClusterOptions::new(MessageKey::new([9u8; 32])).channel(format!("attack:{fleet}"));
    ClusteredStore::with_store(redis, vec![url], options)
        .await
        .expect("cluster node")
}

async fn app() -> App {
    let kit = Kit::new();
    let store = node(&kit, &random_id()[..8]).await;
    kit.serve_query(store).await
}

async fn bound_app() -> App {
    let kit = Kit::bound_to_user_agent();
    let store = node(&kit, &random_id()[..8]).await;
    kit.serve_query(store).await
}

attack_suite!(bound_app; binding_a_cookie_replayed_from_another_browser_gives_a_fresh_session);

server_side_attack_suite!(app);

/// Logout (and revoke) on node A, replay on node B whose cache holds the
/// session: refused once the invalidation has arrived. The wait (200 ms) is
/// far above the measured delivery time (median tens of µs, worst seen
/// about 17 ms); without invalidation B would serve its cached copy for the
/// whole cache TTL (30 s). Defence: the authenticated invalidation bus.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cookie_logged_out_on_one_node_is_refused_by_another_that_cached_it() {
    let fleet = random_id()[..8].to_owned();
    let (kit_a, kit_b) = (Kit::new(), Kit::new());
    let node_a = node(&kit_a, &fleet).await;
    let a = kit_a.serve_query(node_a).await;
    let node_b = node(&kit_b, &fleet).await;
    let b = kit_b.serve_query(node_b).await;

    let stolen = a.login("alice", None).await;
    assert_eq!(b.me(&stolen).await, "alice:0", "B serves (and caches) it");
    assert_eq!(b.me(&stolen).await, "alice:0");
    let out = a.call("POST", "/logout", Some(&stolen)).await;
    assert_eq!(out.status, 200);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        b.me(&stolen).await,
        "anon:0",
        "B served a logged-out session from its cache"
    );

    let phone = a.login("alice", None).await;
    assert_eq!(b.me(&phone).await, "alice:0");
    assert_eq!(a.call("POST", "/admin/revoke/alice", None).await.body, "1");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        b.me(&phone).await,
        "anon:0",
        "B served a revoked session from its cache"
    );
}

/// 10^4 random ids over HTTP (each a Redis `GET` after a cache miss): no
/// hit, all counted.
#[test]
fn enumeration_of_random_ids_finds_nothing_and_is_counted() {
    const HTTP: usize = 10_000;
    let invalid = counting("sessionkit_invalid_lookups_total", || async {
        attacks::enumeration_finds_nothing(&app().await, HTTP).await;
    });
    println!("invalid lookups counted: {invalid}");
    assert!(invalid >= HTTP as u64, "only {invalid} counted");
}
