//! Peak memory of a real `stowage serve` fed the amplification inputs of the security review,
//! next to the memory limits of the shipped manifests:
//!
//! - **extender** (the scheduler pod's sidecar, limit 512 MiB): `filter` for a pod carrying as
//!   many unknown `stowage.io/<x>` annotation keys as fit the apiserver's 256 KiB limit on a
//!   pod's annotations (keys and values counted together), a different pod name each call, for
//!   more calls than the decision log keeps (256); then `GET /debug/decisions` with no limit,
//!   as JSON and as text.
//! - **webhook** (limit 256 MiB): an AdmissionReview of about 7 MB (under the 7 MiB body limit)
//!   whose pod has 300,000 unknown `stowage.io/` keys, from 1 connection, then (a fresh
//!   process) from 4 connections at once, several rounds each.
//!
//! Reported: the stowage process's RSS when ready and its peak (`VmHWM`) after the inputs,
//! answer sizes and statuses. The server runs as a separate process on loopback.
//!
//! Run: `cargo bench --bench amplification` (release build), or with the debug build
//! `cargo test --bench amplification -- --bench`. Knobs: `STOWAGE_BENCH_FILTER_CALLS` (default
//! 400), `STOWAGE_BENCH_REVIEW_ROUNDS` (per connection, default 3), `STOWAGE_BENCH_PARTS`
//! (`extender`, `webhook` or both, the default).
//! Results: `target/bench-results/amplification.{json,md}`.
#![allow(missing_docs)]

mod common;

use std::{path::Path, sync::Arc};

use serde_json::{Map, Value, json};
use stowage_fixtures::realistic::ClusterShape;
use stowage_loadgen::{
    client::{self, Target},
    fixtures::{self, UidTemplate},
    report::{self, Table, is_bench_run},
};
use stowage_testkit::free_ports;
use tokio::{io::AsyncReadExt as _, io::AsyncWriteExt as _, time::Instant};

use common::{addr, build_profile, mib};

/// The apiserver's limit on a pod's annotations: keys and values, in bytes, together.
const ANNOTATION_LIMIT: usize = 256 * 1024;
/// The webhook's default body limit (`--webhook-max-body-bytes`).
const WEBHOOK_BODY_LIMIT: usize = 7 * 1024 * 1024;
const REVIEW_KEYS: usize = 300_000;
/// Memory limits of the shipped Deployments (manifests/base).
const EXTENDER_LIMIT_MIB: u64 = 512;
const WEBHOOK_LIMIT_MIB: u64 = 256;

fn env_num(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn base36(mut n: usize) -> String {
    let digits = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = Vec::new();
    loop {
        out.push(digits[n % 36]);
        n /= 36;
        if n == 0 {
            break;
        }
    }
    out.reverse();
    String::from_utf8(out).unwrap_or_default()
}

fn annotations(pod: &mut Value) -> &mut Map<String, Value> {
    let meta = pod["metadata"].as_object_mut().expect("pod metadata");
    meta.entry("annotations").or_insert_with(|| json!({})).as_object_mut().expect("annotations")
}

/// Adds unknown `stowage.io/` keys (empty values) until the annotations reach the apiserver's
/// limit; returns how many.
fn fill_to_the_annotation_limit(pod: &mut Value) -> usize {
    let map = annotations(pod);
    let mut used: usize = map.iter().map(|(k, v)| k.len() + v.as_str().map_or(0, str::len)).sum();
    let mut added = 0;
    loop {
        let key = format!("stowage.io/{}", base36(added));
        if used + key.len() > ANNOTATION_LIMIT {
            return added;
        }
        used += key.len();
        map.insert(key, json!(""));
        added += 1;
    }
}

/// `GET path` (plain HTTP, connection closed after); the status line and the body's length.
async fn get(at: std::net::SocketAddr, path: &str) -> anyhow::Result<(String, usize)> {
    let mut tcp = tokio::net::TcpStream::connect(at).await?;
    tcp.write_all(format!("GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").as_bytes()).await?;
    let mut answer = Vec::new();
    tcp.read_to_end(&mut answer).await?;
    let head_end = answer.windows(4).position(|w| w == b"\r\n\r\n").map_or(answer.len(), |p| p + 4);
    let status = String::from_utf8_lossy(&answer[..answer.iter().position(|b| *b == b'\r').unwrap_or(0)]).into_owned();
    Ok((status, answer.len() - head_end))
}

struct Part {
    name: &'static str,
    input: String,
    answers: String,
    ready_kib: u64,
    peak_kib: u64,
    limit_mib: u64,
    raw: Value,
}

async fn extender(dir: &Path) -> anyhow::Result<Part> {
    let shape = ClusterShape::new(100, 10);
    let ports = free_ports(2)?;
    let server = common::extender(dir, &shape, [ports[0], ports[1]])?;
    server.wait_ready(addr(ports[1])).await?;
    let ready_kib = server.rss_kib().0;

    let mut pod = serde_json::to_value(shape.pending_member())?;
    let keys = fill_to_the_annotation_limit(&mut pod);
    let nodes = shape.node_names();
    let calls = env_num("STOWAGE_BENCH_FILTER_CALLS", 400);
    let target = Target::plain(addr(ports[0]), "/scheduler/filter");
    let mut sender = client::connect(&target).await?;
    let (mut max_reply, mut statuses, mut body_len) = (0, std::collections::BTreeMap::<u16, u64>::new(), 0);
    let started = Instant::now();
    for i in 0..calls {
        pod["metadata"]["name"] = json!(format!("amplified-{i}"));
        pod["metadata"]["uid"] = json!(fixtures::uid_for(i as u64));
        let body = fixtures::extender_args(&pod, &nodes);
        body_len = body.len();
        let (status, reply) = client::post(&mut sender, &target, body).await?;
        *statuses.entry(status.as_u16()).or_default() += 1;
        max_reply = max_reply.max(reply.len());
    }
    let filter_seconds = started.elapsed().as_secs_f64();
    let after_filters = server.rss_kib().1;
    let (json_status, json_len) = get(addr(ports[0]), "/debug/decisions?limit=1000000").await?;
    let (text_status, text_len) = get(addr(ports[0]), "/debug/decisions?limit=1000000&format=text").await?;
    let peak_kib = server.rss_kib().1;
    server.process.stop();
    eprintln!(
        "extender: {calls} filters with {keys} keys ({body_len} B), replies ≤ {max_reply} B {statuses:?}; decisions {json_len} B ({json_status}), text {text_len} B ({text_status}); peak {peak_kib} KiB"
    );
    Ok(Part {
        name: "extender",
        input: format!(
            "{calls} filter calls, pod with {keys} unknown keys ({} KiB of annotations, request {} KiB), {} nodes; then GET /debug/decisions (JSON and text)",
            ANNOTATION_LIMIT / 1024,
            body_len / 1024,
            nodes.len()
        ),
        answers: format!(
            "filter: {statuses:?}, largest reply {max_reply} B; /debug/decisions: {json_len} B JSON, {text_len} B text"
        ),
        ready_kib,
        peak_kib,
        limit_mib: EXTENDER_LIMIT_MIB,
        raw: json!({"calls": calls, "keys": keys, "request_bytes": body_len, "statuses": statuses,
                    "max_reply_bytes": max_reply, "filter_seconds": filter_seconds,
                    "hwm_after_filters_kib": after_filters, "decisions_json_bytes": json_len,
                    "decisions_text_bytes": text_len, "ready_kib": ready_kib, "peak_kib": peak_kib}),
    })
}

/// The fixture pod with `REVIEW_KEYS` unknown keys, values padded so the review is about 7 MB.
fn amplifying_review_pod() -> Value {
    let mut pod = fixtures::small_pod();
    let map = annotations(&mut pod);
    for i in 0..REVIEW_KEYS {
        map.insert(format!("stowage.io/{}", base36(i)), json!(""));
    }
    let bare = serde_json::to_vec(&fixtures::review(&pod, &fixtures::uid_for(0))).map_or(0, |b| b.len());
    let pad = 7_000_000_usize.saturating_sub(bare) / REVIEW_KEYS;
    for value in annotations(&mut pod).values_mut().filter(|v| v.as_str() == Some("")) {
        *value = json!("v".repeat(pad));
    }
    pod
}

async fn webhook(dir: &Path, connections: usize) -> anyhow::Result<Part> {
    let (tls, ca) = common::tls_dir(dir)?;
    let ports = free_ports(2)?;
    let server = common::webhook(dir, &tls, [ports[0], ports[1]])?;
    server.wait_ready(addr(ports[1])).await?;
    let ready_kib = server.rss_kib().0;
    let template = Arc::new(UidTemplate::new(&amplifying_review_pod()));
    let review_len = template.body(0).len();
    anyhow::ensure!(review_len < WEBHOOK_BODY_LIMIT, "the review ({review_len} B) is above the body limit");
    let rounds = env_num("STOWAGE_BENCH_REVIEW_ROUNDS", 3);
    let target = Target::tls(addr(ports[0]), "/mutate", &ca)?;
    let started = Instant::now();
    let tasks: Vec<_> = (0..connections)
        .map(|c| {
            let (target, template) = (target.clone(), Arc::clone(&template));
            tokio::spawn(async move {
                let mut out = Vec::new();
                let mut sender = client::connect(&target).await?;
                for r in 0..rounds {
                    let sent = Instant::now();
                    let (status, reply) =
                        client::post(&mut sender, &target, template.body((c * rounds + r) as u64)).await?;
                    out.push((status.as_u16(), reply.len(), sent.elapsed()));
                }
                anyhow::Ok(out)
            })
        })
        .collect();
    let mut answers = Vec::new();
    for t in tasks {
        answers.extend(t.await??);
    }
    let seconds = started.elapsed().as_secs_f64();
    let peak_kib = server.rss_kib().1;
    server.process.stop();
    let mut statuses = std::collections::BTreeMap::<u16, u64>::new();
    for (s, _, _) in &answers {
        *statuses.entry(*s).or_default() += 1;
    }
    let max_reply = answers.iter().map(|a| a.1).max().unwrap_or(0);
    let max_latency = answers.iter().map(|a| a.2).max().unwrap_or_default();
    eprintln!(
        "webhook: {} reviews of {review_len} B, {statuses:?}, replies ≤ {max_reply} B, slowest {max_latency:?}; peak {peak_kib} KiB",
        answers.len()
    );
    Ok(Part {
        name: "webhook",
        input: format!(
            "{} reviews of {:.1} MB ({REVIEW_KEYS} unknown keys), {connections} connection(s) at once, {rounds} each",
            answers.len(),
            review_len as f64 / 1e6
        ),
        answers: format!("{statuses:?}, largest answer {max_reply} B, slowest {:.2} s", max_latency.as_secs_f64()),
        ready_kib,
        peak_kib,
        limit_mib: WEBHOOK_LIMIT_MIB,
        raw: json!({"reviews": answers.len(), "review_bytes": review_len, "statuses": statuses,
                    "max_reply_bytes": max_reply, "max_latency_seconds": max_latency.as_secs_f64(),
                    "seconds": seconds, "ready_kib": ready_kib, "peak_kib": peak_kib}),
    })
}

fn main() -> anyhow::Result<()> {
    if !is_bench_run() {
        println!("amplification: skipped (a benchmark: run it with `cargo bench --bench amplification`)");
        return Ok(());
    }
    tokio::runtime::Runtime::new()?.block_on(async {
        let tmp = tempfile::tempdir()?;
        let which = std::env::var("STOWAGE_BENCH_PARTS").unwrap_or_else(|_| "extender,webhook".to_owned());
        let mut parts = Vec::new();
        if which.contains("extender") {
            parts.push(extender(tmp.path()).await?);
        }
        if which.contains("webhook") {
            // One connection first (the body alone), then four at once, each on a fresh process.
            for connections in [1, 4] {
                let dir = tmp.path().join(format!("webhook-{connections}"));
                std::fs::create_dir_all(&dir)?;
                parts.push(webhook(&dir, connections).await?);
            }
        }
        let mut table = Table::new(&[
            "server",
            "input",
            "answers",
            "RSS ready MiB",
            "peak RSS MiB",
            "manifest limit MiB",
            "peak / limit",
        ]);
        for p in &parts {
            table.row(vec![
                p.name.to_owned(),
                p.input.clone(),
                p.answers.clone(),
                mib(p.ready_kib),
                mib(p.peak_kib),
                p.limit_mib.to_string(),
                format!("{:.0} %", p.peak_kib as f64 / 1024.0 / p.limit_mib as f64 * 100.0),
            ]);
        }
        let markdown =
            format!("{}\n\nstowage build: {}.\n\n{}\n", report::machine_line(), build_profile(), table.render());
        let raw = Value::Array(parts.iter().map(|p| json!({"server": p.name, "results": p.raw})).collect());
        report::write("amplification", &raw, &markdown)?;
        anyhow::Ok(())
    })
}
