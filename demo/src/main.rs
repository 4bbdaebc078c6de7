//! `cargo run --release -p sessionkit-demo`: reads the environment (see
//! `demo/README.md`), starts the server, logs one line when ready, and stops
//! gracefully on Ctrl-C or SIGTERM.

use std::io::IsTerminal;
use std::process::ExitCode;

use sessionkit_demo::{serve, DemoConfig};
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> ExitCode {
    // actix-server logs its own start lines at info; the demo logs one. A
    // `RUST_LOG` that does not parse stops the start, as a typo in any other
    // variable does, rather than quietly logging at the default level.
    // Empty counts as unset, as for every other variable (an empty filter
    // would turn off every line, the ready line and errors included).
    let set = std::env::var_os("RUST_LOG").filter(|v| !v.to_string_lossy().trim().is_empty());
    let filter = match set {
        None => EnvFilter::new("info,actix_server=warn"),
        Some(_) => match EnvFilter::try_from_default_env() {
            Ok(filter) => filter,
            Err(e) => {
                eprintln!("RUST_LOG is not a valid tracing filter: {e}");
                return ExitCode::FAILURE;
            }
        },
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();

    let config = match DemoConfig::from_env() {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("{e}");
            return ExitCode::FAILURE;
        }
    };
    if config.insecure_cookies {
        tracing::warn!(
            "DEMO_INSECURE_COOKIES is set: the session cookie is sent without Secure, \
             readable by anyone on the network path; never do this in production"
        );
    }
    let running = match serve(&config).await {
        Ok(r) => r,
        Err(e) => {
            tracing::error!("{e}");
            return ExitCode::FAILURE;
        }
    };
    tracing::info!(
        "sessionkit-demo listening on http://localhost:{} (store={}, framework={})",
        running.addr().port(),
        config.store.name(),
        config.framework.name()
    );
    shutdown_signal().await;
    tracing::info!("shutting down");
    match running.shutdown().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("server failed: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::warn!("cannot listen for Ctrl-C: {e}");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::warn!("cannot listen for SIGTERM: {e}");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}
