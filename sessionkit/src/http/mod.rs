//! The HTTP edge, framework-free: reading the session cookie from request
//! headers, rendering `Set-Cookie`, the per-request [`SessionSlot`] that loads
//! lazily, and the response sent when the store fails.
//!
//! The adapters ([`tower`] for axum and any tower stack,
//! `actix` for actix-web, feature `actix`) only move headers in and out of
//! this module; every rule lives here or in [`crate::Sessions`].
//!
//! # When the store fails
//! - **Load fails** (the handler asked for `Session<T>`): the request gets the
//!   [`ErrorResponder`]'s response, by default `503 Service Unavailable` with a
//!   short text body and `Retry-After: 1`. Handlers that can work without a
//!   session take `Option<Session<T>>` (axum) or `MaybeSession<T>`
//!   (actix-web) and get `None` instead; both still answer `500` when the
//!   session middleware is missing, since that is a bug to fix, not an outage.
//! - **Save fails** after the handler ran: the handler's response is replaced
//!   by the error response, with no `Set-Cookie`: the client keeps the cookie
//!   it had, and never receives a cookie for state that was not stored.
//! - The client's cookie is never overwritten by a throw-away session while the
//!   store is down.
//! - A stored session that cannot be decoded ([`StoreError::Decode`], e.g.
//!   after a change of the session type) is not a store failure: the request
//!   starts a fresh session, as for a tampered cookie, and expires the
//!   cookie, which can never name a readable session again.
//!
//! # What is saved, and when
//! The session is saved once the handler has produced its response, before
//! the response leaves, **whatever its status**: a handler that changed the
//! session and then answers `500` (or an error type the framework renders
//! as one) has its change saved, as a logout that fails to render still
//! logs out. Undo a change you do not want kept before returning the error.
//! The exceptions:
//! - a tower service *inside* the session layer that fails with its own
//!   error (not a response: e.g. a `tower::timeout` layer before any
//!   `HandleErrorLayer`): the request's session changes are not saved (a
//!   tower error has no response to carry the cookie). A plain axum `Router`
//!   cannot fail this way (its error type is `Infallible`). An actix-web
//!   middleware inside `SessionMiddleware` that returns `Err` is not an
//!   exception: actix-web renders that error as a response, so the session
//!   is committed, and a cookie to set or expire rides on the error's
//!   response (the error is then an `InternalError` carrying it: an outer
//!   middleware that downcasts the error sees that type only when the
//!   session had a cookie to send).
//! - a panicking handler: on actix-web the connection is dropped and nothing
//!   is saved; on axum a `CatchPanicLayer` *inside* the session layer turns
//!   the panic into a `500` response, and whatever the handler changed
//!   before it panicked is saved (put `CatchPanicLayer` outside the session
//!   layer to save nothing).
//! - a handler cut short by a layer inside the session layer that answers
//!   with a response of its own (tower-http's `TimeoutLayer` answering
//!   `408`, a `from_fn` around `tokio::time::timeout`): like the panic
//!   above, what the handler changed before it was dropped is saved, which
//!   may be half of a change that needed two steps. Put such a layer
//!   outside the session layer (nothing saved), or make the change in one
//!   step (one `data_mut()` guard, taken after the last `.await`).
//! - changes made after the response went out (a `Session` moved into a
//!   spawned task, a WebSocket, a streaming body) are never saved; each
//!   such session logs one warning and counts in
//!   `sessionkit_late_changes_total` (see [`Session::is_committed`]), once
//!   the layer has committed: a request dropped before its commit (the
//!   client gone, an outer timeout) commits nothing and warns of nothing.

// Without an adapter feature the edge helpers have no caller yet.
#![cfg_attr(not(any(feature = "axum", feature = "actix")), allow(dead_code))]

use std::sync::Arc;

use futures_util::future::Either;

use http::header::{HeaderMap, HeaderValue, COOKIE};
use http::StatusCode;

use crate::binding::ClientInfo;
use crate::config::{CookieConfig, SameSite};
use crate::error::StoreError;
use crate::record::SessionData;
use crate::session::Session;
use crate::sessions::{finish_load, CommitStep, CookieAction, Engine, Loaded, Pending};

#[cfg(feature = "actix")]
pub mod actix;
#[cfg(feature = "axum")]
pub mod axum;
#[cfg(feature = "axum")]
pub mod tower;

/// What the session cookie lookup found in a request.
///
/// `Debug` shows only the first characters of a value found.
#[derive(Clone, PartialEq, Eq)]
pub enum CookieLookup<'a> {
    /// No cookie of that name.
    Missing,
    /// Exactly one.
    Found(&'a str),
    /// More than one cookie with the session cookie's name (e.g. one planted
    /// for a parent domain): treated as no session, since we cannot know which
    /// one the server issued.
    Ambiguous,
}

impl std::fmt::Debug for CookieLookup<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CookieLookup::Missing => f.write_str("Missing"),
            CookieLookup::Found(value) => f
                .debug_tuple("Found")
                .field(&crate::id::Redacted(value))
                .finish(),
            CookieLookup::Ambiguous => f.write_str("Ambiguous"),
        }
    }
}

/// Finds the cookie named exactly `name` in every `Cookie` header.
///
/// ```
/// use http::HeaderMap;
/// use sessionkit::http::{find_cookie, CookieLookup};
/// let mut h = HeaderMap::new();
/// h.insert("cookie", "ids=1; id=abc; x=2".parse().unwrap());
/// assert_eq!(find_cookie(&h, "id"), CookieLookup::Found("abc"));
/// ```
pub fn find_cookie<'a>(headers: &'a HeaderMap, name: &str) -> CookieLookup<'a> {
    find_cookie_in(
        headers.get_all(COOKIE).iter().map(HeaderValue::as_bytes),
        name,
    )
}

/// Finds the cookie named exactly `name` in the raw values of a request's
/// `Cookie` headers, for frameworks whose header types are not [`http`] 1's.
///
/// ```
/// use sessionkit::http::{find_cookie_in, CookieLookup};
/// let headers: [&[u8]; 2] = [b"a=1", b"id=abc"];
/// assert_eq!(find_cookie_in(headers, "id"), CookieLookup::Found("abc"));
/// ```
pub fn find_cookie_in<'a>(
    cookie_headers: impl IntoIterator<Item = &'a [u8]>,
    name: &str,
) -> CookieLookup<'a> {
    // Bytes, not `str`: one pass over each header and no UTF-8 decoding of
    // other applications' cookies (this runs on every request).
    let name = name.as_bytes();
    let mut found: Option<&'a [u8]> = None;
    for header in cookie_headers {
        let mut rest = header;
        while !rest.is_empty() {
            // memchr: a sealed cookie is kilobytes long, scanned on every request.
            let end = memchr::memchr(b';', rest).unwrap_or(rest.len());
            let pair = &rest[..end];
            rest = rest.get(end + 1..).unwrap_or_default();
            let Some(eq) = memchr::memchr(b'=', pair) else {
                continue;
            };
            if pair[..eq].trim_ascii() != name {
                continue;
            }
            let v = pair[eq + 1..].trim_ascii();
            let v = v
                .strip_prefix(b"\"".as_slice())
                .and_then(|v| v.strip_suffix(b"\"".as_slice()))
                .unwrap_or(v);
            if found.is_some() {
                metrics::counter!("sessionkit_ambiguous_cookies_total").increment(1);
                tracing::debug!("request carries the session cookie more than once; ignoring both");
                return CookieLookup::Ambiguous;
            }
            found = Some(v);
        }
    }
    // Only visible ASCII is a cookie value (RFC 6265 is stricter still; the
    // stores check their own format). Anything else counts as no cookie.
    // A fold, not `all`: without the early exit the check vectorizes.
    let visible = |v: &[u8]| {
        v.iter()
            .fold(true, |ok, &b| ok & (b.wrapping_sub(0x21) < 0x5e))
    };
    match found.filter(|v| visible(v)) {
        Some(v) => match std::str::from_utf8(v) {
            Ok(v) => CookieLookup::Found(v),
            Err(_) => CookieLookup::Missing,
        },
        None => CookieLookup::Missing,
    }
}

/// Renders the `Set-Cookie` header value for an action, or `None` for [`CookieAction::None`].
///
/// ```
/// use std::time::Duration;
/// use sessionkit::http::set_cookie_header;
/// use sessionkit::{Config, CookieAction};
///
/// let config = Config::default();
/// let set = CookieAction::Set { value: "abc".into(), max_age: Duration::from_secs(60) };
/// assert_eq!(
///     set_cookie_header(config.cookie(), &set).unwrap(),
///     "__Host-id=abc; HttpOnly; SameSite=Lax; Secure; Path=/; Max-Age=60"
/// );
/// ```
pub fn set_cookie_header(config: &CookieConfig, action: &CookieAction) -> Option<String> {
    let (value, max_age) = match action {
        CookieAction::None => return None,
        CookieAction::Set { value, max_age } => (value.as_str(), max_age.as_secs()),
        CookieAction::Remove => ("", 0),
    };
    let remove = matches!(action, CookieAction::Remove);
    let mut out = String::with_capacity(112 + value.len());
    write_set_cookie(config, value, max_age, remove, &mut |part| {
        out.push_str(part)
    });
    Some(out)
}

/// The length of the `Set-Cookie` header [`set_cookie_header`] writes for a
/// [`CookieAction::Set`] of a `value_len`-byte value, without building it
/// (the cookie store checks every sealed value against the browsers' size
/// limit this way). Same code path as the header itself, so the two agree.
#[cfg(any(feature = "cookie-store", test))]
pub(crate) fn set_cookie_header_len(
    config: &CookieConfig,
    value_len: usize,
    max_age: u64,
) -> usize {
    let mut len = value_len;
    // The value's bytes are counted above: its text does not matter here.
    write_set_cookie(config, "", max_age, false, &mut |part| len += part.len());
    len
}

/// Whether `value` is made of RFC 6265 `cookie-octet`s only (no space,
/// `"`, `,`, `;`, `\\` or control character).
fn is_cookie_value(value: &str) -> bool {
    value
        .bytes()
        .all(|b| matches!(b, 0x21 | 0x23..=0x2B | 0x2D..=0x3A | 0x3C..=0x5B | 0x5D..=0x7E))
}

/// Writes a `Set-Cookie` header as a sequence of parts.
///
/// Written out by hand rather than through the `cookie` crate's Display:
/// the same text (`tests::set_cookie_matches_the_cookie_crate`) for a
/// tenth of the instructions, on every response that sets the cookie.
/// Name, path and domain were validated by `Config`; values are base64url,
/// so nothing needs escaping.
fn write_set_cookie(
    config: &CookieConfig,
    value: &str,
    max_age: u64,
    remove: bool,
    out: &mut impl FnMut(&str),
) {
    out(config.name());
    out("=");
    out(value);
    if config.http_only() {
        out("; HttpOnly");
    }
    out(match config.same_site() {
        SameSite::Strict => "; SameSite=Strict",
        SameSite::Lax => "; SameSite=Lax",
        SameSite::None => "; SameSite=None",
    });
    if config.secure() {
        out("; Secure");
    }
    out("; Path=");
    out(config.path());
    if let Some(d) = config.domain() {
        out("; Domain=");
        out(d.strip_prefix('.').unwrap_or(d));
    }
    out("; Max-Age=");
    out(itoa::Buffer::new().format(max_age));
    if remove {
        out("; Expires=Thu, 01 Jan 1970 00:00:00 GMT");
    }
}

/// A response for when the session store fails. Build it with
/// [`ErrorResponse::text`] or [`ErrorResponse::json`]:
///
/// ```
/// use http::StatusCode;
/// use sessionkit::http::ErrorResponse;
///
/// let r = ErrorResponse::json(
///     StatusCode::SERVICE_UNAVAILABLE,
///     &serde_json::json!({ "error": "sessions_unavailable" }),
/// )
/// .retry_after(5);
/// assert_eq!(r.content_type, "application/json");
/// assert_eq!(r.body, r#"{"error":"sessions_unavailable"}"#);
/// assert_eq!(r.retry_after, Some(5));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorResponse {
    /// The status code.
    pub status: StatusCode,
    /// The body.
    pub body: String,
    /// `Retry-After` in seconds, if any.
    pub retry_after: Option<u32>,
    /// The body's media type, sent as `Content-Type` (`text/plain;
    /// charset=utf-8` from [`ErrorResponse::text`], `application/json` from
    /// [`ErrorResponse::json`]).
    pub content_type: &'static str,
}

impl ErrorResponse {
    /// A plain-text response (`text/plain; charset=utf-8`).
    pub fn text(status: StatusCode, body: impl Into<String>) -> Self {
        ErrorResponse {
            status,
            body: body.into(),
            retry_after: None,
            content_type: "text/plain; charset=utf-8",
        }
    }

    /// A JSON response (`application/json`) for APIs whose clients expect
    /// JSON errors. A value that does not serialize gives the body `{}`.
    pub fn json(status: StatusCode, body: &impl serde::Serialize) -> Self {
        ErrorResponse {
            status,
            body: serde_json::to_string(body).unwrap_or_else(|_| "{}".into()),
            retry_after: None,
            content_type: "application/json",
        }
    }

    /// Adds `Retry-After: secs`.
    pub fn retry_after(mut self, secs: u32) -> Self {
        self.retry_after = Some(secs);
        self
    }

    /// Writes the headers that go with the body: content type, `no-store`
    /// and `Retry-After`. Adapters call it on a response that has none yet.
    pub(crate) fn write_headers(&self, headers: &mut impl HeaderSink) {
        headers.add("content-type", self.content_type);
        headers.add("cache-control", "no-store");
        if let Some(secs) = self.retry_after {
            headers.add("retry-after", &secs.to_string());
        }
    }
}

/// The response headers of whatever framework serves the request, as the
/// session edge writes them. Header names are lowercase and valid.
pub(crate) trait HeaderSink {
    /// Adds a header after any of the same name; `false` (and nothing added)
    /// when the value is not a valid header value.
    fn add(&mut self, name: &'static str, value: &str) -> bool;
    /// Adds the session's `Set-Cookie` (taking the string: no copy) and
    /// `Cache-Control: no-store`, or, when the response already says how to
    /// cache it, makes that policy private ([`cookie_safe_cache_control`]).
    /// `false` when the value is not a valid header value.
    fn add_set_cookie(&mut self, value: String) -> bool;
    /// Adds `Cookie` to the response's `Vary` (unless it names `Cookie` or
    /// `*` already): the handler used the session, so its response may
    /// depend on the cookie, and a shared cache must not hand it to a
    /// request with another cookie (or none).
    fn vary_cookie(&mut self);
}

/// Whether `Vary` values already cover the cookie: a field `Cookie` (any
/// case) or `*`, read as bytes (a value that is not text is searched all the
/// same, and `Cookie` added if it has neither).
pub(crate) fn varies_by_cookie<'a>(mut values: impl Iterator<Item = &'a [u8]>) -> bool {
    values.any(|value| {
        value.split(|&b| b == b',').any(|field| {
            let field = field.trim_ascii();
            field == b"*" || field.eq_ignore_ascii_case(b"cookie")
        })
    })
}

/// The `Cache-Control` a response that sets or expires the session cookie
/// gets in place of the one its handler chose (the values of its
/// `Cache-Control` headers), or `None` to keep that one. A shared cache (a
/// CDN, a corporate proxy) that stores such a response would hand the
/// session cookie to everyone it serves: unless the handler's policy says
/// `no-store` or `private`, `public` is dropped and `private` added, so
/// the rest of it (`max-age=60`) still holds for the browser's own cache.
///
/// ```text
/// public, max-age=60  →  max-age=60, private
/// max-age=60          →  max-age=60, private
/// private, max-age=60 →  (kept)
/// private="x-user"    →  no-store   (quoted arguments: replaced whole)
/// ```
///
/// `CDN-Cache-Control` and `Surrogate-Control`, which caches that know them
/// obey before `Cache-Control`, are not read: a handler that sets them on a
/// response that may carry the session cookie must keep them private.
pub(crate) fn cookie_safe_cache_control<'a>(
    existing: impl Iterator<Item = &'a [u8]>,
) -> Option<String> {
    let mut kept = Vec::new();
    for value in existing {
        // Not text: nothing to keep that we could read.
        let Ok(value) = std::str::from_utf8(value) else {
            return Some("no-store".to_owned());
        };
        // A quoted argument (`private="x-user"`, `no-cache="a, b"`) may hold
        // commas, which this split does not read: rather than misread the
        // policy, replace it whole.
        if value.contains('"') {
            return Some("no-store".to_owned());
        }
        for directive in value.split(',').map(str::trim).filter(|d| !d.is_empty()) {
            let (name, qualified) = match directive.split_once('=') {
                Some((name, _)) => (name.trim(), true),
                None => (directive, false),
            };
            if name.eq_ignore_ascii_case("no-store") {
                return None;
            }
            if name.eq_ignore_ascii_case("private") {
                // `private=x-user` (RFC 9111 5.2.2.7) keeps only the fields
                // it names from shared caches, not the response: dropped,
                // and a plain `private` added below.
                if !qualified {
                    return None;
                }
                continue;
            }
            if !name.eq_ignore_ascii_case("public") {
                kept.push(directive);
            }
        }
    }
    kept.push("private");
    Some(kept.join(", "))
}

impl HeaderSink for HeaderMap {
    fn add(&mut self, name: &'static str, value: &str) -> bool {
        HeaderValue::from_str(value)
            .map(|v| self.append(http::HeaderName::from_static(name), v))
            .is_ok()
    }
    fn add_set_cookie(&mut self, value: String) -> bool {
        // Typed names and a static value: no lookup of the name, no copy of
        // the value (on every response that sets the cookie).
        let Ok(value) = HeaderValue::try_from(value) else {
            return false;
        };
        self.append(http::header::SET_COOKIE, value);
        let cache = http::header::CACHE_CONTROL;
        if !self.contains_key(&cache) {
            self.insert(cache, HeaderValue::from_static("no-store"));
        } else if let Some(safe) =
            cookie_safe_cache_control(self.get_all(&cache).iter().map(HeaderValue::as_bytes))
        {
            let safe = HeaderValue::try_from(safe)
                .unwrap_or_else(|_| HeaderValue::from_static("no-store"));
            self.insert(cache, safe);
        }
        true
    }
    fn vary_cookie(&mut self) {
        // Built at compile time, and one hash of the name for the look-up
        // and the insert (this runs on every response that used the session).
        const COOKIE: HeaderValue = HeaderValue::from_static("Cookie");
        match self.entry(http::header::VARY) {
            http::header::Entry::Vacant(e) => {
                e.insert(COOKIE);
            }
            http::header::Entry::Occupied(mut e) => {
                if !varies_by_cookie(e.iter().map(HeaderValue::as_bytes)) {
                    e.append(COOKIE);
                }
            }
        }
    }
}

/// Why a `Session<T>` extractor could not produce a session. Each adapter
/// renders it (axum: `IntoResponse`, actix-web: `ResponseError`) from
/// [`SessionRejection::response`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SessionRejection {
    /// No session middleware for this data type wraps the route.
    #[error("no session middleware for session data type {0} wraps this route")]
    MissingLayer(&'static str),
    /// The store failed; carries the response the error responder chose.
    #[error("session store failed ({})", .0.status)]
    Unavailable(ErrorResponse),
}

impl SessionRejection {
    /// The response the client gets: the error responder's for a store
    /// failure, a `500` naming the misconfiguration for a missing middleware.
    pub fn response(&self) -> ErrorResponse {
        match self {
            SessionRejection::MissingLayer(_) => ErrorResponse::text(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Session layer missing for this route (server misconfiguration).\n",
            ),
            SessionRejection::Unavailable(e) => e.clone(),
        }
    }
}

/// Turns a store failure into the response the client sees. Closures
/// `Fn(&StoreError) -> ErrorResponse` implement it.
pub trait ErrorResponder: Send + Sync + 'static {
    /// The response for this failure. Never put the error's details in a
    /// response to clients; log them instead (the layer already does).
    fn respond(&self, error: &StoreError) -> ErrorResponse;
}

impl<F> ErrorResponder for F
where
    F: Fn(&StoreError) -> ErrorResponse + Send + Sync + 'static,
{
    fn respond(&self, error: &StoreError) -> ErrorResponse {
        self(error)
    }
}

/// The default: `503` + `Retry-After: 1` when the store is unavailable or
/// the save lost to other writes of the same session (a retry may pass),
/// `500` when the session cannot be stored at all (e.g. a cookie over the
/// size limit).
#[derive(Debug, Clone, Copy, Default)]
pub struct DefaultErrorResponder;

impl ErrorResponder for DefaultErrorResponder {
    fn respond(&self, error: &StoreError) -> ErrorResponse {
        let error = error.cause();
        if error.is_transient()
            || matches!(
                error,
                StoreError::CircuitOpen | StoreError::Backend(_) | StoreError::Conflict(_)
            )
        {
            ErrorResponse::text(
                StatusCode::SERVICE_UNAVAILABLE,
                "Session service temporarily unavailable; please retry shortly.\n",
            )
            .retry_after(1)
        } else {
            ErrorResponse::text(
                StatusCode::INTERNAL_SERVER_ERROR,
                "The session could not be stored.\n",
            )
        }
    }
}

/// One request's session, loaded on first use. The adapters put it in the
/// request's extensions and commit it after the handler.
pub struct SessionSlot<T: SessionData> {
    inner: Arc<SlotInner<T>>,
}

impl<T: SessionData> Clone for SessionSlot<T> {
    fn clone(&self) -> Self {
        SessionSlot {
            inner: self.inner.clone(),
        }
    }
}

struct SlotInner<T: SessionData> {
    engine: Arc<dyn Engine<T>>,
    responder: Arc<dyn ErrorResponder>,
    cookie: Option<String>,
    client: ClientInfo,
    session: std::sync::OnceLock<Session<T>>,
    /// Held while a load that needs no I/O runs (no await under it), and to
    /// start or end one that waits for the store (see [`IoRunning`]).
    load_now: parking_lot::Mutex<LoadState>,
    /// Wakes the callers that waited for a load to end (only when some did:
    /// see [`LoadState::waiting`]).
    load_done: tokio::sync::Notify,
}

impl<T: SessionData> SlotInner<T> {
    /// Keeps `session` as the request's, under the slot's lock (`state`).
    /// One loaded after the commit found nothing to commit (a task the
    /// handler spawned asks for its session after the response went out)
    /// is marked committed, so that its changes are reported as never
    /// saved rather than dropped without a word.
    fn keep(&self, state: &LoadState, session: Session<T>) -> Session<T> {
        // Marked before it is published: a caller reading the slot without
        // the lock must never get it open.
        if state.finished {
            session.commit_started();
        }
        self.session.get_or_init(|| session).clone()
    }
}

/// Who is loading a slot's session.
#[derive(Default)]
struct LoadState {
    /// A load that waits for the store, or that must delete, re-bind or
    /// touch what it found, is under way: one caller does it, the others
    /// wait for it and then share its session (or, if it failed, try
    /// again). A caller that holds the future of such a first use without
    /// polling it, and awaits another use of the slot first, waits forever:
    /// await the first (or drop it).
    io_running: bool,
    /// Someone waits for that load's end. (An async mutex held by the
    /// loading caller did the same, but cost every I/O load a semaphore's
    /// acquire and release, about 0.5k instructions under callgrind, for the
    /// rare request that asks for its session twice at once.)
    waiting: bool,
    /// The layer committed the request finding no session loaded: a session
    /// loaded from now on is never saved (see [`SlotInner::keep`]).
    finished: bool,
}

impl<T: SessionData> SessionSlot<T> {
    #[cfg(feature = "axum")]
    pub(crate) fn new(
        engine: Arc<dyn Engine<T>>,
        responder: Arc<dyn ErrorResponder>,
        headers: &HeaderMap,
        peer: Option<std::net::IpAddr>,
    ) -> Self {
        let cookie_headers = headers.get_all(COOKIE).iter().map(HeaderValue::as_bytes);
        let binding = engine.config().binding();
        let client = if binding.enabled() {
            let headers = crate::binding::ClientHeaders::from_header_map(headers);
            ClientInfo::from_request(peer, &headers, binding)
        } else {
            ClientInfo::default()
        };
        Self::from_cookie_headers(engine, responder, cookie_headers, client)
    }

    /// The slot for a request whose `Cookie` header values are `cookie_headers`.
    pub(crate) fn from_cookie_headers<'a>(
        engine: Arc<dyn Engine<T>>,
        responder: Arc<dyn ErrorResponder>,
        cookie_headers: impl IntoIterator<Item = &'a [u8]>,
        client: ClientInfo,
    ) -> Self {
        let cookie = match find_cookie_in(cookie_headers, engine.config().cookie().name()) {
            CookieLookup::Found(v) => Some(v.to_owned()),
            CookieLookup::Missing => None,
            CookieLookup::Ambiguous => {
                engine
                    .config()
                    .callbacks
                    .emit(crate::EventKind::AmbiguousCookie, None);
                None
            }
        };
        SessionSlot {
            inner: Arc::new(SlotInner {
                engine,
                responder,
                cookie,
                client,
                session: std::sync::OnceLock::new(),
                load_now: parking_lot::Mutex::new(LoadState::default()),
                load_done: tokio::sync::Notify::new(),
            }),
        }
    }

    /// The session, loading it on the first call. A store failure is not
    /// cached: a later call tries again. A stored session that cannot be
    /// decoded (e.g. written by an older version of the session type) is
    /// treated like a tampered cookie: a fresh session, not an error (its
    /// cookie is then expired, see [`crate::sessions`]).
    /// Concurrent first calls share one load.
    pub fn session(
        &self,
    ) -> impl std::future::Future<Output = Result<Session<T>, StoreError>> + Send + '_ {
        // A ready answer needs no state machine: the future a handler's
        // extractor awaits stays a few words long unless the store has to
        // be waited for. (Unboxed, the I/O half made every handler's future
        // larger: memory /read +0.86k instructions under callgrind, and
        // Redis /read saved nothing measurable; 2026-12-05.)
        match self.session_now() {
            Ok(answer) => Either::Left(std::future::ready(answer)),
            Err(early) => Either::Right(Box::pin(self.session_io(early))),
        }
    }

    /// [`SessionSlot::session`] without waiting: most loads need no I/O
    /// (memory, cookie, a warm cache, no cookie at all) and are answered
    /// here under a plain lock. (An async once-cell cost about a fifth of a
    /// memory-store load: its semaphore is locked and closed on every first
    /// use.) `Err` hands [`SessionSlot::session_io`] what it found.
    fn session_now(&self) -> Result<Result<Session<T>, StoreError>, Early<'_, T>> {
        let i = &self.inner;
        if let Some(session) = i.session.get() {
            return Ok(Ok(session.clone()));
        }
        let state = i.load_now.lock();
        if let Some(session) = i.session.get() {
            return Ok(Ok(session.clone()));
        }
        if state.io_running {
            return Err(Early::NotTried);
        }
        let mut state = state;
        match i.engine.load_now(i.cookie.as_deref(), &i.client) {
            Some(Ok(Loaded::Ready(session))) => Ok(Ok(i.keep(&state, session))),
            None => Err(Early::NeedsIo),
            // This caller finishes the load (touching, deleting or
            // re-binding what it found; `Loaded` is told when it is done):
            // marked running before the lock is let go, so that a caller
            // arriving meanwhile waits for it instead of loading again.
            // The mark goes with the returned future, dropped or not.
            Some(found) => {
                state.io_running = true;
                Err(Early::Found(Box::new(found), IoRunning(i)))
            }
        }
    }

    /// The rest of [`SessionSlot::session`], one caller at a time; while it
    /// runs, [`SessionSlot::session_now`] sends callers here instead of
    /// loading alongside it.
    async fn session_io(&self, early: Early<'_, T>) -> Result<Session<T>, StoreError> {
        let i = &self.inner;
        let cookie = i.cookie.as_deref();
        if let Early::Found(found, _running) = early {
            let session = finish_load(&*i.engine, Some(*found), cookie, &i.client).await?;
            // The guard let go before `_running`'s drop locks again.
            let kept = i.keep(&i.load_now.lock(), session);
            return Ok(kept);
        }
        let mut early = Some(early);
        let tried = loop {
            let done = {
                let mut state = i.load_now.lock();
                if let Some(session) = i.session.get() {
                    return Ok(session.clone());
                }
                if state.io_running {
                    // Made under the lock, before the loading caller can
                    // end and notify: no wake-up is missed.
                    state.waiting = true;
                    i.load_done.notified()
                } else {
                    let tried = match early.take() {
                        Some(Early::NeedsIo) => None,
                        // Another caller's load was running (and failed).
                        _ => i.engine.load_now(cookie, &i.client),
                    };
                    match tried {
                        Some(Ok(Loaded::Ready(session))) => {
                            return Ok(i.keep(&state, session));
                        }
                        tried => {
                            state.io_running = true;
                            break tried;
                        }
                    }
                }
            };
            done.await;
        };
        // Cleared on every way out, a dropped (cancelled) future included.
        let _running = IoRunning(i);
        let session = finish_load(&*i.engine, tried, cookie, &i.client).await?;
        // The guard let go before `_running`'s drop locks again.
        let kept = i.keep(&i.load_now.lock(), session);
        Ok(kept)
    }

    /// The error response for a failure, from the configured responder.
    pub fn error_response(&self, error: &StoreError) -> ErrorResponse {
        self.inner.responder.respond(error)
    }
}

/// What [`SessionSlot::session_now`] leaves to [`SessionSlot::session_io`]
/// (small: it is moved into the future that waits).
enum Early<'a, T: SessionData> {
    /// A load that waits for the store was running: nothing tried.
    NotTried,
    /// The store needs I/O.
    NeedsIo,
    /// A failure, or a session to delete, re-bind or touch first; this
    /// caller holds the slot's running mark until it is done.
    Found(Box<Result<Loaded<T>, StoreError>>, IoRunning<'a, T>),
}

/// Marks a slot's I/O load as finished when dropped, and wakes whoever
/// waited for it.
struct IoRunning<'a, T: SessionData>(&'a SlotInner<T>);

impl<T: SessionData> Drop for IoRunning<'_, T> {
    fn drop(&mut self) {
        let waited = {
            let mut state = self.0.load_now.lock();
            state.io_running = false;
            std::mem::take(&mut state.waiting)
        };
        if waited {
            self.0.load_done.notify_waiters();
        }
    }
}

/// [`SessionSlot::finish_now`]'s answer.
pub(crate) enum Finish<T> {
    /// Done; `Err` carries the response that must replace the handler's.
    Done(Result<(), ErrorResponse>),
    /// The store must be waited for: hand this to [`SessionSlot::finish_io`].
    Io(Pending<T>),
}

impl<T: SessionData> SessionSlot<T> {
    /// Commits the session (if the handler used it) into the handler's
    /// response headers: adds `Set-Cookie` (and `Cache-Control: no-store`, or makes the
    /// handler's own policy private unless it says `private` or
    /// `no-store`). `Err` carries the response that must replace
    /// the handler's, because the session could not be saved. (The tower
    /// layer drives `finish_now`/`finish_io` itself, to skip a future.)
    #[cfg(feature = "actix")]
    pub(crate) async fn finish_into(
        &self,
        headers: &mut impl HeaderSink,
    ) -> Result<(), ErrorResponse> {
        match self.finish_now(headers) {
            Finish::Done(result) => result,
            Finish::Io(pending) => self.finish_io(pending, headers).await,
        }
    }

    /// The part of [`SessionSlot::finish_into`] that needs no I/O: all of it
    /// when the handler did not use the session, or the store answers on
    /// the spot ([`crate::Store::save_now`]).
    pub(crate) fn finish_now(&self, headers: &mut impl HeaderSink) -> Finish<T> {
        let i = &self.inner;
        let session = match i.session.get() {
            Some(session) => session,
            None => {
                // Under the lock every load keeps its session under: one
                // that lands after this is marked committed (`keep`).
                let mut state = i.load_now.lock();
                match i.session.get() {
                    Some(session) => session,
                    None => {
                        state.finished = true;
                        return Finish::Done(Ok(()));
                    }
                }
            }
        };
        match i.engine.commit_now(session, i.cookie.as_deref()) {
            CommitStep::Done(action) => Finish::Done(self.apply(action, headers)),
            CommitStep::Io(pending) => Finish::Io(pending),
        }
    }

    /// The rest of [`SessionSlot::finish_now`], waiting for the store.
    pub(crate) async fn finish_io(
        &self,
        pending: Pending<T>,
        headers: &mut impl HeaderSink,
    ) -> Result<(), ErrorResponse> {
        let i = &self.inner;
        let action = i.engine.commit_io(pending, i.cookie.as_deref()).await;
        self.apply(action, headers)
    }

    fn apply(
        &self,
        action: Result<CookieAction, StoreError>,
        headers: &mut impl HeaderSink,
    ) -> Result<(), ErrorResponse> {
        let action = match action {
            Ok(action) => action,
            Err(e) => {
                tracing::error!(error = %e, "session could not be saved; replacing the response");
                return Err(self.error_response(&e));
            }
        };
        // The handler used the session: what it answered may depend on it.
        headers.vary_cookie();
        // The in-tree stores answer base64url; a store of the application's
        // own could answer anything, and a `;` in the value would add
        // attributes of its choosing to the cookie, a control character
        // would make the header invalid (and the session saved, but never
        // sent): an error, as for any save that cannot be completed.
        let bad_value = match &action {
            CookieAction::Set { value, .. } => !is_cookie_value(value),
            _ => false,
        };
        let set_cookie = set_cookie_header(self.inner.engine.config().cookie(), &action);
        // A response that sets the session cookie must not be cached and
        // replayed to someone else (`add_set_cookie` adds `Cache-Control:
        // no-store` or makes the handler's policy private).
        if bad_value || set_cookie.is_some_and(|c| !headers.add_set_cookie(c)) {
            let e = StoreError::Encode(
                "the store answered a cookie value with characters a cookie cannot carry".into(),
            );
            tracing::error!(error = %e, "session could not be saved; replacing the response");
            return Err(self.error_response(&e));
        }
        Ok(())
    }
}

fn installed<T: SessionData>(
    slot: Option<SessionSlot<T>>,
) -> Result<SessionSlot<T>, SessionRejection> {
    slot.ok_or(SessionRejection::MissingLayer(std::any::type_name::<T>()))
}

/// What the `Session<T>` extractors of every adapter do, given the slot the
/// middleware left in the request (`None`: no middleware).
pub(crate) async fn extract<T: SessionData>(
    slot: Option<SessionSlot<T>>,
) -> Result<Session<T>, SessionRejection> {
    let slot = installed(slot)?;
    slot.session()
        .await
        .map_err(|e| SessionRejection::Unavailable(slot.error_response(&e)))
}

/// The anonymous mode of the extractors: `None` when the store fails, still
/// a rejection when the middleware is missing (that is a bug to surface).
pub(crate) async fn extract_optional<T: SessionData>(
    slot: Option<SessionSlot<T>>,
) -> Result<Option<Session<T>>, SessionRejection> {
    match installed(slot)?.session().await {
        Ok(s) => Ok(Some(s)),
        Err(e) => {
            tracing::warn!(error = %e, "session store failed; serving the request without a session");
            Ok(None)
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn vary_already_covering_the_cookie_is_left_alone() {
        let covers = |values: &[&[u8]]| super::varies_by_cookie(values.iter().copied());
        assert!(covers(&[b"Cookie"]));
        assert!(covers(&[b"accept-encoding, COOKIE"]));
        assert!(covers(&[b"Accept", b" * "]));
        assert!(!covers(&[]));
        assert!(!covers(&[b"Accept-Encoding", b"Cookies, X-Cookie"]));
        let mut h = HeaderMap::new();
        h.append(
            http::header::VARY,
            HeaderValue::from_static("Accept-Encoding"),
        );
        HeaderSink::vary_cookie(&mut h);
        HeaderSink::vary_cookie(&mut h);
        let all: Vec<_> = h.get_all(http::header::VARY).iter().collect();
        assert_eq!(all, ["Accept-Encoding", "Cookie"]);
    }

    use super::*;
    use std::time::Duration;

    #[test]
    fn a_response_that_sets_the_cookie_is_never_left_to_shared_caches() {
        let safe = |values: &[&[u8]]| cookie_safe_cache_control(values.iter().copied());
        assert_eq!(
            safe(&[b"public, max-age=60"]).as_deref(),
            Some("max-age=60, private")
        );
        assert_eq!(
            safe(&[b"max-age=60", b"s-maxage=600"]).as_deref(),
            Some("max-age=60, s-maxage=600, private")
        );
        assert_eq!(safe(&[b"PUBLIC"]).as_deref(), Some("private"));
        assert_eq!(safe(&[b"\xff"]).as_deref(), Some("no-store"));
        for kept in [&b"private, max-age=60"[..], b"No-Store"] {
            assert_eq!(safe(&[kept]), None, "{kept:?}");
        }
        // `private` with a field list keeps only those fields from shared
        // caches, not the response (nor, unless listed, its Set-Cookie).
        assert_eq!(
            safe(&[b"public, max-age=60, private=x-user"]).as_deref(),
            Some("max-age=60, private")
        );
        // Quoted arguments may hide commas: the policy is replaced whole.
        for quoted in [
            &b"public, max-age=60, private=\"x-user\""[..],
            b"max-age=0, private=\"set-cookie\"",
            b"max-age=60, no-cache=\"a, private\"",
        ] {
            assert_eq!(safe(&[quoted]).as_deref(), Some("no-store"), "{quoted:?}");
        }
        let mut h = HeaderMap::new();
        h.insert(
            http::header::CACHE_CONTROL,
            HeaderValue::from_static("public, max-age=60"),
        );
        h.append(
            http::header::CACHE_CONTROL,
            HeaderValue::from_static("immutable"),
        );
        assert!(h.add_set_cookie("id=x".into()));
        let all: Vec<_> = h.get_all(http::header::CACHE_CONTROL).iter().collect();
        assert_eq!(all, ["max-age=60, immutable, private"]);
    }

    fn headers(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(COOKIE, v.parse().unwrap());
        }
        h
    }

    fn slot<S: crate::Store<u32>>(store: S, cookie: Option<&str>) -> SessionSlot<u32> {
        let sessions = crate::Sessions::new(store, crate::Config::default());
        let header = cookie.map(|v| format!("__Host-id={v}"));
        SessionSlot::from_cookie_headers(
            sessions.engine(),
            Arc::new(DefaultErrorResponder),
            header.as_deref().map(str::as_bytes),
            ClientInfo::default(),
        )
    }

    /// Commits the slot as the layers do; returns the `Set-Cookie` it added.
    async fn finish(s: &SessionSlot<u32>) -> Option<String> {
        let mut h = HeaderMap::new();
        let done = match s.finish_now(&mut h) {
            Finish::Done(done) => done,
            Finish::Io(pending) => s.finish_io(pending, &mut h).await,
        };
        assert!(done.is_ok(), "the commit failed");
        let set_cookie = h.get(http::header::SET_COOKIE)?;
        Some(set_cookie.to_str().unwrap().to_owned())
    }

    /// Stores a session holding `value` through a slot; returns its cookie value.
    async fn stored(store: crate::store::memory::MemoryStore<u32>, value: u32) -> String {
        let s = slot(store, None);
        *s.session().await.unwrap().data_mut() = value;
        let header = finish(&s).await.expect("a new session sets the cookie");
        let pair = header.split(';').next().unwrap();
        pair.strip_prefix("__Host-id=").unwrap().to_owned()
    }

    /// A session first asked for after the commit (from a task the handler
    /// spawned) is never saved: it says so instead of taking changes in.
    #[tokio::test]
    async fn a_session_first_used_after_the_commit_reports_its_changes_as_lost() {
        use crate::resilience::fault::FaultyStore;
        use crate::store::memory::MemoryStore;
        let memory = MemoryStore::<u32>::new();
        let cookie = stored(memory.clone(), 3).await;
        // Loaded on the spot (memory), through I/O (the wrapper), and with
        // no cookie at all.
        let on_the_spot = slot(memory.clone(), Some(&cookie));
        let through_io = slot(FaultyStore::new(memory.clone()), Some(&cookie));
        let fresh = slot(memory.clone(), None);
        for s in [on_the_spot, through_io, fresh] {
            assert_eq!(finish(&s).await, None, "nothing to commit yet");
            let late = s.session().await.unwrap();
            assert!(
                late.is_committed(),
                "a late session must count as committed"
            );
            *late.data_mut() += 1;
        }
        assert_eq!(memory.len(), 1, "no late session was saved");
        let again = slot(memory, Some(&cookie));
        assert_eq!(*again.session().await.unwrap().data(), 3);
    }

    #[tokio::test]
    async fn first_uses_at_once_share_one_session() {
        use crate::resilience::fault::FaultyStore;
        use crate::store::memory::MemoryStore;
        // Answered on the spot (memory), and through I/O (the wrapper has
        // no synchronous path), with and without a cookie.
        let memory = MemoryStore::<u32>::new();
        let stored = stored(memory.clone(), 7).await;
        for cookie in [None, Some(stored.as_str()), Some("unknown")] {
            let a = slot(memory.clone(), cookie);
            let b = slot(FaultyStore::new(memory.clone()), cookie);
            for s in [a, b] {
                let (x, y) = tokio::join!(s.session(), s.session());
                let (x, y) = (x.unwrap(), y.unwrap());
                assert_eq!(x.id(), y.id(), "cookie {cookie:?}");
                assert_eq!(s.session().await.unwrap().id(), x.id());
                if cookie == Some(stored.as_str()) {
                    assert_eq!(*x.data(), 7);
                }
            }
        }
    }

    /// A test store over memory whose loads wait (yield) before answering,
    /// the first `fail` of them with an error. It answers on the spot only
    /// with `warms_up`, and then only once a load has started (like a local
    /// cache filled by that load).
    struct Staged {
        inner: crate::store::memory::MemoryStore<u32>,
        warms_up: bool,
        warm: std::sync::atomic::AtomicBool,
        fail: std::sync::atomic::AtomicUsize,
    }

    impl Staged {
        fn new(inner: crate::store::memory::MemoryStore<u32>, warms_up: bool, fail: usize) -> Self {
            Staged {
                inner,
                warms_up,
                warm: false.into(),
                fail: fail.into(),
            }
        }
    }

    #[async_trait::async_trait]
    impl crate::Store<u32> for Staged {
        async fn load(&self, v: &str) -> Result<Option<crate::Record<u32>>, StoreError> {
            let ordering = std::sync::atomic::Ordering::SeqCst;
            self.warm.store(true, ordering);
            for _ in 0..3 {
                tokio::task::yield_now().await;
            }
            if self
                .fail
                .fetch_update(ordering, ordering, |n| n.checked_sub(1))
                .is_ok()
            {
                return Err(StoreError::Unavailable("staged store: refused".into()));
            }
            self.inner.load(v).await
        }
        async fn save(
            &self,
            save: crate::store::Save<'_, u32>,
        ) -> Result<crate::store::SaveOutcome, StoreError> {
            self.inner.save(save).await
        }
        async fn delete(&self, id: &crate::SessionId) -> Result<bool, StoreError> {
            self.inner.delete(id).await
        }
        fn load_now(&self, v: &str) -> Option<Result<Option<crate::Record<u32>>, StoreError>> {
            let warm = self.warm.load(std::sync::atomic::Ordering::SeqCst);
            (self.warms_up && warm)
                .then(|| self.inner.load_now(v))
                .flatten()
        }
    }

    #[tokio::test]
    async fn no_load_on_the_spot_runs_beside_one_waiting_for_the_store() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let memory = crate::store::memory::MemoryStore::<u32>::new();
        let stored = stored(memory.clone(), 5).await;
        let loads = Arc::new(AtomicUsize::new(0));
        let counter = loads.clone();
        let config = crate::Config::builder()
            .on_loaded(move |_| {
                counter.fetch_add(1, Ordering::SeqCst);
            })
            .build()
            .unwrap();
        let store = Staged::new(memory, true, 0);
        let sessions = crate::Sessions::new(store, config);
        let header = format!("__Host-id={stored}");
        let s = SessionSlot::from_cookie_headers(
            sessions.engine(),
            Arc::new(DefaultErrorResponder),
            [header.as_bytes()],
            ClientInfo::default(),
        );
        // The first caller waits for the store; the second arrives while the
        // store could answer on the spot, and must share the first's load.
        let (x, y) = tokio::join!(s.session(), s.session());
        let (x, y) = (x.unwrap(), y.unwrap());
        assert_eq!(x.id(), y.id());
        assert_eq!(*y.data(), 5);
        assert_eq!(loads.load(Ordering::SeqCst), 1, "one load, one event");
    }

    /// A session found close to its idle deadline is touched before it is
    /// handed out (a store write): concurrent first uses (actix-web polls a
    /// tuple of extractors together) load it once, with one event, and a
    /// first use dropped before it was polled holds nobody up.
    #[tokio::test]
    async fn first_uses_at_once_of_an_expiring_session_load_it_once() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let clock = crate::ManualClock::new();
        let memory = crate::store::memory::MemoryStore::<u32>::builder()
            .clock(clock.clone())
            .build();
        let loads = Arc::new(AtomicUsize::new(0));
        let counter = loads.clone();
        let config = crate::Config::builder()
            .clock(clock.clone())
            .idle_timeout(Duration::from_secs(600))
            .on_loaded(move |_| {
                counter.fetch_add(1, Ordering::SeqCst);
            })
            .build()
            .unwrap();
        let sessions = crate::Sessions::new(memory, config);
        let new = sessions.load(None).await.unwrap();
        *new.data_mut() = 9;
        let crate::CookieAction::Set { value, .. } = sessions.commit(&new, None).await.unwrap()
        else {
            panic!("a changed new session sets its cookie");
        };
        let header = format!("__Host-id={value}");
        let slot = || {
            SessionSlot::from_cookie_headers(
                sessions.engine(),
                Arc::new(DefaultErrorResponder),
                [header.as_bytes()],
                ClientInfo::default(),
            )
        };
        // 30 s before the idle deadline: within the request allowance.
        clock.advance(Duration::from_secs(570));
        let s = slot();
        let (x, y) = tokio::join!(s.session(), s.session());
        assert_eq!(x.unwrap().id(), y.unwrap().id());
        assert_eq!(loads.load(Ordering::SeqCst), 1, "one load, one event");
        // The touch moved the deadline; come close to it again.
        clock.advance(Duration::from_secs(570));
        let s = slot();
        drop(s.session());
        let again = tokio::time::timeout(Duration::from_secs(5), s.session())
            .await
            .expect("a dropped first use leaves the slot free");
        assert_eq!(*again.unwrap().data(), 9);
    }

    async fn staged_slot(value: u32, fail: usize) -> SessionSlot<u32> {
        let memory = crate::store::memory::MemoryStore::<u32>::new();
        let stored = stored(memory.clone(), value).await;
        slot(Staged::new(memory, false, fail), Some(&stored))
    }

    #[tokio::test]
    async fn a_caller_waiting_for_a_failed_load_tries_again() {
        let s = staged_slot(3, 1).await;
        // The first caller's load fails while the second waits for it.
        let both = async { tokio::join!(s.session(), s.session()) };
        let (x, y) = tokio::time::timeout(std::time::Duration::from_secs(5), both)
            .await
            .expect("the waiting caller is woken when the failed load ends");
        assert!(
            matches!(x, Err(StoreError::Unavailable(_))),
            "{:?}",
            x.err()
        );
        assert_eq!(*y.unwrap().data(), 3, "the waiting caller loaded it itself");
    }

    #[tokio::test]
    async fn a_caller_waiting_for_a_dropped_load_goes_on() {
        use futures_util::FutureExt;
        let s = staged_slot(4, 0).await;
        let mut first = Box::pin(s.session());
        assert!((&mut first).now_or_never().is_none(), "waits for the store");
        let mut second = Box::pin(s.session());
        assert!(
            (&mut second).now_or_never().is_none(),
            "waits for the first"
        );
        // The first caller gives up (a cancelled request, a timeout).
        drop(first);
        let session = tokio::time::timeout(std::time::Duration::from_secs(5), second)
            .await
            .expect("woken when the first load was dropped");
        assert_eq!(*session.unwrap().data(), 4);
    }

    #[tokio::test]
    async fn a_failed_load_is_not_kept() {
        use crate::resilience::fault::{Fault, FaultyStore};
        use crate::store::memory::MemoryStore;
        let memory = MemoryStore::<u32>::new();
        let stored = stored(memory.clone(), 3).await;
        let store = FaultyStore::new(memory);
        store.switch().set_for(Fault::Unavailable, 1);
        let s = slot(store, Some(&stored));
        assert!(matches!(s.session().await, Err(StoreError::Unavailable(_))));
        assert_eq!(*s.session().await.unwrap().data(), 3);
    }

    #[test]
    fn cookie_names_match_exactly() {
        let h = headers(&["xid=1; idx=2; ID=3"]);
        assert_eq!(find_cookie(&h, "id"), CookieLookup::Missing);
        let h = headers(&["a=1", " id = v ; b=2"]);
        assert_eq!(find_cookie(&h, "id"), CookieLookup::Found("v"));
    }

    #[test]
    fn two_session_cookies_count_as_none() {
        assert_eq!(
            find_cookie(&headers(&["id=a; id=b"]), "id"),
            CookieLookup::Ambiguous
        );
        assert_eq!(
            find_cookie(&headers(&["id=a", "id=b"]), "id"),
            CookieLookup::Ambiguous
        );
    }

    #[test]
    fn hostile_cookie_headers_do_not_panic() {
        let big = format!("id={}", "A".repeat(1 << 20));
        let many: String = (0..1000).map(|i| format!("c{i}=v;")).collect();
        for v in [
            ";;;",
            "=",
            "id",
            "id=",
            "==;==",
            "id=\"",
            big.as_str(),
            many.as_str(),
        ] {
            let _ = find_cookie(&headers(&[v]), "id");
        }
        let mut h = HeaderMap::new();
        h.append(
            COOKIE,
            http::HeaderValue::from_bytes(b"id=\xff\xfe").unwrap(),
        );
        assert_eq!(find_cookie(&h, "id"), CookieLookup::Missing);
        // Another application's malformed cookie does not hide ours.
        let mut h = HeaderMap::new();
        h.append(
            COOKIE,
            http::HeaderValue::from_bytes(b"other=\xff\xfe; id=abc").unwrap(),
        );
        assert_eq!(find_cookie(&h, "id"), CookieLookup::Found("abc"));
        assert_eq!(
            find_cookie(&headers(&["id=a b"]), "id"),
            CookieLookup::Missing
        );
    }

    #[test]
    fn set_cookie_matches_the_cookie_crate() {
        use crate::Config;
        let configs = [
            Config::default(),
            Config::builder()
                .same_site(SameSite::Strict)
                .cookie_domain(".example.com")
                .cookie_path("/app")
                .build()
                .unwrap(),
            Config::builder()
                .dangerously_allow_cross_site_cookie()
                .cookie_name("__Secure-sid")
                .cookie_domain("example.com")
                .build()
                .unwrap(),
            Config::builder()
                .dangerously_allow_insecure_http()
                .dangerously_allow_script_access()
                .build()
                .unwrap(),
        ];
        let actions = [
            CookieAction::Set {
                value: "v-_0".into(),
                max_age: Duration::from_secs(86_400 * 30),
            },
            CookieAction::Set {
                value: "x".into(),
                max_age: Duration::ZERO,
            },
            CookieAction::Remove,
        ];
        for cfg in &configs {
            for action in &actions {
                let c = cfg.cookie();
                let (value, max_age) = match action {
                    CookieAction::Set { value, max_age } => (value.as_str(), max_age.as_secs()),
                    _ => ("", 0),
                };
                let mut reference = cookie::Cookie::build((c.name(), value))
                    .path(c.path())
                    .http_only(c.http_only())
                    .secure(c.secure())
                    .same_site(match c.same_site() {
                        SameSite::Strict => cookie::SameSite::Strict,
                        SameSite::Lax => cookie::SameSite::Lax,
                        SameSite::None => cookie::SameSite::None,
                    })
                    .max_age(cookie::time::Duration::seconds(max_age as i64));
                if let Some(d) = c.domain() {
                    reference = reference.domain(d);
                }
                if matches!(action, CookieAction::Remove) {
                    reference = reference.expires(cookie::time::OffsetDateTime::UNIX_EPOCH);
                }
                let header = set_cookie_header(c, action).unwrap();
                assert_eq!(header, reference.build().to_string());
                if let CookieAction::Set { .. } = action {
                    assert_eq!(set_cookie_header_len(c, value.len(), max_age), header.len());
                }
            }
        }
    }

    #[test]
    fn set_cookie_carries_the_secure_defaults() {
        let cfg = crate::Config::default();
        let set = CookieAction::Set {
            value: "v".into(),
            max_age: Duration::from_secs(60),
        };
        let header = set_cookie_header(cfg.cookie(), &set).unwrap();
        assert!(header.starts_with("__Host-id=v;"), "{header}");
        for part in ["HttpOnly", "Secure", "SameSite=Lax", "Path=/", "Max-Age=60"] {
            assert!(header.contains(part), "{header} lacks {part}");
        }
        let removal = set_cookie_header(cfg.cookie(), &CookieAction::Remove).unwrap();
        assert!(removal.contains("Max-Age=0") && removal.contains("Path=/"));
        assert!(set_cookie_header(cfg.cookie(), &CookieAction::None).is_none());
    }
}
