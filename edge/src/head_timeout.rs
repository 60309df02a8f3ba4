//! The header read timeout: a client must send a whole request head within
//! [`ServeOptions::header_read_timeout`](crate::ServeOptions::header_read_timeout) of its first
//! byte, and a new connection its first request head within that time of being accepted (after
//! the TLS handshake). Slow or stalled heads (slowloris) are disconnected in about a second, while
//! an idle keep-alive connection between requests is left to the much longer idle timeout.
//!
//! hyper has one timer for both (it runs from the moment a connection waits for a request), so
//! the edge keeps hyper's for the idle timeout and adds its own clock here:
//! - [`Watched`] wraps the connection's byte stream and starts the clock when bytes arrive while
//!   no request is in flight (the start of the next head);
//! - [`HeadClock::request_started`] stops it when hyper hands a parsed head to the router, and the
//!   returned guard marks the request finished when its response is ready;
//! - [`HeadClock::expired`] resolves when a started head is overdue; the accept loop then drops
//!   the connection.
//!
//! Bytes of a pipelined head that arrive together with the previous request's body are not seen
//! as a new head; that head is bounded by the idle timeout. A connection that starts with the
//! HTTP/2 preface is not timed here (HTTP/2 frames arrive between requests; see `protocol`).

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;
use tokio::time::Instant;

/// The first bytes of an HTTP/2 connection.
const H2_PREFACE_START: &[u8] = b"PRI * HTTP/2.0";

/// One connection's head clock.
#[derive(Debug)]
pub(crate) struct HeadClock {
    timeout: Duration,
    state: Mutex<State>,
    changed: Notify,
}

#[derive(Debug)]
struct State {
    /// When the head being awaited started (first byte, or the connection's start).
    head_since: Option<Instant>,
    /// Requests handed to the router whose response is not ready yet.
    in_flight: usize,
    /// Bytes have been read on this connection.
    seen_bytes: bool,
    /// The connection speaks HTTP/2: not timed here.
    off: bool,
}

impl HeadClock {
    /// A clock for a connection accepted now: its first head is due within `timeout`.
    pub(crate) fn start(timeout: Duration) -> Arc<Self> {
        let state = State { head_since: Some(Instant::now()), in_flight: 0, seen_bytes: false, off: false };
        Arc::new(Self { timeout, state: Mutex::new(state), changed: Notify::new() })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Bytes were read from the client.
    fn bytes_arrived(&self, bytes: &[u8]) {
        let mut state = self.state();
        if !state.seen_bytes {
            state.seen_bytes = true;
            let n = bytes.len().min(H2_PREFACE_START.len());
            if bytes[..n] == H2_PREFACE_START[..n] {
                state.off = true;
                state.head_since = None;
                drop(state);
                self.changed.notify_one();
                return;
            }
        }
        if state.off || state.in_flight > 0 || state.head_since.is_some() {
            return;
        }
        state.head_since = Some(Instant::now());
        drop(state);
        self.changed.notify_one();
    }

    /// A complete head reached the router; the returned guard ends the request when dropped.
    pub(crate) fn request_started(self: &Arc<Self>) -> InFlight {
        let mut state = self.state();
        state.head_since = None;
        state.in_flight += 1;
        drop(state);
        self.changed.notify_one();
        InFlight(Arc::clone(self))
    }

    /// Resolves once a head has been awaited for longer than the timeout.
    pub(crate) async fn expired(&self) {
        loop {
            let changed = self.changed.notified();
            let since = self.state().head_since;
            match since {
                None => changed.await,
                Some(since) => {
                    tokio::select! {
                        () = tokio::time::sleep_until(since + self.timeout) => {
                            if self.state().head_since == Some(since) {
                                return;
                            }
                        }
                        () = changed => {}
                    }
                }
            }
        }
    }
}

/// A request between its head and its response; ends it on drop.
#[derive(Debug)]
pub(crate) struct InFlight(Arc<HeadClock>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut state = self.0.state();
        state.in_flight = state.in_flight.saturating_sub(1);
    }
}

/// A connection's byte stream that reports arriving bytes to its [`HeadClock`].
#[derive(Debug)]
pub(crate) struct Watched<IO> {
    io: IO,
    clock: Arc<HeadClock>,
}

impl<IO> Watched<IO> {
    pub(crate) fn new(io: IO, clock: Arc<HeadClock>) -> Self {
        Self { io, clock }
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for Watched<IO> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.io).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = polled
            && buf.filled().len() > before
        {
            self.clock.bytes_arrived(&buf.filled()[before..]);
        }
        polled
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Watched<IO> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_silent_new_connection_expires() {
        let clock = HeadClock::start(Duration::from_secs(1));
        let started = Instant::now();
        clock.expired().await;
        assert_eq!(started.elapsed(), Duration::from_secs(1));
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_connection_between_requests_does_not_expire_until_bytes_arrive() {
        let clock = HeadClock::start(Duration::from_secs(1));
        drop(clock.request_started());
        let idle = tokio::time::timeout(Duration::from_secs(60), clock.expired()).await;
        assert!(idle.is_err(), "expired while idle");
        clock.bytes_arrived(b"GET / HT");
        let started = Instant::now();
        clock.expired().await;
        assert_eq!(started.elapsed(), Duration::from_secs(1));
    }

    #[tokio::test(start_paused = true)]
    async fn body_bytes_of_a_request_in_flight_start_no_clock() {
        let clock = HeadClock::start(Duration::from_secs(1));
        let request = clock.request_started();
        clock.bytes_arrived(b"{\"body\": 1}");
        assert!(tokio::time::timeout(Duration::from_secs(5), clock.expired()).await.is_err());
        drop(request);
    }

    #[tokio::test(start_paused = true)]
    async fn http2_connections_are_not_timed() {
        let clock = HeadClock::start(Duration::from_secs(1));
        clock.bytes_arrived(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
        assert!(tokio::time::timeout(Duration::from_secs(5), clock.expired()).await.is_err());
    }
}
