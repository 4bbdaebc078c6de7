//! Retry pieces: the full-jitter backoff (over `backon`'s exponential one)
//! and the retry budget that keeps retries from multiplying the load on a
//! store that is already struggling.
//!
//! `backon` drives the retry loop and supplies the exponential sequence; its
//! own jitter adds a random part *on top of* each delay (`[d, 2d)`), while we
//! want "full jitter" (`[0, d]`), which spreads the retries of many clients
//! that failed at the same moment best. So we take its un-jittered sequence
//! and draw each delay uniformly below it.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use parking_lot::Mutex;

/// Delays for retries `1..max_attempts`: retry n waits uniformly in
/// `[0, min(max, base × 2ⁿ⁻¹)]`.
pub(crate) fn full_jitter_backoff(
    base: Duration,
    max: Duration,
    max_attempts: u32,
) -> impl backon::Backoff {
    ExponentialBuilder::default()
        .with_min_delay(base)
        .with_max_delay(max)
        .with_factor(2.0)
        .with_max_times(max_attempts.saturating_sub(1) as usize)
        .build()
        .map(full_jitter as fn(Duration) -> Duration)
}

fn full_jitter(ceiling: Duration) -> Duration {
    let nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
    Duration::from_nanos(fastrand::u64(0..=nanos))
}

/// A token bucket filled by calls and drained by retries.
#[derive(Debug)]
pub(crate) struct RetryBudget {
    ratio: f64,
    burst: f64,
    tokens: Mutex<f64>,
}

impl RetryBudget {
    /// A full bucket of `burst` tokens; each call adds `ratio`.
    pub(crate) fn new(ratio: f64, burst: u32) -> Self {
        RetryBudget {
            ratio,
            burst: f64::from(burst),
            tokens: Mutex::new(f64::from(burst)),
        }
    }

    /// A call was made: earn `ratio` of a token.
    pub(crate) fn deposit(&self) {
        let mut t = self.tokens.lock();
        *t = (*t + self.ratio).min(self.burst.max(1.0));
    }

    /// Takes one token for a retry; `false` when the budget is spent.
    pub(crate) fn withdraw(&self) -> bool {
        let mut t = self.tokens.lock();
        if *t >= 1.0 {
            *t -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_exponentially_under_full_jitter_and_stops_after_the_last_attempt() {
        let base = Duration::from_millis(10);
        let max = Duration::from_millis(50);
        for _ in 0..200 {
            let delays: Vec<_> = full_jitter_backoff(base, max, 5).collect();
            assert_eq!(delays.len(), 4, "5 attempts = 4 retries");
            let ceilings = [10, 20, 40, 50].map(Duration::from_millis);
            for (d, c) in delays.iter().zip(ceilings) {
                assert!(*d <= c, "{d:?} over {c:?}");
            }
        }
        assert_eq!(full_jitter_backoff(base, max, 1).count(), 0);
    }

    #[test]
    fn full_jitter_reaches_both_ends_of_its_range() {
        let c = Duration::from_millis(100);
        let draws: Vec<_> = (0..2000).map(|_| full_jitter(c)).collect();
        assert!(draws.iter().any(|d| *d < c / 10));
        assert!(draws.iter().any(|d| *d > c * 9 / 10));
        assert_eq!(full_jitter(Duration::ZERO), Duration::ZERO);
    }

    #[test]
    fn the_budget_allows_the_burst_then_only_the_earned_ratio() {
        let b = RetryBudget::new(0.5, 2);
        assert!(b.withdraw());
        assert!(b.withdraw());
        assert!(!b.withdraw(), "burst spent");
        b.deposit();
        assert!(!b.withdraw(), "half a token is not a retry");
        b.deposit();
        assert!(b.withdraw());
        for _ in 0..100 {
            b.deposit();
        }
        assert!(b.withdraw() && b.withdraw());
        assert!(!b.withdraw(), "the bucket never holds more than the burst");
    }

    #[test]
    fn a_zero_budget_never_retries() {
        let b = RetryBudget::new(0.0, 0);
        for _ in 0..10 {
            b.deposit();
        }
        assert!(!b.withdraw());
    }
}
