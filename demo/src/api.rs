//! The JSON contract: `/api/me`, `/api/login`, `/api/logout`, `/api/counter`,
//! `/api/flash` and `/api/admin/revoke/{username}`.
//!
//! Handlers only use the [`Session`] handle; the layer loads the session
//! lazily and saves it once the response is ready. Errors are JSON
//! (`{"error": "..."}`) with a status that says whose fault it is.
//!
//! ```
//! use sessionkit_demo::api::validate_username;
//! assert!(validate_username("alice").is_ok());
//! assert!(validate_username("").is_err());
//! assert!(validate_username(&"x".repeat(65)).is_err());
//! ```

use std::sync::Arc;

use async_trait::async_trait;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use sessionkit::{FlashMessage, QueryStore, Session, Sessions, StoreError};

use crate::DemoSession;

/// The longest accepted username, in characters.
pub const MAX_USERNAME_CHARS: usize = 64;

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

/// An error answer: `{"error": "..."}` with a status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// The status code.
    pub status: StatusCode,
    /// What went wrong, for the client.
    pub message: String,
}

impl ApiError {
    fn bad_request(message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(serde_json::json!({ "error": self.message })),
        )
            .into_response()
    }
}

/// Checks a username: 1 to [`MAX_USERNAME_CHARS`] characters, no control characters.
pub fn validate_username(name: &str) -> Result<(), ApiError> {
    if name.trim().is_empty() {
        return Err(ApiError::bad_request("username must not be empty"));
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
    Ok(())
}

/// Revokes every session of one user. Object-safe so the router need not
/// name the store type; implemented for every [`Sessions`] over a
/// [`QueryStore`]. A store that cannot list sessions (the cookie store)
/// will answer with an error instead.
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

/// What the API handlers share.
#[derive(Clone)]
pub struct ApiState {
    pub(crate) revocation: Arc<dyn OwnerRevocation>,
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

pub(crate) async fn me(session: Session<DemoSession>) -> Json<Me> {
    Json(me_of(&session))
}

pub(crate) async fn login(
    session: Session<DemoSession>,
    body: Result<Json<serde_json::Value>, JsonRejection>,
) -> Result<Json<Me>, ApiError> {
    let expected = "expected a JSON body {\"username\": \"...\"}";
    let Json(body) =
        body.map_err(|e| ApiError::bad_request(format!("{expected}: {}", e.body_text())))?;
    // Only an object: serde alone would also take `["alice"]` for the struct.
    if !body.is_object() {
        return Err(ApiError::bad_request(format!("{expected}: not an object")));
    }
    let LoginRequest { username } = serde_json::from_value(body)
        .map_err(|e| ApiError::bad_request(format!("{expected}: {e}")))?;
    validate_username(&username)?;
    // A new id on every privilege change defeats session fixation: the
    // cookie the client had before logging in is dead once this returns.
    session.regenerate_id();
    session.set_owner(Some(username.clone()));
    {
        let mut data = session.data_mut();
        if data.username.as_deref() != Some(username.as_str()) {
            // Someone else's (or the anonymous) counter is not this user's.
            if data.username.is_some() {
                data.counter = 0;
            }
            data.username = Some(username.clone());
        }
    }
    session
        .flash()
        .set("notice", format!("Welcome, {username}"));
    tracing::info!("user logged in");
    Ok(Json(me_of(&session)))
}

pub(crate) async fn logout(session: Session<DemoSession>) -> Json<LoggedOut> {
    let was = session.data().username.is_some();
    session.destroy();
    Json(LoggedOut { logged_out: was })
}

pub(crate) async fn counter(session: Session<DemoSession>) -> Json<Counter> {
    let counter = {
        let mut data = session.data_mut();
        data.counter = data.counter.saturating_add(1);
        data.counter
    };
    Json(Counter { counter })
}

pub(crate) async fn flash(session: Session<DemoSession>) -> Json<Flashes> {
    Json(Flashes {
        messages: session.flash().take_all(),
    })
}

pub(crate) async fn revoke(
    State(state): State<ApiState>,
    Path(username): Path<String>,
) -> Result<Json<Revoked>, ApiError> {
    validate_username(&username)?;
    match state.revocation.revoke_owner(&username).await {
        Ok(revoked) => {
            tracing::info!(revoked, "revoked a user's sessions");
            Ok(Json(Revoked { revoked }))
        }
        Err(e) => {
            tracing::error!(error = %e, "revoking a user's sessions failed");
            Err(ApiError {
                status: StatusCode::SERVICE_UNAVAILABLE,
                message: "the session store is unavailable; retry shortly".into(),
            })
        }
    }
}

pub(crate) async fn healthz() -> &'static str {
    "ok\n"
}

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
        for bad in ["", "   ", "a\nb", "\u{0}", "x\u{7f}"] {
            let e = validate_username(bad).unwrap_err();
            assert_eq!(e.status, StatusCode::BAD_REQUEST, "{bad:?}");
        }
    }
}
