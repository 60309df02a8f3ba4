//! Node death and revival, and waiting on what the real controllers do: StatefulSet members
//! created and Ready, claims bound by the PV controller, nodes marked `Unknown`.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context as _, Result};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Node, PersistentVolumeClaim, Pod};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PropagationPolicy};
use kube::{Client, ResourceExt as _};
use serde_json::json;

use crate::controllers::{KWOK_NODE_ALIVE, KWOK_NODE_LABEL};
use crate::wait::{node_name, pod_condition, poll_until};

/// "Kills" a node: kwok stops running it (its Lease is no longer renewed, its pods are no longer
/// confirmed), so after the grace period the node lifecycle controller marks it `Unknown` and
/// taints it `node.kubernetes.io/unreachable`, exactly as for a kubelet that went silent.
pub async fn kill_node(client: &Client, name: &str) -> Result<()> {
    set_kwok_label(client, name, None).await
}

/// Revives a node killed by [`kill_node`]: kwok runs it again and renews its Lease.
pub async fn revive_node(client: &Client, name: &str) -> Result<()> {
    set_kwok_label(client, name, Some(KWOK_NODE_ALIVE)).await
}

async fn set_kwok_label(client: &Client, name: &str, value: Option<&str>) -> Result<()> {
    let patch = json!({"metadata": {"labels": {KWOK_NODE_LABEL: value}}});
    Api::<Node>::all(client.clone())
        .patch(name, &PatchParams::default(), &Patch::Merge(patch))
        .await
        .with_context(|| format!("labelling node {name}"))
        .map(drop)
}

/// The status of the node's `Ready` condition (`True`, `False`, `Unknown`), if it has one.
pub fn node_ready_status(node: &Node) -> Option<&str> {
    let conditions = node.status.as_ref()?.conditions.as_ref()?;
    conditions.iter().find(|c| c.type_ == "Ready").map(|c| c.status.as_str())
}

/// Waits until the node's `Ready` condition is `status` (e.g. `Unknown` after [`kill_node`]).
pub async fn wait_for_node_ready_status(client: &Client, name: &str, status: &str, timeout: Duration) -> Result<Node> {
    let api: Api<Node> = Api::all(client.clone());
    poll_until(&format!("node {name} Ready={status}"), timeout, Duration::from_millis(250), || async {
        let node = api.get(name).await.with_context(|| format!("getting node {name}"))?;
        Ok((node_ready_status(&node) == Some(status)).then_some(node))
    })
    .await
}

/// Whether the pod's `Ready` condition is `True`.
pub fn is_ready(pod: &Pod) -> bool {
    pod_condition(pod, "Ready").is_some_and(|c| c.status == "True")
}

/// Waits until pod `namespace/name` exists, is bound and Ready (kwok runs it).
pub async fn wait_for_pod_ready(client: &Client, namespace: &str, name: &str, timeout: Duration) -> Result<Pod> {
    let api: Api<Pod> = Api::namespaced(client.clone(), namespace);
    poll_until(&format!("pod {namespace}/{name} Ready"), timeout, Duration::from_millis(200), || async {
        let pod = api.get_opt(name).await.context("getting a pod")?;
        Ok(pod.filter(|p| p.metadata.deletion_timestamp.is_none() && node_name(p).is_some() && is_ready(p)))
    })
    .await
}

/// The pods of StatefulSet `namespace/name` (by its controller ownerReference), by name.
pub async fn statefulset_pods(client: &Client, namespace: &str, name: &str) -> Result<BTreeMap<String, Pod>> {
    let sts = Api::<StatefulSet>::namespaced(client.clone(), namespace)
        .get(name)
        .await
        .with_context(|| format!("getting StatefulSet {namespace}/{name}"))?;
    let uid = sts.uid().unwrap_or_default();
    let pods = Api::<Pod>::namespaced(client.clone(), namespace).list(&ListParams::default()).await?;
    Ok(pods
        .items
        .into_iter()
        .filter(|p| p.owner_references().iter().any(|o| o.controller == Some(true) && o.uid == uid))
        .map(|p| (p.name_any(), p))
        .collect())
}

/// Waits until StatefulSet `namespace/name` has `replicas` pods, all bound and Ready, and
/// returns them by name.
pub async fn wait_for_statefulset_ready(
    client: &Client,
    namespace: &str,
    name: &str,
    replicas: usize,
    timeout: Duration,
) -> Result<BTreeMap<String, Pod>> {
    poll_until(
        &format!("StatefulSet {namespace}/{name}: {replicas} pods Ready"),
        timeout,
        Duration::from_millis(250),
        || async {
            let pods = statefulset_pods(client, namespace, name).await?;
            let ready = pods.values().filter(|p| p.metadata.deletion_timestamp.is_none() && is_ready(p)).count();
            Ok((pods.len() == replicas && ready == replicas).then_some(pods))
        },
    )
    .await
}

/// Deletes StatefulSet `namespace/name` in the foreground (the garbage collector deletes its
/// pods first; kwok confirms their deletion) and waits until it and its pods are gone. Claims of
/// `volumeClaimTemplates` stay, as in a real cluster.
pub async fn delete_statefulset(client: &Client, namespace: &str, name: &str, timeout: Duration) -> Result<()> {
    let api: Api<StatefulSet> = Api::namespaced(client.clone(), namespace);
    let params = DeleteParams { propagation_policy: Some(PropagationPolicy::Foreground), ..DeleteParams::default() };
    match api.delete(name, &params).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 404 => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("deleting StatefulSet {namespace}/{name}")),
    }
    poll_until(&format!("StatefulSet {namespace}/{name} deleted"), timeout, Duration::from_millis(200), || async {
        Ok(api.get_opt(name).await?.is_none().then_some(()))
    })
    .await
}

/// Waits until claim `namespace/name` exists and is `Bound` (by the PV controller) and returns it.
pub async fn wait_for_claim_bound(
    client: &Client,
    namespace: &str,
    name: &str,
    timeout: Duration,
) -> Result<PersistentVolumeClaim> {
    let api: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), namespace);
    poll_until(&format!("claim {namespace}/{name} Bound"), timeout, Duration::from_millis(200), || async {
        let claim = api.get_opt(name).await?;
        Ok(claim.filter(|c| c.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound")))
    })
    .await
}
