//! The cluster cache: trimmed copies of the objects scoring needs, with incremental indexes.
//!
//! ## Why not `kube::runtime::reflector::Store<Pod>`
//! A reflector store keeps every full object. A full Pod is several KiB of JSON-derived structs
//! (managed fields, env, probes, volumes, status); 150,000 of them alone would exceed the
//! extender's 256 MiB memory target. The cache therefore applies watcher events to its **own
//! trimmed model** ([`objects`]): a pod keeps its uid, name, node, nominated node, a few flags,
//! its summed requests and — for opted-in pods only — its policy facts and claim names (roughly
//! 200–300 bytes). Repeated strings (namespaces, node names, label keys and values, storage
//! classes) are interned `Arc<str>`.
//!
//! ## Consistency
//! - One `parking_lot::RwLock` guards the [`Model`]; it is never held across an `.await`.
//! - Every add/update/delete moves an object's contribution between indexes (per node: requests,
//!   pod counts, stateful pods, noisy neighbours, primaries, per-profile counts; per group:
//!   members; per namespace: PVCs; PVs per host and by claim).
//! - A relist (`Init` … `InitApply`* … `InitDone`) is buffered outside the lock and swapped in
//!   under one write lock, so readers never see a half-listed kind.
//! - The cache is **ready** once every kind has delivered `InitDone` at least once; readiness is
//!   a one-way latch (a later relist keeps serving the previous state until it completes).

mod interner;
pub mod model;
pub mod objects;
pub mod resources;
pub mod selector;
mod watch;

use std::sync::{
    Arc,
    atomic::{AtomicBool, AtomicUsize, Ordering},
};

use k8s_openapi::api::{
    apps::v1::StatefulSet,
    core::v1::{Node, PersistentVolume, PersistentVolumeClaim, Pod},
    storage::v1::{CSIStorageCapacity, StorageClass},
};
use kube::runtime::watcher;
use parking_lot::{RwLock, RwLockReadGuard};
use stowage_policy::Config;
use tokio::sync::watch as tokio_watch;

pub use interner::Interner;
pub use model::{Kind, Model, NodeId, ZoneId};
pub use objects::CacheConfig;
pub use watch::spawn_watchers;

use crate::{ledger::Ledger, snapshot::Snapshot};
use objects::{CapObj, ClassObj, NodeObj, PodObj, PvObj, PvcObj, StsObj, role_from_labels};

/// Sync state of one kind.
#[derive(Debug, Default)]
struct KindState {
    synced: AtomicBool,
    objects: AtomicUsize,
}

/// Sync state and object count of one kind (for metrics and `/readyz`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KindStatus {
    /// The kind.
    pub kind: Kind,
    /// The kind's watcher has completed at least one full list.
    pub synced: bool,
    /// Objects currently cached.
    pub objects: usize,
}

/// The cluster cache shared by the watchers and the extender.
#[derive(Debug)]
pub struct ClusterCache {
    model: RwLock<Model>,
    interner: Interner,
    config: RwLock<Arc<CacheConfig>>,
    kinds: [KindState; 7],
    ready: tokio_watch::Sender<bool>,
    ledger: Ledger,
}

impl ClusterCache {
    /// An empty, not yet synced cache.
    #[must_use]
    pub fn new(config: &Config) -> Self {
        Self {
            model: RwLock::new(Model::default()),
            interner: Interner::default(),
            config: RwLock::new(Arc::new(CacheConfig::from_config(config))),
            kinds: Default::default(),
            ready: tokio_watch::Sender::new(false),
            ledger: Ledger::new(),
        }
    }

    /// A synced cache holding a snapshot's objects (for `explain` and tests).
    #[must_use]
    pub fn from_snapshot(snapshot: &Snapshot, config: &Config) -> Self {
        let cache = Self::new(config);
        cache.applier::<Node>().replace(&snapshot.nodes);
        cache.applier::<Pod>().replace(&snapshot.pods);
        cache.applier::<PersistentVolume>().replace(&snapshot.persistent_volumes);
        cache.applier::<PersistentVolumeClaim>().replace(&snapshot.persistent_volume_claims);
        cache.applier::<StorageClass>().replace(&snapshot.storage_classes);
        cache.applier::<CSIStorageCapacity>().replace(&snapshot.csi_storage_capacities);
        cache.applier::<StatefulSet>().replace(&snapshot.stateful_sets);
        cache
    }

    /// Read access to the model. Never hold the guard across an `.await`.
    pub fn read(&self) -> RwLockReadGuard<'_, Model> {
        self.model.read()
    }

    /// The ledger of in-flight placements.
    #[must_use]
    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    /// The interner shared by trimmed objects.
    #[must_use]
    pub fn interner(&self) -> &Interner {
        &self.interner
    }

    /// The config facts used while trimming.
    #[must_use]
    pub fn cache_config(&self) -> Arc<CacheConfig> {
        self.config.read().clone()
    }

    /// True once every kind has completed a full list.
    #[must_use]
    pub fn is_ready(&self) -> bool {
        *self.ready.borrow()
    }

    /// Resolves once the cache is ready.
    pub async fn wait_until_ready(&self) {
        let mut rx = self.ready.subscribe();
        // The sender lives as long as `self`, so this only ends when ready.
        let _ = rx.wait_for(|r| *r).await;
    }

    /// Per-kind sync state and object counts.
    #[must_use]
    pub fn status(&self) -> Vec<KindStatus> {
        Kind::ALL
            .iter()
            .map(|k| {
                let s = &self.kinds[k.index()];
                KindStatus {
                    kind: *k,
                    synced: s.synced.load(Ordering::Acquire),
                    objects: s.objects.load(Ordering::Relaxed),
                }
            })
            .collect()
    }

    /// `spec.replicas` of a cached StatefulSet (also used by the webhook for member counts).
    #[must_use]
    pub fn statefulset_replicas(&self, namespace: &str, name: &str) -> Option<u32> {
        self.read().statefulset(namespace, name).map(|s| s.replicas)
    }

    /// Applies a config change: label keys for zones, hosts and roles, profile scopes. Node
    /// zones, pod roles and which pods count are recomputed from the stored labels; PV host
    /// pinning follows on the next PV event.
    pub fn reconfigure(&self, config: &Config) {
        let new = CacheConfig::from_config(config);
        if **self.config.read() == new {
            return;
        }
        *self.config.write() = Arc::new(new.clone());
        let mut model = self.model.write();
        let nodes: Vec<NodeObj> = model.nodes().map(|(_, _, o)| o.clone()).collect();
        let nodes = nodes
            .into_iter()
            .map(|mut n| {
                n.zone = n.labels.get(&new.zone_label).filter(|z| !z.is_empty()).map(|z| self.interner.intern(z));
                n.has_hostname_label = n.labels.get(&new.hostname_label).is_some();
                n.hostname =
                    n.labels.get(&new.hostname_label).map_or_else(|| n.name.clone(), |h| self.interner.intern(h));
                n
            })
            .collect();
        model.replace_nodes(nodes);
        model.reindex_pods(|p| {
            if let Some(s) = p.stowage.as_mut() {
                s.counted = new.scopes.allows(&s.profile, &p.namespace);
                s.role = s.role_annotation.or_else(|| role_from_labels(&s.labels, &new));
            }
        });
    }

    /// An event applier for one kind (one per watcher).
    #[must_use]
    pub fn applier<K: Cached>(&self) -> Applier<'_, K> {
        Applier { cache: self, buffer: None }
    }

    fn mark_synced(&self, kind: Kind) {
        self.kinds[kind.index()].synced.store(true, Ordering::Release);
        if self.kinds.iter().all(|k| k.synced.load(Ordering::Acquire)) {
            self.ready.send_if_modified(|r| !std::mem::replace(r, true));
        }
    }

    fn update_count(&self, kind: Kind, model: &Model) {
        self.kinds[kind.index()].objects.store(model.count(kind), Ordering::Relaxed);
    }
}

/// A Kubernetes kind the cache watches, with its trimmed form.
pub trait Cached: Clone + Send + Sync + 'static {
    /// The trimmed object.
    type Obj: Send;
    /// The cache's name for the kind.
    const KIND: Kind;
    /// Trims an object; `None` drops it (e.g. a terminal pod counts as deleted).
    fn trim(&self, interner: &Interner, cfg: &CacheConfig) -> Option<Self::Obj>;
    /// Adds or replaces a trimmed object.
    fn upsert(cache: &ClusterCache, model: &mut Model, obj: Self::Obj);
    /// Removes the object (identified from the untrimmed form).
    fn delete(&self, cache: &ClusterCache, model: &mut Model);
    /// Replaces all objects of the kind.
    fn replace(cache: &ClusterCache, model: &mut Model, objs: Vec<Self::Obj>);
}

fn name_of(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> (&str, &str) {
    (meta.namespace.as_deref().unwrap_or("default"), meta.name.as_deref().unwrap_or_default())
}

impl Cached for Node {
    type Obj = NodeObj;
    const KIND: Kind = Kind::Node;
    fn trim(&self, i: &Interner, c: &CacheConfig) -> Option<NodeObj> {
        NodeObj::from_k8s(self, i, c)
    }
    fn upsert(_: &ClusterCache, m: &mut Model, o: NodeObj) {
        m.upsert_node(o);
    }
    fn delete(&self, _: &ClusterCache, m: &mut Model) {
        m.delete_node(name_of(&self.metadata).1);
    }
    fn replace(_: &ClusterCache, m: &mut Model, objs: Vec<NodeObj>) {
        m.replace_nodes(objs);
    }
}

impl Cached for Pod {
    type Obj = PodObj;
    const KIND: Kind = Kind::Pod;
    fn trim(&self, i: &Interner, c: &CacheConfig) -> Option<PodObj> {
        PodObj::from_k8s(self, i, c)
    }
    fn upsert(cache: &ClusterCache, m: &mut Model, o: PodObj) {
        if o.node.is_some() {
            cache.ledger.confirm(&o.uid);
        } else {
            cache.ledger.nominated(&o.uid, o.nominated.as_deref());
        }
        m.upsert_pod(o);
    }
    fn delete(&self, cache: &ClusterCache, m: &mut Model) {
        if let Some(uid) = self.metadata.uid.as_deref() {
            m.delete_pod(uid);
            cache.ledger.forget(uid);
        }
    }
    fn replace(cache: &ClusterCache, m: &mut Model, objs: Vec<PodObj>) {
        for p in &objs {
            if p.node.is_some() {
                cache.ledger.confirm(&p.uid);
            } else {
                cache.ledger.nominated(&p.uid, p.nominated.as_deref());
            }
        }
        for uid in m.replace_pods(objs) {
            cache.ledger.forget(&uid);
        }
    }
}

impl Cached for PersistentVolume {
    type Obj = PvObj;
    const KIND: Kind = Kind::PersistentVolume;
    fn trim(&self, i: &Interner, c: &CacheConfig) -> Option<PvObj> {
        PvObj::from_k8s(self, i, c)
    }
    fn upsert(_: &ClusterCache, m: &mut Model, o: PvObj) {
        m.upsert_pv(o);
    }
    fn delete(&self, _: &ClusterCache, m: &mut Model) {
        m.delete_pv(name_of(&self.metadata).1);
    }
    fn replace(_: &ClusterCache, m: &mut Model, objs: Vec<PvObj>) {
        m.replace_pvs(objs);
    }
}

impl Cached for PersistentVolumeClaim {
    type Obj = PvcObj;
    const KIND: Kind = Kind::PersistentVolumeClaim;
    fn trim(&self, i: &Interner, _: &CacheConfig) -> Option<PvcObj> {
        PvcObj::from_k8s(self, i)
    }
    fn upsert(_: &ClusterCache, m: &mut Model, o: PvcObj) {
        m.upsert_pvc(o);
    }
    fn delete(&self, _: &ClusterCache, m: &mut Model) {
        let (ns, name) = name_of(&self.metadata);
        m.delete_pvc(ns, name);
    }
    fn replace(_: &ClusterCache, m: &mut Model, objs: Vec<PvcObj>) {
        m.replace_pvcs(objs);
    }
}

impl Cached for StorageClass {
    type Obj = ClassObj;
    const KIND: Kind = Kind::StorageClass;
    fn trim(&self, i: &Interner, _: &CacheConfig) -> Option<ClassObj> {
        ClassObj::from_k8s(self, i)
    }
    fn upsert(_: &ClusterCache, m: &mut Model, o: ClassObj) {
        m.upsert_class(o);
    }
    fn delete(&self, _: &ClusterCache, m: &mut Model) {
        m.delete_class(name_of(&self.metadata).1);
    }
    fn replace(_: &ClusterCache, m: &mut Model, objs: Vec<ClassObj>) {
        m.replace_classes(objs);
    }
}

impl Cached for CSIStorageCapacity {
    type Obj = CapObj;
    const KIND: Kind = Kind::CsiStorageCapacity;
    fn trim(&self, i: &Interner, c: &CacheConfig) -> Option<CapObj> {
        CapObj::from_k8s(self, i, c)
    }
    fn upsert(_: &ClusterCache, m: &mut Model, o: CapObj) {
        m.upsert_capacity(o);
    }
    fn delete(&self, _: &ClusterCache, m: &mut Model) {
        let (ns, name) = name_of(&self.metadata);
        m.delete_capacity(&format!("{ns}/{name}"));
    }
    fn replace(_: &ClusterCache, m: &mut Model, objs: Vec<CapObj>) {
        m.replace_capacities(objs);
    }
}

impl Cached for StatefulSet {
    type Obj = StsObj;
    const KIND: Kind = Kind::StatefulSet;
    fn trim(&self, i: &Interner, _: &CacheConfig) -> Option<StsObj> {
        StsObj::from_k8s(self, i)
    }
    fn upsert(_: &ClusterCache, m: &mut Model, o: StsObj) {
        m.upsert_statefulset(o);
    }
    fn delete(&self, _: &ClusterCache, m: &mut Model) {
        let (ns, name) = name_of(&self.metadata);
        m.delete_statefulset(ns, name);
    }
    fn replace(_: &ClusterCache, m: &mut Model, objs: Vec<StsObj>) {
        m.replace_statefulsets(objs);
    }
}

/// Applies one kind's watcher events to the cache, buffering relists.
#[derive(Debug)]
pub struct Applier<'c, K: Cached> {
    cache: &'c ClusterCache,
    buffer: Option<Vec<K::Obj>>,
}

impl<K: Cached> Applier<'_, K> {
    /// Applies one watcher event.
    pub fn apply(&mut self, event: watcher::Event<K>) {
        let cache = self.cache;
        match event {
            watcher::Event::Apply(obj) => {
                let cfg = cache.config.read().clone();
                let trimmed = obj.trim(&cache.interner, &cfg);
                let mut model = cache.model.write();
                match trimmed {
                    Some(t) => K::upsert(cache, &mut model, t),
                    None => obj.delete(cache, &mut model),
                }
                cache.update_count(K::KIND, &model);
            }
            watcher::Event::Delete(obj) => {
                let mut model = cache.model.write();
                obj.delete(cache, &mut model);
                cache.update_count(K::KIND, &model);
            }
            watcher::Event::Init => self.buffer = Some(Vec::new()),
            watcher::Event::InitApply(obj) => {
                let cfg = cache.config.read().clone();
                if let Some(t) = obj.trim(&cache.interner, &cfg) {
                    self.buffer.get_or_insert_with(Vec::new).push(t);
                }
            }
            watcher::Event::InitDone => {
                let objs = self.buffer.take().unwrap_or_default();
                {
                    let mut model = cache.model.write();
                    K::replace(cache, &mut model, objs);
                    cache.update_count(K::KIND, &model);
                }
                cache.interner.collect_garbage();
                cache.mark_synced(K::KIND);
            }
        }
    }

    /// Replaces the kind with `objects` as one complete list (`Init`, `InitApply`*, `InitDone`).
    pub fn replace(&mut self, objects: &[K]) {
        self.apply(watcher::Event::Init);
        for o in objects {
            self.apply(watcher::Event::InitApply(o.clone()));
        }
        self.apply(watcher::Event::InitDone);
    }
}

/// Shared handle type.
pub type SharedCache = Arc<ClusterCache>;

#[cfg(test)]
mod tests;
