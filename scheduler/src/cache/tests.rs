use std::time::Duration;

use k8s_openapi::api::{
    apps::v1::StatefulSet,
    core::v1::{Node, PersistentVolume, PersistentVolumeClaim, Pod},
    storage::v1::{CSIStorageCapacity, StorageClass},
};
use kube::runtime::watcher::Event;
use proptest::prelude::*;
use stowage_policy::Config;

use super::*;
use stowage_fixtures::{PodBuilder, bound_local_pv, node, pvc, statefulset, storage_class};

fn cache() -> ClusterCache {
    ClusterCache::new(&Config::default())
}

fn agg(c: &ClusterCache, node: &str) -> model::NodeAgg {
    let m = c.read();
    m.node_id(node).map(|id| m.slot(id).agg.clone()).unwrap_or_default()
}

fn sync_all(c: &ClusterCache) {
    c.applier::<Node>().replace(&[]);
    c.applier::<Pod>().replace(&[]);
    c.applier::<PersistentVolume>().replace(&[]);
    c.applier::<PersistentVolumeClaim>().replace(&[]);
    c.applier::<StorageClass>().replace(&[]);
    c.applier::<CSIStorageCapacity>().replace(&[]);
}

#[test]
fn pod_moving_nodes_moves_its_totals() {
    let c = cache();
    let mut pods = c.applier::<Pod>();
    let p = PodBuilder::new("db", "pg-0").member("default", "pg").guaranteed("2", "4Gi");
    pods.apply(Event::Apply(p.clone().node("n1").build()));
    assert_eq!(agg(&c, "n1").cpu_m, 2000);
    assert_eq!(agg(&c, "n1").stateful, 1);
    pods.apply(Event::Apply(p.node("n2").build()));
    assert_eq!(agg(&c, "n1"), model::NodeAgg::default(), "n1 keeps nothing");
    assert_eq!(agg(&c, "n2").mem, 4 << 30);
    assert!(c.read().node_id("n1").is_none(), "an unreferenced node slot is released");
    c.read().verify_indexes().unwrap();
}

#[test]
fn deleted_terminal_and_terminating_pods() {
    let c = cache();
    let mut pods = c.applier::<Pod>();
    let p = PodBuilder::new("db", "pg-0").member("default", "pg").annotate("stowage.io/role", "primary").node("n1");
    pods.apply(Event::Apply(p.clone().build()));
    assert_eq!(agg(&c, "n1").primaries, 1);
    pods.apply(Event::Apply(p.clone().terminating().build()));
    let a = agg(&c, "n1");
    assert_eq!((a.pods, a.primaries), (1, 0), "terminating pods hold resources but are not primaries");
    pods.apply(Event::Apply(p.clone().phase("Succeeded").build()));
    assert_eq!(agg(&c, "n1").pods, 0, "terminal pods are dropped");
    assert_eq!(c.read().count(Kind::Pod), 0);
    pods.apply(Event::Apply(p.clone().build()));
    pods.apply(Event::Delete(p.build()));
    assert_eq!(c.read().count(Kind::Pod), 0);
    assert_eq!(c.read().group_members("db", "pg").count(), 0);
    c.read().verify_indexes().unwrap();
}

#[test]
fn relist_is_atomic_and_drops_missing_objects() {
    let c = cache();
    let mut pods = c.applier::<Pod>();
    pods.apply(Event::Apply(PodBuilder::new("db", "old").node("n1").requests("1", "1Gi").build()));
    pods.apply(Event::Init);
    pods.apply(Event::InitApply(PodBuilder::new("db", "new").node("n2").requests("1", "1Gi").build()));
    // Mid-relist, readers still see the previous complete state.
    assert!(c.read().pod("uid-db-old").is_some());
    assert!(c.read().pod("uid-db-new").is_none());
    pods.apply(Event::InitDone);
    assert!(c.read().pod("uid-db-old").is_none());
    assert!(c.read().pod("uid-db-new").is_some());
    assert_eq!(agg(&c, "n1").pods, 0);
    assert_eq!(agg(&c, "n2").pods, 1);
    c.read().verify_indexes().unwrap();
}

#[test]
fn ready_only_after_every_kind_listed_once() {
    let c = cache();
    assert!(!c.is_ready());
    sync_all(&c);
    assert!(!c.is_ready(), "statefulsets have not synced");
    let status = c.status();
    assert!(status.iter().any(|s| s.kind == Kind::StatefulSet && !s.synced));
    c.applier::<StatefulSet>().replace(&[statefulset("db", "pg", 3, &["data"])]);
    assert!(c.is_ready());
    assert_eq!(c.statefulset_replicas("db", "pg"), Some(3));
    assert!(c.status().iter().all(|s| s.synced));
    assert_eq!(c.status().iter().find(|s| s.kind == Kind::StatefulSet).map(|s| s.objects), Some(1));
    // A later relist does not reset readiness.
    c.applier::<Pod>().apply(Event::Init);
    assert!(c.is_ready());
}

#[tokio::test]
async fn wait_until_ready_resolves_on_sync() {
    let c = Arc::new(cache());
    let c2 = c.clone();
    let waiter = tokio::spawn(async move { c2.wait_until_ready().await });
    sync_all(&c);
    c.applier::<StatefulSet>().replace(&[]);
    tokio::time::timeout(Duration::from_secs(5), waiter).await.unwrap().unwrap();
}

#[test]
fn nodes_zones_hosts_and_volumes_are_indexed() {
    let c = cache();
    c.applier::<Node>().replace(&[node("n1", Some("a"), "4", "16Gi"), node("n2", None, "4", "16Gi")]);
    c.applier::<PersistentVolume>().replace(&[bound_local_pv("pv-1", "n1", "local", "100Gi", "db", "data-pg-0")]);
    c.applier::<PersistentVolumeClaim>().replace(&[pvc("db", "data-pg-0", "local", "50Gi", Some("pv-1"))]);
    c.applier::<StorageClass>().replace(&[storage_class("local", "kubernetes.io/no-provisioner", true)]);
    let m = c.read();
    let id = m.node_id("n1").unwrap();
    assert_eq!(m.zone_name(m.slot(id).zone.unwrap()), "a");
    assert_eq!(m.slot(id).obj.as_ref().unwrap().alloc_cpu_m, 4000);
    assert_eq!(m.nodes_with_host("n1"), &[id]);
    assert_eq!(m.pvs_on_host("n1").count(), 1);
    assert_eq!(m.pv_for_claim("db", "data-pg-0").unwrap().name.as_ref(), "pv-1");
    assert_eq!(m.pvcs_with_prefix("db", "data-pg-").count(), 1);
    assert!(m.class("local").unwrap().no_provisioner());
    m.verify_indexes().unwrap();
}

#[test]
fn node_deleted_while_pods_remain_keeps_their_totals() {
    let c = cache();
    c.applier::<Node>().apply(Event::Apply(node("n1", Some("a"), "4", "16Gi")));
    c.applier::<Pod>().apply(Event::Apply(PodBuilder::new("db", "x").node("n1").requests("1", "1Gi").build()));
    c.applier::<Node>().apply(Event::Delete(node("n1", Some("a"), "4", "16Gi")));
    assert_eq!(c.read().count(Kind::Node), 0);
    assert_eq!(agg(&c, "n1").pods, 1);
    c.read().verify_indexes().unwrap();
}

#[test]
fn bound_pods_retire_their_ledger_entries() {
    let c = cache();
    c.ledger().record(crate::ledger::Placement {
        uid: "uid-db-pg-0".into(),
        namespace: "db".into(),
        name: "pg-0".into(),
        group: None,
        node: "n1".into(),
        zone: None,
        resources: crate::cache::resources::PodResources::default(),
        profile: None,
        primary: false,
        claims: vec![],
        claimed_pvs: vec![],
        reserved: false,
        expires: tokio::time::Instant::now() + Duration::from_secs(60),
        nominated: false,
    });
    c.applier::<Pod>().apply(Event::Apply(PodBuilder::new("db", "pg-0").build()));
    assert_eq!(c.ledger().len(), 1, "unbound pods keep their entry");
    c.applier::<Pod>().apply(Event::Apply(PodBuilder::new("db", "pg-0").node("n1").build()));
    assert_eq!(c.ledger().len(), 0);
}

#[test]
fn from_snapshot_equals_event_application() {
    let snap = crate::snapshot::Snapshot {
        nodes: vec![node("n1", Some("a"), "4", "16Gi")],
        pods: vec![PodBuilder::new("db", "pg-0").member("default", "pg").node("n1").build()],
        stateful_sets: vec![statefulset("db", "pg", 3, &["data"])],
        ..Default::default()
    };
    let c = ClusterCache::from_snapshot(&snap, &Config::default());
    assert!(c.is_ready());
    assert_eq!(c.read().group_members("db", "pg").count(), 1);
    assert_eq!(agg(&c, "n1").stateful, 1);
}

#[test]
fn reconfigure_recomputes_zones_and_roles() {
    let c = cache();
    c.applier::<Node>().apply(Event::Apply(node("n1", Some("a"), "4", "16Gi")));
    c.applier::<Pod>().apply(Event::Apply(
        PodBuilder::new("db", "pg-0").member("default", "pg").label("my-role", "leader").node("n1").build(),
    ));
    assert_eq!(agg(&c, "n1").primaries, 0);
    let cfg = Config::from_yaml("zoneLabel: kubernetes.io/hostname\nroleLabels: [my-role]\n").unwrap();
    c.reconfigure(&cfg);
    let m = c.read();
    let id = m.node_id("n1").unwrap();
    assert_eq!(m.zone_name(m.slot(id).zone.unwrap()), "n1");
    assert_eq!(m.slot(id).agg.primaries, 1);
    m.verify_indexes().unwrap();
}

// === property: incremental indexes equal a recomputation ===

#[derive(Debug, Clone)]
enum Op {
    Apply {
        pod: u8,
        node: Option<u8>,
        nominated: Option<u8>,
        cpu: u8,
        member: bool,
        primary: bool,
        terminating: bool,
        phase: u8,
    },
    Delete {
        pod: u8,
    },
    NodeUp {
        node: u8,
        zone: u8,
    },
    NodeDown {
        node: u8,
    },
    Relist {
        pods: Vec<(u8, Option<u8>)>,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        5 => (0u8..12, proptest::option::of(0u8..5), proptest::option::of(0u8..5), 0u8..4, any::<bool>(), any::<bool>(), proptest::bool::weighted(0.2), 0u8..6)
            .prop_map(|(pod, node, nominated, cpu, member, primary, terminating, phase)| Op::Apply { pod, node, nominated, cpu, member, primary, terminating, phase }),
        2 => (0u8..12).prop_map(|pod| Op::Delete { pod }),
        2 => (0u8..5, 0u8..3).prop_map(|(node, zone)| Op::NodeUp { node, zone }),
        1 => (0u8..5).prop_map(|node| Op::NodeDown { node }),
        1 => proptest::collection::vec((0u8..12, proptest::option::of(0u8..5)), 0..6).prop_map(|pods| Op::Relist { pods }),
    ]
}

#[allow(clippy::too_many_arguments)]
fn build_pod(
    pod: u8,
    node: Option<u8>,
    nominated: Option<u8>,
    cpu: u8,
    member: bool,
    primary: bool,
    terminating: bool,
    phase: u8,
) -> Pod {
    let mut b = PodBuilder::new("db", &format!("p{pod}")).requests(&format!("{cpu}"), "1Gi");
    if member {
        b = b.member(if pod.is_multiple_of(2) { "a" } else { "b" }, &format!("g{}", pod % 3));
    }
    if primary {
        b = b.annotate("stowage.io/role", "primary");
    }
    if let Some(n) = node {
        b = b.node(&format!("n{n}"));
    }
    if let Some(n) = nominated {
        b = b.nominated(&format!("n{n}"));
    }
    if terminating {
        b = b.terminating();
    }
    b = b.phase(match phase {
        0 => "Succeeded",
        1 => "Failed",
        2 => "Pending",
        _ => "Running",
    });
    b.build()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]
    #[test]
    fn indexes_equal_recomputation_after_any_event_sequence(ops in proptest::collection::vec(op(), 1..60)) {
        let c = cache();
        for op in ops {
            match op {
                Op::Apply { pod, node, nominated, cpu, member, primary, terminating, phase } => c
                    .applier::<Pod>()
                    .apply(Event::Apply(build_pod(pod, node, nominated, cpu, member, primary, terminating, phase))),
                Op::Delete { pod } => c.applier::<Pod>().apply(Event::Delete(build_pod(pod, None, None, 0, false, false, false, 3))),
                Op::NodeUp { node: n, zone } => c
                    .applier::<Node>()
                    .apply(Event::Apply(node(&format!("n{n}"), Some(&format!("z{zone}")), "8", "32Gi"))),
                Op::NodeDown { node: n } => c.applier::<Node>().apply(Event::Delete(node(&format!("n{n}"), None, "8", "32Gi"))),
                Op::Relist { pods } => {
                    let list: Vec<Pod> = pods.iter().map(|(p, n)| build_pod(*p, *n, None, 1, true, false, false, 3)).collect();
                    c.applier::<Pod>().replace(&list);
                }
            }
            let check = c.read().verify_indexes();
            prop_assert!(check.is_ok(), "{:?}", check);
        }
        // Totals also equal a cache rebuilt from the surviving pods in one list.
        let pods: Vec<PodObj> = c.read().pods().cloned().collect();
        let total: i64 = pods.iter().filter(|p| p.node.is_some()).map(|p| p.resources.cpu_m).sum();
        let indexed: i64 = c.read().nodes_total_cpu();
        prop_assert_eq!(total, indexed);
    }
}
