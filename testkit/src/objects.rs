//! Builders for the objects e2e tests create, and helpers to create them.

use std::collections::BTreeMap;
use std::fmt::Debug;

use anyhow::{Context as _, Result};
use futures::{StreamExt as _, TryStreamExt as _};
use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetSpec};
use k8s_openapi::api::core::v1::{
    Affinity, Container, Namespace, Node, NodeAffinity, NodeCondition, NodeSelector, NodeSelectorRequirement,
    NodeSelectorTerm, NodeSpec, NodeStatus, ObjectReference, PersistentVolume, PersistentVolumeClaim,
    PersistentVolumeClaimSpec, PersistentVolumeClaimVolumeSource, PersistentVolumeSpec, Pod, PodAffinityTerm,
    PodAntiAffinity, PodSpec, PodTemplateSpec, ResourceRequirements, Taint, Toleration, TopologySpreadConstraint,
    Volume, VolumeNodeAffinity, VolumeResourceRequirements, WeightedPodAffinityTerm,
};
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference, Time};
use kube::api::{Api, ApiResource, DynamicObject, PostParams};
use kube::{Client, Resource, ResourceExt as _};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::pki::random_hex;

/// Label with the node name, as the kubelet sets it.
pub const HOSTNAME_LABEL: &str = "kubernetes.io/hostname";
/// Zone topology label.
pub const ZONE_LABEL: &str = "topology.kubernetes.io/zone";
/// Region topology label.
pub const REGION_LABEL: &str = "topology.kubernetes.io/region";
/// Pod label a StatefulSet sets to the pod's name.
pub const STS_POD_NAME_LABEL: &str = "statefulset.kubernetes.io/pod-name";
/// Pod label a StatefulSet sets to the pod's ordinal.
pub const STS_POD_INDEX_LABEL: &str = "apps.kubernetes.io/pod-index";
/// Image of the test containers (never pulled: no kubelet runs).
pub const TEST_IMAGE: &str = "registry.invalid/stowage-test/db:1";

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

fn to_map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
}

fn quantity(q: &str) -> Quantity {
    Quantity(q.to_owned())
}

/// Builder of a fake [`Node`]; see [`fake_node`].
#[derive(Clone, Debug)]
pub struct NodeBuilder {
    name: String,
    labels: BTreeMap<String, String>,
    annotations: BTreeMap<String, String>,
    capacity: BTreeMap<String, String>,
    allocatable: BTreeMap<String, String>,
    taints: Vec<Taint>,
    unschedulable: bool,
}

/// A node run by kwok's simulated kubelet: labels `kubernetes.io/hostname=<name>`,
/// `kubernetes.io/os=linux`, `kubernetes.io/arch=amd64` and [`crate::KWOK_NODE_LABEL`] (so kwok
/// renews its Lease and runs its pods); capacity = allocatable = 4 CPU, 16Gi memory, 110 pods,
/// 100Gi ephemeral storage; registered `Ready=True`, as a kubelet registers. No taints,
/// schedulable. The node lifecycle controller watches it like any other: see
/// [`crate::kill_node`].
pub fn fake_node(name: &str) -> NodeBuilder {
    let labels = to_map(&[
        (HOSTNAME_LABEL, name),
        ("kubernetes.io/os", "linux"),
        ("kubernetes.io/arch", "amd64"),
        (crate::KWOK_NODE_LABEL, crate::KWOK_NODE_ALIVE),
    ]);
    let capacity = to_map(&[("cpu", "4"), ("memory", "16Gi"), ("pods", "110"), ("ephemeral-storage", "100Gi")]);
    NodeBuilder {
        name: name.to_owned(),
        labels,
        annotations: BTreeMap::new(),
        capacity,
        allocatable: BTreeMap::new(),
        taints: Vec::new(),
        unschedulable: false,
    }
}

impl NodeBuilder {
    /// Sets the `topology.kubernetes.io/zone` label.
    #[must_use]
    pub fn zone(self, zone: &str) -> Self {
        self.label(ZONE_LABEL, zone)
    }

    /// Sets the `topology.kubernetes.io/region` label.
    #[must_use]
    pub fn region(self, region: &str) -> Self {
        self.label(REGION_LABEL, region)
    }

    /// Sets CPU capacity (and allocatable), e.g. `"4"` or `"3500m"`.
    #[must_use]
    pub fn cpu(self, cpu: &str) -> Self {
        self.capacity("cpu", cpu)
    }

    /// Sets memory capacity (and allocatable), e.g. `"16Gi"`.
    #[must_use]
    pub fn memory(self, memory: &str) -> Self {
        self.capacity("memory", memory)
    }

    /// Sets the pod capacity (and allocatable).
    #[must_use]
    pub fn pods(self, pods: u32) -> Self {
        self.capacity("pods", &pods.to_string())
    }

    /// Sets the capacity (and, unless overridden, allocatable) of any resource, e.g. an extended one.
    #[must_use]
    pub fn capacity(mut self, resource: &str, quantity: &str) -> Self {
        self.capacity.insert(resource.to_owned(), quantity.to_owned());
        self
    }

    /// Sets allocatable below capacity for one resource.
    #[must_use]
    pub fn allocatable(mut self, resource: &str, quantity: &str) -> Self {
        self.allocatable.insert(resource.to_owned(), quantity.to_owned());
        self
    }

    /// Adds a label.
    #[must_use]
    pub fn label(mut self, key: &str, value: &str) -> Self {
        self.labels.insert(key.to_owned(), value.to_owned());
        self
    }

    /// Adds an annotation.
    #[must_use]
    pub fn annotation(mut self, key: &str, value: &str) -> Self {
        self.annotations.insert(key.to_owned(), value.to_owned());
        self
    }

    /// Adds a taint; `effect` is `NoSchedule`, `PreferNoSchedule` or `NoExecute`.
    #[must_use]
    pub fn taint(mut self, key: &str, value: &str, effect: &str) -> Self {
        self.taints.push(Taint {
            key: key.to_owned(),
            value: (!value.is_empty()).then(|| value.to_owned()),
            effect: effect.to_owned(),
            time_added: None,
        });
        self
    }

    /// Marks the node unschedulable (cordoned).
    #[must_use]
    pub fn unschedulable(mut self) -> Self {
        self.unschedulable = true;
        self
    }

    /// The Node.
    pub fn build(self) -> Node {
        let now = Time(k8s_openapi::jiff::Timestamp::now());
        let mut allocatable = self.capacity.clone();
        allocatable.extend(self.allocatable);
        let quantities = |m: BTreeMap<String, String>| m.into_iter().map(|(k, v)| (k, Quantity(v))).collect();
        Node {
            metadata: ObjectMeta {
                name: Some(self.name),
                labels: Some(self.labels),
                annotations: (!self.annotations.is_empty()).then_some(self.annotations),
                ..ObjectMeta::default()
            },
            spec: Some(NodeSpec {
                taints: (!self.taints.is_empty()).then_some(self.taints),
                unschedulable: self.unschedulable.then_some(true),
                ..NodeSpec::default()
            }),
            status: Some(NodeStatus {
                capacity: Some(quantities(self.capacity)),
                allocatable: Some(quantities(allocatable)),
                conditions: Some(vec![NodeCondition {
                    type_: "Ready".to_owned(),
                    status: "True".to_owned(),
                    reason: Some("KubeletReady".to_owned()),
                    message: Some("fake node".to_owned()),
                    last_heartbeat_time: Some(now.clone()),
                    last_transition_time: Some(now),
                }]),
                ..NodeStatus::default()
            }),
        }
    }
}

impl From<NodeBuilder> for Node {
    fn from(builder: NodeBuilder) -> Self {
        builder.build()
    }
}

/// Builder of a [`StorageClass`]; see [`storage_class`].
#[derive(Clone, Debug)]
pub struct StorageClassBuilder {
    class: StorageClass,
}

/// A StorageClass with provisioner `kubernetes.io/no-provisioner` and `Immediate` binding.
pub fn storage_class(name: &str) -> StorageClassBuilder {
    StorageClassBuilder {
        class: StorageClass {
            metadata: ObjectMeta { name: Some(name.to_owned()), ..ObjectMeta::default() },
            provisioner: "kubernetes.io/no-provisioner".to_owned(),
            volume_binding_mode: Some("Immediate".to_owned()),
            reclaim_policy: Some("Retain".to_owned()),
            ..StorageClass::default()
        },
    }
}

impl StorageClassBuilder {
    /// Sets `volumeBindingMode: WaitForFirstConsumer`.
    #[must_use]
    pub fn wait_for_first_consumer(mut self) -> Self {
        self.class.volume_binding_mode = Some("WaitForFirstConsumer".to_owned());
        self
    }

    /// Sets the provisioner.
    #[must_use]
    pub fn provisioner(mut self, provisioner: &str) -> Self {
        self.class.provisioner = provisioner.to_owned();
        self
    }

    /// Sets `reclaimPolicy` (default `Retain`).
    #[must_use]
    pub fn reclaim_policy(mut self, policy: &str) -> Self {
        self.class.reclaim_policy = Some(policy.to_owned());
        self
    }

    /// Sets `allowVolumeExpansion`.
    #[must_use]
    pub fn allow_volume_expansion(mut self, allow: bool) -> Self {
        self.class.allow_volume_expansion = Some(allow);
        self
    }

    /// Adds a parameter.
    #[must_use]
    pub fn parameter(mut self, key: &str, value: &str) -> Self {
        self.class.parameters.get_or_insert_with(BTreeMap::new).insert(key.to_owned(), value.to_owned());
        self
    }

    /// Adds a label.
    #[must_use]
    pub fn label(mut self, key: &str, value: &str) -> Self {
        self.class.labels_mut().insert(key.to_owned(), value.to_owned());
        self
    }

    /// The StorageClass.
    pub fn build(self) -> StorageClass {
        self.class
    }
}

impl From<StorageClassBuilder> for StorageClass {
    fn from(builder: StorageClassBuilder) -> Self {
        builder.build()
    }
}

/// Builder of a local [`PersistentVolume`]; see [`local_pv`].
#[derive(Clone, Debug)]
pub struct PersistentVolumeBuilder {
    pv: PersistentVolume,
}

/// A local PersistentVolume on `node` (`spec.local.path`, required node affinity on
/// `kubernetes.io/hostname`), `ReadWriteOnce`, `Retain`, `Filesystem`.
pub fn local_pv(name: &str, node: &str, capacity: &str, storage_class: &str) -> PersistentVolumeBuilder {
    let affinity = VolumeNodeAffinity {
        required: Some(NodeSelector {
            node_selector_terms: vec![NodeSelectorTerm {
                match_expressions: Some(vec![NodeSelectorRequirement {
                    key: HOSTNAME_LABEL.to_owned(),
                    operator: "In".to_owned(),
                    values: Some(vec![node.to_owned()]),
                }]),
                match_fields: None,
            }],
        }),
    };
    PersistentVolumeBuilder {
        pv: PersistentVolume {
            metadata: ObjectMeta { name: Some(name.to_owned()), ..ObjectMeta::default() },
            spec: Some(PersistentVolumeSpec {
                capacity: Some(BTreeMap::from([("storage".to_owned(), quantity(capacity))])),
                access_modes: Some(vec!["ReadWriteOnce".to_owned()]),
                persistent_volume_reclaim_policy: Some("Retain".to_owned()),
                storage_class_name: Some(storage_class.to_owned()),
                volume_mode: Some("Filesystem".to_owned()),
                local: Some(k8s_openapi::api::core::v1::LocalVolumeSource {
                    path: format!("/mnt/stowage/{name}"),
                    fs_type: None,
                }),
                node_affinity: Some(affinity),
                ..PersistentVolumeSpec::default()
            }),
            status: None,
        },
    }
}

impl PersistentVolumeBuilder {
    fn spec(&mut self) -> &mut PersistentVolumeSpec {
        self.pv.spec.get_or_insert_with(PersistentVolumeSpec::default)
    }

    /// Sets `spec.local.path`.
    #[must_use]
    pub fn path(mut self, path: &str) -> Self {
        if let Some(local) = self.spec().local.as_mut() {
            local.path = path.to_owned();
        }
        self
    }

    /// Pre-binds the volume to PVC `namespace/name` (`spec.claimRef`).
    #[must_use]
    pub fn claim_ref(mut self, namespace: &str, name: &str) -> Self {
        self.spec().claim_ref = Some(ObjectReference {
            api_version: Some("v1".to_owned()),
            kind: Some("PersistentVolumeClaim".to_owned()),
            namespace: Some(namespace.to_owned()),
            name: Some(name.to_owned()),
            ..ObjectReference::default()
        });
        self
    }

    /// Replaces the access modes.
    #[must_use]
    pub fn access_modes(mut self, modes: &[&str]) -> Self {
        self.spec().access_modes = Some(modes.iter().map(|m| (*m).to_owned()).collect());
        self
    }

    /// Sets `persistentVolumeReclaimPolicy` (default `Retain`).
    #[must_use]
    pub fn reclaim_policy(mut self, policy: &str) -> Self {
        self.spec().persistent_volume_reclaim_policy = Some(policy.to_owned());
        self
    }

    /// Adds a label.
    #[must_use]
    pub fn label(mut self, key: &str, value: &str) -> Self {
        self.pv.labels_mut().insert(key.to_owned(), value.to_owned());
        self
    }

    /// The PersistentVolume.
    pub fn build(self) -> PersistentVolume {
        self.pv
    }
}

impl From<PersistentVolumeBuilder> for PersistentVolume {
    fn from(builder: PersistentVolumeBuilder) -> Self {
        builder.build()
    }
}

/// Builder of a [`PersistentVolumeClaim`]; see [`pvc`].
#[derive(Clone, Debug)]
pub struct PvcBuilder {
    claim: PersistentVolumeClaim,
}

/// A `ReadWriteOnce` PVC requesting `size` from `storage_class`.
pub fn pvc(namespace: &str, name: &str, storage_class: &str, size: &str) -> PvcBuilder {
    PvcBuilder {
        claim: PersistentVolumeClaim {
            metadata: ObjectMeta {
                name: Some(name.to_owned()),
                namespace: Some(namespace.to_owned()),
                ..ObjectMeta::default()
            },
            spec: Some(PersistentVolumeClaimSpec {
                access_modes: Some(vec!["ReadWriteOnce".to_owned()]),
                storage_class_name: Some(storage_class.to_owned()),
                resources: Some(VolumeResourceRequirements {
                    requests: Some(BTreeMap::from([("storage".to_owned(), quantity(size))])),
                    limits: None,
                }),
                volume_mode: Some("Filesystem".to_owned()),
                ..PersistentVolumeClaimSpec::default()
            }),
            status: None,
        },
    }
}

impl PvcBuilder {
    /// Pre-binds the claim to PersistentVolume `pv` (`spec.volumeName`).
    #[must_use]
    pub fn volume_name(mut self, pv: &str) -> Self {
        if let Some(spec) = self.claim.spec.as_mut() {
            spec.volume_name = Some(pv.to_owned());
        }
        self
    }

    /// Replaces the access modes.
    #[must_use]
    pub fn access_modes(mut self, modes: &[&str]) -> Self {
        if let Some(spec) = self.claim.spec.as_mut() {
            spec.access_modes = Some(modes.iter().map(|m| (*m).to_owned()).collect());
        }
        self
    }

    /// Adds a label.
    #[must_use]
    pub fn label(mut self, key: &str, value: &str) -> Self {
        self.claim.labels_mut().insert(key.to_owned(), value.to_owned());
        self
    }

    /// Adds an annotation.
    #[must_use]
    pub fn annotation(mut self, key: &str, value: &str) -> Self {
        self.claim.annotations_mut().insert(key.to_owned(), value.to_owned());
        self
    }

    /// The PersistentVolumeClaim.
    pub fn build(self) -> PersistentVolumeClaim {
        self.claim
    }
}

impl From<PvcBuilder> for PersistentVolumeClaim {
    fn from(builder: PvcBuilder) -> Self {
        builder.build()
    }
}

/// Builder of a [`Pod`]; see [`pod`] and [`statefulset_pod`].
#[derive(Clone, Debug)]
pub struct PodBuilder {
    pod: Pod,
}

/// A pod with one container (`db`, image [`TEST_IMAGE`]) and no requests.
pub fn pod(namespace: &str, name: &str) -> PodBuilder {
    PodBuilder {
        pod: Pod {
            metadata: ObjectMeta {
                name: Some(name.to_owned()),
                namespace: Some(namespace.to_owned()),
                ..ObjectMeta::default()
            },
            spec: Some(PodSpec {
                containers: vec![Container {
                    name: "db".to_owned(),
                    image: Some(TEST_IMAGE.to_owned()),
                    ..Container::default()
                }],
                termination_grace_period_seconds: Some(0),
                ..PodSpec::default()
            }),
            status: None,
        },
    }
}

/// Pod `<sts_name>-<ordinal>` as a StatefulSet controller would create it: a controller
/// ownerReference to `apps/v1` StatefulSet `sts_name` (a stable made-up uid unless
/// [`PodBuilder::owner_uid`] or [`PodBuilder::owned_by`] sets the real one), labels `app=<sts_name>`,
/// `statefulset.kubernetes.io/pod-name` and `apps.kubernetes.io/pod-index`, and `hostname`/`subdomain`.
pub fn statefulset_pod(namespace: &str, sts_name: &str, ordinal: u32) -> PodBuilder {
    let name = format!("{sts_name}-{ordinal}");
    let mut builder = pod(namespace, &name)
        .label("app", sts_name)
        .label(STS_POD_NAME_LABEL, &name)
        .label(STS_POD_INDEX_LABEL, &ordinal.to_string());
    builder.pod.metadata.owner_references = Some(vec![OwnerReference {
        api_version: "apps/v1".to_owned(),
        kind: "StatefulSet".to_owned(),
        name: sts_name.to_owned(),
        uid: made_up_uid(&format!("{namespace}/{sts_name}")),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }]);
    if let Some(spec) = builder.pod.spec.as_mut() {
        spec.hostname = Some(name);
        spec.subdomain = Some(sts_name.to_owned());
    }
    builder
}

/// A UUID-shaped uid derived from `seed` (stable within one process run).
fn made_up_uid(seed: &str) -> String {
    use std::hash::{Hash as _, Hasher as _};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    seed.hash(&mut h);
    let a = h.finish();
    "uid".hash(&mut h);
    let b = h.finish();
    format!(
        "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xfff,
        b >> 52,
        b & 0xffff_ffff_ffff
    )
}

impl PodBuilder {
    fn spec(&mut self) -> &mut PodSpec {
        self.pod.spec.get_or_insert_with(PodSpec::default)
    }

    fn container(&mut self) -> &mut Container {
        let spec = self.spec();
        if spec.containers.is_empty() {
            spec.containers.push(Container { name: "db".to_owned(), ..Container::default() });
        }
        &mut spec.containers[0]
    }

    /// Sets `spec.schedulerName`.
    #[must_use]
    pub fn scheduler_name(mut self, name: &str) -> Self {
        self.spec().scheduler_name = Some(name.to_owned());
        self
    }

    /// Adds a label.
    #[must_use]
    pub fn label(mut self, key: &str, value: &str) -> Self {
        self.pod.labels_mut().insert(key.to_owned(), value.to_owned());
        self
    }

    /// Adds an annotation.
    #[must_use]
    pub fn annotation(mut self, key: &str, value: &str) -> Self {
        self.pod.annotations_mut().insert(key.to_owned(), value.to_owned());
        self
    }

    /// Adds a `spec.nodeSelector` entry.
    #[must_use]
    pub fn node_selector(mut self, key: &str, value: &str) -> Self {
        self.spec().node_selector.get_or_insert_with(BTreeMap::new).insert(key.to_owned(), value.to_owned());
        self
    }

    /// Adds a toleration (`Exists` when `value` is empty, else `Equal`); empty `effect` matches all.
    #[must_use]
    pub fn toleration(mut self, key: &str, value: &str, effect: &str) -> Self {
        let toleration = Toleration {
            key: Some(key.to_owned()),
            operator: Some(if value.is_empty() { "Exists" } else { "Equal" }.to_owned()),
            value: (!value.is_empty()).then(|| value.to_owned()),
            effect: (!effect.is_empty()).then(|| effect.to_owned()),
            toleration_seconds: None,
        };
        self.spec().tolerations.get_or_insert_with(Vec::new).push(toleration);
        self
    }

    /// Sets the container's CPU request, e.g. `"500m"`.
    #[must_use]
    pub fn cpu(self, cpu: &str) -> Self {
        self.request("cpu", cpu)
    }

    /// Sets the container's memory request, e.g. `"1Gi"`.
    #[must_use]
    pub fn memory(self, memory: &str) -> Self {
        self.request("memory", memory)
    }

    /// Sets a container resource request.
    #[must_use]
    pub fn request(mut self, resource: &str, quantity: &str) -> Self {
        let resources = self.container().resources.get_or_insert_with(ResourceRequirements::default);
        resources.requests.get_or_insert_with(BTreeMap::new).insert(resource.to_owned(), Quantity(quantity.to_owned()));
        self
    }

    /// Sets a container resource limit.
    #[must_use]
    pub fn limit(mut self, resource: &str, quantity: &str) -> Self {
        let resources = self.container().resources.get_or_insert_with(ResourceRequirements::default);
        resources.limits.get_or_insert_with(BTreeMap::new).insert(resource.to_owned(), Quantity(quantity.to_owned()));
        self
    }

    /// Sets the container image.
    #[must_use]
    pub fn image(mut self, image: &str) -> Self {
        self.container().image = Some(image.to_owned());
        self
    }

    /// Mounts PVC `claim` as volume `volume` (as a StatefulSet does for `<template>-<sts>-<ordinal>`).
    #[must_use]
    pub fn pvc_volume(mut self, volume: &str, claim: &str) -> Self {
        self.spec().volumes.get_or_insert_with(Vec::new).push(Volume {
            name: volume.to_owned(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: claim.to_owned(),
                read_only: None,
            }),
            ..Volume::default()
        });
        self
    }

    /// Sets `spec.affinity`.
    #[must_use]
    pub fn affinity(mut self, affinity: Affinity) -> Self {
        self.spec().affinity = Some(affinity);
        self
    }

    /// CloudNativePG's default scheduling rule: preferred pod anti-affinity, weight 100, on
    /// `kubernetes.io/hostname`, against pods labelled `key=value` (its `cnpg.io/cluster`).
    #[must_use]
    pub fn cloudnativepg_default_rule(self, key: &str, value: &str) -> Self {
        let term = WeightedPodAffinityTerm {
            weight: 100,
            pod_affinity_term: PodAffinityTerm {
                label_selector: Some(LabelSelector {
                    match_labels: Some(to_map(&[(key, value)])),
                    match_expressions: None,
                }),
                topology_key: HOSTNAME_LABEL.to_owned(),
                ..PodAffinityTerm::default()
            },
        };
        self.affinity(Affinity {
            pod_anti_affinity: Some(PodAntiAffinity {
                preferred_during_scheduling_ignored_during_execution: Some(vec![term]),
                required_during_scheduling_ignored_during_execution: None,
            }),
            ..Affinity::default()
        })
    }

    /// Crunchy PGO v5's default scheduling rule: topology spread over `kubernetes.io/hostname`
    /// and `topology.kubernetes.io/zone`, `maxSkew: 1`, `whenUnsatisfiable: ScheduleAnyway`,
    /// counting pods labelled `key=value`.
    #[must_use]
    pub fn crunchy_pgo_default_rule(mut self, key: &str, value: &str) -> Self {
        let constraint = |topology: &str| TopologySpreadConstraint {
            max_skew: 1,
            topology_key: topology.to_owned(),
            when_unsatisfiable: "ScheduleAnyway".to_owned(),
            label_selector: Some(LabelSelector {
                match_labels: Some(to_map(&[(key, value)])),
                match_expressions: None,
            }),
            ..TopologySpreadConstraint::default()
        };
        self.spec().topology_spread_constraints = Some(vec![constraint(HOSTNAME_LABEL), constraint(ZONE_LABEL)]);
        self
    }

    /// Requires a node whose `key` label is one of `values` (required node affinity).
    #[must_use]
    pub fn require_node_label_in(self, key: &str, values: &[&str]) -> Self {
        self.affinity(Affinity {
            node_affinity: Some(NodeAffinity {
                required_during_scheduling_ignored_during_execution: Some(NodeSelector {
                    node_selector_terms: vec![NodeSelectorTerm {
                        match_expressions: Some(vec![NodeSelectorRequirement {
                            key: key.to_owned(),
                            operator: "In".to_owned(),
                            values: Some(values.iter().map(|v| (*v).to_owned()).collect()),
                        }]),
                        match_fields: None,
                    }],
                }),
                preferred_during_scheduling_ignored_during_execution: None,
            }),
            ..Affinity::default()
        })
    }

    /// Sets `spec.priorityClassName`.
    #[must_use]
    pub fn priority_class(mut self, name: &str) -> Self {
        self.spec().priority_class_name = Some(name.to_owned());
        self
    }

    /// Sets `spec.serviceAccountName`.
    #[must_use]
    pub fn service_account(mut self, name: &str) -> Self {
        self.spec().service_account_name = Some(name.to_owned());
        self
    }

    /// Sets the uid of the controller ownerReference (the StatefulSet's real uid).
    #[must_use]
    pub fn owner_uid(mut self, uid: &str) -> Self {
        if let Some(owner) = self.pod.metadata.owner_references.as_mut().and_then(|o| o.first_mut()) {
            owner.uid = uid.to_owned();
        }
        self
    }

    /// Makes the pod owned by `sts` (a created StatefulSet: its name and uid).
    #[must_use]
    pub fn owned_by(mut self, sts: &StatefulSet) -> Self {
        self.pod.metadata.owner_references = Some(vec![OwnerReference {
            api_version: "apps/v1".to_owned(),
            kind: "StatefulSet".to_owned(),
            name: sts.name_any(),
            uid: sts.metadata.uid.clone().unwrap_or_default(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        }]);
        self
    }

    /// The Pod.
    pub fn build(self) -> Pod {
        self.pod
    }

    /// The pod as a template (labels, annotations and spec; no name, namespace or owner).
    pub fn template(self) -> PodTemplateSpec {
        let metadata = ObjectMeta {
            labels: self.pod.metadata.labels,
            annotations: self.pod.metadata.annotations,
            ..ObjectMeta::default()
        };
        PodTemplateSpec { metadata: Some(metadata), spec: self.pod.spec }
    }
}

impl From<PodBuilder> for Pod {
    fn from(builder: PodBuilder) -> Self {
        builder.build()
    }
}

/// Builder of a [`StatefulSet`]; see [`statefulset`].
#[derive(Clone, Debug)]
pub struct StatefulSetBuilder {
    sts: StatefulSet,
}

/// A StatefulSet `name` with `replicas`, selector `app=<name>` (added to the template's labels),
/// `serviceName: <name>` and the default `OrderedReady` pod management. The real StatefulSet
/// controller creates its pods (and the claims of its `volumeClaimTemplates`).
pub fn statefulset(namespace: &str, name: &str, replicas: i32, template: PodTemplateSpec) -> StatefulSetBuilder {
    let mut template = template;
    let metadata = template.metadata.get_or_insert_with(ObjectMeta::default);
    metadata.labels.get_or_insert_with(BTreeMap::new).insert("app".to_owned(), name.to_owned());
    for key in [STS_POD_NAME_LABEL, STS_POD_INDEX_LABEL] {
        metadata.labels.get_or_insert_with(BTreeMap::new).remove(key);
    }
    StatefulSetBuilder {
        sts: StatefulSet {
            metadata: ObjectMeta {
                name: Some(name.to_owned()),
                namespace: Some(namespace.to_owned()),
                ..ObjectMeta::default()
            },
            spec: Some(StatefulSetSpec {
                replicas: Some(replicas),
                selector: LabelSelector {
                    match_labels: Some(BTreeMap::from([("app".to_owned(), name.to_owned())])),
                    match_expressions: None,
                },
                service_name: Some(name.to_owned()),
                template,
                ..StatefulSetSpec::default()
            }),
            status: None,
        },
    }
}

impl StatefulSetBuilder {
    /// `podManagementPolicy: Parallel`: every member is created at once.
    #[must_use]
    pub fn parallel(mut self) -> Self {
        if let Some(spec) = self.sts.spec.as_mut() {
            spec.pod_management_policy = Some("Parallel".to_owned());
        }
        self
    }

    /// Adds a `volumeClaimTemplates` entry.
    #[must_use]
    pub fn volume_claim_template(mut self, name: &str, storage_class: &str, size: &str) -> Self {
        let mut claim = pvc("", name, storage_class, size).build();
        claim.metadata.namespace = None;
        if let Some(spec) = self.sts.spec.as_mut() {
            spec.volume_claim_templates.get_or_insert_with(Vec::new).push(claim);
        }
        self
    }

    /// Adds a label.
    #[must_use]
    pub fn label(mut self, key: &str, value: &str) -> Self {
        self.sts.labels_mut().insert(key.to_owned(), value.to_owned());
        self
    }

    /// Adds an annotation.
    #[must_use]
    pub fn annotation(mut self, key: &str, value: &str) -> Self {
        self.sts.annotations_mut().insert(key.to_owned(), value.to_owned());
        self
    }

    /// The StatefulSet.
    pub fn build(self) -> StatefulSet {
        self.sts
    }
}

impl From<StatefulSetBuilder> for StatefulSet {
    fn from(builder: StatefulSetBuilder) -> Self {
        builder.build()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn fake_node_has_kubelet_labels_capacity_and_ready() {
        let node = fake_node("n1")
            .zone("zone-a")
            .cpu("8")
            .memory("32Gi")
            .pods(20)
            .capacity("example.com/disk", "4")
            .allocatable("cpu", "7500m")
            .label("pool", "db")
            .taint("dedicated", "db", "NoSchedule")
            .unschedulable()
            .build();
        let v = serde_json::to_value(&node).unwrap();
        assert_eq!(v["kind"], "Node");
        assert_eq!(
            v["metadata"]["labels"],
            json!({
                "kubernetes.io/hostname": "n1",
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "kwok.x-k8s.io/node": "fake",
                "topology.kubernetes.io/zone": "zone-a",
                "pool": "db",
            })
        );
        assert_eq!(
            v["status"]["capacity"],
            json!({"cpu": "8", "memory": "32Gi", "pods": "20", "ephemeral-storage": "100Gi", "example.com/disk": "4"})
        );
        assert_eq!(v["status"]["allocatable"]["cpu"], "7500m");
        assert_eq!(v["status"]["allocatable"]["memory"], "32Gi");
        assert_eq!(v["status"]["conditions"][0]["type"], "Ready");
        assert_eq!(v["status"]["conditions"][0]["status"], "True");
        assert!(v["status"]["conditions"][0]["lastHeartbeatTime"].is_string());
        assert_eq!(
            v["spec"],
            json!({"taints": [{"key": "dedicated", "value": "db", "effect": "NoSchedule"}], "unschedulable": true})
        );
    }

    #[test]
    fn plain_fake_node_is_schedulable_without_zone() {
        let v = serde_json::to_value(fake_node("n2").build()).unwrap();
        assert!(v["metadata"]["labels"].get(ZONE_LABEL).is_none());
        assert_eq!(v["spec"], json!({}));
        assert_eq!(v["status"]["allocatable"], v["status"]["capacity"]);
    }

    #[test]
    fn statefulset_pod_is_owned_and_labelled() {
        let pod = statefulset_pod("ns", "pg", 2)
            .scheduler_name("stowage")
            .cpu("500m")
            .memory("1Gi")
            .pvc_volume("data", "data-pg-2")
            .annotation("a", "b")
            .build();
        let v = serde_json::to_value(&pod).unwrap();
        assert_eq!(v["metadata"]["name"], "pg-2");
        assert_eq!(v["metadata"]["labels"][STS_POD_INDEX_LABEL], "2");
        assert_eq!(v["metadata"]["labels"]["app"], "pg");
        let owner = &v["metadata"]["ownerReferences"][0];
        assert_eq!((owner["kind"].as_str(), owner["apiVersion"].as_str()), (Some("StatefulSet"), Some("apps/v1")));
        assert_eq!(owner["controller"], true);
        assert_eq!(owner["uid"].as_str().map(str::len), Some(36));
        assert_eq!(v["spec"]["schedulerName"], "stowage");
        assert_eq!(v["spec"]["containers"][0]["resources"]["requests"], json!({"cpu": "500m", "memory": "1Gi"}));
        assert_eq!(v["spec"]["volumes"][0]["persistentVolumeClaim"]["claimName"], "data-pg-2");
        let again = statefulset_pod("ns", "pg", 0).owner_uid("real").build();
        assert_eq!(again.metadata.owner_references.unwrap()[0].uid, "real");
    }

    #[test]
    fn statefulset_selects_its_template() {
        let template = statefulset_pod("ns", "pg", 0).label("tier", "db").template();
        let sts = statefulset("ns", "pg", 3, template).volume_claim_template("data", "local", "10Gi").build();
        let spec = sts.spec.unwrap();
        let labels = spec.template.metadata.unwrap().labels.unwrap();
        assert_eq!(labels.get("app").map(String::as_str), Some("pg"));
        assert_eq!(labels.get("tier").map(String::as_str), Some("db"));
        assert!(!labels.contains_key(STS_POD_NAME_LABEL));
        assert_eq!(spec.selector.match_labels.unwrap().get("app").map(String::as_str), Some("pg"));
        assert_eq!(spec.volume_claim_templates.unwrap()[0].metadata.namespace, None);
    }

    #[test]
    fn local_pv_and_pvc() {
        let pv = local_pv("pv1", "n1", "10Gi", "local").claim_ref("ns", "data").build();
        let v = serde_json::to_value(&pv).unwrap();
        assert_eq!(v["spec"]["local"]["path"], "/mnt/stowage/pv1");
        assert_eq!(
            v["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"][0]["matchExpressions"][0]["values"],
            json!(["n1"])
        );
        assert_eq!(v["spec"]["claimRef"]["name"], "data");
        let claim = pvc("ns", "data", "local", "10Gi").volume_name("pv1").build();
        let v = serde_json::to_value(&claim).unwrap();
        assert_eq!(v["spec"]["volumeName"], "pv1");
        assert_eq!(v["spec"]["resources"]["requests"]["storage"], "10Gi");
        let class = serde_json::to_value(storage_class("local").wait_for_first_consumer().build()).unwrap();
        assert_eq!(class["volumeBindingMode"], "WaitForFirstConsumer");
        assert_eq!(class["provisioner"], "kubernetes.io/no-provisioner");
    }

    #[test]
    fn unique_names_are_dns_labels() {
        let name = unique_name(&"x".repeat(80));
        assert!(name.len() <= 63);
        assert_ne!(unique_name("a"), unique_name("a"));
        assert!(unique_name("ns").starts_with("ns-"));
    }
}
