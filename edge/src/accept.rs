//! The accept loop: serving a router over TLS ([`serve_tls`]) or plain TCP ([`serve_plain`]).
//!
//! Both share one loop, generic over the handshake:
//! - each connection runs in its own task: the TLS handshake (bounded by
//!   [`ServeOptions::handshake_timeout`]), then HTTP (see [`Protocol`]) with keep-alive;
//! - **connection cap**: at most [`ServeOptions::max_connections`] connections are open at
//!   once; while the cap is reached nothing is accepted and new connections wait in the listen
//!   backlog, so a flood of idle connections costs a bounded amount of memory;
//! - **header read timeout**: a request head (and a new connection's first one) must arrive
//!   within [`ServeOptions::header_read_timeout`] (see `head_timeout`);
//! - **idle timeout**: a keep-alive connection waiting longer than
//!   [`ServeOptions::idle_timeout`] for its next request is closed;
//! - accept errors (e.g. out of file descriptors) are logged and retried after a short,
//!   growing pause; they never end the loop. Failed handshakes are logged at `debug`;
//! - when `shutdown` resolves, the listener is closed, idle connections are closed, in-flight
//!   requests finish, and connections still open after [`ServeOptions::drain_timeout`] are
//!   dropped.
//!
//! Request limits (body size, content type, deadline, load shedding) are router layers
//! ([`crate::ApiLimits`]): they differ between the webhook, the extender and the admin port.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt as _;
use tracing::{debug, error, info, warn};

use crate::head_timeout::{HeadClock, Watched};
use crate::protocol::Protocol;

/// First pause after a failed `accept`; doubled on each consecutive failure.
const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(10);
/// Longest pause after failed `accept`s.
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);

/// Connection-level limits of [`serve_tls`] and [`serve_plain`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServeOptions {
    /// Longest TLS handshake. Default 5 s.
    pub handshake_timeout: Duration,
    /// Longest time from the first byte of a request head (or from a new connection's
    /// handshake) to the complete head. Keep it below the request deadlines: a client cannot
    /// hold a connection by trickling a head. Default 1 s.
    pub header_read_timeout: Duration,
    /// Keep-alive connections idle longer than this between requests are closed. Keep it
    /// above the clients' own idle timeout (Go's default is 90 s), so the server never closes
    /// a connection a client is about to reuse. Default 120 s.
    pub idle_timeout: Duration,
    /// Longest wait for in-flight connections after shutdown is asked. Default 10 s.
    pub drain_timeout: Duration,
    /// Most connections open at once (at least 1). Default 1024.
    pub max_connections: usize,
    /// HTTP/1.1 only (default), or HTTP/1.1 and HTTP/2.
    pub protocol: Protocol,
}

impl Default for ServeOptions {
    fn default() -> Self {
        Self {
            handshake_timeout: Duration::from_secs(5),
            header_read_timeout: Duration::from_secs(1),
            idle_timeout: Duration::from_secs(120),
            drain_timeout: Duration::from_secs(10),
            max_connections: 1024,
            protocol: Protocol::Http1,
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
    let http = opts.protocol.builder(opts.idle_timeout);
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
                    connections.spawn(connection(handshake(tcp), peer, http.clone(), app.clone(), opts, stop_rx.clone()));
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

/// One connection: handshake, then HTTP until the peer leaves, its head is overdue, or
/// shutdown drains it.
async fn connection<F, IO>(
    handshake: F,
    peer: SocketAddr,
    http: auto::Builder<TokioExecutor>,
    app: Router,
    opts: ServeOptions,
    mut stop: watch::Receiver<bool>,
) where
    F: Future<Output = io::Result<IO>>,
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let io = tokio::select! {
        done = tokio::time::timeout(opts.handshake_timeout, handshake) => match done {
            Ok(Ok(io)) => io,
            Ok(Err(e)) => {
                debug!(%peer, error = %e, "handshake failed");
                return;
            }
            Err(_) => {
                debug!(%peer, timeout = ?opts.handshake_timeout, "handshake timed out");
                return;
            }
        },
        () = stopped(&mut stop) => return,
    };
    let clock = HeadClock::start(opts.header_read_timeout);
    let heads = Arc::clone(&clock);
    let service = tower::service_fn(move |request: http::Request<Incoming>| {
        let request_in_flight = heads.request_started();
        let app = app.clone();
        async move {
            let _request_in_flight = request_in_flight;
            app.oneshot(request).await
        }
    });
    let conn =
        http.serve_connection(TokioIo::new(Watched::new(io, Arc::clone(&clock))), TowerToHyperService::new(service));
    let mut conn = pin!(conn);
    let result = tokio::select! {
        result = conn.as_mut() => result,
        () = clock.expired() => {
            debug!(%peer, timeout = ?opts.header_read_timeout, "request head not received in time; closing");
            return;
        }
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
        assert_eq!(o.header_read_timeout, Duration::from_secs(1));
        assert_eq!(o.idle_timeout, Duration::from_secs(120));
        assert_eq!(o.drain_timeout, Duration::from_secs(10));
        assert_eq!(o.max_connections, 1024);
        assert_eq!(o.protocol, Protocol::Http1);
    }

    #[test]
    fn only_per_connection_accept_errors_skip_the_pause() {
        assert!(is_per_connection(&io::Error::from(io::ErrorKind::ConnectionAborted)));
        assert!(!is_per_connection(&io::Error::other("Too many open files")));
    }
}
