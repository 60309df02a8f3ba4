//! A keep-alive HTTP/1.1 load generator: `connections` connections, each sending one request
//! after another for a warm-up and then a measured period; every response is verified and its
//! latency (request sent to body fully read) recorded in an HdrHistogram.

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use anyhow::Context as _;
use bytes::Bytes;
use hdrhistogram::Histogram;
use http::{Method, Request, StatusCode, header};
use http_body_util::{BodyExt as _, Full};
use hyper_util::rt::TokioIo;
use rustls::pki_types::{CertificateDer, ServerName, pem::PemObject as _};
use tokio::{
    io::{AsyncRead, AsyncWrite},
    net::TcpStream,
    time::Instant,
};

/// Where to send requests.
#[derive(Clone)]
pub struct Target {
    /// Server address.
    pub addr: SocketAddr,
    /// Request path, e.g. `/mutate`.
    pub path: String,
    /// TLS client configuration; plain HTTP when `None`.
    pub tls: Option<Arc<rustls::ClientConfig>>,
}

impl Target {
    /// A plain-HTTP target.
    #[must_use]
    pub fn plain(addr: SocketAddr, path: &str) -> Self {
        Self { addr, path: path.to_owned(), tls: None }
    }

    /// A TLS target whose certificate is issued by the CA in `ca_pem`.
    ///
    /// # Errors
    /// When the PEM holds no valid certificate.
    pub fn tls(addr: SocketAddr, path: &str, ca_pem: &[u8]) -> anyhow::Result<Self> {
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(ca_pem) {
            roots.add(cert.context("CA PEM")?).context("CA certificate")?;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .context("TLS versions")?
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Self { addr, path: path.to_owned(), tls: Some(Arc::new(config)) })
    }
}

/// The requests to send and how to check their answers.
pub trait Workload: Send + Sync + 'static {
    /// The body of request number `seq` (unique across connections).
    fn body(&self, seq: u64) -> Bytes;
    /// Checks the answer to request `seq`.
    ///
    /// # Errors
    /// A short description of what is wrong.
    fn verify(&self, seq: u64, status: StatusCode, body: &[u8]) -> Result<(), String>;
}

/// How much load, for how long.
#[derive(Debug, Clone, Copy)]
pub struct LoadOptions {
    /// Concurrent keep-alive connections, each with one request in flight.
    pub connections: usize,
    /// Requests before this are sent but not recorded.
    pub warmup: Duration,
    /// The measured period.
    pub duration: Duration,
}

/// What a run measured.
#[derive(Debug, Clone)]
pub struct LoadResult {
    /// Verified requests completed in the measured period.
    pub requests: u64,
    /// Failed requests (transport errors and failed verifications) in the whole run.
    pub errors: u64,
    /// The first few error messages.
    pub first_errors: Vec<String>,
    /// Length of the measured period.
    pub elapsed: Duration,
    /// Latencies of the measured requests, in microseconds.
    pub latency_us: Histogram<u64>,
}

impl LoadResult {
    /// Requests per second over the measured period.
    #[must_use]
    pub fn rps(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64().max(f64::EPSILON)
    }
}

/// A new histogram for microsecond latencies (1 µs to 60 s, 3 significant digits).
#[must_use]
pub fn latency_histogram() -> Histogram<u64> {
    match Histogram::new_with_bounds(1, 60_000_000, 3) {
        Ok(h) => h,
        Err(e) => unreachable!("constant histogram bounds are valid: {e}"),
    }
}

struct Shared {
    target: Target,
    workload: Arc<dyn Workload>,
    seq: AtomicU64,
    measure_from: Instant,
    until: Instant,
}

/// Runs the load and waits for it to finish.
///
/// # Errors
/// When no connection could be made at all.
pub async fn run(target: &Target, workload: Arc<dyn Workload>, opts: LoadOptions) -> anyhow::Result<LoadResult> {
    let start = Instant::now();
    let shared = Arc::new(Shared {
        target: target.clone(),
        workload,
        seq: AtomicU64::new(0),
        measure_from: start + opts.warmup,
        until: start + opts.warmup + opts.duration,
    });
    let tasks: Vec<_> = (0..opts.connections.max(1)).map(|_| tokio::spawn(connection(Arc::clone(&shared)))).collect();
    let mut result = LoadResult {
        requests: 0,
        errors: 0,
        first_errors: Vec::new(),
        elapsed: opts.duration,
        latency_us: latency_histogram(),
    };
    for task in tasks {
        let part = task.await.context("load connection task")?;
        result.requests += part.requests;
        result.errors += part.errors;
        for e in part.first_errors {
            if result.first_errors.len() < 5 {
                result.first_errors.push(e);
            }
        }
        result.latency_us.add(&part.latency_us).context("merging histograms")?;
    }
    if result.requests == 0 && result.errors > 0 {
        anyhow::bail!("every request failed: {:?}", result.first_errors);
    }
    Ok(result)
}

/// An HTTP/1.1 connection's request sender.
pub type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

/// Opens one keep-alive HTTP/1.1 connection (TLS when the target has a client configuration).
///
/// # Errors
/// When the TCP connection, the TLS handshake or the HTTP handshake fails.
pub async fn connect(target: &Target) -> anyhow::Result<Sender> {
    let tcp = TcpStream::connect(target.addr).await.with_context(|| format!("connecting to {}", target.addr))?;
    tcp.set_nodelay(true)?;
    match &target.tls {
        None => handshake(tcp).await,
        Some(config) => {
            let name = ServerName::IpAddress(target.addr.ip().into());
            let tls = tokio_rustls::TlsConnector::from(Arc::clone(config))
                .connect(name, tcp)
                .await
                .context("TLS handshake")?;
            handshake(tls).await
        }
    }
}

/// Sends one `POST` of `body` (JSON) to the target's path on `sender` and reads the whole answer.
///
/// # Errors
/// When the connection fails before the answer is read.
pub async fn post(sender: &mut Sender, target: &Target, body: Bytes) -> anyhow::Result<(StatusCode, Bytes)> {
    let request = Request::builder()
        .method(Method::POST)
        .uri(target.path.as_str())
        .header(header::HOST, target.addr.to_string())
        .header(header::CONTENT_TYPE, "application/json")
        .body(Full::new(body))?;
    sender.ready().await?;
    let (parts, body) = sender.send_request(request).await?.into_parts();
    Ok((parts.status, body.collect().await?.to_bytes()))
}

async fn handshake<IO>(io: IO) -> anyhow::Result<Sender>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io)).await.context("HTTP handshake")?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

async fn connection(shared: Arc<Shared>) -> LoadResult {
    let mut out = LoadResult {
        requests: 0,
        errors: 0,
        first_errors: Vec::new(),
        elapsed: Duration::ZERO,
        latency_us: latency_histogram(),
    };
    let fail = |out: &mut LoadResult, e: String| {
        out.errors += 1;
        if out.first_errors.len() < 5 {
            out.first_errors.push(e);
        }
    };
    let mut sender: Option<Sender> = None;
    let host = shared.target.addr.to_string();
    while Instant::now() < shared.until {
        let s = match sender.as_mut() {
            Some(s) => s,
            None => match connect(&shared.target).await {
                Ok(s) => sender.insert(s),
                Err(e) => {
                    fail(&mut out, format!("{e:#}"));
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let seq = shared.seq.fetch_add(1, Ordering::Relaxed);
        let body = shared.workload.body(seq);
        let request = Request::builder()
            .method(Method::POST)
            .uri(shared.target.path.as_str())
            .header(header::HOST, host.as_str())
            .header(header::CONTENT_TYPE, "application/json")
            .body(Full::new(body));
        let request = match request {
            Ok(r) => r,
            Err(e) => {
                fail(&mut out, e.to_string());
                continue;
            }
        };
        let sent = Instant::now();
        let answer = async {
            s.ready().await?;
            let response = s.send_request(request).await?;
            let (parts, body) = response.into_parts();
            let body = body.collect().await?.to_bytes();
            Ok::<_, hyper::Error>((parts.status, body))
        }
        .await;
        let done = Instant::now();
        match answer {
            Ok((status, body)) => match shared.workload.verify(seq, status, &body) {
                Ok(()) => {
                    if sent >= shared.measure_from && done <= shared.until {
                        out.requests += 1;
                        let us = u64::try_from((done - sent).as_micros()).unwrap_or(u64::MAX);
                        out.latency_us.saturating_record(us.max(1));
                    }
                }
                Err(e) => fail(&mut out, format!("request {seq}: {e}")),
            },
            Err(e) => {
                fail(&mut out, format!("request {seq}: {e}"));
                sender = None;
            }
        }
    }
    out
}
