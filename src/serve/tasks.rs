//! Shared plumbing of the servers: binding listeners, running them as tasks, and the stop
//! signal every task ends on.

use std::{future::Future, net::SocketAddr};

use anyhow::Context as _;
use stowage_edge::ServeOptions;
use tokio::{net::TcpListener, sync::watch};
use tracing::info;

use crate::cli::ServeArgs;

/// The connection limits of every listener, from the command line.
pub(crate) fn serve_options(args: &ServeArgs) -> ServeOptions {
    ServeOptions {
        header_read_timeout: args.header_read_timeout,
        idle_timeout: args.idle_timeout,
        max_connections: args.max_connections,
        ..ServeOptions::default()
    }
}

/// Binds a listener, naming it in the error.
pub(crate) async fn bind(addr: SocketAddr, what: &str) -> anyhow::Result<TcpListener> {
    let listener = TcpListener::bind(addr).await.with_context(|| format!("cannot listen on {addr} ({what})"))?;
    info!(%addr, listener = what, "listening");
    Ok(listener)
}

/// A server future as a task result.
pub(crate) async fn server(fut: impl Future<Output = std::io::Result<()>>) -> anyhow::Result<()> {
    fut.await.map_err(Into::into)
}

/// Resolves once a stop has been requested.
pub(crate) async fn stopped(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|stop| *stop).await;
}

/// Runs a background future until a stop is requested; then it ends cleanly.
pub(crate) async fn until_stopped(fut: impl Future<Output = ()>, rx: watch::Receiver<bool>) -> anyhow::Result<()> {
    tokio::select! {
        () = fut => {}
        () = stopped(rx) => {}
    }
    Ok(())
}

/// Resolves on SIGTERM or Ctrl-C.
pub(crate) async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}
