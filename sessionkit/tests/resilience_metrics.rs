//! What `Resilient` reports through the `metrics` facade: retries, timeouts,
//! fast-fails, breaker state and transitions — and never a session id.

use std::time::Duration;

use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use metrics_util::CompositeKey;
use sessionkit::resilience::fault::{Fault, FaultyStore};
use sessionkit::resilience::{ResilienceConfig, Resilient};
use sessionkit::store::memory::MemoryStore;
use sessionkit::{SessionId, Store};

/// One snapshot (taking one resets the debugging recorder's counters).
type Metrics = Vec<(CompositeKey, DebugValue)>;

fn value<'a>(snap: &'a Metrics, name: &str, labels: &[(&str, &str)]) -> Option<&'a DebugValue> {
    snap.iter()
        .find(|(k, _)| {
            let key = k.key();
            key.name() == name
                && labels
                    .iter()
                    .all(|(l, v)| key.labels().any(|x| x.key() == *l && x.value() == *v))
        })
        .map(|(_, v)| v)
}

fn counter(snap: &Metrics, name: &str, labels: &[(&str, &str)]) -> u64 {
    match value(snap, name, labels) {
        Some(DebugValue::Counter(n)) => *n,
        None => 0,
        other => panic!("{name} is not a counter: {other:?}"),
    }
}

#[test]
fn retries_timeouts_fast_fails_and_transitions_are_counted_without_ids() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let id = SessionId::generate();
    let cookie = id.encode();
    metrics::with_local_recorder(&recorder, || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap();
        rt.block_on(async {
            let inner = FaultyStore::new(MemoryStore::<u32>::new());
            let switch = inner.switch();
            let store = Resilient::new(
                inner,
                ResilienceConfig::builder()
                    .name("sessions")
                    .attempt_timeout(Duration::from_millis(50))
                    .operation_timeout(Duration::from_millis(500))
                    .max_attempts(2)
                    .failure_threshold(3)
                    .build()
                    .unwrap(),
            );
            // One transient failure, then an answer: one retry.
            switch.set_for(Fault::Unavailable, 1);
            store.load(&cookie).await.unwrap();
            // A hang: both attempts time out (2 failures so far + 1 = 3: open).
            switch.set(Fault::Hang);
            let _ = store.load(&cookie).await;
            let _ = store.delete(&id).await;
            // Open: fast-fail.
            let _ = store.load(&cookie).await;
        });
    });
    let snap: Metrics = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(k, _, _, v)| (k, v))
        .collect();
    let l = |op| [("breaker", "sessions"), ("op", op)];
    assert_eq!(
        counter(&snap, "sessionkit_store_retries_total", &l("load")),
        2
    );
    assert!(counter(&snap, "sessionkit_store_timeouts_total", &l("load")) >= 2);
    assert!(counter(&snap, "sessionkit_store_fast_fails_total", &l("delete")) >= 1);
    assert!(counter(&snap, "sessionkit_store_fast_fails_total", &l("load")) >= 1);
    assert_eq!(
        counter(
            &snap,
            "sessionkit_breaker_transitions_total",
            &[("breaker", "sessions"), ("from", "closed"), ("to", "open")]
        ),
        1
    );
    match value(
        &snap,
        "sessionkit_breaker_state",
        &[("breaker", "sessions")],
    ) {
        Some(DebugValue::Gauge(g)) => assert_eq!(g.into_inner(), 2.0, "open"),
        other => panic!("breaker state gauge: {other:?}"),
    }
    for (k, _) in &snap {
        for label in k.key().labels() {
            assert!(
                !label.value().contains(&cookie[..8]),
                "a metric label carries the session id"
            );
        }
    }
}
