//! Creating objects in the cluster: unique namespaces, any object, many nodes at once, and
//! [`fake_node`], the node kwok runs. The objects themselves come from `stowage_fixtures`.

use std::collections::BTreeMap;
use std::fmt::Debug;

use anyhow::{Context as _, Result};
use futures::{StreamExt as _, TryStreamExt as _};
use k8s_openapi::api::core::v1::{Namespace, Node};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, ApiResource, DynamicObject, PostParams};
use kube::{Client, Resource, ResourceExt as _};
use serde::Serialize;
use serde::de::DeserializeOwned;
use stowage_fixtures::NodeBuilder;

use crate::pki::random_hex;

/// `<prefix>-<8 random hex digits>`, a valid DNS label if `prefix` is one (truncated to 63 bytes).
pub fn unique_name(prefix: &str) -> String {
    let suffix = random_hex(8);
    let keep = prefix.len().min(63 - suffix.len() - 1);
    format!("{}-{suffix}", prefix[..keep].trim_end_matches('-'))
}

/// Creates a namespace named `<prefix>-<random>` and returns its name.
///
/// Namespaces are never deleted (no namespace controller runs); unique names keep tests apart.
pub async fn namespace(client: &Client, prefix: &str) -> Result<String> {
    namespace_with_labels(client, prefix, &[]).await
}

/// Creates a namespace named `<prefix>-<random>` with `labels` (e.g. to match a webhook's
/// `namespaceSelector`) and returns its name.
pub async fn namespace_with_labels(client: &Client, prefix: &str, labels: &[(&str, &str)]) -> Result<String> {
    let name = unique_name(prefix);
    let ns = Namespace {
        metadata: ObjectMeta { name: Some(name.clone()), labels: Some(to_map(labels)), ..ObjectMeta::default() },
        ..Namespace::default()
    };
    create(client, &ns).await?;
    Ok(name)
}

/// Creates `obj` (namespaced if `metadata.namespace` is set, else cluster-scoped) and returns the stored object.
pub async fn create<K>(client: &Client, obj: &K) -> Result<K>
where
    K: Resource<DynamicType = ()> + Serialize + DeserializeOwned + Debug,
{
    let resource = ApiResource::erase::<K>(&());
    let api: Api<DynamicObject> = match obj.meta().namespace.as_deref() {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &resource),
        None => Api::all_with(client.clone(), &resource),
    };
    let what = || format!("creating {} {}", K::kind(&()), obj.meta().name.as_deref().unwrap_or("<generated>"));
    let dynamic: DynamicObject =
        serde_json::from_value(serde_json::to_value(obj).with_context(what)?).with_context(what)?;
    let created = api.create(&PostParams::default(), &dynamic).await.with_context(what)?;
    serde_json::from_value(serde_json::to_value(created).with_context(what)?).with_context(what)
}

/// Creates nodes, 16 requests in flight, and returns them in completion order.
pub async fn create_nodes(client: &Client, nodes: impl IntoIterator<Item = Node>) -> Result<Vec<Node>> {
    let api: Api<Node> = Api::all(client.clone());
    futures::stream::iter(nodes)
        .map(|node| {
            let api = api.clone();
            async move {
                let name = node.name_any();
                api.create(&PostParams::default(), &node).await.with_context(|| format!("creating Node {name}"))
            }
        })
        .buffer_unordered(16)
        .try_collect()
        .await
}

/// Deletes nodes by name, 16 requests in flight; missing nodes are ignored.
pub async fn delete_nodes(client: &Client, names: impl IntoIterator<Item = String>) -> Result<()> {
    let api: Api<Node> = Api::all(client.clone());
    futures::stream::iter(names)
        .map(|name| {
            let api = api.clone();
            async move {
                match api.delete(&name, &Default::default()).await {
                    Ok(_) => Ok(()),
                    Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
                    Err(e) => Err(e).with_context(|| format!("deleting Node {name}")),
                }
            }
        })
        .buffer_unordered(16)
        .try_collect::<Vec<()>>()
        .await
        .map(drop)
}

/// A node run by kwok's simulated kubelet: [`NodeBuilder::new`] (kubelet labels, 4 CPU, 16Gi,
/// 110 pods, `Ready=True`) labelled [`crate::KWOK_NODE_LABEL`], so kwok renews its Lease and
/// runs its pods. The node lifecycle controller watches it like any other: see
/// [`crate::kill_node`].
pub fn fake_node(name: &str) -> NodeBuilder {
    NodeBuilder::new(name).label(crate::KWOK_NODE_LABEL, crate::KWOK_NODE_ALIVE)
}

fn to_map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fake_node_is_run_by_kwok() {
        let node = fake_node("n1").zone("a").build();
        let labels = node.metadata.labels.unwrap();
        assert_eq!(labels.get(crate::KWOK_NODE_LABEL).map(String::as_str), Some(crate::KWOK_NODE_ALIVE));
        assert_eq!(labels.get(stowage_fixtures::HOSTNAME).map(String::as_str), Some("n1"));
    }

    #[test]
    fn unique_names_are_dns_labels() {
        let name = unique_name(&"x".repeat(80));
        assert!(name.len() <= 63);
        assert_ne!(unique_name("a"), unique_name("a"));
        assert!(unique_name("ns").starts_with("ns-"));
    }
}
