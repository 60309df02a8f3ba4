//! Stowage server processes for the benches that measure a real `stowage serve`: started from
//! the binary cargo built with the bench (so a `cargo bench` run measures the release build and
//! `cargo test --bench X -- --bench` the debug build), ready when `/readyz` answers, with the
//! memory of the stowage process itself (not of the supervising shell).

#![allow(dead_code, reason = "each bench that includes this module uses only part of it")]

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::Context as _;
use stowage_certs::{GenerateOptions, generate_to_dir};
use stowage_fixtures::realistic::{CONFIG as EXTENDER_CONFIG, ClusterShape};
use stowage_loadgen::report;
use stowage_testkit::{Supervised, poll_until};

/// The stowage binary built with this bench.
pub fn stowage_bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_stowage"))
}

/// The build profile of the stowage binary, for the result tables.
pub fn build_profile() -> &'static str {
    if cfg!(debug_assertions) { "debug" } else { "release" }
}

/// `127.0.0.1:port`.
pub fn addr(port: u16) -> SocketAddr {
    ([127, 0, 0, 1], port).into()
}

/// A running server process: a `stowage serve`, or another program a bench measures beside it.
pub struct Server {
    pub label: &'static str,
    pub process: Supervised,
}

impl Server {
    /// Starts `stowage <args>` with `RUST_LOG=warn`, logging into `dir`.
    pub fn spawn(label: &'static str, dir: &Path, args: &[String]) -> anyhow::Result<Self> {
        Self::spawn_program(label, dir, stowage_bin(), args)
    }

    /// Starts `program <args>` with `RUST_LOG=warn`, logging into `dir` (the file named after
    /// `label`).
    pub fn spawn_program(label: &'static str, dir: &Path, program: &Path, args: &[String]) -> anyhow::Result<Self> {
        let mut all = vec!["RUST_LOG=warn".to_owned(), program.display().to_string()];
        all.extend_from_slice(args);
        let log = dir.join(format!("{}.log", label.replace([' ', ','], "-")));
        Ok(Self { label, process: Supervised::spawn(label, Path::new("env"), &all, &log)? })
    }

    /// Waits until `GET /readyz` on the plain-HTTP admin address answers 200.
    pub async fn wait_ready(&self, admin: SocketAddr) -> anyhow::Result<()> {
        self.wait_until(admin, Some("/readyz")).await
    }

    /// Waits until `at` accepts a TCP connection.
    pub async fn wait_accepting(&self, at: SocketAddr) -> anyhow::Result<()> {
        self.wait_until(at, None).await
    }

    /// Waits until `GET path` on `at` answers 200, or only until `at` accepts when `path` is
    /// `None`; fails with the log's tail if the process exits first.
    async fn wait_until(&self, at: SocketAddr, path: Option<&str>) -> anyhow::Result<()> {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        poll_until(self.label, Duration::from_secs(300), Duration::from_millis(100), || async {
            if let Some(status) = self.process.exit_status() {
                anyhow::bail!("{} exited with {status}:\n{}", self.label, self.process.log_tail(30));
            }
            let Ok(mut tcp) = tokio::net::TcpStream::connect(at).await else { return Ok(None) };
            let Some(path) = path else { return Ok(Some(())) };
            tcp.write_all(format!("GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").as_bytes()).await?;
            let mut answer = String::new();
            tcp.read_to_string(&mut answer).await?;
            Ok(answer.starts_with("HTTP/1.1 200").then_some(()))
        })
        .await
    }

    /// `VmRSS` and `VmHWM` of the stowage process, in KiB.
    pub fn rss_kib(&self) -> (u64, u64) {
        report::descendant_named(self.process.pid(), "stowage").map_or((0, 0), report::process_rss_kib)
    }
}

/// A fresh CA and serving certificate for `127.0.0.1` in `dir/tls`; returns the directory and
/// the CA's PEM.
pub fn tls_dir(dir: &Path) -> anyhow::Result<(PathBuf, Vec<u8>)> {
    let tls = dir.join("tls");
    generate_to_dir(&GenerateOptions::default(), &tls).context("serving certificate")?;
    let ca = std::fs::read(tls.join("ca.crt"))?;
    Ok((tls, ca))
}

/// The arguments of `stowage serve --components <component>` with the snapshot and config
/// given, listening on `ports` (the component's and the admin's, both on loopback), the admin
/// API unauthenticated and no shutdown delay; `tls` is the serving certificate's directory, for
/// the webhook.
pub fn serve_args(component: &str, snapshot: &Path, config: &Path, tls: Option<&Path>, ports: [u16; 2]) -> Vec<String> {
    let mut args = vec![
        "serve".to_owned(),
        format!("--components={component}"),
        format!("--snapshot={}", snapshot.display()),
        format!("--config={}", config.display()),
    ];
    args.extend(tls.map(|tls| format!("--tls-dir={}", tls.display())));
    args.extend([
        format!("--{component}-addr={}", addr(ports[0])),
        format!("--admin-addr={}", addr(ports[1])),
        "--admin-auth=none".to_owned(),
        "--shutdown-delay=0s".to_owned(),
    ]);
    args
}

/// `stowage serve --components webhook` over TLS with the bundled example config and a
/// snapshot holding the fixture pod's StatefulSet; `ports` are the webhook's and the admin's.
pub fn webhook(dir: &Path, tls: &Path, ports: [u16; 2]) -> anyhow::Result<Server> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    // The member count of the fixture's StatefulSet, as a snapshot (no cluster needed).
    let members = dir.join("members.yaml");
    std::fs::write(
        &members,
        "apiVersion: apps/v1\nkind: StatefulSet\nmetadata: {name: pg-main, namespace: db}\n\
         spec: {replicas: 3, serviceName: pg-main, selector: {}, template: {spec: {containers: []}}}\n",
    )?;
    let config = root.join("examples/config.yaml");
    Server::spawn("stowage webhook", dir, &serve_args("webhook", &members, &config, Some(tls), ports))
}

/// `stowage serve --components extender` over plain HTTP with the realistic fixtures' config
/// and `shape`'s generated cluster as the snapshot (both written into `dir`); `ports` are the
/// extender's and the admin's.
pub fn extender(dir: &Path, shape: &ClusterShape, ports: [u16; 2]) -> anyhow::Result<Server> {
    let snapshot = dir.join("cluster.yaml");
    std::fs::write(&snapshot, shape.snapshot_yaml())?;
    let config = dir.join("extender-config.yaml");
    std::fs::write(&config, EXTENDER_CONFIG)?;
    Server::spawn("stowage extender", dir, &serve_args("extender", &snapshot, &config, None, ports))
}

/// KiB as MiB with one decimal.
pub fn mib(kib: u64) -> String {
    format!("{:.1}", kib as f64 / 1024.0)
}
