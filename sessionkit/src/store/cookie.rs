//! [`CookieStore`]: the whole session sealed inside the cookie, no server state.
//!
//! The cookie value is the complete [`Record`] (data, flash, owner, creation
//! time, idle and absolute deadlines), serialized (compressed only if you
//! turn it on: see [`CookieStoreBuilder::compression`]) and sealed with AEAD ([`crate::codec`]) under the key ring's
//! [`KeyPurpose::CookieSealing`] subkey, bound to the cookie name: a value
//! copied into another cookie, or sealed for another purpose, does not open.
//!
//! ```
//! use axum::{routing::get, Router};
//! use sessionkit::keys::KeyRing;
//! use sessionkit::store::cookie::CookieStore;
//! use sessionkit::{Config, Session, SessionLayer, Sessions};
//!
//! #[derive(serde::Serialize, serde::Deserialize, Default, Clone)]
//! struct Visits { count: u64 }
//!
//! async fn hit(session: Session<Visits>) -> String {
//!     session.data_mut().count += 1;
//!     format!("visit {}", session.data().count)
//! }
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! // In production: the secret comes from your secret store (e.g. SESSION_SECRET).
//! let ring = KeyRing::builder().current(1, KeyRing::generate_secret()).build().unwrap();
//! let config = Config::default();
//! let store = CookieStore::<Visits>::new(&ring, &config);
//! let sessions = Sessions::new(store, config);
//! let app: Router = Router::new().route("/", get(hit)).layer(SessionLayer::new(&sessions));
//! # let _ = app;
//! # }
//! ```
//!
//! # What opening checks
//! A value longer than `max_cookie_len` (the 4096-byte browser limit by
//! default; a save checks the whole `Set-Cookie` header against it, which
//! is longer than the value, so whatever is saved opens) is refused before
//! it is decoded; then base64url, the envelope, the key id (it must be in the
//! ring), the tag, the gzip size bound and the deadlines inside the sealed
//! record. A copied cookie replayed after its idle or absolute deadline
//! fails even if a browser (or an attacker) still sends it: `on_expired`
//! fires for every request that presents it, `on_deleted` never (nothing
//! here can be deleted; see [`DeleteReason::Expired`](crate::DeleteReason)).
//! Every failure means "no session": the request gets a fresh one and
//! never an error.
//!
//! # Size: the 4096-byte limit
//! Browsers drop cookies over about 4096 bytes, silently. Every save
//! measures the whole `Set-Cookie` header (name, value and attributes) and,
//! over [`CookieStoreBuilder::max_cookie_len`] (default 4096), fails with
//! [`StoreError::CookieTooLarge`] `{ size, limit }` instead of sending a
//! cookie the browser would throw away. The tower layer then replaces the
//! handler's response with its error responder's (by default a `500` with
//! a short text body) and sends no `Set-Cookie`, so the browser keeps its
//! previous, valid session. To handle it yourself, install an
//! [`ErrorResponder`](crate::http::ErrorResponder) with
//! `SessionLayer::error_responder` and match on `CookieTooLarge` (e.g. a
//! `413` telling the user the cart is full), and keep large data server-side:
//! store an id in the session and the data in your database, or use a
//! server-side store.
//!
//! # When the cookie is rewritten
//! Like every store, only when the session changed, on [`Session::touch`],
//! or, with sliding expiration, once less than half of the idle window is
//! left ([`crate::expiry`]): a read-only request in the first half of the
//! window sends no `Set-Cookie`. Each write seals afresh (new nonce, current
//! key).
//!
//! # Keys and rotation
//! A cookie sealed under a previous key of the ring opens, and its next
//! write (any change, or the sliding-expiration touch) seals it under the
//! current key. Keep a previous key in the ring for one idle timeout after
//! rotating; after that every cookie still sealed with it is past its idle
//! deadline. A key removed from the ring makes its cookies fail to open.
//! See [`crate::keys`].
//!
//! # Limits of a stateless store
//! - Nothing is kept server-side, so nothing can be revoked: `destroy`
//!   expires the cookie in the browser, but a copy taken earlier opens until
//!   its deadlines. Keep the idle timeout short, or use a server-side store
//!   where logout must be final.
//! - [`Store::delete`] has nothing to delete and returns `Ok(false)`.
//! - No listing or owner index: `CookieStore` does not implement
//!   [`crate::QueryStore`], so `revoke_owner` on it does not compile.
//! - Two concurrent requests each send back their own cookie; the browser
//!   keeps the last one (last writer wins).
//!
//! [`Session::touch`]: crate::Session::touch

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::codec::{Algorithm, Codec, Compression};
use crate::config::{Config, CookieConfig};
use crate::error::StoreError;
use crate::events::{Callbacks, EventKind};
use crate::expiry::Clock;
use crate::id::SessionId;
use crate::keys::{KeyPurpose, KeyRing};
use crate::record::{Record, SessionData};
use crate::store::{Save, SaveOutcome, Store};

/// The browser limit for one cookie, in bytes (RFC 6265 §6.1 minimum, and
/// what major browsers enforce).
pub const BROWSER_COOKIE_LIMIT: usize = 4096;

/// A store that keeps the whole session in the cookie, sealed with AEAD.
/// See the [module docs](self).
pub struct CookieStore<T> {
    inner: Arc<Inner>,
    cache: Option<Arc<OpenedCache<T>>>,
    _data: PhantomData<fn() -> T>,
}

/// Cookie values this process opened recently, with the record each holds, so that a hot session is not decrypted and parsed on every
/// request ([`CookieStoreBuilder::opened_cache`]).
///
/// Direct-mapped: each value has one slot, chosen by a keyed hash of its
/// last 22 characters (they encode the AEAD tag, different for every sealed
/// value); a newer value takes the slot. Exact: a hit needs the whole value
/// to match, compared in constant time, and a value is only ever cached
/// as opening it gave it, so a hit returns what opening it would. Written by hand: a general cache (moka) costs more per lookup
/// than the decryption it would save on small cookies.
struct OpenedCache<T> {
    slots: Box<[Slot<T>]>,
    hasher: std::hash::RandomState,
}

/// One cached cookie value and its record.
type Slot<T> = parking_lot::Mutex<Option<(Box<str>, Record<T>)>>;

impl<T: SessionData> OpenedCache<T> {
    fn new(entries: usize) -> Self {
        OpenedCache {
            slots: (0..entries)
                .map(|_| parking_lot::Mutex::new(None))
                .collect(),
            hasher: std::hash::RandomState::new(),
        }
    }

    fn slot(&self, value: &str) -> &Slot<T> {
        use std::hash::BuildHasher;
        let tail = &value.as_bytes()[value.len().saturating_sub(22)..];
        &self.slots[self.hasher.hash_one(tail) as usize % self.slots.len()]
    }

    fn get(&self, value: &str) -> Option<Record<T>> {
        match &*self.slot(value).lock() {
            Some((key, record)) if constant_time_eq(key.as_bytes(), value.as_bytes()) => {
                Some(record.clone())
            }
            _ => None,
        }
    }

    fn put(&self, value: &str, record: Record<T>) {
        *self.slot(value).lock() = Some((value.into(), record));
    }
}

/// Equality without an early exit on the first differing byte, so the time
/// a lookup takes says nothing about how much of a cached value an attacker
/// guessed. Lengths are not secret.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let (mut diff, wa, wb) = (0u64, a.chunks_exact(8), b.chunks_exact(8));
    for (x, y) in wa.remainder().iter().zip(wb.remainder()) {
        diff |= u64::from(x ^ y);
    }
    for (x, y) in wa.zip(wb) {
        let x = u64::from_ne_bytes(x.try_into().expect("8 bytes"));
        let y = u64::from_ne_bytes(y.try_into().expect("8 bytes"));
        diff |= x ^ y;
    }
    std::hint::black_box(diff) == 0
}

struct Inner {
    codec: Codec,
    cookie: CookieConfig,
    /// The configuration's expiry policy: [`CookieStore::open`] clamps a
    /// cookie's deadlines to it, as [`crate::Sessions`] does on load.
    expiry: crate::expiry::ExpiryPolicy,
    clock: Arc<dyn Clock>,
    callbacks: Callbacks,
    max_cookie_len: usize,
}

impl<T> Clone for CookieStore<T> {
    fn clone(&self) -> Self {
        CookieStore {
            inner: self.inner.clone(),
            cache: self.cache.clone(),
            _data: PhantomData,
        }
    }
}

impl<T> fmt::Debug for CookieStore<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CookieStore")
            .field("cookie", &self.inner.cookie.name())
            .field("codec", &self.inner.codec)
            .field("max_cookie_len", &self.inner.max_cookie_len)
            .finish()
    }
}

impl<T: SessionData> CookieStore<T> {
    /// A cookie store with the defaults: XChaCha20-Poly1305, no
    /// compression, 4096-byte cookie limit. Give it the same `config` you give
    /// [`crate::Sessions::new`]: the cookie name is bound into every sealed
    /// value, and the clock checks the deadlines.
    pub fn new(keys: &KeyRing, config: &Config) -> Self {
        Self::builder(keys, config).build()
    }

    /// A builder to change the algorithm, compression or limits.
    pub fn builder<'a>(keys: &'a KeyRing, config: &'a Config) -> CookieStoreBuilder<'a, T> {
        CookieStoreBuilder {
            keys,
            config,
            algorithm: Algorithm::default(),
            // Off: the cookie's length is visible to anyone on the path, and
            // compressed before sealing it tells about the content.
            compression: Compression::None,
            max_cookie_len: BROWSER_COOKIE_LIMIT,
            max_decoded_len: 64 << 10,
            opened_cache: 0,
            application: None,
            _data: PhantomData,
        }
    }

    /// Seals a record into a cookie value (what [`Store::save`] does, without
    /// the size check against the whole `Set-Cookie` header).
    pub fn seal(&self, record: &Record<T>) -> Result<String, StoreError> {
        Ok(base64_simd::URL_SAFE_NO_PAD.encode_to_string(self.inner.codec.encode_record(record)?))
    }

    /// Opens a cookie value: `None` if it is oversized, malformed, not
    /// authentic, sealed with a key not in the ring, or past a deadline
    /// (its own, or the one the configuration's idle timeout and absolute
    /// lifetime give now, if shorter: a cookie sealed before they were
    /// shortened ends when they say). The reason is logged at debug level. A value past a deadline fires
    /// the configuration's `on_expired` callback (not `on_deleted`: the
    /// cookie store deletes nothing, and a replayed cookie would report one
    /// session's end again each time).
    pub fn open(&self, cookie_value: &str) -> Option<Record<T>> {
        let mut record = self.opened(cookie_value)?;
        let i = &self.inner;
        record.clamp_deadlines(&i.expiry);
        if let Some(kind) = record.expired(i.clock.now()) {
            tracing::debug!(?kind, "session cookie rejected: past its deadline");
            let owner = record.owner.as_deref();
            i.callbacks.emit(EventKind::Expired(kind), owner);
            return None;
        }
        Some(record)
    }

    /// [`CookieStore::open`] without the deadline check: what the store
    /// hands [`crate::Sessions`], which checks the deadlines itself (and
    /// then, for a session past one, fires the same event).
    fn opened(&self, cookie_value: &str) -> Option<Record<T>> {
        match &self.cache {
            Some(cache) => match cache.get(cookie_value) {
                Some(record) => Some(record),
                None => {
                    let record = self.unseal(cookie_value)?;
                    cache.put(cookie_value, record.clone());
                    Some(record)
                }
            },
            None => self.unseal(cookie_value),
        }
    }

    /// Decodes and authenticates a cookie value; deadlines are not checked.
    fn unseal(&self, cookie_value: &str) -> Option<Record<T>> {
        let i = &self.inner;
        if cookie_value.len() > i.max_cookie_len {
            tracing::debug!(
                len = cookie_value.len(),
                "session cookie rejected: over the size limit"
            );
            return None;
        }
        let bytes = match base64_simd::URL_SAFE_NO_PAD.decode_to_vec(cookie_value) {
            Ok(b) => b,
            Err(_) => {
                tracing::debug!("session cookie rejected: not base64url");
                return None;
            }
        };
        let (record, info) = i
            .codec
            .decode_record_owned::<T>(std::borrow::Cow::Owned(bytes))
            .ok()?;
        if info.stale_key {
            tracing::debug!(
                key_id = info.key_id,
                "session cookie sealed with a previous key; the next write re-seals it"
            );
        }
        Some(record)
    }
}

// The whole session is in the cookie: the `*_now` methods always answer,
// and the async ones are the same code.
#[async_trait]
impl<T: SessionData> Store<T> for CookieStore<T> {
    async fn load(&self, cookie_value: &str) -> Result<Option<Record<T>>, StoreError> {
        Ok(self.opened(cookie_value))
    }

    async fn save(&self, save: Save<'_, T>) -> Result<SaveOutcome, StoreError> {
        self.save_sync(save)
    }

    fn load_now(&self, cookie_value: &str) -> Option<Result<Option<Record<T>>, StoreError>> {
        Some(Ok(self.opened(cookie_value)))
    }

    fn save_now(&self, save: Save<'_, T>) -> Option<Result<SaveOutcome, StoreError>> {
        Some(self.save_sync(save))
    }

    /// Nothing is stored server-side: returns `Ok(false)`. The layer expires
    /// the cookie in the browser; see the module docs on revocation.
    async fn delete(&self, _id: &SessionId) -> Result<bool, StoreError> {
        Ok(false)
    }
}

impl<T: SessionData> CookieStore<T> {
    fn save_sync(&self, save: Save<'_, T>) -> Result<SaveOutcome, StoreError> {
        let record = save.record;
        // The next version is encoded in place of the record's own: no copy
        // of the record (and its data) just to bump a counter.
        let version = record.version.wrapping_add(1);
        let i = &self.inner;
        let value = base64_simd::URL_SAFE_NO_PAD
            .encode_to_string(i.codec.encode_record_as(record, version)?);
        // Measure the header as the layer will send it. The layer takes
        // `Max-Age` from a clock read before this one, so it may be a second
        // longer (one more digit at 99 999 → 100 000): measured with that
        // second added, never a byte short.
        let max_age = record
            .absolute_deadline
            .duration_since(i.clock.now())
            .unwrap_or(Duration::ZERO);
        let header_len = crate::http::set_cookie_header_len(
            &i.cookie,
            value.len(),
            max_age.as_secs().saturating_add(1),
        );
        let size = header_len.max(value.len());
        if size > i.max_cookie_len {
            return Err(StoreError::CookieTooLarge {
                size,
                limit: i.max_cookie_len,
            });
        }
        // Values are cached when they come back, not when they are sealed:
        // a hit must be exactly what opening the value gives, and the
        // record in hand is not always that (a `#[serde(skip)]` field, a
        // lossy `serialize_with`, deadlines kept to the nanosecond that the
        // value holds to the millisecond). Most first visits (crawlers, a
        // flood of them) never come back at all.
        Ok(SaveOutcome::Saved(value))
    }
}

/// Builder for [`CookieStore`].
#[must_use = "call .build() to get a CookieStore"]
pub struct CookieStoreBuilder<'a, T> {
    keys: &'a KeyRing,
    config: &'a Config,
    algorithm: Algorithm,
    compression: Compression,
    max_cookie_len: usize,
    max_decoded_len: usize,
    opened_cache: usize,
    application: Option<String>,
    _data: PhantomData<fn() -> T>,
}

impl<T> fmt::Debug for CookieStoreBuilder<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CookieStoreBuilder")
            .field("algorithm", &self.algorithm)
            .field("compression", &self.compression)
            .field("max_cookie_len", &self.max_cookie_len)
            .field("max_decoded_len", &self.max_decoded_len)
            .field("opened_cache", &self.opened_cache)
            .field("application", &self.application)
            .finish_non_exhaustive()
    }
}

impl<T: SessionData> CookieStoreBuilder<'_, T> {
    /// The AEAD (default XChaCha20-Poly1305). See [`Algorithm`] for the
    /// nonce limits of AES-256-GCM.
    pub fn algorithm(mut self, algorithm: Algorithm) -> Self {
        self.algorithm = algorithm;
        self
    }

    /// Compression of the serialized record before it is sealed (default
    /// [`Compression::None`]). Gzip fits larger sessions under the
    /// 4096-byte limit, but makes the cookie's length, which anyone on the
    /// path sees, depend on the content: with text an attacker chooses
    /// beside a secret in one session, the length can reveal the secret a
    /// guess at a time (the BREACH family). Turn it on only for sessions
    /// holding no secret next to attacker-chosen text.
    ///
    /// ```
    /// use sessionkit::codec::Compression;
    /// use sessionkit::keys::KeyRing;
    /// use sessionkit::store::cookie::CookieStore;
    /// use sessionkit::Config;
    ///
    /// let ring = KeyRing::builder().current(1, KeyRing::generate_secret()).build().unwrap();
    /// let config = Config::default();
    /// let store = CookieStore::<Vec<String>>::builder(&ring, &config)
    ///     .compression(Compression::Gzip { threshold: 256 })
    ///     .build();
    /// # let _ = store;
    /// ```
    pub fn compression(mut self, compression: Compression) -> Self {
        self.compression = compression;
        self
    }

    /// Largest `Set-Cookie` header a save may produce, and largest cookie
    /// value a load accepts (default [`BROWSER_COOKIE_LIMIT`]). Lower it if
    /// your other cookies share the browser's per-domain budget.
    pub fn max_cookie_len(mut self, n: usize) -> Self {
        self.max_cookie_len = n;
        self
    }

    /// Largest serialized record after decompression (default 64 KiB), the
    /// bound that makes a sealed gzip bomb harmless. A save of a record that
    /// serializes to more fails with [`StoreError::Encode`].
    pub fn max_decoded_len(mut self, n: usize) -> Self {
        self.max_decoded_len = n;
        self
    }

    /// Keeps up to `entries` recently opened cookie values in memory with
    /// the records they hold (default 0: off), so that a session read again
    /// and again is decrypted and parsed once. Each entry holds one cookie
    /// value (up to `max_cookie_len` bytes) and one record: budget
    /// `entries × (cookie size + record size)` of memory. A value is cached
    /// when it comes back, not when it is sealed: first visits that never
    /// return do not push returning sessions out.
    ///
    /// A hit returns exactly what opening the value would (the record
    /// cached is the one opening gave, and deadlines are checked on every
    /// load). What it changes: decrypted sessions stay in this process's
    /// memory while cached. Measured effect: see `BENCHMARKS.md`.
    ///
    /// ```
    /// # use sessionkit::{Config, keys::KeyRing, store::cookie::CookieStore};
    /// # let ring = KeyRing::builder().current(1, KeyRing::generate_secret()).build().unwrap();
    /// let config = Config::default();
    /// let store = CookieStore::<u64>::builder(&ring, &config).opened_cache(10_000).build();
    /// # let _ = store;
    /// ```
    pub fn opened_cache(mut self, entries: usize) -> Self {
        self.opened_cache = entries;
        self
    }

    /// Binds every sealed value to an application or deployment label as
    /// well as to the cookie name (default: none). Two deployments that
    /// share a secret and a cookie name (staging and production, two apps
    /// on one key ring) otherwise open each other's cookies, owner and data
    /// included; with different labels they do not. Giving every deployment
    /// its own secret does the same and more. Setting or changing it makes
    /// existing cookies unreadable: their users start fresh sessions.
    ///
    /// ```
    /// # use sessionkit::{Config, keys::KeyRing, store::cookie::CookieStore};
    /// # let ring = KeyRing::builder().current(1, KeyRing::generate_secret()).build().unwrap();
    /// let config = Config::default();
    /// let store = CookieStore::<u64>::builder(&ring, &config)
    ///     .application("shop-production")
    ///     .build();
    /// # let _ = store;
    /// ```
    pub fn application(mut self, label: impl Into<String>) -> Self {
        self.application = Some(label.into());
        self
    }

    /// Derives the cipher instances and builds the store.
    pub fn build(self) -> CookieStore<T> {
        // The cookie name, then (a NUL, which no cookie name holds, and) the
        // application label: unambiguous, and as before without a label.
        let mut context = self.config.cookie().name().as_bytes().to_vec();
        if let Some(label) = &self.application {
            context.push(0);
            context.extend_from_slice(label.as_bytes());
        }
        let codec = Codec::builder()
            .compression(self.compression)
            .seal(self.keys, KeyPurpose::CookieSealing)
            .algorithm(self.algorithm)
            .context(&context)
            // The cookie text is bounded before base64 decoding (see `open`),
            // and a save over the limit must be `CookieTooLarge` measured on
            // the whole header, not a codec error: no second bound here.
            .max_encoded_len(usize::MAX)
            .max_decoded_len(self.max_decoded_len)
            .build();
        CookieStore {
            inner: Arc::new(Inner {
                codec,
                cookie: self.config.cookie().clone(),
                expiry: *self.config.expiry(),
                clock: self.config.clock().clone(),
                callbacks: self.config.callbacks.clone(),
                max_cookie_len: self.max_cookie_len,
            }),
            cache: (self.opened_cache > 0).then(|| Arc::new(OpenedCache::new(self.opened_cache))),
            _data: PhantomData,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A value sealed for one application label opens only under that one
    /// (not under another, nor without one, and the reverse).
    #[test]
    fn the_application_label_binds_sealed_values() {
        use crate::expiry::ExpiryPolicy;
        use std::time::SystemTime;
        let ring = test_ring();
        let config = Config::default();
        let record = Record::new(
            SessionId::generate(),
            7u32,
            SystemTime::now(),
            &ExpiryPolicy::default(),
        );
        let labelled = |label: &str| {
            CookieStore::<u32>::builder(&ring, &config)
                .application(label)
                .build()
        };
        let (staging, production) = (labelled("staging"), labelled("production"));
        let plain = CookieStore::<u32>::new(&ring, &config);
        let sealed = staging.seal(&record).unwrap();
        assert_eq!(labelled("staging").open(&sealed).unwrap().data, 7);
        assert!(production.open(&sealed).is_none());
        assert!(plain.open(&sealed).is_none());
        assert!(staging.open(&plain.seal(&record).unwrap()).is_none());
    }

    /// Compression is off unless asked for: a cookie's length must not
    /// depend on how well its content compresses.
    #[test]
    fn the_default_store_does_not_compress() {
        use crate::expiry::ExpiryPolicy;
        use std::time::SystemTime;
        let ring = test_ring();
        let config = Config::default();
        let record = Record::new(
            SessionId::generate(),
            "a".repeat(1500),
            SystemTime::now(),
            &ExpiryPolicy::default(),
        );
        let plain = CookieStore::<String>::new(&ring, &config);
        assert!(plain.seal(&record).unwrap().len() > 1500);
        let gzip = CookieStore::<String>::builder(&ring, &config)
            .compression(Compression::Gzip { threshold: 256 })
            .build();
        assert!(gzip.seal(&record).unwrap().len() < 500);
        // Either opens what the other sealed: the flag is in the value.
        let sealed = gzip.seal(&record).unwrap();
        assert_eq!(plain.open(&sealed).unwrap().data, record.data);
    }

    #[test]
    fn the_opened_cache_takes_a_value_when_it_returns_never_when_sealed() {
        use crate::expiry::ExpiryPolicy;
        use crate::store::SaveKind;
        use std::time::SystemTime;
        let ring = test_ring();
        let config = Config::default();
        let store = CookieStore::<u32>::builder(&ring, &config)
            .opened_cache(64)
            .build();
        let cache = store.cache.clone().expect("cache on");
        let record = Record::new(
            SessionId::generate(),
            7,
            SystemTime::now(),
            &ExpiryPolicy::default(),
        );
        let save = |record: &Record<u32>, kind| match store.save_sync(Save::new(record, None, kind))
        {
            Ok(SaveOutcome::Saved(value)) => value,
            other => panic!("save failed: {other:?}"),
        };
        let created = save(&record, SaveKind::Create);
        assert!(cache.get(&created).is_none(), "cached before it came back");
        let opened = store.open(&created).expect("opens");
        assert_eq!((opened.data, opened.version), (7, 1));
        assert!(cache.get(&created).is_some(), "cached once opened");
        let updated = save(&opened, SaveKind::Update);
        assert!(cache.get(&updated).is_none(), "an update cached as sealed");
        assert_eq!(store.open(&updated).expect("opens").version, 2);
        assert_eq!(cache.get(&updated).expect("cached once opened").version, 2);
        let old = opened.id;
        let mut moved = opened.clone();
        moved.id = SessionId::generate();
        let regenerated = save(&moved, SaveKind::Regenerate { old });
        assert!(cache.get(&regenerated).is_none());
    }

    #[test]
    fn constant_time_eq_compares_every_byte_and_the_length() {
        let a: Vec<u8> = (0..=40).collect();
        for len in 0..a.len() {
            assert!(constant_time_eq(&a[..len], &a[..len]));
            assert!(!constant_time_eq(&a[..len], &a[..len + 1]));
            for i in 0..len {
                let mut b = a[..len].to_vec();
                b[i] ^= 0x10;
                assert!(!constant_time_eq(&a[..len], &b), "len {len} byte {i}");
            }
        }
    }
    use crate::expiry::ExpiryPolicy;
    use crate::keys::PasswordKdf;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine as _;

    proptest::proptest! {
        /// The SIMD codec the store uses accepts exactly what the `base64`
        /// crate's strict decoder accepts (canonical trailing bits, no
        /// padding), with the same bytes, and encodes the same text.
        #[test]
        fn simd_base64_agrees_with_the_base64_crate(
            text in "[A-Za-z0-9_=*.+/-]{0,90}",
            raw in proptest::collection::vec(0u8.., 0..90),
        ) {
            let simd = base64_simd::URL_SAFE_NO_PAD;
            proptest::prop_assert_eq!(simd.decode_to_vec(&text).ok(), URL_SAFE_NO_PAD.decode(&text).ok());
            let encoded = simd.encode_to_string(&raw);
            proptest::prop_assert_eq!(&encoded, &URL_SAFE_NO_PAD.encode(&raw));
            // Every other last character for the same value is refused.
            if let Some(stem) = encoded.len().checked_sub(1).map(|n| &encoded[..n]) {
                for c in "AQgw-_".chars() {
                    let t = format!("{stem}{c}");
                    proptest::prop_assert_eq!(simd.decode_to_vec(&t).ok(), URL_SAFE_NO_PAD.decode(&t).ok());
                }
            }
        }
    }

    /// A key ring with one fresh key.
    fn test_ring() -> KeyRing {
        KeyRing::builder()
            .current(1, KeyRing::generate_secret())
            .build()
            .unwrap()
    }

    /// A cookie store on `ring` and a fresh record with data 7.
    fn store_and_record(ring: &KeyRing) -> (CookieStore<u32>, Record<u32>) {
        let config = Config::default();
        let store = CookieStore::<u32>::new(ring, &config);
        let record = Record::new(
            SessionId::generate(),
            7,
            config.clock().now(),
            &ExpiryPolicy::default(),
        );
        (store, record)
    }

    /// A cookie sealed under a longer idle timeout or absolute lifetime
    /// than the configuration now gives opens only while the current one
    /// allows (the sealed deadlines cannot be changed, only clamped).
    #[test]
    fn a_cookie_sealed_under_longer_timeouts_opens_only_within_the_current_ones() {
        use std::time::Duration;
        let ring = test_ring();
        let clock = crate::ManualClock::new();
        let config = |idle: u64, absolute: u64| {
            Config::builder()
                .idle_timeout(Duration::from_secs(idle))
                .absolute_lifetime(Duration::from_secs(absolute))
                .clock(clock.clone())
                .build()
                .unwrap()
        };
        let long = config(8 * 3600, 24 * 3600);
        let record = Record::new(SessionId::generate(), 7, clock.now(), long.expiry());
        let sealed = CookieStore::<u32>::new(&ring, &long).seal(&record).unwrap();
        clock.advance(Duration::from_secs(120));
        assert!(CookieStore::<u32>::new(&ring, &long)
            .open(&sealed)
            .is_some());
        let short_idle = CookieStore::<u32>::new(&ring, &config(60, 24 * 3600));
        assert!(short_idle.open(&sealed).is_none(), "120 s idle under 60 s");
        let roomy = CookieStore::<u32>::new(&ring, &config(600, 3600));
        assert!(roomy.open(&sealed).is_some());
        // Used 10 s ago, but 120 s old: past a lifetime cut to 100 s.
        let mut active = record.clone();
        active.touch(clock.now() - Duration::from_secs(10), long.expiry());
        let sealed = CookieStore::<u32>::new(&ring, &long).seal(&active).unwrap();
        let short_life = CookieStore::<u32>::new(&ring, &config(60, 100));
        assert!(short_life.open(&sealed).is_none(), "120 s old under 100 s");
        assert!(CookieStore::<u32>::new(&ring, &config(60, 3600))
            .open(&sealed)
            .is_some());
    }

    #[test]
    fn cookies_in_the_earlier_json_layout_still_open() {
        let ring = test_ring();
        let (store, record) = store_and_record(&ring);
        let old = URL_SAFE_NO_PAD.encode(store.inner.codec.encode(&record).unwrap());
        let new = store.seal(&record).unwrap();
        // Measured: 160 characters against 316 for this small session.
        assert!(
            new.len() + 140 < old.len(),
            "{} vs {}",
            new.len(),
            old.len()
        );
        for value in [old, new] {
            let opened = store.open(&value).expect("opens");
            assert_eq!((opened.id, opened.data), (record.id, 7));
        }
    }

    #[tokio::test]
    async fn pbkdf2_runs_once_per_secret_at_build_and_never_per_request() {
        use crate::keys::tests::PBKDF2_RUNS;
        let before = PBKDF2_RUNS.with(|c| c.get());
        let ring = KeyRing::builder()
            .current(2, "a passphrase someone typed, 32+ bytes")
            .previous(1, "the previous passphrase, also 32+ bytes")
            .password_kdf(PasswordKdf::new(1_000, "deployment salt 1").dangerously_few_iterations())
            .build()
            .unwrap();
        assert_eq!(PBKDF2_RUNS.with(|c| c.get()) - before, 2);
        let (store, record) = store_and_record(&ring);
        for _ in 0..50 {
            let SaveOutcome::Saved(v) = store.save(Save::create(&record)).await.unwrap() else {
                panic!("a cookie store always saves")
            };
            assert_eq!(store.load(&v).await.unwrap().unwrap().data, 7);
        }
        assert_eq!(PBKDF2_RUNS.with(|c| c.get()) - before, 2);
    }
}
