//! Slow clients: each opens a connection, sends a `POST` whose headers announce a body, sends one
//! byte of that body and then stalls. When the server gives up on it (answers 408 or closes),
//! the client opens the next connection, so `clients` connections stay open or opening for as
//! long as the flood runs: a bounded slowloris.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use anyhow::Context as _;
use rustls::pki_types::ServerName;
use tokio::{
    io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _},
    net::TcpStream,
    sync::watch,
    task::JoinHandle,
};

use crate::client::Target;

/// The body length the slow clients' headers announce.
pub const ANNOUNCED_BODY: usize = 64 * 1024;

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

#[derive(Default)]
struct Counters {
    opened: AtomicU64,
    holding: AtomicU64,
    released: AtomicU64,
    failed: AtomicU64,
}

/// What the slow clients did so far.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct SlowStats {
    /// Connections that sent their headers and byte.
    pub opened: u64,
    /// Connections open right now, headers and byte sent, not answered.
    pub holding: u64,
    /// Connections the server answered or closed.
    pub released: u64,
    /// Connection attempts that failed (refused, reset, TLS handshake failed).
    pub failed: u64,
}

/// A running flood of slow clients; [`SlowFlood::stop`] closes every connection.
pub struct SlowFlood {
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    counters: Arc<Counters>,
}

impl SlowFlood {
    /// Starts `clients` slow clients against `target` (its path is the one they post to).
    #[must_use]
    pub fn start(target: &Target, clients: usize) -> Self {
        let (stop, stopped) = watch::channel(false);
        let counters = Arc::new(Counters::default());
        let tasks = (0..clients)
            .map(|_| tokio::spawn(client(target.clone(), stopped.clone(), Arc::clone(&counters))))
            .collect();
        Self { stop, tasks, counters }
    }

    /// Counters so far.
    #[must_use]
    pub fn stats(&self) -> SlowStats {
        let c = &self.counters;
        SlowStats {
            opened: c.opened.load(Ordering::Relaxed),
            holding: c.holding.load(Ordering::Relaxed),
            released: c.released.load(Ordering::Relaxed),
            failed: c.failed.load(Ordering::Relaxed),
        }
    }

    /// Waits until every client has sent its headers and byte at least once (`opened` reaches
    /// the number of clients), or `deadline` passes; returns whether they did. (The server may
    /// release a client before the last one gets there, so not all need to hold at once.)
    pub async fn wait_all_sent(&self, deadline: Duration) -> bool {
        let until = tokio::time::Instant::now() + deadline;
        let n = self.tasks.len() as u64;
        while tokio::time::Instant::now() < until {
            if self.counters.opened.load(Ordering::Relaxed) >= n {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        false
    }

    /// Closes every slow connection and waits for the clients to end.
    pub async fn stop(mut self) -> SlowStats {
        let _ = self.stop.send(true);
        for task in std::mem::take(&mut self.tasks) {
            let _ = task.await;
        }
        self.stats()
    }
}

async fn open(target: &Target) -> anyhow::Result<Box<dyn Io>> {
    let tcp = TcpStream::connect(target.addr).await.with_context(|| format!("connecting to {}", target.addr))?;
    Ok(match &target.tls {
        None => Box::new(tcp),
        Some(config) => {
            let name = ServerName::IpAddress(target.addr.ip().into());
            Box::new(tokio_rustls::TlsConnector::from(Arc::clone(config)).connect(name, tcp).await?)
        }
    })
}

async fn client(target: Target, mut stopped: watch::Receiver<bool>, counters: Arc<Counters>) {
    let head = format!(
        "POST {} HTTP/1.1\r\nhost: {}\r\ncontent-type: application/json\r\ncontent-length: {ANNOUNCED_BODY}\r\n\r\n{{",
        target.path, target.addr
    );
    while !*stopped.borrow() {
        let opened = async {
            let mut io = open(&target).await?;
            io.write_all(head.as_bytes()).await?;
            io.flush().await?;
            anyhow::Ok(io)
        };
        let mut io = tokio::select! {
            io = opened => match io {
                Ok(io) => io,
                Err(_) => {
                    counters.failed.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = stopped.changed() => break,
        };
        counters.opened.fetch_add(1, Ordering::Relaxed);
        counters.holding.fetch_add(1, Ordering::Relaxed);
        // Stall: read whatever the server answers until it closes.
        let mut sink = [0_u8; 1024];
        let closed = async { while matches!(io.read(&mut sink).await, Ok(n) if n > 0) {} };
        tokio::select! {
            () = closed => { counters.released.fetch_add(1, Ordering::Relaxed); }
            _ = stopped.changed() => {}
        }
        counters.holding.fetch_sub(1, Ordering::Relaxed);
    }
}
