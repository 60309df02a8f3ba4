//! **LocalData**: keep a member with its local data, find room for new local volumes, and keep
//! members' volumes on different nodes.
//!
//! Filter (skipped entirely with `local-data: off`):
//! - a claim bound to a **node-pinned PV** (hostname affinity, or a `local`/`hostPath` volume
//!   with affinity) ⇒ only nodes matching every such PV; elsewhere
//!   `UnschedulableAndUnresolvable` ([`LOCAL_VOLUME`]). A pending claim whose
//!   `volume.kubernetes.io/selected-node` names a node pins the same way ([`SELECTED_NODE`]);
//! - an unbound claim of a **WaitForFirstConsumer** class:
//!   - `kubernetes.io/no-provisioner` ⇒ the node needs an `Available`, unclaimed PV of the class,
//!     at least as large, whose affinity matches the node and which no in-flight placement has
//!     reserved (several claims need distinct PVs) ⇒ else `Unschedulable` ([`NO_LOCAL_PV`]);
//!   - a provisioner with `CSIStorageCapacity` objects for the class ⇒ a segment covering the
//!     node must offer `maximumVolumeSize` (else `capacity`) ≥ the request ⇒ else
//!     `Unschedulable` ([`NO_CAPACITY`]); classes without capacity objects are not checked;
//! - **sibling avoidance**: a node already holding a node-pinned PV of another member of the
//!   group (found through the group's pods, through StatefulSet claim naming
//!   `<template>-<sts>-<ordinal>` even when the sibling pod is gone, and through siblings'
//!   in-flight reservations) ⇒ with `local-data: require` `Unschedulable` ([`SIBLING_VOLUME`]),
//!   with `prefer` a score of 0.
//!
//! Score (active only for pods with node-pinned or WaitForFirstConsumer claims): 100 on the
//! node(s) holding the pod's own data; otherwise the mean over the pod's unbound claims of the
//! profile's `capacityShape` at `utilisation = request / capacity` of the best-fitting PV (the
//! smallest that fits) or capacity segment; 0 on sibling nodes under `prefer`.

use std::sync::Arc;

use stowage_policy::{LocalData as Mode, config::ShapePoint};

use crate::{
    cache::{Model, objects::PvObj, objects::PvPhase},
    framework::{Code, CycleState, LedgerFacts, NodeSet, NodeView, Plugin, PodContext, Reason, Status, broken_linear},
};

/// The pod's bound local volume lives on another node.
pub static LOCAL_VOLUME: Reason =
    Reason { code: "local_volume_elsewhere", message: "node(s) didn't hold the pod's local volume" };
/// A pending claim was already provisioned for another node.
pub static SELECTED_NODE: Reason = Reason {
    code: "volume_selected_other_node",
    message: "node(s) were not the node selected for the pod's pending volume",
};
/// No available local PV fits an unbound WaitForFirstConsumer claim.
pub static NO_LOCAL_PV: Reason = Reason {
    code: "no_available_local_pv",
    message: "node(s) had no available local volume of the claim's class and size",
};
/// Not enough CSI storage capacity for an unbound WaitForFirstConsumer claim.
pub static NO_CAPACITY: Reason =
    Reason { code: "insufficient_storage_capacity", message: "node(s) did not have enough free storage" };
/// The node already holds a sibling member's local volume.
pub static SIBLING_VOLUME: Reason = Reason {
    code: "sibling_local_volume",
    message: "node(s) already held a local volume of another member of the group",
};

/// An unbound claim of a WaitForFirstConsumer class.
#[derive(Debug, Clone, PartialEq, Eq)]
struct PendingClaim {
    /// Storage class.
    class: Arc<str>,
    /// Requested bytes.
    size: i64,
}

/// Per-cycle state.
#[derive(Debug, Default)]
pub struct State {
    /// Effective mode.
    mode: Option<Mode>,
    /// Nodes holding every node-pinned PV of the pod; `None` when it has none.
    own_nodes: Option<NodeSet>,
    /// Node selected for a pending claim.
    selected_node: Option<Arc<str>>,
    /// Unbound claims of no-provisioner WaitForFirstConsumer classes, largest first.
    static_claims: Vec<PendingClaim>,
    /// Unbound claims of provisioned WaitForFirstConsumer classes with capacity objects.
    capacity_claims: Vec<PendingClaim>,
    /// Available PVs with non-host affinity of the static claims' classes.
    other_candidates: Vec<Arc<str>>,
    /// Nodes holding a sibling's local volume.
    siblings: NodeSet,
    /// PVs reserved by in-flight placements.
    reserved: Vec<Arc<str>>,
    /// Capacity score shape.
    shape: Vec<ShapePoint>,
}

impl State {
    /// True when the pod has local volumes to steer by.
    #[must_use]
    pub fn has_local_volumes(&self) -> bool {
        self.own_nodes.is_some()
            || self.selected_node.is_some()
            || !self.static_claims.is_empty()
            || !self.capacity_claims.is_empty()
    }
}

/// Nodes a pinned PV can be used on.
fn pin_nodes(model: &Model, pv: &PvObj, out: &mut NodeSet) {
    let Some(pin) = &pv.pin else { return };
    if let Some(hosts) = &pv.hosts {
        for h in hosts.iter() {
            for id in model.nodes_with_host(h) {
                let slot = model.slot(*id);
                if let Some(obj) = &slot.obj
                    && pin.matches(&obj.name, &obj.labels)
                {
                    out.insert(*id);
                }
            }
        }
    } else {
        for (id, _, obj) in model.nodes() {
            if pin.matches(&obj.name, &obj.labels) {
                out.insert(id);
            }
        }
    }
}

fn collect_siblings(model: &Model, pod: &PodContext<'_>, facts: &LedgerFacts, out: &mut NodeSet) {
    let ns = pod.namespace.as_str();
    let mut add_claim = |claim: &str| {
        if let Some(pv) = model.pv_for_claim(ns, claim)
            && pv.node_pinned()
        {
            pin_nodes(model, pv, out);
        }
    };
    if let Some(g) = pod.group() {
        for m in model.group_members(&g.namespace, &g.name) {
            if m.namespace.as_ref() == ns && m.name.as_ref() == pod.name {
                continue;
            }
            for c in m.stowage.iter().flat_map(|s| s.claims.iter()) {
                if !pod.claims.iter().any(|own| own == c.as_ref()) {
                    add_claim(c);
                }
            }
        }
    }
    // StatefulSet naming: claims `<template>-<sts>-<ordinal>` of other ordinals, even when
    // their pods are gone.
    if let Some(sts) = pod.policy.statefulset.as_deref() {
        let mut templates: Vec<String> = model
            .statefulset(ns, sts)
            .map(|s| s.templates.iter().map(ToString::to_string).collect())
            .unwrap_or_default();
        let suffix = format!("-{}", pod.name);
        for c in &pod.claims {
            if let Some(t) = c.strip_suffix(&suffix)
                && !templates.iter().any(|x| x == t)
            {
                templates.push(t.to_owned());
            }
        }
        for t in templates {
            let prefix = format!("{t}-{sts}-");
            for pvc in model.pvcs_with_prefix(ns, &prefix) {
                let ordinal = &pvc.name[prefix.len()..];
                if ordinal.is_empty()
                    || !ordinal.bytes().all(|b| b.is_ascii_digit())
                    || pod.claims.iter().any(|own| own == pvc.name.as_ref())
                {
                    continue;
                }
                if let Some(pv) = pvc.volume.as_ref().and_then(|v| model.pv(v))
                    && pv.node_pinned()
                {
                    pin_nodes(model, pv, out);
                }
            }
        }
    }
    for pv in &facts.group_reserved_pvs {
        if let Some(pv) = model.pv(pv)
            && pv.node_pinned()
        {
            pin_nodes(model, pv, out);
        }
    }
}

fn usable(pv: &PvObj, reserved: &[Arc<str>]) -> bool {
    pv.phase == PvPhase::Available && pv.claim.is_none() && !reserved.contains(&pv.name)
}

/// Finds distinct PVs on `node` for every static claim; calls `fit(claim, pv)` for each match.
/// Returns false when some claim has no PV.
fn match_static<'m>(
    model: &'m Model,
    st: &State,
    node: &NodeView<'_>,
    mut fit: impl FnMut(&PendingClaim, &'m PvObj),
) -> bool {
    let mut used: Vec<&Arc<str>> = Vec::new();
    for claim in &st.static_claims {
        let candidates = model
            .pvs_on_host(&node.obj.hostname)
            .chain(st.other_candidates.iter().filter_map(|n| model.pv(n)))
            .filter(|pv| {
                pv.class.as_ref() == Some(&claim.class)
                    && pv.capacity >= claim.size
                    && usable(pv, &st.reserved)
                    && !used.contains(&&pv.name)
                    && pv.usable_on(node.obj)
            });
        let Some(best) = candidates.min_by_key(|pv| pv.capacity) else { return false };
        if st.static_claims.len() > 1 {
            used.push(&best.name);
        }
        fit(claim, best);
    }
    true
}

/// The best capacity segment on `node` for a claim: the largest usable size that fits.
fn best_capacity(model: &Model, node: &NodeView<'_>, claim: &PendingClaim) -> Option<i64> {
    model
        .capacities_for(&claim.class, &node.obj.hostname)
        .filter(|c| c.topology.as_ref().is_some_and(|t| t.matches(&node.obj.labels)))
        .map(crate::cache::objects::CapObj::usable)
        .filter(|u| *u >= claim.size)
        .max()
}

/// The LocalData plugin.
#[derive(Debug, Default, Clone, Copy)]
pub struct LocalData;

impl Plugin for LocalData {
    type State = State;

    const NAME: &'static str = "local-data";

    /// Resolves the pod's claims, its siblings' volumes and the ledger's reservations.
    fn pre_filter(&self, model: &Model, pod: &PodContext<'_>, facts: &LedgerFacts) -> State {
        let mode = pod.policy.local_data;
        let mut st = State { mode: Some(mode), shape: pod.policy.profile.capacity_shape.clone(), ..State::default() };
        if mode == Mode::Off {
            return st;
        }
        st.reserved = facts.reserved_pvs.clone();
        let ns = pod.namespace.as_str();
        for claim in &pod.claims {
            let Some(pvc) = model.pvc(ns, claim) else { continue };
            if let Some(pv) = model.pv_for_claim(ns, claim).filter(|_| pvc.volume.is_some()) {
                if pv.node_pinned() {
                    let mut set = NodeSet::default();
                    pin_nodes(model, pv, &mut set);
                    match &mut st.own_nodes {
                        Some(own) => own.intersect(&set),
                        None => st.own_nodes = Some(set),
                    }
                }
                continue;
            }
            let Some(class) = pvc.class.as_ref().and_then(|c| model.class(c)) else { continue };
            if !class.wait_for_first_consumer {
                continue;
            }
            if let Some(node) = &pvc.selected_node {
                st.selected_node = Some(node.clone());
                continue;
            }
            let pending = PendingClaim { class: class.name.clone(), size: pvc.request };
            if class.no_provisioner() {
                st.static_claims.push(pending);
            } else if model.class_has_capacities(&class.name) {
                st.capacity_claims.push(pending);
            }
        }
        st.static_claims.sort_by_key(|c| std::cmp::Reverse(c.size));
        if !st.static_claims.is_empty() {
            st.other_candidates = model
                .pvs_pinned_other()
                .filter(|pv| {
                    usable(pv, &st.reserved) && st.static_claims.iter().any(|c| pv.class.as_ref() == Some(&c.class))
                })
                .map(|pv| pv.name.clone())
                .collect();
        }
        collect_siblings(model, pod, facts, &mut st.siblings);
        st
    }

    fn filter(&self, cycle: &CycleState<'_>, st: &State, _pod: &PodContext<'_>, node: &NodeView<'_>) -> Status {
        let Some(mode) = st.mode.filter(|m| *m != Mode::Off) else { return Status::success() };
        let mut status = Status::success();
        let own = node.id.is_some_and(|id| st.own_nodes.as_ref().is_some_and(|s| s.contains(id)));
        if st.own_nodes.is_some() && !own {
            status.add(Code::UnschedulableAndUnresolvable, &LOCAL_VOLUME);
        }
        if st.selected_node.as_deref().is_some_and(|n| n != node.name()) {
            status.add(Code::UnschedulableAndUnresolvable, &SELECTED_NODE);
        }
        if !st.static_claims.is_empty() && !match_static(cycle.model(), st, node, |_, _| {}) {
            status.add(Code::Unschedulable, &NO_LOCAL_PV);
        }
        if st.capacity_claims.iter().any(|c| best_capacity(cycle.model(), node, c).is_none()) {
            status.add(Code::Unschedulable, &NO_CAPACITY);
        }
        if mode == Mode::Require && !own && node.id.is_some_and(|id| st.siblings.contains(id)) {
            status.add(Code::Unschedulable, &SIBLING_VOLUME);
        }
        status
    }

    fn scores(&self, st: &State, _pod: &PodContext<'_>) -> bool {
        st.mode.is_some_and(|m| m != Mode::Off) && st.has_local_volumes()
    }

    fn score(&self, cycle: &CycleState<'_>, st: &State, _pod: &PodContext<'_>, node: &NodeView<'_>) -> i64 {
        let Some(id) = node.id else { return 0 };
        if st.own_nodes.as_ref().is_some_and(|s| s.contains(id)) {
            return 100;
        }
        if st.siblings.contains(id) {
            return 0;
        }
        let model = cycle.model();
        let (mut sum, mut count) = (0i64, 0i64);
        match_static(model, st, node, |claim, pv| {
            sum += broken_linear(&st.shape, claim.size.saturating_mul(100) / pv.capacity.max(1));
            count += 1;
        });
        for c in &st.capacity_claims {
            let util = best_capacity(model, node, c).map_or(100, |cap| c.size.saturating_mul(100) / cap.max(1));
            sum += broken_linear(&st.shape, util);
            count += 1;
        }
        if count == 0 { 0 } else { sum / count }
    }
}

/// Picks, for each unbound claim of a no-provisioner WaitForFirstConsumer class, the PV the
/// volume binder will most likely use on `node` (the smallest available one that fits, as
/// `FindMatchingVolume` does), so that `bind` can reserve it in the ledger.
#[must_use]
pub fn likely_static_pvs(
    model: &Model,
    namespace: &str,
    claims: &[Arc<str>],
    node: &str,
    reserved: &[Arc<str>],
) -> Vec<Arc<str>> {
    let Some(obj) = model.node_id(node).and_then(|id| model.slot(id).obj.as_ref()) else { return Vec::new() };
    let mut picked: Vec<Arc<str>> = Vec::new();
    for claim in claims {
        let Some(pvc) = model.pvc(namespace, claim) else { continue };
        if pvc.volume.is_some() {
            continue;
        }
        let Some(class) = pvc.class.as_ref().and_then(|c| model.class(c)) else { continue };
        if !(class.wait_for_first_consumer && class.no_provisioner()) {
            continue;
        }
        let best = model
            .pvs_on_host(&obj.hostname)
            .chain(model.pvs_pinned_other())
            .filter(|pv| {
                pv.class.as_ref() == Some(&class.name)
                    && pv.capacity >= pvc.request
                    && usable(pv, reserved)
                    && !picked.contains(&pv.name)
                    && pv.usable_on(obj)
            })
            .min_by_key(|pv| pv.capacity);
        if let Some(pv) = best {
            picked.push(pv.name.clone());
        }
    }
    picked
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::{
        plugins::table::{Got, pass, run},
        snapshot::Snapshot,
    };
    use stowage_fixtures::{
        HOSTNAME, PodBuilder, bound_local_pv, capacity, local_pv, node, pvc, statefulset, storage_class,
    };

    const NO_PROVISIONER: &str = crate::cache::objects::NO_PROVISIONER;
    const REQUIRE: &str = "profiles:\n  pg: {localData: require}\n";
    const PREFER: &str = "profiles:\n  pg: {localData: prefer}\n";
    const OFF: &str = "profiles:\n  pg: {localData: off}\n";

    /// Nodes n1, n2, n3; a no-provisioner class `local` and a provisioned class `csi`, both
    /// WaitForFirstConsumer; `csi` has 10Gi of capacity on n2 only.
    fn snapshot() -> Snapshot {
        let on_n2 = BTreeMap::from([(HOSTNAME.to_owned(), "n2".to_owned())]);
        Snapshot {
            nodes: vec![
                node("n1", Some("a"), "8", "32Gi"),
                node("n2", Some("b"), "8", "32Gi"),
                node("n3", Some("c"), "8", "32Gi"),
            ],
            storage_classes: vec![
                storage_class("local", NO_PROVISIONER, true),
                storage_class("csi", "csi.example", true),
            ],
            csi_storage_capacities: vec![capacity("kube-system", "cap-n2", "csi", &on_n2, "10Gi", None)],
            ..Snapshot::default()
        }
    }

    /// pg-0 with its data bound to a local PV on n1.
    fn with_own_data(mut s: Snapshot) -> Snapshot {
        s.persistent_volumes.push(bound_local_pv("pv-n1", "n1", "local", "10Gi", "db", "data-pg-0"));
        s.persistent_volume_claims.push(pvc("db", "data-pg-0", "local", "10Gi", Some("pv-n1")));
        s
    }

    /// An unbound claim `data-pg-0` of `class` requesting `size`.
    fn with_pending(mut s: Snapshot, class: &str, size: &str) -> Snapshot {
        s.persistent_volume_claims.push(pvc("db", "data-pg-0", class, size, None));
        s
    }

    /// A sibling pg-1 on n1 whose data is bound to a local PV there.
    fn with_sibling(mut s: Snapshot) -> Snapshot {
        s.persistent_volumes.push(bound_local_pv("pv-sib", "n1", "local", "10Gi", "db", "data-pg-1"));
        s.persistent_volume_claims.push(pvc("db", "data-pg-1", "local", "10Gi", Some("pv-sib")));
        s.pods.push(PodBuilder::new("db", "pg-1").member("pg", "pg").claim("data-pg-1").node("n1").build());
        s
    }

    fn pv(mut s: Snapshot, name: &str, host: &str, size: &str) -> Snapshot {
        s.persistent_volumes.push(local_pv(name, host, "local", size));
        s
    }

    fn pod(claims: &[&str]) -> k8s_openapi::api::core::v1::Pod {
        claims.iter().fold(PodBuilder::new("db", "pg-0").member("pg", "pg"), |p, c| p.claim(c)).build()
    }

    /// (case, config, snapshot, the pod's claims, node, expected)
    type FilterCase<'a> = (&'a str, &'a str, Snapshot, &'a [&'a str], &'a str, Got);
    /// (case, config, snapshot, the pod's claims, nodes, expected scores)
    type ScoreCase<'a> = (&'a str, &'a str, Snapshot, &'a [&'a str], &'a [&'a str], &'a [Option<i64>]);

    fn refused(code: Code, reason: &Reason) -> Got {
        Got { code, reason: reason.message, score: None }
    }

    #[test]
    fn filter_cases() {
        let two_claims = |s: Snapshot| {
            let mut s = with_pending(s, "local", "5Gi");
            s.persistent_volume_claims.push(pvc("db", "log-pg-0", "local", "5Gi", None));
            s
        };
        let cases: Vec<FilterCase<'_>> = vec![
            ("own bound data: its node", REQUIRE, with_own_data(snapshot()), &["data-pg-0"], "n1", pass(None)),
            (
                "own bound data: elsewhere",
                REQUIRE,
                with_own_data(snapshot()),
                &["data-pg-0"],
                "n2",
                refused(Code::UnschedulableAndUnresolvable, &LOCAL_VOLUME),
            ),
            ("own bound data with local-data off", OFF, with_own_data(snapshot()), &["data-pg-0"], "n2", pass(None)),
            (
                "pending claim: a PV large enough",
                REQUIRE,
                pv(with_pending(snapshot(), "local", "5Gi"), "pv-n2", "n2", "10Gi"),
                &["data-pg-0"],
                "n2",
                pass(None),
            ),
            (
                "pending claim: no PV on the node",
                REQUIRE,
                pv(with_pending(snapshot(), "local", "5Gi"), "pv-n2", "n2", "10Gi"),
                &["data-pg-0"],
                "n3",
                refused(Code::Unschedulable, &NO_LOCAL_PV),
            ),
            (
                "pending claim: the PV is too small",
                REQUIRE,
                pv(with_pending(snapshot(), "local", "20Gi"), "pv-n2", "n2", "10Gi"),
                &["data-pg-0"],
                "n2",
                refused(Code::Unschedulable, &NO_LOCAL_PV),
            ),
            (
                "two pending claims need two PVs",
                REQUIRE,
                pv(two_claims(snapshot()), "pv-n2", "n2", "10Gi"),
                &["data-pg-0", "log-pg-0"],
                "n2",
                refused(Code::Unschedulable, &NO_LOCAL_PV),
            ),
            (
                "two pending claims, two PVs",
                REQUIRE,
                pv(pv(two_claims(snapshot()), "pv-n2", "n2", "10Gi"), "pv-n2b", "n2", "5Gi"),
                &["data-pg-0", "log-pg-0"],
                "n2",
                pass(None),
            ),
            (
                "provisioned claim: capacity on the node",
                REQUIRE,
                with_pending(snapshot(), "csi", "5Gi"),
                &["data-pg-0"],
                "n2",
                pass(None),
            ),
            (
                "provisioned claim: no capacity on the node",
                REQUIRE,
                with_pending(snapshot(), "csi", "5Gi"),
                &["data-pg-0"],
                "n3",
                refused(Code::Unschedulable, &NO_CAPACITY),
            ),
            (
                "provisioned claim: larger than the capacity",
                REQUIRE,
                with_pending(snapshot(), "csi", "20Gi"),
                &["data-pg-0"],
                "n2",
                refused(Code::Unschedulable, &NO_CAPACITY),
            ),
            (
                "a sibling's volume under require",
                REQUIRE,
                with_sibling(snapshot()),
                &[],
                "n1",
                refused(Code::Unschedulable, &SIBLING_VOLUME),
            ),
            ("a sibling's volume under prefer", PREFER, with_sibling(snapshot()), &[], "n1", pass(None)),
            ("away from the sibling", REQUIRE, with_sibling(snapshot()), &[], "n2", pass(None)),
        ];
        for (case, config, snap, claims, at, want) in cases {
            let got = run(LocalData, config, &snap, &pod(claims), &[at]).remove(0);
            assert_eq!(Got { score: None, ..got }, want, "{case}");
        }
    }

    #[test]
    fn a_sibling_found_through_statefulset_claim_naming_counts_without_its_pod() {
        let mut s = snapshot();
        s.persistent_volumes.push(bound_local_pv("pv-sib", "n1", "local", "10Gi", "db", "data-pg-1"));
        s.persistent_volume_claims.push(pvc("db", "data-pg-1", "local", "10Gi", Some("pv-sib")));
        s.stateful_sets.push(statefulset("db", "pg", 3, &["data"]));
        let pod = PodBuilder::new("db", "pg-0").member("pg", "pg").owned_by_statefulset("pg").build();
        let got = run(LocalData, REQUIRE, &s, &pod, &["n1", "n2"]);
        assert_eq!(got[0], refused(Code::Unschedulable, &SIBLING_VOLUME));
        assert_eq!(got[1].code, Code::Success);
    }

    #[test]
    fn score_cases() {
        // 100 on the node holding the pod's data, the capacity shape at request/capacity for
        // pending claims (the default shape: 50% used scores 50), 0 on a sibling's node under
        // prefer; pods without local volumes are not scored.
        let cases: Vec<ScoreCase<'_>> = vec![
            ("own data", REQUIRE, with_own_data(snapshot()), &["data-pg-0"], &["n1", "n2"], &[Some(100), Some(0)]),
            (
                "a PV half filled",
                REQUIRE,
                pv(with_pending(snapshot(), "local", "5Gi"), "pv-n2", "n2", "10Gi"),
                &["data-pg-0"],
                &["n2"],
                &[Some(50)],
            ),
            (
                "capacity half filled",
                REQUIRE,
                with_pending(snapshot(), "csi", "5Gi"),
                &["data-pg-0"],
                &["n2"],
                &[Some(50)],
            ),
            (
                "a sibling's node under prefer",
                PREFER,
                pv(
                    pv(with_sibling(with_pending(snapshot(), "local", "5Gi")), "pv-a", "n1", "10Gi"),
                    "pv-b",
                    "n2",
                    "10Gi",
                ),
                &["data-pg-0"],
                &["n1", "n2"],
                &[Some(0), Some(50)],
            ),
            ("no local volumes", REQUIRE, snapshot(), &[], &["n1"], &[None]),
            ("local-data off", OFF, with_own_data(snapshot()), &["data-pg-0"], &["n1"], &[None]),
        ];
        for (case, config, snap, claims, nodes, want) in cases {
            let got: Vec<Option<i64>> =
                run(LocalData, config, &snap, &pod(claims), nodes).into_iter().map(|g| g.score).collect();
            assert_eq!(got, want, "{case}");
        }
    }
}
