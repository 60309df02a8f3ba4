//! Extender hot-path benchmarks: filter and prioritize at 100 / 1,000 / 5,000 candidate nodes
//! with 150,000 pods cached (5,000 nodes × 30 pods; one opted-in member of a 3-member group
//! with a bound local PV per node, the rest ordinary pods; available local PVs on every 10th
//! node). The pod under test is the pending third member of a group with the quorum guard,
//! required zone and node spread, and an unbound WaitForFirstConsumer local claim.
//!
//! Run: `cargo bench -p stowage-scheduler --bench extender -- --quick`.
#![allow(missing_docs, clippy::unwrap_used)]

use std::{hint::black_box, sync::Arc, time::Duration};

use arc_swap::ArcSwap;
use criterion::{BatchSize, BenchmarkId, Criterion, criterion_group, criterion_main};
use k8s_openapi::api::{
    apps::v1::StatefulSet,
    core::v1::{Node, PersistentVolume, PersistentVolumeClaim, Pod},
    storage::v1::{CSIStorageCapacity, StorageClass},
};
use kube::runtime::watcher::Event;
use stowage_policy::Config;
use stowage_scheduler::{
    ClusterCache, Extender, FakeBinder, NoopEvents, Options,
    cache::Cached,
    extender::v1::ExtenderArgs,
    metrics::Metrics,
    testing::{PodBuilder, bound_local_pv, local_pv, node, pvc, statefulset, storage_class},
};

const NODES: usize = 5_000;
const PODS_PER_NODE: usize = 30;

const CONFIG: &str = "profiles:\n  pg: {quorum: zone, zoneSpread: required, nodeSpread: required, localData: prefer}\n";

fn list<K: Cached>(cache: &ClusterCache, objs: impl Iterator<Item = K>) {
    let mut a = cache.applier::<K>();
    a.apply(Event::Init);
    for o in objs {
        a.apply(Event::InitApply(o));
    }
    a.apply(Event::InitDone);
}

fn rss_mib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse::<u64>().ok().map(|kib| kib / 1024)
}

fn build() -> (Arc<Extender>, Pod, Vec<String>) {
    let config = Config::from_yaml(CONFIG).unwrap();
    let cache = Arc::new(ClusterCache::new(&config));
    let before = rss_mib();
    let name = |i: usize| format!("node-{i:05}");
    list::<Node>(&cache, (0..NODES).map(|i| node(&name(i), Some(&format!("zone-{}", i % 3)), "64", "256Gi")));
    list::<StorageClass>(&cache, std::iter::once(storage_class("local", "kubernetes.io/no-provisioner", true)));
    list::<CSIStorageCapacity>(&cache, std::iter::empty());
    list::<StatefulSet>(
        &cache,
        (0..NODES / 3).map(|g| statefulset("db", &format!("g{g}"), 3, &["data"])).chain(std::iter::once(statefulset(
            "db",
            "bench",
            3,
            &["data"],
        ))),
    );
    list::<PersistentVolume>(
        &cache,
        (0..NODES)
            .map(|i| {
                let (g, m) = (i / 3, i % 3);
                bound_local_pv(&format!("pv-{i}"), &name(i), "local", "500Gi", "db", &format!("data-g{g}-{m}"))
            })
            .chain((0..NODES).step_by(10).map(|i| local_pv(&format!("free-{i}"), &name(i), "local", "500Gi"))),
    );
    list::<PersistentVolumeClaim>(
        &cache,
        (0..NODES)
            .map(|i| {
                let (g, m) = (i / 3, i % 3);
                pvc("db", &format!("data-g{g}-{m}"), "local", "100Gi", Some(&format!("pv-{i}")))
            })
            .chain(std::iter::once(pvc("db", "data-bench-2", "local", "100Gi", None))),
    );
    let pods = (0..NODES).flat_map(|i| {
        let n = name(i);
        (0..PODS_PER_NODE).map(move |k| {
            if k == 0 {
                let (g, m) = (i / 3, i % 3);
                PodBuilder::new("db", &format!("g{g}-{m}"))
                    .annotate("stowage.io/profile", "pg")
                    .owned_by_statefulset(&format!("g{g}"))
                    .claim(&format!("data-g{g}-{m}"))
                    .guaranteed("4", "16Gi")
                    .node(&n)
                    .ready()
                    .build()
            } else {
                let b = PodBuilder::new(&format!("ns-{}", i % 50), &format!("app-{i}-{k}")).node(&n);
                match k % 10 {
                    0 => b.build(),
                    1..=3 => b.requests("100m", "256Mi").build(),
                    _ => b.guaranteed("200m", "512Mi").build(),
                }
            }
        })
    });
    let bench_members = [0usize, 1].into_iter().map(|m| {
        PodBuilder::new("db", &format!("bench-{m}"))
            .annotate("stowage.io/profile", "pg")
            .owned_by_statefulset("bench")
            .guaranteed("4", "16Gi")
            .node(&name(m))
            .ready()
            .build()
    });
    list::<Pod>(&cache, pods.chain(bench_members));
    let after = rss_mib();
    eprintln!(
        "cache: {} nodes, {} pods; RSS before {:?} MiB, after {:?} MiB",
        cache.read().count(stowage_scheduler::cache::Kind::Node),
        cache.read().count(stowage_scheduler::cache::Kind::Pod),
        before,
        after
    );
    let pod = PodBuilder::new("db", "bench-2")
        .annotate("stowage.io/profile", "pg")
        .owned_by_statefulset("bench")
        .claim("data-bench-2")
        .guaranteed("4", "16Gi")
        .build();
    let ext = Arc::new(Extender::with_metrics(
        cache,
        Arc::new(ArcSwap::from_pointee(config)),
        Arc::new(FakeBinder::default()),
        Arc::new(NoopEvents),
        Metrics::unregistered(),
        Options::default(),
    ));
    (ext, pod, (0..NODES).map(name).collect())
}

fn benches(c: &mut Criterion) {
    let (ext, pod, names) = build();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let args = |n: usize| ExtenderArgs { pod: Some(pod.clone()), nodes: None, node_names: Some(names[..n].to_vec()) };
    let mut g = c.benchmark_group("extender");
    for n in [100usize, 1_000, 5_000] {
        g.bench_with_input(BenchmarkId::new("filter", n), &n, |b, &n| {
            b.iter_batched(|| args(n), |a| black_box(rt.block_on(ext.filter(a))), BatchSize::SmallInput);
        });
        g.bench_with_input(BenchmarkId::new("prioritize", n), &n, |b, &n| {
            b.iter_batched(|| args(n), |a| black_box(ext.prioritize(a)), BatchSize::SmallInput);
        });
    }
    // The whole server-side path at 5,000 nodes: decode the JSON body, filter, encode.
    let body = serde_json::to_vec(&args(NODES)).unwrap();
    g.bench_function("filter_json_roundtrip/5000", |b| {
        b.iter(|| {
            let a: ExtenderArgs = serde_json::from_slice(black_box(&body)).unwrap();
            let r = rt.block_on(ext.filter(a));
            black_box(serde_json::to_vec(&r).unwrap())
        });
    });
    g.bench_function("prioritize_json_roundtrip/5000", |b| {
        b.iter(|| {
            let a: ExtenderArgs = serde_json::from_slice(black_box(&body)).unwrap();
            black_box(serde_json::to_vec(&ext.prioritize(a)).unwrap())
        });
    });
    g.finish();
    let feasible = rt.block_on(ext.filter(args(NODES))).node_names.map_or(0, |n| n.len());
    eprintln!("feasible nodes at {NODES}: {feasible}");
}

criterion_group! {
    name = extender;
    config = Criterion::default().sample_size(20).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    targets = benches
}
criterion_main!(extender);
