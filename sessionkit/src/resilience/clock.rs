//! The monotonic clock the circuit breaker measures its reset timeout on.
//!
//! Wall-clock time ([`crate::Clock`]) can jump (NTP, a suspended VM); a
//! breaker that stays open "until 12:00:05" could then stay open for hours or
//! not at all. The breaker therefore reads a [`MonotonicClock`]: the real one
//! is [`TokioClock`], tests inject a [`ManualMonotonicClock`] and move it.
//!
//! ```
//! use std::time::Duration;
//! use sessionkit::resilience::{ManualMonotonicClock, MonotonicClock};
//!
//! let clock = ManualMonotonicClock::new();
//! let t0 = clock.now();
//! clock.advance(Duration::from_secs(5));
//! assert_eq!(clock.now() - t0, Duration::from_secs(5));
//! ```

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// A clock that never goes backwards. `now` is the time elapsed since an
/// arbitrary origin fixed when the clock was made; only differences matter.
pub trait MonotonicClock: Send + Sync + 'static {
    /// Time since this clock's origin.
    fn now(&self) -> Duration;
}

/// The real monotonic clock, over [`tokio::time::Instant`] (which is
/// `std::time::Instant` unless a test paused tokio's time, in which case it
/// follows tokio's virtual time, like every timeout and sleep here does).
#[derive(Debug, Clone, Copy)]
pub struct TokioClock {
    origin: tokio::time::Instant,
}

impl TokioClock {
    /// A clock whose origin is now.
    pub fn new() -> Self {
        TokioClock {
            origin: tokio::time::Instant::now(),
        }
    }
}

impl Default for TokioClock {
    fn default() -> Self {
        Self::new()
    }
}

impl MonotonicClock for TokioClock {
    fn now(&self) -> Duration {
        tokio::time::Instant::now().saturating_duration_since(self.origin)
    }
}

/// A monotonic clock that moves only when told to. Clones share the time.
#[derive(Debug, Clone, Default)]
pub struct ManualMonotonicClock(Arc<AtomicU64>);

impl ManualMonotonicClock {
    /// A clock standing at its origin.
    pub fn new() -> Self {
        Self::default()
    }

    /// Moves the clock forward (it cannot move back).
    pub fn advance(&self, by: Duration) {
        let nanos = u64::try_from(by.as_nanos()).unwrap_or(u64::MAX);
        // Saturate rather than wrap: a clock that wrapped would go backwards.
        let _ = self
            .0
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |t| {
                Some(t.saturating_add(nanos))
            });
    }
}

impl MonotonicClock for ManualMonotonicClock {
    fn now(&self) -> Duration {
        Duration::from_nanos(self.0.load(Ordering::SeqCst))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_saturates_instead_of_wrapping() {
        let c = ManualMonotonicClock::new();
        c.advance(Duration::MAX);
        let before = c.now();
        c.advance(Duration::from_secs(1));
        assert_eq!(c.now(), before);
    }

    #[test]
    fn clones_of_a_manual_clock_share_the_time() {
        let c = ManualMonotonicClock::new();
        let d = c.clone();
        c.advance(Duration::from_millis(3));
        assert_eq!(d.now(), Duration::from_millis(3));
    }
}
