//! The JSON contract: `/api/me`, `/api/login`, `/api/logout`, `/api/counter`,
//! `/api/flash` and `/api/admin/revoke/{username}`, written once for every
//! framework.
//!
//! Each route is a function over the request's [`Session`] (and, for the
//! admin route, the store's [`OwnerRevocation`] if it has one) that returns a
//! [`Reply`]: a status and a JSON body. The framework files
//! ([`crate::axum_app`], [`crate::actix_app`]) only extract the session and
//! the raw request parts, call these functions and turn the [`Reply`] into
//! their own response type; the session layer of each framework loads the
//! session lazily and saves it once the response is ready. Errors are JSON
//! (`{"error": "..."}`) with a status that says whose fault it is.
//!
//! ```
//! use sessionkit_demo::api::{validate_username, parse_login};
//! assert!(validate_username("alice").is_ok());
//! assert!(validate_username("").is_err());
//! assert!(validate_username(&"x".repeat(65)).is_err());
//!
//! let body = br#"{"username": "alice"}"#;
//! assert_eq!(parse_login(Some(b"application/json"), Ok(body)).unwrap().username, "alice");
//! assert_eq!(parse_login(None, Ok(body)).unwrap_err().status, 400);
//! ```

use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sessionkit::{FlashMessage, QueryStore, Session, Sessions, Store, StoreError};

use crate::DemoSession;

/// The longest accepted username, in characters.
pub const MAX_USERNAME_CHARS: usize = 64;

/// The `Cache-Control` of every `/api` answer: answers about a session are private to it.
pub const API_CACHE_CONTROL: &str = "no-store";

/// `GET /api/me`: who this session belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Me {
    /// Whether someone logged in.
    pub logged_in: bool,
    /// Their name.
    pub username: Option<String>,
    /// The session's counter.
    pub counter: i64,
    /// Seconds until the session dies if nothing happens.
    pub expires_in_secs: u64,
}

/// `POST /api/login` body.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct LoginRequest {
    /// The name to log in as (1 to 64 characters, no control characters).
    pub username: String,
}

/// `POST /api/counter` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counter {
    /// The counter after the increment.
    pub counter: i64,
}

/// `POST /api/logout` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoggedOut {
    /// Whether someone was logged in.
    pub logged_out: bool,
}

/// `GET /api/flash` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Flashes {
    /// The pending messages, oldest first; reading consumes them.
    pub messages: Vec<FlashMessage>,
}

/// `POST /api/admin/revoke/{username}` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revoked {
    /// How many sessions were deleted.
    pub revoked: usize,
}

/// What a route answers, whatever framework serves it: a status code and a
/// JSON body (sent with [`API_CACHE_CONTROL`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    /// The HTTP status code.
    pub status: u16,
    /// The JSON body.
    pub body: Value,
}

impl Reply {
    /// `200 OK` with `body` as JSON.
    pub fn ok(body: impl Serialize) -> Self {
        match serde_json::to_value(body) {
            Ok(body) => Reply { status: 200, body },
            // The answer types above are plain structs of strings and
            // numbers; this arm exists so that nothing here can panic.
            Err(e) => ApiError::new(500, format!("cannot encode the answer: {e}")).into(),
        }
    }
}

/// An error answer: `{"error": "..."}` with a status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// The HTTP status code (4xx or 5xx).
    pub status: u16,
    /// What went wrong, for the client.
    pub message: String,
}

impl ApiError {
    /// An error with this status and message.
    pub fn new(status: u16, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
        }
    }

    fn bad_request(message: impl Into<String>) -> Self {
        ApiError::new(400, message)
    }
}

impl From<ApiError> for Reply {
    fn from(e: ApiError) -> Self {
        Reply {
            status: e.status,
            body: serde_json::json!({ "error": e.message }),
        }
    }
}

/// The answer to a path under `/api` that names no route: a JSON 404 like
/// every other API error (the frameworks' own is an empty body).
pub fn no_such_route() -> Reply {
    ApiError::new(404, "no such API route").into()
}

/// The answer to an API route asked with a method it does not take: a JSON
/// 405 like every other API error.
pub fn method_not_allowed() -> Reply {
    ApiError::new(405, "this API route does not take that method").into()
}

impl<T: Serialize> From<Result<T, ApiError>> for Reply {
    fn from(r: Result<T, ApiError>) -> Self {
        r.map_or_else(Reply::from, Reply::ok)
    }
}

/// The session layer's answer when the store fails, as JSON like every
/// other API error: the library's default status and `Retry-After` (503 and
/// 1 s when a retry may pass, 500 when the session cannot be stored at
/// all), with `{"error": "..."}` instead of its one-line text.
pub fn json_store_error(e: &StoreError) -> sessionkit::http::ErrorResponse {
    use sessionkit::http::{DefaultErrorResponder, ErrorResponder, ErrorResponse};
    let plain = DefaultErrorResponder.respond(e);
    let message = if plain.status.is_server_error() && plain.retry_after.is_some() {
        "the session service is temporarily unavailable; please retry shortly"
    } else {
        "the session could not be stored"
    };
    let mut r = ErrorResponse::json(plain.status, &serde_json::json!({ "error": message }));
    r.retry_after = plain.retry_after;
    r
}

/// Refuses a state-changing request that another site's page made the
/// browser send: any method but `GET`, `HEAD`, `OPTIONS`, and also a `GET`
/// of `/api/flash` (reading the messages consumes them). With
/// `Sec-Fetch-Site` (every current browser sends it), anything but
/// `same-origin` or `none` (typed, bookmarked) is refused; without it, an
/// `Origin` other than this `Host`. Requests with neither (curl, tests, old
/// browsers) pass. `SameSite=Lax` alone does not stop a cross-site form
/// from posting to a route that needs no cookie (the admin revoke), nor
/// from replacing the session cookie through the fresh session such a
/// cookie-less post creates; and every port of `localhost` is the same
/// *site* to the browser.
///
/// Whatever the method, a `Host` other than a loopback name (`localhost`,
/// `127.0.0.1`, `[::1]`, any port) is refused: the demo listens on
/// 127.0.0.1 only, so another name means a page that re-pointed its own
/// domain at this machine (DNS rebinding), which the browser then counts as
/// same-origin.
pub fn refuse_cross_site(
    method: &str,
    path: &str,
    sec_fetch_site: Option<&[u8]>,
    origin: Option<&[u8]>,
    host: Option<&[u8]>,
) -> Result<(), ApiError> {
    if host.is_some_and(|h| !is_loopback_host(h)) {
        return Err(ApiError::new(
            403,
            "request for another host name refused: the demo answers localhost only",
        ));
    }
    // Only reads of `/api/me` (mounted at `/api`, or seen inside the
    // mount) are let through unchecked: a list of the routes that change
    // something (`/flash` consumes) would miss a spelling the router still
    // matches (actix-web routes `/api/fl%61sh` to the flash handler).
    let harmless_read = matches!(method, "GET" | "HEAD" | "OPTIONS")
        && path.strip_prefix("/api").unwrap_or(path) == "/me";
    if harmless_read {
        return Ok(());
    }
    let refused = match (sec_fetch_site, origin) {
        (Some(site), _) => !matches!(site, b"same-origin" | b"none"),
        (None, Some(origin)) => {
            let authority = origin
                .strip_prefix(b"https://")
                .or_else(|| origin.strip_prefix(b"http://"));
            authority.is_none() || authority != host
        }
        (None, None) => false,
    };
    if refused {
        return Err(ApiError::new(
            403,
            "cross-site request refused: this route only answers the demo's own page",
        ));
    }
    Ok(())
}

/// Whether a `Host` header names this machine's loopback interface
/// (`localhost`, `127.0.0.1` or `[::1]`, with or without a port).
fn is_loopback_host(host: &[u8]) -> bool {
    let name = match host.strip_prefix(b"[") {
        Some(rest) => match rest.iter().position(|&b| b == b']') {
            Some(end) => &host[..end + 2],
            None => return false,
        },
        None => match host.iter().rposition(|&b| b == b':') {
            Some(colon) => &host[..colon],
            None => host,
        },
    };
    name.eq_ignore_ascii_case(b"localhost") || name == b"127.0.0.1" || name == b"[::1]"
}

/// Characters that change how a name displays without showing themselves:
/// zero-width spaces and joiners, direction marks and overrides, the BOM,
/// combining and variation selectors, tag characters, blank-looking Hangul
/// fillers, line and paragraph separators, interlinear annotation marks.
/// `alice\u{200B}` would look like `alice` on the page while revoking
/// `alice` missed it.
fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'
            | '\u{034F}'
            | '\u{061C}'
            | '\u{115F}'
            | '\u{1160}'
            | '\u{180E}'
            | '\u{200B}'..='\u{200F}'
            | '\u{2028}'..='\u{202E}'
            | '\u{2060}'..='\u{2064}'
            | '\u{2066}'..='\u{2069}'
            | '\u{3164}'
            | '\u{FE00}'..='\u{FE0F}'
            | '\u{FEFF}'
            | '\u{FFA0}'
            | '\u{FFF9}'..='\u{FFFB}'
            | '\u{E0000}'..='\u{E007F}'
            | '\u{E0100}'..='\u{E01EF}'
    )
}

/// Checks a username: 1 to [`MAX_USERNAME_CHARS`] characters, no control
/// or invisible characters, no spaces at either end, no U+FFFD (the mark
/// of bytes that were not UTF-8).
pub fn validate_username(name: &str) -> Result<(), ApiError> {
    if name.trim().is_empty() {
        return Err(ApiError::bad_request("username must not be empty"));
    }
    if name.trim() != name {
        return Err(ApiError::bad_request(
            "username must not start or end with spaces",
        ));
    }
    if name.chars().any(is_invisible) {
        return Err(ApiError::bad_request(
            "username must not contain invisible characters (zero-width, direction marks)",
        ));
    }
    // A URL path segment of only dots is a dot-segment: the page's
    // "log out everywhere" for `..` would reach `/api/admin/`, never it.
    if name.chars().all(|c| c == '.') {
        return Err(ApiError::bad_request("username must not be only dots"));
    }
    if name.chars().count() > MAX_USERNAME_CHARS {
        return Err(ApiError::bad_request(format!(
            "username must be at most {MAX_USERNAME_CHARS} characters"
        )));
    }
    if name.chars().any(char::is_control) {
        return Err(ApiError::bad_request(
            "username must not contain control characters",
        ));
    }
    // What a lossy decoder makes of bytes that are not UTF-8 (actix-web
    // decodes `%FF` in a path this way; axum rejects it): never a name.
    if name.contains(char::REPLACEMENT_CHARACTER) {
        return Err(ApiError::bad_request(
            "username must be valid UTF-8 (no U+FFFD replacement characters)",
        ));
    }
    Ok(())
}

/// Whether a `Content-Type` value announces JSON (`application/json` or
/// `application/<something>+json`, parameters and case ignored).
fn is_json(content_type: &[u8]) -> bool {
    let Ok(value) = std::str::from_utf8(content_type) else {
        return false;
    };
    let essence = value
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// Parses and checks a `POST /api/login` request from its `Content-Type`
/// header and its body (or the error the framework met reading the body,
/// e.g. one over its size limit). Only a JSON object with a valid
/// `username` string passes.
pub fn parse_login(
    content_type: Option<&[u8]>,
    body: Result<&[u8], ApiError>,
) -> Result<LoginRequest, ApiError> {
    let expected = "expected a JSON body {\"username\": \"...\"}";
    let body = body.map_err(|e| ApiError::new(e.status, format!("{expected}: {}", e.message)))?;
    if !content_type.is_some_and(is_json) {
        return Err(ApiError::bad_request(format!(
            "{expected}: Content-Type must be application/json"
        )));
    }
    let body: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("{expected}: {e}")))?;
    // Only an object: serde alone would also take `["alice"]` for the struct.
    if !body.is_object() {
        return Err(ApiError::bad_request(format!("{expected}: not an object")));
    }
    let request: LoginRequest = serde_json::from_value(body)
        .map_err(|e| ApiError::bad_request(format!("{expected}: {e}")))?;
    validate_username(&request.username)?;
    Ok(request)
}

/// Revokes every session of one user. Object-safe so the apps need not
/// name the store type; implemented for every [`Sessions`] over a
/// [`QueryStore`]. A store that cannot list sessions (the cookie store,
/// which keeps them in the browser) has none: see [`revocation_of`] and
/// [`revoke`].
#[async_trait]
pub trait OwnerRevocation: Send + Sync + 'static {
    /// Deletes every session owned by `owner`; returns how many.
    async fn revoke_owner(&self, owner: &str) -> Result<usize, StoreError>;
}

#[async_trait]
impl<S: QueryStore<DemoSession>> OwnerRevocation for Sessions<DemoSession, S> {
    async fn revoke_owner(&self, owner: &str) -> Result<usize, StoreError> {
        Sessions::revoke_owner(self, owner).await
    }
}

/// The revocation capability of an app: `None` for stores that cannot
/// find a user's sessions.
pub type Revocation = Option<Arc<dyn OwnerRevocation>>;

/// The revocation capability of sessions over a [`QueryStore`].
pub fn revocation_of<S: QueryStore<DemoSession>>(
    sessions: &Sessions<DemoSession, S>,
) -> Revocation {
    Some(Arc::new(sessions.clone()))
}

/// What the app tells an admin when its store cannot revoke sessions.
pub const CANNOT_REVOKE: &str =
    "the cookie store keeps sessions in the browser and cannot revoke them";

/// The store-independent part of what an app serves: its sessions (for the
/// session layer) and whether it can revoke a user's sessions.
pub struct DemoSessions<S> {
    /// The sessions the session layer serves.
    pub sessions: Sessions<DemoSession, S>,
    /// `POST /api/admin/revoke/{username}`'s capability.
    pub revocation: Revocation,
}

impl<S: Store<DemoSession>> Clone for DemoSessions<S> {
    fn clone(&self) -> Self {
        DemoSessions {
            sessions: self.sessions.clone(),
            revocation: self.revocation.clone(),
        }
    }
}

impl<S: QueryStore<DemoSession>> DemoSessions<S> {
    /// Sessions over a store that can list a user's sessions: the admin route works.
    pub fn with_revocation(sessions: Sessions<DemoSession, S>) -> Self {
        let revocation = revocation_of(&sessions);
        DemoSessions {
            sessions,
            revocation,
        }
    }
}

impl<S: Store<DemoSession>> DemoSessions<S> {
    /// Sessions over a store that cannot: the admin route answers
    /// `501` with [`CANNOT_REVOKE`].
    pub fn without_revocation(sessions: Sessions<DemoSession, S>) -> Self {
        DemoSessions {
            sessions,
            revocation: None,
        }
    }
}

fn me_of(session: &Session<DemoSession>) -> Me {
    // Clone out of the guard: `time_until_expiry` locks the session again.
    let data = session.data().clone();
    Me {
        logged_in: data.username.is_some(),
        username: data.username,
        counter: data.counter,
        expires_in_secs: session.time_until_expiry().as_secs(),
    }
}

/// `GET /api/me`.
pub fn me(session: &Session<DemoSession>) -> Reply {
    Reply::ok(me_of(session))
}

/// `POST /api/login`, with the request's `Content-Type` and body as
/// [`parse_login`] takes them.
pub fn login(
    session: &Session<DemoSession>,
    content_type: Option<&[u8]>,
    body: Result<&[u8], ApiError>,
) -> Reply {
    let username = match parse_login(content_type, body) {
        Ok(LoginRequest { username }) => username,
        Err(e) => return e.into(),
    };
    // A new id on every privilege change defeats session fixation: the
    // cookie the client had before logging in is dead once this returns.
    session.regenerate_id();
    session.set_owner(Some(username.clone()));
    let someone_else = {
        let mut data = session.data_mut();
        let someone_else = data
            .username
            .as_deref()
            .is_some_and(|u| u != username.as_str());
        if someone_else {
            // Someone else's counter is not this user's (an anonymous one is
            // kept: the visitor just logged in).
            data.counter = 0;
        }
        data.username = Some(username.clone());
        someone_else
    };
    if someone_else {
        // Nor are their unread flash messages.
        session.flash().take_all();
    }
    session
        .flash()
        .set("notice", format!("Welcome, {username}"));
    tracing::info!("user logged in");
    me(session)
}

/// `POST /api/logout`.
pub fn logout(session: &Session<DemoSession>) -> Reply {
    let was = session.data().username.is_some();
    session.destroy();
    Reply::ok(LoggedOut { logged_out: was })
}

/// `POST /api/counter`.
pub fn counter(session: &Session<DemoSession>) -> Reply {
    let counter = {
        let mut data = session.data_mut();
        data.counter = data.counter.saturating_add(1);
        data.counter
    };
    Reply::ok(Counter { counter })
}

/// `GET /api/flash`.
pub fn flash(session: &Session<DemoSession>) -> Reply {
    Reply::ok(Flashes {
        messages: session.flash().take_all(),
    })
}

/// `POST /api/admin/revoke/{username}`, with the path segment as the
/// framework decoded it (or the error it met decoding it).
pub async fn revoke(
    revocation: Option<&dyn OwnerRevocation>,
    username: Result<&str, ApiError>,
) -> Reply {
    let username = match username.and_then(|u| validate_username(u).map(|()| u)) {
        Ok(u) => u,
        Err(e) => return e.into(),
    };
    let Some(revocation) = revocation else {
        return ApiError::new(501, CANNOT_REVOKE).into();
    };
    match revocation.revoke_owner(username).await {
        Ok(revoked) => {
            tracing::info!(revoked, "revoked a user's sessions");
            Reply::ok(Revoked { revoked })
        }
        Err(e) => {
            tracing::error!(error = %e, "revoking a user's sessions failed");
            ApiError::new(503, "the session store is unavailable; retry shortly").into()
        }
    }
}

/// `GET /healthz`: never touches the session store.
pub const HEALTHZ: &str = "ok\n";

/// The largest login body taken, in bytes, on both frameworks (their own
/// defaults differ: 2 MiB on axum, 256 KiB on actix-web); a username is at
/// most 64 characters. A larger body answers `413` with a JSON error.
pub const LOGIN_BODY_LIMIT: usize = 4 * 1024;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames_are_bounded_in_characters_not_bytes() {
        assert!(validate_username(&"é".repeat(64)).is_ok());
        assert!(validate_username(&"é".repeat(65)).is_err());
        assert!(validate_username(&"a".repeat(64)).is_ok());
    }

    #[test]
    fn blank_and_control_character_usernames_are_rejected() {
        for bad in [
            "",
            "   ",
            "a\nb",
            "\u{0}",
            "x\u{7f}",
            "\u{fffd}",
            "a\u{fffd}b",
            ".",
            "..",
            "alice\u{E0020}",
            "alice\u{061C}",
            "alice\u{FE0F}",
            "\u{3164}",
            "a\u{2028}b",
        ] {
            let e = validate_username(bad).unwrap_err();
            assert_eq!(e.status, 400, "{bad:?}");
        }
    }

    #[test]
    fn only_json_content_types_are_taken_for_a_login() {
        for ok in [
            "application/json",
            "Application/JSON; charset=utf-8",
            "application/vnd.demo+json",
        ] {
            assert!(is_json(ok.as_bytes()), "{ok}");
        }
        for bad in [
            &b"text/plain"[..],
            b"application/jsonx",
            b"multipart/form-data",
            b"",
            b"\xff\xfe",
            b"application/x-www-form-urlencoded",
        ] {
            assert!(!is_json(bad), "{bad:?}");
        }
    }

    #[test]
    fn hostile_login_bodies_are_400s_naming_the_expected_shape() {
        let json = Some(&b"application/json"[..]);
        for body in [
            &b""[..],
            b"{",
            b"\xef\xbb\xbf{}",
            b"\xff",
            b"[\"alice\"]",
            b"{\"username\": 1}",
            b"{\"username\": \"\"}",
            b"null",
        ] {
            let e = parse_login(json, Ok(body)).unwrap_err();
            assert_eq!(e.status, 400, "{body:?}");
            assert!(e.message.contains("username"), "{}", e.message);
        }
        let too_big = parse_login(json, Err(ApiError::new(413, "payload too large"))).unwrap_err();
        assert_eq!(too_big.status, 413);
    }

    #[tokio::test]
    async fn a_store_without_revocation_answers_501_with_a_json_error() {
        let r = revoke(None, Ok("alice")).await;
        assert_eq!(r.status, 501);
        assert_eq!(r.body["error"], CANNOT_REVOKE);
        let bad = revoke(None, Ok("a\nb")).await;
        assert_eq!(bad.status, 400, "the name is checked first");
    }
}
