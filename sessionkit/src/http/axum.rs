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

use crate::http::{extract, extract_optional, SessionSlot};
use crate::record::SessionData;
use crate::session::Session;

pub use crate::http::SessionRejection;

impl IntoResponse for SessionRejection {
    fn into_response(self) -> Response {
        if let SessionRejection::MissingLayer(ty) = &self {
            tracing::error!(
                data = ty,
                "Session<T> extracted without SessionLayer<T>: add `.layer(SessionLayer::new(&sessions))` \
                 to the router, with the same T"
            );
        }
        super::tower::render(self.response())
    }
}

impl<S: Send + Sync, T: SessionData> FromRequestParts<S> for Session<T> {
    type Rejection = SessionRejection;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        extract(parts.extensions.get::<SessionSlot<T>>().cloned()).await
    }
}

impl<S: Send + Sync, T: SessionData> OptionalFromRequestParts<S> for Session<T> {
    type Rejection = SessionRejection;

    async fn from_request_parts(
        parts: &mut Parts,
        _state: &S,
    ) -> Result<Option<Self>, Self::Rejection> {
        extract_optional(parts.extensions.get::<SessionSlot<T>>().cloned()).await
    }
}
