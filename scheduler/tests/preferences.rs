//! Preferences that must move placement against kube-scheduler's own scores: noisy neighbours
//! count by what they can take, and scores are normalised over the candidates so that a
//! preference survives the extender's 0..10 scale.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use common::*;
use k8s_openapi::api::core::v1::Pod;
use stowage_fixtures::PodBuilder;
use stowage_scheduler::snapshot::Snapshot;

const PLAIN: &str = "profiles:\n  pg: {zoneSpread: off, nodeSpread: off}\n";

fn unlimited(name: &str, node: &str) -> Pod {
    // Burstable without limits: a small request, may take the whole node.
    PodBuilder::new("apps", name).node(node).requests("100m", "128Mi").build()
}

fn best_effort(name: &str, node: &str) -> Pod {
    PodBuilder::new("apps", name).node(node).build()
}

fn daemon(name: &str, node: &str) -> Pod {
    let mut p = unlimited(name, node);
    p.metadata.owner_references = Some(vec![k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference {
        api_version: "apps/v1".into(),
        kind: "DaemonSet".into(),
        name: "kube-proxy".into(),
        uid: "ds".into(),
        controller: Some(true),
        ..Default::default()
    }]);
    p
}

/// a1 runs a well-behaved Guaranteed pod (1 core, 4Gi); a2 only a limit-less pod with a
/// 100m request. By requests a2 is emptier, but its neighbour may take every core.
#[tokio::test]
async fn a_quiet_node_beats_a_noisy_emptier_one() {
    let snap = Snapshot {
        nodes: six_nodes(),
        pods: vec![
            PodBuilder::new("apps", "steady").node("a1").guaranteed("1", "4Gi").build(),
            unlimited("noisy", "a2"),
        ],
        ..Snapshot::default()
    };
    let w = world(PLAIN, snap);
    let pod = PodBuilder::new("db", "solo").annotate("stowage.io/profile", "pg").guaranteed("1", "2Gi").build();
    let scores = w.prioritize(&pod, &["a1", "a2"]);
    let (a1, a2) = (scores[0].score, scores[1].score);
    assert_eq!(a1, 10, "the best candidate gets 10: {scores:?}");
    assert!(a1 - a2 >= 2, "the quiet node must win by more than rounding: {scores:?}");
}

/// Combined scores close together (the 91 vs 86) still differ on the wire.
#[tokio::test]
async fn close_combined_scores_stay_apart_on_the_wire() {
    let snap = Snapshot {
        nodes: six_nodes(),
        pods: vec![PodBuilder::new("apps", "web").node("a2").guaranteed("500m", "1Gi").build()],
        ..Snapshot::default()
    };
    let w = world(PLAIN, snap);
    // Combined 93 on a1 and 87 on a2: both were round(x/10) = 9.
    let pod = PodBuilder::new("db", "solo").annotate("stowage.io/profile", "pg").guaranteed("500m", "1Gi").build();
    let _ = w.prioritize(&pod, &["a1", "a2"]);
    let d = &w.ext.decisions().recent(Some("db/solo"), 1)[0];
    let line = |n: &str| d.nodes.iter().find(|l| l.node == n).unwrap().clone();
    let (a1, a2) = (line("a1"), line("a2"));
    assert!(a1.combined > a2.combined && a1.combined - a2.combined < 10, "{a1:?} {a2:?}");
    assert!(a1.score > a2.score, "normalised over the candidates: {a1:?} {a2:?}");
}

/// `neighbours: avoid-unlimited`: nodes with a BestEffort or limit-less pod are refused; node
/// agents (DaemonSet pods such as kube-proxy run on every node) do not count.
#[tokio::test]
async fn avoid_unlimited_refuses_nodes_with_limit_less_neighbours() {
    let snap = Snapshot {
        nodes: six_nodes(),
        pods: vec![
            unlimited("burstable", "a1"),
            best_effort("be", "a2"),
            daemon("kube-proxy-b2", "b2"),
            PodBuilder::new("apps", "steady").node("c1").guaranteed("1", "1Gi").build(),
        ],
        ..Snapshot::default()
    };
    let w = world("profiles:\n  pg: {zoneSpread: off, nodeSpread: off, neighbours: avoid-unlimited}\n", snap);
    let pod = PodBuilder::new("db", "solo").annotate("stowage.io/profile", "pg").guaranteed("1", "2Gi").build();
    let r = w.filter(&pod, &ALL).await;
    assert_eq!(r.node_names.unwrap(), ["b1", "b2", "c1", "c2"]);
    for n in ["a1", "a2"] {
        assert_eq!(
            r.failed_nodes.get(n),
            Some("node(s) ran a pod without cpu or memory limits (neighbours: avoid-unlimited)"),
            "{n}"
        );
    }
    // Without the rule every node passes.
    let w = world(PLAIN, Snapshot { nodes: six_nodes(), pods: vec![best_effort("be", "a2")], ..Snapshot::default() });
    assert_eq!(w.filter(&pod, &ALL).await.node_names.unwrap().len(), 6);
}
