//! The watchers feeding the cache: one kube-runtime watcher per kind, with the default backoff.

use std::fmt::Debug;

use futures::StreamExt;
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
use tokio::task::{JoinHandle, JoinSet};

use super::{Cached, SharedCache};

/// Starts one watcher per cached kind and applies their events to `cache` until the returned
/// task is aborted (which stops every watcher). Await [`super::ClusterCache::wait_until_ready`]
/// for the first full sync.
///
/// Watch errors are retried with kube-runtime's default backoff; `403 Forbidden` is logged at
/// `warn` (RBAC needs fixing: `list` and `watch` on nodes, pods, persistentvolumes,
/// persistentvolumeclaims, storageclasses, csistoragecapacities and statefulsets), anything else
/// at `debug`.
#[must_use]
pub fn spawn_watchers(client: Client, cache: SharedCache) -> JoinHandle<()> {
    tokio::spawn(async move {
        // Owned by this task: aborting it drops the set, which aborts every watcher (detached
        // `tokio::spawn` handles would keep them running).
        let mut watchers = JoinSet::new();
        watchers.spawn(run::<Node>(Api::all(client.clone()), cache.clone()));
        watchers.spawn(run::<Pod>(Api::all(client.clone()), cache.clone()));
        watchers.spawn(run::<PersistentVolume>(Api::all(client.clone()), cache.clone()));
        watchers.spawn(run::<PersistentVolumeClaim>(Api::all(client.clone()), cache.clone()));
        watchers.spawn(run::<StorageClass>(Api::all(client.clone()), cache.clone()));
        watchers.spawn(run::<CSIStorageCapacity>(Api::all(client.clone()), cache.clone()));
        watchers.spawn(run::<StatefulSet>(Api::all(client), cache));
        while watchers.join_next().await.is_some() {}
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

#[cfg(test)]
mod tests {
    use std::{convert::Infallible, sync::Arc, time::Duration};

    use stowage_policy::Config;

    use super::*;
    use crate::cache::ClusterCache;

    /// An API server that never answers.
    fn silent_cluster() -> Client {
        let service = tower::service_fn(|_: http::Request<kube::client::Body>| async {
            std::future::pending::<Result<http::Response<kube::client::Body>, Infallible>>().await
        });
        Client::new(service, "default")
    }

    async fn holders_become(cache: &SharedCache, count: usize) -> bool {
        tokio::time::timeout(Duration::from_secs(10), async {
            while Arc::strong_count(cache) != count {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .is_ok()
    }

    /// `serve` stops the watchers by aborting the task; every per-kind watcher (each holding
    /// the cache) must stop with it.
    #[tokio::test]
    async fn aborting_the_task_stops_every_watcher() {
        let cache: SharedCache = Arc::new(ClusterCache::new(&Config::default()));
        let task = spawn_watchers(silent_cluster(), Arc::clone(&cache));
        assert!(holders_become(&cache, 1 + 7).await, "seven watchers hold the cache");
        task.abort();
        assert!(task.await.is_err_and(|e| e.is_cancelled()));
        assert!(holders_become(&cache, 1).await, "{} holders left after the abort", Arc::strong_count(&cache));
    }
}
