//! The cache model: trimmed objects plus incremental indexes, mutated only under the cache's
//! write lock.
//!
//! Every mutation first removes an object's old contribution to the indexes, then adds the new
//! one, so a pod that moves node, changes phase, starts terminating or is deleted always leaves
//! the per-node and per-group totals equal to a recomputation from scratch
//! ([`Model::verify_indexes`] checks exactly that).

use std::{
    collections::{BTreeMap, BTreeSet, HashMap, HashSet},
    hash::{BuildHasherDefault, Hasher},
    sync::Arc,
};

use super::objects::{CapObj, ClassObj, NodeObj, PodObj, PvObj, PvcObj, StsObj};

/// FNV-1a: a fast hasher for the short keys (node, host, volume names, uids) looked up once
/// per candidate node on the hot path. Keys come from cluster objects only admins create.
#[derive(Debug, Clone, Copy)]
pub struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Self {
        Self(0xcbf2_9ce4_8422_2325)
    }
}

impl Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
}

/// A hash map keyed with [`Fnv`].
pub type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<Fnv>>;

/// Dense index of a node slot (stable while the slot is referenced).
pub type NodeId = u32;
/// Dense index of a zone.
pub type ZoneId = u16;

/// Per-node totals of the pods assigned to it (bound or assumed by `spec.nodeName`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeAgg {
    /// Requested cpu, millicores.
    pub cpu_m: i64,
    /// Requested memory, bytes.
    pub mem: i64,
    /// Pods.
    pub pods: u32,
    /// Opted-in (stateful) pods.
    pub stateful: u32,
    /// Pods lacking limits (not BestEffort); node agents (DaemonSet and static pods) excluded.
    pub no_limits: u32,
    /// BestEffort pods; node agents excluded.
    pub best_effort: u32,
    /// What the pods can take beyond their requests; node agents excluded.
    pub burst: super::resources::Burst,
    /// Opted-in primaries that are not terminating.
    pub primaries: u32,
    /// Opted-in pods per profile name.
    pub profiles: Vec<(Arc<str>, u32)>,
}

impl NodeAgg {
    fn apply(&mut self, pod: &PodObj, sign: i64) {
        let bump = |v: &mut u32| {
            if sign > 0 {
                *v += 1;
            } else {
                *v = v.saturating_sub(1);
            }
        };
        self.cpu_m += sign * pod.resources.cpu_m;
        self.mem += sign * pod.resources.mem;
        bump(&mut self.pods);
        if !pod.node_agent {
            if pod.resources.no_limits {
                bump(&mut self.no_limits);
            }
            if pod.resources.best_effort {
                bump(&mut self.best_effort);
            }
            self.burst.apply(&pod.resources, sign);
        }
        if let Some(s) = pod.stowage.as_ref().filter(|s| s.counted) {
            bump(&mut self.stateful);
            if s.is_primary() && !pod.terminating {
                bump(&mut self.primaries);
            }
            match self.profiles.iter_mut().position(|(p, _)| *p == s.profile) {
                Some(i) => {
                    bump(&mut self.profiles[i].1);
                    if self.profiles[i].1 == 0 {
                        self.profiles.swap_remove(i);
                    }
                }
                None if sign > 0 => self.profiles.push((s.profile.clone(), 1)),
                None => {}
            }
        }
    }

    /// Opted-in pods of `profile` on the node.
    #[must_use]
    pub fn profile_count(&self, profile: &str) -> u32 {
        self.profiles.iter().find(|(p, _)| p.as_ref() == profile).map_or(0, |(_, n)| *n)
    }

    fn is_empty(&self) -> bool {
        self.pods == 0
    }
}

/// One node slot: the node object (if the node exists) and the totals of pods naming it.
#[derive(Debug, Clone)]
pub struct NodeSlot {
    /// Node name.
    pub name: Arc<str>,
    /// The trimmed node; `None` when pods name a node the cache has not seen.
    pub obj: Option<NodeObj>,
    /// Zone id of `obj`.
    pub zone: Option<ZoneId>,
    /// Totals of assigned pods.
    pub agg: NodeAgg,
}

/// CSIStorageCapacity keys of one storage class.
#[derive(Debug, Clone, Default)]
struct ClassCaps {
    by_host: HashMap<Arc<str>, Vec<Arc<str>>>,
    other: Vec<Arc<str>>,
}

/// Objects of one kind in the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// Nodes.
    Node,
    /// Pods.
    Pod,
    /// PersistentVolumes.
    PersistentVolume,
    /// PersistentVolumeClaims.
    PersistentVolumeClaim,
    /// StorageClasses.
    StorageClass,
    /// CSIStorageCapacities.
    CsiStorageCapacity,
    /// StatefulSets.
    StatefulSet,
}

impl Kind {
    /// Every kind, in watcher order.
    pub const ALL: [Kind; 7] = [
        Kind::Node,
        Kind::Pod,
        Kind::PersistentVolume,
        Kind::PersistentVolumeClaim,
        Kind::StorageClass,
        Kind::CsiStorageCapacity,
        Kind::StatefulSet,
    ];

    /// Lower-case plural name, as used in metric labels.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Kind::Node => "nodes",
            Kind::Pod => "pods",
            Kind::PersistentVolume => "persistentvolumes",
            Kind::PersistentVolumeClaim => "persistentvolumeclaims",
            Kind::StorageClass => "storageclasses",
            Kind::CsiStorageCapacity => "csistoragecapacities",
            Kind::StatefulSet => "statefulsets",
        }
    }

    /// Position in [`Kind::ALL`].
    #[must_use]
    pub const fn index(self) -> usize {
        self as usize
    }
}

type NsMap<V> = HashMap<Arc<str>, HashMap<Arc<str>, V>>;
/// (namespace, group name).
type GroupRef = (Arc<str>, Arc<str>);

/// The cache model. Read through [`super::ClusterCache::read`].
#[derive(Debug, Default)]
pub struct Model {
    nodes: Vec<NodeSlot>,
    node_ids: FastMap<Arc<str>, NodeId>,
    free_slots: Vec<NodeId>,
    node_count: usize,
    zones: Vec<Arc<str>>,
    zone_ids: HashMap<Arc<str>, ZoneId>,
    zone_nodes: Vec<Vec<NodeId>>,
    hosts: FastMap<Arc<str>, Vec<NodeId>>,
    pods: FastMap<Arc<str>, PodObj>,
    groups: NsMap<Vec<Arc<str>>>,
    pvs: FastMap<Arc<str>, Arc<PvObj>>,
    pvs_by_host: FastMap<Arc<str>, Vec<Arc<PvObj>>>,
    pvs_pinned_other: BTreeSet<Arc<str>>,
    pv_by_claim: NsMap<Arc<str>>,
    pvcs: HashMap<Arc<str>, BTreeMap<Arc<str>, PvcObj>>,
    pvc_count: usize,
    classes: HashMap<Arc<str>, ClassObj>,
    caps: HashMap<Arc<str>, CapObj>,
    caps_by_class: HashMap<Arc<str>, ClassCaps>,
    statefulsets: NsMap<StsObj>,
    sts_count: usize,
}

fn remove_from<T: PartialEq>(v: &mut Vec<T>, item: &T) {
    if let Some(i) = v.iter().position(|x| x == item) {
        v.swap_remove(i);
    }
}

// === reads ===

impl Model {
    /// Number of objects of a kind.
    #[must_use]
    pub fn count(&self, kind: Kind) -> usize {
        match kind {
            Kind::Node => self.node_count,
            Kind::Pod => self.pods.len(),
            Kind::PersistentVolume => self.pvs.len(),
            Kind::PersistentVolumeClaim => self.pvc_count,
            Kind::StorageClass => self.classes.len(),
            Kind::CsiStorageCapacity => self.caps.len(),
            Kind::StatefulSet => self.sts_count,
        }
    }

    /// The slot id of a node name.
    #[must_use]
    pub fn node_id(&self, name: &str) -> Option<NodeId> {
        self.node_ids.get(name).copied()
    }

    /// A node slot.
    #[must_use]
    pub fn slot(&self, id: NodeId) -> &NodeSlot {
        &self.nodes[id as usize]
    }

    /// Number of slots (an upper bound of node ids).
    #[must_use]
    pub fn slot_count(&self) -> usize {
        self.nodes.len()
    }

    /// Every existing node, with its id.
    pub fn nodes(&self) -> impl Iterator<Item = (NodeId, &NodeSlot, &NodeObj)> {
        self.nodes.iter().enumerate().filter_map(|(i, s)| s.obj.as_ref().map(|o| (i as NodeId, s, o)))
    }

    /// Requested cpu summed over every node slot (a cheap checksum for tests and metrics).
    #[must_use]
    pub fn nodes_total_cpu(&self) -> i64 {
        self.nodes.iter().map(|s| s.agg.cpu_m).sum()
    }

    /// Zone names by id.
    #[must_use]
    pub fn zones(&self) -> &[Arc<str>] {
        &self.zones
    }

    /// Id of a zone name.
    #[must_use]
    pub fn zone_id(&self, zone: &str) -> Option<ZoneId> {
        self.zone_ids.get(zone).copied()
    }

    /// Name of a zone id.
    #[must_use]
    pub fn zone_name(&self, id: ZoneId) -> &str {
        self.zones.get(usize::from(id)).map_or("", |z| z.as_ref())
    }

    /// Existing nodes of a zone.
    #[must_use]
    pub fn zone_nodes(&self, id: ZoneId) -> &[NodeId] {
        self.zone_nodes.get(usize::from(id)).map_or(&[], Vec::as_slice)
    }

    /// Existing nodes whose hostname label is `host`.
    #[must_use]
    pub fn nodes_with_host(&self, host: &str) -> &[NodeId] {
        self.hosts.get(host).map_or(&[], Vec::as_slice)
    }

    /// A pod by uid.
    #[must_use]
    pub fn pod(&self, uid: &str) -> Option<&PodObj> {
        self.pods.get(uid)
    }

    /// Every pod.
    pub fn pods(&self) -> impl Iterator<Item = &PodObj> {
        self.pods.values()
    }

    /// Opted-in pods of a group (terminating ones included; callers decide).
    pub fn group_members<'a>(&'a self, namespace: &str, group: &str) -> impl Iterator<Item = &'a PodObj> + 'a {
        self.groups.get(namespace).and_then(|g| g.get(group)).into_iter().flatten().filter_map(|uid| self.pods.get(uid))
    }

    /// A StatefulSet.
    #[must_use]
    pub fn statefulset(&self, namespace: &str, name: &str) -> Option<&StsObj> {
        self.statefulsets.get(namespace)?.get(name)
    }

    /// A PVC.
    #[must_use]
    pub fn pvc(&self, namespace: &str, name: &str) -> Option<&PvcObj> {
        self.pvcs.get(namespace)?.get(name)
    }

    /// PVCs of a namespace whose name starts with `prefix`, in name order.
    pub fn pvcs_with_prefix<'a>(&'a self, namespace: &str, prefix: &'a str) -> impl Iterator<Item = &'a PvcObj> + 'a {
        self.pvcs.get(namespace).into_iter().flat_map(move |m| {
            m.range::<str, _>((std::ops::Bound::Included(prefix), std::ops::Bound::Unbounded))
                .take_while(move |(k, _)| k.starts_with(prefix))
                .map(|(_, v)| v)
        })
    }

    /// A PV.
    #[must_use]
    pub fn pv(&self, name: &str) -> Option<&PvObj> {
        self.pvs.get(name).map(AsRef::as_ref)
    }

    /// The PV bound to a claim: the claim's `volumeName`, else a PV whose `claimRef` names it.
    #[must_use]
    pub fn pv_for_claim(&self, namespace: &str, claim: &str) -> Option<&PvObj> {
        if let Some(v) = self.pvc(namespace, claim).and_then(|c| c.volume.as_ref()) {
            return self.pv(v);
        }
        let name = self.pv_by_claim.get(namespace)?.get(claim)?;
        self.pv(name)
    }

    /// PVs pinned (by hostname affinity) to `host`.
    pub fn pvs_on_host<'a>(&'a self, host: &str) -> impl Iterator<Item = &'a PvObj> + 'a {
        self.pvs_by_host.get(host).into_iter().flatten().map(AsRef::as_ref)
    }

    /// PVs with a node affinity that does not simply name hosts.
    pub fn pvs_pinned_other(&self) -> impl Iterator<Item = &PvObj> {
        self.pvs_pinned_other.iter().filter_map(|n| self.pv(n))
    }

    /// Every PV.
    pub fn pvs(&self) -> impl Iterator<Item = &PvObj> {
        self.pvs.values().map(AsRef::as_ref)
    }

    /// A StorageClass.
    #[must_use]
    pub fn class(&self, name: &str) -> Option<&ClassObj> {
        self.classes.get(name)
    }

    /// True when some CSIStorageCapacity object exists for the class.
    #[must_use]
    pub fn class_has_capacities(&self, class: &str) -> bool {
        self.caps_by_class.get(class).is_some_and(|c| !c.by_host.is_empty() || !c.other.is_empty())
    }

    /// CSIStorageCapacity objects of a class that may cover a node with hostname `host`.
    pub fn capacities_for<'a>(&'a self, class: &str, host: &str) -> impl Iterator<Item = &'a CapObj> + 'a {
        let c = self.caps_by_class.get(class);
        let by_host = c.and_then(|c| c.by_host.get(host)).into_iter().flatten();
        let other = c.into_iter().flat_map(|c| c.other.iter());
        by_host.chain(other).filter_map(|k| self.caps.get(k))
    }
}

// === writes ===

impl Model {
    fn slot_for(&mut self, name: &Arc<str>) -> NodeId {
        if let Some(id) = self.node_ids.get(name) {
            return *id;
        }
        let slot = NodeSlot { name: name.clone(), obj: None, zone: None, agg: NodeAgg::default() };
        let id = match self.free_slots.pop() {
            Some(id) => {
                self.nodes[id as usize] = slot;
                id
            }
            None => {
                self.nodes.push(slot);
                u32::try_from(self.nodes.len() - 1).unwrap_or(u32::MAX)
            }
        };
        self.node_ids.insert(name.clone(), id);
        id
    }

    fn release_slot_if_unused(&mut self, id: NodeId) {
        let slot = &self.nodes[id as usize];
        if slot.obj.is_none() && slot.agg.is_empty() {
            let name = slot.name.clone();
            self.node_ids.remove(&name);
            self.nodes[id as usize].agg = NodeAgg::default();
            self.free_slots.push(id);
        }
    }

    fn zone_for(&mut self, zone: &Arc<str>) -> ZoneId {
        if let Some(id) = self.zone_ids.get(zone) {
            return *id;
        }
        self.zones.push(zone.clone());
        self.zone_nodes.push(Vec::new());
        let id = ZoneId::try_from(self.zones.len() - 1).unwrap_or(ZoneId::MAX);
        self.zone_ids.insert(zone.clone(), id);
        id
    }

    /// Adds or replaces a node.
    pub fn upsert_node(&mut self, node: NodeObj) {
        let id = self.slot_for(&node.name.clone());
        self.unindex_node(id);
        let zone = node.zone.clone().map(|z| self.zone_for(&z));
        if let Some(z) = zone {
            self.zone_nodes[usize::from(z)].push(id);
        }
        self.hosts.entry(node.hostname.clone()).or_default().push(id);
        let slot = &mut self.nodes[id as usize];
        slot.zone = zone;
        slot.obj = Some(node);
        self.node_count += 1;
    }

    fn unindex_node(&mut self, id: NodeId) {
        let slot = &mut self.nodes[id as usize];
        let Some(old) = slot.obj.take() else { return };
        if let Some(z) = slot.zone.take() {
            remove_from(&mut self.zone_nodes[usize::from(z)], &id);
        }
        if let Some(v) = self.hosts.get_mut(&old.hostname) {
            remove_from(v, &id);
            if v.is_empty() {
                self.hosts.remove(&old.hostname);
            }
        }
        self.node_count -= 1;
    }

    /// Removes a node (pods naming it keep their totals in its slot).
    pub fn delete_node(&mut self, name: &str) {
        if let Some(id) = self.node_id(name) {
            self.unindex_node(id);
            self.release_slot_if_unused(id);
        }
    }

    /// Replaces every node atomically with a fresh listing.
    pub fn replace_nodes(&mut self, nodes: Vec<NodeObj>) {
        let keep: HashSet<Arc<str>> = nodes.iter().map(|n| n.name.clone()).collect();
        let gone: Vec<Arc<str>> =
            self.nodes().filter(|(_, s, _)| !keep.contains(&s.name)).map(|(_, s, _)| s.name.clone()).collect();
        for name in gone {
            self.delete_node(&name);
        }
        for n in nodes {
            self.upsert_node(n);
        }
    }

    fn index_pod(&mut self, pod: &PodObj, sign: i64) {
        if let Some(node) = &pod.node {
            let id = self.slot_for(node);
            self.nodes[id as usize].agg.apply(pod, sign);
            if sign < 0 {
                self.release_slot_if_unused(id);
            }
        }
        if let Some(group) = pod.stowage.as_ref().and_then(|s| s.group.as_ref()) {
            let members = self.groups.entry(pod.namespace.clone()).or_default().entry(group.clone()).or_default();
            if sign > 0 {
                members.push(pod.uid.clone());
            } else {
                remove_from(members, &pod.uid);
                if members.is_empty()
                    && let Some(ns) = self.groups.get_mut(&pod.namespace)
                {
                    ns.remove(group);
                    if ns.is_empty() {
                        self.groups.remove(&pod.namespace);
                    }
                }
            }
        }
    }

    /// Adds or replaces a pod, moving its contributions between indexes.
    pub fn upsert_pod(&mut self, pod: PodObj) {
        if let Some(old) = self.pods.remove(&pod.uid) {
            self.index_pod(&old, -1);
        }
        self.index_pod(&pod, 1);
        self.pods.insert(pod.uid.clone(), pod);
    }

    /// Removes a pod by uid.
    pub fn delete_pod(&mut self, uid: &str) -> Option<PodObj> {
        let old = self.pods.remove(uid)?;
        self.index_pod(&old, -1);
        Some(old)
    }

    /// Replaces every pod atomically with a fresh listing.
    pub fn replace_pods(&mut self, pods: Vec<PodObj>) -> Vec<Arc<str>> {
        let keep: HashSet<Arc<str>> = pods.iter().map(|p| p.uid.clone()).collect();
        let gone: Vec<Arc<str>> = self.pods.keys().filter(|u| !keep.contains(*u)).cloned().collect();
        for uid in &gone {
            self.delete_pod(uid);
        }
        for p in pods {
            self.upsert_pod(p);
        }
        gone
    }

    fn index_pv(&mut self, pv: &Arc<PvObj>, add: bool) {
        if let Some(hosts) = &pv.hosts {
            for h in hosts.iter() {
                let v = self.pvs_by_host.entry(h.clone()).or_default();
                if add {
                    v.push(pv.clone());
                } else {
                    v.retain(|x| x.name != pv.name);
                    if v.is_empty() {
                        self.pvs_by_host.remove(h);
                    }
                }
            }
        } else if pv.pin.is_some() {
            if add {
                self.pvs_pinned_other.insert(pv.name.clone());
            } else {
                self.pvs_pinned_other.remove(&pv.name);
            }
        }
        if let Some((ns, claim)) = &pv.claim {
            if add {
                self.pv_by_claim.entry(ns.clone()).or_default().insert(claim.clone(), pv.name.clone());
            } else if let Some(m) = self.pv_by_claim.get_mut(ns) {
                if m.get(claim) == Some(&pv.name) {
                    m.remove(claim);
                }
                if m.is_empty() {
                    self.pv_by_claim.remove(ns);
                }
            }
        }
    }

    /// Adds or replaces a PV.
    pub fn upsert_pv(&mut self, pv: PvObj) {
        if let Some(old) = self.pvs.remove(&pv.name) {
            self.index_pv(&old, false);
        }
        let pv = Arc::new(pv);
        self.index_pv(&pv, true);
        self.pvs.insert(pv.name.clone(), pv);
    }

    /// Removes a PV.
    pub fn delete_pv(&mut self, name: &str) {
        if let Some(old) = self.pvs.remove(name) {
            self.index_pv(&old, false);
        }
    }

    /// Replaces every PV atomically.
    pub fn replace_pvs(&mut self, pvs: Vec<PvObj>) {
        self.pvs.clear();
        self.pvs_by_host.clear();
        self.pvs_pinned_other.clear();
        self.pv_by_claim.clear();
        for pv in pvs {
            self.upsert_pv(pv);
        }
    }

    /// Adds or replaces a PVC.
    pub fn upsert_pvc(&mut self, pvc: PvcObj) {
        let ns = self.pvcs.entry(pvc.namespace.clone()).or_default();
        if ns.insert(pvc.name.clone(), pvc).is_none() {
            self.pvc_count += 1;
        }
    }

    /// Removes a PVC.
    pub fn delete_pvc(&mut self, namespace: &str, name: &str) {
        if let Some(ns) = self.pvcs.get_mut(namespace) {
            if ns.remove(name).is_some() {
                self.pvc_count -= 1;
            }
            if ns.is_empty() {
                self.pvcs.remove(namespace);
            }
        }
    }

    /// Replaces every PVC atomically.
    pub fn replace_pvcs(&mut self, pvcs: Vec<PvcObj>) {
        self.pvcs.clear();
        self.pvc_count = 0;
        for p in pvcs {
            self.upsert_pvc(p);
        }
    }

    /// Adds or replaces a StorageClass.
    pub fn upsert_class(&mut self, class: ClassObj) {
        self.classes.insert(class.name.clone(), class);
    }

    /// Removes a StorageClass.
    pub fn delete_class(&mut self, name: &str) {
        self.classes.remove(name);
    }

    /// Replaces every StorageClass atomically.
    pub fn replace_classes(&mut self, classes: Vec<ClassObj>) {
        self.classes = classes.into_iter().map(|c| (c.name.clone(), c)).collect();
    }

    fn index_cap(&mut self, cap: &CapObj, add: bool) {
        let c = self.caps_by_class.entry(cap.class.clone()).or_default();
        let list = match &cap.host {
            Some(h) => c.by_host.entry(h.clone()).or_default(),
            None => &mut c.other,
        };
        if add {
            list.push(cap.key.clone());
        } else {
            remove_from(list, &cap.key);
            if list.is_empty()
                && let Some(h) = &cap.host
            {
                c.by_host.remove(h);
            }
            if c.by_host.is_empty() && c.other.is_empty() {
                self.caps_by_class.remove(&cap.class);
            }
        }
    }

    /// Adds or replaces a CSIStorageCapacity.
    pub fn upsert_capacity(&mut self, cap: CapObj) {
        if let Some(old) = self.caps.remove(&cap.key) {
            self.index_cap(&old, false);
        }
        self.index_cap(&cap, true);
        self.caps.insert(cap.key.clone(), cap);
    }

    /// Removes a CSIStorageCapacity by `namespace/name`.
    pub fn delete_capacity(&mut self, key: &str) {
        if let Some(old) = self.caps.remove(key) {
            self.index_cap(&old, false);
        }
    }

    /// Replaces every CSIStorageCapacity atomically.
    pub fn replace_capacities(&mut self, caps: Vec<CapObj>) {
        self.caps.clear();
        self.caps_by_class.clear();
        for c in caps {
            self.upsert_capacity(c);
        }
    }

    /// Adds or replaces a StatefulSet.
    pub fn upsert_statefulset(&mut self, sts: StsObj) {
        let ns = self.statefulsets.entry(sts.namespace.clone()).or_default();
        if ns.insert(sts.name.clone(), sts).is_none() {
            self.sts_count += 1;
        }
    }

    /// Removes a StatefulSet.
    pub fn delete_statefulset(&mut self, namespace: &str, name: &str) {
        if let Some(ns) = self.statefulsets.get_mut(namespace) {
            if ns.remove(name).is_some() {
                self.sts_count -= 1;
            }
            if ns.is_empty() {
                self.statefulsets.remove(namespace);
            }
        }
    }

    /// Replaces every StatefulSet atomically.
    pub fn replace_statefulsets(&mut self, list: Vec<StsObj>) {
        self.statefulsets.clear();
        self.sts_count = 0;
        for s in list {
            self.upsert_statefulset(s);
        }
    }

    /// Recomputes per-pod derived facts (e.g. roles after a config change) and reindexes.
    pub fn reindex_pods(&mut self, f: impl Fn(&mut PodObj)) {
        let pods: Vec<PodObj> = self.pods.values().cloned().collect();
        for mut p in pods {
            f(&mut p);
            self.upsert_pod(p);
        }
    }

    /// Checks that every incremental index equals a recomputation from the stored objects.
    ///
    /// # Errors
    /// A description of the first mismatch.
    pub fn verify_indexes(&self) -> Result<(), String> {
        let mut aggs: HashMap<Arc<str>, NodeAgg> = HashMap::new();
        let mut groups: BTreeMap<GroupRef, BTreeSet<Arc<str>>> = BTreeMap::new();
        for p in self.pods.values() {
            if let Some(n) = &p.node {
                aggs.entry(n.clone()).or_default().apply(p, 1);
            }
            if let Some(g) = p.stowage.as_ref().and_then(|s| s.group.as_ref()) {
                groups.entry((p.namespace.clone(), g.clone())).or_default().insert(p.uid.clone());
            }
        }
        for (id, slot) in self.nodes.iter().enumerate() {
            if self.free_slots.contains(&(id as NodeId)) {
                continue;
            }
            let mut want = aggs.remove(&slot.name).unwrap_or_default();
            let mut got = slot.agg.clone();
            want.profiles.sort();
            got.profiles.sort();
            if want != got {
                return Err(format!("node {}: index {got:?} != recomputed {want:?}", slot.name));
            }
            if self.node_ids.get(&slot.name) != Some(&(id as NodeId)) {
                return Err(format!("node {}: id map out of sync", slot.name));
            }
            if slot.obj.is_none() && slot.agg.is_empty() {
                return Err(format!("node {}: empty slot not released", slot.name));
            }
            if let (Some(o), Some(z)) = (&slot.obj, slot.zone)
                && (o.zone.as_deref() != Some(self.zone_name(z)) || !self.zone_nodes(z).contains(&(id as NodeId)))
            {
                return Err(format!("node {}: zone index out of sync", slot.name));
            }
        }
        if let Some((n, _)) = aggs.into_iter().next() {
            return Err(format!("pods name node {n} but it has no slot"));
        }
        let indexed: usize = self.groups.values().flat_map(|g| g.values()).map(Vec::len).sum();
        let expected: usize = groups.values().map(BTreeSet::len).sum();
        if indexed != expected {
            return Err(format!("group index holds {indexed} members, recomputed {expected}"));
        }
        for ((ns, g), uids) in groups {
            let got: BTreeSet<Arc<str>> = self.group_members(&ns, &g).map(|p| p.uid.clone()).collect();
            if got != uids {
                return Err(format!("group {ns}/{g}: index {got:?} != recomputed {uids:?}"));
            }
        }
        if self.node_count != self.nodes.iter().filter(|s| s.obj.is_some()).count() {
            return Err("node count out of sync".to_owned());
        }
        Ok(())
    }
}
