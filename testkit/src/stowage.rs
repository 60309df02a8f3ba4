//! The `stowage` binary as a supervised process for end-to-end tests, and small helpers to read
//! its admin port (`/readyz`, `/metrics`, `/debug/decisions`).
//!
//! Integration tests of the root package pass `env!("CARGO_BIN_EXE_stowage")` as the binary.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::{Supervised, free_ports, scaled};

/// Starts `stowage serve --components extender` against `cp` with the config `yaml`, logging at
/// debug for the extender. The config and the log live in a new temporary directory named
/// `<prefix>…`, kept as long as the returned guard. Panics with the control plane's diagnostics
/// when stowage does not come up.
pub async fn start_extender(
    binary: &Path,
    cp: &crate::ControlPlane,
    yaml: &str,
    prefix: &str,
) -> (StowageProcess, tempfile::TempDir) {
    let dir = tempfile::Builder::new().prefix(prefix).tempdir().expect("temp dir");
    let config = dir.path().join("config.yaml");
    std::fs::write(&config, yaml).expect("writing the config");
    let args = StowageArgs::new(binary, "extender")
        .kubeconfig(cp.kubeconfig_path())
        .config(&config)
        .env("RUST_LOG", "info,stowage_scheduler=debug");
    let stowage = StowageProcess::start(&args, &dir.path().join("stowage.log"))
        .await
        .unwrap_or_else(|e| panic!("{e:#}\n{}", cp.diagnostics()));
    (stowage, dir)
}

/// Lines of the stowage log put into failure messages.
pub const LOG_LINES: usize = 60;

/// How to run `stowage serve`. Listen addresses are picked by [`StowageProcess::start`].
#[derive(Debug, Clone)]
pub struct StowageArgs {
    binary: PathBuf,
    components: String,
    env: Vec<(String, String)>,
    args: Vec<String>,
}

impl StowageArgs {
    /// `stowage serve --components <components>` (e.g. `"extender"`, `"webhook"`).
    pub fn new(binary: &Path, components: &str) -> Self {
        Self {
            binary: binary.to_owned(),
            components: components.to_owned(),
            env: vec![("RUST_LOG".to_owned(), "info".to_owned())],
            args: Vec::new(),
        }
    }

    /// `--kubeconfig`.
    #[must_use]
    pub fn kubeconfig(self, path: &Path) -> Self {
        self.arg(format!("--kubeconfig={}", path.display()))
    }

    /// `--config`.
    #[must_use]
    pub fn config(self, path: &Path) -> Self {
        self.arg(format!("--config={}", path.display()))
    }

    /// `--tls-dir`.
    #[must_use]
    pub fn tls_dir(self, path: &Path) -> Self {
        self.arg(format!("--tls-dir={}", path.display()))
    }

    /// Any other argument.
    #[must_use]
    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// An environment variable (e.g. `RUST_LOG`, replacing the default `info`).
    #[must_use]
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.retain(|(k, _)| k != key);
        self.env.push((key.to_owned(), value.to_owned()));
        self
    }
}

/// A running `stowage serve`, killed on drop (and when the test process dies).
pub struct StowageProcess {
    process: Option<Supervised>,
    argv: Vec<String>,
    log: PathBuf,
    /// The extender's address (plain HTTP unless `--extender-tls`).
    pub extender: SocketAddr,
    /// The webhook's address (HTTPS).
    pub webhook: SocketAddr,
    /// The admin address (`/readyz`, `/metrics`, `/debug/decisions`).
    pub admin: SocketAddr,
}

impl StowageProcess {
    /// Starts the process on free loopback ports and waits until `/readyz` answers 200.
    ///
    /// # Errors
    /// When it exits or is not ready within 60 s (scaled), with its log tail.
    pub async fn start(args: &StowageArgs, log: &Path) -> Result<Self> {
        let mut last = String::new();
        // A free port can be taken between picking and binding it: retry with new ones.
        for _ in 0..3 {
            let ports = free_ports(3)?;
            let [extender, webhook, admin] =
                [ports[0], ports[1], ports[2]].map(|p| SocketAddr::from(([127, 0, 0, 1], p)));
            let mut argv: Vec<String> = args.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
            argv.push(args.binary.display().to_string());
            argv.extend([
                "serve".to_owned(),
                format!("--components={}", args.components),
                format!("--extender-addr={extender}"),
                format!("--webhook-addr={webhook}"),
                format!("--admin-addr={admin}"),
                "--shutdown-delay=0s".to_owned(),
            ]);
            // Loopback only, so the admin port may go without authentication unless the test
            // asks for it.
            if !args.args.iter().any(|a| a.starts_with("--admin-auth")) {
                argv.push("--admin-auth=none".to_owned());
            }
            argv.extend(args.args.iter().cloned());
            let mut stowage = Self { process: None, argv, log: log.to_owned(), extender, webhook, admin };
            match stowage.spawn_and_wait().await {
                Ok(()) => return Ok(stowage),
                Err(e) => last = format!("{e:#}"),
            }
        }
        bail!("stowage did not start: {last}")
    }

    async fn spawn_and_wait(&mut self) -> Result<()> {
        self.process = Some(Supervised::spawn("stowage", Path::new("env"), &self.argv, &self.log)?);
        let started = Instant::now();
        let timeout = scaled(Duration::from_secs(60));
        loop {
            if let Some(status) = self.process.as_ref().and_then(Supervised::exit_status) {
                bail!("stowage exited with {status}\n{}", self.log_tail(LOG_LINES));
            }
            let last = match http_get(self.admin, "/readyz").await {
                Ok((200, _)) => return Ok(()),
                Ok((status, body)) => format!("{status} {}", body.trim()),
                Err(e) => e.to_string(),
            };
            if started.elapsed() > timeout {
                bail!("stowage not ready after {timeout:?} (last /readyz: {last})\n{}", self.log_tail(LOG_LINES));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Kills the process (SIGKILL, as a crash would) and waits until it is gone.
    pub fn kill(&mut self) {
        if let Some(process) = self.process.take() {
            process.stop();
        }
    }

    /// Starts it again with the same ports and arguments.
    ///
    /// # Errors
    /// As [`StowageProcess::start`].
    pub async fn restart(&mut self) -> Result<()> {
        self.kill();
        self.spawn_and_wait().await
    }

    /// `http://127.0.0.1:<port>/scheduler`, the extender's `urlPrefix`.
    #[must_use]
    pub fn extender_url(&self) -> String {
        format!("http://{}/scheduler", self.extender)
    }

    /// `https://127.0.0.1:<port>/mutate`, the webhook's `clientConfig.url`.
    #[must_use]
    pub fn webhook_url(&self) -> String {
        format!("https://{}/mutate", self.webhook)
    }

    /// Process id of the supervising shell (stowage is its child); `None` once killed.
    #[must_use]
    pub fn pid(&self) -> Option<u32> {
        self.process.as_ref().map(Supervised::pid)
    }

    /// The log file.
    #[must_use]
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The last `lines` lines of the log, with a header naming the file.
    #[must_use]
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        format!(
            "last {lines} lines of the stowage log {}:\n{}",
            self.log.display(),
            all[all.len().saturating_sub(lines)..].join("\n")
        )
    }

    /// GET on the admin port: status and body.
    ///
    /// # Errors
    /// When the request fails.
    pub async fn admin_get(&self, path: &str) -> Result<(u16, String)> {
        http_get(self.admin, path).await
    }

    /// The Prometheus text of `/metrics`.
    ///
    /// # Errors
    /// When the request fails or does not answer 200.
    pub async fn metrics(&self) -> Result<String> {
        match self.admin_get("/metrics").await? {
            (200, body) => Ok(body),
            (status, body) => bail!("GET /metrics: {status}: {body}"),
        }
    }
}

/// A plain-HTTP/1.0 GET: status and body (enough for admin ports).
///
/// # Errors
/// When connecting, writing or reading fails, or after 5 s.
pub async fn http_get(addr: SocketAddr, path: &str) -> Result<(u16, String)> {
    let exchange = async {
        let mut tcp = tokio::net::TcpStream::connect(addr).await?;
        tcp.write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes()).await?;
        let mut raw = Vec::new();
        tcp.read_to_end(&mut raw).await?;
        anyhow::Ok(String::from_utf8_lossy(&raw).into_owned())
    };
    let raw = tokio::time::timeout(Duration::from_secs(5), exchange).await.context("GET timed out")??;
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    Ok((status, body.to_owned()))
}

/// The value of the series `name{labels}` exactly as exported (labels in export order).
#[must_use]
pub fn metric_series(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.split_whitespace().next()?.parse().ok())
}

/// The sum of every series of `name` whose labels contain all of `labels` (`key="value"`).
#[must_use]
pub fn metric_sum(text: &str, name: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let rest = l.strip_prefix(name)?;
            let (labels_text, value) = match rest.strip_prefix('{') {
                Some(r) => r.split_once("} ")?,
                None => ("", rest.strip_prefix(' ')?),
            };
            labels.iter().all(|want| labels_text.split(',').any(|l| l == *want)).then_some(value)
        })
        .filter_map(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "# TYPE a counter\n\
        a_total{verb=\"filter\",outcome=\"ok\"} 3\n\
        a_total{verb=\"bind\",outcome=\"ok\"} 2\n\
        a_total{verb=\"bind\",outcome=\"error\"} 1\n\
        b 7\n";

    #[test]
    fn sums_series_by_label_subset() {
        assert_eq!(metric_sum(TEXT, "a_total", &[]), 6.0);
        assert_eq!(metric_sum(TEXT, "a_total", &["verb=\"bind\""]), 3.0);
        assert_eq!(metric_sum(TEXT, "a_total", &["verb=\"bind\"", "outcome=\"ok\""]), 2.0);
        assert_eq!(metric_sum(TEXT, "b", &[]), 7.0);
        assert_eq!(metric_sum(TEXT, "missing", &[]), 0.0);
        assert_eq!(metric_series(TEXT, "a_total{verb=\"filter\",outcome=\"ok\"}"), Some(3.0));
    }
}
