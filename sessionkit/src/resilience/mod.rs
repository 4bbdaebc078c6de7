//! Resilience: [`Resilient<S>`] wraps any store with per-operation timeouts,
//! retries (exponential backoff, full jitter, a retry budget) and a circuit
//! breaker, so that a failing store costs requests milliseconds instead of
//! timeouts, and a recovering one is not flattened by a retry storm.
//!
//! ```
//! use std::time::Duration;
//! use sessionkit::resilience::{ResilienceConfig, Resilient};
//! use sessionkit::{store::memory::MemoryStore, Config, Sessions};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let config = ResilienceConfig::builder()
//!     .name("sessions")
//!     .attempt_timeout(Duration::from_millis(100))
//!     .operation_timeout(Duration::from_millis(300))
//!     .failure_threshold(5)
//!     .reset_timeout(Duration::from_secs(2))
//!     .on_breaker_transition(|t| eprintln!("session store circuit: {} -> {}", t.from, t.to))
//!     .build()
//!     .expect("valid resilience settings");
//! let store = Resilient::new(MemoryStore::<u32>::new(), config);
//! let sessions = Sessions::new(store, Config::default());
//! assert!(sessions.load(None).await.is_ok());
//! # }
//! ```
//!
//! # What one store call goes through
//! 1. The **operation deadline** (`operation_timeout`) starts: no call made
//!    through the decorator takes longer, retries and backoff included (and,
//!    for a save, the check of whether a retried save had landed).
//! 2. The **circuit breaker** is asked (see [`breaker`]). Open: the call fails
//!    at once with [`StoreError::CircuitOpen`], the store is not touched.
//! 3. The **attempt** runs under `attempt_timeout` (or what is left of the
//!    deadline, if less); a late attempt is dropped and fails with
//!    [`StoreError::Timeout`]. Its outcome is reported to the breaker: only
//!    store failures ([`StoreError::is_store_failure`]) count against the
//!    store. "Not found" (`Ok(None)`) and undecodable data
//!    ([`StoreError::Decode`]) are answers, not failures; nor is the timeout
//!    of a retry the deadline cut to less than half an `attempt_timeout`
//!    (it is counted in `sessionkit_store_timeouts_total` all the same).
//! 4. A **transient** error ([`StoreError::is_transient`]: unavailable,
//!    timeout) is retried, if attempts remain, the backoff delay fits before
//!    the deadline, and the **retry budget** has a token (every call earns a
//!    fraction of a token, every retry spends one: retries add at most that
//!    fraction to the load of a failing store). Other errors are returned as
//!    they are.
//!
//! A wrapped store may bound its calls itself (`RedisStore` gives up after
//! 500 ms unless its `response_timeout` says otherwise): the shorter bound
//! fires first. Keep the store's own bound above
//! `attempt_timeout` so that one number governs.
//!
//! # Retrying writes whose outcome is unknown
//! A timeout or a dropped connection after the command was sent leaves the
//! outcome unknown: the write may have happened. Loads and deletes are safe
//! to repeat. For saves (on by default, [`ResilienceConfigBuilder::retry_saves`]):
//! - **Update** is safe to repeat: stores apply it with a version check and
//!   reapply this request's changes onto the latest data on a conflict (see
//!   [`crate::store::Save::base`]). The decorator names each save it may
//!   repeat with a random [`crate::store::Save::write_id`]; the Redis and
//!   clustered stores keep the ids of a session's last four writes in the
//!   stored record, so a repeated update that finds its own id answers "saved"
//!   without writing, even when another request saved the session between
//!   the attempt that landed (its reply lost) and the repeat (reapplied,
//!   this request's changes would have put back the older value of a field
//!   both changed, and shown again a flash message the other request read).
//!   With more than three writes by others in that window (up to
//!   `max_attempts` attempt timeouts and the backoffs between them) the id
//!   is gone and the repeat merges as before.
//!   A store that keeps no ids (one of your own) merges too.
//! - **Create** repeated after it succeeded fails as an id collision. When a
//!   retried create fails that way, the decorator loads the id: if the stored
//!   session is ours (same id, creation time, owner and data), the save
//!   succeeded and is reported so. Otherwise the error stands.
//! - **Regenerate** repeated after it succeeded finds the old id gone and
//!   reports [`SaveOutcome::Gone`]. The decorator then checks the new id the
//!   same way, and reports the save if the session is there. It checks too
//!   when the last attempt's outcome is unknown (a timeout or a dropped
//!   connection, with retries off or spent): a regenerate that landed has
//!   killed the old id, and an error would leave the client holding it.
//!
//! The check assumes the cookie value of a server-side session is its
//! encoded id (true of every server-side store here, and pinned by the
//! conformance suite); stores sealing the session into the cookie do no I/O
//! on save and never reach it. Turn `retry_saves` off for a store whose
//! saves cannot be repeated safely.
//!
//! A delete repeated after an unknown outcome answers `true` when the retry
//! finds the session gone (most likely the first attempt's doing): the
//! effect is right, and a session someone else removed in between may be
//! counted once more in `on_deleted`. A revoke ([`QueryStore::delete_owner`])
//! keeps what each attempt reported removing ([`StoreError::Partial`]) and
//! reports it all. It lists the owner's sessions first: when an attempt
//! failed with its outcome unknown (it may have run, its reply lost), the
//! listed sessions no attempt reported are reported too (a session removed
//! or handed to another owner by someone else in between may then be
//! reported once too often, as with a retried delete).
//!
//! # Query operations
//! [`QueryStore::by_owner`] (bounded by one owner's sessions) gets the full
//! treatment; [`QueryStore::delete_owner`] is retried but not cut off by a
//! timeout of its own (its store calls have theirs): cancelled part-way, it
//! would lose the list of what it had removed, and their events. Scans (`iter`, `find_by`,
//! `count`, `bulk_delete`) grow with the store: they fail fast while the
//! circuit is open and report their outcome to the breaker, but have no
//! timeout and are not retried (a retry would repeat the whole scan). Nor
//! are they ever the half-open probe: one would hold the probe's slot, and
//! keep every request failing fast, for as long as it ran; while the
//! circuit is half-open they fail fast and a bounded call probes.
//!
//! # Degradation policy at the HTTP edge
//! What clients see while the store is down is decided in [`crate::http`]:
//! - A handler taking `Session<T>` gets no session: the request is answered
//!   by the layer's [`crate::http::ErrorResponder`], by default
//!   `503 Service Unavailable`, `Retry-After: 1`, `Cache-Control: no-store`
//!   and a one-line text body (never an empty 500). With the breaker open
//!   that answer comes at once.
//! - A handler taking `Option<Session<T>>` runs with `None` (anonymous mode)
//!   and its response goes out as it is, without `Set-Cookie`.
//! - A save that fails after the handler ran replaces the handler's response
//!   with the error response and sends no `Set-Cookie`: the client is never
//!   told about state that was not stored.
//! - The client's cookie is never replaced or removed while the store is
//!   down: a failed load is an error, never "no such session", so no
//!   throw-away session is minted over it; once the store is back the same
//!   cookie finds the same session.
//!
//! # Events and metrics
//! Through the `metrics` facade, each labelled `breaker` (the configured
//! name) and, per operation, `op` (`load`, `save`, `delete`, `by_owner`,
//! `delete_owner`, `scan`):
//! `sessionkit_store_retries_total{breaker,op}`,
//! `sessionkit_store_timeouts_total{breaker,op}`,
//! `sessionkit_store_fast_fails_total{breaker,op}`,
//! `sessionkit_retry_budget_exhausted_total{breaker,op}`,
//! `sessionkit_store_saves_reconciled_total{breaker}`,
//! `sessionkit_breaker_state{breaker}` (gauge: 0 closed, 1 half-open, 2 open),
//! `sessionkit_breaker_transitions_total{breaker,from,to}`.
//! `tracing` events carry the operation, error kind and delays, never a
//! session id or data. [`ResilienceConfigBuilder::on_breaker_transition`]
//! registers a callback for state changes.

use std::future::Future;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use backon::Retryable;
use futures_util::stream::{self, BoxStream, StreamExt};
use tokio::time::Instant;

use crate::error::StoreError;
use crate::id::{SessionHandle, SessionId};
use crate::record::{Record, SessionData};
use crate::store::{
    Followed, Predicate, QueryStore, RemovalListener, Removed, Save, SaveKind, SaveOutcome, Store,
};

pub mod breaker;
pub mod clock;
pub mod config;
#[cfg(any(test, feature = "testing"))]
pub mod fault;
mod retry;

pub use breaker::{
    BreakerSettings, BreakerState, BreakerTransition, CircuitBreaker, Permit, TransitionHook,
};
pub use clock::{ManualMonotonicClock, MonotonicClock, TokioClock};
pub use config::{
    ResilienceConfig, ResilienceConfigBuilder, ResilienceConfigError, ResilienceProblem,
};

use retry::{full_jitter_backoff, RetryBudget};

/// A store wrapped with timeouts, retries and a circuit breaker (see the
/// [module docs](self)). Implements [`Store`], and [`QueryStore`] when the
/// wrapped store does. Clones share the breaker and the retry budget.
pub struct Resilient<S> {
    inner: Arc<S>,
    shared: Arc<Guard>,
}

impl<S> Clone for Resilient<S> {
    fn clone(&self) -> Self {
        Resilient {
            inner: self.inner.clone(),
            shared: self.shared.clone(),
        }
    }
}

impl<S> std::fmt::Debug for Resilient<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resilient")
            .field("config", &self.shared.config)
            .field("breaker", &self.shared.breaker.state())
            .finish_non_exhaustive()
    }
}

/// What every call goes through: breaker, budget, timeouts.
struct Guard {
    config: ResilienceConfig,
    breaker: CircuitBreaker,
    budget: RetryBudget,
}

/// How a kind of operation is guarded.
#[derive(Clone, Copy)]
struct Policy {
    op: &'static str,
    retry: bool,
    timeout: bool,
    /// When the operation this call belongs to started, if earlier than the
    /// call (the check after a retried save): the deadline counts from there.
    since: Option<Instant>,
}

impl Policy {
    const fn full(op: &'static str) -> Self {
        Policy {
            op,
            retry: true,
            timeout: true,
            since: None,
        }
    }
    const SCAN: Policy = Policy {
        op: "scan",
        retry: false,
        timeout: false,
        since: None,
    };
}

impl<S> Resilient<S> {
    /// Wraps `inner`.
    pub fn new(inner: S, config: ResilienceConfig) -> Self {
        let breaker = CircuitBreaker::with_parts(
            config.breaker,
            config.clock.clone(),
            config.name.clone(),
            config.on_transition.clone(),
        );
        let budget = RetryBudget::new(config.budget_ratio, config.budget_burst);
        Resilient {
            inner: Arc::new(inner),
            shared: Arc::new(Guard {
                config,
                breaker,
                budget,
            }),
        }
    }

    /// The wrapped store (calls on it bypass the decorator).
    pub fn inner(&self) -> &S {
        &self.inner
    }

    /// The circuit breaker, e.g. to report its state on a health endpoint.
    pub fn breaker(&self) -> &CircuitBreaker {
        &self.shared.breaker
    }

    /// The configuration.
    pub fn config(&self) -> &ResilienceConfig {
        &self.shared.config
    }
}

impl Guard {
    fn count(&self, metric: &'static str, op: &'static str) {
        metrics::counter!(metric, "breaker" => self.config.name.to_string(), "op" => op)
            .increment(1);
    }

    /// Runs `call` (a fresh future per attempt) under the policy.
    async fn run<R, F, Fut>(&self, policy: Policy, mut call: F) -> Result<R, StoreError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<R, StoreError>>,
    {
        let cfg = &self.config;
        // A bound too far away to represent (say `Duration::MAX` for "no
        // overall bound") is no bound, not a panic.
        let deadline = policy
            .timeout
            .then(|| {
                policy
                    .since
                    .unwrap_or_else(Instant::now)
                    .checked_add(cfg.operation_timeout)
            })
            .flatten();
        self.budget.deposit();
        let attempts = if policy.retry { cfg.max_attempts } else { 1 };
        let attempt = || {
            let fut = call();
            self.attempt(policy, deadline, fut)
        };
        attempt
            .retry(full_jitter_backoff(
                cfg.backoff_base,
                cfg.backoff_max,
                attempts,
            ))
            .when(StoreError::is_transient)
            .adjust(|_, next| {
                let delay = next?;
                let resume = Instant::now().checked_add(delay);
                if deadline.is_some_and(|d| resume.is_none_or(|r| r >= d)) {
                    return None;
                }
                if !self.budget.withdraw() {
                    self.count("sessionkit_retry_budget_exhausted_total", policy.op);
                    tracing::debug!(
                        op = policy.op,
                        "retry budget spent; returning the error without retrying"
                    );
                    return None;
                }
                Some(delay)
            })
            .notify(|e: &StoreError, delay: Duration| {
                self.count("sessionkit_store_retries_total", policy.op);
                tracing::debug!(
                    op = policy.op,
                    error = e.kind(),
                    delay_ms = delay.as_millis() as u64,
                    "retrying session store operation"
                );
            })
            .await
    }

    async fn attempt<R>(
        &self,
        policy: Policy,
        deadline: Option<Instant>,
        fut: impl Future<Output = Result<R, StoreError>>,
    ) -> Result<R, StoreError> {
        let op = policy.op;
        // No time left (the check after a save that used it all): the store
        // is not called, and the breaker neither gives a permit nor hears
        // of a failure that says nothing about the store.
        if deadline.is_some_and(|d| d <= Instant::now()) {
            return Err(StoreError::Timeout(self.config.operation_timeout));
        }
        let permit = match self.breaker.try_acquire() {
            // A scan runs unbounded (a large keyspace takes many round
            // trips): as the half-open probe it would hold the only slot,
            // and every request would fail fast, for as long as it ran.
            // Probing is left to bounded calls; the slot goes back unused.
            Ok(p) if p.is_probe() && !policy.timeout => {
                drop(p);
                self.count("sessionkit_store_fast_fails_total", op);
                return Err(StoreError::CircuitOpen);
            }
            Ok(p) => p,
            Err(e) => {
                self.count("sessionkit_store_fast_fails_total", op);
                return Err(e);
            }
        };
        let result = match policy.timeout {
            false => fut.await,
            true => {
                // No deadline here with a bounded policy means an overall
                // bound too far off to represent: each attempt is still
                // bounded (an `operation_timeout` of `Duration::MAX` lifted
                // the attempt timeout too, and a hung store held the
                // breaker's probe slot for good).
                let bound = match deadline {
                    Some(deadline) => self
                        .config
                        .attempt_timeout
                        .min(deadline.saturating_duration_since(Instant::now())),
                    None => self.config.attempt_timeout,
                };
                match tokio::time::timeout(bound, fut).await {
                    Ok(r) => r,
                    Err(_) => {
                        self.count("sessionkit_store_timeouts_total", op);
                        tracing::warn!(
                            op,
                            timeout_ms = bound.as_millis() as u64,
                            "session store attempt timed out"
                        );
                        // Cut to less than half an attempt by the
                        // operation's deadline (a retry that began with
                        // little time left): that says little of the store,
                        // so the breaker does not hear of it (a probe's
                        // slot goes back unused). Full attempts still count.
                        if bound.saturating_mul(2) < self.config.attempt_timeout {
                            drop(permit);
                            return Err(StoreError::Timeout(bound));
                        }
                        Err(StoreError::Timeout(bound))
                    }
                }
            }
        };
        permit.record(&result);
        result
    }
}

impl<S> Resilient<S> {
    /// Runs a delete (`call`, a fresh future per attempt) under the full
    /// policy; also says whether a retry ran (an earlier attempt's outcome
    /// was unknown: it may have deleted what the retry then finds gone).
    async fn retried_delete<R, F, Fut>(&self, mut call: F) -> Result<(R, bool), StoreError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<R, StoreError>>,
    {
        let attempts = AtomicU32::new(0);
        let out = self
            .shared
            .run(Policy::full("delete"), || {
                attempts.fetch_add(1, Ordering::Relaxed);
                call()
            })
            .await?;
        Ok((out, attempts.load(Ordering::Relaxed) > 1))
    }

    /// Whether the store holds `record` as this save wrote it (after a
    /// retried save whose first attempt may have landed). A create must
    /// find exactly its record; a regenerate, the session under its new id
    /// (a fresh random id only this request knows, so whatever is there was
    /// written by its first attempt, which may have merged a concurrent
    /// update into it). `Err` when the store cannot say.
    /// Runs within the save's own operation deadline (`since`: when the save
    /// started), so that the whole save keeps to `operation_timeout`.
    async fn holds<T: SessionData>(
        &self,
        record: &Record<T>,
        kind: SaveKind,
        since: Instant,
    ) -> Result<bool, StoreError>
    where
        S: Store<T>,
    {
        let cookie = record.id.encode();
        let policy = Policy {
            since: Some(since),
            ..Policy::full("load")
        };
        let found = self.shared.run(policy, || self.inner.load(&cookie)).await?;
        Ok(found.is_some_and(|stored| crate::store::is_this_save(&stored, record, kind)))
    }
}

#[async_trait]
impl<T: SessionData, S: Store<T>> Store<T> for Resilient<S> {
    async fn load(&self, cookie_value: &str) -> Result<Option<Record<T>>, StoreError> {
        self.shared
            .run(Policy::full("load"), || self.inner.load(cookie_value))
            .await
    }

    async fn save(&self, save: Save<'_, T>) -> Result<SaveOutcome, StoreError> {
        let (record, kind) = (save.record, save.kind);
        // Named, so that a store keeping write ids answers a repeat of a
        // write that landed as done (see "Retrying writes" above).
        let save = match save.write_id() {
            0 if self.shared.config.retry_saves => save.with_write_id(crate::store::new_write_id()),
            _ => save,
        };
        let policy = Policy {
            retry: self.shared.config.retry_saves,
            ..Policy::full("save")
        };
        let attempts = AtomicU32::new(0);
        let started = Instant::now();
        let result = self
            .shared
            .run(policy, || {
                attempts.fetch_add(1, Ordering::Relaxed);
                self.inner.save(save)
            })
            .await;
        // With a retry, an earlier attempt had an unknown outcome: a
        // collision on create or "gone" on regenerate may be our own write.
        // And a regenerate whose last attempt's outcome is unknown (a
        // timeout, a dropped connection; retries off or spent) may have
        // moved the session already: the old id is then dead, and an error
        // would leave the client holding it, logged out on its next request.
        let retried = attempts.load(Ordering::Relaxed) > 1;
        let maybe_ours = match (&result, kind) {
            (Err(e), SaveKind::Create) if retried => {
                !e.is_transient() && !matches!(e, StoreError::CircuitOpen)
            }
            (Ok(SaveOutcome::Gone), SaveKind::Regenerate { .. }) => retried,
            (Err(e), SaveKind::Regenerate { .. }) => e.is_transient(),
            _ => false,
        };
        if !maybe_ours {
            return result;
        }
        let ours = match self.holds(record, kind, started).await {
            Ok(ours) => ours,
            // A regenerate that may have landed must not answer "gone" (the
            // client would be logged out) when the store cannot say.
            Err(e) if matches!(kind, SaveKind::Regenerate { .. }) => return Err(e),
            Err(_) => false,
        };
        if ours {
            metrics::counter!(
                "sessionkit_store_saves_reconciled_total",
                "breaker" => self.shared.config.name.to_string()
            )
            .increment(1);
            tracing::debug!("a retried save had already been applied by an earlier attempt");
            return Ok(SaveOutcome::Saved(record.id.encode()));
        }
        result
    }

    /// Retried like the other calls. An attempt whose outcome is unknown (a
    /// timeout, a dropped connection) may have removed the session, so when
    /// a retry ran and finds it gone the answer is `true`: a `destroy`
    /// then reports the logout and expires the cookie rather than take the
    /// session for one removed by someone else.
    async fn delete(&self, id: &SessionId) -> Result<bool, StoreError> {
        let (removed, retried) = self.retried_delete(|| self.inner.delete(id)).await?;
        Ok(removed || retried)
    }

    /// Retried as [`Store::delete`] is, with the same answer after a retry
    /// that finds nothing (`Deleted`: most likely the first attempt's doing).
    async fn delete_following(&self, id: &SessionId) -> Result<Followed, StoreError> {
        let (followed, retried) = self
            .retried_delete(|| self.inner.delete_following(id))
            .await?;
        Ok(match followed {
            Followed::Nothing if retried => Followed::Deleted,
            followed => followed,
        })
    }

    /// Forwarded: an answer that needs no I/O cannot time out, and says
    /// nothing about the remote's health, so it bypasses the breaker.
    fn load_now(&self, cookie_value: &str) -> Option<Result<Option<Record<T>>, StoreError>> {
        self.inner.load_now(cookie_value)
    }

    /// Forwarded, like [`Store::load_now`].
    fn save_now(&self, save: Save<'_, T>) -> Option<Result<SaveOutcome, StoreError>> {
        self.inner.save_now(save)
    }

    fn on_removed(&self, listener: RemovalListener) {
        self.inner.on_removed(listener)
    }

    fn holds_sessions(&self) -> bool {
        self.inner.holds_sessions()
    }
}

#[async_trait]
impl<T: SessionData, S: QueryStore<T>> QueryStore<T> for Resilient<S> {
    /// Fails fast (one `CircuitOpen` item) while the circuit is open, and
    /// while it is half-open (a scan has no time bound: as the probe it
    /// would hold the only slot; probing is left to bounded calls, as for
    /// the other scans). Otherwise the wrapped store's stream, without
    /// retries or time bound; its first item is reported to the breaker (an
    /// error that is a store failure counts against the store, a record
    /// shows it working).
    fn iter(&self) -> BoxStream<'_, Result<Record<T, SessionHandle>, StoreError>> {
        let fail_fast = |e: StoreError| {
            self.shared
                .count("sessionkit_store_fast_fails_total", Policy::SCAN.op);
            stream::once(async move { Err(e) }).boxed()
        };
        match self.shared.breaker.try_acquire() {
            Err(e) => fail_fast(e),
            Ok(p) if p.is_probe() => {
                drop(p);
                fail_fast(StoreError::CircuitOpen)
            }
            Ok(permit) => {
                let mut permit = Some(permit);
                self.inner
                    .iter()
                    .inspect(move |item| {
                        if let Some(p) = permit.take() {
                            p.record(item);
                        }
                    })
                    .boxed()
            }
        }
    }

    async fn find_by(
        &self,
        predicate: Predicate<'_, T>,
    ) -> Result<Vec<Record<T, SessionHandle>>, StoreError> {
        self.shared
            .run(Policy::SCAN, || self.inner.find_by(predicate))
            .await
    }

    async fn count(&self) -> Result<usize, StoreError> {
        self.shared.run(Policy::SCAN, || self.inner.count()).await
    }

    async fn bulk_delete(&self, predicate: Predicate<'_, T>) -> Result<Vec<Removed>, StoreError> {
        self.shared
            .run(Policy::SCAN, || self.inner.bulk_delete(predicate))
            .await
    }

    async fn by_owner(&self, owner: &str) -> Result<Vec<Record<T, SessionHandle>>, StoreError> {
        self.shared
            .run(Policy::full("by_owner"), || self.inner.by_owner(owner))
            .await
    }

    /// Retried as [`Store::delete`] is, with the same answer after a retry
    /// that finds nothing (`true`: most likely the first attempt's doing).
    async fn delete_handle(&self, handle: &SessionHandle) -> Result<bool, StoreError> {
        let (removed, retried) = self
            .retried_delete(|| self.inner.delete_handle(handle))
            .await?;
        Ok(removed || retried)
    }

    // `delete_handle_of` is the trait's default on purpose: this decorator's
    // listing (retried), then its `delete_handle` (retried; `true` when an
    // attempt that failed may have deleted). Retried as one call, a failed
    // listing turned the final "not this owner's" into `true`.

    /// Retried like the other bounded calls, but an attempt is not cut off
    /// by `attempt_timeout` (a revoke of many sessions runs several store
    /// calls, each bounded by the store's own timeouts): cancelled part-way,
    /// it would lose the list of what it had removed. What an attempt
    /// removed before it failed ([`StoreError::Partial`]) is kept and
    /// reported with the final answer, so no revoked session goes without
    /// its event. (As a call without a time bound it is never the half-open
    /// probe, like the scans.)
    ///
    /// The owner's sessions are listed first (one bounded call; a revoke
    /// goes on without the list if it fails): an attempt whose whole reply
    /// was lost (it ran, then timed out or lost its connection) reports
    /// nothing, and the retry finds those sessions gone. When an attempt
    /// failed that way, the listed sessions no attempt reported are
    /// reported too, as a retried delete answers `true`.
    async fn delete_owner(&self, owner: &str) -> Result<Vec<Removed>, StoreError> {
        let listed = self.by_owner(owner).await.ok();
        let earlier = parking_lot::Mutex::new(Vec::new());
        let unknown = std::sync::atomic::AtomicBool::new(false);
        let policy = Policy {
            timeout: false,
            ..Policy::full("delete_owner")
        };
        let result = self
            .shared
            .run(policy, || async {
                self.inner.delete_owner(owner).await.map_err(|e| {
                    let (removed, e) = e.take_removed();
                    earlier.lock().extend(removed);
                    if e.is_transient() {
                        unknown.store(true, Ordering::Relaxed);
                    }
                    e
                })
            })
            .await;
        let mut removed = earlier.into_inner();
        match result {
            Ok(rest) => {
                removed.extend(rest);
                if let (true, Some(listed)) = (unknown.into_inner(), listed) {
                    let reported: std::collections::HashSet<SessionHandle> =
                        removed.iter().map(Removed::handle).collect();
                    removed.extend(
                        listed
                            .into_iter()
                            .filter(|r| !reported.contains(&r.id))
                            .map(|r| Removed::new(r.id, r.owner)),
                    );
                }
                Ok(removed)
            }
            Err(e) => Err(e.after_removing(removed)),
        }
    }
}

#[cfg(test)]
mod tests;
