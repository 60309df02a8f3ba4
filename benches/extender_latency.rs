//! Server-side latency distributions of the extender verbs (target: filter and prioritize each
//! p99 ≤ 1 ms at 5,000 candidate nodes with 150,000 pods cached).
//!
//! For each verb and candidate count, thousands of sequential calls are timed one by one into an
//! HdrHistogram, at two levels: `service` (the verb with decoded arguments) and `http` (the
//! axum router in process: decode, verb, encode, body collected). The baseline, measured in the
//! same run, is the empty extender router (same axum stack, fixed answer) fed the same bodies.
//!
//! Run: `cargo bench --bench extender_latency` (`STOWAGE_BENCH_ITERATIONS`, default 3000;
//! `STOWAGE_BENCH_NODES`, default 5000, with 30 pods per node, for smaller runs such as
//! profiling under callgrind).
//! Results: `target/bench-results/extender_latency.{json,md}`.
#![allow(missing_docs)]

use std::{hint::black_box, time::Instant};

use axum::{Router, body::Body};
use hdrhistogram::Histogram;
use http::{Request, header};
use serde_json::{Value, json};
use stowage_fixtures::realistic::ClusterShape;
use stowage_loadgen::{
    client::latency_histogram,
    cluster, empty,
    report::{self, Table, is_bench_run, ms},
};
use stowage_scheduler::{extender::v1::ExtenderArgs, router};
use tower::ServiceExt as _;

fn micros(start: Instant) -> u64 {
    u64::try_from(start.elapsed().as_micros()).unwrap_or(u64::MAX).max(1)
}

async fn call(app: &Router, verb: &str, body: &bytes::Bytes) -> usize {
    let request = Request::post(format!("/scheduler/{verb}"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.clone()))
        .expect("request");
    let response = app.clone().oneshot(request).await.expect("infallible router");
    assert!(response.status().is_success(), "{verb}: {}", response.status());
    axum::body::to_bytes(response.into_body(), usize::MAX).await.expect("body").len()
}

fn main() {
    if !is_bench_run() {
        println!("extender_latency: skipped (a benchmark: run it with `cargo bench --bench extender_latency`)");
        return;
    }
    let iterations: usize =
        std::env::var("STOWAGE_BENCH_ITERATIONS").ok().and_then(|v| v.parse().ok()).unwrap_or(3_000);
    let nodes: usize = std::env::var("STOWAGE_BENCH_NODES").ok().and_then(|v| v.parse().ok()).unwrap_or(5_000);
    let shape = ClusterShape::new(nodes, 30);
    let started = Instant::now();
    let ext = cluster::extender(&shape);
    let (rss, _) = report::rss_kib();
    eprintln!(
        "cache: {} nodes, {} pods fed in {:.1}s; RSS {} MiB",
        shape.nodes,
        shape.pod_count(),
        started.elapsed().as_secs_f64(),
        rss / 1024
    );
    let pod = shape.pending_member();
    let names = shape.node_names();
    let app = router(ext.clone());
    let baseline = empty::extender_router();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let args = |n: usize| ExtenderArgs { pod: Some(pod.clone()), nodes: None, node_names: Some(names[..n].to_vec()) };

    let mut rows: Vec<Value> = Vec::new();
    let mut table =
        Table::new(&["verb", "nodes", "level", "p50 ms", "p90 ms", "p99 ms", "p99.9 ms", "max ms", "calls"]);
    let mut add = |verb: &str, n: usize, level: &str, h: &Histogram<u64>| {
        let p = report::percentiles(h);
        table.row(vec![
            verb.to_owned(),
            n.to_string(),
            level.to_owned(),
            ms(h.value_at_quantile(0.5)),
            ms(h.value_at_quantile(0.9)),
            ms(h.value_at_quantile(0.99)),
            ms(h.value_at_quantile(0.999)),
            ms(h.max()),
            h.len().to_string(),
        ]);
        rows.push(json!({"verb": verb, "nodes": n, "level": level, "latency": p}));
    };
    for n in [100usize, 1_000, 5_000].into_iter().filter(|n| *n <= nodes) {
        let body = bytes::Bytes::from(serde_json::to_vec(&args(n)).expect("encodable args"));
        for verb in ["filter", "prioritize"] {
            // Service level: argument decoding excluded (cloned before the clock starts).
            let mut h = latency_histogram();
            for _ in 0..iterations {
                let a = args(n);
                let start = Instant::now();
                match verb {
                    "filter" => {
                        black_box(rt.block_on(ext.filter(a)));
                    }
                    _ => {
                        black_box(ext.prioritize(a));
                    }
                }
                h.saturating_record(micros(start));
            }
            add(verb, n, "service", &h);
            for (level, router) in [("http", &app), ("http, empty handler (baseline)", &baseline)] {
                let mut h = latency_histogram();
                for _ in 0..iterations {
                    let start = Instant::now();
                    black_box(rt.block_on(call(router, verb, &body)));
                    h.saturating_record(micros(start));
                }
                add(verb, n, level, &h);
            }
        }
    }
    let markdown = format!(
        "### Extender server-side latency ({} nodes, {} pods cached; {iterations} sequential calls per row)\n\n{}\n{}\n",
        shape.nodes,
        shape.pod_count(),
        table.render(),
        report::machine_line()
    );
    let raw = json!({"nodes": shape.nodes, "pods": shape.pod_count(), "iterations": iterations, "rows": rows});
    report::write("extender_latency", &raw, &markdown).expect("writing results");
}
