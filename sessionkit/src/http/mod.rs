//! The HTTP edge, framework-free: reading the session cookie from request
//! headers, rendering `Set-Cookie`, the per-request [`SessionSlot`] that loads
//! lazily, and the response sent when the store fails.
//!
//! The adapters ([`tower`](crate::http::tower) for axum and any tower stack)
//! only move headers in and out of this module; every rule lives here or in
//! [`crate::Sessions`].
//!
//! # When the store fails
//! - **Load fails** (the handler asked for `Session<T>`): the request gets the
//!   [`ErrorResponder`]'s response, by default `503 Service Unavailable` with a
//!   short text body and `Retry-After: 1`. Handlers that can work without a
//!   session take `Option<Session<T>>` and get `None` instead.
//! - **Save fails** after the handler ran: the handler's response is replaced
//!   by the error response, with no `Set-Cookie`: the client keeps the cookie
//!   it had, and never receives a cookie for state that was not stored.
//! - The client's cookie is never overwritten by a throw-away session while the
//!   store is down.
//! - A stored session that cannot be decoded ([`StoreError::Decode`], e.g.
//!   after a change of the session type) is not a store failure: the request
//!   starts a fresh session, as for a tampered cookie.

use std::sync::Arc;

use http::header::{HeaderMap, COOKIE};
use http::StatusCode;
use tokio::sync::OnceCell;

use crate::config::{CookieConfig, SameSite};
use crate::error::StoreError;
use crate::record::SessionData;
use crate::session::Session;
use crate::sessions::{CookieAction, Engine};

#[cfg(feature = "axum")]
pub mod axum;
#[cfg(feature = "axum")]
pub mod tower;

/// What the session cookie lookup found in a request.
#[derive(Debug, Clone, PartialEq, Eq)]
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
    let mut found = None;
    for header in headers.get_all(COOKIE) {
        // Non-ASCII headers are not valid cookies; skip them rather than fail.
        let Ok(text) = header.to_str() else { continue };
        for pair in text.split(';') {
            let Some((k, v)) = pair.split_once('=') else {
                continue;
            };
            if k.trim() != name {
                continue;
            }
            let v = v.trim();
            let v = v
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .unwrap_or(v);
            if found.is_some() {
                metrics::counter!("sessionkit_ambiguous_cookies_total").increment(1);
                tracing::debug!("request carries the session cookie more than once; ignoring both");
                return CookieLookup::Ambiguous;
            }
            found = Some(v);
        }
    }
    match found {
        Some(v) => CookieLookup::Found(v),
        None => CookieLookup::Missing,
    }
}

/// Renders the `Set-Cookie` header value for an action, or `None` for [`CookieAction::None`].
pub fn set_cookie_header(config: &CookieConfig, action: &CookieAction) -> Option<String> {
    let (value, max_age) = match action {
        CookieAction::None => return None,
        CookieAction::Set { value, max_age } => (value.as_str(), max_age.as_secs() as i64),
        CookieAction::Remove => ("", 0),
    };
    let mut c = cookie::Cookie::build((config.name(), value))
        .path(config.path())
        .http_only(config.http_only())
        .secure(config.secure())
        .same_site(match config.same_site() {
            SameSite::Strict => cookie::SameSite::Strict,
            SameSite::Lax => cookie::SameSite::Lax,
            SameSite::None => cookie::SameSite::None,
        })
        .max_age(cookie::time::Duration::seconds(max_age));
    if let Some(d) = config.domain() {
        c = c.domain(d);
    }
    if matches!(action, CookieAction::Remove) {
        c = c.expires(cookie::time::OffsetDateTime::UNIX_EPOCH);
    }
    Some(c.build().to_string())
}

/// A response for when the session store fails.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorResponse {
    /// The status code.
    pub status: StatusCode,
    /// A short text body (sent as `text/plain; charset=utf-8`).
    pub body: String,
    /// `Retry-After` in seconds, if any.
    pub retry_after: Option<u32>,
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

/// The default: `503` + `Retry-After: 1` when the store is unavailable, `500`
/// when the session cannot be stored at all (e.g. a cookie over the size limit).
#[derive(Debug, Clone, Copy, Default)]
pub struct DefaultErrorResponder;

impl ErrorResponder for DefaultErrorResponder {
    fn respond(&self, error: &StoreError) -> ErrorResponse {
        if error.is_transient() || matches!(error, StoreError::CircuitOpen | StoreError::Backend(_))
        {
            ErrorResponse {
                status: StatusCode::SERVICE_UNAVAILABLE,
                body: "Session service temporarily unavailable; please retry shortly.\n".into(),
                retry_after: Some(1),
            }
        } else {
            ErrorResponse {
                status: StatusCode::INTERNAL_SERVER_ERROR,
                body: "The session could not be stored.\n".into(),
                retry_after: None,
            }
        }
    }
}

/// One request's session, loaded on first use. Adapters put it in the
/// request's extensions and [`SessionSlot::finish`] it after the handler.
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
    session: OnceCell<Session<T>>,
}

impl<T: SessionData> SessionSlot<T> {
    pub(crate) fn new(
        engine: Arc<dyn Engine<T>>,
        responder: Arc<dyn ErrorResponder>,
        headers: &HeaderMap,
    ) -> Self {
        let cookie = match find_cookie(headers, engine.config().cookie().name()) {
            CookieLookup::Found(v) => Some(v.to_owned()),
            CookieLookup::Missing | CookieLookup::Ambiguous => None,
        };
        SessionSlot {
            inner: Arc::new(SlotInner {
                engine,
                responder,
                cookie,
                session: OnceCell::new(),
            }),
        }
    }

    /// The session, loading it on the first call. A store failure is not
    /// cached: a later call tries again. A stored session that cannot be
    /// decoded (e.g. written by an older version of the session type) is
    /// treated like a tampered cookie: a fresh session, not an error.
    pub async fn session(&self) -> Result<Session<T>, StoreError> {
        let i = &self.inner;
        i.session
            .get_or_try_init(|| async {
                match i.engine.load(i.cookie.as_deref()).await {
                    Err(StoreError::Decode(_)) => {
                        metrics::counter!("sessionkit_undecodable_sessions_total").increment(1);
                        tracing::warn!("stored session could not be decoded; starting a fresh one");
                        let cfg = i.engine.config();
                        Ok(Session::fresh(cfg.clock.clone(), cfg.expiry, true))
                    }
                    other => other,
                }
            })
            .await
            .cloned()
    }

    /// The error response for a failure, from the configured responder.
    pub fn error_response(&self, error: &StoreError) -> ErrorResponse {
        self.inner.responder.respond(error)
    }

    /// Saves what the request changed and returns the `Set-Cookie` value to
    /// send, if any. Costs nothing when the handler never used the session.
    pub async fn finish(&self) -> Result<Option<String>, StoreError> {
        let i = &self.inner;
        let Some(session) = i.session.get() else {
            return Ok(None);
        };
        let action = i.engine.commit(session, i.cookie.as_deref()).await?;
        Ok(set_cookie_header(i.engine.config().cookie(), &action))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn headers(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(COOKIE, v.parse().unwrap());
        }
        h
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
    }

    #[test]
    fn set_cookie_carries_the_secure_defaults() {
        let cfg = crate::Config::default();
        let set = CookieAction::Set {
            value: "v".into(),
            max_age: Duration::from_secs(60),
        };
        let header = set_cookie_header(cfg.cookie(), &set).unwrap();
        for part in [
            "id=v",
            "HttpOnly",
            "Secure",
            "SameSite=Lax",
            "Path=/",
            "Max-Age=60",
        ] {
            assert!(header.contains(part), "{header} lacks {part}");
        }
        let removal = set_cookie_header(cfg.cookie(), &CookieAction::Remove).unwrap();
        assert!(removal.contains("Max-Age=0") && removal.contains("Path=/"));
        assert!(set_cookie_header(cfg.cookie(), &CookieAction::None).is_none());
    }
}
