//! Which HTTP versions a listener speaks: the one switch between HTTP/1.1 only (today's
//! behaviour, and what the TLS configuration's ALPN offers) and HTTP/1.1 plus HTTP/2.
//!
//! With [`Protocol::Http1AndHttp2`] a connection is served as HTTP/2 when it starts with the
//! HTTP/2 preface (h2c prior knowledge, or TLS after ALPN chose `h2`), else as HTTP/1.1. Over
//! TLS, clients only pick `h2` if the server's ALPN list offers it, so switching on HTTP/2 for
//! the webhook also means adding `h2` to the rustls configuration's ALPN protocols.

use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioTimer};
use hyper_util::server::conn::auto;

/// The HTTP versions served on one listener.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Protocol {
    /// HTTP/1.1 with keep-alive (HTTP/1.0 clients are answered too).
    #[default]
    Http1,
    /// HTTP/1.1 and HTTP/2, chosen per connection by its first bytes.
    Http1AndHttp2,
}

impl Protocol {
    /// The connection builder for this protocol choice. `idle_timeout` closes HTTP/1.1
    /// connections that wait that long for a request (hyper's header timer, which runs from the
    /// moment a connection starts waiting for the next request).
    pub(crate) fn builder(self, idle_timeout: Duration) -> auto::Builder<TokioExecutor> {
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder.http1().timer(TokioTimer::new()).header_read_timeout(idle_timeout).keep_alive(true);
        match self {
            Self::Http1 => builder.http1_only(),
            Self::Http1AndHttp2 => {
                builder.http2().timer(TokioTimer::new());
                builder
            }
        }
    }
}
