//! HTTP load against real server processes, each next to an empty handler on the same stack,
//! measured in the same run (targets: webhook ≥ 10,000 reviews/s over TLS keep-alive on 2 cores
//! with p99 ≤ 2 ms; extender answers well inside its latency budget).
//!
//! - **webhook**: `stowage serve --components webhook` (TLS, the bundled example config) versus
//!   an empty `/mutate` on `stowage_edge::serve_tls` + axum, with the StatefulSet pod of the
//!   webhook's fixture; every answer must be 200, echo its request's uid, allow and carry a
//!   patch (the empty handler's fixed answer is only checked for 200).
//! - **extender**: `stowage serve --components extender --snapshot` (plain HTTP, as deployed on
//!   loopback) over a generated snapshot of 1,000 nodes and 30,000 realistic pods, with filter
//!   and prioritize for a pending group member and all 1,000 node names, versus an empty
//!   extender on `serve_plain` + axum; filter answers must carry node names and no error,
//!   prioritize answers one score per node.
//!
//! Client and servers are separate processes (the empty servers are this binary, re-executed),
//! but they share the machine's cores: the tables give the CPU each used.
//!
//! Run: `cargo bench --bench http_load`. Knobs: `STOWAGE_BENCH_DURATION` (seconds measured per
//! row, default 10), `STOWAGE_BENCH_WARMUP` (default 2), `STOWAGE_BENCH_CONNECTIONS` (webhook,
//! default `1,8,32`), `STOWAGE_BENCH_EXTENDER_CONNECTIONS` (default `1,4`).
//! Results: `target/bench-results/http_load.{json,md}`.
#![allow(missing_docs)]

mod common;

use std::{net::SocketAddr, path::PathBuf, sync::Arc, time::Duration};

use bytes::Bytes;
use http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};
use stowage_fixtures::realistic::ClusterShape;
use stowage_loadgen::{
    client::{self, LoadOptions, LoadResult, Target, Workload},
    empty,
    fixtures::{self, UidTemplate},
    report::{self, TICKS_PER_SECOND, Table, is_bench_run, ms},
};
use stowage_testkit::free_ports;
use tokio::net::TcpListener;

use common::{Server, addr};

// === workloads ===

#[derive(Deserialize)]
struct ReviewOut<'a> {
    #[serde(borrow)]
    response: ResponseOut<'a>,
}

#[derive(Deserialize)]
struct ResponseOut<'a> {
    uid: &'a str,
    allowed: bool,
    patch: Option<&'a str>,
}

/// Reviews of one pod with a fresh uid each; answers must echo it, allow and patch.
struct Review {
    template: UidTemplate,
    strict: bool,
}

impl Workload for Review {
    fn body(&self, seq: u64) -> Bytes {
        self.template.body(seq)
    }

    fn verify(&self, seq: u64, status: StatusCode, body: &[u8]) -> Result<(), String> {
        if status != StatusCode::OK {
            return Err(format!("status {status}: {}", excerpt(body)));
        }
        if !self.strict {
            return Ok(());
        }
        let review: ReviewOut<'_> = serde_json::from_slice(body).map_err(|e| format!("not a review: {e}"))?;
        let r = review.response;
        if r.uid != fixtures::uid_for(seq) {
            return Err(format!("uid {} is not the request's {}", r.uid, fixtures::uid_for(seq)));
        }
        if !r.allowed || r.patch.is_none_or(str::is_empty) {
            return Err("not allowed, or no patch".to_owned());
        }
        Ok(())
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct FilterOut<'a> {
    #[serde(borrow)]
    node_names: Option<Vec<&'a str>>,
    error: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct PriorityOut<'a> {
    #[serde(borrow, rename = "Host")]
    _host: &'a str,
    #[serde(rename = "Score")]
    _score: i64,
}

/// The start of an answer, for error messages.
fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let mut end = text.len().min(300);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}

/// The same extender arguments every time; answers are checked per verb.
struct ExtenderCall {
    body: Bytes,
    verb: &'static str,
    nodes: usize,
    strict: bool,
}

impl Workload for ExtenderCall {
    fn body(&self, _seq: u64) -> Bytes {
        self.body.clone()
    }

    fn verify(&self, _seq: u64, status: StatusCode, body: &[u8]) -> Result<(), String> {
        if status != StatusCode::OK {
            return Err(format!("status {status}: {}", excerpt(body)));
        }
        if !self.strict {
            return Ok(());
        }
        if self.verb == "filter" {
            let r: FilterOut<'_> = serde_json::from_slice(body).map_err(|e| format!("not a filter result: {e}"))?;
            if r.error.as_deref().is_some_and(|e| !e.is_empty()) || r.node_names.is_none_or(|n| n.is_empty()) {
                return Err(format!("no feasible node: {}", excerpt(body)));
            }
        } else {
            let r: Vec<PriorityOut<'_>> =
                serde_json::from_slice(body).map_err(|e| format!("not a priority list: {e}"))?;
            if r.len() != self.nodes {
                return Err(format!("{} scores for {} nodes", r.len(), self.nodes));
            }
        }
        Ok(())
    }
}

// === processes ===

fn env_list(name: &str, default: &[usize]) -> Vec<usize> {
    std::env::var(name)
        .ok()
        .map(|v| v.split(',').filter_map(|c| c.trim().parse().ok()).collect())
        .filter(|v: &Vec<usize>| !v.is_empty())
        .unwrap_or_else(|| default.to_vec())
}

fn env_secs(name: &str, default: u64) -> Duration {
    Duration::from_secs(std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default))
}

struct Row {
    group: &'static str,
    server: &'static str,
    connections: usize,
    result: LoadResult,
    client_cpu: f64,
    server_cpu: f64,
}

async fn measure(
    group: &'static str,
    server: &Server,
    target: &Target,
    workload: Arc<dyn Workload>,
    opts: LoadOptions,
) -> anyhow::Result<Row> {
    let pid = server.process.pid();
    let (client0, server0) = (report::cpu_ticks(None).unwrap_or(0), report::tree_cpu_ticks(pid));
    let started = std::time::Instant::now();
    let result = client::run(target, workload, opts).await?;
    let wall = started.elapsed().as_secs_f64();
    let (client1, server1) = (report::cpu_ticks(None).unwrap_or(0), report::tree_cpu_ticks(pid));
    let cpu = |a: u64, b: u64| (b.saturating_sub(a)) as f64 / TICKS_PER_SECOND / wall * 100.0;
    eprintln!(
        "{group} {} x{}: {:.0} req/s, p99 {} ms, errors {} {:?}",
        server.label,
        opts.connections,
        result.rps(),
        ms(result.latency_us.value_at_quantile(0.99)),
        result.errors,
        result.first_errors
    );
    Ok(Row {
        group,
        server: server.label,
        connections: opts.connections,
        client_cpu: cpu(client0, client1),
        server_cpu: cpu(server0, server1),
        result,
    })
}

// === the roles of the re-executed binary ===

fn role(args: &[String]) -> Option<anyhow::Result<()>> {
    let at = args.iter().position(|a| a == "--role")?;
    let what = args.get(at + 1).cloned().unwrap_or_default();
    let addr: SocketAddr = args.get(at + 2).and_then(|a| a.parse().ok())?;
    let tls_dir = args.get(at + 3).map(PathBuf::from);
    let rt = tokio::runtime::Runtime::new().ok()?;
    Some(rt.block_on(async move {
        let listener = TcpListener::bind(addr).await?;
        let forever = std::future::pending::<()>();
        match (what.as_str(), tls_dir) {
            ("empty-webhook", Some(dir)) => empty::serve_webhook(listener, &dir, forever).await,
            ("empty-extender", _) => empty::serve_extender(listener, forever).await,
            _ => anyhow::bail!("unknown role {what:?}"),
        }
    }))
}

// === main ===

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if let Some(done) = role(&args) {
        return done;
    }
    if !is_bench_run() {
        println!("http_load: skipped (a benchmark: run it with `cargo bench --bench http_load`)");
        return Ok(());
    }
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(run())
}

async fn run() -> anyhow::Result<()> {
    let me = std::env::current_exe()?;
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path();
    let warmup = env_secs("STOWAGE_BENCH_WARMUP", 2);
    let duration = env_secs("STOWAGE_BENCH_DURATION", 10);
    let mut rows: Vec<Row> = Vec::new();

    // --- webhook over TLS ---
    let (tls, ca) = common::tls_dir(dir)?;
    let ports = free_ports(4)?;
    let webhook = common::webhook(dir, &tls, [ports[0], ports[1]])?;
    let empty_webhook = Server::spawn_program(
        "empty handler",
        dir,
        &me,
        &["--role".into(), "empty-webhook".into(), addr(ports[2]).to_string(), tls.display().to_string()],
    )?;
    webhook.wait_ready(addr(ports[1])).await?;
    empty_webhook.wait_accepting(addr(ports[2])).await?;
    let template = UidTemplate::new(&fixtures::small_pod());
    for connections in env_list("STOWAGE_BENCH_CONNECTIONS", &[1, 8, 32]) {
        let opts = LoadOptions { connections, warmup, duration };
        for (server, port, strict) in [(&webhook, ports[0], true), (&empty_webhook, ports[2], false)] {
            let target = Target::tls(addr(port), "/mutate", &ca)?;
            let workload = Arc::new(Review { template: template.clone(), strict });
            rows.push(measure("webhook (TLS)", server, &target, workload, opts).await?);
        }
    }
    webhook.process.stop();
    empty_webhook.process.stop();

    // --- extender over plain HTTP ---
    let shape = ClusterShape::new(1_000, 30);
    let ports = free_ports(3)?;
    let extender = common::extender(dir, &shape, [ports[0], ports[1]])?;
    let empty_extender = Server::spawn_program(
        "empty handler",
        dir,
        &me,
        &["--role".into(), "empty-extender".into(), addr(ports[2]).to_string()],
    )?;
    extender.wait_ready(addr(ports[1])).await?;
    empty_extender.wait_accepting(addr(ports[2])).await?;
    let pod = serde_json::to_value(shape.pending_member())?;
    let body = fixtures::extender_args(&pod, &shape.node_names());
    for connections in env_list("STOWAGE_BENCH_EXTENDER_CONNECTIONS", &[1, 4]) {
        let opts = LoadOptions { connections, warmup, duration };
        for verb in ["filter", "prioritize"] {
            let group =
                if verb == "filter" { "extender filter, 1,000 nodes" } else { "extender prioritize, 1,000 nodes" };
            for (server, port, strict) in [(&extender, ports[0], true), (&empty_extender, ports[2], false)] {
                let target = Target::plain(addr(port), &format!("/scheduler/{verb}"));
                let workload = Arc::new(ExtenderCall { body: body.clone(), verb, nodes: shape.nodes, strict });
                rows.push(measure(group, server, &target, workload, opts).await?);
            }
        }
    }
    extender.process.stop();
    empty_extender.process.stop();

    write(&rows, warmup, duration, body.len())
}

fn write(rows: &[Row], warmup: Duration, duration: Duration, extender_body: usize) -> anyhow::Result<()> {
    let mut table = Table::new(&[
        "load",
        "server",
        "conns",
        "req/s",
        "p50 ms",
        "p99 ms",
        "p99.9 ms",
        "max ms",
        "errors",
        "client CPU %",
        "server CPU %",
    ]);
    let mut ratios = Table::new(&["load", "conns", "stowage req/s", "empty req/s", "ratio", "p99 stowage / empty ms"]);
    for r in rows {
        let h = &r.result.latency_us;
        table.row(vec![
            r.group.to_owned(),
            r.server.to_owned(),
            r.connections.to_string(),
            format!("{:.0}", r.result.rps()),
            ms(h.value_at_quantile(0.5)),
            ms(h.value_at_quantile(0.99)),
            ms(h.value_at_quantile(0.999)),
            ms(h.max()),
            r.result.errors.to_string(),
            format!("{:.0}", r.client_cpu),
            format!("{:.0}", r.server_cpu),
        ]);
    }
    for pair in rows.chunks(2) {
        let [ours, base] = pair else { continue };
        ratios.row(vec![
            ours.group.to_owned(),
            ours.connections.to_string(),
            format!("{:.0}", ours.result.rps()),
            format!("{:.0}", base.result.rps()),
            format!("{:.2}", ours.result.rps() / base.result.rps().max(f64::EPSILON)),
            format!(
                "{} / {}",
                ms(ours.result.latency_us.value_at_quantile(0.99)),
                ms(base.result.latency_us.value_at_quantile(0.99))
            ),
        ]);
    }
    let raw: Vec<Value> = rows
        .iter()
        .map(|r| {
            json!({"load": r.group, "server": r.server, "connections": r.connections, "rps": r.result.rps(),
                   "requests": r.result.requests, "errors": r.result.errors, "first_errors": r.result.first_errors,
                   "latency": report::percentiles(&r.result.latency_us), "client_cpu_percent": r.client_cpu,
                   "server_cpu_percent": r.server_cpu})
        })
        .collect();
    let markdown = format!(
        "### HTTP load: stowage next to an empty handler on the same stack ({}s measured after {}s warm-up per row)\n\n\
         {}\n{}\nCPU % is per core (200 % = both cores). Client and servers share the machine's cores. \
         Extender request body: {} bytes. {}\n",
        duration.as_secs(),
        warmup.as_secs(),
        table.render(),
        ratios.render(),
        extender_body,
        report::machine_line()
    );
    report::write("http_load", &json!(raw), &markdown)?;
    Ok(())
}
