//! Behaviour of `Resilient<S>` over a `MemoryStore` with injected faults, on
//! tokio's paused clock (timeouts and backoff cost no real time).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use super::fault::{Fault, FaultSwitch, FaultyStore};
use super::*;
use crate::expiry::ExpiryPolicy;
use crate::store::memory::MemoryStore;

type Data = Vec<String>;
type Inner = FaultyStore<MemoryStore<Data>>;

fn config() -> ResilienceConfigBuilder {
    ResilienceConfig::builder()
        .attempt_timeout(Duration::from_millis(100))
        .operation_timeout(Duration::from_millis(1000))
        .max_attempts(3)
        .backoff(Duration::from_millis(5), Duration::from_millis(20))
        .failure_threshold(3)
        .reset_timeout(Duration::from_secs(10))
}

fn store(config: ResilienceConfigBuilder) -> (Resilient<Inner>, FaultSwitch) {
    let inner = FaultyStore::new(MemoryStore::new());
    let switch = inner.switch();
    (Resilient::new(inner, config.build().unwrap()), switch)
}

fn record(data: &[&str]) -> Record<Data> {
    Record::new(
        SessionId::generate(),
        data.iter().map(|s| s.to_string()).collect(),
        SystemTime::now(),
        &ExpiryPolicy::default(),
    )
}

async fn create(s: &impl Store<Data>, r: &Record<Data>) -> Result<SaveOutcome, StoreError> {
    s.save(Save::create(r)).await
}

#[tokio::test(start_paused = true)]
async fn transient_errors_are_retried_until_the_store_answers() {
    let (s, switch) = store(config());
    switch.set_for(Fault::Unavailable, 2);
    assert!(s
        .load(&SessionId::generate().encode())
        .await
        .unwrap()
        .is_none());
    assert_eq!(switch.calls(), 3);
}

#[tokio::test(start_paused = true)]
async fn non_transient_errors_are_returned_without_retrying() {
    let (s, switch) = store(config());
    switch.set(Fault::Backend);
    let r = s.load("anything").await;
    assert!(matches!(r, Err(StoreError::Backend(_))), "{r:?}");
    assert_eq!(switch.calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn retries_stop_after_max_attempts() {
    let (s, switch) = store(config().max_attempts(4).failure_threshold(100));
    switch.set(Fault::Unavailable);
    assert!(matches!(
        s.delete(&SessionId::generate()).await,
        Err(StoreError::Unavailable(_))
    ));
    assert_eq!(switch.calls(), 4);
}

#[tokio::test(start_paused = true)]
async fn a_hung_store_times_out_within_the_operation_bound() {
    let (s, switch) = store(
        config()
            .attempt_timeout(Duration::from_millis(100))
            .operation_timeout(Duration::from_millis(250))
            .max_attempts(10)
            .failure_threshold(100),
    );
    switch.set(Fault::Hang);
    let started = tokio::time::Instant::now();
    let r = s.load("x").await;
    assert!(matches!(r, Err(StoreError::Timeout(_))), "{r:?}");
    // Virtual time: deterministic, not a wall-clock measurement.
    assert!(started.elapsed() <= Duration::from_millis(250));
    assert!(switch.calls() >= 2, "a timed-out attempt is retried");
}

/// A retry that starts with less than half an attempt's time left before
/// the operation's deadline and times out was cut short by the deadline:
/// the breaker does not count it against the store. Only the two full
/// attempt timeouts count here, under a threshold of three.
#[tokio::test(start_paused = true)]
async fn an_attempt_cut_short_by_the_deadline_is_not_a_store_failure() {
    let (s, switch) = store(
        config()
            .attempt_timeout(Duration::from_millis(450))
            .operation_timeout(Duration::from_millis(1000))
            .max_attempts(3)
            .failure_threshold(3),
    );
    switch.set(Fault::Hang);
    let r = s.load("x").await;
    assert!(matches!(r, Err(StoreError::Timeout(_))), "{r:?}");
    assert_eq!(switch.calls(), 3, "two full attempts and a cut one");
    assert_eq!(s.breaker().state(), BreakerState::Closed);
    // A second operation's full timeout is the third failure.
    let _ = s.load("x").await;
    assert_eq!(s.breaker().state(), BreakerState::Open);
}

/// `Duration::MAX` as the operation bound ("none") still bounds each
/// attempt: a hung store answers a timeout, and the breaker hears of it.
#[tokio::test(start_paused = true)]
async fn an_unbounded_operation_still_bounds_each_attempt() {
    let (s, switch) = store(
        config()
            .attempt_timeout(Duration::from_millis(100))
            .operation_timeout(Duration::MAX)
            .max_attempts(2)
            .failure_threshold(100),
    );
    switch.set(Fault::Hang);
    let r = tokio::time::timeout(Duration::from_secs(5), s.load("x")).await;
    assert!(matches!(r, Ok(Err(StoreError::Timeout(_)))), "{r:?}");
    assert_eq!(switch.calls(), 2);
}

#[tokio::test(start_paused = true)]
async fn the_breaker_opens_after_the_threshold_and_then_spares_the_store() {
    let (s, switch) = store(config().max_attempts(1).failure_threshold(3));
    switch.set(Fault::Unavailable);
    for _ in 0..3 {
        assert!(matches!(s.load("x").await, Err(StoreError::Unavailable(_))));
    }
    assert_eq!(s.breaker().state(), BreakerState::Open);
    for _ in 0..20 {
        assert!(matches!(s.load("x").await, Err(StoreError::CircuitOpen)));
    }
    assert_eq!(switch.calls(), 3, "an open circuit does not call the store");
}

/// Conflicts are about one session (a client racing itself), not the
/// store: however many come in a row, the circuit stays closed for everyone
/// else, and they are not retried.
#[tokio::test(start_paused = true)]
async fn conflicts_never_open_the_breaker() {
    let (s, switch) = store(config().failure_threshold(3));
    switch.set(Fault::Conflict);
    for _ in 0..10 {
        assert!(matches!(s.load("x").await, Err(StoreError::Conflict(_))));
    }
    assert_eq!(switch.calls(), 10, "a conflict is not retried");
    assert_eq!(s.breaker().state(), BreakerState::Closed);
    switch.set(Fault::None);
    assert!(s.load("x").await.unwrap().is_none());
    assert!(!StoreError::Conflict(String::new()).is_store_failure());
    assert!(!StoreError::Conflict(String::new()).is_transient());
    assert_eq!(StoreError::Conflict(String::new()).kind(), "conflict");
}

#[tokio::test(start_paused = true)]
async fn after_the_reset_timeout_one_probe_closes_the_circuit_again() {
    let clock = ManualMonotonicClock::new();
    let transitions = Arc::new(AtomicUsize::new(0));
    let t = transitions.clone();
    let (s, switch) = store(
        config()
            .max_attempts(1)
            .failure_threshold(2)
            .clock(clock.clone())
            .on_breaker_transition(move |_| {
                t.fetch_add(1, Ordering::SeqCst);
            }),
    );
    switch.set(Fault::Unavailable);
    let _ = s.load("x").await;
    let _ = s.load("x").await;
    assert_eq!(s.breaker().state(), BreakerState::Open);
    switch.set(Fault::None);
    assert!(matches!(s.load("x").await, Err(StoreError::CircuitOpen)));
    clock.advance(Duration::from_secs(10));
    assert!(
        s.load("x").await.unwrap().is_none(),
        "the probe goes through"
    );
    assert_eq!(s.breaker().state(), BreakerState::Closed);
    assert_eq!(transitions.load(Ordering::SeqCst), 3);
}

#[tokio::test(start_paused = true)]
async fn a_scan_never_takes_the_half_open_probe_slot() {
    // A scan has no time bound: as the probe it would keep every request
    // failing fast until it finished. It fails fast itself instead and
    // leaves the slot to a bounded call.
    let clock = ManualMonotonicClock::new();
    let (s, switch) = store(
        config()
            .max_attempts(1)
            .failure_threshold(1)
            .clock(clock.clone()),
    );
    switch.set(Fault::Unavailable);
    let _ = s.load("x").await;
    assert_eq!(s.breaker().state(), BreakerState::Open);
    switch.set(Fault::None);
    clock.advance(Duration::from_secs(10));
    let calls = switch.calls();
    assert!(matches!(s.count().await, Err(StoreError::CircuitOpen)));
    assert!(matches!(
        s.bulk_delete(&|_: &Record<Data, SessionHandle>| true).await,
        Err(StoreError::CircuitOpen)
    ));
    assert_eq!(switch.calls(), calls, "no scan reached the store");
    assert_eq!(s.breaker().state(), BreakerState::HalfOpen);
    assert!(
        s.load("x").await.unwrap().is_none(),
        "the probe goes through"
    );
    assert_eq!(s.breaker().state(), BreakerState::Closed);
    assert_eq!(s.count().await.unwrap(), 0, "scans run once it is closed");
}

/// `iter` leaves the half-open probe to bounded calls like the other
/// scans, and its failures count against the store.
#[tokio::test(start_paused = true)]
async fn iteration_respects_half_open_and_reports_its_failures() {
    use futures_util::StreamExt;
    let clock = ManualMonotonicClock::new();
    let (s, switch) = store(
        config()
            .max_attempts(1)
            .failure_threshold(2)
            .clock(clock.clone()),
    );
    switch.set(Fault::Unavailable);
    for _ in 0..2 {
        let first = s.iter().next().await;
        assert!(
            matches!(first, Some(Err(StoreError::Unavailable(_)))),
            "{first:?}"
        );
    }
    assert_eq!(
        s.breaker().state(),
        BreakerState::Open,
        "two failed scans open the circuit"
    );
    switch.set(Fault::None);
    clock.advance(Duration::from_secs(10));
    let calls = switch.calls();
    let first = s.iter().next().await;
    assert!(
        matches!(first, Some(Err(StoreError::CircuitOpen))),
        "{first:?}"
    );
    assert_eq!(switch.calls(), calls, "the scan did not reach the store");
    assert_eq!(s.breaker().state(), BreakerState::HalfOpen);
    assert!(
        s.load("x").await.unwrap().is_none(),
        "the probe goes through"
    );
    assert_eq!(s.breaker().state(), BreakerState::Closed);
    assert_eq!(s.iter().count().await, 0, "scans run once it is closed");
}

#[tokio::test(start_paused = true)]
async fn not_found_does_not_open_the_circuit() {
    let (s, _switch) = store(config().failure_threshold(1));
    for v in ["", "garbage", &SessionId::generate().encode()] {
        assert!(s.load(v).await.unwrap().is_none());
    }
    assert_eq!(s.breaker().state(), BreakerState::Closed);
}

#[tokio::test(start_paused = true)]
async fn the_retry_budget_caps_retries_across_operations() {
    let (s, switch) = store(
        config()
            .max_attempts(5)
            .retry_budget(0.0, 2)
            .failure_threshold(1000),
    );
    switch.set(Fault::Unavailable);
    let _ = s.load("x").await;
    assert_eq!(switch.calls(), 3, "1 call + the burst of 2 retries");
    let _ = s.load("x").await;
    assert_eq!(switch.calls(), 4, "budget spent: no retry");
}

#[tokio::test(start_paused = true)]
async fn a_create_whose_reply_was_lost_is_reported_as_saved() {
    let (s, switch) = store(config());
    let r = record(&["mine"]);
    switch.set_for(Fault::LoseReply, 1);
    let out = create(&s, &r).await.unwrap();
    assert_eq!(out, SaveOutcome::Saved(r.id.encode()));
    assert_eq!(s.load(&r.id.encode()).await.unwrap().unwrap().data, r.data);
}

/// The check after a retried create runs within the save's own deadline:
/// with the store hanging by then, the whole save still ends by
/// `operation_timeout`.
#[tokio::test(start_paused = true)]
async fn the_check_after_a_retried_save_keeps_to_the_operation_deadline() {
    let (s, switch) = store(
        config()
            .attempt_timeout(Duration::from_millis(900))
            .operation_timeout(Duration::from_millis(1000))
            .failure_threshold(100),
    );
    let r = record(&["mine"]);
    let started = tokio::time::Instant::now();
    // The create lands but its reply is lost; the retry meets the created
    // session (a collision); the load that would tell whose it is hangs.
    switch.set_after(&[Fault::LoseReply, Fault::None], Fault::Hang);
    let out = create(&s, &r).await;
    assert!(out.is_err(), "{out:?}");
    // Virtual time: deterministic, not a wall-clock measurement.
    assert!(
        started.elapsed() <= Duration::from_millis(1000),
        "{:?}",
        started.elapsed()
    );
}

/// An attempt with no time left (the check after a save that used it all)
/// neither calls the store nor counts against the breaker.
#[tokio::test(start_paused = true)]
async fn an_attempt_with_no_time_left_reaches_neither_the_store_nor_the_breaker() {
    let (s, switch) = store(config().failure_threshold(1));
    let spent = tokio::time::Instant::now();
    let r = s
        .shared
        .attempt(Policy::full("load"), Some(spent), s.inner.load("x"))
        .await;
    assert!(matches!(r, Err(StoreError::Timeout(_))), "{r:?}");
    assert_eq!(switch.calls(), 0, "the store was called");
    // With a threshold of 1, a counted failure would have opened it.
    assert!(s.load("x").await.is_ok(), "the breaker opened");
}

/// A delete whose reply was lost is retried and finds the session gone:
/// most likely its own doing, so it answers that it removed it (a logout
/// then reports itself and expires the cookie). Without a retry, a session
/// already gone is still `false`.
#[tokio::test(start_paused = true)]
async fn a_delete_whose_reply_was_lost_answers_removed() {
    let (s, switch) = store(config());
    let r = record(&["gone"]);
    create(&s, &r).await.unwrap();
    switch.set_for(Fault::LoseReply, 1);
    assert!(s.delete(&r.id).await.unwrap());
    assert!(s.load(&r.id.encode()).await.unwrap().is_none());
    assert!(!s.delete(&r.id).await.unwrap(), "no retry: not there");
}

#[tokio::test(start_paused = true)]
async fn a_retried_create_that_collides_with_someone_else_still_fails() {
    let (s, switch) = store(config());
    let theirs = record(&["theirs"]);
    create(&s, &theirs).await.unwrap();
    let mut mine = theirs.clone();
    mine.data = vec!["mine".into()];
    switch.set_for(Fault::Unavailable, 1);
    assert!(create(&s, &mine).await.is_err());
    let stored = s.load(&theirs.id.encode()).await.unwrap().unwrap();
    assert_eq!(stored.data, theirs.data);
}

/// Regenerates `moved` away from `old`, the store losing its first reply.
async fn regenerate_losing_the_reply(
    s: &Resilient<Inner>,
    switch: &FaultSwitch,
    moved: &Record<Data>,
    old: SessionId,
) -> SaveOutcome {
    switch.set_for(Fault::LoseReply, 1);
    s.save(Save::new(moved, None, SaveKind::Regenerate { old }))
        .await
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_regenerate_whose_reply_was_lost_is_reported_as_saved() {
    let (s, switch) = store(config());
    let old = record(&["x"]);
    create(&s, &old).await.unwrap();
    let mut moved = s.load(&old.id.encode()).await.unwrap().unwrap();
    moved.id = SessionId::generate();
    let out = regenerate_losing_the_reply(&s, &switch, &moved, old.id).await;
    assert_eq!(out, SaveOutcome::Saved(moved.id.encode()));
    assert!(s.load(&old.id.encode()).await.unwrap().is_none());
    assert!(s.load(&moved.id.encode()).await.unwrap().is_some());
}

#[tokio::test(start_paused = true)]
async fn a_regenerate_that_merged_and_whose_reply_was_lost_is_reported_as_saved() {
    // Its first attempt merged an update saved meanwhile, so the session
    // under the new id is not the record it sent; it is still its own.
    let (s, switch) = store(config());
    let old = record(&["x"]);
    create(&s, &old).await.unwrap();
    let loaded = s.load(&old.id.encode()).await.unwrap().unwrap();
    let mut other = loaded.clone();
    other.data.push("y".into());
    s.save(Save::update(&other, Some(&loaded.data)))
        .await
        .unwrap();
    let mut moved = loaded.clone();
    moved.id = SessionId::generate();
    let out = regenerate_losing_the_reply(&s, &switch, &moved, old.id).await;
    assert_eq!(out, SaveOutcome::Saved(moved.id.encode()));
    let stored = s.load(&moved.id.encode()).await.unwrap().unwrap();
    assert_eq!(stored.data, vec!["x".to_string(), "y".to_string()]);
}

#[tokio::test(start_paused = true)]
async fn an_update_whose_reply_was_lost_is_repeated_harmlessly() {
    let (s, switch) = store(config());
    let r = record(&["a"]);
    create(&s, &r).await.unwrap();
    let loaded = s.load(&r.id.encode()).await.unwrap().unwrap();
    let mut changed = loaded.clone();
    changed.data.push("b".into());
    switch.set_for(Fault::LoseReply, 1);
    let out = s
        .save(Save::update(&changed, Some(&loaded.data)))
        .await
        .unwrap();
    assert_eq!(out, SaveOutcome::Kept);
    let stored = s.load(&r.id.encode()).await.unwrap().unwrap();
    assert_eq!(stored.data, vec!["a".to_string(), "b".to_string()]);
}

#[tokio::test(start_paused = true)]
async fn an_update_that_set_flash_whose_reply_was_lost_sets_it_once() {
    // The repeat finds its own first attempt stored (a version conflict)
    // and merges onto it: the flash message it set must not be added twice,
    // nor the one it read come back.
    let (s, switch) = store(config());
    let note = |v: &str| crate::flash::FlashMessage {
        key: "notice".into(),
        value: v.into(),
    };
    let mut r = record(&["a"]);
    r.flash.push(note("saved"));
    create(&s, &r).await.unwrap();
    let loaded = s.load(&r.id.encode()).await.unwrap().unwrap();
    let mut changed = loaded.clone();
    changed.flash = vec![note("welcome")];
    let taken = [note("saved")];
    switch.set_for(Fault::LoseReply, 1);
    let out = s
        .save(
            Save::update(&changed, None).with_changes(crate::store::MetaChanges {
                flash_taken: &taken,
                flash_added: 1,
                ..crate::store::MetaChanges::NONE
            }),
        )
        .await
        .unwrap();
    assert_eq!(out, SaveOutcome::Kept);
    let stored = s.load(&r.id.encode()).await.unwrap().unwrap();
    assert_eq!(stored.flash, vec![note("welcome")]);
}

#[tokio::test(start_paused = true)]
async fn bounds_too_large_to_represent_mean_no_bound_not_a_panic() {
    let (s, switch) = store(
        config()
            .attempt_timeout(Duration::MAX)
            .operation_timeout(Duration::MAX)
            // The largest cap accepted (a larger one is a config error).
            .backoff(Duration::from_millis(5), Duration::from_secs(60)),
    );
    switch.set_for(Fault::Unavailable, 2);
    let r = record(&["a"]);
    create(&s, &r).await.unwrap();
    assert!(s.load(&r.id.encode()).await.unwrap().is_some());
}

/// A regenerate that landed but whose only attempt lost its reply (saves
/// not retried) is reported as saved: the old id is dead, and answering an
/// error would leave the client holding it.
#[tokio::test(start_paused = true)]
async fn an_unretried_regenerate_whose_reply_was_lost_is_reported_as_saved() {
    let (s, switch) = store(config().retry_saves(false));
    let old = record(&["x"]);
    create(&s, &old).await.unwrap();
    let mut moved = s.load(&old.id.encode()).await.unwrap().unwrap();
    moved.id = SessionId::generate();
    let out = regenerate_losing_the_reply(&s, &switch, &moved, old.id).await;
    assert_eq!(out, SaveOutcome::Saved(moved.id.encode()));
    assert!(s.load(&moved.id.encode()).await.unwrap().is_some());
    // One that did not land still fails.
    let other = record(&["y"]);
    create(&s, &other).await.unwrap();
    let mut moved = s.load(&other.id.encode()).await.unwrap().unwrap();
    moved.id = SessionId::generate();
    switch.set_for(Fault::Unavailable, 1);
    let out = s.save(Save::regenerate(&moved, other.id, None)).await;
    assert!(matches!(out, Err(StoreError::Unavailable(_))), "{out:?}");
}

#[tokio::test(start_paused = true)]
async fn saves_are_not_retried_when_retry_saves_is_off() {
    let (s, switch) = store(config().retry_saves(false));
    switch.set_for(Fault::Unavailable, 1);
    assert!(create(&s, &record(&["a"])).await.is_err());
    assert_eq!(switch.calls(), 1);
    // Loads are still retried.
    switch.set_for(Fault::Unavailable, 1);
    assert!(s.load("x").await.is_ok());
}

#[tokio::test(start_paused = true)]
async fn query_operations_fail_fast_while_the_circuit_is_open() {
    use futures_util::StreamExt;
    let (s, switch) = store(config().max_attempts(1).failure_threshold(1));
    switch.set(Fault::Unavailable);
    let _ = s.by_owner("alice").await;
    assert_eq!(s.breaker().state(), BreakerState::Open);
    let calls = switch.calls();
    assert!(matches!(s.count().await, Err(StoreError::CircuitOpen)));
    assert!(matches!(
        s.delete_owner("alice").await,
        Err(StoreError::CircuitOpen)
    ));
    let first = s.iter().next().await;
    assert!(matches!(first, Some(Err(StoreError::CircuitOpen))));
    assert_eq!(switch.calls(), calls);
}

#[tokio::test(start_paused = true)]
async fn sessions_removed_by_the_inner_store_still_fire_events() {
    let deleted = Arc::new(AtomicUsize::new(0));
    let d = deleted.clone();
    let inner = MemoryStore::<Data>::builder().max_entries(1).build();
    let store = Resilient::new(inner, ResilienceConfig::default());
    let config = crate::Config::builder()
        .on_deleted(move |_| {
            d.fetch_add(1, Ordering::SeqCst);
        })
        .build()
        .unwrap();
    let sessions = crate::Sessions::new(store, config);
    // 64 shards of one entry each: 100 sessions must evict some.
    for _ in 0..100 {
        let s = sessions.load(None).await.unwrap();
        s.data_mut().push("x".into());
        sessions.commit(&s, None).await.unwrap();
    }
    assert!(
        deleted.load(Ordering::SeqCst) >= 1,
        "evictions reach on_deleted"
    );
}

/// A store whose first `delete_owner` deletes one of the owner's sessions
/// and then fails (a connection lost part-way through a revoke).
struct FailsPartWay {
    inner: MemoryStore<Data>,
    failed: std::sync::atomic::AtomicBool,
}

#[async_trait::async_trait]
impl Store<Data> for FailsPartWay {
    async fn load(&self, cookie_value: &str) -> Result<Option<Record<Data>>, StoreError> {
        self.inner.load(cookie_value).await
    }
    async fn save(&self, save: Save<'_, Data>) -> Result<SaveOutcome, StoreError> {
        self.inner.save(save).await
    }
    async fn delete(&self, id: &SessionId) -> Result<bool, StoreError> {
        self.inner.delete(id).await
    }
}

#[async_trait::async_trait]
impl QueryStore<Data> for FailsPartWay {
    fn iter(&self) -> BoxStream<'_, Result<Record<Data, SessionHandle>, StoreError>> {
        self.inner.iter()
    }
    async fn by_owner(&self, owner: &str) -> Result<Vec<Record<Data, SessionHandle>>, StoreError> {
        self.inner.by_owner(owner).await
    }
    async fn delete_handle(&self, handle: &SessionHandle) -> Result<bool, StoreError> {
        self.inner.delete_handle(handle).await
    }
    async fn delete_owner(&self, owner: &str) -> Result<Vec<Removed>, StoreError> {
        if self.failed.swap(true, Ordering::SeqCst) {
            return self.inner.delete_owner(owner).await;
        }
        let first = self.inner.by_owner(owner).await?.remove(0);
        assert!(self.inner.delete_handle(&first.id).await?);
        let removed = vec![Removed::new(first.id, first.owner)];
        Err(StoreError::Unavailable("connection lost".into()).after_removing(removed))
    }
}

/// A revoke retried after it failed part-way reports every session it
/// removed, the first attempt's too, and `Sessions` fires an event for each.
#[tokio::test(start_paused = true)]
async fn a_revoke_retried_after_failing_part_way_reports_every_session() {
    let deleted = Arc::new(AtomicUsize::new(0));
    let d = deleted.clone();
    let inner = FailsPartWay {
        inner: MemoryStore::new(),
        failed: Default::default(),
    };
    for _ in 0..3 {
        let mut r = record(&["x"]);
        r.owner = Some("alice".into());
        create(&inner.inner, &r).await.unwrap();
    }
    let store = Resilient::new(inner, config().build().unwrap());
    let config = crate::Config::builder()
        .on_deleted(move |_| {
            d.fetch_add(1, Ordering::SeqCst);
        })
        .build()
        .unwrap();
    let sessions = crate::Sessions::new(store, config);
    assert_eq!(sessions.revoke_owner("alice").await.unwrap(), 3);
    assert_eq!(deleted.load(Ordering::SeqCst), 3);
    assert!(sessions.by_owner("alice").await.unwrap().is_empty());
}

#[test]
fn a_partial_error_is_classified_by_what_stopped_it() {
    let removed = |n: usize| -> Vec<Removed> {
        (0..n)
            .map(|_| Removed::of_id(SessionId::generate(), None))
            .collect()
    };
    // Nothing removed: the error as it was.
    let e = StoreError::Timeout(Duration::from_secs(1)).after_removing(Vec::new());
    assert!(matches!(e, StoreError::Timeout(_)));
    assert!(e.removed().is_empty());
    let e = StoreError::Unavailable("down".into()).after_removing(removed(2));
    assert_eq!(e.removed().len(), 2);
    assert!(e.is_transient() && e.is_store_failure());
    assert_eq!(e.kind(), "unavailable");
    assert!(matches!(e.cause(), StoreError::Unavailable(_)));
    assert!(e.to_string().contains("after removing 2 sessions"), "{e}");
    // A second layer adds its own in front, once.
    let e = e.after_removing(removed(1));
    assert_eq!(e.removed().len(), 3);
    assert!(matches!(e.cause(), StoreError::Unavailable(_)));
    let (all, source) = e.take_removed();
    assert_eq!(all.len(), 3);
    assert!(matches!(source, StoreError::Unavailable(_)));
    let e = StoreError::Decode("x".into()).after_removing(removed(1));
    assert!(!e.is_transient() && !e.is_store_failure());
}

/// Every delete path through `Sessions` is timed and its failures counted
/// (an admin delete, the delete of an expired session a load found):
/// before, only a `destroy` was.
#[test]
fn every_delete_through_sessions_is_timed_and_its_failures_counted() {
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let inner = FaultyStore::new(MemoryStore::<Data>::new());
    let switch = inner.switch();
    let sessions = crate::Sessions::new(inner, crate::Config::default());
    let recorder = DebuggingRecorder::new();
    let snapshot = recorder.snapshotter();
    metrics::with_local_recorder(&recorder, || {
        rt.block_on(async {
            let id = SessionId::generate();
            assert!(!sessions.delete(&id).await.unwrap());
            switch.set(Fault::Unavailable);
            assert!(sessions.delete(&id).await.is_err());
        })
    });
    let mut timed = 0;
    let mut failed = 0;
    for (key, _, _, value) in snapshot.snapshot().into_vec() {
        let key = key.key();
        let op_delete = key
            .labels()
            .any(|l| l.key() == "op" && l.value() == "delete");
        match (key.name(), value) {
            ("sessionkit_store_duration_seconds", DebugValue::Histogram(v)) if op_delete => {
                timed += v.len()
            }
            ("sessionkit_store_errors_total", DebugValue::Counter(n)) if op_delete => failed += n,
            _ => {}
        }
    }
    assert_eq!((timed, failed), (2, 1));
}

/// Records the write id of every save it is handed.
struct SeesWriteIds {
    inner: MemoryStore<Data>,
    ids: parking_lot::Mutex<Vec<u64>>,
}

#[async_trait::async_trait]
impl Store<Data> for SeesWriteIds {
    async fn load(&self, cookie_value: &str) -> Result<Option<Record<Data>>, StoreError> {
        self.inner.load(cookie_value).await
    }
    async fn save(&self, save: Save<'_, Data>) -> Result<SaveOutcome, StoreError> {
        self.ids.lock().push(save.write_id());
        self.inner.save(save).await
    }
    async fn delete(&self, id: &SessionId) -> Result<bool, StoreError> {
        self.inner.delete(id).await
    }
}

/// A save the decorator may repeat carries one random, non-zero write id,
/// the same on every attempt (so a store can recognise the repeat), a new
/// one per save; with `retry_saves` off, none.
#[tokio::test(start_paused = true)]
async fn every_attempt_of_a_save_carries_its_one_write_id() {
    for retry in [true, false] {
        let inner = FaultyStore::new(SeesWriteIds {
            inner: MemoryStore::new(),
            ids: Default::default(),
        });
        let switch = inner.switch();
        let s = Resilient::new(inner, config().retry_saves(retry).build().unwrap());
        let r = record(&["x"]);
        switch.set_for(Fault::LoseReply, 1);
        let _ = create(&s, &r).await;
        let _ = s.save(Save::update(&r, None)).await;
        let ids = s.inner().inner().ids.lock().clone();
        if retry {
            assert_eq!(ids.len(), 3, "{ids:?}");
            assert!(ids[0] != 0 && ids[0] == ids[1], "{ids:?}");
            assert!(ids[2] != 0 && ids[2] != ids[0], "{ids:?}");
        } else {
            assert_eq!(ids, [0, 0]);
        }
    }
}

/// "Sign out that device" under another owner's name answers `false`, also
/// after a failed attempt: a retried delete answers `true` when an earlier
/// attempt may have deleted, but here that attempt failed in the listing,
/// before any delete (and the session is not this owner's anyway).
#[tokio::test(start_paused = true)]
async fn delete_handle_of_under_another_owner_is_false_after_a_retry() {
    let (s, switch) = store(config());
    let mut r = record(&["a"]);
    r.owner = Some("ada".into());
    create(&s, &r).await.unwrap();
    switch.set_for(Fault::Unavailable, 1);
    let handle = r.id.handle();
    assert!(!s.delete_handle_of("mallory", &handle).await.unwrap());
    assert!(s.load(&r.id.encode()).await.unwrap().is_some());
    switch.set_for(Fault::Unavailable, 1);
    assert!(s.delete_handle_of("ada", &handle).await.unwrap());
    assert!(s.load(&r.id.encode()).await.unwrap().is_none());
}

/// A revoke whose first attempt ran but lost its whole reply (no partial
/// list to keep): the retry finds nothing, and the sessions the lost attempt
/// removed are still reported, from the listing made first.
#[tokio::test(start_paused = true)]
async fn a_revoke_whose_reply_was_lost_reports_the_sessions_it_removed() {
    let (s, switch) = store(config());
    for _ in 0..3 {
        let mut r = record(&["x"]);
        r.owner = Some("alice".into());
        create(&s, &r).await.unwrap();
    }
    let mut other = record(&["y"]);
    other.owner = Some("bob".into());
    create(&s, &other).await.unwrap();
    // The listing answers, the first revoke runs and loses its reply.
    switch.set_after(&[Fault::None, Fault::LoseReply], Fault::None);
    let removed = s.delete_owner("alice").await.unwrap();
    assert_eq!(removed.len(), 3);
    assert!(removed.iter().all(|r| r.owner.as_deref() == Some("alice")));
    assert!(s.by_owner("alice").await.unwrap().is_empty());
    assert_eq!(s.by_owner("bob").await.unwrap().len(), 1);
}
