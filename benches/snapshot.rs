//! Snapshot loading (criterion; means), as `stowage serve --snapshot` and `stowage explain` do it:
//! `Snapshot::from_yaml` (multi-document YAML of realistic full objects, as `kubectl get -o
//! yaml` prints them), `Snapshot::from_json` (the same objects as one `List`, as `kubectl get -o
//! json` prints them) and `ClusterCache::from_snapshot` (trimming and indexing), at 100, 300 and
//! 1,000 nodes with 30 pods each.
//!
//! Run: `cargo bench --bench snapshot`.
#![allow(missing_docs)]

use std::{hint::black_box, time::Duration};

use criterion::{BenchmarkId, Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use stowage_fixtures::realistic::{CONFIG, ClusterShape};
use stowage_loadgen::report::is_bench_run;
use stowage_policy::Config;
use stowage_scheduler::{ClusterCache, snapshot::Snapshot};

fn benches(c: &mut Criterion) {
    let config = Config::from_yaml(CONFIG).expect("bench config");
    let sizes: &[usize] = if is_bench_run() { &[100, 300, 1_000] } else { &[10] };
    let mut g = c.benchmark_group("snapshot");
    g.sampling_mode(SamplingMode::Flat);
    for &nodes in sizes {
        let shape = ClusterShape::new(nodes, 30);
        let yaml = shape.snapshot_yaml();
        let id = format!("{nodes}n_{}p", shape.pod_count());
        g.throughput(Throughput::Bytes(yaml.len() as u64));
        g.bench_with_input(BenchmarkId::new("from_yaml", &id), &yaml, |b, yaml| {
            b.iter(|| black_box(Snapshot::from_yaml(yaml).expect("valid snapshot")));
        });
        let json = shape.snapshot_json();
        g.throughput(Throughput::Bytes(json.len() as u64));
        g.bench_with_input(BenchmarkId::new("from_json", &id), &json, |b, json| {
            b.iter(|| black_box(Snapshot::from_json(json).expect("valid snapshot")));
        });
        let snapshot = Snapshot::from_yaml(&yaml).expect("valid snapshot");
        g.throughput(Throughput::Elements(snapshot.len() as u64));
        g.bench_with_input(BenchmarkId::new("cache_from_snapshot", &id), &snapshot, |b, snapshot| {
            b.iter(|| black_box(ClusterCache::from_snapshot(snapshot, &config)));
        });
    }
    g.finish();
}

criterion_group! {
    name = snapshot;
    config = Criterion::default().sample_size(10).warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(5));
    targets = benches
}
criterion_main!(snapshot);
