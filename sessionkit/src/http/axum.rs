//! axum extractors: `Session<T>` and `Option<Session<T>>`.
//!
//! - `Session<T>` loads the session (once per request, however many
//!   extractors ask). A store failure rejects the request with the layer's
//!   error response (by default 503).
//! - `Option<Session<T>>` is the anonymous mode: `None` when the store fails,
//!   so pages that can render without a session keep working.
//!
//! Both reject with [`SessionRejection::MissingLayer`] (a 500 that names the
//! fix) when [`crate::SessionLayer`] is not installed for the route.

use axum_core::extract::{FromRequestParts, OptionalFromRequestParts};
use axum_core::response::{IntoResponse, Response};
use http::request::Parts;
use http::StatusCode;

use crate::http::{ErrorResponse, SessionSlot};
use crate::record::SessionData;
use crate::session::Session;

/// Why `Session<T>` could not be extracted.
#[derive(Debug)]
#[non_exhaustive]
pub enum SessionRejection {
    /// No `SessionLayer<T>` for this data type wraps the route.
    MissingLayer(&'static str),
    /// The store failed; carries the response the error responder chose.
    Unavailable(ErrorResponse),
}

impl IntoResponse for SessionRejection {
    fn into_response(self) -> Response {
        match self {
            SessionRejection::MissingLayer(ty) => {
                tracing::error!(
                    data = ty,
                    "Session<T> extracted without SessionLayer<T>: add `.layer(SessionLayer::new(&sessions))` \
                     to the router, with the same T"
                );
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Session layer missing for this route (server misconfiguration).\n",
                )
                    .into_response()
            }
            SessionRejection::Unavailable(e) => super::tower::render(e),
        }
    }
}

fn slot<T: SessionData>(parts: &Parts) -> Result<SessionSlot<T>, SessionRejection> {
    parts
        .extensions
        .get::<SessionSlot<T>>()
        .cloned()
        .ok_or(SessionRejection::MissingLayer(std::any::type_name::<T>()))
}

impl<S: Send + Sync, T: SessionData> FromRequestParts<S> for Session<T> {
    type Rejection = SessionRejection;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let slot = slot::<T>(parts)?;
        slot.session()
            .await
            .map_err(|e| SessionRejection::Unavailable(slot.error_response(&e)))
    }
}

impl<S: Send + Sync, T: SessionData> OptionalFromRequestParts<S> for Session<T> {
    type Rejection = SessionRejection;

    async fn from_request_parts(
        parts: &mut Parts,
        _state: &S,
    ) -> Result<Option<Self>, Self::Rejection> {
        let slot = slot::<T>(parts)?;
        match slot.session().await {
            Ok(s) => Ok(Some(s)),
            Err(e) => {
                tracing::warn!(error = %e, "session store failed; serving the request without a session");
                Ok(None)
            }
        }
    }
}
