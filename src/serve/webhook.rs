//! The webhook server: the admission state (config, StatefulSet member counts, limits) and its
//! TLS listener.

use std::sync::Arc;

use arc_swap::ArcSwap;
use k8s_openapi::api::apps::v1::StatefulSet;
use kube::{
    Api,
    runtime::{WatchStreamExt as _, reflector, watcher},
};
use prometheus_client::registry::Registry;
use stowage_edge::serve_tls;
use stowage_policy::Config;
use stowage_webhook::{AdmissionMetrics, Limits, MemberSource, StaticMembers, WebhookState};
use tokio::{sync::watch, task::JoinSet};
use tracing::warn;

use super::{
    ReadyCheck,
    tasks::{bind, serve_options, server, stopped, until_stopped},
};
use crate::cli::ServeArgs;

/// Starts the webhook on `--webhook-addr`; returns its readiness check.
pub(super) async fn start(
    args: &ServeArgs,
    config: Arc<ArcSwap<Config>>,
    client: Option<&kube::Client>,
    tls: Arc<rustls::ServerConfig>,
    registry: &mut Registry,
    tasks: &mut JoinSet<anyhow::Result<()>>,
    stop: &watch::Receiver<bool>,
) -> anyhow::Result<ReadyCheck> {
    let (members, members_ready): (Arc<dyn MemberSource>, ReadyCheck) = match (client, &args.snapshot) {
        (Some(client), _) => statefulset_members(client.clone(), tasks, stop.clone()),
        (None, Some(path)) => {
            let snap = stowage_scheduler::snapshot::Snapshot::load(path)?;
            (Arc::new(crate::mutate_cmd::snapshot_members(&snap)), Box::new(|| Ok(())))
        }
        (None, None) => (Arc::new(StaticMembers::default()), Box::new(|| Ok(()))),
    };
    let state = Arc::new(
        WebhookState::new(config, AdmissionMetrics::register(registry))
            .with_members(members)
            .with_skip_namespaces(args.webhook_skip_namespaces.iter().filter(|n| !n.is_empty()).cloned().collect())
            .with_limits(Limits {
                max_body_bytes: args.webhook_max_body_bytes,
                max_large_bytes_in_flight: args.webhook_max_large_bytes_in_flight,
                timeout: args.webhook_timeout,
                ..Limits::default()
            }),
    );
    let listener = bind(args.webhook_addr, "webhook").await?;
    tasks.spawn(server(serve_tls(
        listener,
        tls,
        stowage_webhook::router(Arc::clone(&state)),
        serve_options(args),
        stopped(stop.clone()),
    )));
    state.set_ready(true);
    Ok(Box::new(move || {
        members_ready()?;
        if state.is_ready() { Ok(()) } else { Err("shutting down".to_owned()) }
    }))
}

/// Replica counts of StatefulSets from a trimmed reflector (the webhook's member source).
fn statefulset_members(
    client: kube::Client,
    tasks: &mut JoinSet<anyhow::Result<()>>,
    stop: watch::Receiver<bool>,
) -> (Arc<dyn MemberSource>, ReadyCheck) {
    let (reader, writer) = reflector::store::<StatefulSet>();
    let api: Api<StatefulSet> = Api::all(client);
    let stream = watcher(api, watcher::Config::default())
        .default_backoff()
        .modify(|sts| {
            // Keep only what the member count needs.
            sts.metadata.managed_fields = None;
            sts.metadata.annotations = None;
            sts.status = None;
            if let Some(spec) = sts.spec.as_mut() {
                spec.template = Default::default();
                spec.volume_claim_templates = None;
            }
        })
        .reflect(writer)
        .applied_objects();
    tasks.spawn(until_stopped(
        async move {
            use futures::StreamExt as _;
            let mut stream = std::pin::pin!(stream);
            while let Some(event) = stream.next().await {
                if let Err(e) = event {
                    warn!("StatefulSet watch: {e}");
                }
            }
        },
        stop.clone(),
    ));
    let synced = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = Arc::clone(&synced);
    let waiter = reader.clone();
    // Flags readiness once the first list is in, then waits for the stop like every other task:
    // `serve` takes a task that ends on its own for a failure and exits.
    tasks.spawn(until_stopped(
        async move {
            if waiter.wait_until_ready().await.is_ok() {
                flag.store(true, std::sync::atomic::Ordering::Release);
            }
            std::future::pending::<()>().await;
        },
        stop,
    ));
    let members = move |namespace: &str, name: &str| {
        let key = reflector::ObjectRef::new(name).within(namespace);
        reader.get(&key).and_then(|sts| sts.spec.as_ref().and_then(|s| s.replicas)).and_then(|r| u32::try_from(r).ok())
    };
    let ready: ReadyCheck = Box::new(move || {
        if synced.load(std::sync::atomic::Ordering::Acquire) {
            Ok(())
        } else {
            Err("StatefulSet cache has not synced yet".to_owned())
        }
    });
    (Arc::new(members), ready)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// An apiserver with no StatefulSets that holds every watch open.
    fn empty_cluster() -> kube::Client {
        let service = tower::service_fn(|request: axum::http::Request<kube::client::Body>| async move {
            if request.uri().query().unwrap_or_default().contains("watch=true") {
                std::future::pending::<()>().await;
            }
            let list = serde_json::json!({
                "apiVersion": "apps/v1", "kind": "StatefulSetList", "metadata": {"resourceVersion": "1"}, "items": []
            });
            let body = kube::client::Body::from(serde_json::to_vec(&list).unwrap());
            Ok::<_, std::convert::Infallible>(axum::http::Response::new(body))
        });
        kube::Client::new(service, "default")
    }

    /// `serve` treats a task that ends before a stop as a failure of the process, so the
    /// StatefulSet cache's tasks must keep running once it has synced.
    #[tokio::test]
    async fn the_statefulset_cache_tasks_run_until_stopped() {
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut tasks = JoinSet::new();
        let (_members, ready) = statefulset_members(empty_cluster(), &mut tasks, stop_rx);
        tokio::time::timeout(Duration::from_secs(10), async {
            while ready().is_err() {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .expect("the StatefulSet cache syncs");
        tokio::task::yield_now().await;
        assert!(tasks.try_join_next().is_none(), "a task ended on its own after the sync");

        stop_tx.send(true).unwrap();
        while let Some(done) = tasks.join_next().await {
            done.unwrap().unwrap();
        }
    }
}
