//! # sessionkit-demo
//!
//! The demo application of sessionkit: a login, a per-session counter and
//! flash messages, as an HTML page (`/`) and a JSON API (`/api/...`). It runs
//! with `cargo run --release -p sessionkit-demo`; `demo/README.md` lists the
//! environment variables and the JSON contract.
//!
//! The crate is a library plus a thin `main.rs` so that tests can start the
//! app in-process on an ephemeral port, over any store and with an injected
//! clock:
//!
//! ```
//! use sessionkit::{Config, Sessions, store::memory::MemoryStore};
//! use sessionkit_demo::{app, DemoSession};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let sessions = Sessions::new(MemoryStore::<DemoSession>::new(), Config::default());
//! let router: axum::Router = app(&sessions);
//! # let _ = router;
//! # }
//! ```
//!
//! ## Routes
//! | route | session use |
//! |---|---|
//! | `GET /` | none: a static page whose script calls the API |
//! | `GET /healthz` | none: no store call, no `Set-Cookie` |
//! | `GET /api/me`, `POST /api/login`, `/api/logout`, `/api/counter`, `GET /api/flash` | [`sessionkit::Session`] |
//! | `POST /api/admin/revoke/{username}` | [`sessionkit::Sessions::revoke_owner`] |
//!
//! The revoke route is unprotected because this is a demo; a real
//! application must restrict it to administrators.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

use std::sync::Arc;

use axum::http::header::{HeaderValue, CACHE_CONTROL};
use axum::response::{Html, Response};
use axum::routing::{get, post};
use axum::Router;
use serde::{Deserialize, Serialize};
use sessionkit::{QueryStore, SessionLayer, Sessions};

pub mod api;
pub mod config;
pub mod server;

pub use config::DemoConfig;
pub use server::{serve, serve_app, serve_with, Running, StartError};

/// The demo's session data. Sessions start as `DemoSession::default()`:
/// anonymous, counter 0.
#[derive(Serialize, Deserialize, Default, Clone)]
pub struct DemoSession {
    /// The logged-in user, if any.
    pub username: Option<String>,
    /// The session's counter.
    pub counter: i64,
}

/// The HTML page at `/`.
pub const PAGE: &str = include_str!("page.html");

/// The demo's router over any store that can revoke a user's sessions.
pub fn app<S: QueryStore<DemoSession>>(sessions: &Sessions<DemoSession, S>) -> Router {
    let state = api::ApiState {
        revocation: Arc::new(sessions.clone()),
    };
    let api = Router::new()
        .route("/me", get(api::me))
        .route("/login", post(api::login))
        .route("/logout", post(api::logout))
        .route("/counter", post(api::counter))
        .route("/flash", get(api::flash))
        .route("/admin/revoke/{username}", post(api::revoke))
        .with_state(state)
        // Answers about a session are private to it.
        .layer(axum::middleware::map_response(no_store));
    Router::new()
        .route("/", get(|| async { Html(PAGE) }))
        .route("/healthz", get(api::healthz))
        .nest("/api", api)
        .layer(SessionLayer::new(sessions))
}

async fn no_store(mut res: Response) -> Response {
    res.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}
