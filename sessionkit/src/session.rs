//! [`Session<T>`]: the per-request handle handlers use.
//!
//! A handle belongs to one request. Reading is free; [`Session::data_mut`]
//! marks the session changed so the layer saves it when the response goes
//! out. Lifecycle operations ([`Session::regenerate_id`], [`Session::destroy`],
//! [`Session::touch`]) take effect at that save, atomically in the store.
//!
//! The data and the metadata sit behind separate locks: while you hold the
//! guard from [`Session::data`] or [`Session::data_mut`] you may call every
//! other method (`id`, `expires_at`, `flash`, …). The data guards follow a
//! `RefCell`'s rules within a thread: any number of [`Session::data`] guards
//! at once, and [`Session::data_mut`] (or `set_data`) while this thread
//! still holds one of them panics, naming the mistake, instead of
//! deadlocking (`if let Some(u) = &s.data().user { s.data_mut().seen += 1 }`
//! keeps the first guard alive for the whole block). Across threads (a clone of the handle
//! in a spawned task) they wait for each other like a lock. Never hold a
//! guard across an `.await`.
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
//! let cart = session.data();
//! assert_eq!(cart.items.len(), 1);
//! assert!(!session.is_expired()); // fine while `cart` is held
//! ```

use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use parking_lot::{MappedRwLockWriteGuard, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};

use crate::expiry::{Clock, ExpiryPolicy, SystemClock};
use crate::flash::{Flash, FlashMessage};
use crate::id::SessionId;
use crate::record::{Record, SessionData};

/// The data, and a copy of it as loaded (taken on the first `data_mut`).
pub(crate) struct DataCell<T> {
    pub data: T,
    /// The data as loaded, for merging on a concurrent update.
    pub base: Option<T>,
}

/// Everything but the data.
pub(crate) struct Meta {
    pub record: Record<()>,
    /// The application asked to record activity.
    pub touched: bool,
    pub destroyed: bool,
    pub regenerated_from: Option<SessionId>,
    /// Flash visible in this request: the first `incoming_flash` came from the store.
    pub visible_flash: Vec<FlashMessage>,
    pub incoming_flash: usize,
    /// Stored flash messages read (consumed) in this request.
    pub flash_taken: Vec<FlashMessage>,
    /// The owner was set in this request.
    pub owner_set: bool,
    /// The owner the session was loaded with, once this request set another
    /// (a deletion is reported under the owner the store held).
    pub owner_loaded: Option<String>,
    /// The client binding was set in this request.
    pub binding_set: bool,
    /// The request presented a cookie whose session this request found
    /// dead and ended (past a deadline, presented by another client, or
    /// stored in a form that cannot be read): the cookie is expired in the
    /// browser unless a new session replaces it. A cookie that names no
    /// session at all is left alone (see [`crate::sessions`]).
    pub stale_cookie: bool,
}

pub(crate) struct Shared<T> {
    pub data: RwLock<DataCell<T>>,
    pub meta: Mutex<Meta>,
    /// Data, flash, owner or id changed.
    pub dirty: AtomicBool,
    /// [`OPEN`], then [`COMMITTED`] once the layer planned the save (the
    /// response is on its way), then [`WARNED`] once a change came after.
    pub state: AtomicU8,
    pub is_new: bool,
    pub clock: Arc<dyn Clock>,
    pub policy: ExpiryPolicy,
}

/// [`Shared::state`]: the request is still running.
pub(crate) const OPEN: u8 = 0;
/// [`Shared::state`]: the layer has taken what to save.
pub(crate) const COMMITTED: u8 = 1;
/// [`Shared::state`]: committed, and a later change was reported.
const WARNED: u8 = 2;

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
        let m = self.shared.meta.lock();
        f.debug_struct("Session")
            .field("record", &m.record)
            .field("is_new", &self.shared.is_new)
            .field("dirty", &self.shared.dirty.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl<T: SessionData> Session<T> {
    fn build(
        record: Record<T>,
        is_new: bool,
        stale_cookie: bool,
        clock: Arc<dyn Clock>,
        policy: ExpiryPolicy,
    ) -> Self {
        let (data, mut record) = record.split();
        let visible_flash = std::mem::take(&mut record.flash);
        let incoming_flash = visible_flash.len();
        Session {
            shared: Arc::new(Shared {
                data: RwLock::new(DataCell { data, base: None }),
                meta: Mutex::new(Meta {
                    record,
                    touched: false,
                    destroyed: false,
                    regenerated_from: None,
                    visible_flash,
                    incoming_flash,
                    flash_taken: Vec::new(),
                    owner_set: false,
                    owner_loaded: None,
                    binding_set: false,
                    stale_cookie,
                }),
                dirty: AtomicBool::new(false),
                state: AtomicU8::new(OPEN),
                is_new,
                clock,
                policy,
            }),
        }
    }

    pub(crate) fn fresh(
        clock: Arc<dyn Clock>,
        policy: ExpiryPolicy,
        stale_cookie: bool,
        binding: Option<String>,
    ) -> Self {
        let mut record = Record::new(SessionId::generate(), T::default(), clock.now(), &policy);
        record.binding = binding;
        Self::build(record, true, stale_cookie, clock, policy)
    }

    /// A session loaded from the store; `rebound` when loading gave it a new
    /// client binding (written with its next save).
    pub(crate) fn loaded(
        record: Record<T>,
        clock: Arc<dyn Clock>,
        policy: ExpiryPolicy,
        rebound: bool,
    ) -> Self {
        let session = Self::build(record, false, false, clock, policy);
        if rebound {
            session.with_meta(|m| m.binding_set = true);
        }
        session
    }

    /// A new session tied to no store or request, with default expiry and the
    /// system clock: for unit tests of code that takes a `Session<T>`.
    pub fn detached() -> Self {
        Self::fresh(Arc::new(SystemClock), ExpiryPolicy::default(), false, None)
    }

    pub(crate) fn with_meta<R>(&self, f: impl FnOnce(&mut Meta) -> R) -> R {
        f(&mut self.shared.meta.lock())
    }

    pub(crate) fn mark_dirty(&self) {
        // SeqCst here and in `check_open`, `commit_started`, `is_dirty`: a
        // change racing the commit is then either seen dirty by the plan or
        // sees the commit and is reported (never neither).
        self.shared.dirty.store(true, Ordering::SeqCst);
        self.check_open();
    }

    /// A change after the layer took what to save is never saved: say so
    /// (once per session, as a warning and in
    /// `sessionkit_late_changes_total`) rather than drop it silently.
    fn check_open(&self) {
        if self.shared.state.load(Ordering::SeqCst) == COMMITTED
            && self
                .shared
                .state
                .compare_exchange(COMMITTED, WARNED, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok()
        {
            metrics::counter!("sessionkit_late_changes_total").increment(1);
            tracing::warn!(
                "a session was changed after its response was sent: the change is not saved \
                 (a Session kept by a spawned task, a WebSocket or a streaming body?)"
            );
        }
    }

    /// Marks the session as taken by the layer for saving (see
    /// [`Session::is_committed`]).
    pub(crate) fn commit_started(&self) {
        let _ =
            self.shared
                .state
                .compare_exchange(OPEN, COMMITTED, Ordering::SeqCst, Ordering::SeqCst);
    }

    /// Whether the layer has already taken this session for saving: the
    /// response is on its way, and changes made now (from a task spawned by
    /// the handler, a WebSocket, a streaming body) are not saved; each such
    /// session logs one warning and counts in
    /// `sessionkit_late_changes_total`. Work that must change the session
    /// belongs in the handler, or in a new request.
    pub fn is_committed(&self) -> bool {
        self.shared.state.load(Ordering::Relaxed) != OPEN
    }

    pub(crate) fn is_dirty(&self) -> bool {
        self.shared.dirty.load(Ordering::SeqCst)
    }

    /// Reads the data. Several may be held at once. Do not hold the guard
    /// across an `.await`.
    ///
    /// # Panics
    ///
    /// If this thread holds the guard from [`Session::data_mut`] (waiting
    /// would deadlock).
    pub fn data(&self) -> impl Deref<Target = T> + '_ {
        let key = held::key(&self.shared);
        if held::writing(key) {
            panic!(
                "Session::data() called while this thread holds the guard from Session::data_mut() \
                 on the same session: drop that guard first (waiting for it would deadlock)"
            );
        }
        // Recursive: a second read on this thread must not wait behind a
        // writer queued on another thread that waits for the first read.
        let guard = RwLockReadGuard::map(self.shared.data.read_recursive(), |c| &c.data);
        held::Held::new(guard, key, false)
    }

    /// Changes the data; the session will be saved. Do not hold the guard
    /// across an `.await`.
    ///
    /// # Panics
    ///
    /// If this thread holds a guard from [`Session::data`] or `data_mut` of
    /// the same session (waiting would deadlock), as a `RefCell` would.
    pub fn data_mut(&self) -> impl DerefMut<Target = T> + '_ {
        let key = held::key(&self.shared);
        if held::holding(key) {
            panic!(
                "Session::data_mut() (or set_data) called while this thread holds a guard from \
                 Session::data() or data_mut() on the same session: drop it first, e.g. \
                 `let x = s.data().x;` before `s.data_mut()` (waiting for it would deadlock)"
            );
        }
        let mut guard = self.shared.data.write();
        if !self.shared.is_new && guard.base.is_none() {
            guard.base = Some(guard.data.clone());
        }
        self.mark_dirty();
        let mapped: MappedRwLockWriteGuard<'_, T> = RwLockWriteGuard::map(guard, |c| &mut c.data);
        held::Held::new(mapped, key, true)
    }

    /// Whether this thread holds a data guard of this session: the commit
    /// cannot take the data then (waiting would deadlock the thread; on
    /// actix-web a `spawn_local` task can hold one across an `.await`
    /// after its handler returned).
    pub(crate) fn data_held_here(&self) -> bool {
        held::holding(held::key(&self.shared))
    }

    /// Replaces the data wholesale.
    pub fn set_data(&self, data: T) {
        *self.data_mut() = data;
    }

    /// The session id. For a new session it is the id it will be saved under.
    pub fn id(&self) -> SessionId {
        self.shared.meta.lock().record.id
    }

    /// Whether the session was created by this request (nothing was loaded).
    pub fn is_new(&self) -> bool {
        self.shared.is_new
    }

    /// When the session was created.
    pub fn created_at(&self) -> SystemTime {
        self.shared.meta.lock().record.created_at
    }

    /// When the session dies if nothing happens (the earlier of its deadlines).
    pub fn expires_at(&self) -> SystemTime {
        self.shared.meta.lock().record.expires_at()
    }

    /// Time left before [`Session::expires_at`] (zero once expired).
    pub fn time_until_expiry(&self) -> Duration {
        let now = self.shared.clock.now();
        self.shared.meta.lock().record.time_until_expiry(now)
    }

    /// Whether a deadline has passed (by the configured clock).
    pub fn is_expired(&self) -> bool {
        let now = self.shared.clock.now();
        self.shared.meta.lock().record.expired(now).is_some()
    }

    /// Whether the session is alive and not destroyed.
    pub fn is_valid(&self) -> bool {
        !self.is_expired() && !self.shared.meta.lock().destroyed
    }

    /// Records activity now: moves the idle deadline (if sliding expiration is
    /// on) and saves the session, if it was saved before (a new session is
    /// not stored for a touch alone: only data, flash or an owner make a
    /// visitor's session worth keeping). Requests already do this when less
    /// than half the idle window is left; call it to force it.
    pub fn touch(&self) {
        let now = self.shared.clock.now();
        let policy = self.shared.policy;
        let mut m = self.shared.meta.lock();
        if policy.sliding {
            m.record.touch(now, &policy);
        } else {
            m.record.last_access = now;
        }
        m.touched = true;
        drop(m);
        self.check_open();
    }

    /// Gives the session a new id, keeping its data. The old id is dead once
    /// the response is saved. Call it on every privilege change (login,
    /// logout to anonymous, role change) to defeat session fixation.
    pub fn regenerate_id(&self) {
        let mut m = self.shared.meta.lock();
        let old = m.record.id;
        if !self.shared.is_new && m.regenerated_from.is_none() {
            m.regenerated_from = Some(old);
        }
        m.record.id = SessionId::generate();
        self.mark_dirty();
    }

    /// Ends the session: it is deleted from the store and the cookie expired
    /// when the response goes out. Later changes in this request are dropped.
    /// If another request removed the session first (a double-clicked
    /// logout), that one reports it and expires the cookie; this one leaves
    /// the cookie alone (it may carry a parallel login's new id by then).
    ///
    /// A request that carried the session cookie more than once (two
    /// cookies of that name, e.g. one set for a parent domain: the
    /// [`crate::EventKind::AmbiguousCookie`] event) has no session (neither
    /// value is trusted), so destroying it ends nothing: revoke by owner
    /// ([`crate::Sessions::revoke_owner`]) where that matters. The default
    /// `__Host-` cookie name keeps other hosts from setting a second one.
    pub fn destroy(&self) {
        self.shared.meta.lock().destroyed = true;
        self.check_open();
    }

    /// Whether [`Session::destroy`] was called.
    pub fn is_destroyed(&self) -> bool {
        self.shared.meta.lock().destroyed
    }

    /// Flash messages of this session.
    pub fn flash(&self) -> Flash<'_, T> {
        Flash { session: self }
    }

    /// The owner (usually the user id) the session is indexed under.
    pub fn owner(&self) -> Option<String> {
        self.shared.meta.lock().record.owner.clone()
    }

    /// Sets or clears the owner; [`crate::Sessions::revoke_owner`] then finds
    /// this session through the store's owner index. Setting the owner the
    /// session already has changes nothing (no save, no cookie for a new
    /// session): middleware may call it on every request.
    pub fn set_owner(&self, owner: Option<impl Into<String>>) {
        let owner: Option<String> = owner.map(Into::into);
        let mut m = self.shared.meta.lock();
        if m.record.owner == owner {
            return;
        }
        let previous = std::mem::replace(&mut m.record.owner, owner);
        if !m.owner_set {
            m.owner_loaded = previous;
            m.owner_set = true;
        }
        drop(m);
        self.mark_dirty();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `f` on a thread of its own; whether it finished within a
    /// second, and whether it panicked (a deadlock never finishes).
    fn outcome(f: impl FnOnce() + Send + 'static) -> Result<(), &'static str> {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
            let _ = tx.send(r.is_ok());
        });
        match rx.recv_timeout(std::time::Duration::from_secs(5)) {
            Ok(true) => Ok(()),
            Ok(false) => Err("panicked"),
            Err(_) => Err("deadlocked"),
        }
    }

    /// Two reads at once are fine; a write while this thread reads or
    /// writes the same session panics instead of hanging the thread; other
    /// sessions and other threads are not affected.
    #[test]
    fn guards_follow_refcell_rules_within_a_thread_instead_of_deadlocking() {
        assert_eq!(
            outcome(|| {
                let s: Session<u32> = Session::detached();
                let (a, b) = (s.data(), s.data());
                assert_eq!(*a + *b, 0);
                // `if s.data() == s.data()` keeps both alive: fine.
                assert!(*s.data() == *s.data());
            }),
            Ok(())
        );
        assert_eq!(
            outcome(|| {
                let s: Session<u32> = Session::detached();
                // A `match` (or `if let`) keeps its scrutinee's guard alive
                // for the whole block.
                let seen = match *s.data() {
                    0 => {
                        *s.data_mut() += 1;
                        true
                    }
                    _ => false,
                };
                assert!(seen);
            }),
            Err("panicked"),
            "data_mut under a data guard"
        );
        assert_eq!(
            outcome(|| {
                let s: Session<u32> = Session::detached();
                let _w = s.data_mut();
                let _ = *s.data();
            }),
            Err("panicked"),
            "data under a data_mut guard"
        );
        assert_eq!(
            outcome(|| {
                let s: Session<u32> = Session::detached();
                let _w = s.data_mut();
                s.set_data(2);
            }),
            Err("panicked"),
            "set_data under a data_mut guard"
        );
        assert_eq!(
            outcome(|| {
                // Another session's guard is no obstacle; a dropped guard
                // leaves nothing behind.
                let (s, t): (Session<u32>, Session<u32>) =
                    (Session::detached(), Session::detached());
                let _r = t.data();
                *s.data_mut() += 1;
                drop(_r);
                *t.data_mut() += 1;
                let clone = t.clone();
                assert_eq!(*clone.data(), 1);
            }),
            Ok(())
        );
        // Across threads a writer waits for a reader, then goes on.
        assert_eq!(
            outcome(|| {
                let s: Session<u32> = Session::detached();
                let r = s.data();
                let other = s.clone();
                let writer = std::thread::spawn(move || *other.data_mut() += 1);
                std::thread::sleep(std::time::Duration::from_millis(50));
                assert_eq!(*r, 0);
                drop(r);
                writer.join().unwrap();
                assert_eq!(*s.data(), 1);
            }),
            Ok(())
        );
    }

    #[test]
    fn setting_the_owner_it_already_has_changes_nothing() {
        let s: Session<u32> = Session::detached();
        s.set_owner(None::<String>);
        assert!(!s.is_dirty(), "an anonymous visitor stays unsaved");
        s.set_owner(Some("alice"));
        assert!(s.is_dirty());
        assert_eq!(s.owner().as_deref(), Some("alice"));
    }

    #[test]
    fn reading_does_not_mark_the_session_changed() {
        let s: Session<u32> = Session::detached();
        let _ = *s.data();
        assert!(!s.is_dirty());
        *s.data_mut() += 1;
        assert!(s.is_dirty());
    }

    #[test]
    fn metadata_is_readable_while_the_data_guard_is_held() {
        let s: Session<u32> = Session::detached();
        let mut d = s.data_mut();
        *d += 1;
        let _ = (
            s.id(),
            s.expires_at(),
            s.time_until_expiry(),
            s.owner(),
            s.flash().is_empty(),
        );
        s.set_owner(Some("alice"));
        drop(d);
        assert_eq!(*s.data(), 1);
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
        let s = Session::loaded(rec, clock, ExpiryPolicy::default(), false);
        s.regenerate_id();
        s.regenerate_id();
        assert_ne!(s.id(), loaded_id);
        assert_eq!(*s.data(), 5);
        assert_eq!(s.with_meta(|m| m.regenerated_from), Some(loaded_id));
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

/// Which sessions' data guards the current thread holds, so that taking a
/// guard that would wait for one of them panics instead of deadlocking (a
/// lock cannot tell its holder from another thread; a `RefCell` could, but
/// a handle is shared across threads). Guards cannot leave their thread
/// (`parking_lot`'s are not `Send`), so the list is exact. Kept by hand: no
/// crate tracks lock holders per thread; a few entries at most, scanned
/// linearly.
mod held {
    use std::cell::RefCell;
    use std::ops::{Deref, DerefMut};

    thread_local! {
        /// (session key, is a write guard), one entry per live guard.
        /// Allocated by a thread's first guard, then reused (never shrunk).
        static HELD: RefCell<Vec<(usize, bool)>> = const { RefCell::new(Vec::new()) };
    }

    /// The identity of a session's shared state (its address).
    pub(super) fn key<S>(shared: &std::sync::Arc<S>) -> usize {
        std::sync::Arc::as_ptr(shared) as *const () as usize
    }

    /// Whether this thread holds any data guard of `key`.
    pub(super) fn holding(key: usize) -> bool {
        HELD.try_with(|h| h.borrow().iter().any(|&(k, _)| k == key))
            .unwrap_or(false)
    }

    /// Whether this thread holds the write guard of `key`.
    pub(super) fn writing(key: usize) -> bool {
        HELD.try_with(|h| h.borrow().iter().any(|&(k, w)| k == key && w))
            .unwrap_or(false)
    }

    /// A lock guard, listed as held by this thread while it lives. Never
    /// `Send`, whatever `parking_lot`'s features make its guards: dropped on
    /// another thread, it would leave its entry behind here.
    pub(super) struct Held<G> {
        guard: G,
        key: usize,
        write: bool,
        _this_thread: std::marker::PhantomData<*const ()>,
    }

    impl<G> Held<G> {
        pub(super) fn new(guard: G, key: usize, write: bool) -> Self {
            // In thread teardown the list is gone: the guard then simply
            // goes unlisted (no check is possible, none is needed there).
            let _ = HELD.try_with(|h| h.borrow_mut().push((key, write)));
            Held {
                guard,
                key,
                write,
                _this_thread: std::marker::PhantomData,
            }
        }
    }

    impl<G> Drop for Held<G> {
        fn drop(&mut self) {
            let (key, write) = (self.key, self.write);
            let _ = HELD.try_with(|h| {
                let mut h = h.borrow_mut();
                if let Some(i) = h.iter().rposition(|&e| e == (key, write)) {
                    h.swap_remove(i);
                }
            });
        }
    }

    impl<G: Deref> Deref for Held<G> {
        type Target = G::Target;
        fn deref(&self) -> &G::Target {
            &self.guard
        }
    }

    impl<G: DerefMut> DerefMut for Held<G> {
        fn deref_mut(&mut self) -> &mut G::Target {
            &mut self.guard
        }
    }
}
