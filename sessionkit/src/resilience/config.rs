//! [`ResilienceConfig`]: the numbers of a [`Resilient`](crate::resilience::Resilient)
//! store, validated once.
//!
//! ```
//! use std::time::Duration;
//! use sessionkit::resilience::{ResilienceConfig, ResilienceProblem};
//!
//! let config = ResilienceConfig::builder()
//!     .operation_timeout(Duration::from_millis(500))
//!     .max_attempts(3)
//!     .failure_threshold(5)
//!     .build()
//!     .unwrap();
//! assert_eq!(config.max_attempts(), 3);
//!
//! let err = ResilienceConfig::builder().max_attempts(0).half_open_probes(0).build().unwrap_err();
//! assert_eq!(err.problems().len(), 2);
//! ```

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::resilience::breaker::{BreakerSettings, BreakerTransition, TransitionHook};
use crate::resilience::clock::{MonotonicClock, TokioClock};

/// A validated resilience configuration. Build it with [`ResilienceConfig::builder`].
#[derive(Clone)]
pub struct ResilienceConfig {
    pub(crate) name: Arc<str>,
    pub(crate) attempt_timeout: Duration,
    pub(crate) operation_timeout: Duration,
    pub(crate) max_attempts: u32,
    pub(crate) backoff_base: Duration,
    pub(crate) backoff_max: Duration,
    pub(crate) budget_ratio: f64,
    pub(crate) budget_burst: u32,
    pub(crate) retry_saves: bool,
    pub(crate) breaker: BreakerSettings,
    pub(crate) clock: Arc<dyn MonotonicClock>,
    pub(crate) on_transition: Option<TransitionHook>,
}

impl fmt::Debug for ResilienceConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResilienceConfig")
            .field("name", &self.name)
            .field("attempt_timeout", &self.attempt_timeout)
            .field("operation_timeout", &self.operation_timeout)
            .field("max_attempts", &self.max_attempts)
            .field("backoff_base", &self.backoff_base)
            .field("backoff_max", &self.backoff_max)
            .field("budget_ratio", &self.budget_ratio)
            .field("budget_burst", &self.budget_burst)
            .field("retry_saves", &self.retry_saves)
            .field("breaker", &self.breaker)
            .field("on_transition", &self.on_transition.is_some())
            .finish()
    }
}

impl Default for ResilienceConfig {
    fn default() -> Self {
        ResilienceConfig::builder()
            .build()
            .expect("the defaults are valid")
    }
}

impl ResilienceConfig {
    /// A builder with the defaults: 250 ms per attempt, 1 s per operation,
    /// 3 attempts, backoff from 10 ms up to 200 ms with full jitter, a retry
    /// budget of 10 % of calls plus a burst of 10, and a breaker that opens
    /// after 5 failures in a row, probes after 5 s with 1 probe.
    pub fn builder() -> ResilienceConfigBuilder {
        ResilienceConfigBuilder::default()
    }
    /// The name used as the `breaker` label of metrics and in logs.
    pub fn name(&self) -> &str {
        &self.name
    }
    /// The bound of one attempt.
    pub fn attempt_timeout(&self) -> Duration {
        self.attempt_timeout
    }
    /// The bound of one operation, retries and backoff included.
    pub fn operation_timeout(&self) -> Duration {
        self.operation_timeout
    }
    /// Attempts per operation, the first included.
    pub fn max_attempts(&self) -> u32 {
        self.max_attempts
    }
    /// Whether saves are retried (see the module docs of [`crate::resilience`]).
    pub fn retry_saves(&self) -> bool {
        self.retry_saves
    }
    /// The breaker's numbers.
    pub fn breaker(&self) -> &BreakerSettings {
        &self.breaker
    }
}

/// The longest `reset_timeout` accepted: a day.
const MAX_RESET_TIMEOUT: Duration = Duration::from_secs(86_400);

/// The longest backoff cap accepted: a minute. A revoke has no operation
/// deadline (see [`crate::resilience`]), so a larger cap could hold it for
/// hours between attempts; for bounded calls a cap past the operation
/// timeout only means no retry.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// The most probes half-open lets through at once: past this, "half-open"
/// is the full load on a store just recovering.
const MAX_HALF_OPEN_PROBES: u32 = 1000;

/// One thing wrong with a [`ResilienceConfig`].
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ResilienceProblem {
    /// A duration that must be positive is zero.
    #[error("{0} must be greater than zero")]
    ZeroDuration(&'static str),
    /// A count that must be at least 1 is zero.
    #[error("{0} must be at least 1")]
    ZeroCount(&'static str),
    /// One attempt may last longer than the whole operation.
    #[error("attempt_timeout ({attempt:?}) is longer than operation_timeout ({operation:?})")]
    AttemptLongerThanOperation {
        /// The attempt timeout.
        attempt: Duration,
        /// The operation timeout.
        operation: Duration,
    },
    /// The first backoff delay is longer than the cap.
    #[error("backoff base ({base:?}) is longer than its maximum ({max:?})")]
    BackoffBaseOverMax {
        /// The first delay.
        base: Duration,
        /// The cap.
        max: Duration,
    },
    /// A duration is longer than makes sense for it (a `reset_timeout`
    /// past a day would keep a tripped circuit open until a restart: there
    /// is no other way to close it).
    #[error("{0} must be at most {1:?}")]
    TooLong(&'static str, Duration),
    /// A count is larger than makes sense for it.
    #[error("{0} must be at most {1}")]
    TooMany(&'static str, u32),
    /// The retry budget ratio is not a number between 0 and 1.
    #[error("retry budget ratio {0} must be between 0.0 and 1.0")]
    BudgetRatio(f64),
    /// The name is empty or too long to be a metrics label.
    #[error("breaker name must be 1 to 64 printable ASCII characters")]
    Name,
}

/// Every problem found in a [`ResilienceConfig`], reported together.
#[derive(Debug, Clone, PartialEq)]
pub struct ResilienceConfigError {
    problems: Vec<ResilienceProblem>,
}

impl ResilienceConfigError {
    /// The problems, in the order they were found.
    pub fn problems(&self) -> &[ResilienceProblem] {
        &self.problems
    }
}

impl fmt::Display for ResilienceConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid resilience configuration:")?;
        for p in &self.problems {
            write!(f, "\n  - {p}")?;
        }
        Ok(())
    }
}
impl std::error::Error for ResilienceConfigError {}

/// Builder for [`ResilienceConfig`]; methods consume and return the builder.
#[must_use = "call .build() to get a ResilienceConfig"]
pub struct ResilienceConfigBuilder {
    name: String,
    attempt_timeout: Duration,
    operation_timeout: Duration,
    max_attempts: u32,
    backoff_base: Duration,
    backoff_max: Duration,
    budget_ratio: f64,
    budget_burst: u32,
    retry_saves: bool,
    breaker: BreakerSettings,
    clock: Arc<dyn MonotonicClock>,
    on_transition: Option<TransitionHook>,
}

impl Default for ResilienceConfigBuilder {
    fn default() -> Self {
        ResilienceConfigBuilder {
            name: "store".into(),
            attempt_timeout: Duration::from_millis(250),
            operation_timeout: Duration::from_secs(1),
            max_attempts: 3,
            backoff_base: Duration::from_millis(10),
            backoff_max: Duration::from_millis(200),
            budget_ratio: 0.1,
            budget_burst: 10,
            retry_saves: true,
            breaker: BreakerSettings {
                failure_threshold: 5,
                reset_timeout: Duration::from_secs(5),
                half_open_probes: 1,
            },
            clock: Arc::new(TokioClock::new()),
            on_transition: None,
        }
    }
}

impl ResilienceConfigBuilder {
    /// Names this store in metrics (`breaker` label) and logs. Default `store`.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }
    /// The bound of one attempt; a slower attempt fails with
    /// [`crate::StoreError::Timeout`] (and may be retried).
    pub fn attempt_timeout(mut self, d: Duration) -> Self {
        self.attempt_timeout = d;
        self
    }
    /// The bound of a whole operation, every attempt and backoff included:
    /// no load, save, delete or owner listing made through the decorator
    /// takes longer. Scans (`iter`, `find_by`, `count`, `bulk_delete`) and
    /// revokes (`delete_owner`) are not cut off (see [`crate::resilience`]).
    pub fn operation_timeout(mut self, d: Duration) -> Self {
        self.operation_timeout = d;
        self
    }
    /// Attempts per operation, the first included (1 = no retry).
    pub fn max_attempts(mut self, n: u32) -> Self {
        self.max_attempts = n;
        self
    }
    /// Exponential backoff between attempts: the n-th retry waits a random
    /// time between zero and `min(max, base × 2ⁿ⁻¹)` ("full jitter"). Both
    /// must be above zero, and `max` at most a minute.
    pub fn backoff(mut self, base: Duration, max: Duration) -> Self {
        self.backoff_base = base;
        self.backoff_max = max;
        self
    }
    /// The retry budget: every operation earns `ratio` of a retry token, up
    /// to `burst` tokens (at least one, so that a `ratio` above zero can
    /// earn a retry), and every retry spends one; with no token left,
    /// errors are returned without retrying. Retries thus add at most
    /// `ratio` × the call rate (plus the burst) to the load of a failing store.
    pub fn retry_budget(mut self, ratio: f64, burst: u32) -> Self {
        self.budget_ratio = ratio;
        self.budget_burst = burst;
        self
    }
    /// Whether saves are retried after a transient error (default yes; see
    /// the policy in [`crate::resilience`]). Turn it off for a store whose
    /// saves are not safe to repeat.
    pub fn retry_saves(mut self, on: bool) -> Self {
        self.retry_saves = on;
        self
    }
    /// Store failures in a row that open the circuit.
    pub fn failure_threshold(mut self, n: u32) -> Self {
        self.breaker.failure_threshold = n;
        self
    }
    /// How long the circuit stays open before it lets probes through (at
    /// most a day).
    pub fn reset_timeout(mut self, d: Duration) -> Self {
        self.breaker.reset_timeout = d;
        self
    }
    /// How many probe calls half-open lets through; all must succeed to
    /// close. At most 1000.
    pub fn half_open_probes(mut self, n: u32) -> Self {
        self.breaker.half_open_probes = n;
        self
    }
    /// The clock the breaker's reset timeout is measured on (default
    /// [`TokioClock`]); inject a [`crate::resilience::ManualMonotonicClock`] in tests.
    pub fn clock(mut self, clock: impl MonotonicClock) -> Self {
        self.clock = Arc::new(clock);
        self
    }
    /// Called on every breaker state change (after metrics and logs).
    pub fn on_breaker_transition(
        mut self,
        f: impl Fn(&BreakerTransition) + Send + Sync + 'static,
    ) -> Self {
        self.on_transition = Some(Arc::new(f));
        self
    }

    /// Validates everything and returns the configuration, or every problem found.
    pub fn build(self) -> Result<ResilienceConfig, ResilienceConfigError> {
        let mut problems = Vec::new();
        if self.name.is_empty()
            || self.name.len() > 64
            || !self.name.bytes().all(|b| b.is_ascii_graphic())
        {
            problems.push(ResilienceProblem::Name);
        }
        for (d, what) in [
            (self.attempt_timeout, "attempt_timeout"),
            (self.operation_timeout, "operation_timeout"),
            (self.breaker.reset_timeout, "reset_timeout"),
            (self.backoff_max, "backoff maximum"),
            // Zero would make every delay zero (base × 2ⁿ), whatever the
            // maximum: retries back to back.
            (self.backoff_base, "backoff base"),
        ] {
            if d.is_zero() {
                problems.push(ResilienceProblem::ZeroDuration(what));
            }
        }
        for (n, what) in [
            (self.max_attempts, "max_attempts"),
            (self.breaker.failure_threshold, "failure_threshold"),
            (self.breaker.half_open_probes, "half_open_probes"),
        ] {
            if n == 0 {
                problems.push(ResilienceProblem::ZeroCount(what));
            }
        }
        if self.breaker.reset_timeout > MAX_RESET_TIMEOUT {
            problems.push(ResilienceProblem::TooLong(
                "reset_timeout",
                MAX_RESET_TIMEOUT,
            ));
        }
        if self.backoff_max > MAX_BACKOFF {
            problems.push(ResilienceProblem::TooLong("backoff maximum", MAX_BACKOFF));
        }
        if self.breaker.half_open_probes > MAX_HALF_OPEN_PROBES {
            problems.push(ResilienceProblem::TooMany(
                "half_open_probes",
                MAX_HALF_OPEN_PROBES,
            ));
        }
        if self.attempt_timeout > self.operation_timeout {
            problems.push(ResilienceProblem::AttemptLongerThanOperation {
                attempt: self.attempt_timeout,
                operation: self.operation_timeout,
            });
        }
        if self.backoff_base > self.backoff_max {
            problems.push(ResilienceProblem::BackoffBaseOverMax {
                base: self.backoff_base,
                max: self.backoff_max,
            });
        }
        if !(0.0..=1.0).contains(&self.budget_ratio) {
            problems.push(ResilienceProblem::BudgetRatio(self.budget_ratio));
        }
        if !problems.is_empty() {
            return Err(ResilienceConfigError { problems });
        }
        Ok(ResilienceConfig {
            name: self.name.into(),
            attempt_timeout: self.attempt_timeout,
            operation_timeout: self.operation_timeout,
            max_attempts: self.max_attempts,
            backoff_base: self.backoff_base,
            backoff_max: self.backoff_max,
            budget_ratio: self.budget_ratio,
            budget_burst: self.budget_burst,
            retry_saves: self.retry_saves,
            breaker: self.breaker,
            clock: self.clock,
            on_transition: self.on_transition,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_are_valid() {
        let c = ResilienceConfig::default();
        assert!(c.attempt_timeout() <= c.operation_timeout());
        assert_eq!(c.name(), "store");
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let err = ResilienceConfig::builder()
            .name("")
            .attempt_timeout(Duration::from_secs(2))
            .operation_timeout(Duration::from_secs(1))
            .max_attempts(0)
            .failure_threshold(0)
            .half_open_probes(0)
            .reset_timeout(Duration::ZERO)
            .backoff(Duration::from_secs(1), Duration::from_millis(10))
            .retry_budget(f64::NAN, 1)
            .build()
            .unwrap_err();
        let p = err.problems();
        assert!(p.contains(&ResilienceProblem::Name));
        assert!(p.contains(&ResilienceProblem::ZeroCount("max_attempts")));
        assert!(p.contains(&ResilienceProblem::ZeroCount("failure_threshold")));
        assert!(p.contains(&ResilienceProblem::ZeroCount("half_open_probes")));
        assert!(p.contains(&ResilienceProblem::ZeroDuration("reset_timeout")));
        assert!(p
            .iter()
            .any(|p| matches!(p, ResilienceProblem::AttemptLongerThanOperation { .. })));
        assert!(p
            .iter()
            .any(|p| matches!(p, ResilienceProblem::BackoffBaseOverMax { .. })));
        assert!(p
            .iter()
            .any(|p| matches!(p, ResilienceProblem::BudgetRatio(r) if r.is_nan())));
        let text = err.to_string();
        assert!(text.contains("max_attempts must be at least 1"), "{text}");
    }

    #[test]
    fn hostile_names_and_ratios_are_rejected() {
        for name in ["a b", "x\n", "é", &"n".repeat(65)] {
            assert!(
                ResilienceConfig::builder().name(name).build().is_err(),
                "{name:?}"
            );
        }
        for r in [-0.1, 1.5, f64::INFINITY, f64::NEG_INFINITY] {
            assert!(ResilienceConfig::builder()
                .retry_budget(r, 1)
                .build()
                .is_err());
        }
        assert!(ResilienceConfig::builder()
            .retry_budget(0.0, 0)
            .build()
            .is_ok());
    }

    #[test]
    fn settings_that_disable_recovery_or_backoff_are_rejected() {
        let err = ResilienceConfig::builder()
            .reset_timeout(Duration::MAX)
            .backoff(Duration::ZERO, Duration::from_millis(200))
            .build()
            .unwrap_err();
        let p = err.problems();
        assert!(p.contains(&ResilienceProblem::TooLong(
            "reset_timeout",
            MAX_RESET_TIMEOUT
        )));
        assert!(p.contains(&ResilienceProblem::ZeroDuration("backoff base")));
        assert!(ResilienceConfig::builder()
            .reset_timeout(MAX_RESET_TIMEOUT)
            .build()
            .is_ok());
    }

    #[test]
    fn a_backoff_of_hours_and_a_flood_of_probes_are_rejected() {
        let err = ResilienceConfig::builder()
            .backoff(Duration::from_secs(1), Duration::from_secs(86_400))
            .half_open_probes(u32::MAX)
            .build()
            .unwrap_err();
        let p = err.problems();
        assert!(p.contains(&ResilienceProblem::TooLong("backoff maximum", MAX_BACKOFF)));
        assert!(p.contains(&ResilienceProblem::TooMany(
            "half_open_probes",
            MAX_HALF_OPEN_PROBES
        )));
        assert!(ResilienceConfig::builder()
            .backoff(Duration::from_secs(1), MAX_BACKOFF)
            .half_open_probes(MAX_HALF_OPEN_PROBES)
            .build()
            .is_ok());
    }
}
