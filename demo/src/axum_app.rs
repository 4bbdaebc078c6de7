//! The demo on axum: routes wired to [`crate::api`] behind
//! [`sessionkit::SessionLayer`]. Nothing here decides anything about
//! sessions; it only moves request parts in and the [`Reply`] out.
//!
//! ```
//! use sessionkit::{Config, Sessions, store::memory::MemoryStore};
//! use sessionkit_demo::{api::DemoSessions, axum_app, DemoSession};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let sessions = Sessions::new(MemoryStore::<DemoSession>::new(), Config::default());
//! let router: axum::Router = axum_app::router(&DemoSessions::with_revocation(sessions));
//! # let _ = router;
//! # }
//! ```

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::DefaultBodyLimit;
use axum::extract::{Path, State};
use axum::http::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use sessionkit::{Session, SessionLayer, Store};

use crate::api::{self, ApiError, DemoSessions, Reply, Revocation};
use crate::{DemoSession, PAGE};

impl IntoResponse for Reply {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (status, Json(self.body)).into_response()
    }
}

/// The demo's router: the page, `/healthz` and the JSON API.
pub fn router<S: Store<DemoSession>>(app: &DemoSessions<S>) -> Router {
    let api = Router::new()
        // `GET` only, as on actix-web: axum routes `HEAD` to a route's
        // `GET` handler unless it has one of its own, and a `HEAD
        // /api/flash` consumed the messages it did not show.
        .route(
            "/me",
            get(|s: Session<DemoSession>| async move { api::me(&s) }).head(no_head),
        )
        .route(
            "/login",
            post(login).layer(DefaultBodyLimit::max(api::LOGIN_BODY_LIMIT)),
        )
        .route(
            "/logout",
            post(|s: Session<DemoSession>| async move { api::logout(&s) }),
        )
        .route(
            "/counter",
            post(|s: Session<DemoSession>| async move { api::counter(&s) }),
        )
        .route(
            "/flash",
            get(|s: Session<DemoSession>| async move { api::flash(&s) }).head(no_head),
        )
        .route("/admin/revoke/{username}", post(revoke))
        .method_not_allowed_fallback(|| async { api::method_not_allowed() })
        .fallback(|| async { api::no_such_route() })
        .with_state(app.revocation.clone())
        .layer(axum::middleware::from_fn(same_origin_only))
        .layer(axum::middleware::map_response(no_store));
    Router::new()
        .route("/", get(|| async { Html(PAGE) }))
        .route("/healthz", get(|| async { api::HEALTHZ }))
        .nest("/api", api)
        .layer(SessionLayer::new(&app.sessions).error_responder(api::json_store_error))
}

/// `HEAD` on an API route: refused, as on actix-web.
async fn no_head() -> Reply {
    api::method_not_allowed()
}

async fn login(
    session: Session<DemoSession>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Reply {
    let body = body
        .as_ref()
        .map(|b| b.as_ref())
        .map_err(|e| ApiError::new(e.status().as_u16(), e.body_text()));
    let content_type = headers.get(CONTENT_TYPE).map(HeaderValue::as_bytes);
    api::login(&session, content_type, body)
}

async fn revoke(
    State(revocation): State<Revocation>,
    username: Result<Path<String>, PathRejection>,
) -> Reply {
    let username = username
        .as_ref()
        .map(|Path(u)| u.as_str())
        .map_err(|e| ApiError::new(e.status().as_u16(), e.body_text()));
    api::revoke(revocation.as_deref(), username).await
}

/// [`api::refuse_cross_site`] in front of every API route.
async fn same_origin_only(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let headers = req.headers();
    let header = |name: &str| headers.get(name).map(HeaderValue::as_bytes);
    let verdict = api::refuse_cross_site(
        req.method().as_str(),
        req.uri().path(),
        header("sec-fetch-site"),
        header("origin"),
        header("host"),
    );
    match verdict {
        Ok(()) => next.run(req).await,
        Err(e) => Reply::from(e).into_response(),
    }
}

async fn no_store(mut res: Response) -> Response {
    res.headers_mut().insert(
        CACHE_CONTROL,
        HeaderValue::from_static(api::API_CACHE_CONTROL),
    );
    res
}
