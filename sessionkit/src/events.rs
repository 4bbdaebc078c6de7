//! Lifecycle events: user callbacks, `metrics` counters, and what they carry.
//!
//! Events never carry the session id or the session data; they carry the
//! owner (if the application set one), so an audit log can say "alice was
//! logged out" without holding anything an attacker could replay.
//!
//! Callbacks run inline, inside store operations (a sweep, a revoke, an
//! eviction): keep them short. One that panics is caught and logged (ERROR)
//! and the operation goes on, so a faulty audit hook cannot leave a revoke
//! half done or stop the memory store's sweeper.
//!
//! ```
//! use std::sync::atomic::{AtomicUsize, Ordering};
//! use std::sync::Arc;
//! use sessionkit::{Config, SessionEvent};
//!
//! let started = Arc::new(AtomicUsize::new(0));
//! let seen = started.clone();
//! let config = Config::builder()
//!     .on_started(move |_e: &SessionEvent| { seen.fetch_add(1, Ordering::Relaxed); })
//!     .build()
//!     .unwrap();
//! # let _ = config;
//! ```
//!
//! Metrics (through the `metrics` facade; install any recorder):
//! `sessionkit_sessions_total{event}` with event = created, loaded, deleted,
//! regenerated, expired, binding_mismatch, ambiguous_cookie; `sessionkit_invalid_lookups_total` (a cookie that
//! names no stored session: unknown, tampered, already removed, or a value
//! the store cannot decode; a session the store still returns past its
//! deadline counts under `expired` instead, while one a store dropped on
//! its own, as Redis's TTLs do, is an invalid lookup); `sessionkit_saves_dropped_total` (a request's
//! changes dropped because its session was gone by the time of the save:
//! deleted or regenerated away by another request, or past its idle deadline
//! after a request that ran across it); `sessionkit_store_errors_total{op,kind}`;
//! `sessionkit_store_duration_seconds{op}` (histogram). Store calls that
//! wait for I/O (Redis) are all timed; calls a store answers in process
//! (the memory and cookie stores, a few hundred nanoseconds each) are timed
//! one in 16, drawn at random, and recorded with a weight of 16, so the
//! histogram's count still grows by one per call on average and its sum
//! estimates the total (two clock reads per call cost about a tenth of such
//! a call).

use std::fmt;
use std::sync::Arc;

use crate::expiry::ExpiryKind;

/// Why a session was deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DeleteReason {
    /// The application called [`crate::Session::destroy`] and its delete
    /// removed the session (one found already gone, by a parallel logout or a
    /// revoke, was reported by whoever removed it), or an admin deleted it
    /// with [`crate::Sessions::delete`].
    Destroyed,
    /// A load found the session past a deadline and its delete removed it
    /// (once per session: requests that loaded it meanwhile report only
    /// [`EventKind::Expired`]). The cookie store, which cannot delete, never
    /// reports this; a server-side store whose records vanish at their
    /// deadline (Redis, by TTL) reports it only when a load got there first.
    Expired(ExpiryKind),
    /// A bulk delete through the query API.
    BulkDelete,
    /// Every session of one owner was revoked.
    OwnerRevoked,
    /// The store swept it after expiry or evicted it to stay within bounds.
    Evicted,
    /// It was presented by a client other than the one it is bound to, and
    /// the configuration destroys sessions on a binding mismatch.
    BindingMismatch,
}

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum EventKind {
    /// A new session was saved for the first time.
    Started,
    /// An existing session was loaded by a request.
    Loaded,
    /// A session was deleted.
    Deleted(DeleteReason),
    /// A session got a new id (the old one is dead).
    Regenerated,
    /// A load found the session expired. Fired by every load that finds it
    /// so: parallel requests carrying one expired cookie, or an expired
    /// cookie-store cookie replayed, fire it more than once; count deletions
    /// with [`DeleteReason::Expired`] instead.
    Expired(ExpiryKind),
    /// A session was presented by a client other than the one it is bound to
    /// (see [`crate::binding`]); the request got a fresh session instead.
    BindingMismatch,
    /// A request carried the session cookie more than once (e.g. one planted
    /// for a parent domain); it was served as if it had none.
    AmbiguousCookie,
}

/// A lifecycle event, as passed to callbacks.
#[derive(Debug, Clone)]
pub struct SessionEvent {
    /// What happened.
    pub kind: EventKind,
    /// The session's owner, if the application set one.
    pub owner: Option<String>,
}

type Callback = Arc<dyn Fn(&SessionEvent) + Send + Sync>;

/// The registered callbacks, one slot per event kind.
#[derive(Clone, Default)]
pub(crate) struct Callbacks {
    pub started: Option<Callback>,
    pub loaded: Option<Callback>,
    pub deleted: Option<Callback>,
    pub regenerated: Option<Callback>,
    pub expired: Option<Callback>,
    pub binding_mismatch: Option<Callback>,
    pub ambiguous_cookie: Option<Callback>,
}

impl fmt::Debug for Callbacks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Callbacks")
            .field("started", &self.started.is_some())
            .field("loaded", &self.loaded.is_some())
            .field("deleted", &self.deleted.is_some())
            .field("regenerated", &self.regenerated.is_some())
            .field("expired", &self.expired.is_some())
            .field("binding_mismatch", &self.binding_mismatch.is_some())
            .field("ambiguous_cookie", &self.ambiguous_cookie.is_some())
            .finish()
    }
}

impl Callbacks {
    /// Records the metric and runs the matching callback.
    pub(crate) fn emit(&self, kind: EventKind, owner: Option<&str>) {
        // Literal labels let `metrics` keep each key in a static; a variable
        // label would build and allocate the key on every event.
        macro_rules! total {
            ($event:literal) => {
                metrics::counter!("sessionkit_sessions_total", "event" => $event)
            };
        }
        let (slot, counter) = match kind {
            EventKind::Started => (&self.started, total!("created")),
            EventKind::Loaded => (&self.loaded, total!("loaded")),
            EventKind::Deleted(_) => (&self.deleted, total!("deleted")),
            EventKind::Regenerated => (&self.regenerated, total!("regenerated")),
            EventKind::Expired(_) => (&self.expired, total!("expired")),
            EventKind::BindingMismatch => (&self.binding_mismatch, total!("binding_mismatch")),
            EventKind::AmbiguousCookie => (&self.ambiguous_cookie, total!("ambiguous_cookie")),
        };
        counter.increment(1);
        if let Some(cb) = slot {
            let event = SessionEvent {
                kind,
                owner: owner.map(str::to_owned),
            };
            // Callbacks run inside store operations (a revoke walking an
            // owner's sessions, the sweeper): a panic unwinding through one
            // would leave it half done.
            let run = std::panic::AssertUnwindSafe(|| cb(&event));
            if std::panic::catch_unwind(run).is_err() {
                tracing::error!(event = ?kind, "a session callback panicked; the operation went on");
            }
        }
    }
}
