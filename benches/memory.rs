//! Resident memory of the cluster cache (target: ≤ 256 MiB RSS with 5,000 nodes and 150,000
//! pods), side by side with kube-runtime `reflector::Store`s holding the same untrimmed objects
//! (the baseline that motivated trimming).
//!
//! Each (size, cache) pair runs in a fresh child process (this binary, re-executed), so sizes
//! and caches never share a heap. The child reads `VmRSS` from `/proc/self/status`, feeds nodes,
//! pods, PVs, PVCs, StorageClasses and StatefulSets of a realistic synthetic cluster (full objects
//! with managedFields, env, probes, volumes, status; see `stowage_fixtures::realistic`)
//! one object at a time through the same path as the watchers (`watcher::Event`s: `Init`,
//! `InitApply`…, `InitDone`), then reads `VmRSS` and the peak `VmHWM` again. The generator never
//! holds more than one full object.
//!
//! Run: `cargo bench --bench memory`. Results: `target/bench-results/memory.{json,md}`.
#![allow(missing_docs)]

use std::{process::Command, time::Instant};

use k8s_openapi::api::{
    apps::v1::StatefulSet,
    core::v1::{Node, PersistentVolume, PersistentVolumeClaim, Pod},
    storage::v1::StorageClass,
};
use kube::runtime::{reflector, watcher::Event};
use serde_json::{Value, json};
use stowage_fixtures::realistic::{CONFIG, ClusterShape};
use stowage_loadgen::{
    cluster,
    report::{self, Table, is_bench_run},
};
use stowage_policy::Config;
use stowage_scheduler::ClusterCache;

const ROLE_ENV: &str = "STOWAGE_BENCH_MEMORY_CHILD";
const PODS_PER_NODE: usize = 30;
const SIZES: [usize; 4] = [500, 1_000, 2_500, 5_000];
const CACHES: [&str; 2] = ["stowage cache (trimmed)", "reflector::Store (full objects)"];

/// Lists every object of one kind into a reflector store, as `reflector()` does.
fn reflect<K>(objects: impl Iterator<Item = K>) -> reflector::Store<K>
where
    K: kube::Resource<DynamicType = ()> + Clone + 'static,
{
    let (reader, mut writer) = reflector::store::<K>();
    writer.apply_watcher_event(&Event::Init);
    for o in objects {
        writer.apply_watcher_event(&Event::InitApply(o));
    }
    writer.apply_watcher_event(&Event::InitDone);
    reader
}

fn child(cache: usize, nodes: usize) {
    let shape = ClusterShape::new(nodes, PODS_PER_NODE);
    let (before, _) = report::rss_kib();
    let started = Instant::now();
    let objects;
    let keep: Box<dyn std::any::Any> = if cache == 0 {
        let config = Config::from_yaml(CONFIG).expect("bench config");
        let cache = ClusterCache::new(&config);
        cluster::feed(&shape, &cache);
        objects = cache.status().iter().map(|s| s.objects).sum::<usize>();
        Box::new(cache)
    } else {
        let stores = (
            reflect::<Node>(shape.nodes()),
            reflect::<Pod>(shape.pods()),
            reflect::<PersistentVolume>(shape.persistent_volumes()),
            reflect::<PersistentVolumeClaim>(shape.persistent_volume_claims()),
            reflect::<StorageClass>(shape.storage_classes().into_iter()),
            reflect::<StatefulSet>(shape.stateful_sets()),
        );
        objects = stores.0.len() + stores.1.len() + stores.2.len() + stores.3.len() + stores.4.len() + stores.5.len();
        Box::new(stores)
    };
    let seconds = started.elapsed().as_secs_f64();
    let (after, peak) = report::rss_kib();
    let line = json!({"cache": CACHES[cache], "nodes": nodes, "pods": shape.pod_count(), "objects": objects,
                      "rss_before_kib": before, "rss_after_kib": after, "peak_kib": peak, "fill_seconds": seconds});
    println!("RESULT {line}");
    drop(keep);
}

fn mib(kib: u64) -> String {
    format!("{:.1}", kib as f64 / 1024.0)
}

fn main() {
    if let Ok(role) = std::env::var(ROLE_ENV) {
        let (cache, nodes) = role.split_once(':').expect("cache:nodes");
        child(cache.parse().expect("cache index"), nodes.parse().expect("node count"));
        return;
    }
    if !is_bench_run() {
        println!("memory: skipped (a benchmark: run it with `cargo bench --bench memory`)");
        return;
    }
    let exe = std::env::current_exe().expect("own path");
    let mut results: Vec<Value> = Vec::new();
    for nodes in SIZES {
        for cache in 0..CACHES.len() {
            let out = Command::new(&exe).env(ROLE_ENV, format!("{cache}:{nodes}")).output().expect("child process");
            let stdout = String::from_utf8_lossy(&out.stdout);
            let line = stdout.lines().find_map(|l| l.strip_prefix("RESULT ")).unwrap_or_else(|| {
                panic!("child {cache}:{nodes} failed: {}\n{}", out.status, String::from_utf8_lossy(&out.stderr))
            });
            let v: Value = serde_json::from_str(line).expect("child result");
            eprintln!("{v}");
            results.push(v);
        }
    }
    let mut table = Table::new(&[
        "nodes",
        "pods",
        "stowage cache RSS MiB (peak)",
        "reflector stores RSS MiB (peak)",
        "ratio stowage / reflector",
        "target ≤ 256 MiB",
    ]);
    for nodes in SIZES {
        let of = |c: usize| results.iter().find(|r| r["nodes"] == nodes && r["cache"] == CACHES[c]);
        let (Some(ours), Some(base)) = (of(0), of(1)) else { continue };
        let rss = |r: &Value| r["rss_after_kib"].as_u64().unwrap_or(0);
        let peak = |r: &Value| r["peak_kib"].as_u64().unwrap_or(0);
        table.row(vec![
            nodes.to_string(),
            ours["pods"].to_string(),
            format!("{} ({})", mib(rss(ours)), mib(peak(ours))),
            format!("{} ({})", mib(rss(base)), mib(peak(base))),
            format!("{:.3}", rss(ours) as f64 / rss(base).max(1) as f64),
            if rss(ours) <= 256 * 1024 { "met".into() } else { "MISSED".into() },
        ]);
    }
    let markdown = format!(
        "### Cache memory (whole-process VmRSS after the list, fresh process per row; {PODS_PER_NODE} pods per node)\n\n{}\n\
         RSS includes the process baseline (about {} MiB before filling). {}\n",
        table.render(),
        results.first().and_then(|r| r["rss_before_kib"].as_u64()).map_or_else(String::new, mib),
        report::machine_line()
    );
    report::write("memory", &json!(results), &markdown).expect("writing results");
}
