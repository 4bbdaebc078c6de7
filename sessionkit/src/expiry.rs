//! Time: the injectable [`Clock`] and the expiry rules.
//!
//! Every session has two deadlines, both kept in the record and checked on
//! every load, whatever the store's own TTL says:
//! - the **idle deadline**, `idle_timeout` after the last recorded activity;
//! - the **absolute deadline**, `absolute_lifetime` after creation, never moved.
//!
//! With sliding expiration, activity moves the idle deadline. Every request
//! that writes the session records its activity (the write happens anyway).
//! To avoid a store write on every *read*, a read records activity only once
//! less than half of the idle window is left ([`ExpiryPolicy::needs_touch`]):
//! after a read-only request a session lives at least `idle_timeout / 2` and
//! at most `idle_timeout`. This is the price of one store command per read.
//!
//! A server-side store forgets a session at its idle deadline, so a request
//! still running then would have its save refused and its changes dropped.
//! A load that finds less than [`ExpiryPolicy::request_allowance`] left
//! (default 60 s, at most half the idle window) therefore records the
//! activity at once, before the handler runs: one extra store write, only
//! for sessions used again just before they would have expired
//! ([`ExpiryPolicy::touch_on_load`]). Set the allowance above your slowest
//! request. The absolute deadline, and the idle deadline without sliding
//! expiration, cannot move: a request running across them loses its changes
//! (counted in `sessionkit_saves_dropped_total`).
//!
//! ```
//! use std::time::Duration;
//! use sessionkit::{Clock, ManualClock};
//!
//! let clock = ManualClock::new();
//! let t0 = clock.now();
//! clock.advance(Duration::from_secs(60));
//! assert_eq!(clock.now().duration_since(t0).unwrap(), Duration::from_secs(60));
//! ```

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;

/// A source of wall-clock time. Inject [`ManualClock`] in tests to move time.
pub trait Clock: Send + Sync + 'static {
    /// The current time.
    fn now(&self) -> SystemTime;
}

impl Clock for Arc<dyn Clock> {
    fn now(&self) -> SystemTime {
        (**self).now()
    }
}

/// The real clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// A clock that only moves when told to. Clones share the same time.
#[derive(Debug, Clone)]
pub struct ManualClock(Arc<Mutex<SystemTime>>);

impl ManualClock {
    /// A clock standing at the current real time.
    pub fn new() -> Self {
        ManualClock(Arc::new(Mutex::new(SystemTime::now())))
    }
    /// Moves the clock forward.
    pub fn advance(&self, by: Duration) {
        let mut t = self.0.lock();
        *t = later(*t, by);
    }
    /// Sets the clock to a given time.
    pub fn set(&self, to: SystemTime) {
        *self.0.lock() = to;
    }
}

impl Default for ManualClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for ManualClock {
    fn now(&self) -> SystemTime {
        *self.0.lock()
    }
}

/// Which deadline ended a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpiryKind {
    /// No activity within the idle timeout.
    Idle,
    /// The absolute lifetime since creation is over.
    Absolute,
}

/// The expiry settings, validated by [`crate::ConfigBuilder`].
#[derive(Debug, Clone, Copy)]
pub struct ExpiryPolicy {
    /// Time without activity after which a session is dead.
    pub idle_timeout: Duration,
    /// Time after creation after which a session is dead, whatever the activity.
    pub absolute_lifetime: Duration,
    /// Whether activity moves the idle deadline.
    pub sliding: bool,
    /// How long a request may run after loading its session: a load with
    /// less than this left before the idle deadline records the activity
    /// before the handler runs (see [`ExpiryPolicy::touch_on_load`]).
    /// Capped at half the idle timeout.
    pub request_allowance: Duration,
}

impl Default for ExpiryPolicy {
    fn default() -> Self {
        ExpiryPolicy {
            idle_timeout: Duration::from_secs(30 * 60),
            absolute_lifetime: Duration::from_secs(12 * 60 * 60),
            sliding: true,
            request_allowance: Duration::from_secs(60),
        }
    }
}

impl ExpiryPolicy {
    /// The idle deadline for activity at `now`, never past the absolute deadline.
    pub fn idle_deadline(&self, now: SystemTime, absolute: SystemTime) -> SystemTime {
        later(now, self.idle_timeout).min(absolute)
    }

    /// Whether a session whose idle deadline is `idle_deadline` should record
    /// activity at `now` (sliding only; less than half the window left).
    pub fn needs_touch(
        &self,
        now: SystemTime,
        idle_deadline: SystemTime,
        absolute: SystemTime,
    ) -> bool {
        self.slides_within(now, idle_deadline, absolute, self.idle_timeout / 2)
    }

    /// Whether, with sliding expiration and an idle deadline the absolute
    /// one does not cap, less than `window` is left before that deadline at
    /// `now` (`false` once it passed: the load path handles that).
    fn slides_within(
        &self,
        now: SystemTime,
        idle_deadline: SystemTime,
        absolute: SystemTime,
        window: Duration,
    ) -> bool {
        self.sliding
            && idle_deadline < absolute
            && idle_deadline
                .duration_since(now)
                .is_ok_and(|left| left < window)
    }

    /// Whether a session loaded at `now` should record its activity before
    /// the request's handler runs rather than after: sliding only, with less
    /// than [`ExpiryPolicy::request_allowance`] (at most half the idle
    /// window) left before an idle deadline that the absolute one does not
    /// cap. A server-side store would refuse the request's save, had the
    /// deadline passed while the handler ran.
    ///
    /// ```
    /// use std::time::{Duration, SystemTime};
    /// use sessionkit::expiry::ExpiryPolicy;
    ///
    /// let policy = ExpiryPolicy::default(); // 30 min idle, 60 s allowance
    /// let now = SystemTime::now();
    /// let absolute = now + Duration::from_secs(3600);
    /// let soon = now + Duration::from_secs(20);
    /// assert!(policy.touch_on_load(now, soon, absolute));
    /// let later = now + Duration::from_secs(300);
    /// assert!(!policy.touch_on_load(now, later, absolute));
    /// ```
    pub fn touch_on_load(
        &self,
        now: SystemTime,
        idle_deadline: SystemTime,
        absolute: SystemTime,
    ) -> bool {
        let window = self.request_allowance.min(self.idle_timeout / 2);
        self.slides_within(now, idle_deadline, absolute, window)
    }
}

/// `t + d`, saturating at the latest time a record can carry instead of
/// panicking: [`crate::Config`] caps its durations, but an
/// [`ExpiryPolicy`] built by hand or a [`Clock`] far in the future could
/// overflow `SystemTime`.
pub(crate) fn later(t: SystemTime, d: Duration) -> SystemTime {
    t.checked_add(d)
        .unwrap_or_else(|| from_millis(u64::MAX).max(t))
}

/// Milliseconds since the Unix epoch, saturating (times before 1970 are 0).
pub(crate) fn to_millis(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis().min(u64::MAX as u128) as u64)
        .unwrap_or(0)
}

/// The inverse of [`to_millis`], saturating instead of overflowing.
pub(crate) fn from_millis(ms: u64) -> SystemTime {
    UNIX_EPOCH
        .checked_add(Duration::from_millis(ms))
        .unwrap_or(UNIX_EPOCH + Duration::from_secs(u32::MAX as u64))
}

/// Serde adapter: `SystemTime` as integer milliseconds since the epoch.
pub(crate) mod millis {
    use super::*;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(to_millis(*t))
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<SystemTime, D::Error> {
        Ok(from_millis(u64::deserialize(d)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn touch_is_needed_only_in_the_second_half_of_the_idle_window() {
        let p = ExpiryPolicy {
            idle_timeout: Duration::from_secs(100),
            absolute_lifetime: Duration::from_secs(1000),
            sliding: true,
            ..ExpiryPolicy::default()
        };
        let t0 = SystemTime::now();
        let abs = t0 + p.absolute_lifetime;
        let idle = p.idle_deadline(t0, abs);
        assert!(!p.needs_touch(t0 + Duration::from_secs(40), idle, abs));
        assert!(p.needs_touch(t0 + Duration::from_secs(60), idle, abs));
        let fixed = ExpiryPolicy {
            sliding: false,
            ..p
        };
        assert!(!fixed.needs_touch(t0 + Duration::from_secs(60), idle, abs));
    }

    #[test]
    fn durations_past_what_a_system_time_holds_saturate_instead_of_panicking() {
        let huge = ExpiryPolicy {
            idle_timeout: Duration::MAX,
            absolute_lifetime: Duration::MAX,
            ..ExpiryPolicy::default()
        };
        let t0 = SystemTime::now();
        let abs = t0 + Duration::from_secs(60);
        assert_eq!(huge.idle_deadline(t0, abs), abs);
        let r = crate::Record::new(crate::SessionId::generate(), (), t0, &huge);
        assert!(r.absolute_deadline > t0 && r.idle_deadline > t0);
        assert_eq!(r.expired(t0), None);
        let clock = ManualClock::new();
        clock.advance(Duration::MAX);
        assert!(clock.now() > t0);
    }

    #[test]
    fn idle_deadline_never_passes_the_absolute_deadline() {
        let p = ExpiryPolicy::default();
        let t0 = SystemTime::now();
        assert_eq!(
            p.idle_deadline(t0, t0 + Duration::from_secs(5)),
            t0 + Duration::from_secs(5)
        );
    }

    #[test]
    fn millis_round_trip_and_saturate() {
        let t = from_millis(1_700_000_000_123);
        assert_eq!(to_millis(t), 1_700_000_000_123);
        let _ = from_millis(u64::MAX); // no panic
    }
}
