//! Criterion benchmarks of the core: MemoryStore load/save, and the tower
//! layer's per-request overhead against the same router without it, in one run.
//!
//! `cargo bench -p sessionkit --bench core`

use std::hint::black_box;

use axum::body::Body;
use axum::routing::get;
use axum::Router;
use criterion::{criterion_group, criterion_main, Criterion};
use http::Request;
use serde::{Deserialize, Serialize};
use sessionkit::store::memory::MemoryStore;
use sessionkit::store::{Save, Store};
use sessionkit::{Config, Record, Session, SessionId, SessionLayer, Sessions};
use tower::ServiceExt;

#[derive(Clone, Default, Serialize, Deserialize)]
struct Data {
    username: Option<String>,
    counter: i64,
}

fn record() -> Record<Data> {
    let mut r = Record::new(
        SessionId::generate(),
        Data {
            username: Some("alice".into()),
            counter: 1,
        },
        std::time::SystemTime::now(),
        &Default::default(),
    );
    r.owner = Some("alice".into());
    r
}

fn memory_store(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let store = rt.block_on(async { MemoryStore::<Data>::new() });
    // 10 000 sessions so lookups hit a realistically filled map.
    let ids: Vec<_> = rt.block_on(async {
        let mut ids = Vec::new();
        for _ in 0..10_000 {
            let r = record();
            store.save(Save::create(&r)).await.unwrap();
            ids.push(r);
        }
        ids
    });
    let cookie = ids[5000].id.encode();
    let mut g = c.benchmark_group("memory_store");
    g.bench_function("load", |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(store.load(black_box(&cookie)).await.unwrap()) })
    });
    let mut rec = rt.block_on(store.load(&cookie)).unwrap().unwrap();
    g.bench_function("save_update", |b| {
        b.to_async(&rt).iter(|| {
            rec.data.counter += 1;
            let r = rec.clone();
            let store = &store;
            async move {
                let out = store.save(Save::update(&r, None)).await;
                black_box(out.unwrap())
            }
        })
    });
    g.finish();
}

async fn read(session: Session<Data>) -> String {
    session.data().counter.to_string()
}

async fn write(session: Session<Data>) -> String {
    let mut d = session.data_mut();
    d.counter += 1;
    d.counter.to_string()
}

async fn plain() -> String {
    "1".to_string()
}

fn layer_overhead(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let sessions =
        rt.block_on(async { Sessions::new(MemoryStore::<Data>::new(), Config::default()) });
    let with_layer: Router = Router::new()
        .route("/read", get(read))
        .route("/write", get(write))
        .route("/untouched", get(plain))
        .layer(SessionLayer::new(&sessions));
    let without: Router = Router::new().route("/read", get(plain));
    // One existing session, as a logged-in browser would present it.
    let cookie = rt.block_on(async {
        let s = sessions.load(None).await.unwrap();
        s.data_mut().counter = 1;
        let action = sessions.commit(&s, None).await.unwrap();
        format!("__Host-id={}", action.value().unwrap())
    });
    let req = |path: &str, cookie: Option<&str>| {
        let mut b = Request::get(path);
        if let Some(c) = cookie {
            b = b.header("cookie", c);
        }
        b.body(Body::empty()).unwrap()
    };
    let mut g = c.benchmark_group("layer");
    g.bench_function("no_layer", |b| {
        b.to_async(&rt)
            .iter(|| without.clone().oneshot(req("/read", Some(&cookie))))
    });
    g.bench_function("untouched_route", |b| {
        b.to_async(&rt)
            .iter(|| with_layer.clone().oneshot(req("/untouched", Some(&cookie))))
    });
    g.bench_function("read", |b| {
        b.to_async(&rt)
            .iter(|| with_layer.clone().oneshot(req("/read", Some(&cookie))))
    });
    g.bench_function("write", |b| {
        b.to_async(&rt)
            .iter(|| with_layer.clone().oneshot(req("/write", Some(&cookie))))
    });
    g.bench_function("new_session", |b| {
        b.to_async(&rt)
            .iter(|| with_layer.clone().oneshot(req("/write", None)))
    });
    g.finish();
}

criterion_group!(benches, memory_store, layer_overhead);
criterion_main!(benches);
