//! The cost of one recovery round at scale (criterion; means): what the leader does every
//! `--recovery-interval` — take the caches' objects (shared `Arc`s, keeping the opted-in pods),
//! then `stowage_recovery::round::round` (node and group facts, the rebuilds in flight, every
//! member decided, every group audited) and the `/debug/recovery` view — over a generated cluster of 5,000 nodes in 3 zones, 150,000 pods
//! of which 30,000 are members of 10,000 three-member StatefulSet groups on local volumes, with
//! 50 nodes dead (so members are held, reported and audited as unsafe).
//!
//! Run: `cargo bench -p stowage-recovery --bench round` (under `cargo test` it runs one small
//! iteration only).
#![allow(missing_docs)]

use std::{collections::BTreeMap, hint::black_box, sync::Arc, time::Duration};

use criterion::{Criterion, criterion_group, criterion_main};
use k8s_openapi::jiff::Timestamp;
use serde_json::json;
use stowage_policy::Config;
use stowage_recovery::{
    Decision,
    audit::audit,
    debug::Round,
    facts::{Lists, NODE_LEASE_NAMESPACE, group_facts, node_facts},
    round::round,
};

struct Shape {
    nodes: usize,
    pods: usize,
    groups: usize,
    dead: usize,
}

fn from<T: serde::de::DeserializeOwned>(v: serde_json::Value) -> Arc<T> {
    Arc::new(serde_json::from_value(v).expect("valid object"))
}

const ZONES: [&str; 3] = ["a", "b", "c"];

/// The caches as the controller holds them (`Arc`s of trimmed objects).
fn generate(shape: &Shape) -> Lists {
    let old = "2026-01-01T00:00:00Z";
    let node_name = |i: usize| format!("node-{i:05}");
    let mut c = Lists::default();
    for i in 0..shape.nodes {
        let name = node_name(i);
        let dead = i < shape.dead;
        c.nodes.push(from(json!({
            "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name,
                "topology.kubernetes.io/zone": ZONES[i % 3]}},
            "status": {"conditions": [{"type": "Ready", "status": if dead { "Unknown" } else { "True" },
                "lastTransitionTime": old}]}
        })));
        c.leases.push(from(json!({
            "metadata": {"name": name, "namespace": NODE_LEASE_NAMESPACE},
            "spec": {"holderIdentity": name, "renewTime": if dead { old } else { "2026-01-01T00:59:59.000000Z" }}
        })));
    }
    // Member m of group g sits on node (3g + m) mod nodes: one member per zone.
    for g in 0..shape.groups {
        let ns = format!("tenant-{}", g % 500);
        let sts = format!("db-{g}");
        c.statefulsets.push(from(json!({
            "metadata": {"name": sts, "namespace": ns},
            "spec": {"replicas": 3, "selector": {}, "serviceName": sts, "template": {}}
        })));
        for m in 0..3 {
            let pod = format!("{sts}-{m}");
            let claim = format!("data-{pod}");
            let volume = format!("pv-{g}-{m}");
            let node = node_name((3 * g + m) % shape.nodes);
            c.pods.push(from(json!({
                "metadata": {"name": pod, "namespace": ns, "uid": format!("uid-{pod}"),
                    "annotations": {"stowage.io/profile": "pg"},
                    "ownerReferences": [{"apiVersion": "apps/v1", "kind": "StatefulSet", "name": sts,
                        "uid": "s", "controller": true}]},
                "spec": {"nodeName": node, "containers": [],
                    "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": claim}}]},
                "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}
            })));
            c.claims.push(from(json!({
                "metadata": {"name": claim, "namespace": ns, "uid": format!("uid-{claim}")},
                "spec": {"volumeName": volume}
            })));
            c.volumes.push(from(json!({
                "metadata": {"name": volume},
                "spec": {"capacity": {"storage": "10Gi"}, "local": {"path": "/mnt/disk"},
                    "claimRef": {"namespace": ns, "name": claim},
                    "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                        {"key": "kubernetes.io/hostname", "operator": "In", "values": [node]}]}]}}}
            })));
        }
    }
    // Everything else: not opted in, trimmed as the controller trims pods.
    for i in c.pods.len()..shape.pods {
        c.pods.push(from(json!({
            "metadata": {"name": format!("app-{i}"), "namespace": format!("apps-{}", i % 1000),
                "uid": format!("uid-app-{i}"), "labels": {"app": "web", "pod-template-hash": "abc123"},
                "annotations": {"kubectl.kubernetes.io/restartedAt": old}},
            "spec": {"nodeName": node_name(i % shape.nodes), "containers": []},
            "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}
        })));
    }
    c
}

/// What the controller takes from its stores every round: their `Arc`s (as
/// `reflector::Store::state` hands them out), keeping the opted-in pods.
fn take_from_caches(caches: &Lists) -> Lists {
    Lists::for_round(
        caches.nodes.clone(),
        caches.leases.clone(),
        caches.pods.clone(),
        caches.claims.clone(),
        caches.volumes.clone(),
        caches.statefulsets.clone(),
    )
}

/// What the controller does with its stores every round: [`take_from_caches`], runs [`round`]
/// and builds the `/debug/recovery` view; without the API writes.
fn leader_round(caches: &Lists, cfg: &Config, now: Timestamp) -> (usize, Round) {
    let plan = round(&take_from_caches(caches).objects(), cfg, Vec::new(), 1, now);
    let acting = plan.decisions.iter().filter(|d| !matches!(d.decision, Decision::Nothing)).count();
    (acting, Round::new(now.to_string(), 0, &plan.audits, BTreeMap::new(), Vec::new()))
}

fn benches(c: &mut Criterion) {
    let full = std::env::args().any(|a| a == "--bench");
    let shape = if full {
        Shape { nodes: 5_000, pods: 150_000, groups: 10_000, dead: 50 }
    } else {
        Shape { nodes: 30, pods: 300, groups: 20, dead: 1 }
    };
    let cfg = Config::from_yaml("profiles: {pg: {recovery: {mode: report, after: 1m}}}").expect("config");
    let cluster = generate(&shape);
    let now: Timestamp = "2026-01-01T01:00:00Z".parse().expect("time");
    let (acting, view) = leader_round(&cluster, &cfg, now);
    assert!(acting > 0, "dead nodes strand members");
    assert!(view.states["not_node_safe"] > 0, "{:?}", view.states);
    let mut g = c.benchmark_group("recovery_round");
    g.sample_size(10).measurement_time(Duration::from_secs(if full { 20 } else { 1 }));
    let id = format!("{}n_{}p_{}g", shape.nodes, shape.pods, shape.groups);
    g.bench_function(format!("full/{id}"), |b| b.iter(|| black_box(leader_round(&cluster, &cfg, now))));
    // The parts, to see where the time goes.
    g.bench_function(format!("take_from_caches/{id}"), |b| b.iter(|| black_box(take_from_caches(&cluster))));
    let taken = take_from_caches(&cluster);
    let objects = taken.objects();
    g.bench_function(format!("group_facts/{id}"), |b| b.iter(|| black_box(group_facts(&objects, &cfg))));
    let groups = group_facts(&objects, &cfg);
    let facts = node_facts(&taken.nodes, &taken.leases, &cfg);
    g.bench_function(format!("audit/{id}"), |b| b.iter(|| black_box(audit(&groups, &facts))));
    g.finish();
}

criterion_group!(round_benches, benches);
criterion_main!(round_benches);
