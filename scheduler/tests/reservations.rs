//! Cross-pod rules under concurrency: kube-scheduler's binding cycle (PreBind waits for the
//! volume binder, then our `bind`) runs seconds behind the next pod's `filter`. For a pod under
//! a cross-pod rule, filter decides the node and reserves it at once; every later filter counts
//! the reservation like a bound pod, until the pod's bind confirms it, the pod is seen bound or
//! deleted, its bind fails, its own retry replaces it, or it lapses.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::time::Duration;

use common::*;
use k8s_openapi::api::core::v1::Pod;
use stowage_fixtures::{PodBuilder, local_pv, pvc, statefulset, storage_class};
use stowage_scheduler::{binder::BindError, snapshot::Snapshot};

fn base() -> Snapshot {
    Snapshot {
        nodes: six_nodes(),
        stateful_sets: vec![statefulset("db", "pg", 3, &["data"])],
        storage_classes: vec![storage_class("local", "kubernetes.io/no-provisioner", true)],
        ..Snapshot::default()
    }
}

/// What kube-scheduler does with a filter reply: with one feasible node it skips prioritize and
/// takes that node; otherwise the highest extender score wins (ties by name here).
async fn decide(w: &World, pod: &Pod, nodes: &[&str]) -> Option<String> {
    let f = w.filter(pod, nodes).await;
    assert!(f.error.is_empty(), "{}", f.error);
    let feasible = f.node_names.unwrap();
    match feasible.len() {
        0 => None,
        1 => Some(feasible[0].clone()),
        _ => {
            let names: Vec<&str> = feasible.iter().map(String::as_str).collect();
            let mut scores = w.prioritize(pod, &names);
            scores.sort_by(|a, b| b.score.cmp(&a.score).then_with(|| a.host.cmp(&b.host)));
            Some(scores[0].host.clone())
        }
    }
}

const DENSITY: &str =
    "profiles:\n  small: {density: {class: shared, maxPerNode: 1}, zoneSpread: off, nodeSpread: off}\n";
const DENSITY_TWO_PROFILES: &str =
    "profiles:\n  p1: {density: {class: db, maxPerNode: 1}}\n  p2: {density: {class: db, maxPerNode: 1}}\n";
const PRIMARIES: &str = "profiles:\n  pg: {separatePrimaries: true, zoneSpread: off, nodeSpread: off}\n";
const SIBLING_VOLUMES: &str = "profiles:\n  pg: {localData: require, zoneSpread: off, nodeSpread: off, quorum: off, weights: {localData: 1, zoneSpread: 0, contention: 0}}\n";

fn with_claim_snapshot() -> Snapshot {
    let mut snap = base();
    // Room for both members' volumes on every node: only sibling avoidance keeps them apart.
    for n in ["a1", "a2", "b1", "b2", "c1", "c2"] {
        snap.persistent_volumes.push(local_pv(&format!("pv-{n}-0"), n, "local", "100Gi"));
        snap.persistent_volumes.push(local_pv(&format!("pv-{n}-1"), n, "local", "100Gi"));
    }
    snap.persistent_volume_claims =
        vec![pvc("db", "data-pg-0", "local", "100Gi", None), pvc("db", "data-pg-1", "local", "100Gi", None)];
    snap
}

/// Two pods filtered back to back, neither bound yet (PreBind still waiting): they must not end
/// up where the rule forbids, and the second filter must not wait for the first bind.
#[tokio::test(start_paused = true)]
async fn two_pods_under_a_cross_pod_rule_filtered_back_to_back_get_different_nodes() {
    struct Case {
        name: &'static str,
        config: &'static str,
        snap: fn() -> Snapshot,
        first: fn() -> Pod,
        second: fn() -> Pod,
        different_zones: bool,
    }
    let cases = [
        Case {
            name: "one density class (maxPerNode 1), two groups",
            config: DENSITY,
            snap: base,
            first: || PodBuilder::new("db", "x-0").member("small", "x").guaranteed("1", "2Gi").build(),
            second: || PodBuilder::new("db", "y-0").member("small", "y").guaranteed("1", "2Gi").build(),
            different_zones: false,
        },
        Case {
            name: "one density class shared by two profiles",
            config: DENSITY_TWO_PROFILES,
            snap: base,
            first: || PodBuilder::new("db", "x-0").member("p1", "x").guaranteed("1", "2Gi").build(),
            second: || PodBuilder::new("db", "y-0").member("p2", "y").guaranteed("1", "2Gi").build(),
            different_zones: false,
        },
        Case {
            name: "primaries of two groups, separatePrimaries",
            config: PRIMARIES,
            snap: base,
            first: || PodBuilder::new("db", "x-0").member("pg", "x").annotate("stowage.io/role", "primary").build(),
            second: || PodBuilder::new("db", "y-0").member("pg", "y").annotate("stowage.io/role", "primary").build(),
            different_zones: false,
        },
        Case {
            name: "members of one group under the quorum guard and required spread",
            config: PG_CONFIG,
            snap: base,
            first: || member(0).build(),
            second: || member(1).build(),
            different_zones: true,
        },
        Case {
            name: "sibling volumes (local-data: require), WaitForFirstConsumer local PVs",
            config: SIBLING_VOLUMES,
            snap: with_claim_snapshot,
            first: || member(0).claim("data-pg-0").build(),
            second: || member(1).claim("data-pg-1").build(),
            different_zones: false,
        },
    ];
    for c in cases {
        let w = world(c.config, (c.snap)());
        let started = tokio::time::Instant::now();
        let a = decide(&w, &(c.first)(), &ALL).await.unwrap_or_else(|| panic!("{}: first pod placed", c.name));
        let b = decide(&w, &(c.second)(), &ALL).await.unwrap_or_else(|| panic!("{}: second pod placed", c.name));
        assert_eq!(started.elapsed(), Duration::ZERO, "{}: nobody waits for a bind", c.name);
        assert_ne!(a, b, "{}: both on one node", c.name);
        if c.different_zones {
            assert_ne!(zone_of(&a), zone_of(&b), "{}: {a} and {b} in one zone", c.name);
        }
        // The binds arrive seconds later, in any order, and succeed.
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(w.bind(&(c.second)(), &b).await, "", "{}", c.name);
        assert_eq!(w.bind(&(c.first)(), &a).await, "", "{}", c.name);
    }
}

/// Three members of a quorum-guarded group created together (podManagementPolicy: Parallel):
/// one per zone without any bind in between.
#[tokio::test(start_paused = true)]
async fn a_parallel_burst_of_three_members_lands_in_three_zones_before_any_bind() {
    let w = world(PG_CONFIG, base());
    let mut zones = Vec::new();
    for i in 0..3 {
        let node = decide(&w, &member(i).build(), &ALL).await.expect("a node");
        zones.push(zone_of(&node).to_owned());
    }
    zones.sort();
    assert_eq!(zones, ["a", "b", "c"]);
}

/// A filter of a density-capped pod x-0 reserved a1; what then happens decides whether y-0 may
/// use a1.
#[tokio::test(start_paused = true)]
async fn a_reservation_lives_exactly_as_long_as_its_pods_cycle() {
    #[derive(Clone, Copy, Debug)]
    enum Then {
        Nothing,
        RetrySamePod,
        BindSucceeds,
        BindFails,
        SeenBoundElsewhere,
        Deleted,
        TtlPasses,
        RetryFindsNoNode,
    }
    // (what happens to x-0, may y-0 use a1 afterwards, may x-0 itself use a1)
    let cases = [
        (Then::Nothing, false),
        (Then::RetrySamePod, false),
        (Then::BindSucceeds, false),
        (Then::BindFails, true),
        (Then::SeenBoundElsewhere, true),
        (Then::Deleted, true),
        (Then::TtlPasses, true),
        (Then::RetryFindsNoNode, true),
    ];
    let x = || PodBuilder::new("db", "x-0").member("small", "x").guaranteed("1", "2Gi").build();
    let y = || PodBuilder::new("db", "y-0").member("small", "y").guaranteed("1", "2Gi").build();
    for (then, y_may_use_a1) in cases {
        let w = world(DENSITY, base());
        let r = w.filter(&x(), &["a1", "a2"]).await;
        assert_eq!(r.node_names.unwrap(), ["a1"], "{then:?}: x-0 gets one node, the first of two equal ones");
        assert_eq!(
            r.failed_nodes.get("a2"),
            Some("node(s) were not the node stowage reserved for the pod"),
            "{then:?}"
        );
        match then {
            Then::Nothing => {}
            Then::RetrySamePod => {
                // The scheduler retries x-0 (say its PreBind failed): its own reservation must not
                // block it, and the retry's reservation replaces the first.
                let r = w.filter(&x(), &["a1"]).await;
                assert_eq!(r.node_names.unwrap(), ["a1"], "x-0 is not blocked by itself");
                assert_eq!(w.cache.ledger().len(), 1, "one entry per pod");
            }
            Then::BindSucceeds => {
                tokio::time::advance(Duration::from_secs(3)).await;
                assert_eq!(w.bind(&x(), "a1").await, "");
            }
            Then::BindFails => {
                w.binder.add_pod("db", "x-0", "uid-db-x-0", None);
                w.binder.fail_next(BindError::Transport("connection reset".into()));
                assert!(!w.bind(&x(), "a1").await.is_empty());
            }
            Then::SeenBoundElsewhere => {
                w.watch(PodBuilder::new("db", "x-0").member("small", "x").guaranteed("1", "2Gi").node("b1").build());
            }
            Then::Deleted => {
                w.cache.applier::<Pod>().apply(kube::runtime::watcher::Event::Delete(x()));
            }
            Then::TtlPasses => tokio::time::advance(Duration::from_secs(61)).await,
            Then::RetryFindsNoNode => {
                // Only a node x-0 cannot use (it holds another pod of the class).
                w.watch(PodBuilder::new("db", "z-0").member("small", "z").node("c1").build());
                let r = w.filter(&x(), &["c1"]).await;
                assert_eq!(r.node_names.unwrap(), Vec::<String>::new());
            }
        }
        let r = w.filter(&y(), &["a1"]).await;
        let feasible = r.node_names.unwrap();
        assert_eq!(feasible.len() == 1, y_may_use_a1, "{then:?}: y-0 on a1: {feasible:?} {:?}", r.failed_nodes);
        if !y_may_use_a1 {
            assert_eq!(
                r.failed_nodes.get("a1"),
                Some("node(s) reached the density cap of the pod's class"),
                "{then:?}"
            );
        }
        if matches!(then, Then::SeenBoundElsewhere) {
            // The cache now counts x-0 on b1.
            assert_eq!(w.filter(&y(), &["b1"]).await.node_names.unwrap(), Vec::<String>::new());
        }
    }
}

/// The decision says which node was reserved, and why it is the only one returned.
#[tokio::test(start_paused = true)]
async fn the_decision_names_the_reserved_node() {
    let w = world(DENSITY, base());
    let pod = PodBuilder::new("db", "x-0").member("small", "x").guaranteed("1", "2Gi").build();
    let r = w.filter(&pod, &ALL).await;
    assert_eq!(r.node_names.unwrap(), ["a1"]);
    assert_eq!(r.failed_nodes.len(), 5);
    let d = &w.ext.decisions().recent(Some("db/x-0"), 1)[0];
    assert_eq!(d.outcome, "reserved");
    assert_eq!(d.nodes_out, 1);
    assert!(d.detail.iter().any(|l| l.starts_with("reserved node a1")), "{:?}", d.detail);
    assert_eq!(d.nodes[0].node, "a1", "the chosen node first");
    assert!(d.nodes[0].feasible && d.nodes[0].combined > 0);
    // Pods under no cross-pod rule keep every feasible node.
    let plain = PodBuilder::new("db", "solo").annotate("stowage.io/profile", "small").build();
    let w = world("profiles:\n  small: {zoneSpread: preferred}\n", base());
    assert_eq!(w.filter(&plain, &ALL).await.node_names.unwrap().len(), 6);
}
