//! The watchers feeding the cache: one kube-runtime watcher per kind, with the default backoff.

use std::fmt::Debug;

use futures::{StreamExt, future::join_all};
use k8s_openapi::api::{
    apps::v1::StatefulSet,
    core::v1::{Node, PersistentVolume, PersistentVolumeClaim, Pod},
    storage::v1::{CSIStorageCapacity, StorageClass},
};
use kube::{
    Api, Client, Resource,
    runtime::{WatchStreamExt, watcher},
};
use serde::de::DeserializeOwned;
use tokio::task::JoinHandle;

use super::{Cached, SharedCache};

/// Starts one watcher per cached kind and applies their events to `cache` until the returned
/// task is aborted. Await [`super::ClusterCache::wait_until_ready`] for the first full sync.
///
/// Watch errors are retried with kube-runtime's default backoff; `403 Forbidden` is logged at
/// `warn` (RBAC needs fixing: `list` and `watch` on nodes, pods, persistentvolumes,
/// persistentvolumeclaims, storageclasses, csistoragecapacities and statefulsets), anything else
/// at `debug`.
#[must_use]
pub fn spawn_watchers(client: Client, cache: SharedCache) -> JoinHandle<()> {
    tokio::spawn(async move {
        join_all([
            tokio::spawn(run::<Node>(Api::all(client.clone()), cache.clone())),
            tokio::spawn(run::<Pod>(Api::all(client.clone()), cache.clone())),
            tokio::spawn(run::<PersistentVolume>(Api::all(client.clone()), cache.clone())),
            tokio::spawn(run::<PersistentVolumeClaim>(Api::all(client.clone()), cache.clone())),
            tokio::spawn(run::<StorageClass>(Api::all(client.clone()), cache.clone())),
            tokio::spawn(run::<CSIStorageCapacity>(Api::all(client.clone()), cache.clone())),
            tokio::spawn(run::<StatefulSet>(Api::all(client), cache)),
        ])
        .await;
    })
}

async fn run<K>(api: Api<K>, cache: SharedCache)
where
    K: Cached + Resource + DeserializeOwned + Debug,
    K::DynamicType: Default,
{
    // `any_semantic` lets the apiserver serve the initial list from its watch cache.
    let stream = watcher(api, watcher::Config::default().any_semantic()).default_backoff();
    let mut stream = std::pin::pin!(stream);
    let mut applier = cache.applier::<K>();
    while let Some(event) = stream.next().await {
        match event {
            Ok(event) => applier.apply(event),
            Err(err) => {
                let forbidden = matches!(&err,
                    watcher::Error::InitialListFailed(kube::Error::Api(s))
                    | watcher::Error::WatchStartFailed(kube::Error::Api(s)) if s.code == 403);
                if forbidden {
                    tracing::warn!(kind = K::KIND.as_str(), error = %err, "watch forbidden; check RBAC");
                } else {
                    tracing::debug!(kind = K::KIND.as_str(), error = %err, "watch failed; retrying with backoff");
                }
            }
        }
    }
}
