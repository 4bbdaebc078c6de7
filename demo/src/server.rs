//! Starting the demo: binding 127.0.0.1, picking the store and the framework
//! at run time and serving until told to stop.
//!
//! The store is chosen at run time but the session types are generic, so
//! each [`StoreKind`] is one match arm in [`serve_with`] that builds its
//! store and hands it, with its revocation capability, to the generic
//! [`serve_app`], which starts the chosen [`Framework`].
//!
//! ```no_run
//! # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use sessionkit_demo::{config::DemoConfig, serve};
//!
//! let running = serve(&DemoConfig { port: 0, ..DemoConfig::default() }).await?;
//! println!("serving on {}", running.url());
//! running.shutdown().await?;
//! # Ok(()) }
//! ```

use std::future::Future;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::time::Duration;

use actix_web::dev::ServerHandle;
use sessionkit::codec::Codec;
use sessionkit::keys::{KeyPurpose, KeyRing, KeyRingError};
use sessionkit::resilience::{ResilienceConfig, Resilient};
use sessionkit::store::cluster::{ClusterOptions, ClusteredStore, MessageKey};
use sessionkit::store::cookie::CookieStore;
use sessionkit::store::memory::MemoryStore;
use sessionkit::store::redis::RedisStore;
use sessionkit::{Config, ConfigError, Sessions, Store, StoreError};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use crate::api::DemoSessions;
use crate::config::{DemoConfig, Framework, StoreKind};
use crate::DemoSession;

/// The key prefix of the demo's sessions in Redis.
pub const REDIS_KEY_PREFIX: &str = "sessionkit-demo:";

/// The pub/sub channel the `cluster` store's processes invalidate each
/// other's caches on.
pub const CLUSTER_CHANNEL: &str = "sessionkit-demo:invalidate";

/// Why the demo could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The session configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The port could not be bound.
    #[error("cannot listen on 127.0.0.1:{port}: {source} (set PORT to a free port)")]
    Bind {
        /// The port asked for.
        port: u16,
        /// The OS error.
        source: io::Error,
    },
    /// The session store could not be reached or set up.
    #[error("SESSION_STORE={store}: {source} (is the server at REDIS_URL running and reachable?)")]
    Store {
        /// The store asked for.
        store: &'static str,
        /// What the store said (never the URL: it may hold a password).
        source: StoreError,
    },
    /// The key ring cannot be built from `SESSION_SECRET`.
    #[error("SESSION_SECRET: {0}")]
    Keys(#[from] KeyRingError),
    /// The resilience settings are invalid.
    #[error("invalid resilience settings: {0}")]
    Resilience(#[from] sessionkit::resilience::ResilienceConfigError),
}

type Done = Pin<Box<dyn Future<Output = io::Result<()>> + Send>>;

/// How to tell the server to stop.
enum Stop {
    Axum(oneshot::Sender<()>),
    Actix(ServerHandle),
}

impl Stop {
    /// Tells the server to stop gracefully; returns without waiting.
    fn send(self) {
        match self {
            Stop::Axum(tx) => {
                let _ = tx.send(());
            }
            // The command is sent by the call; the returned future only
            // waits for its completion.
            Stop::Actix(handle) => drop(handle.stop(true)),
        }
    }
}

/// A running demo server. Dropping it stops the server too (gracefully).
pub struct Running {
    addr: SocketAddr,
    stop: Option<Stop>,
    done: Done,
}

impl Running {
    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The base URL, `http://127.0.0.1:PORT` (no trailing slash).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops accepting connections, lets in-flight requests finish, and
    /// returns the server's result.
    pub async fn shutdown(mut self) -> io::Result<()> {
        if let Some(stop) = self.stop.take() {
            stop.send();
        }
        (&mut self.done).await
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            stop.send();
        }
    }
}

/// Serves the demo over `app` with `framework` on 127.0.0.1:`port` (0 lets
/// the OS pick) until [`Running::shutdown`] or drop. Tests use it to serve
/// the demo over a store of their own.
pub async fn serve_app<S: Store<DemoSession>>(
    framework: Framework,
    app: &DemoSessions<S>,
    port: u16,
) -> Result<Running, StartError> {
    let bind = |source| StartError::Bind { port, source };
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, port))
        .await
        .map_err(bind)?;
    let addr = listener.local_addr().map_err(bind)?;
    let (stop, done): (Stop, Done) = match framework {
        Framework::Axum => {
            let (stop, stopped) = oneshot::channel::<()>();
            let router = crate::axum_app::router(app);
            let task = tokio::spawn(async move {
                axum::serve(listener, router)
                    .with_graceful_shutdown(async move {
                        let _ = stopped.await;
                    })
                    .await
            });
            let done = async move { task.await.unwrap_or_else(|e| Err(io::Error::other(e))) };
            (Stop::Axum(stop), Box::pin(done))
        }
        Framework::Actix => {
            let listener = listener.into_std().map_err(bind)?;
            let server = crate::actix_app::spawn(app.clone(), listener).map_err(bind)?;
            let done = async move {
                server
                    .done
                    .await
                    .unwrap_or_else(|_| Err(io::Error::other("the actix-web thread panicked")))
            };
            (Stop::Actix(server.handle), Box::pin(done))
        }
    };
    Ok(Running {
        addr,
        stop: Some(stop),
        done,
    })
}

/// Starts the demo as `config` says, with the session configuration it implies.
pub async fn serve(config: &DemoConfig) -> Result<Running, StartError> {
    serve_with(config, config.session_config()?).await
}

/// The resilience settings the demo wraps network stores in: the library's
/// defaults (250 ms per attempt, 1 s per operation, 3 attempts, a breaker
/// opening after 5 failures in a row and probing after 5 s), named after
/// the store, with breaker transitions logged.
pub fn resilience(store: &'static str) -> Result<ResilienceConfig, StartError> {
    Ok(ResilienceConfig::builder()
        .name(store)
        .on_breaker_transition(move |t| {
            tracing::warn!(
                store,
                "session store circuit breaker: {} -> {}",
                t.from,
                t.to
            );
        })
        .build()?)
}

/// Connects a [`RedisStore`] for the demo: its own key prefix, the session
/// clock, and a bounded connection time so that a missing Redis fails the
/// start quickly.
async fn redis_store(
    config: &DemoConfig,
    sessions: &Config,
) -> Result<RedisStore<DemoSession>, StartError> {
    let mut builder = RedisStore::<DemoSession>::builder(config.redis_url.as_str())
        .key_prefix(REDIS_KEY_PREFIX)
        .clock(sessions.clock().clone())
        .connection_timeout(Duration::from_secs(2));
    // With a configured secret, stored values are sealed (a dump of Redis
    // then shows no session data); without one they stay in the plain
    // compact layout (the data as JSON; the session named by its handle
    // either way, so no dump yields a cookie), since a throw-away key would
    // lose every session at each restart.
    if config.session_secret.is_none() {
        tracing::warn!(
            "SESSION_SECRET is not set: values in Redis are stored unsealed, so a dump of \
             Redis shows the session data (though no session id); set SESSION_SECRET to \
             seal them"
        );
    } else {
        let ring = key_ring(config)?;
        builder = builder.codec(
            Codec::builder()
                .seal(&ring, KeyPurpose::StoreData)
                .context(REDIS_KEY_PREFIX)
                .build(),
        );
    }
    builder.connect().await.map_err(|source| StartError::Store {
        store: config.store.name(),
        source,
    })
}

/// The key ring of the `cookie` and `cluster` stores: from `SESSION_SECRET`,
/// or from a secret generated for this run (with a warning) when it is unset.
fn key_ring(config: &DemoConfig) -> Result<KeyRing, StartError> {
    let generated;
    let secret = match &config.session_secret {
        Some(secret) => secret.expose(),
        None => {
            let consequence = match config.store {
                StoreKind::Cluster => {
                    "other processes will ignore this one's cache invalidations \
                     (every process of a cluster needs the same secret)"
                }
                _ => "its cookies will not open after a restart or on any other process",
            };
            tracing::warn!(
                "SESSION_SECRET is not set: using a throw-away secret generated for this run; \
                 {consequence}. Set SESSION_SECRET (at least 32 bytes, e.g. \
                 `openssl rand -base64 32`)."
            );
            generated = KeyRing::generate_secret();
            &generated
        }
    };
    Ok(KeyRing::builder().current(1, secret).build()?)
}

/// Starts the demo with an explicit session configuration (tests inject a
/// [`sessionkit::ManualClock`] this way; the store gets the same clock).
/// `sessions` replaces the configuration `config` implies, so
/// [`DemoConfig::insecure_cookies`] is not consulted here.
pub async fn serve_with(config: &DemoConfig, sessions: Config) -> Result<Running, StartError> {
    let (framework, port) = (config.framework, config.port);
    let store_error = |source| StartError::Store {
        store: config.store.name(),
        source,
    };
    match config.store {
        StoreKind::Memory => {
            let store = MemoryStore::<DemoSession>::builder()
                .clock(sessions.clock().clone())
                .build();
            let app = DemoSessions::with_revocation(Sessions::new(store, sessions));
            serve_app(framework, &app, port).await
        }
        StoreKind::Redis => {
            let store = redis_store(config, &sessions).await?;
            let store = Resilient::new(store, resilience("redis")?);
            let app = DemoSessions::with_revocation(Sessions::new(store, sessions));
            serve_app(framework, &app, port).await
        }
        StoreKind::Cookie => {
            let store = CookieStore::<DemoSession>::new(&key_ring(config)?, &sessions);
            // Sessions live in the browsers: there is nothing to list or revoke.
            let app = DemoSessions::without_revocation(Sessions::new(store, sessions));
            serve_app(framework, &app, port).await
        }
        StoreKind::Cluster => {
            let ring = key_ring(config)?;
            let options =
                ClusterOptions::new(MessageKey::from_key_ring(&ring)).channel(CLUSTER_CHANNEL);
            let redis = redis_store(config, &sessions).await?;
            let urls = vec![config.redis_url.clone()];
            let store = ClusteredStore::with_store(redis, urls, options)
                .await
                .map_err(store_error)?;
            let store = Resilient::new(store, resilience("cluster")?);
            let app = DemoSessions::with_revocation(Sessions::new(store, sessions));
            serve_app(framework, &app, port).await
        }
    }
}
