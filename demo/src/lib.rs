//! # sessionkit-demo
//!
//! The demo application of sessionkit: a login, a per-session counter and
//! flash messages, as an HTML page (`/`) and a JSON API (`/api/...`). It runs
//! with `cargo run --release -p sessionkit-demo`; `demo/README.md` lists the
//! environment variables and the JSON contract.
//!
//! The crate is a library plus a thin `main.rs` so that tests can start the
//! app in-process on an ephemeral port, over any store, on either framework
//! and with an injected clock:
//!
//! ```
//! use sessionkit::{Config, Sessions, store::memory::MemoryStore};
//! use sessionkit_demo::{api::DemoSessions, config::Framework, serve_app, DemoSession};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let sessions = Sessions::new(MemoryStore::<DemoSession>::new(), Config::default());
//! let app = DemoSessions::with_revocation(sessions);
//! let running = serve_app(Framework::Actix, &app, 0).await.unwrap();
//! println!("{}", running.url());
//! running.shutdown().await.unwrap();
//! # }
//! ```
//!
//! The route logic is written once, framework-free, in [`api`];
//! [`axum_app`] and [`actix_app`] only wire it to their framework.
//!
//! ## Routes
//! | route | session use |
//! |---|---|
//! | `GET /` | none: a static page whose script calls the API |
//! | `GET /healthz` | none: no store call, no `Set-Cookie` |
//! | `GET /api/me`, `POST /api/login`, `/api/logout`, `/api/counter`, `GET /api/flash` | [`sessionkit::Session`] |
//! | `POST /api/admin/revoke/{username}` | [`sessionkit::Sessions::revoke_owner`], for stores that can list a user's sessions |
//!
//! The revoke route is unprotected because this is a demo; a real
//! application must restrict it to administrators.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

use serde::{Deserialize, Serialize};
use sessionkit::{QueryStore, Sessions};

pub mod actix_app;
pub mod api;
pub mod axum_app;
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

/// The demo's axum router over any store that can revoke a user's sessions
/// (shorthand for [`axum_app::router`] with [`api::DemoSessions::with_revocation`]).
pub fn app<S: QueryStore<DemoSession>>(sessions: &Sessions<DemoSession, S>) -> axum::Router {
    axum_app::router(&api::DemoSessions::with_revocation(sessions.clone()))
}
