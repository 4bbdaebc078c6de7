//! [`Session<T>`]: the per-request handle handlers use.
//!
//! A handle belongs to one request. Reading is free; [`Session::data_mut`]
//! marks the session changed so the layer saves it when the response goes
//! out. Lifecycle operations ([`Session::regenerate_id`], [`Session::destroy`],
//! [`Session::touch`]) take effect at that save, atomically in the store.
//!
//! ```
//! use sessionkit::Session;
//!
//! #[derive(serde::Serialize, serde::Deserialize, Default, Clone)]
//! struct Cart { items: Vec<String> }
//!
//! let session: Session<Cart> = Session::detached();
//! assert!(session.is_new());
//! session.data_mut().items.push("book".into());
//! assert_eq!(session.data().items.len(), 1);
//! assert!(!session.is_expired());
//! ```

use std::ops::{Deref, DerefMut};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use parking_lot::{MappedMutexGuard, Mutex, MutexGuard};

use crate::expiry::{Clock, ExpiryPolicy, SystemClock};
use crate::flash::{Flash, FlashMessage};
use crate::id::SessionId;
use crate::record::{Record, SessionData};

/// Everything one request knows about its session.
pub(crate) struct State<T> {
    pub record: Record<T>,
    /// The data as loaded, captured on the first `data_mut` (for merging on conflict).
    pub base: Option<T>,
    pub is_new: bool,
    /// Data, flash or owner changed.
    pub dirty: bool,
    /// The application asked to record activity.
    pub touched: bool,
    pub destroyed: bool,
    pub regenerated_from: Option<SessionId>,
    /// Flash visible in this request: first `incoming_flash` came from the store.
    pub visible_flash: Vec<FlashMessage>,
    pub incoming_flash: usize,
    /// The request presented a cookie that named no live session.
    pub stale_cookie: bool,
}

pub(crate) struct Shared<T> {
    pub state: Mutex<State<T>>,
    pub clock: Arc<dyn Clock>,
    pub policy: ExpiryPolicy,
}

/// The session of one request. Cheap to clone; clones share state.
pub struct Session<T> {
    pub(crate) shared: Arc<Shared<T>>,
}

impl<T> Clone for Session<T> {
    fn clone(&self) -> Self {
        Session {
            shared: self.shared.clone(),
        }
    }
}

impl<T: SessionData> std::fmt::Debug for Session<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = self.shared.state.lock();
        f.debug_struct("Session")
            .field("record", &s.record)
            .field("is_new", &s.is_new)
            .field("dirty", &s.dirty)
            .finish_non_exhaustive()
    }
}

impl<T: SessionData> Session<T> {
    pub(crate) fn from_state(state: State<T>, clock: Arc<dyn Clock>, policy: ExpiryPolicy) -> Self {
        Session {
            shared: Arc::new(Shared {
                state: Mutex::new(state),
                clock,
                policy,
            }),
        }
    }

    pub(crate) fn fresh(clock: Arc<dyn Clock>, policy: ExpiryPolicy, stale_cookie: bool) -> Self {
        let record = Record::new(SessionId::generate(), T::default(), clock.now(), &policy);
        Self::from_state(
            State {
                record,
                base: None,
                is_new: true,
                dirty: false,
                touched: false,
                destroyed: false,
                regenerated_from: None,
                visible_flash: Vec::new(),
                incoming_flash: 0,
                stale_cookie,
            },
            clock,
            policy,
        )
    }

    pub(crate) fn loaded(
        mut record: Record<T>,
        clock: Arc<dyn Clock>,
        policy: ExpiryPolicy,
    ) -> Self {
        let visible_flash = std::mem::take(&mut record.flash);
        let incoming_flash = visible_flash.len();
        Self::from_state(
            State {
                record,
                base: None,
                is_new: false,
                dirty: false,
                touched: false,
                destroyed: false,
                regenerated_from: None,
                visible_flash,
                incoming_flash,
                stale_cookie: false,
            },
            clock,
            policy,
        )
    }

    /// A new session tied to no store or request, with default expiry and the
    /// system clock: for unit tests of code that takes a `Session<T>`.
    pub fn detached() -> Self {
        Self::fresh(Arc::new(SystemClock), ExpiryPolicy::default(), false)
    }

    pub(crate) fn with_state<R>(&self, f: impl FnOnce(&mut State<T>) -> R) -> R {
        f(&mut self.shared.state.lock())
    }

    /// Reads the data. Do not hold the guard across an `.await`.
    pub fn data(&self) -> impl Deref<Target = T> + '_ {
        MutexGuard::map(self.shared.state.lock(), |s| &mut s.record.data)
    }

    /// Changes the data; the session will be saved. Do not hold the guard across an `.await`.
    pub fn data_mut(&self) -> impl DerefMut<Target = T> + '_ {
        let mut guard = self.shared.state.lock();
        if !guard.is_new && guard.base.is_none() {
            guard.base = Some(guard.record.data.clone());
        }
        guard.dirty = true;
        let mapped: MappedMutexGuard<'_, T> = MutexGuard::map(guard, |s| &mut s.record.data);
        mapped
    }

    /// Replaces the data wholesale.
    pub fn set_data(&self, data: T) {
        *self.data_mut() = data;
    }

    /// The session id. For a new session it is the id it will be saved under.
    pub fn id(&self) -> SessionId {
        self.shared.state.lock().record.id
    }

    /// Whether the session was created by this request (nothing was loaded).
    pub fn is_new(&self) -> bool {
        self.shared.state.lock().is_new
    }

    /// When the session was created.
    pub fn created_at(&self) -> SystemTime {
        self.shared.state.lock().record.created_at
    }

    /// When the session dies if nothing happens (the earlier of its deadlines).
    pub fn expires_at(&self) -> SystemTime {
        self.shared.state.lock().record.expires_at()
    }

    /// Time left before [`Session::expires_at`] (zero once expired).
    pub fn time_until_expiry(&self) -> Duration {
        let now = self.shared.clock.now();
        self.shared.state.lock().record.time_until_expiry(now)
    }

    /// Whether a deadline has passed (by the configured clock).
    pub fn is_expired(&self) -> bool {
        let now = self.shared.clock.now();
        self.shared.state.lock().record.expired(now).is_some()
    }

    /// Whether the session is alive and not destroyed.
    pub fn is_valid(&self) -> bool {
        !self.is_expired() && !self.shared.state.lock().destroyed
    }

    /// Records activity now: moves the idle deadline (if sliding expiration is
    /// on) and saves the session. Requests already do this when less than half
    /// the idle window is left; call it to force it.
    pub fn touch(&self) {
        let now = self.shared.clock.now();
        let mut s = self.shared.state.lock();
        if self.shared.policy.sliding {
            let policy = self.shared.policy;
            s.record.touch(now, &policy);
        } else {
            s.record.last_access = now;
        }
        s.touched = true;
    }

    /// Gives the session a new id, keeping its data. The old id is dead once
    /// the response is saved. Call it on every privilege change (login,
    /// logout to anonymous, role change) to defeat session fixation.
    pub fn regenerate_id(&self) {
        let mut s = self.shared.state.lock();
        let old = s.record.id;
        if !s.is_new && s.regenerated_from.is_none() {
            s.regenerated_from = Some(old);
        }
        s.record.id = SessionId::generate();
        s.dirty = true;
    }

    /// Ends the session: it is deleted from the store and the cookie expired
    /// when the response goes out. Later changes in this request are dropped.
    pub fn destroy(&self) {
        self.shared.state.lock().destroyed = true;
    }

    /// Whether [`Session::destroy`] was called.
    pub fn is_destroyed(&self) -> bool {
        self.shared.state.lock().destroyed
    }

    /// Flash messages of this session.
    pub fn flash(&self) -> Flash<'_, T> {
        Flash { session: self }
    }

    /// The owner (usually the user id) the session is indexed under.
    pub fn owner(&self) -> Option<String> {
        self.shared.state.lock().record.owner.clone()
    }

    /// Sets or clears the owner; [`crate::Sessions::revoke_owner`] then finds
    /// this session through the store's owner index.
    pub fn set_owner(&self, owner: Option<impl Into<String>>) {
        let mut s = self.shared.state.lock();
        s.record.owner = owner.map(Into::into);
        s.dirty = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reading_does_not_mark_the_session_changed() {
        let s: Session<u32> = Session::detached();
        let _ = *s.data();
        assert!(!s.with_state(|st| st.dirty));
        *s.data_mut() += 1;
        assert!(s.with_state(|st| st.dirty));
    }

    #[test]
    fn regenerate_keeps_data_and_remembers_only_the_loaded_id() {
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let rec = Record::new(
            SessionId::generate(),
            5u32,
            clock.now(),
            &ExpiryPolicy::default(),
        );
        let loaded_id = rec.id;
        let s = Session::loaded(rec, clock, ExpiryPolicy::default());
        s.regenerate_id();
        s.regenerate_id();
        assert_ne!(s.id(), loaded_id);
        assert_eq!(*s.data(), 5);
        assert_eq!(s.with_state(|st| st.regenerated_from), Some(loaded_id));
    }

    #[test]
    fn flash_set_is_not_visible_now_but_now_is() {
        let s: Session<()> = Session::detached();
        s.flash().set("a", "later");
        s.flash().now("b", "now");
        assert_eq!(s.flash().take("a"), None);
        assert_eq!(s.flash().take("b").as_deref(), Some("now"));
        assert!(s.flash().is_empty());
    }
}
