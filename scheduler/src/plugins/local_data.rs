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
pub struct PendingClaim {
    /// Storage class.
    pub class: Arc<str>,
    /// Requested bytes.
    pub size: i64,
}

/// Per-cycle state.
#[derive(Debug, Default)]
pub struct State {
    /// Effective mode.
    pub mode: Option<Mode>,
    /// Nodes holding every node-pinned PV of the pod; `None` when it has none.
    pub own_nodes: Option<NodeSet>,
    /// Node selected for a pending claim.
    pub selected_node: Option<Arc<str>>,
    /// Unbound claims of no-provisioner WaitForFirstConsumer classes, largest first.
    pub static_claims: Vec<PendingClaim>,
    /// Unbound claims of provisioned WaitForFirstConsumer classes with capacity objects.
    pub capacity_claims: Vec<PendingClaim>,
    /// Available PVs with non-host affinity of the static claims' classes.
    pub other_candidates: Vec<Arc<str>>,
    /// Nodes holding a sibling's local volume.
    pub siblings: NodeSet,
    /// PVs reserved by in-flight placements.
    pub reserved: Vec<Arc<str>>,
    /// Capacity score shape.
    pub shape: Vec<ShapePoint>,
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
