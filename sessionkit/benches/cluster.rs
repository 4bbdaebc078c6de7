//! Read throughput of `ClusteredStore` with a warm local cache against the
//! plain `RedisStore` it wraps, on the same throw-away `redis-server`, in
//! the same run: one load at a time, and 64 concurrent loads.
//!
//! Run: `cargo bench -p sessionkit --features cluster,testing --bench cluster`.
//! Compare within one group: the ratio is the result, not the absolute times.

use std::time::{Duration, SystemTime};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use futures_util::future::join_all;
use serde::{Deserialize, Serialize};
use sessionkit::expiry::ExpiryPolicy;
use sessionkit::store::cluster::{ClusterOptions, ClusteredStore};
use sessionkit::store::redis::RedisStore;
use sessionkit::store::{Save, Store};
use sessionkit::testing::redis_server::RedisServer;
use sessionkit::{Record, SessionId};

/// A typical small session: a user, a counter, a few tags.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Data {
    user: Option<String>,
    counter: u64,
    tags: Vec<String>,
}

const CONCURRENT: usize = 64;

fn bench(c: &mut Criterion) {
    let server = RedisServer::start().unwrap_or_else(|e| panic!("{e}"));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let (plain, clustered, cookies) = rt.block_on(async {
        let plain = RedisStore::<Data>::connect(server.url()).await.unwrap();
        // A TTL longer than the run, so "warm" stays warm throughout.
        let options = ClusterOptions::new([7u8; 32]).cache_ttl(Duration::from_secs(600));
        let clustered = ClusteredStore::<Data>::connect(&server.url(), options)
            .await
            .unwrap();
        let mut cookies = Vec::new();
        for i in 0..CONCURRENT {
            let mut r = Record::new(
                SessionId::generate(),
                Data {
                    user: Some("alice@example.com".into()),
                    counter: i as u64,
                    tags: vec!["admin".into(), "beta".into(), "dark-mode".into()],
                },
                SystemTime::now(),
                &ExpiryPolicy::default(),
            );
            r.owner = Some("alice".into());
            plain.save(Save::create(&r)).await.unwrap();
            let cookie = r.id.encode();
            // Warm the cache.
            assert!(clustered.load(&cookie).await.unwrap().is_some());
            cookies.push(cookie);
        }
        (plain, clustered, cookies)
    });
    let warmed = clustered.stats();

    let mut group = c.benchmark_group("read");
    group.measurement_time(Duration::from_secs(4));
    group.throughput(Throughput::Elements(1));
    group.bench_function(BenchmarkId::new("one load", "RedisStore"), |b| {
        b.to_async(&rt)
            .iter(|| async { plain.load(&cookies[0]).await.unwrap().unwrap() })
    });
    group.bench_function(BenchmarkId::new("one load", "ClusteredStore warm"), |b| {
        b.to_async(&rt)
            .iter(|| async { clustered.load(&cookies[0]).await.unwrap().unwrap() })
    });
    group.throughput(Throughput::Elements(CONCURRENT as u64));
    group.bench_function(BenchmarkId::new("64 concurrent loads", "RedisStore"), |b| {
        b.to_async(&rt)
            .iter(|| async { join_all(cookies.iter().map(|c| plain.load(c))).await })
    });
    group.bench_function(
        BenchmarkId::new("64 concurrent loads", "ClusteredStore warm"),
        |b| {
            b.to_async(&rt)
                .iter(|| async { join_all(cookies.iter().map(|c| clustered.load(c))).await })
        },
    );
    group.finish();
    let stats = clustered.stats();
    assert_eq!(
        stats.misses, warmed.misses,
        "the cache went cold during the run: {stats:?}"
    );
    drop(server);
}

criterion_group!(benches, bench);
criterion_main!(benches);
