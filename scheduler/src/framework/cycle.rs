//! The per-cycle state container (`framework.CycleState`): the model under its read lock, what
//! the ledger adds, and each plugin's own PreFilter state, computed once per call so that each
//! node costs O(1).

use std::{any::Any, collections::HashMap, sync::Arc};

use stowage_policy::GroupKey;
use tokio::time::Instant;

use crate::{
    cache::{Model, NodeId, ZoneId, model::NodeAgg, objects::NodeObj, resources::Burst},
    ledger::Ledger,
};

/// A dense set of node ids.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeSet(Vec<u64>);

impl NodeSet {
    /// Adds a node.
    pub fn insert(&mut self, id: NodeId) {
        let (w, b) = ((id / 64) as usize, id % 64);
        if self.0.len() <= w {
            self.0.resize(w + 1, 0);
        }
        self.0[w] |= 1 << b;
    }

    /// True when the node is in the set.
    #[must_use]
    pub fn contains(&self, id: NodeId) -> bool {
        self.0.get((id / 64) as usize).is_some_and(|w| w & (1 << (id % 64)) != 0)
    }

    /// Keeps only nodes also in `other`.
    pub fn intersect(&mut self, other: &NodeSet) {
        for (i, w) in self.0.iter_mut().enumerate() {
            *w &= other.0.get(i).copied().unwrap_or(0);
        }
    }

    /// True when empty.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.0.iter().all(|w| *w == 0)
    }
}

/// What in-flight placements add to one node.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LedgerAdd {
    /// Requested cpu, millicores.
    pub cpu_m: i64,
    /// Requested memory, bytes.
    pub mem: i64,
    /// Opted-in pods.
    pub stateful: u32,
    /// Pods lacking limits.
    pub no_limits: u32,
    /// BestEffort pods.
    pub best_effort: u32,
    /// What the pods can take beyond their requests.
    pub burst: Burst,
    /// Opted-in primaries.
    pub primaries: u32,
    /// Opted-in pods per profile.
    pub profiles: Vec<(Arc<str>, u32)>,
}

/// A node as plugins see it: the cached object, its totals and what the ledger adds.
#[derive(Debug, Clone, Copy)]
pub struct NodeView<'a> {
    /// Slot id, when the node is in the cache.
    pub id: Option<NodeId>,
    /// The trimmed node.
    pub obj: &'a NodeObj,
    /// Totals of pods bound to it.
    pub agg: &'a NodeAgg,
    /// Zone id, when the zone is known to the cache.
    pub zone: Option<ZoneId>,
    /// In-flight placements on it.
    pub add: Option<&'a LedgerAdd>,
}

impl NodeView<'_> {
    /// `metadata.name` of the node.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.obj.name
    }

    /// Zone label value.
    #[must_use]
    pub fn zone_name(&self) -> Option<&str> {
        self.obj.zone.as_deref()
    }
}

/// What the ledger's reservations and placements add for one cycle.
#[derive(Debug, Clone, Default)]
pub struct LedgerFacts {
    /// Per node: what in-flight pods add.
    pub adds: HashMap<NodeId, LedgerAdd>,
    /// PVs reserved by in-flight pods.
    pub reserved_pvs: Vec<Arc<str>>,
    /// In-flight members of the pod's group: (uid, name, node).
    pub group_placements: Vec<(Arc<str>, Arc<str>, Arc<str>)>,
    /// PVs reserved by in-flight members of the pod's group.
    pub group_reserved_pvs: Vec<Arc<str>>,
}

impl LedgerFacts {
    /// Reads the ledger once for a cycle. Entries whose pod the cache already shows bound are
    /// skipped (the cache counts them), and so is the entry of `own_uid`: a pod's own
    /// reservation never counts against its next filter.
    #[must_use]
    pub fn collect(ledger: &Ledger, model: &Model, group: Option<&GroupKey>, own_uid: &str, now: Instant) -> Self {
        let mut facts = LedgerFacts::default();
        ledger.with_live(now, |entries| {
            for p in entries {
                if (!own_uid.is_empty() && p.uid.as_ref() == own_uid)
                    || model.pod(&p.uid).is_some_and(|c| c.node.is_some())
                {
                    continue;
                }
                facts.reserved_pvs.extend(p.claimed_pvs.iter().cloned());
                let in_group = group.is_some_and(|g| {
                    p.namespace.as_ref() == g.namespace && p.group.as_deref() == Some(g.name.as_str())
                });
                if in_group {
                    facts.group_placements.push((p.uid.clone(), p.name.clone(), p.node.clone()));
                    facts.group_reserved_pvs.extend(p.claimed_pvs.iter().cloned());
                }
                let Some(id) = model.node_id(&p.node) else { continue };
                let add = facts.adds.entry(id).or_default();
                let r = &p.resources;
                add.cpu_m += r.cpu_m;
                add.mem += r.mem;
                add.no_limits += u32::from(r.no_limits);
                add.best_effort += u32::from(r.best_effort);
                add.burst.apply(r, 1);
                if let Some(profile) = &p.profile {
                    add.stateful += 1;
                    add.primaries += u32::from(p.primary);
                    match add.profiles.iter_mut().find(|(n, _)| n == profile) {
                        Some((_, c)) => *c += 1,
                        None => add.profiles.push((profile.clone(), 1)),
                    }
                }
            }
        });
        facts
    }
}

/// Per-cycle state (`framework.CycleState`): the shared facts every plugin reads, and one state
/// per plugin, which only that plugin (and its own API) reads back.
pub struct CycleState<'m> {
    model: &'m Model,
    ledger: LedgerFacts,
    states: Vec<Box<dyn Any + Send + Sync>>,
}

impl std::fmt::Debug for CycleState<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CycleState").field("ledger", &self.ledger).field("plugins", &self.states.len()).finish()
    }
}

impl<'m> CycleState<'m> {
    /// Reads the ledger for the pod; the plugin states are added by the runner.
    pub(super) fn new(model: &'m Model, ledger: &Ledger, pod: &super::PodContext<'_>, now: Instant) -> Self {
        let ledger = LedgerFacts::collect(ledger, model, pod.group(), &pod.uid, now);
        Self { model, ledger, states: Vec::new() }
    }

    pub(super) fn push_state(&mut self, state: Box<dyn Any + Send + Sync>) {
        self.states.push(state);
    }

    pub(super) fn states(&self) -> impl Iterator<Item = &(dyn Any + Send + Sync)> {
        self.states.iter().map(AsRef::as_ref)
    }

    pub(super) fn state_at(&self, i: usize) -> &(dyn Any + Send + Sync) {
        self.states[i].as_ref()
    }

    /// The model the cycle reads (under the cache's read lock).
    #[must_use]
    pub fn model(&self) -> &'m Model {
        self.model
    }

    /// What the ledger's reservations and placements add this cycle.
    #[must_use]
    pub fn ledger(&self) -> &LedgerFacts {
        &self.ledger
    }

    /// A view of a cached node.
    #[must_use]
    pub fn view(&self, id: NodeId) -> Option<NodeView<'_>> {
        let slot = self.model.slot(id);
        Some(NodeView {
            id: Some(id),
            obj: slot.obj.as_ref()?,
            agg: &slot.agg,
            zone: slot.zone,
            add: self.ledger.adds.get(&id),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_set() {
        let mut s = NodeSet::default();
        assert!(s.is_empty());
        s.insert(3);
        s.insert(200);
        assert!(s.contains(3) && s.contains(200) && !s.contains(4) && !s.contains(10_000));
        let mut t = NodeSet::default();
        t.insert(200);
        s.intersect(&t);
        assert!(!s.contains(3) && s.contains(200));
    }
}
