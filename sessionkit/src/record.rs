//! [`Record<T>`]: one session as a store keeps it.

use std::fmt;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::expiry::{later, millis, ExpiryKind, ExpiryPolicy};
use crate::flash::FlashMessage;
use crate::id::{SessionHandle, SessionId};

/// Blanket trait for the application's own session data: derive
/// `Serialize, Deserialize, Default, Clone` on a struct and it qualifies.
///
/// ```
/// #[derive(serde::Serialize, serde::Deserialize, Default, Clone)]
/// struct MyData { user_id: Option<u64>, visits: u32 }
/// fn takes<T: sessionkit::SessionData>() {}
/// takes::<MyData>();
/// ```
pub trait SessionData:
    Serialize + for<'de> Deserialize<'de> + Default + Clone + Send + Sync + 'static
{
}
impl<T> SessionData for T where
    T: Serialize + for<'de> Deserialize<'de> + Default + Clone + Send + Sync + 'static
{
}

/// One session: the typed data plus everything needed to enforce expiry,
/// deliver flash messages, index by owner and detect concurrent updates.
///
/// `I` is what names the session: its [`SessionId`] for a session loaded
/// by its cookie, its [`SessionHandle`] for one found by a listing
/// ([`crate::store::QueryStore`]), which a store may not be able to turn
/// back into the id (a Redis store keeps only the handle).
///
/// `Debug` prints only metadata: neither the data nor the full id.
#[derive(Clone, Serialize, Deserialize)]
#[serde(bound(
    serialize = "T: Serialize, I: Serialize",
    deserialize = "T: Deserialize<'de>, I: Deserialize<'de>"
))]
pub struct Record<T, I = SessionId> {
    /// What names the session: the id (what the cookie carries for
    /// server-side stores), or in a listing its [`SessionHandle`].
    pub id: I,
    /// The application's data.
    pub data: T,
    /// Flash messages waiting for a later request.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub flash: Vec<FlashMessage>,
    /// When the session was created.
    #[serde(with = "millis")]
    pub created_at: SystemTime,
    /// When activity was last recorded.
    #[serde(with = "millis")]
    pub last_access: SystemTime,
    /// Dead after this instant unless activity moves it (sliding expiration).
    #[serde(with = "millis")]
    pub idle_deadline: SystemTime,
    /// Dead after this instant, whatever the activity.
    #[serde(with = "millis")]
    pub absolute_deadline: SystemTime,
    /// The owner (usually a user id) for the per-owner index; `None` for anonymous sessions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// Keyed fingerprint of the client the session is bound to (see
    /// [`crate::binding`]); `None` when binding is off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub binding: Option<String>,
    /// Incremented by the store on every successful write; 0 = never written.
    #[serde(default)]
    pub version: u64,
    /// The ids of the session's last writes ([`crate::store::Save::write_id`]),
    /// newest first, as the Redis and clustered stores keep them: a repeat
    /// of a write that landed finds its id here. Crate-private (build a
    /// record with [`Record::new`]); other stores keep none.
    #[serde(skip)]
    pub(crate) writes: WriteIds,
}

/// The ids of a record's last writes, newest first; 0 marks an empty slot.
/// Inline: boxed, every Redis load paid an allocation for them (measured
/// with callgrind), where 32 more bytes per move of a record cost a few
/// instructions.
#[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
pub(crate) struct WriteIds(pub(crate) [u64; WRITE_IDS]);

/// How many write ids a record keeps: a repeated write is recognised while
/// fewer than this many other writes landed between its first attempt and
/// its repeat (the resilience layer repeats within one attempt timeout and
/// a backoff).
pub(crate) const WRITE_IDS: usize = 4;

#[cfg_attr(not(feature = "redis"), allow(dead_code))] // only the Redis store keeps them
impl WriteIds {
    /// Ids from an array, newest first (0 for empty slots).
    pub(crate) fn from_array(ids: [u64; WRITE_IDS]) -> WriteIds {
        WriteIds(ids)
    }

    /// Whether `id` (non-zero) is among them.
    pub(crate) fn contains(&self, id: u64) -> bool {
        id != 0 && self.0.contains(&id)
    }

    /// The ids after a write carrying `id` (0: a write without one keeps
    /// them as they are).
    #[cfg_attr(not(feature = "cluster"), allow(dead_code))] // the clustered store's cache
    pub(crate) fn after(&self, id: u64) -> WriteIds {
        WriteIds(self.array_after(id))
    }

    /// [`WriteIds::after`] as a plain array (0 for empty slots).
    pub(crate) fn array_after(&self, id: u64) -> [u64; WRITE_IDS] {
        if id == 0 {
            return self.0;
        }
        let mut out = [0; WRITE_IDS];
        out[0] = id;
        out[1..].copy_from_slice(&self.0[..WRITE_IDS - 1]);
        out
    }

    /// The non-empty ids, newest first.
    #[cfg(test)]
    pub(crate) fn iter(&self) -> impl Iterator<Item = u64> + '_ {
        self.0.iter().copied().filter(|&id| id != 0)
    }
}

impl<T> Record<T> {
    /// A new record created at `now` under `policy`.
    pub fn new(id: SessionId, data: T, now: SystemTime, policy: &ExpiryPolicy) -> Self {
        let absolute_deadline = later(now, policy.absolute_lifetime);
        Record {
            id,
            data,
            flash: Vec::new(),
            created_at: now,
            last_access: now,
            idle_deadline: policy.idle_deadline(now, absolute_deadline),
            absolute_deadline,
            owner: None,
            binding: None,
            version: 0,
            writes: WriteIds::default(),
        }
    }

    /// The same record named by its [`SessionHandle`], as listings name it.
    pub fn into_listed(self) -> Record<T, SessionHandle> {
        let handle = self.id.handle();
        self.with_id(handle)
    }
}

impl<T, I> Record<T, I> {
    /// The same record named by `id` instead.
    pub fn with_id<J>(self, id: J) -> Record<T, J> {
        self.rebuild(|_, data| ((id, data), ())).0
    }

    /// Separates the data from the metadata.
    pub fn split(self) -> (T, Record<(), I>) {
        let (meta, data) = self.rebuild(|id, data| ((id, ()), data));
        (data, meta)
    }

    /// The record with what `f` makes of its name and data, and what `f`
    /// kept: the one place that lists every field.
    fn rebuild<U, J, K>(self, f: impl FnOnce(I, T) -> ((J, U), K)) -> (Record<U, J>, K) {
        let Record {
            id,
            data,
            flash,
            created_at,
            last_access,
            idle_deadline,
            absolute_deadline,
            owner,
            binding,
            version,
            writes,
        } = self;
        let ((id, data), kept) = f(id, data);
        let record = Record {
            id,
            data,
            flash,
            created_at,
            last_access,
            idle_deadline,
            absolute_deadline,
            owner,
            binding,
            version,
            writes,
        };
        (record, kept)
    }

    /// The instant the session dies if nothing happens: the earlier deadline.
    pub fn expires_at(&self) -> SystemTime {
        self.idle_deadline.min(self.absolute_deadline)
    }

    /// `Some(kind)` if the session is dead at `now`. A deadline is exclusive:
    /// at the deadline itself the session is already dead.
    pub fn expired(&self, now: SystemTime) -> Option<ExpiryKind> {
        if now >= self.absolute_deadline {
            Some(ExpiryKind::Absolute)
        } else if now >= self.idle_deadline {
            Some(ExpiryKind::Idle)
        } else {
            None
        }
    }

    /// Time left before expiry at `now` (zero when expired).
    pub fn time_until_expiry(&self, now: SystemTime) -> Duration {
        self.expires_at()
            .duration_since(now)
            .unwrap_or(Duration::ZERO)
    }

    /// Brings the deadlines within what `policy` gives a session created at
    /// `created_at` and last used at `last_access`: a record written under
    /// a longer idle timeout or absolute lifetime (the operator shortened
    /// them, say after an incident; a cookie sealed before) dies when the
    /// current policy says, not when the old one did. Never moves a
    /// deadline later.
    ///
    /// ```
    /// use std::time::{Duration, SystemTime};
    /// use sessionkit::{expiry::ExpiryPolicy, Record, SessionId};
    ///
    /// let t0 = SystemTime::now();
    /// let long = ExpiryPolicy {
    ///     idle_timeout: Duration::from_secs(8 * 3600),
    ///     absolute_lifetime: Duration::from_secs(24 * 3600),
    ///     ..ExpiryPolicy::default()
    /// };
    /// let mut r = Record::new(SessionId::generate(), (), t0, &long);
    /// let short = ExpiryPolicy {
    ///     idle_timeout: Duration::from_secs(60),
    ///     absolute_lifetime: Duration::from_secs(600),
    ///     ..ExpiryPolicy::default()
    /// };
    /// r.clamp_deadlines(&short);
    /// assert_eq!(r.idle_deadline, t0 + Duration::from_secs(60));
    /// assert_eq!(r.absolute_deadline, t0 + Duration::from_secs(600));
    /// assert!(r.expired(t0 + Duration::from_secs(3600)).is_some());
    /// ```
    pub fn clamp_deadlines(&mut self, policy: &ExpiryPolicy) {
        self.absolute_deadline = self
            .absolute_deadline
            .min(later(self.created_at, policy.absolute_lifetime));
        // Without sliding expiration the idle deadline counts from creation
        // and never moves (`Session::touch` still sets `last_access`, which
        // would let a touched session outlive a shortened timeout).
        let base = if policy.sliding {
            self.last_access
        } else {
            self.created_at
        };
        self.idle_deadline = self
            .idle_deadline
            .min(policy.idle_deadline(base, self.absolute_deadline));
    }

    /// Records activity at `now`: moves the idle deadline (capped by the absolute one).
    pub fn touch(&mut self, now: SystemTime, policy: &ExpiryPolicy) {
        self.last_access = now;
        self.idle_deadline = policy.idle_deadline(now, self.absolute_deadline);
    }
}

impl<I> Record<(), I> {
    /// Puts data back into metadata split off with [`Record::split`].
    pub fn join<T>(self, data: T) -> Record<T, I> {
        self.rebuild(|id, ()| ((id, data), ())).0
    }
}

impl<T, I: fmt::Debug> fmt::Debug for Record<T, I> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Record")
            .field("id", &self.id)
            .field("created_at", &self.created_at)
            .field("idle_deadline", &self.idle_deadline)
            .field("absolute_deadline", &self.absolute_deadline)
            .field("owner", &self.owner.as_ref().map(|_| "<set>"))
            .field("flash", &self.flash.len())
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_dies_at_whichever_deadline_comes_first() {
        let policy = ExpiryPolicy {
            idle_timeout: Duration::from_secs(10),
            absolute_lifetime: Duration::from_secs(25),
            sliding: true,
            ..ExpiryPolicy::default()
        };
        let t0 = SystemTime::now();
        let mut r = Record::new(SessionId::generate(), (), t0, &policy);
        assert_eq!(r.expired(t0 + Duration::from_secs(9)), None);
        assert_eq!(
            r.expired(t0 + Duration::from_secs(10)),
            Some(ExpiryKind::Idle)
        );
        r.touch(t0 + Duration::from_secs(9), &policy);
        r.touch(t0 + Duration::from_secs(18), &policy);
        assert_eq!(r.idle_deadline, t0 + Duration::from_secs(25));
        assert_eq!(
            r.expired(t0 + Duration::from_secs(25)),
            Some(ExpiryKind::Absolute)
        );
    }

    /// Without sliding expiration a shortened idle timeout counts from the
    /// session's creation, however recently it was touched.
    #[test]
    fn a_shortened_fixed_idle_timeout_counts_from_creation() {
        let fixed = |idle: u64| ExpiryPolicy {
            idle_timeout: Duration::from_secs(idle),
            absolute_lifetime: Duration::from_secs(12 * 3600),
            sliding: false,
            ..ExpiryPolicy::default()
        };
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let mut r = Record::new(SessionId::generate(), (), t0, &fixed(8 * 3600));
        r.last_access = t0 + Duration::from_secs(7 * 3600); // a `touch`
        r.clamp_deadlines(&fixed(1800));
        assert_eq!(r.idle_deadline, t0 + Duration::from_secs(1800));
        // Sliding: from the last activity, as a touch would have moved it.
        let mut r = Record::new(SessionId::generate(), (), t0, &fixed(8 * 3600));
        r.last_access = t0 + Duration::from_secs(7 * 3600);
        let sliding = ExpiryPolicy {
            sliding: true,
            ..fixed(1800)
        };
        r.clamp_deadlines(&sliding);
        assert_eq!(r.idle_deadline, r.last_access + Duration::from_secs(1800));
    }

    #[test]
    fn debug_shows_no_data_and_no_full_id() {
        let r = Record::new(
            SessionId::generate(),
            "secret-data",
            SystemTime::now(),
            &ExpiryPolicy::default(),
        );
        let dbg = format!("{r:?}");
        assert!(!dbg.contains("secret-data"));
        assert!(!dbg.contains(&r.id.encode()));
    }
}
