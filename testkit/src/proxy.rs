//! A transparent reverse proxy that records every exchange, to see exactly what a real component
//! (kube-apiserver calling a webhook, kube-scheduler calling an extender) sent and got back.
//!
//! The proxy listens on 127.0.0.1 over HTTPS ([`ProxyOptions::tls`]) or plain HTTP and forwards each
//! request to one upstream over HTTPS ([`Upstream::https`]) or HTTP ([`Upstream::http`]). It is
//! transparent: the method, path and query, headers (except hop-by-hop ones) and body go up
//! unchanged, and the upstream's status, headers and body come back unchanged. Each downstream
//! connection gets its own upstream connection, opened on its first request and kept alive as long
//! as both ends keep theirs, so the upstream sees the same connection pattern as without the proxy.
//! If the upstream cannot be reached the proxy answers `502 Bad Gateway` and records the error.
//!
//! Bodies are buffered whole (tests only). Only HTTP/1.1 is spoken on both sides (the proxy's
//! TLS listener offers only `http/1.1` in ALPN).
//!
//! ```no_run
//! # async fn example(cp: &stowage_testkit::ControlPlane, webhook: std::net::SocketAddr) -> anyhow::Result<()> {
//! use stowage_testkit::{ProxyOptions, RecordingProxy, Upstream};
//! let cert = cp.issue_serving_cert(&["127.0.0.1"])?;
//! let proxy = RecordingProxy::start(Upstream::https(webhook, cp.ca_pem()), ProxyOptions::tls(cert)).await?;
//! // Register `format!("{}/mutate", proxy.url())` instead of the webhook's own URL, then:
//! let first = proxy
//!     .wait_for("a /mutate call", std::time::Duration::from_secs(10), |e| e.path == "/mutate")
//!     .await?;
//! let review = first.request_json()?;
//! # Ok(()) }
//! ```

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, anyhow, bail};
use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio_rustls::{TlsAcceptor, TlsConnector};

use crate::pki::CertPair;
use crate::wait::scaled;

/// Longest time to accept a downstream TLS handshake or to connect upstream.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Headers that describe one connection, not the message; never forwarded (RFC 9110 §7.6.1).
/// `content-length` is recomputed from the buffered body.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "content-length",
];

/// Where the proxy forwards to.
#[derive(Clone, Debug)]
pub struct Upstream {
    addr: SocketAddr,
    tls: Option<UpstreamTls>,
}

#[derive(Clone, Debug)]
struct UpstreamTls {
    ca_pem: String,
    server_name: String,
}

impl Upstream {
    /// A plain-HTTP upstream (e.g. an extender on loopback).
    pub fn http(addr: SocketAddr) -> Self {
        Self { addr, tls: None }
    }

    /// An HTTPS upstream whose certificate chains to `ca_pem` and is valid for the address's IP.
    pub fn https(addr: SocketAddr, ca_pem: &str) -> Self {
        Self { addr, tls: Some(UpstreamTls { ca_pem: ca_pem.to_owned(), server_name: addr.ip().to_string() }) }
    }

    /// Verifies the upstream certificate for `name` (a DNS name or IP) instead of the address's IP.
    #[must_use]
    pub fn server_name(mut self, name: &str) -> Self {
        if let Some(tls) = self.tls.as_mut() {
            tls.server_name = name.to_owned();
        }
        self
    }

    /// The upstream address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

/// How the proxy listens.
#[derive(Clone, Debug, Default)]
pub struct ProxyOptions {
    tls: Option<CertPair>,
}

impl ProxyOptions {
    /// Plain HTTP.
    pub fn plain() -> Self {
        Self { tls: None }
    }

    /// HTTPS with `cert` (e.g. from [`crate::ControlPlane::issue_serving_cert`] for `127.0.0.1`).
    pub fn tls(cert: CertPair) -> Self {
        Self { tls: Some(cert) }
    }
}

/// One request through the proxy and its answer.
#[derive(Clone, Debug)]
pub struct Exchange {
    /// Order of arrival at the proxy, from 0.
    pub seq: u64,
    /// When the request head arrived.
    pub received: Instant,
    /// From arrival until the upstream's answer (or failure).
    pub duration: Duration,
    /// Request method.
    pub method: String,
    /// Request path and query, e.g. `/mutate?timeout=10s`.
    pub path: String,
    /// Request headers as received.
    pub request_headers: HeaderMap,
    /// Request body.
    pub request_body: Bytes,
    /// Response status (502 when the upstream failed).
    pub status: u16,
    /// Response headers as sent by the upstream.
    pub response_headers: HeaderMap,
    /// Response body.
    pub response_body: Bytes,
    /// Why the upstream could not answer, if it could not.
    pub error: Option<String>,
}

impl Exchange {
    /// The request body as JSON.
    pub fn request_json(&self) -> Result<serde_json::Value> {
        serde_json::from_slice(&self.request_body)
            .with_context(|| format!("request #{} {} {} is not JSON", self.seq, self.method, self.path))
    }

    /// The response body as JSON.
    pub fn response_json(&self) -> Result<serde_json::Value> {
        serde_json::from_slice(&self.response_body)
            .with_context(|| format!("response to #{} {} {} is not JSON", self.seq, self.method, self.path))
    }
}

#[derive(Default)]
struct Log {
    exchanges: Mutex<Vec<Exchange>>,
    next_seq: AtomicU64,
    changed: Notify,
}

impl Log {
    fn push(&self, exchange: Exchange) {
        self.exchanges.lock().unwrap_or_else(|e| e.into_inner()).push(exchange);
        self.changed.notify_waiters();
    }

    fn snapshot(&self) -> Vec<Exchange> {
        let mut all = self.exchanges.lock().unwrap_or_else(|e| e.into_inner()).clone();
        all.sort_by_key(|e| e.seq);
        all
    }
}

/// A running recording proxy; it stops (and drops its connections) when dropped.
///
/// Runs on the runtime that started it; use it from that runtime.
pub struct RecordingProxy {
    addr: SocketAddr,
    scheme: &'static str,
    upstream: SocketAddr,
    log: Arc<Log>,
    task: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for RecordingProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordingProxy")
            .field("url", &self.url())
            .field("upstream", &self.upstream)
            .finish_non_exhaustive()
    }
}

impl RecordingProxy {
    /// Starts a proxy on a free port of 127.0.0.1 forwarding to `upstream`.
    pub async fn start(upstream: Upstream, options: ProxyOptions) -> Result<Self> {
        let acceptor = match &options.tls {
            Some(cert) => Some(TlsAcceptor::from(server_config(cert)?)),
            None => None,
        };
        let connector = match &upstream.tls {
            Some(tls) => Some((
                TlsConnector::from(client_config(&tls.ca_pem)?),
                ServerName::try_from(tls.server_name.clone())
                    .with_context(|| format!("invalid upstream server name {:?}", tls.server_name))?,
            )),
            None => None,
        };
        let listener = TcpListener::bind("127.0.0.1:0").await.context("binding the proxy's port")?;
        let addr = listener.local_addr()?;
        let log = Arc::new(Log::default());
        let shared = Arc::new(Shared { upstream: upstream.addr, connector, log: Arc::clone(&log) });
        let task = tokio::spawn(accept_loop(listener, acceptor, shared));
        Ok(Self {
            addr,
            scheme: if options.tls.is_some() { "https" } else { "http" },
            upstream: upstream.addr,
            log,
            task,
        })
    }

    /// The proxy's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `https://127.0.0.1:<port>` (or `http://`), without a trailing slash.
    pub fn url(&self) -> String {
        format!("{}://{}", self.scheme, self.addr)
    }

    /// Every exchange so far, in order of arrival.
    pub fn exchanges(&self) -> Vec<Exchange> {
        self.log.snapshot()
    }

    /// Removes and returns every exchange so far, in order of arrival.
    pub fn take_exchanges(&self) -> Vec<Exchange> {
        let mut taken = std::mem::take(&mut *self.log.exchanges.lock().unwrap_or_else(|e| e.into_inner()));
        taken.sort_by_key(|e| e.seq);
        taken
    }

    /// Waits (up to `timeout`, scaled) for a completed exchange matching `matches`; returns the first.
    pub async fn wait_for(
        &self,
        what: &str,
        timeout: Duration,
        matches: impl Fn(&Exchange) -> bool,
    ) -> Result<Exchange> {
        let timeout = scaled(timeout);
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let changed = self.log.changed.notified();
            if let Some(found) = self.log.snapshot().into_iter().find(|e| matches(e)) {
                return Ok(found);
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                let seen: Vec<String> = self
                    .exchanges()
                    .iter()
                    .map(|e| format!("#{} {} {} -> {}", e.seq, e.method, e.path, e.status))
                    .collect();
                bail!("timed out after {timeout:?} waiting for {what} through the proxy; seen: [{}]", seen.join(", "));
            }
        }
    }
}

impl Drop for RecordingProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct Shared {
    upstream: SocketAddr,
    connector: Option<(TlsConnector, ServerName<'static>)>,
    log: Arc<Log>,
}

/// Accepts until aborted; aborting drops the set and with it every connection task.
async fn accept_loop(listener: TcpListener, acceptor: Option<TlsAcceptor>, shared: Arc<Shared>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => {
                let Ok((tcp, _peer)) = accepted else {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                let _ = tcp.set_nodelay(true);
                let shared = Arc::clone(&shared);
                let acceptor = acceptor.clone();
                connections.spawn(async move {
                    match acceptor {
                        Some(acceptor) => {
                            if let Ok(Ok(tls)) = tokio::time::timeout(CONNECT_TIMEOUT, acceptor.accept(tcp)).await {
                                serve_connection(tls, shared).await;
                            }
                        }
                        None => serve_connection(tcp, shared).await,
                    }
                });
            }
        }
    }
}

/// Serves one downstream connection, with at most one upstream connection behind it.
async fn serve_connection<IO>(io: IO, shared: Arc<Shared>)
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let upstream: Arc<tokio::sync::Mutex<Option<SendRequest<Full<Bytes>>>>> = Arc::default();
    let service = hyper::service::service_fn(move |request: Request<Incoming>| {
        let shared = Arc::clone(&shared);
        let upstream = Arc::clone(&upstream);
        async move { Ok::<_, std::convert::Infallible>(forward(request, &shared, &upstream).await) }
    });
    let _ =
        hyper::server::conn::http1::Builder::new().keep_alive(true).serve_connection(TokioIo::new(io), service).await;
}

async fn forward(
    request: Request<Incoming>,
    shared: &Shared,
    upstream: &tokio::sync::Mutex<Option<SendRequest<Full<Bytes>>>>,
) -> Response<Full<Bytes>> {
    let received = Instant::now();
    let seq = shared.log.next_seq.fetch_add(1, Ordering::Relaxed);
    let (parts, body) = request.into_parts();
    let path = parts.uri.path_and_query().map_or_else(|| parts.uri.path().to_owned(), |p| p.as_str().to_owned());
    let mut exchange = Exchange {
        seq,
        received,
        duration: Duration::ZERO,
        method: parts.method.to_string(),
        path: path.clone(),
        request_headers: parts.headers.clone(),
        request_body: Bytes::new(),
        status: 0,
        response_headers: HeaderMap::new(),
        response_body: Bytes::new(),
        error: None,
    };
    let outcome = async {
        exchange.request_body = body.collect().await.context("reading the request body")?.to_bytes();
        let mut up = Request::builder().method(parts.method.clone()).uri(&path).version(http::Version::HTTP_11);
        if let Some(headers) = up.headers_mut() {
            copy_end_to_end(&parts.headers, headers);
        }
        let up = up.body(Full::new(exchange.request_body.clone())).context("building the upstream request")?;
        let response = send_upstream(shared, upstream, up).await?;
        let (parts, body) = response.into_parts();
        let body = body.collect().await.context("reading the upstream response body")?.to_bytes();
        anyhow::Ok((parts, body))
    }
    .await;
    exchange.duration = received.elapsed();
    let response = match outcome {
        Ok((parts, body)) => {
            exchange.status = parts.status.as_u16();
            exchange.response_headers = parts.headers.clone();
            exchange.response_body = body.clone();
            let mut response = Response::new(Full::new(body));
            *response.status_mut() = parts.status;
            copy_end_to_end(&parts.headers, response.headers_mut());
            response
        }
        Err(e) => {
            let message = format!("proxy: upstream {} failed: {e:#}", shared.upstream);
            exchange.status = StatusCode::BAD_GATEWAY.as_u16();
            exchange.error = Some(message.clone());
            let mut response = Response::new(Full::new(Bytes::from(message)));
            *response.status_mut() = StatusCode::BAD_GATEWAY;
            response.headers_mut().insert(header::CONTENT_TYPE, http::HeaderValue::from_static("text/plain"));
            response
        }
    };
    shared.log.push(exchange);
    response
}

/// Sends on this connection's upstream connection, (re)connecting when there is none or it closed.
async fn send_upstream(
    shared: &Shared,
    upstream: &tokio::sync::Mutex<Option<SendRequest<Full<Bytes>>>>,
    request: Request<Full<Bytes>>,
) -> Result<Response<Incoming>> {
    let mut slot = upstream.lock().await;
    let reusable = match slot.as_mut() {
        Some(sender) => !sender.is_closed() && sender.ready().await.is_ok(),
        None => false,
    };
    if !reusable {
        *slot = Some(connect(shared).await?);
    }
    let sender = slot.as_mut().ok_or_else(|| anyhow!("no upstream connection"))?;
    match sender.send_request(request).await {
        Ok(response) => Ok(response),
        Err(e) => {
            // Never retried: the request may have reached the upstream.
            *slot = None;
            Err(anyhow::Error::new(e).context("sending the request upstream"))
        }
    }
}

async fn connect(shared: &Shared) -> Result<SendRequest<Full<Bytes>>> {
    let tcp = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(shared.upstream))
        .await
        .map_err(|_| anyhow!("connecting to {} timed out", shared.upstream))?
        .with_context(|| format!("connecting to {}", shared.upstream))?;
    let _ = tcp.set_nodelay(true);
    match &shared.connector {
        Some((connector, name)) => {
            let tls = tokio::time::timeout(CONNECT_TIMEOUT, connector.connect(name.clone(), tcp))
                .await
                .map_err(|_| anyhow!("TLS handshake with {} timed out", shared.upstream))?
                .with_context(|| format!("TLS handshake with {}", shared.upstream))?;
            handshake(tls).await
        }
        None => handshake(tcp).await,
    }
}

async fn handshake<IO>(io: IO) -> Result<SendRequest<Full<Bytes>>>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(io)).await.context("HTTP/1.1 handshake upstream")?;
    // Ends when the sender is dropped (downstream connection closed) or the upstream closes.
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(sender)
}

fn copy_end_to_end(from: &HeaderMap, to: &mut HeaderMap) {
    // Headers named in `Connection` are hop-by-hop too.
    let named: Vec<HeaderName> = from
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for (name, value) in from {
        if HOP_BY_HOP.contains(&name.as_str()) || named.contains(name) {
            continue;
        }
        to.append(name.clone(), value.clone());
    }
}

fn server_config(cert: &CertPair) -> Result<Arc<rustls::ServerConfig>> {
    let chain = CertificateDer::pem_slice_iter(cert.cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .context("parsing the proxy's certificate")?;
    let key = PrivateKeyDer::from_pem_slice(cert.key_pem.as_bytes()).context("parsing the proxy's key")?;
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .context("TLS versions")?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .context("the proxy's certificate and key")?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

fn client_config(ca_pem: &str) -> Result<Arc<rustls::ClientConfig>> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.context("parsing a CA certificate")?).context("adding a CA certificate")?;
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .context("TLS versions")?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Connects to the TLS server at `addr`, verifies its certificate against `ca_pem` for
/// `server_name` (a DNS name or IP), and returns the leaf certificate it served (DER). Useful to
/// see which certificate a server is serving right now, e.g. after a rotation.
pub async fn served_certificate(addr: SocketAddr, ca_pem: &str, server_name: &str) -> Result<Vec<u8>> {
    let connector = TlsConnector::from(client_config(ca_pem)?);
    let name =
        ServerName::try_from(server_name.to_owned()).with_context(|| format!("invalid server name {server_name:?}"))?;
    let tcp = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr))
        .await
        .map_err(|_| anyhow!("connecting to {addr} timed out"))?
        .with_context(|| format!("connecting to {addr}"))?;
    let tls = tokio::time::timeout(CONNECT_TIMEOUT, connector.connect(name, tcp))
        .await
        .map_err(|_| anyhow!("TLS handshake with {addr} timed out"))?
        .with_context(|| format!("TLS handshake with {addr}"))?;
    let (_, session) = tls.get_ref();
    let leaf = session.peer_certificates().and_then(|chain| chain.first()).context("the server sent no certificate")?;
    Ok(leaf.as_ref().to_vec())
}

/// The DER bytes of the first certificate in `pem`.
pub fn pem_to_der(pem: &str) -> Result<Vec<u8>> {
    let cert = CertificateDer::pem_slice_iter(pem.as_bytes()).next().context("no certificate in the PEM text")?;
    Ok(cert.context("parsing a PEM certificate")?.as_ref().to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::pki::{Ca, LOOPBACK_SANS};
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    /// A tiny HTTP/1.1 upstream answering `201` with a `warning` header and the request echoed.
    async fn echo_upstream(acceptor: Option<TlsAcceptor>) -> (SocketAddr, tokio::task::JoinHandle<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let mut tasks = JoinSet::new();
            loop {
                let (tcp, _) = listener.accept().await.unwrap();
                let acceptor = acceptor.clone();
                tasks.spawn(async move {
                    let service = hyper::service::service_fn(|request: Request<Incoming>| async move {
                        let (parts, body) = request.into_parts();
                        let body = body.collect().await?.to_bytes();
                        let echo = format!("{} {} {}", parts.method, parts.uri, String::from_utf8_lossy(&body));
                        let mut response = Response::new(Full::new(Bytes::from(echo)));
                        *response.status_mut() = StatusCode::CREATED;
                        response.headers_mut().append("warning", "299 - \"first\"".parse().unwrap());
                        response.headers_mut().append("warning", "299 - \"second\"".parse().unwrap());
                        Ok::<_, hyper::Error>(response)
                    });
                    let builder = hyper::server::conn::http1::Builder::new();
                    match acceptor {
                        Some(a) => {
                            let tls = a.accept(tcp).await.unwrap();
                            let _ = builder.serve_connection(TokioIo::new(tls), service).await;
                        }
                        None => {
                            let _ = builder.serve_connection(TokioIo::new(tcp), service).await;
                        }
                    }
                });
            }
        });
        (addr, task)
    }

    async fn get_through(proxy: &RecordingProxy, client: Option<(TlsConnector, ServerName<'static>)>) -> Vec<u8> {
        let tcp = TcpStream::connect(proxy.addr()).await.unwrap();
        let request = b"POST /mutate?x=1 HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\nContent-Length: 7\r\nConnection: close\r\n\r\n{\"a\":1}";
        let mut out = Vec::new();
        match client {
            Some((connector, name)) => {
                let mut tls = connector.connect(name, tcp).await.unwrap();
                tls.write_all(request).await.unwrap();
                let _ = tls.read_to_end(&mut out).await;
            }
            None => {
                let mut tcp = tcp;
                tcp.write_all(request).await.unwrap();
                tcp.read_to_end(&mut out).await.unwrap();
            }
        }
        out
    }

    #[tokio::test]
    async fn plain_to_plain_is_transparent_and_recorded() {
        let (upstream, _server) = echo_upstream(None).await;
        let proxy = RecordingProxy::start(Upstream::http(upstream), ProxyOptions::plain()).await.unwrap();
        assert!(proxy.url().starts_with("http://127.0.0.1:"));
        let raw = String::from_utf8(get_through(&proxy, None).await).unwrap();
        assert!(raw.starts_with("HTTP/1.1 201"), "{raw}");
        assert!(raw.contains("warning: 299 - \"first\"") && raw.contains("warning: 299 - \"second\""), "{raw}");
        assert!(raw.ends_with("POST /mutate?x=1 {\"a\":1}"), "{raw}");

        let seen = proxy.wait_for("the POST", Duration::from_secs(5), |e| e.method == "POST").await.unwrap();
        assert_eq!((seen.seq, seen.path.as_str(), seen.status), (0, "/mutate?x=1", 201));
        assert_eq!(seen.request_json().unwrap(), serde_json::json!({"a": 1}));
        assert_eq!(seen.request_headers.get("content-type").unwrap(), "application/json");
        assert_eq!(seen.response_headers.get_all("warning").iter().count(), 2);
        assert_eq!(&seen.response_body[..], b"POST /mutate?x=1 {\"a\":1}");
        assert!(seen.error.is_none());
        assert_eq!(proxy.take_exchanges().len(), 1);
        assert!(proxy.exchanges().is_empty());
    }

    #[tokio::test]
    async fn tls_to_tls_verifies_both_sides() {
        let ca = Ca::generate().unwrap();
        let upstream_cert = ca.issue("upstream", LOOPBACK_SANS).unwrap();
        let (upstream, _server) = echo_upstream(Some(TlsAcceptor::from(server_config(&upstream_cert).unwrap()))).await;
        let served = served_certificate(upstream, &ca.pair().cert_pem, "127.0.0.1").await.unwrap();
        assert_eq!(served, pem_to_der(&upstream_cert.cert_pem).unwrap());

        let proxy_cert = ca.issue("proxy", LOOPBACK_SANS).unwrap();
        let proxy =
            RecordingProxy::start(Upstream::https(upstream, &ca.pair().cert_pem), ProxyOptions::tls(proxy_cert))
                .await
                .unwrap();
        assert!(proxy.url().starts_with("https://127.0.0.1:"));
        let client = (
            TlsConnector::from(client_config(&ca.pair().cert_pem).unwrap()),
            ServerName::try_from("127.0.0.1").unwrap(),
        );
        let raw = String::from_utf8(get_through(&proxy, Some(client)).await).unwrap();
        assert!(raw.starts_with("HTTP/1.1 201") && raw.ends_with("{\"a\":1}"), "{raw}");
        let seen = proxy.exchanges();
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].status, 201);
    }

    #[tokio::test]
    async fn an_untrusted_upstream_is_a_recorded_bad_gateway() {
        let ca = Ca::generate().unwrap();
        let other_ca = Ca::generate().unwrap();
        let upstream_cert = other_ca.issue("upstream", LOOPBACK_SANS).unwrap();
        let (upstream, _server) = echo_upstream(Some(TlsAcceptor::from(server_config(&upstream_cert).unwrap()))).await;
        let proxy =
            RecordingProxy::start(Upstream::https(upstream, &ca.pair().cert_pem), ProxyOptions::plain()).await.unwrap();
        let raw = String::from_utf8(get_through(&proxy, None).await).unwrap();
        assert!(raw.starts_with("HTTP/1.1 502"), "{raw}");
        let seen = proxy.exchanges();
        assert_eq!(seen[0].status, 502);
        assert!(seen[0].error.as_deref().unwrap_or_default().contains("TLS handshake"), "{:?}", seen[0].error);
        assert_eq!(seen[0].request_json().unwrap(), serde_json::json!({"a": 1}));
    }

    #[tokio::test]
    async fn waiting_times_out_with_what_was_seen() {
        let (upstream, _server) = echo_upstream(None).await;
        let proxy = RecordingProxy::start(Upstream::http(upstream), ProxyOptions::plain()).await.unwrap();
        let err = proxy.wait_for("nothing", Duration::from_millis(50), |_| false).await.unwrap_err();
        assert!(err.to_string().contains("waiting for nothing"), "{err}");
    }
}
