//! Webhook hot paths (criterion; means), on a small pod (the StatefulSet pod of the webhook's
//! own fixture) and a large one (8 containers and 3 init containers with 40 env vars each, 30
//! tolerations, a big affinity), with the bundled example config (profile `postgres`):
//! - `plan`: the mutation planner alone (policy resolved beforehand);
//! - `admit`: the whole decision on a decoded request (metadata and spec checks, policy, plan);
//! - `http`: the `/mutate` route in process: body read, decode, decide, encode;
//! - `http_empty`: the same request through the empty baseline handler (same axum stack).
//!
//! Run: `cargo bench --bench webhook`.
#![allow(missing_docs)]

use std::{hint::black_box, sync::Arc, time::Duration};

use arc_swap::ArcSwap;
use axum::{Router, body::Body};
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use http::{Request, header};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::Deserialize as _;
use serde_json::Value;
use stowage_loadgen::{
    empty,
    fixtures::{self, UidTemplate},
};
use stowage_policy::Config;
use stowage_webhook::{AdmissionMetrics, AdmitContext, StaticMembers, WebhookState, admit, decode_request, plan};
use tower::ServiceExt as _;

const EXAMPLE_CONFIG: &str = include_str!("../examples/config.yaml");

async fn post(app: &Router, body: bytes::Bytes) -> bytes::Bytes {
    let request = Request::post("/mutate").header(header::CONTENT_TYPE, "application/json").body(Body::from(body));
    let response = app.clone().oneshot(request.expect("request")).await.expect("infallible router");
    assert!(response.status().is_success());
    axum::body::to_bytes(response.into_body(), usize::MAX).await.expect("body")
}

fn benches(c: &mut Criterion) {
    let config = Config::from_yaml(EXAMPLE_CONFIG).expect("example config");
    let members = StaticMembers::default().with("db", "pg-main", 3).with("db", "big-db", 3);
    let state = Arc::new(
        WebhookState::new(Arc::new(ArcSwap::from_pointee(config.clone())), AdmissionMetrics::new())
            .with_members(Arc::new(members.clone())),
    );
    state.set_ready(true);
    let app = stowage_webhook::router(state);
    let baseline = empty::webhook_router();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let ctx = AdmitContext::new(&config).members(&members);

    let mut g = c.benchmark_group("webhook");
    for (size, pod) in [("small", fixtures::small_pod()), ("large", fixtures::large_pod())] {
        let mut meta = ObjectMeta::deserialize(&pod["metadata"]).expect("metadata");
        meta.namespace.get_or_insert_with(|| "db".to_owned());
        let policy = stowage_policy::resolve(&meta, &config).expect("valid policy").expect("opted in");
        let planned = plan(&pod, &policy, &config, Some(3)).expect("plan");
        assert!(!planned.patch.0.is_empty(), "the {size} pod is mutated");
        g.bench_with_input(BenchmarkId::new("plan", size), &pod, |b, pod: &Value| {
            b.iter(|| black_box(plan(pod, &policy, &config, Some(3))));
        });
        let template = UidTemplate::new(&pod);
        let body = template.body(1);
        let request = decode_request(&body).expect("decodable review");
        g.bench_with_input(BenchmarkId::new("admit", size), &request, |b, request| {
            b.iter(|| black_box(admit(request, &ctx)));
        });
        g.bench_with_input(BenchmarkId::new("http", size), &body, |b, body| {
            b.iter(|| black_box(rt.block_on(post(&app, body.clone()))));
        });
        g.bench_with_input(BenchmarkId::new("http_empty", size), &body, |b, body| {
            b.iter(|| black_box(rt.block_on(post(&baseline, body.clone()))));
        });
    }
    g.finish();
}

criterion_group! {
    name = webhook;
    config = Criterion::default().sample_size(50).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    targets = benches
}
criterion_main!(webhook);
