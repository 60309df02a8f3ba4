//! The accept loop over real sockets: the header read timeout is separate from the idle
//! keep-alive timeout.
#![allow(clippy::unwrap_used, missing_docs)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::{Router, routing::get};
use stowage_edge::{ServeOptions, serve_plain};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

async fn start(opts: ServeOptions) -> (SocketAddr, oneshot::Sender<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = oneshot::channel::<()>();
    let app = Router::new().route("/hello", get(|| async { "hello" }));
    tokio::spawn(serve_plain(listener, app, opts, async move {
        let _ = rx.await;
    }));
    (addr, tx)
}

/// Reads until the server closes; how long that took (at most `limit`).
async fn closed_after(tcp: &mut TcpStream, limit: Duration) -> Option<Duration> {
    let started = Instant::now();
    let mut buf = vec![0; 4096];
    let wait = async {
        loop {
            match tcp.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(limit, wait).await.ok().map(|()| started.elapsed())
}

#[tokio::test]
async fn a_stalled_head_is_closed_after_the_header_read_timeout_but_an_idle_connection_lives_on() {
    let opts = ServeOptions {
        header_read_timeout: Duration::from_millis(300),
        idle_timeout: Duration::from_secs(30),
        ..ServeOptions::default()
    };
    let (addr, _stop) = start(opts).await;

    // A keep-alive client answered once, then idle for longer than the header read timeout:
    // still open, and served again.
    let mut idle = TcpStream::connect(addr).await.unwrap();
    idle.write_all(b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let mut buf = vec![0; 4096];
    let n = idle.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).ends_with("hello"));
    tokio::time::sleep(Duration::from_secs(1)).await;
    idle.write_all(b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let n = idle.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).ends_with("hello"), "an idle keep-alive connection was closed");

    // The next head stalls halfway on the same connection: closed after ~300 ms, not 30 s.
    idle.write_all(b"GET /hello HTTP/1.1\r\nHo").await.unwrap();
    let held = closed_after(&mut idle, Duration::from_secs(5)).await.expect("a stalled head held past 5 s");
    assert!(held >= Duration::from_millis(250), "closed too early: {held:?}");

    // A new connection that sends nothing: closed after the header read timeout too.
    let mut silent = TcpStream::connect(addr).await.unwrap();
    closed_after(&mut silent, Duration::from_secs(5)).await.expect("a silent new connection held past 5 s");
}

#[tokio::test]
async fn a_request_slower_than_the_header_read_timeout_is_still_answered() {
    let opts = ServeOptions { header_read_timeout: Duration::from_millis(200), ..ServeOptions::default() };
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = Router::new().route(
        "/slow",
        get(|| async {
            tokio::time::sleep(Duration::from_millis(600)).await;
            "done"
        }),
    );
    tokio::spawn(serve_plain(listener, app, opts, std::future::pending()));
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(b"GET /slow HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await.unwrap();
    let mut reply = String::new();
    tcp.read_to_string(&mut reply).await.unwrap();
    assert!(reply.ends_with("done"), "{reply}");
}

/// The protocol switch: HTTP/2 (prior knowledge) is served only when switched on.
#[tokio::test]
async fn http2_is_served_only_when_switched_on() {
    use http_body_util::{BodyExt as _, Empty};
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use stowage_edge::Protocol;

    async fn get_h2(addr: SocketAddr) -> Result<String, hyper::Error> {
        let tcp = TcpStream::connect(addr).await.unwrap();
        let (mut sender, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp)).await?;
        tokio::spawn(conn);
        let request = http::Request::get(format!("http://{addr}/hello")).body(Empty::<bytes::Bytes>::new()).unwrap();
        let response = sender.send_request(request).await?;
        let body = response.into_body().collect().await?.to_bytes();
        Ok(String::from_utf8_lossy(&body).into_owned())
    }

    let (both, _stop_both) = start(ServeOptions { protocol: Protocol::Http1AndHttp2, ..ServeOptions::default() }).await;
    assert_eq!(get_h2(both).await.unwrap(), "hello");
    let (h1, _stop_h1) = start(ServeOptions::default()).await;
    assert!(get_h2(h1).await.is_err(), "an HTTP/1.1-only listener answered HTTP/2");
}
