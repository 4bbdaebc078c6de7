//! `sessionkit_store_duration_seconds`: in-process store calls (the memory
//! store answers without waiting) are timed one in 16, at random, and
//! recorded with a weight of 16, so the histogram still counts every call
//! on average; calls that wait for I/O are timed every time.

use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use metrics_util::CompositeKey;
use sessionkit::resilience::fault::FaultyStore;
use sessionkit::store::memory::MemoryStore;
use sessionkit::{Config, Sessions, Store};

const CALLS: usize = 3200;

type Entry = (
    CompositeKey,
    Option<metrics::Unit>,
    Option<metrics::SharedString>,
    DebugValue,
);

/// How many values the store-duration histogram holds for `(load, save)`
/// (the debugging recorder keeps a weighted record as that many equal
/// values). One snapshot: taking one drains the histograms.
fn recorded(snapshotter: &Snapshotter) -> (usize, usize) {
    let snap = snapshotter.snapshot().into_vec();
    (values(&snap, "load"), values(&snap, "save"))
}

fn values(snap: &[Entry], op: &str) -> usize {
    snap.iter()
        .find(|(k, _, _, _)| {
            let key = k.key();
            key.name() == "sessionkit_store_duration_seconds"
                && key.labels().any(|l| l.key() == "op" && l.value() == op)
        })
        .map(|(_, _, _, v)| match v {
            DebugValue::Histogram(recorded) => recorded.len(),
            other => panic!("not a histogram: {other:?}"),
        })
        .unwrap_or(0)
}

/// Runs `CALLS` loads and `CALLS` saves of one session through `sessions`.
fn loads_and_saves<S: Store<u32>>(sessions: &Sessions<u32, S>) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    rt.block_on(async {
        let first = sessions.load(None).await.unwrap();
        *first.data_mut() = 1;
        let action = sessions.commit(&first, None).await.unwrap();
        let cookie = action
            .value()
            .expect("a new session sets its cookie")
            .to_owned();
        for n in 0..CALLS {
            let session = sessions.load(Some(&cookie)).await.unwrap();
            assert!(*session.data() >= 1, "load {n} found the session");
            *session.data_mut() += 1;
            sessions.commit(&session, Some(&cookie)).await.unwrap();
        }
    });
}

#[test]
fn in_process_calls_are_timed_one_in_sixteen_with_a_weight_of_sixteen() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    metrics::with_local_recorder(&recorder, || {
        loads_and_saves(&Sessions::new(MemoryStore::<u32>::new(), Config::default()));
    });
    // The first save (the create) counts with the others: CALLS + 1 saves.
    let (loads, saves) = recorded(&snapshotter);
    for (op, calls, values) in [("load", CALLS, loads), ("save", CALLS + 1, saves)] {
        // Each timed call adds 16 equal values.
        assert_eq!(values % 16, 0, "{op}: {values} values");
        // 16 × Binomial(calls, 1/16): mean `calls`, standard deviation about
        // 220 for 3200 calls; these bounds are over 6 deviations away.
        assert!(
            (calls / 2..=calls * 3 / 2).contains(&values),
            "{op}: {values} values recorded for {calls} calls"
        );
    }
}

#[test]
fn calls_that_wait_for_the_store_are_all_timed() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    metrics::with_local_recorder(&recorder, || {
        // FaultyStore answers through the async calls only.
        let store = FaultyStore::new(MemoryStore::<u32>::new());
        loads_and_saves(&Sessions::new(store, Config::default()));
    });
    assert_eq!(recorded(&snapshotter), (CALLS, CALLS + 1));
}
