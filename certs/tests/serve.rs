//! End-to-end tests: real sockets on 127.0.0.1, a rustls client, certificates rotated on disk.
#![cfg(unix)]
// Test helpers outside `#[test]` functions panic on purpose, like the tests themselves.
#![allow(clippy::unwrap_used)]

use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::get;
use prometheus_client::registry::Registry;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, ProtocolVersion, RootCertStore, SupportedProtocolVersion};
use stowage_certs::generate::{CertificateAuthority, GenerateOptions, PemPair};
use stowage_certs::load::subject_alt_names;
use stowage_certs::reload::ReloadingCert;
use stowage_certs::{CertMetrics, CertPaths, server_config};
use stowage_edge::{ServeOptions, serve_plain, serve_tls};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, oneshot};
use tokio::task::JoinHandle;
use tokio_rustls::TlsConnector;

const NAME: &str = "stowage.test";
const DEADLINE: Duration = Duration::from_secs(10);
const POLL: Duration = Duration::from_millis(20);

// === helpers ===

fn app() -> Router {
    Router::new().route("/hello", get(|| async { "hello" }))
}

fn server_opts(extra: &str) -> GenerateOptions {
    GenerateOptions {
        dns_names: vec![NAME.to_owned(), extra.to_owned()],
        ip_addresses: vec![],
        ..GenerateOptions::default()
    }
}

fn write_pair(dir: &Path, pair: &PemPair) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("tls.crt"), &pair.cert_pem).unwrap();
    std::fs::write(dir.join("tls.key"), &pair.key_pem).unwrap();
}

fn client(
    ca: &CertificateAuthority,
    identity: Option<&PemPair>,
    versions: &[&'static SupportedProtocolVersion],
    alpn: &[&[u8]],
) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca.cert_pem().as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let builder = ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots);
    let mut config = match identity {
        None => builder.with_no_client_auth(),
        Some(pair) => {
            let chain = CertificateDer::pem_slice_iter(pair.cert_pem.as_bytes()).collect::<Result<_, _>>().unwrap();
            let key = PrivateKeyDer::from_pem_slice(pair.key_pem.as_bytes()).unwrap();
            builder.with_client_auth_cert(chain, key).unwrap()
        }
    };
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    // Full handshakes only: a resumed session reports the certificate of its first handshake.
    config.resumption = rustls::client::Resumption::disabled();
    Arc::new(config)
}

fn default_client(ca: &CertificateAuthority) -> Arc<ClientConfig> {
    client(ca, None, rustls::DEFAULT_VERSIONS, &[])
}

#[derive(Debug)]
struct Reply {
    head: String,
    body: String,
    sans: Vec<String>,
    alpn: Option<Vec<u8>>,
    version: ProtocolVersion,
}

/// One HTTPS `GET /hello` on a fresh connection.
async fn fetch(addr: SocketAddr, config: Arc<ClientConfig>) -> io::Result<Reply> {
    tokio::time::timeout(DEADLINE, async {
        let tcp = TcpStream::connect(addr).await?;
        let name = ServerName::try_from(NAME).map_err(io::Error::other)?;
        let mut tls = TlsConnector::from(config).connect(name, tcp).await?;
        let (_, conn) = tls.get_ref();
        let leaf = conn.peer_certificates().and_then(|c| c.first()).ok_or_else(|| io::Error::other("no cert"))?;
        let sans = subject_alt_names(leaf).unwrap_or_default();
        let alpn = conn.alpn_protocol().map(<[u8]>::to_vec);
        let version = conn.protocol_version().ok_or_else(|| io::Error::other("no version"))?;
        tls.write_all(format!("GET /hello HTTP/1.1\r\nHost: {NAME}\r\nConnection: close\r\n\r\n").as_bytes()).await?;
        let mut raw = Vec::new();
        tls.read_to_end(&mut raw).await?;
        let text = String::from_utf8_lossy(&raw).into_owned();
        let (head, body) =
            text.split_once("\r\n\r\n").ok_or_else(|| io::Error::other(format!("no response: {text:?}")))?;
        Ok(Reply { head: head.to_owned(), body: body.to_owned(), sans, alpn, version })
    })
    .await
    .map_err(io::Error::other)?
}

struct Server {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<io::Result<()>>,
}

impl Server {
    async fn tls(config: Arc<rustls::ServerConfig>, opts: ServeOptions) -> Self {
        Self::start(opts, app(), Some(config)).await
    }

    async fn start(opts: ServeOptions, app: Router, tls: Option<Arc<rustls::ServerConfig>>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = oneshot::channel::<()>();
        let shutdown = async {
            let _ = rx.await;
        };
        let task = match tls {
            Some(config) => tokio::spawn(serve_tls(listener, config, app, opts, shutdown)),
            None => tokio::spawn(serve_plain(listener, app, opts, shutdown)),
        };
        Self { addr, stop: Some(tx), task }
    }

    async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        tokio::time::timeout(DEADLINE, self.task).await.unwrap().unwrap().unwrap();
    }
}

/// A server for a fresh CA and serving cert in `dir`; returns the CA and the resolver.
fn setup(dir: &Path) -> (CertificateAuthority, Arc<ReloadingCert>) {
    let ca = CertificateAuthority::generate(&GenerateOptions::default()).unwrap();
    write_pair(dir, &ca.issue_server_cert(&server_opts("old.stowage.test")).unwrap());
    let cert = Arc::new(ReloadingCert::load(CertPaths::in_dir(dir)).unwrap());
    (ca, cert)
}

fn metric(registry: &Registry, series: &str) -> f64 {
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, registry).unwrap();
    let prefix = format!("{series} ");
    text.lines().find_map(|l| l.strip_prefix(&prefix)).unwrap_or_else(|| panic!("{series} in {text}")).parse().unwrap()
}

const FAILURES: &str = "stowage_tls_cert_reloads_total{listener=\"webhook\",result=\"failure\"}";
const SUCCESSES: &str = "stowage_tls_cert_reloads_total{listener=\"webhook\",result=\"success\"}";

/// Polls `check` until it returns `Some`, failing the test at the deadline.
async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(start.elapsed() < DEADLINE, "timed out waiting for {what}");
        tokio::time::sleep(POLL).await;
    }
}

// === tests ===

#[tokio::test]
async fn serves_https_with_the_generated_cert() {
    let tmp = tempfile::tempdir().unwrap();
    let (ca, cert) = setup(tmp.path());
    let server = Server::tls(server_config(cert, None).unwrap(), ServeOptions::default()).await;

    let reply = fetch(server.addr, default_client(&ca)).await.unwrap();
    assert!(reply.head.starts_with("HTTP/1.1 200 OK"), "{}", reply.head);
    assert_eq!(reply.body, "hello");
    assert_eq!(reply.sans, [NAME, "old.stowage.test"]);
    assert_eq!(reply.version, ProtocolVersion::TLSv1_3);
    assert_eq!(reply.alpn, None);

    // A client that does not trust this CA is refused.
    let stranger = CertificateAuthority::generate(&GenerateOptions::default()).unwrap();
    assert!(fetch(server.addr, default_client(&stranger)).await.is_err());
    server.stop().await;
}

#[tokio::test]
async fn tls12_and_tls13_only_clients_both_connect() {
    let tmp = tempfile::tempdir().unwrap();
    let (ca, cert) = setup(tmp.path());
    let server = Server::tls(server_config(cert, None).unwrap(), ServeOptions::default()).await;
    let v13 = fetch(server.addr, client(&ca, None, &[&rustls::version::TLS13], &[])).await.unwrap();
    assert_eq!(v13.version, ProtocolVersion::TLSv1_3);
    let v12 = fetch(server.addr, client(&ca, None, &[&rustls::version::TLS12], &[])).await.unwrap();
    assert_eq!(v12.version, ProtocolVersion::TLSv1_2);
    assert_eq!(v12.body, "hello");
    server.stop().await;
}

#[tokio::test]
async fn alpn_negotiates_http1_and_refuses_h2_only() {
    let tmp = tempfile::tempdir().unwrap();
    let (ca, cert) = setup(tmp.path());
    let server = Server::tls(server_config(cert, None).unwrap(), ServeOptions::default()).await;
    let both = fetch(server.addr, client(&ca, None, rustls::DEFAULT_VERSIONS, &[b"h2", b"http/1.1"])).await.unwrap();
    assert_eq!(both.alpn.as_deref(), Some(&b"http/1.1"[..]));
    assert_eq!(both.body, "hello");
    let err = fetch(server.addr, client(&ca, None, rustls::DEFAULT_VERSIONS, &[b"h2"])).await.unwrap_err();
    assert!(err.to_string().contains("NoApplicationProtocol"), "{err}");
    server.stop().await;
}

#[tokio::test]
async fn mutual_tls_requires_a_client_cert_from_the_client_ca() {
    let tmp = tempfile::tempdir().unwrap();
    let (ca, cert) = setup(tmp.path());
    let ca_file = tmp.path().join("client-ca.crt");
    std::fs::write(&ca_file, ca.cert_pem()).unwrap();
    let server = Server::tls(server_config(cert, Some(&ca_file)).unwrap(), ServeOptions::default()).await;

    let good = ca.issue_client_cert("kube-apiserver").unwrap();
    let reply = fetch(server.addr, client(&ca, Some(&good), rustls::DEFAULT_VERSIONS, &[])).await.unwrap();
    assert_eq!(reply.body, "hello");

    assert!(fetch(server.addr, default_client(&ca)).await.is_err(), "no client cert must be refused");

    let other = CertificateAuthority::generate(&GenerateOptions::default()).unwrap();
    let foreign = other.issue_client_cert("kube-apiserver").unwrap();
    let err = fetch(server.addr, client(&ca, Some(&foreign), rustls::DEFAULT_VERSIONS, &[])).await;
    assert!(err.is_err(), "a client cert from another CA must be refused");

    // TLS 1.2 path too.
    let v12 = client(&ca, Some(&good), &[&rustls::version::TLS12], &[]);
    assert_eq!(fetch(server.addr, v12).await.unwrap().body, "hello");
    server.stop().await;
}

/// The kubelet's Secret-volume update: new timestamped dir, then an atomic `..data` rename.
#[tokio::test]
async fn rotation_by_secret_volume_symlink_swap() {
    use std::os::unix::fs::symlink;
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let ca = CertificateAuthority::generate(&GenerateOptions::default()).unwrap();
    write_pair(&root.join("..2026_11_24_a"), &ca.issue_server_cert(&server_opts("old.stowage.test")).unwrap());
    symlink("..2026_11_24_a", root.join("..data")).unwrap();
    symlink("..data/tls.crt", root.join("tls.crt")).unwrap();
    symlink("..data/tls.key", root.join("tls.key")).unwrap();

    let mut registry = Registry::default();
    let metrics = CertMetrics::register(&mut registry);
    let cert = Arc::new(ReloadingCert::load(CertPaths::in_dir(root)).unwrap().with_metrics(&metrics, "webhook"));
    let watch = tokio::spawn(cert.watch(Duration::from_millis(100)));
    let server = Server::tls(server_config(Arc::clone(&cert), None).unwrap(), ServeOptions::default()).await;
    let config = default_client(&ca);
    assert_eq!(fetch(server.addr, Arc::clone(&config)).await.unwrap().sans[1], "old.stowage.test");

    // Keep connecting while the swap happens; every connection must succeed.
    let probing = Arc::new(AtomicBool::new(true));
    let prober = tokio::spawn({
        let (addr, config, probing) = (server.addr, Arc::clone(&config), Arc::clone(&probing));
        async move {
            let mut outcomes = Vec::new();
            while probing.load(Ordering::Relaxed) && outcomes.len() < 2_000 {
                outcomes.push(fetch(addr, Arc::clone(&config)).await.map(|r| r.sans));
            }
            outcomes
        }
    });

    let new = ca.issue_server_cert(&server_opts("new.stowage.test")).unwrap();
    write_pair(&root.join("..2026_11_24_b"), &new);
    symlink("..2026_11_24_b", root.join("..data_tmp")).unwrap();
    std::fs::rename(root.join("..data_tmp"), root.join("..data")).unwrap();
    std::fs::remove_dir_all(root.join("..2026_11_24_a")).unwrap();

    eventually("the new certificate to be served", || {
        let config = Arc::clone(&config);
        async move {
            let reply = fetch(server.addr, config).await.ok()?;
            (reply.sans[1] == "new.stowage.test").then_some(())
        }
    })
    .await;
    probing.store(false, Ordering::Relaxed);
    let outcomes = prober.await.unwrap();
    assert!(!outcomes.is_empty());
    let failures: Vec<_> = outcomes.iter().filter(|o| o.is_err()).collect();
    assert!(failures.is_empty(), "{} of {} connections failed: {failures:?}", failures.len(), outcomes.len());

    assert_eq!(metric(&registry, SUCCESSES), 1.0);
    assert_eq!(metric(&registry, FAILURES), 0.0);
    let new_not_after =
        stowage_certs::load::parse_pair(&CertPaths::in_dir(root), new.cert_pem.as_bytes(), new.key_pem.as_bytes())
            .unwrap()
            .info
            .not_after;
    #[allow(clippy::cast_precision_loss)]
    let expected = new_not_after as f64;
    assert_eq!(metric(&registry, "stowage_tls_cert_not_after_seconds{listener=\"webhook\"}"), expected);

    server.stop().await;
    drop(cert);
    tokio::time::timeout(DEADLINE, watch).await.unwrap().unwrap();
}

#[tokio::test]
async fn bad_updates_keep_the_last_good_cert_until_fixed() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let ca = CertificateAuthority::generate(&GenerateOptions::default()).unwrap();
    write_pair(dir, &ca.issue_server_cert(&server_opts("old.stowage.test")).unwrap());
    let mut registry = Registry::default();
    let metrics = CertMetrics::register(&mut registry);
    let cert = Arc::new(ReloadingCert::load(CertPaths::in_dir(dir)).unwrap().with_metrics(&metrics, "webhook"));
    let _watch = tokio::spawn(cert.watch(Duration::from_millis(100)));
    let server = Server::tls(server_config(Arc::clone(&cert), None).unwrap(), ServeOptions::default()).await;
    let config = default_client(&ca);
    let sans = || async { fetch(server.addr, Arc::clone(&config)).await.unwrap().sans };

    // 1. A key that does not match the served certificate.
    let new = ca.issue_server_cert(&server_opts("new.stowage.test")).unwrap();
    std::fs::write(dir.join("tls.key"), &new.key_pem).unwrap();
    eventually("a rejected mismatched key", || async { (metric(&registry, FAILURES) >= 1.0).then_some(()) }).await;
    assert_eq!(sans().await[1], "old.stowage.test");

    // 2. A truncated certificate.
    std::fs::write(dir.join("tls.crt"), &new.cert_pem[..new.cert_pem.len() / 2]).unwrap();
    eventually("a rejected truncated cert", || async { (metric(&registry, FAILURES) >= 2.0).then_some(()) }).await;
    assert_eq!(sans().await[1], "old.stowage.test");
    assert_eq!(metric(&registry, SUCCESSES), 0.0);

    // 3. The complete certificate: the pair is valid again and is served.
    std::fs::write(dir.join("tls.crt"), &new.cert_pem).unwrap();
    eventually("the fixed pair to be served", || async { (sans().await[1] == "new.stowage.test").then_some(()) }).await;
    assert_eq!(metric(&registry, SUCCESSES), 1.0);
    server.stop().await;
}

/// Issue 12: there was no cap on connections (15-20 KiB per idle one). With the cap reached,
/// a further client is not served until a connection closes; then it is.
#[tokio::test]
async fn connections_beyond_the_cap_wait_until_one_closes() {
    let opts = ServeOptions { max_connections: 2, ..ServeOptions::default() };
    let server = Server::start(opts, app(), None).await;
    let get = b"GET /hello HTTP/1.0\r\nHost: x\r\n\r\n";
    // A served connection frees its slot.
    let mut first = TcpStream::connect(server.addr).await.unwrap();
    first.write_all(get).await.unwrap();
    let mut reply = String::new();
    first.read_to_string(&mut reply).await.unwrap();
    assert!(reply.ends_with("hello"), "{reply}");
    // Two idle clients take both slots.
    let idle = [TcpStream::connect(server.addr).await.unwrap(), TcpStream::connect(server.addr).await.unwrap()];
    let mut waiting = TcpStream::connect(server.addr).await.unwrap(); // in the listen backlog
    waiting.write_all(get).await.unwrap();
    let mut reply = String::new();
    let early = tokio::time::timeout(Duration::from_millis(300), waiting.read_to_string(&mut reply)).await;
    assert!(early.is_err(), "served beyond the cap: {reply:?}");
    drop(idle);
    tokio::time::timeout(DEADLINE, waiting.read_to_string(&mut reply)).await.unwrap().unwrap();
    assert!(reply.ends_with("hello"), "{reply}");
    server.stop().await;
}

#[tokio::test]
async fn slow_headers_and_silent_clients_are_disconnected() {
    let tmp = tempfile::tempdir().unwrap();
    let (ca, cert) = setup(tmp.path());
    let opts = ServeOptions {
        header_read_timeout: Duration::from_millis(300),
        handshake_timeout: Duration::from_millis(300),
        ..ServeOptions::default()
    };
    let server = Server::tls(server_config(cert, None).unwrap(), opts).await;
    let config = default_client(&ca);
    // A prompt client is served.
    assert_eq!(fetch(server.addr, Arc::clone(&config)).await.unwrap().body, "hello");

    // Slowloris: completes TLS, then trickles header lines forever.
    let tcp = TcpStream::connect(server.addr).await.unwrap();
    let tls = TlsConnector::from(Arc::clone(&config)).connect(ServerName::try_from(NAME).unwrap(), tcp).await.unwrap();
    let (mut rd, mut wr) = tokio::io::split(tls);
    let started = Instant::now();
    let writer = tokio::spawn(async move {
        if wr.write_all(b"GET /hello HTTP/1.1\r\nHost: stowage.test\r\n").await.is_err() {
            return;
        }
        for _ in 0..200 {
            if wr.write_all(b"X-Slow: 1\r\n").await.is_err() || wr.flush().await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    let mut buf = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(5), rd.read_to_end(&mut buf)).await;
    assert!(closed.is_ok(), "slow client still connected after 5 s");
    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_millis(250), "closed too early: {elapsed:?}");
    assert!(!String::from_utf8_lossy(&buf).contains("200 OK"));
    writer.abort();

    // Silent after the handshake: closed by the header-read timeout too.
    let tcp = TcpStream::connect(server.addr).await.unwrap();
    let mut tls =
        TlsConnector::from(Arc::clone(&config)).connect(ServerName::try_from(NAME).unwrap(), tcp).await.unwrap();
    let mut buf = Vec::new();
    assert!(tokio::time::timeout(Duration::from_secs(5), tls.read_to_end(&mut buf)).await.is_ok());

    // Silent before the handshake: closed by the handshake timeout.
    let mut tcp = TcpStream::connect(server.addr).await.unwrap();
    let mut buf = Vec::new();
    assert!(tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut buf)).await.is_ok());
    assert!(buf.is_empty());
    server.stop().await;
}

async fn plain_get(addr: SocketAddr, path: &str) -> io::Result<String> {
    let mut tcp = TcpStream::connect(addr).await?;
    tcp.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes()).await?;
    let mut raw = String::new();
    tcp.read_to_string(&mut raw).await?;
    Ok(raw)
}

#[tokio::test]
async fn plain_server_drains_in_flight_requests_on_shutdown() {
    let started = Arc::new(Notify::new());
    let release = Arc::new(Notify::new());
    let app = Router::new().route(
        "/slow",
        get({
            let (started, release) = (Arc::clone(&started), Arc::clone(&release));
            move || async move {
                started.notify_one();
                release.notified().await;
                "done"
            }
        }),
    );
    let mut server = Server::start(ServeOptions::default(), app, None).await;
    assert!(plain_get(server.addr, "/nope").await.unwrap().starts_with("HTTP/1.1 404"));

    let addr = server.addr;
    let in_flight = tokio::spawn(async move { plain_get(addr, "/slow").await });
    tokio::time::timeout(DEADLINE, started.notified()).await.unwrap();
    let _ = server.stop.take().unwrap().send(());

    // The listener closes: new connections are refused.
    eventually("the listener to close", || async { TcpStream::connect(addr).await.is_err().then_some(()) }).await;
    assert!(!server.task.is_finished(), "returned before the in-flight request finished");

    release.notify_one();
    let reply = tokio::time::timeout(DEADLINE, in_flight).await.unwrap().unwrap().unwrap();
    assert!(reply.starts_with("HTTP/1.1 200 OK"), "{reply}");
    assert!(reply.ends_with("done"), "{reply}");
    tokio::time::timeout(DEADLINE, server.task).await.unwrap().unwrap().unwrap();
}

#[tokio::test]
async fn drain_gives_up_after_the_drain_timeout() {
    let started = Arc::new(Notify::new());
    let app = Router::new().route(
        "/hang",
        get({
            let started = Arc::clone(&started);
            move || async move {
                started.notify_one();
                std::future::pending::<&'static str>().await
            }
        }),
    );
    let opts = ServeOptions { drain_timeout: Duration::from_millis(200), ..ServeOptions::default() };
    let mut server = Server::start(opts, app, None).await;
    let addr = server.addr;
    let hung = tokio::spawn(async move { plain_get(addr, "/hang").await });
    tokio::time::timeout(DEADLINE, started.notified()).await.unwrap();

    let _ = server.stop.take().unwrap().send(());
    let stopped = Instant::now();
    tokio::time::timeout(DEADLINE, server.task).await.unwrap().unwrap().unwrap();
    assert!(stopped.elapsed() >= Duration::from_millis(150), "did not wait for the drain");
    // The hung client sees its connection closed without a response.
    let reply = tokio::time::timeout(DEADLINE, hung).await.unwrap().unwrap();
    assert!(reply.map_or(true, |r| r.is_empty()), "unexpected response");
}
