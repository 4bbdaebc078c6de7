//! Starting the demo: binding 127.0.0.1, picking the store at run time and
//! serving until told to stop.
//!
//! The store is chosen at run time but the session types are generic, so
//! each [`StoreKind`] is one match arm in [`serve_with`] that builds its store
//! and hands it to the generic [`crate::app`].
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

use std::io;
use std::net::{Ipv4Addr, SocketAddr};

use axum::Router;
use sessionkit::store::memory::MemoryStore;
use sessionkit::{Config, ConfigError, Sessions};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::config::{DemoConfig, Framework, StoreKind};
use crate::DemoSession;

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
}

/// A running demo server. Dropping it stops the server too (gracefully).
pub struct Running {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<io::Result<()>>,
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
            let _ = stop.send(());
        }
        match (&mut self.task).await {
            Ok(r) => r,
            Err(e) => Err(io::Error::other(e)),
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Serves a router on 127.0.0.1:`port` (0 lets the OS pick) until
/// [`Running::shutdown`] or drop. Tests use it to serve [`crate::app`] over
/// a store of their own.
pub async fn serve_app(router: Router, port: u16) -> Result<Running, StartError> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, port))
        .await
        .map_err(|source| StartError::Bind { port, source })?;
    let addr = listener
        .local_addr()
        .map_err(|source| StartError::Bind { port, source })?;
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        axum::serve(listener, router)
            .with_graceful_shutdown(async move {
                let _ = stopped.await;
            })
            .await
    });
    Ok(Running {
        addr,
        stop: Some(stop),
        task,
    })
}

/// Starts the demo as `config` says, with the session configuration it implies.
pub async fn serve(config: &DemoConfig) -> Result<Running, StartError> {
    serve_with(config, config.session_config()?).await
}

/// Starts the demo with an explicit session configuration (tests inject a
/// [`sessionkit::ManualClock`] this way; the store gets the same clock).
/// `sessions` replaces the configuration `config` implies, so
/// [`DemoConfig::insecure_cookies`] is not consulted here.
pub async fn serve_with(config: &DemoConfig, sessions: Config) -> Result<Running, StartError> {
    let router = match config.store {
        StoreKind::Memory => {
            let store = MemoryStore::<DemoSession>::builder()
                .clock(sessions.clock().clone())
                .build::<DemoSession>();
            crate::app(&Sessions::new(store, sessions))
        }
    };
    match config.framework {
        Framework::Axum => serve_app(router, config.port).await,
    }
}
