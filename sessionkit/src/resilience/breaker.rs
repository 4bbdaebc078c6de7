//! The circuit breaker: closed, open, half-open, on an injectable monotonic clock.
//!
//! - **Closed**: every call goes through. `failure_threshold` store failures
//!   in a row (see [`StoreError::is_store_failure`]) open the circuit; any
//!   call the store answers (a success, "not found", undecodable data) resets
//!   the count.
//! - **Open**: calls fail at once with [`StoreError::CircuitOpen`], without
//!   touching the store, until `reset_timeout` has passed on the clock.
//! - **Half-open**: exactly `half_open_probes` calls are let through as
//!   probes; the others fail fast while they are in flight. One failed probe
//!   opens the circuit again (for a new `reset_timeout`); when every probe
//!   has succeeded the circuit closes. A probe whose caller gave up (its
//!   future was dropped) gives its slot back to the next caller.
//!
//! Outcomes are tied to the state they were admitted in: a slow call that
//! started before the circuit opened cannot close it, and a failure that
//! started before it closed cannot reopen it.
//!
//! The transition from open to half-open happens on the first call after the
//! reset timeout (no timer task); the state gauge therefore shows "open" until
//! someone asks.
//!
//! Hand-written on purpose: the Rust breaker crates we looked at (`failsafe`
//! in particular) admit every call in half-open rather than an exact number
//! of probes, and read a global clock that applications cannot inject, so
//! their state machines cannot be tested without sleeping.
//!
//! ```
//! use std::time::Duration;
//! use sessionkit::resilience::{BreakerSettings, BreakerState, CircuitBreaker, ManualMonotonicClock};
//! use sessionkit::StoreError;
//!
//! let clock = ManualMonotonicClock::new();
//! let breaker = CircuitBreaker::new(
//!     BreakerSettings { failure_threshold: 2, reset_timeout: Duration::from_secs(5), half_open_probes: 1 },
//!     clock.clone(),
//! );
//! for _ in 0..2 {
//!     breaker.try_acquire().unwrap().record(&Err::<(), _>(StoreError::Unavailable("down".into())));
//! }
//! assert_eq!(breaker.state(), BreakerState::Open);
//! assert!(matches!(breaker.try_acquire(), Err(StoreError::CircuitOpen)));
//! clock.advance(Duration::from_secs(5));
//! let probe = breaker.try_acquire().unwrap();          // the one probe
//! assert!(breaker.try_acquire().is_err());             // others fail fast
//! probe.record(&Ok::<(), StoreError>(()));
//! assert_eq!(breaker.state(), BreakerState::Closed);
//! ```

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

use crate::error::StoreError;
use crate::resilience::clock::MonotonicClock;

/// The breaker's numbers. [`crate::resilience::ResilienceConfig`] validates them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerSettings {
    /// Store failures in a row that open the circuit (at least 1).
    pub failure_threshold: u32,
    /// How long the circuit stays open before probing.
    pub reset_timeout: Duration,
    /// Probes let through in half-open; all must succeed to close (at least 1).
    pub half_open_probes: u32,
}

/// The state of a circuit breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BreakerState {
    /// Calls go through.
    Closed,
    /// Calls fail fast.
    Open,
    /// A few probe calls go through; the rest fail fast.
    HalfOpen,
}

impl BreakerState {
    /// A stable label for metrics and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half_open",
        }
    }

    /// The value of the `sessionkit_breaker_state` gauge: 0 closed, 1 half-open, 2 open.
    pub fn gauge_value(self) -> f64 {
        match self {
            BreakerState::Closed => 0.0,
            BreakerState::HalfOpen => 1.0,
            BreakerState::Open => 2.0,
        }
    }
}

impl fmt::Display for BreakerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A change of state, as passed to the transition hook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BreakerTransition {
    /// The breaker's name (the `breaker` metrics label).
    pub breaker: Arc<str>,
    /// The state before.
    pub from: BreakerState,
    /// The state after.
    pub to: BreakerState,
}

/// Called on every state change of a breaker.
pub type TransitionHook = Arc<dyn Fn(&BreakerTransition) + Send + Sync>;

#[derive(Debug, Clone, Copy)]
enum Phase {
    Closed { failures: u32 },
    Open { until: Duration },
    HalfOpen { admitted: u32, succeeded: u32 },
}

impl Phase {
    fn state(&self) -> BreakerState {
        match self {
            Phase::Closed { .. } => BreakerState::Closed,
            Phase::Open { .. } => BreakerState::Open,
            Phase::HalfOpen { .. } => BreakerState::HalfOpen,
        }
    }
}

struct Inner {
    phase: Phase,
    /// Bumped on every transition, so outcomes from calls admitted in an
    /// earlier state are ignored.
    generation: u64,
}

/// A circuit breaker (see the [module docs](self)). Share it with an `Arc`.
pub struct CircuitBreaker {
    settings: BreakerSettings,
    clock: Arc<dyn MonotonicClock>,
    name: Arc<str>,
    hook: Option<TransitionHook>,
    inner: Mutex<Inner>,
}

impl fmt::Debug for CircuitBreaker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CircuitBreaker")
            .field("name", &self.name)
            .field("settings", &self.settings)
            .field("state", &self.state())
            .finish()
    }
}

impl CircuitBreaker {
    /// A closed breaker named `store`, without a transition hook.
    pub fn new(settings: BreakerSettings, clock: impl MonotonicClock) -> Self {
        Self::with_parts(settings, Arc::new(clock), "store".into(), None)
    }

    pub(crate) fn with_parts(
        settings: BreakerSettings,
        clock: Arc<dyn MonotonicClock>,
        name: Arc<str>,
        hook: Option<TransitionHook>,
    ) -> Self {
        metrics::gauge!("sessionkit_breaker_state", "breaker" => name.to_string())
            .set(BreakerState::Closed.gauge_value());
        CircuitBreaker {
            settings,
            clock,
            name,
            hook,
            inner: Mutex::new(Inner {
                phase: Phase::Closed { failures: 0 },
                generation: 0,
            }),
        }
    }

    /// The current state, as of the last call (see the module docs about
    /// open → half-open happening on the next call).
    pub fn state(&self) -> BreakerState {
        self.inner.lock().phase.state()
    }

    /// The settings.
    pub fn settings(&self) -> &BreakerSettings {
        &self.settings
    }

    /// Asks to make a call. `Err(StoreError::CircuitOpen)` means "don't":
    /// the circuit is open, or half-open with every probe slot taken.
    /// The returned permit must be given the call's outcome with
    /// [`Permit::record`]; dropping it unrecorded means the call was abandoned.
    pub fn try_acquire(&self) -> Result<Permit<'_>, StoreError> {
        let mut transition = None;
        let admitted = {
            let mut inner = self.inner.lock();
            let now = self.clock.now();
            if let Phase::Open { until } = inner.phase {
                if now >= until {
                    transition = Some(self.move_to(
                        &mut inner,
                        Phase::HalfOpen {
                            admitted: 0,
                            succeeded: 0,
                        },
                    ));
                }
            }
            let generation = inner.generation;
            match &mut inner.phase {
                Phase::Closed { .. } => Some((generation, false)),
                Phase::Open { .. } => None,
                Phase::HalfOpen { admitted, .. } => {
                    if *admitted < self.settings.half_open_probes {
                        *admitted += 1;
                        Some((generation, true))
                    } else {
                        None
                    }
                }
            }
        };
        if let Some(t) = transition {
            self.announce(t);
        }
        match admitted {
            Some((generation, probe)) => Ok(Permit {
                breaker: self,
                generation,
                probe,
                recorded: false,
            }),
            None => Err(StoreError::CircuitOpen),
        }
    }

    fn move_to(&self, inner: &mut Inner, next: Phase) -> BreakerTransition {
        let from = inner.phase.state();
        inner.phase = next;
        inner.generation += 1;
        // The gauge under the lock, in the order of the transitions: set
        // in `announce`, after the lock, a thread preempted there could set
        // a state the breaker had already left, and leave it shown.
        metrics::gauge!("sessionkit_breaker_state", "breaker" => self.name.to_string())
            .set(next.state().gauge_value());
        BreakerTransition {
            breaker: self.name.clone(),
            from,
            to: next.state(),
        }
    }

    /// Counter, log line and hook for a transition (the gauge is set by
    /// `move_to`); called with no lock held so the hook may look at the
    /// breaker.
    fn announce(&self, t: BreakerTransition) {
        metrics::counter!(
            "sessionkit_breaker_transitions_total",
            "breaker" => self.name.to_string(),
            "from" => t.from.as_str(),
            "to" => t.to.as_str()
        )
        .increment(1);
        match t.to {
            BreakerState::Open => {
                tracing::warn!(breaker = %self.name, from = %t.from, "session store circuit opened; failing fast")
            }
            _ => {
                tracing::info!(breaker = %self.name, from = %t.from, to = %t.to, "session store circuit changed state")
            }
        }
        if let Some(hook) = &self.hook {
            hook(&t);
        }
    }

    fn settle(&self, generation: u64, probe: bool, outcome: Outcome) {
        let transition = {
            let mut inner = self.inner.lock();
            if inner.generation != generation {
                return; // admitted in an earlier state: says nothing about now
            }
            let now = self.clock.now();
            let open = Phase::Open {
                until: now.saturating_add(self.settings.reset_timeout),
            };
            match (&mut inner.phase, outcome) {
                (Phase::Closed { failures }, Outcome::Success) => {
                    *failures = 0;
                    None
                }
                (Phase::Closed { failures }, Outcome::Failure) => {
                    *failures += 1;
                    if *failures >= self.settings.failure_threshold {
                        Some(self.move_to(&mut inner, open))
                    } else {
                        None
                    }
                }
                (Phase::HalfOpen { .. }, Outcome::Failure) if probe => {
                    Some(self.move_to(&mut inner, open))
                }
                (Phase::HalfOpen { succeeded, .. }, Outcome::Success) if probe => {
                    *succeeded += 1;
                    if *succeeded >= self.settings.half_open_probes {
                        Some(self.move_to(&mut inner, Phase::Closed { failures: 0 }))
                    } else {
                        None
                    }
                }
                (Phase::HalfOpen { admitted, .. }, Outcome::Abandoned) if probe => {
                    *admitted = admitted.saturating_sub(1);
                    None
                }
                _ => None,
            }
        };
        if let Some(t) = transition {
            self.announce(t);
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Success,
    Failure,
    Abandoned,
}

/// Leave to make one call through a [`CircuitBreaker`].
#[must_use = "record the call's outcome with Permit::record"]
pub struct Permit<'a> {
    breaker: &'a CircuitBreaker,
    generation: u64,
    probe: bool,
    recorded: bool,
}

impl fmt::Debug for Permit<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Permit")
            .field("probe", &self.probe)
            .finish()
    }
}

impl Permit<'_> {
    /// Whether this call is a half-open probe.
    pub fn is_probe(&self) -> bool {
        self.probe
    }

    /// Reports the call's outcome. A store failure
    /// ([`StoreError::is_store_failure`]) counts against the store; any other
    /// answer (`Ok`, including "not found", or an error about one value such as
    /// [`StoreError::Decode`]) shows the store is working. A
    /// [`StoreError::CircuitOpen`] from a breaker further in counts as neither.
    pub fn record<R>(mut self, result: &Result<R, StoreError>) {
        self.recorded = true;
        let outcome = match result {
            Ok(_) => Outcome::Success,
            Err(StoreError::CircuitOpen) => Outcome::Abandoned,
            Err(e) if e.is_store_failure() => Outcome::Failure,
            Err(_) => Outcome::Success,
        };
        self.breaker.settle(self.generation, self.probe, outcome);
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        if !self.recorded {
            self.breaker
                .settle(self.generation, self.probe, Outcome::Abandoned);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resilience::clock::ManualMonotonicClock;
    use std::sync::atomic::{AtomicUsize, Ordering};

    const RESET: Duration = Duration::from_secs(10);

    fn breaker(threshold: u32, probes: u32) -> (CircuitBreaker, ManualMonotonicClock) {
        let clock = ManualMonotonicClock::new();
        let b = CircuitBreaker::new(
            BreakerSettings {
                failure_threshold: threshold,
                reset_timeout: RESET,
                half_open_probes: probes,
            },
            clock.clone(),
        );
        (b, clock)
    }

    fn down() -> Result<(), StoreError> {
        Err(StoreError::Unavailable("connection refused".into()))
    }

    fn fail(b: &CircuitBreaker) {
        b.try_acquire().expect("admitted").record(&down());
    }

    fn succeed(b: &CircuitBreaker) {
        b.try_acquire()
            .expect("admitted")
            .record(&Ok::<(), StoreError>(()));
    }

    fn open(b: &CircuitBreaker, clock: &ManualMonotonicClock) {
        while b.state() != BreakerState::Open {
            fail(b);
        }
        let _ = clock;
    }

    #[test]
    fn the_circuit_opens_after_exactly_the_threshold_of_failures_in_a_row() {
        let (b, _) = breaker(3, 1);
        fail(&b);
        fail(&b);
        assert_eq!(b.state(), BreakerState::Closed);
        fail(&b);
        assert_eq!(b.state(), BreakerState::Open);
    }

    #[test]
    fn an_answered_call_resets_the_failure_count() {
        let (b, _) = breaker(3, 1);
        fail(&b);
        fail(&b);
        succeed(&b);
        fail(&b);
        fail(&b);
        assert_eq!(b.state(), BreakerState::Closed);
    }

    #[test]
    fn not_found_and_bad_data_are_not_failures() {
        let (b, _) = breaker(1, 1);
        b.try_acquire()
            .unwrap()
            .record(&Ok::<Option<()>, StoreError>(None));
        b.try_acquire()
            .unwrap()
            .record(&Err::<(), _>(StoreError::Decode("garbage".into())));
        b.try_acquire()
            .unwrap()
            .record(&Err::<(), _>(StoreError::CookieTooLarge {
                size: 5000,
                limit: 4096,
            }));
        assert_eq!(b.state(), BreakerState::Closed);
        b.try_acquire()
            .unwrap()
            .record(&Err::<(), _>(StoreError::Timeout(Duration::from_millis(5))));
        assert_eq!(b.state(), BreakerState::Open);
    }

    #[test]
    fn an_open_circuit_fails_fast_until_the_reset_timeout_has_passed() {
        let (b, clock) = breaker(1, 1);
        open(&b, &clock);
        clock.advance(RESET - Duration::from_nanos(1));
        assert!(matches!(b.try_acquire(), Err(StoreError::CircuitOpen)));
        assert_eq!(b.state(), BreakerState::Open);
        clock.advance(Duration::from_nanos(1));
        let probe = b.try_acquire().expect("a probe after the reset timeout");
        assert!(probe.is_probe());
        assert_eq!(b.state(), BreakerState::HalfOpen);
        probe.record(&Ok::<(), StoreError>(()));
        assert_eq!(b.state(), BreakerState::Closed);
    }

    #[test]
    fn half_open_admits_exactly_the_configured_number_of_probes() {
        let (b, clock) = breaker(1, 3);
        open(&b, &clock);
        clock.advance(RESET);
        let probes: Vec<_> = (0..3).map(|_| b.try_acquire().expect("probe")).collect();
        for _ in 0..10 {
            assert!(matches!(b.try_acquire(), Err(StoreError::CircuitOpen)));
        }
        let mut probes = probes.into_iter();
        probes.next().unwrap().record(&Ok::<(), StoreError>(()));
        probes.next().unwrap().record(&Ok::<(), StoreError>(()));
        assert_eq!(b.state(), BreakerState::HalfOpen, "one probe still out");
        // A finished probe does not free a slot: the number of probes is exact.
        assert!(b.try_acquire().is_err());
        probes.next().unwrap().record(&Ok::<(), StoreError>(()));
        assert_eq!(b.state(), BreakerState::Closed);
    }

    #[test]
    fn one_failed_probe_reopens_the_circuit_for_a_new_reset_timeout() {
        let (b, clock) = breaker(1, 2);
        open(&b, &clock);
        clock.advance(RESET);
        let p1 = b.try_acquire().unwrap();
        let p2 = b.try_acquire().unwrap();
        p1.record(&Ok::<(), StoreError>(()));
        p2.record(&down());
        assert_eq!(b.state(), BreakerState::Open);
        clock.advance(RESET - Duration::from_millis(1));
        assert!(b.try_acquire().is_err());
        clock.advance(Duration::from_millis(1));
        assert!(b.try_acquire().unwrap().is_probe());
    }

    #[test]
    fn an_abandoned_probe_gives_its_slot_back() {
        let (b, clock) = breaker(1, 1);
        open(&b, &clock);
        clock.advance(RESET);
        let p = b.try_acquire().unwrap();
        assert!(b.try_acquire().is_err());
        drop(p);
        assert_eq!(b.state(), BreakerState::HalfOpen);
        succeed(&b);
        assert_eq!(b.state(), BreakerState::Closed);
    }

    #[test]
    fn outcomes_of_calls_admitted_before_a_transition_are_ignored() {
        let (b, clock) = breaker(2, 1);
        let slow_success = b.try_acquire().unwrap();
        let slow_failure = b.try_acquire().unwrap();
        fail(&b);
        fail(&b);
        assert_eq!(b.state(), BreakerState::Open);
        // A success that started while closed must not close the open circuit.
        slow_success.record(&Ok::<(), StoreError>(()));
        assert_eq!(b.state(), BreakerState::Open);
        clock.advance(RESET);
        succeed(&b);
        assert_eq!(b.state(), BreakerState::Closed);
        // A failure from before the circuit opened says nothing about now.
        slow_failure.record(&down());
        fail(&b);
        assert_eq!(b.state(), BreakerState::Closed, "only one failure counts");
    }

    #[test]
    fn a_circuit_open_error_from_an_inner_breaker_is_neither_success_nor_failure() {
        let (b, clock) = breaker(1, 1);
        open(&b, &clock);
        clock.advance(RESET);
        b.try_acquire()
            .unwrap()
            .record(&Err::<(), _>(StoreError::CircuitOpen));
        assert_eq!(b.state(), BreakerState::HalfOpen);
        assert!(b.try_acquire().unwrap().is_probe(), "the slot came back");
    }

    #[test]
    fn the_hook_sees_every_transition_in_order() {
        let clock = ManualMonotonicClock::new();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        let b = CircuitBreaker::with_parts(
            BreakerSettings {
                failure_threshold: 1,
                reset_timeout: RESET,
                half_open_probes: 1,
            },
            Arc::new(clock.clone()),
            "sessions".into(),
            Some(Arc::new(move |t: &BreakerTransition| {
                log.lock().push((t.from, t.to))
            })),
        );
        fail(&b);
        clock.advance(RESET);
        b.try_acquire().unwrap().record(&down());
        clock.advance(RESET);
        succeed(&b);
        use BreakerState::*;
        assert_eq!(
            *seen.lock(),
            vec![
                (Closed, Open),
                (Open, HalfOpen),
                (HalfOpen, Open),
                (Open, HalfOpen),
                (HalfOpen, Closed)
            ]
        );
    }

    #[test]
    fn the_hook_may_read_the_breaker_state_without_deadlocking() {
        let clock = ManualMonotonicClock::new();
        let slot: Arc<Mutex<Option<Arc<CircuitBreaker>>>> = Arc::new(Mutex::new(None));
        let calls = Arc::new(AtomicUsize::new(0));
        let (s, c) = (slot.clone(), calls.clone());
        let b = Arc::new(CircuitBreaker::with_parts(
            BreakerSettings {
                failure_threshold: 1,
                reset_timeout: RESET,
                half_open_probes: 1,
            },
            Arc::new(clock),
            "x".into(),
            Some(Arc::new(move |t: &BreakerTransition| {
                let b = s.lock().clone().unwrap();
                assert_eq!(b.state(), t.to);
                c.fetch_add(1, Ordering::SeqCst);
            })),
        ));
        *slot.lock() = Some(b.clone());
        fail(&b);
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }
}
