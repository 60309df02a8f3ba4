//! Namespace-scoped profiles in the extender (issue 12): a pod counts toward other groups'
//! rules (density caps, separate primaries) only when its profile is allowed in its namespace,
//! so a profile annotation forged in a tenant namespace blocks no database.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use common::*;
use stowage_fixtures::{PodBuilder, statefulset};
use stowage_policy::Config;
use stowage_scheduler::snapshot::Snapshot;

const SCOPED: &str = "profiles:\n  pg: {density: {maxPerNode: 1}, separatePrimaries: true, namespaces: [db]}\n";
const OPEN: &str = "profiles:\n  pg: {density: {maxPerNode: 1}, separatePrimaries: true}\n";

/// A tiny pod in namespace `tenant` on a1 claiming profile `pg` and the primary role.
fn forged() -> Snapshot {
    Snapshot {
        nodes: six_nodes(),
        stateful_sets: vec![statefulset("db", "pg", 3, &[])],
        pods: vec![
            PodBuilder::new("tenant", "squatter")
                .member("pg", "squat")
                .annotate("stowage.io/role", "primary")
                .requests("1m", "1Mi")
                .node("a1")
                .build(),
        ],
        ..Snapshot::default()
    }
}

#[tokio::test]
async fn a_forged_profile_in_another_namespace_fills_no_density_cap() {
    let w = world(SCOPED, forged());
    let r = w.filter(&member(0).build(), &["a1", "a2"]).await;
    assert!(r.error.is_empty(), "{}", r.error);
    assert_eq!(feasible(&r), ["a1", "a2"], "{:?}", r.failed_nodes);
}

#[tokio::test]
async fn a_forged_primary_in_another_namespace_is_no_primary_on_its_node() {
    let w = world(SCOPED, forged());
    let primary = member(0).annotate("stowage.io/role", "primary").build();
    let r = w.filter(&primary, &["a1", "a2"]).await;
    assert!(r.error.is_empty(), "{}", r.error);
    assert_eq!(feasible(&r), ["a1", "a2"], "{:?}", r.failed_nodes);
}

/// The same pod counts while the profile is open to every namespace, and stops counting as soon
/// as a config reload scopes the profile (no pod event needed).
#[tokio::test]
async fn scoping_a_profile_on_reload_releases_the_slots_forged_pods_held() {
    let w = world(OPEN, forged());
    let r = w.filter(&member(0).build(), &["a1", "a2"]).await;
    assert_eq!(r.failed_nodes.get("a1"), Some("node(s) reached the density cap of the pod's class"));

    w.cache.reconfigure(&Config::from_yaml(SCOPED).unwrap());
    w.cache.read().verify_indexes().unwrap();
    let a1 = w.cache.read().node_id("a1").unwrap();
    let agg = w.cache.read().slot(a1).agg.clone();
    assert_eq!((agg.stateful, agg.primaries, agg.profile_count("pg")), (0, 0, 0));
    assert_eq!(agg.pods, 1, "the pod still counts as a pod (its requests hold resources)");
}

/// Pods of the profile's own namespaces keep counting.
#[tokio::test]
async fn members_in_the_profiles_namespace_still_count() {
    let mut snap = forged();
    snap.pods = vec![PodBuilder::new("db", "other-0").member("pg", "other").node("a1").build()];
    let w = world(SCOPED, snap);
    let r = w.filter(&member(0).build(), &["a1", "a2"]).await;
    assert_eq!(r.failed_nodes.get("a1"), Some("node(s) reached the density cap of the pod's class"));
}
