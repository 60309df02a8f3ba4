//! Serving an axum router over TLS ([`serve_tls`]) or plain TCP ([`serve_plain`]).
//!
//! Both share one accept loop, generic over the handshake:
//! - each connection runs in its own task: the TLS handshake (bounded by
//!   [`ServeOptions::handshake_timeout`]), then HTTP/1.1 with keep-alive;
//! - at most [`ServeOptions::max_connections`] connections are open at once; while the cap is
//!   reached nothing is accepted and new connections wait in the listen backlog, so a flood of
//!   idle connections costs a bounded amount of memory;
//! - a client that does not finish sending a request head within
//!   [`ServeOptions::header_read_timeout`] is disconnected (slowloris);
//! - accept errors (e.g. out of file descriptors) are logged and retried after a short,
//!   growing pause; they never end the loop. Failed handshakes are logged at `debug`;
//! - when `shutdown` resolves, the listener is closed, idle connections are closed, in-flight
//!   requests finish, and connections still open after [`ServeOptions::drain_timeout`] are
//!   dropped.
//!
//! Per-request timeouts, body size limits and concurrency limits belong to the router (tower
//! layers), not here: the limits differ between the webhook, the extender and the admin port.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tracing::{debug, error, info, warn};

/// First pause after a failed `accept`; doubled on each consecutive failure.
const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(10);
/// Longest pause after failed `accept`s.
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);

/// Connection-level limits of [`serve_tls`] and [`serve_plain`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServeOptions {
    /// Longest TLS handshake. Default 5 s.
    pub handshake_timeout: Duration,
    /// Longest time to receive a complete request head. hyper restarts this timer whenever it
    /// waits for a request, so it also closes keep-alive connections idle for longer.
    /// Default 5 s.
    pub header_read_timeout: Duration,
    /// Longest wait for in-flight connections after shutdown is asked. Default 10 s.
    pub drain_timeout: Duration,
    /// Most connections open at once (at least 1). Default 1024.
    pub max_connections: usize,
}

impl Default for ServeOptions {
    fn default() -> Self {
        Self {
            handshake_timeout: Duration::from_secs(5),
            header_read_timeout: Duration::from_secs(5),
            drain_timeout: Duration::from_secs(10),
            max_connections: 1024,
        }
    }
}

/// Serves `app` over TLS on `listener` until `shutdown` resolves, then drains.
///
/// # Errors
/// None today: accept errors are retried. The `io::Result` leaves room for setup errors.
pub async fn serve_tls(
    listener: TcpListener,
    config: Arc<rustls::ServerConfig>,
    app: Router,
    opts: ServeOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let acceptor = TlsAcceptor::from(config);
    serve(listener, app, opts, shutdown, move |tcp| acceptor.accept(tcp)).await
}

/// Serves `app` over plain HTTP on `listener` until `shutdown` resolves, then drains. For the
/// loopback extender and the admin / metrics port.
///
/// # Errors
/// As [`serve_tls`].
pub async fn serve_plain(
    listener: TcpListener,
    app: Router,
    opts: ServeOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    serve(listener, app, opts, shutdown, |tcp| std::future::ready(Ok(tcp))).await
}

/// The accept loop, generic over the per-connection handshake.
async fn serve<H, F, IO>(
    listener: TcpListener,
    app: Router,
    opts: ServeOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
    handshake: H,
) -> io::Result<()>
where
    H: Fn(TcpStream) -> F,
    F: Future<Output = io::Result<IO>> + Send + 'static,
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let local = listener.local_addr()?;
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new()).header_read_timeout(opts.header_read_timeout).keep_alive(true);
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut connections = JoinSet::new();
    let mut shutdown = pin!(shutdown);
    let mut backoff = ACCEPT_BACKOFF_MIN;
    debug!(%local, "serving");

    'accept: loop {
        tokio::select! {
            () = &mut shutdown => break 'accept,
            Some(done) = connections.join_next(), if !connections.is_empty() => log_join(done),
            // At the cap, only finished connections (above) and shutdown are waited for.
            accepted = listener.accept(), if connections.len() < opts.max_connections.max(1) => match accepted {
                Ok((tcp, peer)) => {
                    backoff = ACCEPT_BACKOFF_MIN;
                    if let Err(e) = tcp.set_nodelay(true) {
                        debug!(%peer, error = %e, "cannot set TCP_NODELAY");
                    }
                    connections.spawn(connection(
                        handshake(tcp),
                        peer,
                        http.clone(),
                        app.clone(),
                        opts.handshake_timeout,
                        stop_rx.clone(),
                    ));
                }
                Err(e) if is_per_connection(&e) => debug!(%local, error = %e, "accept: connection failed"),
                Err(e) => {
                    warn!(%local, error = %e, pause = ?backoff, "accept failed; pausing");
                    tokio::select! {
                        () = &mut shutdown => break 'accept,
                        () = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(ACCEPT_BACKOFF_MAX);
                }
            },
        }
    }

    drop(listener);
    stop_tx.send_replace(true);
    if !connections.is_empty() {
        info!(%local, open = connections.len(), "shutting down; draining connections");
    }
    let drain = async {
        while let Some(done) = connections.join_next().await {
            log_join(done);
        }
    };
    if tokio::time::timeout(opts.drain_timeout, drain).await.is_err() {
        warn!(%local, open = connections.len(), "drain timed out; closing remaining connections");
        connections.shutdown().await;
    }
    debug!(%local, "stopped");
    Ok(())
}

/// One connection: handshake, then HTTP/1.1 until the peer leaves or shutdown drains it.
async fn connection<F, IO>(
    handshake: F,
    peer: SocketAddr,
    http: http1::Builder,
    app: Router,
    handshake_timeout: Duration,
    mut stop: watch::Receiver<bool>,
) where
    F: Future<Output = io::Result<IO>>,
    IO: AsyncRead + AsyncWrite + Unpin,
{
    let io = tokio::select! {
        done = tokio::time::timeout(handshake_timeout, handshake) => match done {
            Ok(Ok(io)) => io,
            Ok(Err(e)) => {
                debug!(%peer, error = %e, "handshake failed");
                return;
            }
            Err(_) => {
                debug!(%peer, timeout = ?handshake_timeout, "handshake timed out");
                return;
            }
        },
        () = stopped(&mut stop) => return,
    };
    let conn = http.serve_connection(TokioIo::new(io), TowerToHyperService::new(app));
    let mut conn = pin!(conn);
    let result = tokio::select! {
        result = conn.as_mut() => result,
        () = stopped(&mut stop) => {
            // Finish the request in flight (if any), then close.
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        debug!(%peer, error = %e, "connection closed with an error");
    }
}

/// Resolves once shutdown is signalled (or the signal's sender is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stopping| *stopping).await;
}

/// Errors of one incoming connection that say nothing about the listener.
fn is_per_connection(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused | io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset
    )
}

fn log_join(done: Result<(), tokio::task::JoinError>) {
    if let Err(e) = done
        && e.is_panic()
    {
        error!(error = %e, "connection task panicked");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_documented_values() {
        let o = ServeOptions::default();
        assert_eq!(o.handshake_timeout, Duration::from_secs(5));
        assert_eq!(o.header_read_timeout, Duration::from_secs(5));
        assert_eq!(o.drain_timeout, Duration::from_secs(10));
        assert_eq!(o.max_connections, 1024);
    }

    #[test]
    fn only_per_connection_accept_errors_skip_the_pause() {
        assert!(is_per_connection(&io::Error::from(io::ErrorKind::ConnectionAborted)));
        assert!(!is_per_connection(&io::Error::other("Too many open files")));
    }
}
