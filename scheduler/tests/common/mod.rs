//! Shared helpers for the integration tests.
#![allow(clippy::unwrap_used, dead_code, missing_docs)]

use std::sync::Arc;

use arc_swap::ArcSwap;
use k8s_openapi::api::core::v1::Pod;
use stowage_fixtures::{PodBuilder, node};
use stowage_policy::Config;
use stowage_scheduler::binder::Binder as _;
use stowage_scheduler::{
    ClusterCache, Extender, FakeBinder, MemoryEvents, Options,
    cache::Cached,
    extender::v1::{ExtenderArgs, ExtenderBindingArgs, ExtenderFilterResult, HostPriority},
    metrics::Metrics,
    snapshot::Snapshot,
};

pub struct World {
    pub cache: Arc<ClusterCache>,
    pub ext: Arc<Extender>,
    pub binder: Arc<FakeBinder>,
    pub events: Arc<MemoryEvents>,
    pub config: Config,
}

/// The config used by most scenarios: profile `pg` with the quorum guard and required spreads.
pub const PG_CONFIG: &str = r"
profiles:
  pg:
    quorum: zone
    zoneSpread: required
    nodeSpread: required
    localData: require
";

/// 3 zones x 2 nodes: a1 a2 b1 b2 c1 c2, 8 cpu / 32Gi each.
pub fn six_nodes() -> Vec<k8s_openapi::api::core::v1::Node> {
    ["a", "b", "c"].iter().flat_map(|z| (1..=2).map(move |i| node(&format!("{z}{i}"), Some(z), "8", "32Gi"))).collect()
}

pub fn world(config_yaml: &str, snap: Snapshot) -> World {
    world_with(config_yaml, snap, Options::default())
}

pub fn world_with(config_yaml: &str, snap: Snapshot, options: Options) -> World {
    let config = Config::from_yaml(config_yaml).unwrap();
    let cache = Arc::new(ClusterCache::from_snapshot(&snap, &config));
    let binder = Arc::new(FakeBinder::default());
    for p in &snap.pods {
        binder.add_pod(
            p.metadata.namespace.as_deref().unwrap_or("default"),
            p.metadata.name.as_deref().unwrap(),
            p.metadata.uid.as_deref().unwrap(),
            p.spec.as_ref().and_then(|s| s.node_name.as_deref()),
        );
    }
    let events = Arc::new(MemoryEvents::default());
    let ext = Arc::new(Extender::with_metrics(
        cache.clone(),
        Arc::new(ArcSwap::from_pointee(config.clone())),
        binder.clone(),
        events.clone(),
        Metrics::unregistered(),
        options,
    ));
    World { cache, ext, binder, events, config }
}

/// A pending member `pg-<i>` of StatefulSet `pg` (group pg, profile pg).
pub fn member(i: u32) -> PodBuilder {
    PodBuilder::new("db", &format!("pg-{i}"))
        .annotate("stowage.io/profile", "pg")
        .owned_by_statefulset("pg")
        .guaranteed("1", "2Gi")
}

pub fn args(pod: &Pod, nodes: &[&str]) -> ExtenderArgs {
    ExtenderArgs {
        pod: Some(pod.clone()),
        nodes: None,
        node_names: Some(nodes.iter().map(|s| (*s).to_owned()).collect()),
    }
}

pub const ALL: [&str; 6] = ["a1", "a2", "b1", "b2", "c1", "c2"];

impl World {
    pub async fn filter(&self, pod: &Pod, nodes: &[&str]) -> ExtenderFilterResult {
        self.ext.filter(args(pod, nodes)).await
    }

    pub fn prioritize(&self, pod: &Pod, nodes: &[&str]) -> Vec<HostPriority> {
        self.ext.prioritize(args(pod, nodes))
    }

    /// Filter, prioritize and pick the best node like the scheduler would (ties by name).
    pub async fn schedule(&self, pod: &Pod, nodes: &[&str]) -> Option<String> {
        let f = self.filter(pod, nodes).await;
        assert!(f.error.is_empty(), "{}", f.error);
        let feasible = f.node_names.unwrap();
        if feasible.is_empty() {
            return None;
        }
        let names: Vec<&str> = feasible.iter().map(String::as_str).collect();
        let mut scores = self.prioritize(pod, &names);
        scores.sort_by(|a, b| b.score.cmp(&a.score).then_with(|| a.host.cmp(&b.host)));
        Some(scores[0].host.clone())
    }

    /// Binds through the extender (the fake API learns about the pod first).
    pub async fn bind(&self, pod: &Pod, node: &str) -> String {
        let m = &pod.metadata;
        let (ns, name, uid) = (m.namespace.clone().unwrap(), m.name.clone().unwrap(), m.uid.clone().unwrap());
        if self.binder.current(&ns, &name).await.unwrap().is_none() {
            self.binder.add_pod(&ns, &name, &uid, None);
        }
        self.ext
            .bind(ExtenderBindingArgs { pod_name: name, pod_namespace: ns, pod_uid: uid, node: node.to_owned() })
            .await
            .error
    }

    /// The pod watcher sees `pod` (as given).
    pub fn watch(&self, pod: Pod) {
        self.cache.applier::<Pod>().apply(kube::runtime::watcher::Event::Apply(pod));
    }

    /// Applies any object as a watcher event.
    pub fn apply<K: Cached>(&self, obj: K) {
        self.cache.applier::<K>().apply(kube::runtime::watcher::Event::Apply(obj));
    }
}

/// The nodes that passed every filter rule: the nodes returned plus, for a pod under a cross-pod
/// rule (filter returns only the node it reserved), the feasible nodes it did not choose.
pub fn feasible(r: &ExtenderFilterResult) -> Vec<String> {
    let not_chosen = stowage_scheduler::framework::NOT_CHOSEN.message;
    let mut out = r.node_names.clone().unwrap_or_default();
    out.extend(r.failed_nodes.0.iter().filter(|(_, why)| why.as_ref() == not_chosen).map(|(n, _)| n.clone()));
    out.sort();
    out
}

pub fn zone_of(node: &str) -> &str {
    &node[..1]
}
