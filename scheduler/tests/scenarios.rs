//! Scenario tests of the plugins through the extender's verbs (design §10 and more).
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::collections::BTreeMap;

use common::*;
use stowage_fixtures::{
    HOSTNAME, PodBuilder, bound_local_pv, capacity, local_pv, node, pvc, statefulset, storage_class,
};
use stowage_scheduler::{events, snapshot::Snapshot};

fn base() -> Snapshot {
    Snapshot {
        nodes: six_nodes(),
        stateful_sets: vec![statefulset("db", "pg", 3, &["data"])],
        storage_classes: vec![storage_class("local", "kubernetes.io/no-provisioner", true)],
        ..Snapshot::default()
    }
}

#[tokio::test]
async fn three_members_land_one_per_zone_on_distinct_nodes() {
    let w = world(PG_CONFIG, base());
    let mut placed = Vec::new();
    for i in 0..3 {
        let pod = member(i).build();
        let node = w.schedule(&pod, &ALL).await.expect("a feasible node");
        // Bind only: the pod watcher has not caught up, so the ledger must carry the placement.
        assert_eq!(w.bind(&pod, &node).await, "");
        placed.push(node);
    }
    let mut zones: Vec<&str> = placed.iter().map(|n| zone_of(n)).collect();
    zones.sort_unstable();
    assert_eq!(zones, ["a", "b", "c"], "{placed:?}");
    assert_eq!(w.cache.ledger().len(), 3);
    // The watcher confirms the bindings: the ledger empties, the counts stay.
    for (i, node) in placed.iter().enumerate() {
        w.watch(member(u32::try_from(i).unwrap()).node(node).build());
    }
    assert_eq!(w.cache.ledger().len(), 0);
    let placed_events = w.events.events().iter().filter(|e| e.reason == events::PLACED).count();
    assert_eq!(placed_events, 3);
}

#[tokio::test]
async fn zone_c_full_leaves_the_third_member_pending_with_the_quorum_reason() {
    let mut snap = base();
    snap.pods = vec![member(0).node("a1").ready().build(), member(1).node("b1").ready().build()];
    let w = world(PG_CONFIG, snap);
    // Zone C is full: the scheduler's own resource filter already removed c1 and c2.
    let r = w.filter(&member(2).build(), &["a1", "a2", "b1", "b2"]).await;
    assert_eq!(r.error, "");
    assert_eq!(r.node_names.as_deref(), Some(&[][..]), "never 2+1 in two zones");
    assert_eq!(r.failed_and_unresolvable_nodes.len(), 4);
    for n in ["a1", "a2", "b1", "b2"] {
        let reason = r.failed_and_unresolvable_nodes.get(n).unwrap();
        assert!(reason.contains("floor((n-1)/2)") && reason.contains("quorum guard"), "{n}: {reason}");
    }
    let ev = w.events.events();
    let ev = ev.iter().find(|e| e.reason == events::QUORUM_GUARD).expect("a quorum guard event");
    assert!(ev.message.contains("group db/pg has n=3 voting members"), "{}", ev.message);
    assert!(ev.message.contains("a=1 b=1 c=0"), "{}", ev.message);
    assert!(ev.message.contains("max 1 per zone"), "{}", ev.message);
    // With zone C back, only zone C is feasible.
    let r = w.filter(&member(2).build(), &ALL).await;
    assert_eq!(feasible(&r), ["c1", "c2"]);
    assert_eq!(r.node_names.unwrap(), ["c1"], "filter reserves one of them");
}

#[tokio::test]
async fn a_deleted_member_returns_to_the_node_holding_its_local_volume() {
    let mut snap = base();
    snap.pods = vec![
        member(0).node("a1").claim("data-pg-0").ready().build(),
        member(2).node("c1").claim("data-pg-2").ready().build(),
        // The old incarnation of pg-1 is still terminating on b2.
        member(1).uid("old-pg-1").node("b2").claim("data-pg-1").terminating().build(),
        // b2 is busy, b1 is empty.
        PodBuilder::new("apps", "busy").node("b2").requests("6", "24Gi").build(),
    ];
    snap.persistent_volume_claims = vec![
        pvc("db", "data-pg-0", "local", "100Gi", Some("pv-a1")),
        pvc("db", "data-pg-1", "local", "100Gi", Some("pv-b2")),
        pvc("db", "data-pg-2", "local", "100Gi", Some("pv-c1")),
    ];
    snap.persistent_volumes = vec![
        bound_local_pv("pv-a1", "a1", "local", "100Gi", "db", "data-pg-0"),
        bound_local_pv("pv-b2", "b2", "local", "100Gi", "db", "data-pg-1"),
        bound_local_pv("pv-c1", "c1", "local", "100Gi", "db", "data-pg-2"),
    ];
    let w = world(PG_CONFIG, snap);
    let recreated = member(1).uid("new-pg-1").claim("data-pg-1").build();
    let r = w.filter(&recreated, &ALL).await;
    assert_eq!(r.node_names.unwrap(), ["b2"], "the old incarnation must not count against itself");
    assert_eq!(r.failed_and_unresolvable_nodes.get("b1"), Some("node(s) didn't hold the pod's local volume"));
    let scores = w.prioritize(&recreated, &["b1", "b2"]);
    let b2 = scores.iter().find(|s| s.host == "b2").unwrap().score;
    let b1 = scores.iter().find(|s| s.host == "b1").unwrap().score;
    assert!(b2 > b1, "local data outweighs the emptier node: b1={b1} b2={b2}");
}

#[tokio::test]
async fn wait_for_first_consumer_claims_need_a_fitting_available_pv() {
    let mut snap = base();
    let mut claimed = local_pv("pv-c1", "c1", "local", "200Gi");
    claimed.spec.as_mut().unwrap().claim_ref =
        Some(k8s_openapi::api::core::v1::ObjectReference { name: Some("other".into()), ..Default::default() });
    snap.persistent_volumes = vec![
        local_pv("pv-a1", "a1", "local", "50Gi"),
        local_pv("pv-b1", "b1", "local", "200Gi"),
        local_pv("pv-b2", "b2", "slow", "200Gi"),
        claimed,
        local_pv("pv-c2", "c2", "local", "150Gi"),
    ];
    snap.persistent_volume_claims = vec![pvc("db", "data-pg-0", "local", "100Gi", None)];
    let w = world(PG_CONFIG, snap);
    let pod = member(0).claim("data-pg-0").build();
    let r = w.filter(&pod, &ALL).await;
    assert_eq!(feasible(&r), ["b1", "c2"]);
    for n in ["a1", "a2", "b2", "c1"] {
        assert_eq!(
            r.failed_nodes.get(n),
            Some("node(s) had no available local volume of the claim's class and size"),
            "{n}"
        );
    }
    // Capacity fit: 100Gi on a 150Gi PV is a tighter fit than on a 200Gi PV; the default
    // shape prefers free space.
    let scores = w.prioritize(&pod, &["b1", "c2"]);
    assert!(scores.iter().all(|s| (0..=10).contains(&s.score)));
    // A bind on c2 reserves pv-c2 for the in-flight placement: another claim cannot take it.
    assert_eq!(w.bind(&pod, "c2").await, "");
    let other = PodBuilder::new("db", "solo").annotate("stowage.io/profile", "pg").claim("data-solo").build();
    w.apply(pvc("db", "data-solo", "local", "100Gi", None));
    let r = w.filter(&other, &ALL).await;
    assert_eq!(r.node_names.unwrap(), ["b1"], "pv-c2 is reserved by the ledger");
}

#[tokio::test]
async fn csi_storage_capacity_is_checked_for_provisioned_classes() {
    let mut snap = base();
    snap.storage_classes.push(storage_class("lvm", "topolvm.io", true));
    let seg = |host: &str| BTreeMap::from([(HOSTNAME.to_owned(), host.to_owned())]);
    snap.csi_storage_capacities = vec![
        capacity("kube-system", "cap-a1", "lvm", &seg("a1"), "10Gi", None),
        capacity("kube-system", "cap-b1", "lvm", &seg("b1"), "500Gi", Some("50Gi")),
        capacity("kube-system", "cap-c1", "lvm", &seg("c1"), "500Gi", None),
    ];
    snap.persistent_volume_claims = vec![pvc("db", "data-pg-0", "lvm", "100Gi", None)];
    let w = world(PG_CONFIG, snap);
    let r = w.filter(&member(0).claim("data-pg-0").build(), &ALL).await;
    assert_eq!(r.node_names.unwrap(), ["c1"]);
    assert_eq!(r.failed_nodes.get("b1"), Some("node(s) did not have enough free storage"), "maximumVolumeSize wins");
}

fn sibling_snapshot() -> Snapshot {
    let mut snap = base();
    // pg-0 is gone, but its claim (StatefulSet naming) still pins its data to a1.
    snap.persistent_volume_claims = vec![pvc("db", "data-pg-0", "local", "100Gi", Some("pv-a1"))];
    snap.persistent_volumes = vec![
        bound_local_pv("pv-a1", "a1", "local", "100Gi", "db", "data-pg-0"),
        local_pv("pv-a1b", "a1", "local", "100Gi"),
        local_pv("pv-a2", "a2", "local", "100Gi"),
    ];
    snap.pods = vec![];
    snap
}

#[tokio::test]
async fn sibling_avoidance_refuses_with_require_and_scores_zero_with_prefer() {
    let w = world(PG_CONFIG, sibling_snapshot());
    let r = w.filter(&member(1).build(), &["a1", "a2"]).await;
    assert_eq!(r.node_names.unwrap(), ["a2"]);
    assert_eq!(r.failed_nodes.get("a1"), Some("node(s) already held a local volume of another member of the group"));

    let prefer = PG_CONFIG.replace("localData: require", "localData: prefer");
    let mut snap = sibling_snapshot();
    snap.persistent_volume_claims.push(pvc("db", "data-pg-1", "local", "50Gi", None));
    let w = world(&prefer, snap);
    let pod = member(1).claim("data-pg-1").build();
    let r = w.filter(&pod, &["a1", "a2"]).await;
    assert_eq!(feasible(&r), ["a1", "a2"]);
    let d = w.ext.decisions().recent(Some("db/pg-1"), 1);
    assert_eq!(d[0].verb, "filter");
    let _ = w.prioritize(&pod, &["a1", "a2"]);
    let d = w.ext.decisions().recent(Some("db/pg-1"), 1);
    let line = |n: &str| d[0].nodes.iter().find(|l| l.node == n).unwrap().scores.local_data;
    assert_eq!(line("a1"), 0);
    assert!(line("a2") > 0);
}

#[tokio::test]
async fn density_cap_refuses_full_nodes() {
    let cfg = "profiles:\n  pg: {density: {maxPerNode: 1}}\n";
    let mut snap = base();
    snap.pods = vec![PodBuilder::new("db", "other-0").member("pg", "other").node("a1").build()];
    let w = world(cfg, snap);
    let r = w.filter(&member(0).build(), &["a1", "a2"]).await;
    assert_eq!(r.node_names.unwrap(), ["a2"]);
    assert_eq!(r.failed_nodes.get("a1"), Some("node(s) reached the density cap of the pod's class"));
}

#[tokio::test]
async fn separate_primaries_refuses_a_second_primary_on_a_node() {
    let cfg = "profiles:\n  pg: {separatePrimaries: true}\n";
    let mut snap = base();
    snap.pods = vec![
        PodBuilder::new("db", "other-0")
            .member("pg", "other")
            .annotate("stowage.io/role", "primary")
            .node("a1")
            .build(),
    ];
    let w = world(cfg, snap);
    let primary = member(0).annotate("stowage.io/role", "primary").build();
    let r = w.filter(&primary, &["a1", "a2"]).await;
    assert_eq!(r.node_names.unwrap(), ["a2"]);
    assert_eq!(r.failed_nodes.get("a1"), Some("node(s) already ran a primary (separate primaries)"));
    let replica = member(0).annotate("stowage.io/role", "replica").build();
    assert_eq!(w.filter(&replica, &["a1", "a2"]).await.node_names.unwrap(), ["a1", "a2"]);
}

/// kube-scheduler's FailedScheduling summary counts nodes per identical reason string. A node
/// that already runs a member breaks three rules (quorum, skew, node spread), its zone peer two;
/// with the reasons joined the scheduler printed "2 node(s) would give ... (quorum guard),
/// node(s) didn't match ..., 2 node(s) would give ... (quorum guard), ..., node(s) already ran a
/// member ...". One reason per node gives "4 node(s) would give ... (quorum guard)".
#[tokio::test]
async fn every_node_refused_by_the_quorum_guard_gives_the_scheduler_the_same_single_reason() {
    let mut snap = base();
    snap.pods = vec![member(0).node("a1").ready().build(), member(1).node("b1").ready().build()];
    let w = world(PG_CONFIG, snap);
    let r = w.filter(&member(2).build(), &["a1", "a2", "b1", "b2"]).await;
    let reasons: std::collections::BTreeSet<&str> =
        r.failed_and_unresolvable_nodes.0.iter().map(|(_, reason)| reason.as_ref()).collect();
    assert_eq!(reasons.into_iter().collect::<Vec<_>>(), [stowage_scheduler::plugins::zone_spread::QUORUM.message]);
    // The decision keeps every rule each node broke.
    let d = w.ext.decisions().recent(Some("db/pg-2"), 1);
    let a1 = d[0].nodes.iter().find(|n| n.node == "a1").expect("a1 in the decision");
    assert!(a1.reason.contains("quorum guard") && a1.reason.contains("maxSkew") && a1.reason.contains("node spread"));
}

/// "c=0" in a message must mean the pod could go to zone c: zones of nodes the pod cannot use
/// (another pool here; other tenants in a shared cluster) stay out of the quorum event, the
/// decisions and the placement event.
#[tokio::test]
async fn messages_list_only_the_zones_the_pod_may_use() {
    let mut snap = base();
    for n in &mut snap.nodes {
        n.metadata.labels.as_mut().unwrap().insert("pool".into(), "db".into());
    }
    snap.nodes.push(node("d1", Some("d"), "8", "32Gi"));
    snap.pods = vec![member(0).node("a1").ready().build(), member(1).node("b1").ready().build()];
    let w = world(PG_CONFIG, snap);
    let pod = member(2).node_selector("pool", "db").build();
    // Zone C full: nothing feasible.
    let r = w.filter(&pod, &["a1", "a2", "b1", "b2"]).await;
    assert_eq!(r.node_names.as_deref(), Some(&[][..]));
    let ev = w.events.events();
    let ev = ev.iter().find(|e| e.reason == events::QUORUM_GUARD).expect("a quorum guard event");
    assert!(ev.message.contains("zones a=1 b=1 c=0 (max 1 per zone)"), "{}", ev.message);
    let d = w.ext.decisions().recent(Some("db/pg-2"), 1);
    let zones: Vec<&str> = d[0].zone_counts.iter().map(|z| z.zone.as_str()).collect();
    assert_eq!(zones, ["a", "b", "c"]);
    // Zone C back: placed there; the placement event lists the same zones.
    let r = w.filter(&pod, &ALL).await;
    assert_eq!(feasible(&r), ["c1", "c2"]);
    assert_eq!(w.bind(&pod, "c1").await, "");
    let ev = w.events.events();
    let placed = ev.iter().find(|e| e.reason == events::PLACED).expect("a placement event");
    assert!(placed.message.ends_with("zones a=1 b=1 c=1"), "{}", placed.message);
}

#[tokio::test]
async fn required_zone_spread_honours_min_domains() {
    let cfg = "profiles:\n  pg: {zoneSpread: required, nodeSpread: off, quorum: off}\n";
    let mut snap = base();
    // The pod may only use zones a and b (nodeSelector on a pool label).
    for n in &mut snap.nodes {
        let name = n.metadata.name.clone().unwrap();
        if !name.starts_with('c') {
            n.metadata.labels.as_mut().unwrap().insert("pool".into(), "ab".into());
        }
    }
    snap.pods = vec![member(0).node("a1").build()];
    let w = world(cfg, snap.clone());
    let pod = member(1).node_selector("pool", "ab").build();
    let r = w.filter(&pod, &["a1", "a2", "b1", "b2"]).await;
    assert_eq!(feasible(&r), ["b1", "b2"]);
    assert!(r.failed_nodes.get("a2").unwrap().contains("maxSkew 1"));
    // Two eligible zones < minDomains 3: the global minimum is 0, so with a member in each
    // zone the third member fits nowhere (PodTopologySpread semantics).
    snap.pods.push(member(1).node("b1").build());
    let w = world(cfg, snap.clone());
    let r = w.filter(&member(2).node_selector("pool", "ab").build(), &["a1", "a2", "b1", "b2"]).await;
    assert_eq!(r.node_names.unwrap(), Vec::<String>::new());
    let ev = w.events.events();
    assert!(ev.iter().any(|e| e.reason == events::SPREAD_REFUSED), "{ev:?}");
    // With minDomains 1 the minimum is 1 and both zones fit.
    let w = world("profiles:\n  pg: {zoneSpread: required, nodeSpread: off, quorum: off, minDomains: 1}\n", snap);
    let r = w.filter(&member(2).node_selector("pool", "ab").build(), &["a1", "a2", "b1", "b2"]).await;
    assert_eq!(feasible(&r), ["a1", "a2", "b1", "b2"]);
}

#[tokio::test]
async fn five_members_allow_two_two_one() {
    let cfg = "profiles:\n  pg: {quorum: zone, nodeSpread: off}\n";
    let mut snap = base();
    snap.stateful_sets = vec![statefulset("db", "pg", 5, &["data"])];
    snap.pods = vec![
        member(0).node("a1").build(),
        member(1).node("a2").build(),
        member(2).node("b1").build(),
        member(3).node("b2").build(),
    ];
    let w = world(cfg, snap.clone());
    let r = w.filter(&member(4).build(), &ALL).await;
    assert_eq!(feasible(&r), ["c1", "c2"], "2/2/1: max 2 per zone");
    snap.pods.remove(1);
    let w = world(cfg, snap);
    let r = w.filter(&member(4).build(), &ALL).await;
    assert_eq!(feasible(&r), ["a1", "a2", "c1", "c2"]);
}

#[tokio::test]
async fn nominated_members_count_in_their_zone() {
    let mut snap = base();
    snap.pods = vec![member(0).nominated("a1").build()];
    let w = world(PG_CONFIG, snap);
    let r = w.filter(&member(1).build(), &ALL).await;
    assert_eq!(feasible(&r), ["b1", "b2", "c1", "c2"]);
}

#[tokio::test]
async fn nodes_without_a_zone_label_are_refused_under_the_quorum_guard() {
    let mut snap = base();
    snap.nodes.push(node("nz", None, "8", "32Gi"));
    let w = world(PG_CONFIG, snap);
    let r = w.filter(&member(0).build(), &["a1", "nz"]).await;
    assert_eq!(r.node_names.unwrap(), ["a1"]);
    assert!(r.failed_and_unresolvable_nodes.get("nz").unwrap().contains("no zone label (quorum guard)"));
}

#[tokio::test]
async fn group_of_two_disables_the_quorum_guard() {
    let mut snap = base();
    snap.stateful_sets = vec![statefulset("db", "pg", 2, &["data"])];
    snap.pods = vec![member(0).node("a1").build()];
    let cfg = "profiles:\n  pg: {quorum: zone, nodeSpread: required, zoneSpread: preferred}\n";
    let w = world(cfg, snap);
    let r = w.filter(&member(1).build(), &ALL).await;
    assert_eq!(feasible(&r), ["a2", "b1", "b2", "c1", "c2"]);
    // Preferred zone spread: a2 scores lowest for spreading.
    let scores = w.prioritize(&member(1).build(), &["a2", "b1"]);
    assert!(scores[0].score < scores[1].score, "{scores:?}");
}

#[tokio::test]
async fn pods_not_opted_in_pass_untouched_and_score_zero() {
    let w = world(PG_CONFIG, base());
    let plain = PodBuilder::new("apps", "web").build();
    let r = w.filter(&plain, &["a1", "zz"]).await;
    assert_eq!(r.node_names.unwrap(), ["a1", "zz"]);
    assert!(r.failed_nodes.is_empty() && r.error.is_empty());
    let s = w.prioritize(&plain, &["a1", "zz"]);
    assert_eq!(s.iter().map(|s| s.score).collect::<Vec<_>>(), [0, 0]);
}

#[tokio::test]
async fn invalid_annotations_and_unsynced_cache_are_errors() {
    let w = world(PG_CONFIG, base());
    let bad = member(0).annotate("stowage.io/quorum", "rack").build();
    let r = w.filter(&bad, &ALL).await;
    assert!(r.error.contains("stowage.io/quorum: \"rack\" is not allowed"), "{}", r.error);
    let cfg = stowage_policy::Config::from_yaml(PG_CONFIG).unwrap();
    let cache = std::sync::Arc::new(stowage_scheduler::ClusterCache::new(&cfg));
    let ext = stowage_scheduler::Extender::with_metrics(
        cache,
        std::sync::Arc::new(arc_swap::ArcSwap::from_pointee(cfg)),
        std::sync::Arc::new(stowage_scheduler::FakeBinder::default()),
        std::sync::Arc::new(stowage_scheduler::NoopEvents),
        stowage_scheduler::metrics::Metrics::unregistered(),
        stowage_scheduler::Options::default(),
    );
    let r = ext.filter(args(&member(0).build(), &ALL)).await;
    assert_eq!(r.error, "stowage cache has not synced yet");
    assert!(ext.prioritize(args(&member(0).build(), &ALL)).is_empty());
}

#[tokio::test]
async fn unknown_nodes_are_refused_with_a_reason_and_only_input_nodes_return() {
    let w = world(PG_CONFIG, base());
    let r = w.filter(&member(0).build(), &["a1", "ghost"]).await;
    assert_eq!(r.node_names.unwrap(), ["a1"]);
    assert_eq!(r.failed_nodes.get("ghost"), Some("node(s) were not in the stowage cache yet"));
}

#[tokio::test]
async fn full_node_objects_are_echoed_and_used_when_uncached() {
    let w = world(PG_CONFIG, base());
    let raw = |n: k8s_openapi::api::core::v1::Node| serde_json::value::to_raw_value(&n).unwrap();
    let nodes = stowage_scheduler::extender::v1::NodeList::from_items(vec![
        raw(node("a1", Some("a"), "8", "32Gi")),
        raw(node("d1", Some("d"), "8", "32Gi")),
        raw(node("nz", None, "8", "32Gi")),
    ]);
    let sent: Vec<String> = nodes.items.iter().map(|r| r.get().to_owned()).collect();
    let args = stowage_scheduler::extender::v1::ExtenderArgs {
        pod: Some(member(0).build()),
        nodes: Some(nodes),
        node_names: None,
    };
    let r = w.ext.filter(args).await;
    assert!(r.node_names.is_none());
    let back: Vec<String> = r.nodes.unwrap().items.iter().map(|r| r.get().to_owned()).collect();
    // Only the reserved node comes back, byte for byte. d1 is not cached but its labels (zone
    // d) are read from the object sent: it passed the rules and was merely not chosen.
    assert_eq!(back, [sent[0].clone()]);
    assert_eq!(r.failed_nodes.get("d1"), Some(stowage_scheduler::framework::NOT_CHOSEN.message));
    assert!(r.failed_and_unresolvable_nodes.get("nz").unwrap().contains("no zone label"));
}

/// Direct callers (not only the HTTP edge) get each candidate answered once.
#[tokio::test]
async fn a_candidate_named_twice_is_answered_once() {
    let snap = Snapshot { nodes: six_nodes(), ..Snapshot::default() };
    let w = world(PG_CONFIG, snap);
    let plain = PodBuilder::new("db", "web").uid("u-web").build();
    let f = w.filter(&plain, &["a1", "a1", "b1"]).await;
    assert_eq!(f.node_names.unwrap(), ["a1", "b1"]);
    let pod = member(0).uid("u-0").build();
    let f = w.filter(&pod, &["a1", "b1", "a1", "b1"]).await;
    assert!(f.error.is_empty(), "{}", f.error);
    let passing = f.node_names.unwrap();
    let mut failed: Vec<&String> = f.failed_nodes.0.iter().map(|(n, _)| n).collect();
    failed.extend(f.failed_and_unresolvable_nodes.0.iter().map(|(n, _)| n));
    assert_eq!(passing.len() + failed.len(), 2, "passing {passing:?}, failed {failed:?}");
    let scores = w.prioritize(&pod, &["c1", "c1"]);
    assert_eq!(scores.len(), 1, "{scores:?}");
    assert!(w.filter(&pod, &["a1", ""]).await.error.contains("NodeNames[1] is empty"));
}
