//! [`Sessions`]: a store plus its configuration — the framework-free core.
//!
//! It turns a cookie value into a [`Session`] (checking expiry and firing
//! events) and a finished session back into a [`CookieAction`] (saving,
//! regenerating or deleting in the store). The tower layer and any other
//! adapter only move headers in and out; all session logic lives here.
//! It also carries the query and bulk operations, so that every deletion
//! fires `on_deleted`, whichever path it takes.
//!
//! ```
//! use sessionkit::{Config, Sessions, store::memory::MemoryStore};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let sessions: Sessions<u32, _> = Sessions::new(MemoryStore::new(), Config::default());
//! let s = sessions.load(None).await.unwrap();   // no cookie: a fresh session
//! *s.data_mut() = 7;
//! let action = sessions.commit(&s, None).await.unwrap();
//! let cookie = action.value().unwrap().to_owned();
//! let again = sessions.load(Some(&cookie)).await.unwrap();
//! assert_eq!(*again.data(), 7);
//! assert_eq!(sessions.count().await.unwrap(), 1);
//! # }
//! ```
//!
//! # When the session cookie is expired in the browser
//!
//! A response expires the cookie (`Max-Age=0`) only when its own request
//! ended the session the cookie named: [`Session::destroy`], a deadline
//! found passed by the request whose delete removed it, a client other than
//! the bound one ([`crate::binding`]), a stored value that cannot be read.
//! A cookie that names no session, a save that finds its session deleted or
//! regenerated meanwhile, and a session past a deadline that another
//! request already deleted (or that a cookie store, which cannot delete,
//! presents again) leave the cookie alone. A browser sends requests that overlap: one still carrying
//! the old cookie while a login regenerates the id would otherwise answer
//! last with an expiry of the same cookie name, and log the user out. Such
//! a cookie costs a lookup per request until its `Max-Age` (the absolute
//! deadline) passes or a new session replaces it. (A request that writes to
//! a fresh session still sets its own cookie; it is the order in which the
//! browser receives such responses that decides which cookie it keeps.)

use std::marker::PhantomData;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use subtle::ConstantTimeEq;
use tracing::Instrument;

use crate::binding::{self, ClientInfo};
use crate::config::Config;
use crate::error::StoreError;
use crate::events::{DeleteReason, EventKind};
use crate::id::SessionHandle;
use crate::record::{Record, SessionData};
use crate::session::Session;
use crate::store::{
    MetaChanges, Predicate, QueryStore, Removed, Save, SaveKind, SaveOutcome, Store,
};

// `Save` is the common variant (every commit that writes): boxing it would
// allocate on every such request to shrink the rare ones.
#[allow(clippy::large_enum_variant)]
enum Plan {
    Nothing(bool),
    /// The session to delete (none for a session this request created), its
    /// owner, and whether this request found the cookie's session dead.
    Delete(Option<crate::SessionId>, Option<String>, bool),
    Save(Record<()>, SaveKind, Changes),
}

/// [`MetaChanges`] owned, for a save that outlives the session's lock.
#[derive(Debug, Default)]
pub(crate) struct Changes {
    flash_taken: Vec<crate::flash::FlashMessage>,
    flash_added: usize,
    owner: bool,
    binding: bool,
}

impl Changes {
    fn borrowed(&self) -> MetaChanges<'_> {
        MetaChanges {
            flash_taken: &self.flash_taken,
            flash_added: self.flash_added,
            owner: self.owner,
            binding: self.binding,
        }
    }
}

/// What to do with the session cookie once a request is done.
///
/// `Debug` shows only the first characters of a value to set.
#[derive(Clone, PartialEq, Eq)]
pub enum CookieAction {
    /// Send nothing.
    None,
    /// Set the cookie to this value, living `max_age`.
    Set {
        /// The cookie value.
        value: String,
        /// How long the browser should keep it (the session's absolute deadline).
        max_age: Duration,
    },
    /// Expire the cookie in the browser.
    Remove,
}

impl std::fmt::Debug for CookieAction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CookieAction::None => f.write_str("None"),
            CookieAction::Set { value, max_age } => f
                .debug_struct("Set")
                .field("value", &crate::id::Redacted(value))
                .field("max_age", max_age)
                .finish(),
            CookieAction::Remove => f.write_str("Remove"),
        }
    }
}

impl CookieAction {
    /// The value to set, if any.
    pub fn value(&self) -> Option<&str> {
        match self {
            CookieAction::Set { value, .. } => Some(value),
            _ => None,
        }
    }
}

/// A store and its configuration. Cheap to clone.
pub struct Sessions<T, S> {
    inner: Arc<Core<T, S>>,
}

impl<T, S> Clone for Sessions<T, S> {
    fn clone(&self) -> Self {
        Sessions {
            inner: self.inner.clone(),
        }
    }
}

pub(crate) struct Core<T, S> {
    store: S,
    config: Config,
    _data: PhantomData<fn() -> T>,
}

/// Object-safe view of [`Sessions`] used by the HTTP adapters, so request
/// extensions need not name the store type.
///
/// Each operation comes in two halves: a synchronous `*_now` that finishes
/// the work when the store can answer without I/O ([`Store::load_now`]), and
/// an async half (boxed) only for what must wait. [`load_session`] and
/// [`commit_session`] put them together; a request served from memory thus
/// allocates no future of ours.
#[async_trait]
pub(crate) trait Engine<T: SessionData>: Send + Sync + 'static {
    fn config(&self) -> &Config;
    /// `None`: the store needs I/O, call [`Engine::load_io`].
    fn load_now(
        &self,
        cookie_value: Option<&str>,
        client: &ClientInfo,
    ) -> Option<Result<Loaded<T>, StoreError>>;
    async fn load_io(
        &self,
        cookie_value: &str,
        client: &ClientInfo,
    ) -> Result<Loaded<T>, StoreError>;
    /// The follow-up of a load that found an expired or foreign session.
    async fn settle(&self, loaded: Loaded<T>) -> Result<Session<T>, StoreError>;
    fn commit_now(&self, session: &Session<T>, incoming: Option<&str>) -> CommitStep<T>;
    async fn commit_io(
        &self,
        pending: Pending<T>,
        incoming: Option<&str>,
    ) -> Result<CookieAction, StoreError>;
}

/// What a load found, before any follow-up I/O.
pub(crate) enum Loaded<T> {
    /// The session to hand out.
    Ready(Session<T>),
    /// The record is past a deadline: delete it, start fresh (bound to
    /// this client's fingerprint, if any).
    Expired(Record<T>, crate::expiry::ExpiryKind, Option<String>),
    /// Bound to another client (this one's fingerprint attached).
    Mismatch(Record<T>, String),
    /// Live, but close to its idle deadline: record the activity before
    /// handing it out. Whether its binding was just set, and whether
    /// binding is on (the record's binding is then this client's).
    Expiring(Record<T>, bool, bool),
}

/// A commit that needs the store's async half.
pub(crate) enum Pending<T> {
    /// As [`Plan::Delete`].
    Delete(Option<crate::SessionId>, Option<String>, bool),
    Save(Box<PendingSave<T>>),
}

pub(crate) struct PendingSave<T> {
    record: Record<T>,
    base: Option<T>,
    kind: SaveKind,
    changes: Changes,
    now: std::time::SystemTime,
}

pub(crate) enum CommitStep<T> {
    Done(Result<CookieAction, StoreError>),
    Io(Pending<T>),
}

/// Loads a session: the synchronous path when the store allows, else the
/// async one.
pub(crate) async fn load_session<T: SessionData, E: Engine<T> + ?Sized>(
    engine: &E,
    cookie_value: Option<&str>,
    client: &ClientInfo,
) -> Result<Session<T>, StoreError> {
    let tried = engine.load_now(cookie_value, client);
    finish_load(engine, tried, cookie_value, client).await
}

/// The client of a load made without one ([`Sessions::load`]): told apart
/// by address, since an empty [`ClientInfo`] is also what a request without
/// a peer address or `User-Agent` gives, and that one is checked.
static NO_CLIENT: ClientInfo = ClientInfo {
    ip: None,
    user_agent: None,
};

/// The rest of a load, given what [`Engine::load_now`] answered (`None`: the
/// store needs I/O): waits for the store if it must, then deletes or
/// re-binds what it found if it must.
pub(crate) async fn finish_load<T: SessionData, E: Engine<T> + ?Sized>(
    engine: &E,
    tried: Option<Result<Loaded<T>, StoreError>>,
    cookie_value: Option<&str>,
    client: &ClientInfo,
) -> Result<Session<T>, StoreError> {
    let loaded = match (tried, cookie_value) {
        (Some(loaded), _) => loaded?,
        (None, Some(value)) => engine.load_io(value, client).await?,
        // `Engine::load_now` answers whenever there is no cookie.
        (None, None) => {
            return Err(StoreError::Backend(
                "the engine could not start a session without a cookie".into(),
            ))
        }
    };
    match loaded {
        Loaded::Ready(session) => Ok(session),
        other => engine.settle(other).await,
    }
}

/// Commits a session: the synchronous path when nothing needs I/O.
pub(crate) async fn commit_session<T: SessionData, E: Engine<T> + ?Sized>(
    engine: &E,
    session: &Session<T>,
    incoming: Option<&str>,
) -> Result<CookieAction, StoreError> {
    match engine.commit_now(session, incoming) {
        CommitStep::Done(result) => result,
        CommitStep::Io(pending) => engine.commit_io(pending, incoming).await,
    }
}

/// One in this many in-process store calls is timed (see [`sampled_timer`]).
const IN_PROCESS_TIMING_SAMPLE: u32 = 16;

/// The start of a timed in-process store call (a store's `load_now` or
/// `save_now` answer: the memory and cookie stores), for one call in
/// [`IN_PROCESS_TIMING_SAMPLE`] drawn at random; `None` for the others.
///
/// Such a call takes a few hundred nanoseconds, and timing it costs two
/// clock reads of about 20 ns each (`perf` on the benchmark's virtual
/// machines put the clock at 1.7 % of a memory-store `/write`, four of its
/// seven reads being these). The timed call is recorded with the weight of
/// the calls it stands for ([`observe_sampled`]), so the histogram's count
/// still grows by one per call on average and its sum stays an unbiased
/// estimate of the total. Calls that wait for I/O are timed every time.
/// Random rather than every n-th: a request makes a load and a save, and a
/// fixed stride would time only one of the two.
fn sampled_timer() -> Option<Instant> {
    (fastrand::u32(..IN_PROCESS_TIMING_SAMPLE) == 0).then(Instant::now)
}

/// [`observe`] for an in-process call started under [`sampled_timer`].
fn observe_sampled(op: &'static str, started: Option<Instant>, result: Result<(), &StoreError>) {
    if let Some(started) = started {
        duration_histogram(op).record_many(
            started.elapsed().as_secs_f64(),
            IN_PROCESS_TIMING_SAMPLE as usize,
        );
    }
    count_error(op, result);
}

fn duration_histogram(op: &'static str) -> metrics::Histogram {
    // Literal labels let `metrics` keep each key in a static; a variable label
    // builds and allocates the key on every call (~500 instructions a request).
    match op {
        "load" => metrics::histogram!("sessionkit_store_duration_seconds", "op" => "load"),
        "save" => metrics::histogram!("sessionkit_store_duration_seconds", "op" => "save"),
        "delete" => metrics::histogram!("sessionkit_store_duration_seconds", "op" => "delete"),
        _ => metrics::histogram!("sessionkit_store_duration_seconds", "op" => op),
    }
}

fn observe(op: &'static str, started: Instant, result: Result<(), &StoreError>) {
    duration_histogram(op).record(started.elapsed().as_secs_f64());
    count_error(op, result);
}

fn count_error(op: &'static str, result: Result<(), &StoreError>) {
    if let Err(e) = result {
        metrics::counter!("sessionkit_store_errors_total", "op" => op, "kind" => e.kind())
            .increment(1);
        tracing::warn!(op, error = %e, "session store operation failed");
    }
}

impl<T: SessionData, S: Store<T>> Sessions<T, S> {
    /// Puts a store and a configuration together.
    pub fn new(store: S, config: Config) -> Self {
        let callbacks = config.callbacks.clone();
        store.on_removed(Arc::new(move |r: &Removed| {
            callbacks.emit(
                EventKind::Deleted(DeleteReason::Evicted),
                r.owner.as_deref(),
            )
        }));
        Sessions {
            inner: Arc::new(Core {
                store,
                config,
                _data: PhantomData,
            }),
        }
    }

    /// The store.
    pub fn store(&self) -> &S {
        &self.inner.store
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    #[cfg(any(feature = "axum", feature = "actix"))]
    pub(crate) fn engine(&self) -> Arc<dyn Engine<T>> {
        self.inner.clone()
    }

    /// Loads the session a cookie value names, or starts a fresh one when
    /// there is no cookie or it names no live session. Only a store failure
    /// is an error.
    ///
    /// With client binding on, this load has no client to check: it neither
    /// refuses a bound session nor binds an unbound one (a background job or
    /// a WebSocket task that holds the cookie must not log its user out).
    /// A request from a client goes through [`Sessions::load_for`] (the
    /// middleware does), which does check.
    pub async fn load(&self, cookie_value: Option<&str>) -> Result<Session<T>, StoreError> {
        load_session(&*self.inner, cookie_value, &NO_CLIENT).await
    }

    /// [`Sessions::load`] for a request from `client` (see [`crate::binding`]):
    /// a session bound to another client is not returned.
    pub async fn load_for(
        &self,
        cookie_value: Option<&str>,
        client: &ClientInfo,
    ) -> Result<Session<T>, StoreError> {
        load_session(&*self.inner, cookie_value, client).await
    }

    /// Saves, regenerates or deletes as the request left the session, and
    /// says what to do with the cookie. `incoming` is the cookie value the
    /// request carried.
    pub async fn commit(
        &self,
        session: &Session<T>,
        incoming: Option<&str>,
    ) -> Result<CookieAction, StoreError> {
        commit_session(&*self.inner, session, incoming).await
    }

    /// Deletes one session by id (an admin action); fires `on_deleted` with
    /// the session's owner, read from the store first (one more store call:
    /// an owner changed between the two is reported as it was read).
    pub async fn delete(&self, id: &crate::SessionId) -> Result<bool, StoreError> {
        // Timed like any load; skipped where the store keeps no session
        // (a cookie store: its delete removes nothing).
        let owner = if self.inner.store.holds_sessions() {
            let started = Instant::now();
            let found = self.inner.store.load(&id.encode()).await;
            observe("load", started, found.as_ref().map(|_| ()));
            match found {
                Ok(Some(record)) if record.id == *id => record.owner,
                // Not readable (gone, undecodable, the store failing): the
                // delete still runs, and says what it found.
                _ => None,
            }
        } else {
            None
        };
        let existed = self.inner.timed_delete(id).await?;
        if existed {
            self.inner.config.callbacks.emit(
                EventKind::Deleted(DeleteReason::Destroyed),
                owner.as_deref(),
            );
        }
        Ok(existed)
    }
}

impl<T: SessionData, S: QueryStore<T>> Sessions<T, S> {
    /// Every live session of one owner (through the store's index), with
    /// its deadlines as a load would see them: clamped to the current
    /// policy (a shortened idle timeout or lifetime applies to sessions
    /// issued before it), those dead under it left out. Stores keep the
    /// deadlines they were written with and list by those.
    ///
    /// Each is named by its [`SessionHandle`], not its id: show it, put it
    /// in a form, and pass it back to [`Sessions::delete_handle`] to revoke
    /// that one session ("sign out this device").
    pub async fn by_owner(&self, owner: &str) -> Result<Vec<Record<T, SessionHandle>>, StoreError> {
        Ok(self.live_now(self.inner.store.by_owner(owner).await?))
    }

    /// Deletes the session a listing named `handle` (an admin action); fires
    /// `on_deleted`, without an owner (a store cannot read a session by
    /// handle; [`Sessions::delete_listed`] reports the owner the listing
    /// showed). `false` if it was gone.
    ///
    /// It deletes whatever session has that handle. Where the handle comes
    /// from a user ("sign out that device"), use [`Sessions::delete_handle_of`],
    /// which deletes it only if it is that user's.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), sessionkit::StoreError> {
    /// use sessionkit::store::memory::MemoryStore;
    /// use sessionkit::{Config, SessionHandle, Sessions};
    ///
    /// let sessions = Sessions::new(MemoryStore::<u32>::new(), Config::default());
    /// let a = sessions.load(None).await?;
    /// a.set_owner(Some("ada"));
    /// sessions.commit(&a, None).await?;
    /// let listed = sessions.by_owner("ada").await?;
    /// // A handle shown in an admin page comes back as text.
    /// let text = listed[0].id.to_string();
    /// let handle: SessionHandle = text.parse().expect("64 hex digits");
    /// assert!(sessions.delete_handle(&handle).await?);
    /// assert!(sessions.by_owner("ada").await?.is_empty());
    /// # Ok(()) }
    /// ```
    pub async fn delete_handle(&self, handle: &SessionHandle) -> Result<bool, StoreError> {
        self.delete_named(handle, None).await
    }

    /// Deletes the session named `handle` only if it is one of `owner`'s
    /// ("sign out that device", with the handle from a form): `false` if
    /// `owner` has no such session. O(that owner's sessions), through
    /// [`QueryStore::delete_handle_of`]: the memory store checks the owner
    /// under the lock it deletes with; other stores list the owner's
    /// sessions, then delete, so a session handed to another owner between
    /// the two is deleted all the same.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), sessionkit::StoreError> {
    /// use sessionkit::store::memory::MemoryStore;
    /// use sessionkit::{Config, Sessions};
    ///
    /// let sessions = Sessions::new(MemoryStore::<u32>::new(), Config::default());
    /// let s = sessions.load(None).await?;
    /// s.set_owner(Some("ada"));
    /// sessions.commit(&s, None).await?;
    /// let handle = sessions.by_owner("ada").await?[0].id;
    /// assert!(!sessions.delete_handle_of("mallory", &handle).await?);
    /// assert!(sessions.delete_handle_of("ada", &handle).await?);
    /// # Ok(()) }
    /// ```
    pub async fn delete_handle_of(
        &self,
        owner: &str,
        handle: &SessionHandle,
    ) -> Result<bool, StoreError> {
        let existed = timed_as_delete(self.inner.store.delete_handle_of(owner, handle)).await?;
        if existed {
            self.inner
                .config
                .callbacks
                .emit(EventKind::Deleted(DeleteReason::Destroyed), Some(owner));
        }
        Ok(existed)
    }

    /// [`Sessions::delete_handle`] of a listed session, reporting its owner
    /// as listed in the `on_deleted` event.
    pub async fn delete_listed(
        &self,
        listed: &Record<T, SessionHandle>,
    ) -> Result<bool, StoreError> {
        self.delete_named(&listed.id, listed.owner.as_deref()).await
    }

    async fn delete_named(
        &self,
        handle: &SessionHandle,
        owner: Option<&str>,
    ) -> Result<bool, StoreError> {
        let existed = timed_as_delete(self.inner.store.delete_handle(handle)).await?;
        if existed {
            self.inner
                .config
                .callbacks
                .emit(EventKind::Deleted(DeleteReason::Destroyed), owner);
        }
        Ok(existed)
    }

    /// `records` as loads would see them now (see [`Sessions::by_owner`]).
    fn live_now(
        &self,
        mut records: Vec<Record<T, SessionHandle>>,
    ) -> Vec<Record<T, SessionHandle>> {
        let cfg = &self.inner.config;
        let now = cfg.clock.now();
        records.retain_mut(|r| {
            r.clamp_deadlines(&cfg.expiry);
            r.expired(now).is_none()
        });
        records
    }

    /// Deletes every session of one owner ("log out everywhere"); returns how
    /// many were deleted. Fires `on_deleted` for each, also for those a
    /// failed revoke deleted before it stopped ([`StoreError::Partial`]).
    pub async fn revoke_owner(&self, owner: &str) -> Result<usize, StoreError> {
        let removed = self
            .inner
            .store
            .delete_owner(owner)
            .await
            .map_err(|e| self.emit_partial(e, DeleteReason::OwnerRevoked))?;
        Ok(self.emit_removed(&removed, DeleteReason::OwnerRevoked))
    }

    /// The sessions matching a predicate, as [`Sessions::by_owner`] gives
    /// them (deadlines clamped to the current policy, those dead under it
    /// left out; the predicate sees the stored deadlines).
    pub async fn find_by(
        &self,
        predicate: Predicate<'_, T>,
    ) -> Result<Vec<Record<T, SessionHandle>>, StoreError> {
        Ok(self.live_now(self.inner.store.find_by(predicate).await?))
    }

    /// The number of sessions the store holds as live, by the deadlines they
    /// were written with: after a shortened idle timeout or lifetime, it
    /// still counts sessions loads would find dead (until they lapse). The
    /// Redis store counts keys, so values it cannot decode (which listings
    /// skip) count too. [`Sessions::store`]'s `iter` streams what the store
    /// holds, without the clamping [`Sessions::find_by`] applies.
    pub async fn count(&self) -> Result<usize, StoreError> {
        self.inner.store.count().await
    }

    /// Deletes every session matching a predicate; fires `on_deleted` for
    /// each, also for those a failed delete removed before it stopped
    /// ([`StoreError::Partial`]).
    ///
    /// The predicate is judged on each session as listed. The memory store
    /// judges it again under the session's lock as it deletes; the Redis and
    /// clustered stores cannot (the predicate is Rust, the delete a script),
    /// so a session changed between the listing and its delete (a
    /// `set_owner` without a regenerate, say) is deleted if it matched when
    /// listed, and reported with what it held then.
    pub async fn bulk_delete(&self, predicate: Predicate<'_, T>) -> Result<usize, StoreError> {
        let removed = self
            .inner
            .store
            .bulk_delete(predicate)
            .await
            .map_err(|e| self.emit_partial(e, DeleteReason::BulkDelete))?;
        Ok(self.emit_removed(&removed, DeleteReason::BulkDelete))
    }

    /// Fires `on_deleted` for what a failed bulk operation removed before it
    /// stopped ([`StoreError::Partial`]); passes the error on.
    fn emit_partial(&self, error: StoreError, reason: DeleteReason) -> StoreError {
        self.emit_removed(error.removed(), reason);
        error
    }

    fn emit_removed(&self, removed: &[Removed], reason: DeleteReason) -> usize {
        for r in removed {
            self.inner
                .config
                .callbacks
                .emit(EventKind::Deleted(reason), r.owner.as_deref());
        }
        removed.len()
    }
}

/// Runs a store delete, timed and its errors counted as `op="delete"`.
async fn timed_as_delete<R>(
    delete: impl std::future::Future<Output = Result<R, StoreError>>,
) -> Result<R, StoreError> {
    let started = Instant::now();
    let r = delete.await;
    observe("delete", started, r.as_ref().map(|_| ()));
    r
}

impl<T: SessionData, S: Store<T>> Core<T, S> {
    /// A store delete, timed and its errors counted like loads and saves
    /// (`sessionkit_store_duration_seconds`, `sessionkit_store_errors_total`
    /// with `op="delete"`), whichever path deletes.
    async fn timed_delete(&self, id: &crate::SessionId) -> Result<bool, StoreError> {
        timed_as_delete(self.store.delete(id)).await
    }

    /// [`Core::timed_delete`] for a logout: follows a recent regenerate
    /// ([`Store::delete_following`]).
    async fn timed_delete_following(
        &self,
        id: &crate::SessionId,
    ) -> Result<crate::store::Followed, StoreError> {
        timed_as_delete(self.store.delete_following(id)).await
    }

    /// The binding fingerprint of `client` under the current key, base64url,
    /// when binding is on and there is a client ([`NO_CLIENT`] is none).
    fn fingerprint(&self, client: &ClientInfo) -> Option<String> {
        if std::ptr::eq(client, &NO_CLIENT) {
            return None;
        }
        let cfg = &self.config;
        let key = cfg.binding_key.as_ref().filter(|_| cfg.binding.enabled())?;
        Some(URL_SAFE_NO_PAD.encode(binding::fingerprint(key.current(), client, &cfg.binding)))
    }

    /// Whether `bound` is `client`'s fingerprint under a previous binding key
    /// (made before a key rotation).
    fn bound_under_previous_key(&self, bound: &str, client: &ClientInfo) -> bool {
        let cfg = &self.config;
        let Some(key) = cfg.binding_key.as_ref() else {
            return false;
        };
        key.previous().any(|k| {
            let print = URL_SAFE_NO_PAD.encode(binding::fingerprint(k, client, &cfg.binding));
            bool::from(print.as_bytes().ct_eq(bound.as_bytes()))
        })
    }

    /// Another client presented a bound session: it gets a fresh one.
    async fn binding_mismatch(
        &self,
        record: Record<T>,
        clock: Arc<dyn crate::Clock>,
        print: String,
    ) -> Result<Session<T>, StoreError> {
        let cfg = &self.config;
        metrics::counter!("sessionkit_binding_mismatches_total").increment(1);
        tracing::info!("session presented by a client other than the one it is bound to");
        cfg.callbacks
            .emit(EventKind::BindingMismatch, record.owner.as_deref());
        // Best effort, as for an expired session: the client is handed a
        // fresh session whether or not the store could delete this one (a
        // store error here made the legitimate user whose address changed
        // get a 503, and each retry report the mismatch again).
        let deleted = cfg.binding.destroy_on_mismatch
            && match self.timed_delete(&record.id).await {
                Ok(deleted) => deleted,
                Err(e) => {
                    tracing::warn!(
                        error = %e,
                        "could not delete a session presented by another client; it stays refused to it"
                    );
                    false
                }
            };
        if deleted {
            cfg.callbacks.emit(
                EventKind::Deleted(DeleteReason::BindingMismatch),
                record.owner.as_deref(),
            );
        }
        // The cookie is not this client's to keep: remove it unless a new session replaces it.
        Ok(Session::fresh(clock, cfg.expiry, true, Some(print)))
    }
}

impl<T: SessionData, S: Store<T>> Core<T, S> {
    /// Everything a load does after the store answered, up to the point
    /// where I/O may be needed again.
    fn after_load(
        &self,
        loaded: Result<Option<Record<T>>, StoreError>,
        client: &ClientInfo,
        print: Option<String>,
    ) -> Result<Loaded<T>, StoreError> {
        let cfg = &self.config;
        let clock = cfg.clock.clone();
        let loaded = match loaded {
            // Not a store failure: one value the store cannot read (e.g. the
            // session type changed). Start fresh, as for a tampered cookie.
            Err(StoreError::Decode(_)) => {
                metrics::counter!("sessionkit_undecodable_sessions_total").increment(1);
                metrics::counter!("sessionkit_invalid_lookups_total").increment(1);
                tracing::warn!("stored session could not be decoded; starting a fresh one");
                // Its cookie can never be used again: expire it.
                return Ok(Loaded::Ready(Session::fresh(
                    clock, cfg.expiry, true, print,
                )));
            }
            other => other?,
        };
        let Some(mut record) = loaded else {
            metrics::counter!("sessionkit_invalid_lookups_total").increment(1);
            // The cookie is left in the browser: it may be the old id of a
            // session another request has just regenerated (a login), and
            // expiring it would expire the new cookie, which has the same
            // name, should this response arrive last.
            return Ok(Loaded::Ready(Session::fresh(
                clock, cfg.expiry, false, print,
            )));
        };
        let now = clock.now();
        // Deadlines written under a longer timeout than the one configured
        // now end where the current one says.
        record.clamp_deadlines(&cfg.expiry);
        if let Some(kind) = record.expired(now) {
            return Ok(Loaded::Expired(record, kind, print));
        }
        let mut rebound = false;
        let bound = print.is_some();
        if let Some(print) = print {
            match &record.binding {
                Some(bound) if bool::from(bound.as_bytes().ct_eq(print.as_bytes())) => {}
                // Bound before a key rotation: re-bound under the current key
                // with the next write.
                Some(bound) if self.bound_under_previous_key(bound, client) => {
                    record.binding = Some(print);
                    rebound = true;
                }
                Some(_) => return Ok(Loaded::Mismatch(record, print)),
                // Created before binding was turned on: bind it to this client
                // (written with the session's next save).
                None => {
                    record.binding = Some(print);
                    rebound = true;
                }
            }
        }
        let touch = cfg
            .expiry
            .touch_on_load(now, record.idle_deadline, record.absolute_deadline);
        if touch && self.store.holds_sessions() {
            // `Loaded` is told once the write ahead found it still there.
            return Ok(Loaded::Expiring(record, rebound, bound));
        }
        cfg.callbacks
            .emit(EventKind::Loaded, record.owner.as_deref());
        if touch {
            // The cookie carries the session: nothing to write now, but the
            // activity is recorded at the load, so the commit writes it even
            // if the request ends past the deadline the session had (where a
            // touch decided at the commit would find nothing left to move).
            let session = Session::loaded(record, clock, cfg.expiry, rebound);
            session.touch();
            return Ok(Loaded::Ready(session));
        }
        Ok(Loaded::Ready(Session::loaded(
            record, clock, cfg.expiry, rebound,
        )))
    }

    /// Records the activity of a session found close to its idle deadline
    /// before the handler runs (see [`ExpiryPolicy::touch_on_load`]): the
    /// store would refuse the request's save had the deadline passed
    /// meanwhile. Best effort: on a store error the session is handed out
    /// marked touched, so that its commit writes the activity.
    ///
    /// [`ExpiryPolicy::touch_on_load`]: crate::expiry::ExpiryPolicy::touch_on_load
    async fn touch_ahead(
        &self,
        mut record: Record<T>,
        rebound: bool,
        bound: bool,
    ) -> Result<Session<T>, StoreError> {
        let cfg = &self.config;
        let clock = cfg.clock.clone();
        record.touch(clock.now(), &cfg.expiry);
        let changes = MetaChanges {
            binding: rebound,
            ..MetaChanges::NONE
        };
        let started = Instant::now();
        let outcome = self
            .store
            .save(Save::update(&record, None).with_changes(changes))
            .await;
        observe("save", started, outcome.as_ref().map(|_| ()));
        // Whether the commit must write the activity again: it did not
        // reach the store, or the store answered a new cookie value (which
        // only the commit can send).
        let again = match outcome {
            // The version a server-side update writes (another request's
            // write in between makes it higher: the request's own save then
            // merges, as after any conflict).
            Ok(SaveOutcome::Kept) => {
                record.version = record.version.wrapping_add(1);
                false
            }
            Ok(SaveOutcome::Saved(_)) => {
                record.version = record.version.wrapping_add(1);
                true
            }
            // Deleted since the load (a logout, a revoke): as if the load
            // had found nothing (no `Loaded` event); the cookie is left
            // alone (see `after_load`).
            Ok(SaveOutcome::Gone) => {
                let print = record.binding.filter(|_| bound);
                return Ok(Session::fresh(clock, cfg.expiry, false, print));
            }
            Err(e) => {
                tracing::debug!(error = %e, "could not record a session's activity ahead of its request");
                true
            }
        };
        cfg.callbacks
            .emit(EventKind::Loaded, record.owner.as_deref());
        let session = Session::loaded(record, clock, cfg.expiry, rebound);
        if again {
            session.touch();
        }
        Ok(session)
    }

    /// Decides what a finished request means for the store.
    fn plan(&self, session: &Session<T>, now: std::time::SystemTime) -> Plan {
        session.commit_started();
        let cfg = &self.config;
        let dirty = session.is_dirty();
        let is_new = session.is_new();
        // Decide under the lock, act after it: no guard lives across an await.
        session.with_meta(|m| {
            if m.destroyed {
                let victim = if is_new {
                    None
                } else {
                    Some(m.regenerated_from.unwrap_or(m.record.id))
                };
                // Reported under the owner the store holds: a logout that
                // clears the owner before destroying is still that user's.
                let owner = match (&m.owner_set, is_new) {
                    (true, false) => m.owner_loaded.clone(),
                    _ => m.record.owner.clone(),
                };
                return Plan::Delete(victim, owner, m.stale_cookie);
            }
            let needs_touch = !is_new
                && cfg
                    .expiry
                    .needs_touch(now, m.record.idle_deadline, m.record.absolute_deadline);
            // A write is happening anyway: record the activity for free.
            if needs_touch || (dirty && cfg.expiry.sliding) {
                m.record.touch(now, &cfg.expiry);
            }
            if !(dirty || (!is_new && (m.touched || needs_touch))) {
                return Plan::Nothing(m.stale_cookie);
            }
            let mut meta = m.record.clone();
            // Unread flash from earlier requests stays; new flash goes after it.
            let mut flash = m.visible_flash[..m.incoming_flash].to_vec();
            let changes = Changes {
                // Taken, not cloned: a session is committed once.
                flash_taken: std::mem::take(&mut m.flash_taken),
                flash_added: meta.flash.len(),
                owner: m.owner_set,
                binding: m.binding_set,
            };
            flash.append(&mut meta.flash);
            crate::flash::keep_newest(&mut flash);
            meta.flash = flash;
            let kind = if is_new {
                SaveKind::Create
            } else if let Some(old) = m.regenerated_from {
                SaveKind::Regenerate { old }
            } else {
                SaveKind::Update
            };
            Plan::Save(meta, kind, changes)
        })
    }

    /// Events and the cookie action for a save the store answered.
    fn after_save<U>(
        &self,
        outcome: Result<SaveOutcome, StoreError>,
        record: &Record<U>,
        kind: SaveKind,
        now: std::time::SystemTime,
        incoming: Option<&str>,
    ) -> Result<CookieAction, StoreError> {
        let cfg = &self.config;
        let owner = record.owner.as_deref();
        let value = match outcome? {
            // Deleted meanwhile (logout, revoke) or regenerated away by an
            // overlapping request (a login): the cookie the browser holds now
            // may be that request's new one, so it is left alone.
            //
            // Counted and logged: the changes are dropped, which is right
            // after a logout but not when the session reached its idle
            // deadline while the request ran (the load found it alive, the
            // store refused the save as expired): a high rate says requests
            // run long against the idle timeout.
            SaveOutcome::Gone => {
                metrics::counter!("sessionkit_saves_dropped_total").increment(1);
                tracing::debug!(
                    "a save found its session gone (deleted, regenerated away, or expired \
                     during the request); its changes are dropped"
                );
                return Ok(CookieAction::None);
            }
            // An update that kept the cookie the browser sent: nothing to send.
            SaveOutcome::Kept if kind == SaveKind::Update && incoming.is_some() => {
                return Ok(CookieAction::None);
            }
            // `Kept` is only meant for updates; elsewhere the cookie is the id.
            SaveOutcome::Kept => record.id.encode(),
            SaveOutcome::Saved(value) => value,
        };
        match kind {
            SaveKind::Create => cfg.callbacks.emit(EventKind::Started, owner),
            SaveKind::Regenerate { .. } => cfg.callbacks.emit(EventKind::Regenerated, owner),
            SaveKind::Update => {}
        }
        if kind == SaveKind::Update && incoming == Some(value.as_str()) {
            return Ok(CookieAction::None);
        }
        let max_age = record
            .absolute_deadline
            .duration_since(now)
            .unwrap_or(Duration::ZERO);
        Ok(CookieAction::Set { value, max_age })
    }
}

#[async_trait]
impl<T: SessionData, S: Store<T>> Engine<T> for Core<T, S> {
    fn config(&self) -> &Config {
        &self.config
    }

    fn load_now(
        &self,
        cookie_value: Option<&str>,
        client: &ClientInfo,
    ) -> Option<Result<Loaded<T>, StoreError>> {
        let Some(value) = cookie_value else {
            let cfg = &self.config;
            let print = self.fingerprint(client);
            let fresh = Session::fresh(cfg.clock.clone(), cfg.expiry, false, print);
            return Some(Ok(Loaded::Ready(fresh)));
        };
        let started = sampled_timer();
        let loaded = self.store.load_now(value)?;
        observe_sampled("load", started, loaded.as_ref().map(|_| ()));
        // After the store answered: when it cannot, `load_io` computes it.
        let print = self.fingerprint(client);
        Some(self.after_load(loaded, client, print))
    }

    async fn load_io(
        &self,
        cookie_value: &str,
        client: &ClientInfo,
    ) -> Result<Loaded<T>, StoreError> {
        let print = self.fingerprint(client);
        let started = Instant::now();
        let load = self.store.load(cookie_value);
        let loaded = if tracing::enabled!(tracing::Level::DEBUG) {
            load.instrument(tracing::debug_span!("sessionkit.store.load"))
                .await
        } else {
            // See `tests/tracing_spans.rs`: a span nobody
            // records is not free.
            load.await
        };
        observe("load", started, loaded.as_ref().map(|_| ()));
        self.after_load(loaded, client, print)
    }

    async fn settle(&self, loaded: Loaded<T>) -> Result<Session<T>, StoreError> {
        let cfg = &self.config;
        let clock = cfg.clock.clone();
        match loaded {
            Loaded::Ready(session) => Ok(session),
            Loaded::Expired(record, kind, print) => {
                // The store may still hold it (a cookie store cannot delete);
                // deleting is best effort, the deadline already makes it dead.
                let deleted = match self.timed_delete(&record.id).await {
                    Ok(deleted) => deleted,
                    Err(e) => {
                        tracing::debug!(error = %e, "could not delete an expired session");
                        false
                    }
                };
                let owner = record.owner.as_deref();
                cfg.callbacks.emit(EventKind::Expired(kind), owner);
                // Only the request whose delete removed it reports the
                // deletion: parallel requests that loaded the session before
                // the delete, or a load racing the store's own sweep (which
                // reported `Evicted`), would count one deletion twice.
                if deleted {
                    cfg.callbacks
                        .emit(EventKind::Deleted(DeleteReason::Expired(kind)), owner);
                }
                // The cookie is expired only by the request whose delete
                // removed the session: others that loaded it meanwhile (a
                // page's parallel requests while one of them logs in anew),
                // and every request of a cookie store, which cannot delete,
                // leave it to its `Max-Age` (see the module docs).
                Ok(Session::fresh(clock, cfg.expiry, deleted, print))
            }
            Loaded::Mismatch(record, print) => self.binding_mismatch(record, clock, print).await,
            Loaded::Expiring(record, rebound, bound) => {
                self.touch_ahead(record, rebound, bound).await
            }
        }
    }

    fn commit_now(&self, session: &Session<T>, incoming: Option<&str>) -> CommitStep<T> {
        let now = self.config.clock.now();
        let (meta, kind, changes) = match self.plan(session, now) {
            Plan::Nothing(stale) => {
                return CommitStep::Done(Ok(if stale {
                    CookieAction::Remove
                } else {
                    CookieAction::None
                }));
            }
            Plan::Delete(victim, owner, stale) => {
                return CommitStep::Io(Pending::Delete(victim, owner, stale))
            }
            Plan::Save(meta, kind, changes) => (meta, kind, changes),
        };
        // The data lock is held across a synchronous save (no await; nothing
        // the store runs can reach this session), so the data moves into the
        // record to save and back after it, instead of being copied; no one
        // can see the placeholder left in the cell meanwhile (only a panic in
        // the store, e.g. in the data's `Serialize`, would leave it there,
        // failing this request's commit anyway).
        if session.data_held_here() {
            tracing::error!(
                "a session's data is still borrowed on this thread at commit (a guard from \
                 Session::data() held by a task that outlived its handler?); not saved"
            );
            // Not `Backend`: that answers 503 with `Retry-After`, and a
            // retry fails the same way (a programming error, not an outage).
            return CommitStep::Done(Err(StoreError::Encode(
                "the session's data was still borrowed when the response was committed".into(),
            )));
        }
        let mut cell = session.shared.data.write();
        let record = meta.join(std::mem::take(&mut cell.data));
        let started = sampled_timer();
        let save = Save::new(&record, cell.base.as_ref(), kind).with_changes(changes.borrowed());
        match self.store.save_now(save) {
            Some(outcome) => {
                let (data, record) = record.split();
                cell.data = data;
                drop(cell);
                observe_sampled("save", started, outcome.as_ref().map(|_| ()));
                CommitStep::Done(self.after_save(outcome, &record, kind, now, incoming))
            }
            None => {
                // An asynchronous save owns its record; the session keeps a copy.
                cell.data = record.data.clone();
                let base = cell.base.clone();
                drop(cell);
                CommitStep::Io(Pending::Save(Box::new(PendingSave {
                    record,
                    base,
                    kind,
                    changes,
                    now,
                })))
            }
        }
    }

    async fn commit_io(
        &self,
        pending: Pending<T>,
        incoming: Option<&str>,
    ) -> Result<CookieAction, StoreError> {
        let cfg = &self.config;
        match pending {
            Pending::Delete(victim, owner, stale) => {
                let ended = match victim {
                    // Ended by this request only if its delete removed the
                    // session, under this id or, when a login or an id
                    // rotation in a parallel request moved it meanwhile,
                    // under the new one (`delete_following`). One already
                    // gone otherwise (a parallel logout, a revoke) was
                    // reported by whoever removed it, and the cookie may now
                    // carry another login's id (same name), which a
                    // `Max-Age=0` arriving last would log out. A cookie store
                    // cannot tell (its delete always answers `false`): the
                    // cookie is the session, so it always ends it.
                    Some(id) => {
                        let followed = self.timed_delete_following(&id).await?;
                        let ended = followed.deleted() || !self.store.holds_sessions();
                        // Under the new id, the session's owner as deleted
                        // (a login in between may have set it).
                        let owner = match followed {
                            crate::store::Followed::Moved { owner } => owner,
                            _ => owner,
                        };
                        if ended {
                            cfg.callbacks.emit(
                                EventKind::Deleted(DeleteReason::Destroyed),
                                owner.as_deref(),
                            );
                        }
                        ended
                    }
                    // Destroying a session this request created: the cookie
                    // it carried is expired only if this request found that
                    // cookie's session dead. A cookie naming no session at
                    // all may be the old one of a login that regenerated
                    // meanwhile in a parallel request; expiring it would
                    // expire the new login cookie too (same name).
                    None => stale,
                };
                Ok(if incoming.is_some() && ended {
                    CookieAction::Remove
                } else {
                    CookieAction::None
                })
            }
            Pending::Save(p) => {
                let PendingSave {
                    record,
                    base,
                    kind,
                    changes,
                    now,
                } = *p;
                let started = Instant::now();
                let save = self
                    .store
                    .save(Save::new(&record, base.as_ref(), kind).with_changes(changes.borrowed()));
                let outcome = if tracing::enabled!(tracing::Level::DEBUG) {
                    save.instrument(tracing::debug_span!("sessionkit.store.save"))
                        .await
                } else {
                    save.await
                };
                observe("save", started, outcome.as_ref().map(|_| ()));
                self.after_save(outcome, &record, kind, now, incoming)
            }
        }
    }
}
