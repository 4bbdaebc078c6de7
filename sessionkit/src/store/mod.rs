//! The store abstraction: [`Store`] for every backend, [`QueryStore`] for
//! those that can list their sessions.
//!
//! The HTTP layer hands a store the cookie value exactly as received and gets
//! back the cookie value to send. For server-side stores that value is the
//! session id; for the cookie store it is the sealed record. One trait covers
//! both, so neither the layer nor the decorators (retry, caching) have a
//! special case per store.
//!
//! Stores that cannot list sessions (the cookie store) do not implement
//! [`QueryStore`]: asking one to revoke a user's sessions is a compile error.
//!
//! # Writing a store
//! Implement [`Store`] (and [`QueryStore`] if you can), then run the
//! conformance suite from [`crate::testing`] (feature `testing`) against it.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures_util::stream::BoxStream;

use crate::error::StoreError;
use crate::id::{SessionHandle, SessionId};
use crate::record::{Record, SessionData};

mod background;
#[cfg(feature = "cluster")]
pub mod cluster;
#[cfg(feature = "cookie-store")]
pub mod cookie;
pub mod memory;
#[cfg(feature = "redis")]
pub mod redis;

/// What kind of write a [`Save`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaveKind {
    /// The first write of a new session. Must not overwrite an existing record
    /// (an id collision must never replace another user's session).
    Create,
    /// A write of a session that was loaded. Must not recreate it if it was
    /// deleted meanwhile (no resurrection of a logged-out session).
    Update,
    /// The session now lives under a new id (`record.id`); `old` must be dead
    /// when the call returns, and the new record exist before the old is gone.
    Regenerate {
        /// The id the session had when it was loaded.
        old: SessionId,
    },
}

/// A random, non-zero [`Save::write_id`].
pub(crate) fn new_write_id() -> u64 {
    let mut bytes = [0; 8];
    crate::rng::fill(&mut bytes);
    u64::from_le_bytes(bytes).max(1)
}

/// One write, as the layer hands it to a store.
///
/// `Debug` shows the record's metadata (as [`Record`]'s does), whether a
/// base is present and the changes, never data or flash texts.
pub struct Save<'a, T> {
    /// The record to write. Its `version` is the version that was loaded
    /// (0 for a new session); the store writes `version + 1` (after a merge
    /// onto a newer record, that record's version + 1).
    pub record: &'a Record<T>,
    /// The data as it was loaded, when this request changed it: on a version
    /// conflict the store reapplies the changed fields onto the latest data
    /// with [`crate::merge::reapply_changes`]. `None` when the data is unchanged.
    pub base: Option<&'a T>,
    /// Create, update or regenerate.
    pub kind: SaveKind,
    /// What this request changed besides the data (flash, owner, binding):
    /// on a version conflict [`Save::merged_onto`] applies only these onto
    /// the latest record. [`MetaChanges::NONE`] for a write that changed none.
    pub changes: MetaChanges<'a>,
    /// See [`Save::write_id`].
    pub(crate) write_id: u64,
}

impl<T> std::fmt::Debug for Save<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Save")
            .field("record", self.record)
            .field("base", &self.base.map(|_| ..))
            .field("kind", &self.kind)
            .field("changes", &self.changes)
            .finish()
    }
}

/// What one request changed in a session besides its data, so that a store
/// that finds a newer version stored ([`Save::merged_onto`]) keeps what the
/// other request did to them: a flash message it read stays read, one it set
/// stays set, an owner it changed stays changed.
///
/// `Debug` counts the flash messages taken instead of showing their texts.
#[derive(Clone, Copy, Default, PartialEq, Eq)]
pub struct MetaChanges<'a> {
    /// Stored flash messages this request read (and so consumed).
    pub flash_taken: &'a [crate::flash::FlashMessage],
    /// How many messages at the end of the record's `flash` this request set.
    pub flash_added: usize,
    /// This request set the owner.
    pub owner: bool,
    /// This request set the client binding.
    pub binding: bool,
}

impl std::fmt::Debug for MetaChanges<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetaChanges")
            .field("flash_taken", &self.flash_taken.len())
            .field("flash_added", &self.flash_added)
            .field("owner", &self.owner)
            .field("binding", &self.binding)
            .finish()
    }
}

impl MetaChanges<'_> {
    /// Nothing changed besides the data.
    pub const NONE: MetaChanges<'static> = MetaChanges {
        flash_taken: &[],
        flash_added: 0,
        owner: false,
        binding: false,
    };
}

impl<'a, T> Save<'a, T> {
    /// A write of `kind` (what [`Save::create`], [`Save::update`] and
    /// [`Save::regenerate`] build; a create has no base).
    pub fn new(record: &'a Record<T>, base: Option<&'a T>, kind: SaveKind) -> Self {
        Save {
            record,
            base,
            kind,
            changes: MetaChanges::NONE,
            write_id: 0,
        }
    }

    /// The first write of a new session (no base, nothing else changed).
    ///
    /// ```
    /// use std::time::SystemTime;
    /// use sessionkit::store::{Save, SaveKind};
    /// use sessionkit::{Config, Record, SessionId};
    ///
    /// let record = Record::new(SessionId::generate(), 7u32, SystemTime::now(), Config::default().expiry());
    /// let save = Save::create(&record);
    /// assert_eq!(save.kind, SaveKind::Create);
    /// let old = SessionId::generate();
    /// assert_eq!(Save::regenerate(&record, old, Some(&6)).kind, SaveKind::Regenerate { old });
    /// ```
    pub fn create(record: &'a Record<T>) -> Self {
        Save {
            record,
            base: None,
            kind: SaveKind::Create,
            changes: MetaChanges::NONE,
            write_id: 0,
        }
    }

    /// A write of a loaded session; `base` is the data as loaded when this
    /// request changed it (see [`Save::base`]).
    pub fn update(record: &'a Record<T>, base: Option<&'a T>) -> Self {
        Save {
            record,
            base,
            kind: SaveKind::Update,
            changes: MetaChanges::NONE,
            write_id: 0,
        }
    }

    /// The session moves from `old` to `record.id`.
    pub fn regenerate(record: &'a Record<T>, old: SessionId, base: Option<&'a T>) -> Self {
        Save {
            record,
            base,
            kind: SaveKind::Regenerate { old },
            changes: MetaChanges::NONE,
            write_id: 0,
        }
    }

    /// What this request changed besides the data (default
    /// [`MetaChanges::NONE`]).
    pub fn with_changes(mut self, changes: MetaChanges<'a>) -> Self {
        self.changes = changes;
        self
    }

    /// A random number naming this write across its repeats (0, the
    /// default: none). The resilience layer sets one before a save it may
    /// repeat ([`crate::resilience`]); the Redis store draws one for a save
    /// without (so a command its cluster client resends is known too). The
    /// Redis and clustered stores keep the ids of a session's last four
    /// writes in the stored record, and answer a repeated update that finds
    /// its id there as already done, instead of reapplying its changes over
    /// a write made since (which would put back values that write
    /// replaced). A decorator of your own that builds a new `Save` from
    /// another must carry the id over ([`Save::with_write_id`]).
    pub fn write_id(&self) -> u64 {
        self.write_id
    }

    /// This save named `id` (see [`Save::write_id`]).
    ///
    /// The id must name one logical write: the same for every repeat of
    /// that write, and drawn at random (64 bits from a good generator) so
    /// that no other write of the session carries it. A store that finds
    /// the id among the session's recent writes answers
    /// [`SaveOutcome::Kept`] without writing: two different updates given
    /// one id (a counter restarted, a constant) lose the second one's
    /// changes. `0` means "no id".
    pub fn with_write_id(mut self, id: u64) -> Self {
        self.write_id = id;
        self
    }
}

impl<T: SessionData> Save<'_, T> {
    /// The record to write when `latest` (under this session's loaded id, or
    /// the `old` one of a regenerate) was stored since this request loaded
    /// the session: `latest` with this request's changes applied. The data
    /// by [`crate::merge::reapply_changes`] (the latest data when this request
    /// changed none); flash messages this request read are dropped from the
    /// latest ones and those it set appended (unless the latest ones already
    /// end with them: this save, applied before its reply was lost, and now
    /// repeated); owner and binding are this
    /// request's if it set them, else the latest; activity times the later
    /// of the two. Id, creation time and absolute deadline are this
    /// request's (a regenerate moves the session to its new id). The
    /// version is this request's: a store writes the next one after
    /// `latest.version`.
    ///
    /// ```
    /// use sessionkit::flash::FlashMessage;
    /// use sessionkit::store::{MetaChanges, Save, SaveKind};
    /// use sessionkit::expiry::ExpiryPolicy;
    /// use sessionkit::{Record, SessionId};
    ///
    /// let note = |v: &str| FlashMessage { key: "notice".into(), value: v.into() };
    /// let loaded = Record::new(SessionId::generate(), 1u32, std::time::SystemTime::now(), &ExpiryPolicy::default());
    /// // Another request set a flash message and the owner meanwhile…
    /// let mut latest = loaded.clone();
    /// latest.flash.push(note("welcome"));
    /// latest.owner = Some("ann".into());
    /// latest.version = 1;
    /// // …while this one changed only the data.
    /// let mut mine = loaded.clone();
    /// mine.data = 2;
    /// let save = Save::update(&mine, Some(&1));
    /// let merged = save.merged_onto(latest);
    /// assert_eq!((merged.data, merged.owner.as_deref()), (2, Some("ann")));
    /// assert_eq!(merged.flash, [note("welcome")]);
    /// ```
    pub fn merged_onto(&self, latest: Record<T>) -> Record<T> {
        let mine = self.record;
        let changes = &self.changes;
        let data = match self.base {
            Some(base) => crate::merge::reapply_changes(base, &mine.data, &latest.data),
            None => latest.data,
        };
        let mut flash = latest.flash;
        for taken in changes.flash_taken {
            if let Some(i) = flash.iter().position(|f| f == taken) {
                flash.remove(i);
            }
        }
        let added = changes.flash_added.min(mine.flash.len());
        let added = &mine.flash[mine.flash.len() - added..];
        // `latest` may be this very save, applied once already (a retry
        // after a lost reply): its messages then end the list. Appending
        // them again would show each twice; an identical run set by
        // another request is shown once, the lesser harm.
        if !flash.ends_with(added) {
            flash.extend_from_slice(added);
        }
        crate::flash::keep_newest(&mut flash);
        Record {
            id: mine.id,
            data,
            flash,
            created_at: mine.created_at,
            last_access: mine.last_access.max(latest.last_access),
            idle_deadline: mine
                .idle_deadline
                .max(latest.idle_deadline)
                .min(mine.absolute_deadline),
            absolute_deadline: mine.absolute_deadline,
            owner: if changes.owner {
                mine.owner.clone()
            } else {
                latest.owner
            },
            binding: if changes.binding {
                mine.binding.clone()
            } else {
                latest.binding
            },
            version: mine.version,
            // The latest's: the write this merge makes adds its own id.
            writes: latest.writes,
        }
    }
}

impl<T> Clone for Save<'_, T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for Save<'_, T> {}

/// The result of a [`Store::save`].
///
/// `Debug` shows only the first characters of a cookie value.
#[derive(Clone, PartialEq, Eq)]
pub enum SaveOutcome {
    /// Written. The value is the cookie value for this session; the layer
    /// sends `Set-Cookie` if it differs from what the browser sent. Only
    /// RFC 6265 cookie octets (base64url is): the HTTP layers answer a save
    /// error for any other value rather than send it.
    Saved(String),
    /// Written, and the cookie value is the one the browser sent: what a
    /// server-side store answers to an update (the cookie is the session
    /// id, which an update keeps). Saves encoding the id on every write
    /// only for the layer to find it unchanged. Answer
    /// [`SaveOutcome::Saved`] to a create or a regenerate (a `Kept` there is
    /// read as `Saved` with the encoded id).
    Kept,
    /// The session was deleted meanwhile (logout, revoke, expiry) and was not
    /// written back.
    Gone,
}

impl std::fmt::Debug for SaveOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SaveOutcome::Saved(value) => f
                .debug_tuple("Saved")
                .field(&crate::id::Redacted(value))
                .finish(),
            SaveOutcome::Kept => f.write_str("Kept"),
            SaveOutcome::Gone => f.write_str("Gone"),
        }
    }
}

impl SaveOutcome {
    /// The session's cookie value after the save: the new value, `sent`
    /// when [`SaveOutcome::Kept`], `None` when the session is gone.
    ///
    /// ```
    /// use sessionkit::store::SaveOutcome;
    /// assert_eq!(SaveOutcome::Kept.cookie_value("abc").as_deref(), Some("abc"));
    /// assert_eq!(SaveOutcome::Saved("xyz".into()).cookie_value("abc").as_deref(), Some("xyz"));
    /// assert_eq!(SaveOutcome::Gone.cookie_value("abc"), None);
    /// ```
    pub fn cookie_value(self, sent: &str) -> Option<String> {
        match self {
            SaveOutcome::Saved(value) => Some(value),
            SaveOutcome::Kept => Some(sent.to_owned()),
            SaveOutcome::Gone => None,
        }
    }

    /// Whether the save wrote ([`SaveOutcome::Saved`] or [`SaveOutcome::Kept`]).
    pub fn is_saved(&self) -> bool {
        !matches!(self, SaveOutcome::Gone)
    }
}

/// A session store. Implementations must be safe to share between threads
/// and must never panic on stored data: undecodable values are
/// [`StoreError::Decode`] or `Ok(None)`, never a crash.
#[async_trait]
pub trait Store<T: SessionData>: Send + Sync + 'static {
    /// Loads the session a cookie value designates. `Ok(None)` when the value
    /// is malformed, unknown, or not authentic. Expiry is checked by the caller
    /// from the record's deadlines; a store may also drop expired records.
    async fn load(&self, cookie_value: &str) -> Result<Option<Record<T>>, StoreError>;

    /// Writes a session (see [`SaveKind`] for the rules each kind must keep).
    async fn save(&self, save: Save<'_, T>) -> Result<SaveOutcome, StoreError>;

    /// Deletes a session. Returns whether it existed.
    async fn delete(&self, id: &SessionId) -> Result<bool, StoreError>;

    /// Deletes a session for a logout ([`crate::Session::destroy`]): like
    /// [`Store::delete`], and when `id` is gone because a regenerate moved
    /// the session to a new id within the last [`MOVE_FORWARD_TTL`], deletes
    /// it under the id it moved to (following up to [`MOVE_FORWARD_HOPS`]
    /// moves). A logout racing a login or an id rotation of the same session
    /// in a parallel request then ends the session instead of finding its old
    /// id gone and leaving it alive under the new one. Says what it deleted
    /// ([`Followed`]).
    ///
    /// Only a logout follows: a bulk delete or a revoke chose its sessions by
    /// what they held when listed, and a regenerate may have changed that
    /// (an anonymous session becoming a login), so those use
    /// [`Store::delete`]. The in-tree server-side stores follow; the default
    /// is [`Store::delete`] (a store that keeps no record of moves, or a
    /// cookie store, whose cookie is the session).
    async fn delete_following(&self, id: &SessionId) -> Result<Followed, StoreError> {
        Ok(match self.delete(id).await? {
            true => Followed::Deleted,
            false => Followed::Nothing,
        })
    }

    /// [`Store::load`] answered on the spot, for stores that can do it
    /// without I/O (the data is in this process: memory, the cookie itself,
    /// a warm local cache). `None` means "I need to wait: call
    /// [`Store::load`]". The default is `None`.
    ///
    /// [`crate::Sessions`] tries it first, so a request served from memory
    /// allocates no future and takes no detour through the executor. When
    /// it returns `Some`, it must be exactly what `load` would have returned.
    fn load_now(&self, cookie_value: &str) -> Option<Result<Option<Record<T>>, StoreError>> {
        let _ = cookie_value;
        None
    }

    /// [`Store::save`] done on the spot, when the store can without I/O
    /// (same contract as [`Store::load_now`]). The default is `None`.
    fn save_now(&self, save: Save<'_, T>) -> Option<Result<SaveOutcome, StoreError>> {
        let _ = save;
        None
    }

    /// Registers a listener for sessions the store removes on its own
    /// (background expiry sweeps, eviction to stay within bounds), so that
    /// `on_deleted` fires for them too. [`crate::Sessions::new`] calls it.
    /// Stores that never remove sessions on their own keep the default no-op;
    /// decorators forward it to the store they wrap.
    ///
    /// The in-tree stores keep the first listener and ignore later ones: a
    /// store shared by several `Sessions` (one per actix-web worker, with
    /// one configuration) reports each removal once, to the first. Build
    /// the `Sessions` whose callbacks should hear of sweeps and evictions
    /// first (a second one, for an admin tool say, is not told of them).
    fn on_removed(&self, listener: RemovalListener) {
        let _ = listener;
    }

    /// Whether the store itself holds the sessions, so that its `delete`
    /// answers whether it removed one and it forgets a session at the idle
    /// deadline. The in-tree server-side stores (memory, Redis, clustered)
    /// answer `true`; the default, `false`, is what a cookie store answers
    /// and the safe guess for a store that does not say: [`crate::Sessions`]
    /// then expires the cookie on every `destroy` (a `true` store's cookie
    /// only when its delete removed the session: one already gone may be a
    /// parallel login's, moved to a new id under the same cookie name), and
    /// records the activity of a session loaded just before its idle
    /// deadline on the session, sent with the response, rather than writing
    /// it to the store ahead of the handler (see
    /// [`crate::expiry::ExpiryPolicy::touch_on_load`]). Decorators forward
    /// it; a server-side store of your own should answer `true`.
    fn holds_sessions(&self) -> bool {
        false
    }
}

/// Whether `stored`, found under `record`'s id after a create or a
/// regenerate was answered "taken" or "gone", is that very save, applied by
/// an earlier attempt whose reply was lost (a retry, or a Redis Cluster
/// client resending after a dropped connection): same creation time, and for
/// a create also the same owner and data. A new id is random (256 bits), so
/// a session under it with this creation time is this one.
pub(crate) fn is_this_save<T: SessionData>(
    stored: &Record<T>,
    record: &Record<T>,
    kind: SaveKind,
) -> bool {
    use crate::expiry::to_millis;
    let same =
        stored.id == record.id && to_millis(stored.created_at) == to_millis(record.created_at);
    if let SaveKind::Regenerate { .. } = kind {
        return same;
    }
    // As JSON values, not bytes: a map serializes in its iteration order,
    // which for a `HashMap` changes when the stored copy is read back.
    let same_data = match (
        serde_json::to_value(&stored.data),
        serde_json::to_value(&record.data),
    ) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    };
    same && stored.owner == record.owner && same_data
}

/// What [`Store::delete_following`] deleted.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Followed {
    /// Nothing: no session under the id, and no recent move led to one.
    Nothing,
    /// The session, under the id given.
    Deleted,
    /// The session under the id a regenerate had moved it to. `owner` is
    /// its owner as deleted (a login in between may have set it), for the
    /// logout's `on_deleted` event. A store that deleted a moved session
    /// it could not read answers [`Followed::Deleted`] (the event then
    /// carries the owner the logout loaded), as does the resilience layer
    /// when a retry finds nothing (an earlier attempt's reply was lost).
    Moved {
        /// The deleted session's owner.
        owner: Option<String>,
    },
}

impl Followed {
    /// Whether a session was deleted.
    ///
    /// ```
    /// use sessionkit::store::Followed;
    /// assert!(Followed::Deleted.deleted());
    /// assert!(Followed::Moved { owner: None }.deleted());
    /// assert!(!Followed::Nothing.deleted());
    /// ```
    pub fn deleted(&self) -> bool {
        !matches!(self, Followed::Nothing)
    }
}

/// How long a server-side store remembers where a regenerate moved a
/// session, for [`Store::delete_following`]: a logout whose request loaded
/// the old id before the move lands well within it.
pub const MOVE_FORWARD_TTL: Duration = Duration::from_secs(60);

/// How many moves [`Store::delete_following`] follows at most (a login and
/// an id rotation or two racing one logout).
pub const MOVE_FORWARD_HOPS: usize = 4;

/// How many times a `bulk_delete` lists the matching sessions at most: once,
/// and again after a pass in which a listed session was already gone when
/// its delete came (it may live on under a new id).
pub const BULK_DELETE_PASSES: usize = 3;

/// What one pass of a bulk delete did: what it removed, and whether a
/// session it listed was already gone when its delete came.
#[derive(Default)]
pub(crate) struct Pass {
    pub removed: Vec<Removed>,
    pub missed: bool,
}

/// Runs `pass` (list the matches, delete them) until a pass misses nothing,
/// at most [`BULK_DELETE_PASSES`] times. A pass's error carries what that
/// pass removed ([`StoreError::Partial`]); this adds the earlier passes'.
pub(crate) async fn in_passes<F, Fut>(mut pass: F) -> Result<Vec<Removed>, StoreError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Pass, StoreError>>,
{
    let mut removed = Vec::new();
    for _ in 0..BULK_DELETE_PASSES {
        match pass().await {
            Ok(p) => {
                removed.extend(p.removed);
                if !p.missed {
                    break;
                }
            }
            Err(e) => return Err(e.after_removing(removed)),
        }
    }
    Ok(removed)
}

/// Called for each session a store removes on its own (see [`Store::on_removed`]).
pub type RemovalListener = Arc<dyn Fn(&Removed) + Send + Sync>;

/// A predicate over listed records, for [`QueryStore::find_by`] and
/// [`QueryStore::bulk_delete`].
///
/// Keep it a pure test of the record: a store may run it while holding a
/// lock (the memory store checks each match again under the lock it
/// deletes with, so that a session changed since the listing is left), and
/// a predicate that calls the same store there would deadlock.
pub type Predicate<'a, T> = &'a (dyn Fn(&Record<T, SessionHandle>) -> bool + Send + Sync);

/// A session removed by a bulk operation or evicted (for events).
///
/// Named by its [`SessionHandle`], never by its id. A store that has the id
/// at hand (the memory store) builds it with [`Removed::of_id`], which hashes
/// the id only if [`Removed::handle`] is asked for: an eviction on every
/// insert into a full store pays no SHA-256 for a listener that counts.
#[derive(Debug, Clone)]
pub struct Removed {
    name: crate::id::Named,
    /// Its owner, if it had one.
    pub owner: Option<String>,
}

impl Removed {
    /// A removed session named by its handle.
    pub fn new(handle: SessionHandle, owner: Option<String>) -> Self {
        Removed {
            name: crate::id::Named::Handle(handle),
            owner,
        }
    }

    /// A removed session named by its id (kept private: only its handle is
    /// ever given out).
    pub fn of_id(id: SessionId, owner: Option<String>) -> Self {
        Removed {
            name: crate::id::Named::Id(id),
            owner,
        }
    }

    /// Its handle.
    pub fn handle(&self) -> SessionHandle {
        self.name.handle()
    }
}

/// Listing and bulk operations, for stores that keep sessions server-side.
///
/// Listings name each session by its [`SessionHandle`] (the id's SHA-256),
/// never by its id: a store need not keep ids at all (the Redis store keeps
/// only handles, so a dump of it yields no usable cookie), and a listing
/// shown to an administrator carries no credentials.
#[async_trait]
pub trait QueryStore<T: SessionData>: Store<T> {
    /// Every live session, in no particular order. The stream may be lazy
    /// (a Redis store scans in batches).
    fn iter(&self) -> BoxStream<'_, Result<Record<T, SessionHandle>, StoreError>>;

    /// The sessions matching `predicate`.
    async fn find_by(
        &self,
        predicate: Predicate<'_, T>,
    ) -> Result<Vec<Record<T, SessionHandle>>, StoreError> {
        use futures_util::StreamExt;
        let mut out = Vec::new();
        let mut s = self.iter();
        while let Some(r) = s.next().await {
            let r = r?;
            if predicate(&r) {
                out.push(r);
            }
        }
        Ok(out)
    }

    /// The number of live sessions.
    async fn count(&self) -> Result<usize, StoreError> {
        use futures_util::StreamExt;
        let mut n = 0;
        let mut s = self.iter();
        while let Some(r) = s.next().await {
            r?;
            n += 1;
        }
        Ok(n)
    }

    /// Deletes the sessions matching `predicate`; returns what was deleted.
    /// An error after some were deleted is a [`StoreError::Partial`]
    /// carrying them (so their `on_deleted` events still fire).
    ///
    /// A listed session that is gone by the time of its delete may have been
    /// regenerated meanwhile (a login: same data under a new id, which still
    /// matches); the listing then runs again, up to [`BULK_DELETE_PASSES`]
    /// times in all, so a purge does not miss it. A session whose id
    /// rotates *while the listing runs* can still escape: a scan that has
    /// passed the new id's place and not reached the old one lists neither,
    /// and no delete fails to tell. Run the purge again after a busy
    /// period, or revoke by owner ([`QueryStore::delete_owner`]), which
    /// follows the owner index.
    async fn bulk_delete(&self, predicate: Predicate<'_, T>) -> Result<Vec<Removed>, StoreError> {
        in_passes(|| async move {
            let mut pass = Pass::default();
            for r in self.find_by(predicate).await? {
                match self.delete_handle(&r.id).await {
                    Ok(true) => pass.removed.push(Removed::new(r.id, r.owner)),
                    Ok(false) => pass.missed = true,
                    Err(e) => return Err(e.after_removing(pass.removed)),
                }
            }
            Ok(pass)
        })
        .await
    }

    /// Every live session of one owner, through an index: O(that owner's sessions).
    async fn by_owner(&self, owner: &str) -> Result<Vec<Record<T, SessionHandle>>, StoreError>;

    /// Deletes every session of one owner; returns what was deleted.
    async fn delete_owner(&self, owner: &str) -> Result<Vec<Removed>, StoreError>;

    /// Deletes the session a listing named `handle`; `true` if it existed.
    /// Like [`Store::delete`], final at once: a request that loaded the
    /// session before cannot save it back. Unlike it, does not follow an id
    /// rotation made after the listing (the handle names the old id): list
    /// again, as [`QueryStore::bulk_delete`] does.
    async fn delete_handle(&self, handle: &SessionHandle) -> Result<bool, StoreError>;

    /// Deletes the session named `handle` only if it is one of `owner`'s
    /// ("sign out that device"); `true` if it was deleted.
    ///
    /// The default lists the owner's sessions ([`QueryStore::by_owner`]),
    /// then deletes the one named `handle` ([`QueryStore::delete_handle`]):
    /// O(that owner's sessions) plus the delete, and a session handed to
    /// another owner between the two is deleted all the same. The memory
    /// store overrides it: it hashes only the owner's ids (its
    /// `delete_handle` hashes every id) and checks the owner under the lock
    /// it deletes with.
    async fn delete_handle_of(
        &self,
        owner: &str,
        handle: &SessionHandle,
    ) -> Result<bool, StoreError> {
        if self.by_owner(owner).await?.iter().any(|r| r.id == *handle) {
            self.delete_handle(handle).await
        } else {
            Ok(false)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[derive(Clone, Default, serde::Serialize, serde::Deserialize)]
    struct Prefs {
        flags: HashMap<String, u32>,
        #[serde(skip)]
        scratch: Option<String>,
    }

    /// The stored copy read back is the same save even though its map
    /// iterates in another order and its skipped field is gone: compared as
    /// JSON values, not as serialized bytes.
    #[test]
    fn a_save_read_back_is_recognised_whatever_its_map_order() {
        let mut data = Prefs::default();
        for i in 0..64 {
            data.flags.insert(format!("flag-{i}"), i);
        }
        data.scratch = Some("not stored".into());
        let policy = crate::expiry::ExpiryPolicy::default();
        let mut record = Record::new(
            SessionId::generate(),
            data,
            std::time::SystemTime::now(),
            &policy,
        );
        record.owner = Some("ann".into());
        let bytes = serde_json::to_vec(&record.data).unwrap();
        let mut stored = record.clone();
        stored.data = serde_json::from_slice(&bytes).unwrap();
        assert!(is_this_save(&stored, &record, SaveKind::Create));
        let mut other = stored.clone();
        other.data.flags.insert("flag-0".into(), 99);
        assert!(!is_this_save(&other, &record, SaveKind::Create));
        other = stored.clone();
        other.owner = Some("bob".into());
        assert!(!is_this_save(&other, &record, SaveKind::Create));
    }
}
