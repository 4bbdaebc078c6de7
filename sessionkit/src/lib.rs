//! # sessionkit
//!
//! Type-safe web sessions for Rust: your own struct is the session data.
//!
//! - Stores behind one [`Store`] trait: [`store::memory::MemoryStore`]
//!   (always built), and behind cargo features the sealed-cookie store
//!   (`cookie-store`), the Redis store (`redis`; `redis-tls` for
//!   `rediss://`) and the clustered store, a local cache per node in front
//!   of Redis (`cluster`).
//! - HTTP integration: a tower layer with axum extractors (feature `axum`,
//!   on by default) and an actix-web 4 middleware (feature `actix`).
//! - Key ring and sealing for your own values (feature `crypto`, which
//!   `cookie-store` turns on).
//!
//! ```
//! use axum::{routing::post, Router, Json};
//! use sessionkit::{Config, Session, SessionLayer, Sessions, store::memory::MemoryStore};
//!
//! #[derive(serde::Serialize, serde::Deserialize, Default, Clone)]
//! struct User { name: Option<String> }
//!
//! async fn login(session: Session<User>, Json(name): Json<String>) -> &'static str {
//!     session.regenerate_id();               // new id on privilege change
//!     session.set_owner(Some(name.clone())); // index it for "log out everywhere"
//!     session.data_mut().name = Some(name);
//!     "ok"
//! }
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let sessions = Sessions::new(MemoryStore::<User>::new(), Config::default());
//! let app: Router = Router::new().route("/login", post(login)).layer(SessionLayer::new(&sessions));
//! # let _ = app;
//! # }
//! ```
//!
//! ## Design
//! - [`Sessions`] is the framework-free core: cookie value in, [`Session`] out;
//!   session out, store write and [`CookieAction`] back. Adapters only move headers.
//! - Loading is lazy: a route that never extracts the session touches no store.
//!   Saving happens only when something changed or sliding expiration needs
//!   the idle deadline moved; `Set-Cookie` is sent only for a new cookie
//!   value or a removal.
//! - Expiry (idle and absolute) is enforced from the record on every load,
//!   whatever the store's TTL does.
//! - A cookie that is unknown, malformed, tampered or expired yields a fresh
//!   session, never an error. Only a failing store is an error; see [`http`]
//!   for what clients then see.
//!
//! See `ARCHITECTURE.md` in the repository for the map of the code.

// One audited exception: `rng` registers a `pthread_atfork` handler.
#![deny(unsafe_code)]
#![deny(missing_docs)]
#![cfg_attr(docsrs, feature(doc_auto_cfg))]

pub mod binding;
#[cfg(feature = "crypto")]
pub mod codec;
pub mod config;
pub mod error;
pub mod events;
pub mod expiry;
pub mod flash;
#[cfg(any(feature = "crypto", feature = "redis"))]
mod frame;
pub mod http;
pub mod id;
#[cfg(feature = "crypto")]
pub mod keys;
pub mod merge;
pub mod record;
pub mod resilience;
mod rng;
pub mod session;
pub mod sessions;
pub mod store;
#[cfg(feature = "testing")]
pub mod testing;

pub use config::{BindingKey, Config, ConfigBuilder, ConfigError, ConfigProblem, SameSite};
pub use error::StoreError;
pub use events::{DeleteReason, EventKind, SessionEvent};
pub use expiry::{Clock, ExpiryKind, ManualClock, SystemClock};
pub use flash::FlashMessage;
#[cfg(feature = "actix")]
pub use http::actix::SessionMiddleware;
#[cfg(feature = "axum")]
pub use http::tower::SessionLayer;
pub use id::{InvalidSessionHandle, SessionHandle, SessionId};
#[cfg(feature = "crypto")]
pub use keys::{KeyPurpose, KeyRing};
pub use record::{Record, SessionData};
pub use session::Session;
pub use sessions::{CookieAction, Sessions};
pub use store::{QueryStore, Store};

/// The README's examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;
