//! Three `ClusteredStore` nodes (separate connections, separate caches) on
//! one real `redis-server` started by this test: logouts, revokes and
//! regenerations on one node reach the others; a lost subscription empties
//! the cache; forged messages are ignored; warm reads send nothing to Redis.

use std::time::{Duration, Instant, SystemTime};

use sessionkit::expiry::ExpiryPolicy;
use sessionkit::store::cluster::{
    ClusterOptions, ClusteredStore, Invalidation, InvalidationKind, MessageKey, NodeId,
};
use sessionkit::store::redis::RedisStore;
use sessionkit::store::{QueryStore, Save, SaveKind, Store};
use sessionkit::testing::redis_server::RedisServer;
use sessionkit::testing::TestData;
use sessionkit::{Record, SessionId};

const KEY: [u8; 32] = [42; 32];

/// Three nodes sharing one Redis, one prefix and one channel (unique per test).
async fn fleet(server: &RedisServer) -> [ClusteredStore<TestData>; 3] {
    let tag = &SessionId::generate().storage_key()[..12];
    let mut nodes = Vec::new();
    for _ in 0..3 {
        nodes.push(node(server, tag).await);
    }
    nodes.try_into().unwrap()
}

async fn node(server: &RedisServer, tag: &str) -> ClusteredStore<TestData> {
    let store = RedisStore::builder(server.url())
        .key_prefix(format!("fleet-{tag}:"))
        .connect()
        .await
        .unwrap();
    let options = ClusterOptions::new(KEY).channel(format!("invalidate-{tag}"));
    let node = ClusteredStore::with_store(store, vec![server.url()], options)
        .await
        .unwrap();
    assert!(node.is_subscribed());
    node
}

fn record(owner: Option<&str>) -> Record<TestData> {
    let mut r = Record::new(
        SessionId::generate(),
        TestData {
            name: Some("alice".into()),
            ..TestData::default()
        },
        SystemTime::now(),
        &ExpiryPolicy::default(),
    );
    r.owner = owner.map(str::to_owned);
    r
}

async fn save(store: &ClusteredStore<TestData>, r: &Record<TestData>, kind: SaveKind) -> String {
    store
        .save(Save::new(r, None, kind))
        .await
        .unwrap()
        .cookie_value(&r.id.encode())
        .expect("session gone")
}

/// Logs in through `a` and reads through `b` and `c`: all three cache it.
async fn login_and_warm(
    nodes: &[ClusteredStore<TestData>; 3],
    owner: Option<&str>,
) -> Record<TestData> {
    let r = record(owner);
    let cookie = save(&nodes[0], &r, SaveKind::Create).await;
    for n in nodes {
        assert!(n.load(&cookie).await.unwrap().is_some());
        assert!(n.is_cached(&r.id), "every node caches it after a read");
    }
    r
}

/// Waits until no node in `nodes` caches `id`; the time it took.
async fn until_forgotten(nodes: &[&ClusteredStore<TestData>], id: &SessionId) -> Duration {
    let start = Instant::now();
    while nodes.iter().any(|n| n.is_cached(id)) {
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "invalidation did not arrive"
        );
        tokio::task::yield_now().await;
    }
    start.elapsed()
}

fn commands_since_reset(server: &RedisServer) -> Vec<String> {
    let stats = server.command("INFO commandstats").unwrap();
    stats
        .lines()
        .filter_map(|l| l.strip_prefix("cmdstat_"))
        // The test's own INFO/CONFIG/QUIT, and the subscriber's health PING
        // (every 5 s), are not reads.
        .filter(|l| {
            !["info:", "config", "quit:", "ping:"]
                .iter()
                .any(|p| l.starts_with(p))
        })
        .map(str::to_owned)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_logout_on_one_node_is_rejected_by_the_others_within_a_measured_bound() {
    let server = RedisServer::start().unwrap();
    let nodes = fleet(&server).await;
    let [a, b, c] = &nodes;
    let (mut after_return, mut from_call) = (Vec::new(), Vec::new());
    for _ in 0..100 {
        let r = login_and_warm(&nodes, None).await;
        let called = Instant::now();
        assert!(c.delete(&r.id).await.unwrap(), "logout through C");
        after_return.push(until_forgotten(&[a, b], &r.id).await);
        from_call.push(called.elapsed());
        for n in [a, b, c] {
            assert!(
                n.load(&r.id.encode()).await.unwrap().is_none(),
                "old cookie rejected"
            );
        }
    }
    for (what, times) in [
        ("after delete returned", &mut after_return),
        ("from the delete call", &mut from_call),
    ] {
        times.sort();
        println!(
            "logout propagation to A and B {what}, 100 trials: min {:?} median {:?} max {:?}",
            times[0], times[50], times[99]
        );
    }
    assert!(
        from_call[50] < Duration::from_millis(50),
        "median over 50 ms"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_write_whose_reply_never_came_leaves_nothing_stale_on_the_writer() {
    // The writer's call is cancelled (its request went away) while Redis is
    // stopped; once resumed, Redis runs the queued script (the session is
    // deleted, or regenerated away, and the other nodes are told). The
    // writer skips its own invalidations, so it must not keep what it had
    // cached.
    let server = RedisServer::start().unwrap();
    let nodes = fleet(&server).await;
    let [a, b, c] = &nodes;
    let cancelled = |ended_by_itself: bool| {
        server.resume().unwrap();
        assert!(!ended_by_itself, "Redis is stopped: the call cannot end");
    };

    // Redis must know the scripts already: a first use answers NOSCRIPT
    // and the store then sends the script itself, after the cancel.
    let warm = login_and_warm(&nodes, None).await;
    let mut moved = warm.clone();
    moved.id = SessionId::generate();
    save(a, &moved, SaveKind::Regenerate { old: warm.id }).await;
    a.delete(&moved.id).await.unwrap();

    // A logout through A.
    let r = login_and_warm(&nodes, None).await;
    server.pause().unwrap();
    cancelled(
        tokio::time::timeout(Duration::from_millis(200), a.delete(&r.id))
            .await
            .is_ok(),
    );
    until_forgotten(&[b, c], &r.id).await;
    assert!(
        !a.is_cached(&r.id),
        "the writer still caches a deleted session"
    );
    for n in [a, b, c] {
        assert!(n.load(&r.id.encode()).await.unwrap().is_none());
    }

    // A regenerate through A: the old id must not live on in A's cache.
    let r = login_and_warm(&nodes, None).await;
    let mut moved = a.load(&r.id.encode()).await.unwrap().unwrap();
    moved.id = SessionId::generate();
    let regenerate = a.save(Save::regenerate(&moved, r.id, None));
    server.pause().unwrap();
    cancelled(
        tokio::time::timeout(Duration::from_millis(200), regenerate)
            .await
            .is_ok(),
    );
    until_forgotten(&[b, c], &r.id).await;
    assert!(!a.is_cached(&r.id), "the writer still caches the old id");
    assert!(a.load(&r.id.encode()).await.unwrap().is_none());
    assert!(b.load(&moved.id.encode()).await.unwrap().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn updates_revokes_bulk_deletes_and_regenerations_reach_the_other_nodes() {
    let server = RedisServer::start().unwrap();
    let nodes = fleet(&server).await;
    let [a, b, c] = &nodes;

    // Update through A: B and C drop their older version, then read the new one.
    let r = login_and_warm(&nodes, None).await;
    let mut changed = a.load(&r.id.encode()).await.unwrap().unwrap();
    changed.data.counter = 41;
    save(a, &changed, SaveKind::Update).await;
    until_forgotten(&[b, c], &r.id).await;
    assert_eq!(
        b.load(&r.id.encode()).await.unwrap().unwrap().data.counter,
        41
    );
    assert!(a.is_cached(&r.id), "the writer caches what it wrote");

    // Regenerate through B: the old id dies everywhere.
    let loaded = b.load(&r.id.encode()).await.unwrap().unwrap();
    let mut moved = loaded.clone();
    moved.id = SessionId::generate();
    save(b, &moved, SaveKind::Regenerate { old: loaded.id }).await;
    until_forgotten(&[a, c], &r.id).await;
    for n in [a, b, c] {
        assert!(n.load(&r.id.encode()).await.unwrap().is_none());
        assert!(n.load(&moved.id.encode()).await.unwrap().is_some());
    }

    // Owner revoke through C.
    let owner = format!("owner-{}", &SessionId::generate().storage_key()[..8]);
    let s1 = login_and_warm(&nodes, Some(&owner)).await;
    let s2 = login_and_warm(&nodes, Some(&owner)).await;
    assert_eq!(c.delete_owner(&owner).await.unwrap().len(), 2);
    for s in [&s1, &s2] {
        until_forgotten(&[a, b], &s.id).await;
        assert!(a.load(&s.id.encode()).await.unwrap().is_none());
    }

    // Bulk delete through A.
    let s3 = login_and_warm(&nodes, Some(&owner)).await;
    let o = owner.clone();
    let removed = a
        .bulk_delete(&move |r| r.owner.as_deref() == Some(o.as_str()))
        .await
        .unwrap();
    assert_eq!(removed.len(), 1);
    until_forgotten(&[b, c], &s3.id).await;
    assert!(b.load(&s3.id.encode()).await.unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_subscription_empties_the_cache_and_nothing_stale_is_served() {
    let server = RedisServer::start().unwrap();
    let nodes = fleet(&server).await;
    let [a, b, c] = &nodes;
    let r = login_and_warm(&nodes, None).await;

    server.command("CLIENT KILL TYPE pubsub").unwrap();
    let start = Instant::now();
    while a.is_subscribed() || b.is_subscribed() {
        assert!(start.elapsed() < Duration::from_secs(2), "loss not noticed");
        tokio::task::yield_now().await;
    }
    // Serving stops first (the flag); the cache is emptied and the loss
    // counted right after: on a busy machine the test can look in between
    // (seen once in a cold newcomer run).
    while a.is_cached(&r.id) || b.is_cached(&r.id) || a.stats().subscription_losses == 0 {
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "caches not flushed"
        );
        tokio::task::yield_now().await;
    }
    assert!(a.stats().subscription_losses >= 1);

    // Logout through C while A and B hear nothing: they must not serve it.
    let a_heard = a.stats().invalidations;
    assert!(c.delete(&r.id).await.unwrap());
    let a_was_deaf = !a.is_subscribed();
    let bypassed = a.stats().bypassed;
    assert!(a.load(&r.id.encode()).await.unwrap().is_none());
    assert!(b.load(&r.id.encode()).await.unwrap().is_none());
    if a_was_deaf {
        assert_eq!(a.stats().invalidations, a_heard, "A missed the message");
        assert!(a.stats().bypassed > bypassed, "A read Redis, not its cache");
    }

    // Resubscribed: caching works again and invalidations arrive again.
    let start = Instant::now();
    while !(a.is_subscribed() && b.is_subscribed() && c.is_subscribed()) {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "never resubscribed"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let r2 = login_and_warm(&nodes, None).await;
    c.delete(&r2.id).await.unwrap();
    until_forgotten(&[a, b], &r2.id).await;
    println!("A and B were without subscription for at least the delete: {a_was_deaf}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn forged_and_malformed_messages_are_ignored_and_counted() {
    let server = RedisServer::start().unwrap();
    let tag = &SessionId::generate().storage_key()[..12];
    let a = node(&server, tag).await;
    let r = record(None);
    let cookie = save(&a, &r, SaveKind::Create).await;
    a.load(&cookie).await.unwrap();
    assert!(a.is_cached(&r.id));

    let channel = format!("invalidate-{tag}");
    let forged = Invalidation {
        node: NodeId::random(),
        kind: InvalidationKind::Deleted,
        version: 0,
        key: key_hash_of(&r.id),
    };
    let mut conn = redis::Client::open(server.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let wrong_key = forged.encode(&MessageKey::new([1; 32]), &channel);
    let other_channel = forged.encode(&MessageKey::new(KEY), "another-channel");
    let mut truncated = forged.encode(&MessageKey::new(KEY), &channel);
    truncated.pop();
    for payload in [
        wrong_key,
        other_channel,
        truncated,
        b"hello".to_vec(),
        vec![],
    ] {
        let _: i64 = redis::cmd("PUBLISH")
            .arg(&channel)
            .arg(payload)
            .query_async(&mut conn)
            .await
            .unwrap();
    }
    let start = Instant::now();
    while a.stats().rejected < 5 {
        assert!(start.elapsed() < Duration::from_secs(2), "{:?}", a.stats());
        tokio::task::yield_now().await;
    }
    assert!(a.is_cached(&r.id), "no forged message evicted anything");
    assert_eq!(a.stats().invalidations, 0);

    // The genuine article does evict.
    let genuine = forged.encode(&MessageKey::new(KEY), &channel);
    let _: i64 = redis::cmd("PUBLISH")
        .arg(&channel)
        .arg(genuine)
        .query_async(&mut conn)
        .await
        .unwrap();
    until_forgotten(&[&a], &r.id).await;
}

/// SHA-256 of the id: the key hash messages carry.
fn key_hash_of(id: &SessionId) -> [u8; 32] {
    let hex = id.storage_key();
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap();
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_ignores_its_own_messages_and_keeps_what_it_wrote() {
    let server = RedisServer::start().unwrap();
    let tag = &SessionId::generate().storage_key()[..12];
    let a = node(&server, tag).await;
    let r = record(None);
    let cookie = save(&a, &r, SaveKind::Create).await;
    let mut loaded = a.load(&cookie).await.unwrap().unwrap();
    loaded.data.counter = 7;
    save(&a, &loaded, SaveKind::Update).await;
    let start = Instant::now();
    while a.stats().own_ignored < 1 {
        assert!(start.elapsed() < Duration::from_secs(2));
        tokio::task::yield_now().await;
    }
    assert!(a.is_cached(&r.id));
    let hits = a.stats().hits;
    assert_eq!(a.load(&cookie).await.unwrap().unwrap().data.counter, 7);
    assert_eq!(a.stats().hits, hits + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_warm_read_sends_no_command_to_redis() {
    let server = RedisServer::start().unwrap();
    let tag = &SessionId::generate().storage_key()[..12];
    let a = node(&server, tag).await;
    let r = record(None);
    let cookie = save(&a, &r, SaveKind::Create).await;
    assert!(a.load(&cookie).await.unwrap().is_some());

    server.command("CONFIG RESETSTAT").unwrap();
    for _ in 0..100 {
        assert!(a.load(&cookie).await.unwrap().is_some());
    }
    assert_eq!(commands_since_reset(&server), Vec::<String>::new());

    // The same count on the plain store shows what the cache saves.
    server.command("CONFIG RESETSTAT").unwrap();
    for _ in 0..100 {
        assert!(a.inner().load(&cookie).await.unwrap().is_some());
    }
    let plain = commands_since_reset(&server);
    assert_eq!(plain.len(), 1, "{plain:?}");
    assert!(plain[0].starts_with("get:calls=100,"), "{plain:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_silent_server_is_noticed_by_the_health_ping_and_the_cache_is_emptied() {
    let server = RedisServer::start().unwrap();
    let tag = &SessionId::generate().storage_key()[..12];
    let a = node(&server, tag).await;
    let r = record(None);
    let cookie = save(&a, &r, SaveKind::Create).await;
    a.load(&cookie).await.unwrap();
    assert!(a.is_cached(&r.id));

    // SIGSTOP: the connection stays open but nothing answers, as in a
    // network partition. No FIN arrives; only the PING can tell.
    server.pause().unwrap();
    let start = Instant::now();
    while a.is_subscribed() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "silence never noticed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!("silent server noticed after {:?}", start.elapsed());
    // Going dark stops serving first (the flag this loop watched), then
    // empties the cache on the subscriber's thread: the entry may outlive
    // the flag by that clear's few microseconds, never longer.
    let dark = Instant::now();
    while a.is_cached(&r.id) {
        assert!(
            dark.elapsed() < Duration::from_secs(2),
            "the cache was not emptied once the node went dark"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    server.resume().unwrap();
    let start = Instant::now();
    while !a.is_subscribed() {
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "never resubscribed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(a.load(&cookie).await.unwrap().is_some());
    assert!(a.is_cached(&r.id), "caching again once resubscribed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_saved_message_evicts_only_older_versions() {
    let server = RedisServer::start().unwrap();
    let tag = &SessionId::generate().storage_key()[..12];
    let a = node(&server, tag).await;
    let r = record(None);
    let cookie = save(&a, &r, SaveKind::Create).await;
    let held = a.load(&cookie).await.unwrap().unwrap().version;
    let channel = format!("invalidate-{tag}");
    let mut conn = redis::Client::open(server.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let other_node = NodeId::random();
    for version in [held - 1, held, held + 1] {
        let applied = a.stats().invalidations;
        let m = Invalidation {
            node: other_node,
            kind: InvalidationKind::Saved,
            version,
            key: key_hash_of(&r.id),
        };
        let _: i64 = redis::cmd("PUBLISH")
            .arg(&channel)
            .arg(m.encode(&MessageKey::new(KEY), &channel))
            .query_async(&mut conn)
            .await
            .unwrap();
        let start = Instant::now();
        while a.stats().invalidations == applied {
            assert!(start.elapsed() < Duration::from_secs(2));
            tokio::task::yield_now().await;
        }
        // A late (or equal) version leaves the fresher entry; a newer one evicts.
        assert_eq!(a.is_cached(&r.id), version <= held, "version {version}");
    }
}

/// The commands clients sent (not those scripts ran) while `during` ran, by
/// name, from `MONITOR` (which tags script commands `lua]`; `INFO
/// commandstats` counts both alike).
async fn client_commands<F: std::future::Future<Output = ()>>(
    server: &RedisServer,
    during: F,
) -> (Vec<String>, Vec<String>) {
    use std::io::{BufRead, BufReader, Write};
    let stream = std::net::TcpStream::connect(("127.0.0.1", server.port())).unwrap();
    (&stream).write_all(b"MONITOR\r\n").unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    assert!(line.starts_with("+OK"), "{line:?}");
    during.await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    stream
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let (mut client, mut script) = (Vec::new(), Vec::new());
    loop {
        line.clear();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => break,
            Ok(_) => {
                // +1700000000.123456 [0 127.0.0.1:5000] "evalsha" "…" …
                let name = line.split('"').nth(1).unwrap_or("").to_ascii_lowercase();
                if name == "ping" {
                    continue; // the subscriber's health check
                }
                if line.contains("lua]") {
                    script.push(name);
                } else {
                    client.push(name);
                }
            }
        }
    }
    (client, script)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_warm_update_is_one_round_trip_that_writes_and_announces() {
    let server = RedisServer::start().unwrap();
    let nodes = fleet(&server).await;
    let [a, b, c] = &nodes;
    let r = login_and_warm(&nodes, None).await;
    let cookie = r.id.encode();

    let (client, script) = client_commands(&server, async {
        // What a request that changes the session does on a warm node: the
        // load is a cache hit, the save one script run that also publishes.
        let mut changed = a.load(&cookie).await.unwrap().unwrap();
        changed.data.counter = 5;
        save(a, &changed, SaveKind::Update).await;
    })
    .await;
    assert_eq!(client, ["evalsha"], "scripts ran: {script:?}");
    assert!(script.iter().any(|c| c == "publish"), "{script:?}");

    // The announcement still reaches the other nodes, and the writer keeps
    // what it wrote.
    until_forgotten(&[b, c], &r.id).await;
    assert_eq!(b.load(&cookie).await.unwrap().unwrap().data.counter, 5);
    assert!(a.is_cached(&r.id));

    // A regeneration is one script run too, announcing the old id.
    let loaded = a.load(&cookie).await.unwrap().unwrap();
    let mut moved = loaded.clone();
    moved.id = SessionId::generate();
    let (client, script) = client_commands(&server, async {
        save(a, &moved, SaveKind::Regenerate { old: loaded.id }).await;
    })
    .await;
    assert_eq!(client, ["evalsha"], "scripts ran: {script:?}");
    assert!(script.iter().any(|c| c == "publish"), "{script:?}");
    until_forgotten(&[b, c], &r.id).await;
}

/// Waits until `node` has subscribed (a lazy store subscribes in the background).
async fn until_subscribed(node: &ClusteredStore<TestData>) {
    let start = Instant::now();
    while !node.is_subscribed() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the lazy store never subscribed"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Lazy stores built from one set of cloned options (as one per actix-web
/// worker would be): each draws its own node id, so each hears the others'
/// invalidations; each works before its subscription is up (bypass mode).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn lazy_stores_from_cloned_options_are_separate_nodes_that_hear_each_other() {
    let server = RedisServer::start().unwrap();
    let options = ClusterOptions::new(KEY);
    let a = ClusteredStore::<TestData>::connect_lazy(&server.url(), options.clone()).unwrap();
    // Usable at once, subscribed or not: a miss reads Redis.
    let r = record(None);
    let cookie = save(&a, &r, SaveKind::Create).await;
    assert!(a.load(&cookie).await.unwrap().is_some());

    let b = ClusteredStore::<TestData>::connect_lazy(&server.url(), options).unwrap();
    assert_ne!(a.node_id(), b.node_id(), "cloned options, distinct nodes");
    until_subscribed(&a).await;
    until_subscribed(&b).await;

    // B caches it; an update through A must reach B (were the ids equal, B
    // would skip A's message as its own and serve the old counter).
    assert!(b.load(&cookie).await.unwrap().is_some());
    assert!(b.is_cached(&r.id));
    let mut changed = a.load(&cookie).await.unwrap().unwrap();
    changed.data.counter = 7;
    save(&a, &changed, SaveKind::Update).await;
    until_forgotten(&[&b], &r.id).await;
    assert_eq!(b.load(&cookie).await.unwrap().unwrap().data.counter, 7);
}

/// A node id set on the options is kept (for a single store).
#[tokio::test]
async fn a_node_id_set_on_the_options_is_used() {
    let server = RedisServer::start().unwrap();
    let id = NodeId::random();
    let store = ClusteredStore::<TestData>::connect_lazy(
        &server.url(),
        ClusterOptions::new(KEY).node_id(id),
    )
    .unwrap();
    assert_eq!(store.node_id(), id);
}

/// Outside a Tokio runtime the lazy constructors refuse with a clear error
/// instead of panicking in `tokio::spawn`; bad options and URLs are errors.
#[test]
fn lazy_constructors_fail_clearly() {
    let err =
        ClusteredStore::<TestData>::connect_lazy("redis://127.0.0.1:1/", ClusterOptions::new(KEY))
            .unwrap_err();
    assert!(err.to_string().contains("Tokio runtime"), "{err}");

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let bad_url =
            ClusteredStore::<TestData>::connect_lazy("not a url", ClusterOptions::new(KEY));
        assert!(bad_url.is_err());
        let zero_key = ClusteredStore::<TestData>::connect_lazy(
            "redis://127.0.0.1:1/",
            ClusterOptions::new([0u8; 32]),
        );
        assert!(zero_key.is_err(), "an all-zero message key is refused");
        let store = RedisStore::<TestData>::builder("redis://127.0.0.1:1/")
            .build_lazy()
            .unwrap();
        let no_urls = ClusteredStore::with_store_lazy(store, vec![], ClusterOptions::new(KEY));
        assert!(no_urls.is_err());
    });
}

/// A node built on a runtime that has since shut down (a set-up runtime, or
/// the first of several `#[tokio::test]`s sharing one store) and used from
/// another: its subscriber task died with the first runtime, so it must not
/// keep serving from its cache what other nodes change. It stops trusting
/// the cache at once and subscribes again on the runtime that uses it.
#[test]
fn a_node_whose_building_runtime_shut_down_serves_nothing_stale() {
    let server = RedisServer::start().unwrap();
    let tag = SessionId::generate().storage_key()[..12].to_owned();
    let a = runtime().block_on(node(&server, &tag));
    // That runtime is gone, and the task that applied invalidations with it.
    assert!(!a.is_subscribed(), "A stops trusting its cache at once");
    assert_eq!(
        a.stats().subscription_losses,
        1,
        "and counts a lost subscription"
    );
    let rt = runtime();
    rt.block_on(async {
        let b = node(&server, &tag).await;
        let round = |cached: bool| {
            let (a, b) = (&a, &b);
            async move {
                let r = record(None);
                let cookie = save(b, &r, SaveKind::Create).await;
                assert!(a.load(&cookie).await.unwrap().is_some());
                assert_eq!(a.is_cached(&r.id), cached);
                assert!(b.delete(&r.id).await.unwrap());
                within_5s("A forgets a session deleted through B", || {
                    !a.is_cached(&r.id)
                })
                .await;
                assert!(
                    a.load(&cookie).await.unwrap().is_none(),
                    "A serves a deleted session"
                );
            }
        };
        // Before A has subscribed again: everything from Redis.
        round(false).await;
        within_5s("A subscribes again", || a.is_subscribed()).await;
        // Subscribed on this runtime: it caches, and hears B's deletes.
        for _ in 0..3 {
            round(true).await;
        }
    });
}

/// The same when the first subscriber task never even ran: a lazy node
/// built on a runtime that shut down straight after subscribes on the
/// runtime that uses it.
#[test]
fn a_lazy_node_whose_runtime_never_ran_its_subscriber_subscribes_where_it_is_used() {
    let server = RedisServer::start().unwrap();
    let tag = SessionId::generate().storage_key()[..12].to_owned();
    let options = ClusterOptions::new(KEY).channel(format!("invalidate-{tag}"));
    let a = runtime().block_on(async {
        ClusteredStore::<TestData>::connect_lazy(&server.url(), options).unwrap()
    });
    runtime().block_on(async {
        let r = record(None);
        let cookie = save(&a, &r, SaveKind::Create).await;
        within_5s("A subscribes where it is used", || a.is_subscribed()).await;
        assert!(a.load(&cookie).await.unwrap().is_some());
        assert!(a.is_cached(&r.id));
    });
}

/// A current-thread runtime of its own, with timers and I/O.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Waits up to 5 s for `done`.
async fn within_5s(what: &str, done: impl Fn() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "not within 5 s: {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A revoke run by a node that cannot decode the owner's sessions (a newer
/// version of the session type, mid-deploy) still deletes them and tells
/// the nodes that have them cached, and reports them: the announcement and
/// the report go by the index's key hashes (the sessions' handles), not by
/// what the values would give.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_revoke_by_a_node_that_cannot_decode_the_sessions_reaches_the_others() {
    let server = RedisServer::start().unwrap();
    let tag = &SessionId::generate().storage_key()[..12];
    let b = node(&server, tag).await;
    let other_type = RedisStore::<u32>::builder(server.url())
        .key_prefix(format!("fleet-{tag}:"))
        .connect()
        .await
        .unwrap();
    let options = ClusterOptions::new(KEY).channel(format!("invalidate-{tag}"));
    let a = ClusteredStore::with_store(other_type, vec![server.url()], options)
        .await
        .unwrap();
    let r = record(Some("alice"));
    let cookie = save(&b, &r, SaveKind::Create).await;
    assert!(b.load(&cookie).await.unwrap().is_some());
    assert!(b.is_cached(&r.id));
    let removed = a.delete_owner("alice").await.unwrap();
    // Reported all the same (its `on_deleted` fires): by its handle, which
    // the index holds.
    assert_eq!(
        removed
            .iter()
            .map(|r| (r.handle(), r.owner.as_deref()))
            .collect::<Vec<_>>(),
        [(r.id.handle(), Some("alice"))]
    );
    until_forgotten(&[&b], &r.id).await;
    assert!(b.load(&cookie).await.unwrap().is_none(), "deleted in Redis");
}
