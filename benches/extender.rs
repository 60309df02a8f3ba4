//! Extender hot paths (criterion; means): filter and prioritize for the pending third member of
//! a group (quorum guard, required zone and node spread, unbound local claim) at 100 / 1,000 /
//! 5,000 candidate nodes, with 5,000 nodes and 150,000 realistic pods cached (see
//! `stowage_fixtures::realistic`):
//! - `service`: the verbs called directly with decoded arguments;
//! - `http`: the whole server-side path through the axum router: content-type check, body
//!   decode, the verb, response encode and body collection.
//!
//! Run: `cargo bench --bench extender` (under `cargo test` it runs once on a small cluster).
#![allow(missing_docs)]

use std::{hint::black_box, time::Duration};

use axum::body::Body;
use criterion::{BatchSize, BenchmarkId, Criterion, criterion_group, criterion_main};
use http::{Request, header};
use stowage_fixtures::realistic::ClusterShape;
use stowage_loadgen::{cluster, report::is_bench_run};
use stowage_scheduler::{extender::v1::ExtenderArgs, router};
use tower::ServiceExt as _;

fn shape() -> ClusterShape {
    if is_bench_run() { ClusterShape::new(5_000, 30) } else { ClusterShape::new(300, 5) }
}

fn benches(c: &mut Criterion) {
    let shape = shape();
    let ext = cluster::extender(&shape);
    let pod = shape.pending_member();
    let names = shape.node_names();
    let app = router(ext.clone());
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let args = |n: usize| ExtenderArgs { pod: Some(pod.clone()), nodes: None, node_names: Some(names[..n].to_vec()) };
    // Criterion wants distinct ids: a small smoke cluster caps several sizes to the same count.
    let mut sizes: Vec<usize> = [100usize, 1_000, 5_000].iter().map(|&n| n.min(shape.nodes)).collect();
    sizes.dedup();

    let mut g = c.benchmark_group("extender/service");
    for &n in &sizes {
        g.bench_with_input(BenchmarkId::new("filter", n), &n, |b, &n| {
            b.iter_batched(|| args(n), |a| black_box(rt.block_on(ext.filter(a))), BatchSize::SmallInput);
        });
        g.bench_with_input(BenchmarkId::new("prioritize", n), &n, |b, &n| {
            b.iter_batched(|| args(n), |a| black_box(ext.prioritize(a)), BatchSize::SmallInput);
        });
    }
    g.finish();

    let mut g = c.benchmark_group("extender/http");
    for &n in &sizes {
        let body = bytes::Bytes::from(serde_json::to_vec(&args(n)).expect("encodable args"));
        for verb in ["filter", "prioritize"] {
            g.bench_with_input(BenchmarkId::new(verb, n), &n, |b, _| {
                b.iter(|| {
                    let request = Request::post(format!("/scheduler/{verb}"))
                        .header(header::CONTENT_TYPE, "application/json")
                        .body(Body::from(body.clone()))
                        .expect("request");
                    rt.block_on(async {
                        let response = app.clone().oneshot(request).await.expect("infallible router");
                        assert!(response.status().is_success());
                        black_box(axum::body::to_bytes(response.into_body(), usize::MAX).await.expect("body"))
                    })
                });
            });
        }
    }
    g.finish();
}

criterion_group! {
    name = extender;
    config = Criterion::default().sample_size(30).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(4));
    targets = benches
}
criterion_main!(extender);
