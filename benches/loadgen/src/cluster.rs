//! The synthetic cluster of [`stowage_fixtures::realistic`] inside the extender: fed into a
//! [`ClusterCache`] as the watchers feed it, and wrapped in the [`Extender`] the benches call.

use std::sync::Arc;

use arc_swap::ArcSwap;
use k8s_openapi::api::storage::v1::CSIStorageCapacity;
use kube::runtime::watcher::Event;
use stowage_fixtures::realistic::{CONFIG, ClusterShape};
use stowage_policy::Config;
use stowage_scheduler::{ClusterCache, Extender, FakeBinder, NoopEvents, Options, cache::Cached, metrics::Metrics};

/// Feeds every kind of `shape` into `cache` through its appliers, as the watchers do after a
/// list (`Init`, one `InitApply` per object, `InitDone`), without holding the full objects.
pub fn feed(shape: &ClusterShape, cache: &ClusterCache) {
    list(cache, shape.nodes());
    list(cache, shape.storage_classes().into_iter());
    list::<CSIStorageCapacity>(cache, std::iter::empty());
    list(cache, shape.stateful_sets());
    list(cache, shape.persistent_volumes());
    list(cache, shape.persistent_volume_claims());
    list(cache, shape.pods());
}

/// An extender over a cache fed with `shape`, with the [`CONFIG`] profiles, a fake binder, no
/// events and unregistered metrics: the service the benches call.
#[must_use]
pub fn extender(shape: &ClusterShape) -> Arc<Extender> {
    let config = Config::from_yaml(CONFIG).unwrap_or_else(|e| panic!("the bench config is valid: {e}"));
    let cache = Arc::new(ClusterCache::new(&config));
    feed(shape, &cache);
    Arc::new(Extender::with_metrics(
        cache,
        Arc::new(ArcSwap::from_pointee(config)),
        Arc::new(FakeBinder::default()),
        Arc::new(NoopEvents),
        Metrics::unregistered(),
        Options::default(),
    ))
}

fn list<K: Cached>(cache: &ClusterCache, objects: impl Iterator<Item = K>) {
    let mut applier = cache.applier::<K>();
    applier.apply(Event::Init);
    for o in objects {
        applier.apply(Event::InitApply(o));
    }
    applier.apply(Event::InitDone);
}

#[cfg(test)]
mod tests {
    use stowage_scheduler::{cache::Kind, extender::v1::ExtenderArgs, framework::NOT_CHOSEN, snapshot::Snapshot};

    use super::*;

    #[test]
    fn a_small_cluster_feeds_the_cache_and_round_trips_as_a_snapshot() {
        let shape = ClusterShape::new(9, 4);
        let config = Config::from_yaml(CONFIG).unwrap();
        let cache = ClusterCache::new(&config);
        feed(&shape, &cache);
        assert!(cache.is_ready());
        let model = cache.read();
        assert_eq!(model.count(Kind::Node), 9);
        assert_eq!(model.count(Kind::Pod), shape.pod_count());
        assert_eq!(model.group_members("db", "g1").count(), 3);
        drop(model);

        let snapshot = Snapshot::from_yaml(&shape.snapshot_yaml()).unwrap();
        assert_eq!(snapshot.nodes.len(), 9);
        assert_eq!(snapshot.pods.len(), shape.pod_count());
        assert_eq!(snapshot.persistent_volumes.len(), 9 + 1);
        assert_eq!(snapshot.stateful_sets.len(), 3 + 1);
        assert!(snapshot.warnings.is_empty(), "{:?}", snapshot.warnings);
    }

    #[test]
    fn the_pending_member_fits_only_on_free_local_volumes_in_the_zone_without_a_sibling() {
        let shape = ClusterShape::new(60, 2);
        let ext = extender(&shape);
        let args =
            ExtenderArgs { pod: Some(shape.pending_member()), nodes: None, node_names: Some(shape.node_names()) };
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let result = rt.block_on(ext.filter(args));
        assert_eq!(result.error, "", "{result:?}");
        // Siblings run on node 0 (zone-0) and node 1 (zone-1), so zone-2 is the only one left,
        // and the unbound local claim needs an available PV (every 10th node has one).
        // The member is under cross-pod rules: filter reserves the best of the two and refuses
        // the other as not chosen.
        assert_eq!(result.node_names, Some(vec![ClusterShape::node_name(20)]));
        assert_eq!(result.failed_nodes.get(&ClusterShape::node_name(50)), Some(NOT_CHOSEN.message));
    }
}
