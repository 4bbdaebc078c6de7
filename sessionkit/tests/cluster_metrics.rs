//! What `ClusteredStore` reports through the `metrics` facade: cache hits,
//! misses and bypasses, published and applied invalidations, rejected
//! messages by reason, lost subscriptions — and never a session id or key.

use std::time::{Duration, Instant, SystemTime};

use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use metrics_util::CompositeKey;
use sessionkit::expiry::ExpiryPolicy;
use sessionkit::store::cluster::{ClusterOptions, ClusteredStore};
use sessionkit::store::{Save, Store};
use sessionkit::testing::redis_server::RedisServer;
use sessionkit::testing::TestData;
use sessionkit::{Record, SessionId};

type Metrics = Vec<(CompositeKey, DebugValue)>;

fn counter(snap: &Metrics, name: &str, labels: &[(&str, &str)]) -> u64 {
    snap.iter()
        .filter(|(k, _)| {
            let key = k.key();
            key.name() == name
                && labels
                    .iter()
                    .all(|(l, v)| key.labels().any(|x| x.key() == *l && x.value() == *v))
        })
        .map(|(_, v)| match v {
            DebugValue::Counter(n) => *n,
            other => panic!("{name} is not a counter: {other:?}"),
        })
        .sum()
}

async fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < Duration::from_secs(5), "{what}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

#[test]
fn cache_and_bus_events_are_counted_without_ids() {
    let server = RedisServer::start().unwrap();
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let id = SessionId::generate();
    metrics::with_local_recorder(&recorder, || {
        // One thread: the subscriber task runs here too, under this recorder.
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let options = |tag: &str| ClusterOptions::new([5u8; 32]).channel(tag.to_owned());
            let a = ClusteredStore::<TestData>::connect(&server.url(), options("m"))
                .await
                .unwrap();
            let b = ClusteredStore::<TestData>::connect(&server.url(), options("m"))
                .await
                .unwrap();
            let r = Record::new(
                id,
                TestData::default(),
                SystemTime::now(),
                &ExpiryPolicy::default(),
            );
            a.save(Save::create(&r)).await.unwrap();
            let cookie = id.encode();
            b.load(&cookie).await.unwrap(); // miss
            b.load(&cookie).await.unwrap(); // hit
            a.delete(&id).await.unwrap(); // published, applied by b
            wait_for("b applies the delete", || b.stats().invalidations == 1).await;
            server.command("PUBLISH m forged").unwrap();
            wait_for("b rejects the forgery", || b.stats().rejected == 1).await;
            server.command("CLIENT KILL TYPE pubsub").unwrap();
            wait_for("b notices", || !b.is_subscribed()).await;
            b.load(&cookie).await.unwrap(); // bypass
            wait_for("b resubscribes", || b.is_subscribed()).await;
        });
    });
    let snap: Metrics = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(k, _, _, v)| (k, v))
        .collect();
    assert_eq!(counter(&snap, "sessionkit_cache_misses_total", &[]), 1);
    assert_eq!(counter(&snap, "sessionkit_cache_hits_total", &[]), 1);
    assert!(counter(&snap, "sessionkit_cache_bypassed_total", &[]) >= 1);
    assert_eq!(
        counter(
            &snap,
            "sessionkit_cluster_invalidations_total",
            &[("kind", "deleted")]
        ),
        1
    );
    assert_eq!(
        counter(
            &snap,
            "sessionkit_cluster_messages_rejected_total",
            &[("reason", "malformed")]
        ),
        2,
        "both nodes hear the forgery"
    );
    assert_eq!(
        counter(&snap, "sessionkit_cluster_subscription_lost_total", &[]),
        2,
        "both nodes lost theirs"
    );
    let (full, key) = (id.encode(), id.storage_key());
    for (k, _) in &snap {
        for label in k.key().labels() {
            assert!(!label.value().contains(&full[..8]) && !label.value().contains(&key[..8]));
        }
    }
}

/// Through `Sessions` (which tries the synchronous path first), a miss and a
/// hit are each counted once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loads_through_sessions_count_each_miss_and_hit_once() {
    let server = RedisServer::start().unwrap();
    let url = server.url();
    let options = || ClusterOptions::new([6u8; 32]).channel("once".to_owned());
    let connect = || ClusteredStore::<TestData>::connect(&url, options());
    let writer = sessionkit::Sessions::new(connect().await.unwrap(), sessionkit::Config::default());
    let reader = sessionkit::Sessions::new(connect().await.unwrap(), sessionkit::Config::default());
    let fresh = writer.load(None).await.unwrap();
    fresh.data_mut().counter = 7;
    let action = writer.commit(&fresh, None).await.unwrap();
    let cookie = action.value().unwrap().to_owned();
    let store = reader.store();
    wait_for("subscribed", || store.is_subscribed()).await;
    let before = store.stats();
    assert_eq!(reader.load(Some(&cookie)).await.unwrap().data().counter, 7); // miss
    assert_eq!(reader.load(Some(&cookie)).await.unwrap().data().counter, 7); // hit
    let after = store.stats();
    assert_eq!(after.misses - before.misses, 1, "{after:?}");
    assert_eq!(after.hits - before.hits, 1, "{after:?}");
}
