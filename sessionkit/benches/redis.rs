//! Load and save latency of `RedisStore` against tower-sessions' Redis store
//! (`tower-sessions-redis-store`, on fred) and against bare redis-rs
//! `GET` / `SET PX` (the floor: one round trip, no encoding), all on the same
//! throw-away `redis-server`, in the same run.
//!
//! Run: `cargo bench -p sessionkit --features redis,testing --bench redis`.
//! Compare within one group: the ratios are the result, not the absolute times.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use futures_util::future::join_all;
use serde::{Deserialize, Serialize};
use sessionkit::expiry::ExpiryPolicy;
use sessionkit::store::redis::RedisStore;
use sessionkit::store::{Save, Store};
use sessionkit::testing::redis_server::RedisServer;
use sessionkit::{Record, SessionId};
use tower_sessions_core::session::{Id, Record as TsRecord};
use tower_sessions_core::SessionStore;
use tower_sessions_redis_store::fred::prelude::{
    Client, ClientLike, Config as FredConfig, KeysInterface,
};
use tower_sessions_redis_store::RedisStore as TsRedisStore;

/// A typical small session: a user, a counter, a few tags.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Data {
    user: Option<String>,
    counter: u64,
    tags: Vec<String>,
}

fn data() -> Data {
    Data {
        user: Some("alice@example.com".into()),
        counter: 42,
        tags: vec!["admin".into(), "beta".into(), "dark-mode".into()],
    }
}

const CONCURRENT: usize = 64;

fn bench(c: &mut Criterion) {
    let server = RedisServer::start().unwrap_or_else(|e| panic!("{e}"));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();

    // sessionkit
    let ours: RedisStore<Data> = rt.block_on(RedisStore::connect(server.url())).unwrap();
    let mut record = Record::new(
        SessionId::generate(),
        data(),
        SystemTime::now(),
        &ExpiryPolicy::default(),
    );
    rt.block_on(ours.save(Save::create(&record))).unwrap();
    record.version = 1;
    let cookie = record.id.encode();

    // tower-sessions-redis-store (fred)
    let fred = Client::new(
        FredConfig::from_url(&server.url()).unwrap(),
        None,
        None,
        None,
    );
    rt.block_on(async {
        fred.init().await.unwrap();
    });
    let theirs = TsRedisStore::new(fred.clone());
    let mut ts_record = TsRecord {
        id: Id::default(),
        data: HashMap::from([
            ("user".to_owned(), serde_json::json!("alice@example.com")),
            ("counter".to_owned(), serde_json::json!(42)),
            (
                "tags".to_owned(),
                serde_json::json!(["admin", "beta", "dark-mode"]),
            ),
        ]),
        expiry_date: time::OffsetDateTime::now_utc() + time::Duration::hours(1),
    };
    rt.block_on(theirs.create(&mut ts_record)).unwrap();

    // bare redis-rs
    let mut raw = rt
        .block_on(async {
            redis::aio::ConnectionManager::new(redis::Client::open(server.url()).unwrap()).await
        })
        .unwrap();
    let raw_value = serde_json::to_vec(&record).unwrap();
    let raw_key = "bench:raw";
    rt.block_on(
        redis::cmd("SET")
            .arg(raw_key)
            .arg(&raw_value)
            .query_async::<()>(&mut raw),
    )
    .unwrap();

    let mut group = c.benchmark_group("redis/load");
    group.bench_function("sessionkit", |b| {
        b.to_async(&rt)
            .iter(|| async { ours.load(&cookie).await.unwrap().unwrap() })
    });
    group.bench_function("tower-sessions-redis-store", |b| {
        b.to_async(&rt)
            .iter(|| async { theirs.load(&ts_record.id).await.unwrap().unwrap() })
    });
    group.bench_function("redis-rs GET (floor)", |b| {
        b.to_async(&rt).iter(|| {
            let mut raw = raw.clone();
            async move {
                redis::cmd("GET")
                    .arg(raw_key)
                    .query_async::<Vec<u8>>(&mut raw)
                    .await
                    .unwrap()
            }
        })
    });
    group.finish();

    let mut group = c.benchmark_group(format!("redis/load x{CONCURRENT} concurrent"));
    group.bench_function(BenchmarkId::from_parameter("sessionkit"), |b| {
        b.to_async(&rt)
            .iter(|| async { join_all((0..CONCURRENT).map(|_| ours.load(&cookie))).await })
    });
    group.bench_function(
        BenchmarkId::from_parameter("tower-sessions-redis-store"),
        |b| {
            b.to_async(&rt).iter(|| async {
                join_all((0..CONCURRENT).map(|_| theirs.load(&ts_record.id))).await
            })
        },
    );
    // The clients alone: 64 concurrent bare GETs of the same value.
    group.bench_function(BenchmarkId::from_parameter("redis-rs GET (floor)"), |b| {
        b.to_async(&rt).iter(|| async {
            join_all((0..CONCURRENT).map(|_| {
                let mut raw = raw.clone();
                async move {
                    redis::cmd("GET")
                        .arg(raw_key)
                        .query_async::<Vec<u8>>(&mut raw)
                        .await
                        .unwrap()
                }
            }))
            .await
        })
    });
    group.bench_function(BenchmarkId::from_parameter("fred GET (floor)"), |b| {
        b.to_async(&rt).iter(|| async {
            join_all((0..CONCURRENT).map(|_| fred.get::<Vec<u8>, _>(raw_key))).await
        })
    });
    group.finish();

    let mut group = c.benchmark_group("redis/save (update)");
    // The version this "request" loaded: the store writes version + 1, so
    // each iteration saves on top of the previous one (no conflict path).
    let version = AtomicU64::new(record.version);
    group.bench_function("sessionkit", |b| {
        b.to_async(&rt).iter(|| {
            let mut next = record.clone();
            next.version = version.fetch_add(1, Ordering::Relaxed);
            let base = record.data.clone();
            let ours = &ours;
            async move {
                next.data.counter += 1;
                ours.save(Save::update(&next, Some(&base))).await.unwrap()
            }
        });
    });
    group.bench_function("tower-sessions-redis-store", |b| {
        b.to_async(&rt)
            .iter(|| async { theirs.save(&ts_record).await.unwrap() })
    });
    group.bench_function("redis-rs SET PX (floor)", |b| {
        b.to_async(&rt).iter(|| {
            let mut raw = raw.clone();
            let value = raw_value.clone();
            async move {
                redis::cmd("SET")
                    .arg(raw_key)
                    .arg(value)
                    .arg("PX")
                    .arg(3_600_000)
                    .query_async::<()>(&mut raw)
                    .await
                    .unwrap()
            }
        })
    });
    group.finish();
    // Server-side cost per command over the whole run (µs per call).
    let stats = server.command("INFO commandstats").unwrap();
    for line in stats.lines().filter(|l| {
        ["cmdstat_get:", "cmdstat_set:", "cmdstat_evalsha:"]
            .iter()
            .any(|p| l.starts_with(p))
    }) {
        eprintln!("{line}");
    }
    drop(server);
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(40);
    targets = bench
}
criterion_main!(benches);
