//! The trimmed objects the cache keeps, and their conversion from `k8s-openapi` types.
//!
//! Each trimmed object keeps only what filtering, scoring, preemption and explanations read.
//! Strings that repeat across objects (namespaces, node names, label keys and values, storage
//! class names) are interned as shared `Arc<str>`.

use std::sync::Arc;

use k8s_openapi::api::{
    apps::v1::StatefulSet,
    core::v1::{Node, PersistentVolume, PersistentVolumeClaim, Pod},
    storage::v1::{CSIStorageCapacity, StorageClass},
};
use stowage_policy::{
    Role,
    annotations::{self, MEMBERS, PROFILE, ROLE},
    config::DEFAULT_PROFILE,
    group,
    tenancy::Scopes,
};

use super::{
    interner::Interner,
    resources::{PodResources, pod_resources, quantity_bytes},
    selector::{LabelSelector, Labels, NodeSelector},
};

/// The config facts the cache needs while trimming.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheConfig {
    /// Node label naming the zone.
    pub zone_label: String,
    /// Node label naming the host (what local PVs pin to).
    pub hostname_label: String,
    /// Pod labels read for a member's role.
    pub role_labels: Vec<String>,
    /// Role-label values meaning primary.
    pub primary_values: Vec<String>,
    /// The namespaces each profile is limited to.
    pub scopes: Scopes,
}

impl CacheConfig {
    /// The cache-relevant part of a stowage config.
    #[must_use]
    pub fn from_config(cfg: &stowage_policy::Config) -> Self {
        Self {
            zone_label: cfg.zone_label.clone(),
            hostname_label: cfg.hostname_label.clone(),
            role_labels: cfg.role_labels.clone(),
            primary_values: cfg.primary_values.clone(),
            scopes: Scopes::of(cfg),
        }
    }
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self::from_config(&stowage_policy::Config::default())
    }
}

/// A node taint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Taint {
    /// Key.
    pub key: Arc<str>,
    /// Value, if any.
    pub value: Option<Arc<str>>,
    /// `NoSchedule`, `PreferNoSchedule` or `NoExecute`.
    pub effect: Arc<str>,
}

/// A trimmed Node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeObj {
    /// Node name.
    pub name: Arc<str>,
    /// All labels.
    pub labels: Labels,
    /// Value of the zone label.
    pub zone: Option<Arc<str>>,
    /// Value of the hostname label (the node name when absent).
    pub hostname: Arc<str>,
    /// The node carries the hostname label.
    pub has_hostname_label: bool,
    /// Taints.
    pub taints: Box<[Taint]>,
    /// `spec.unschedulable`.
    pub unschedulable: bool,
    /// Allocatable cpu, millicores.
    pub alloc_cpu_m: i64,
    /// Allocatable memory, bytes.
    pub alloc_mem: i64,
    /// Allocatable pod slots.
    pub alloc_pods: i64,
}

impl NodeObj {
    /// Trims a Node; `None` without a name.
    #[must_use]
    pub fn from_k8s(node: &Node, interner: &Interner, cfg: &CacheConfig) -> Option<Self> {
        let name = interner.intern(node.metadata.name.as_deref()?);
        let labels =
            Labels::new(interner, node.metadata.labels.iter().flatten().map(|(k, v)| (k.as_str(), v.as_str())));
        let zone = labels.get(&cfg.zone_label).filter(|z| !z.is_empty()).map(|z| interner.intern(z));
        let has_hostname_label = labels.get(&cfg.hostname_label).is_some();
        let hostname = labels.get(&cfg.hostname_label).map_or_else(|| name.clone(), |h| interner.intern(h));
        let spec = node.spec.as_ref();
        let taints = spec
            .and_then(|s| s.taints.as_ref())
            .iter()
            .flat_map(|t| t.iter())
            .map(|t| Taint {
                key: interner.intern(&t.key),
                value: t.value.as_deref().map(|v| interner.intern(v)),
                effect: interner.intern(&t.effect),
            })
            .collect();
        let alloc = node.status.as_ref().and_then(|s| s.allocatable.as_ref());
        let get = |k: &str| alloc.and_then(|a| a.get(k));
        Some(Self {
            name,
            labels,
            zone,
            hostname,
            has_hostname_label,
            taints,
            unschedulable: spec.and_then(|s| s.unschedulable).unwrap_or(false),
            alloc_cpu_m: get("cpu")
                .map(|q| stowage_policy::Quantity::parse(&q.0).map(stowage_policy::Quantity::millis).unwrap_or(0))
                .unwrap_or(0),
            alloc_mem: get("memory").map(quantity_bytes).unwrap_or(0),
            alloc_pods: get("pods").map(quantity_bytes).unwrap_or(110),
        })
    }
}

/// The policy facts of an opted-in pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StowageBits {
    /// Group name (the namespace is the pod's).
    pub group: Option<Arc<str>>,
    /// Profile name.
    pub profile: Arc<str>,
    /// Role (annotation, else role labels).
    pub role: Option<Role>,
    /// `stowage.io/role`, kept so a config change can recompute `role`.
    pub role_annotation: Option<Role>,
    /// `stowage.io/members`.
    pub members: Option<u32>,
    /// Controlling StatefulSet.
    pub statefulset: Option<Arc<str>>,
    /// PVC names the pod mounts.
    pub claims: Box<[Arc<str>]>,
    /// Pod labels, kept so a config change can recompute `role`.
    pub labels: Box<[(Box<str>, Box<str>)]>,
    /// The profile is allowed in the pod's namespace, so the pod counts toward other groups'
    /// rules (density caps, separate primaries, stateful neighbours); a profile annotation
    /// forged outside the profile's namespaces takes no slot from anyone.
    pub counted: bool,
}

impl StowageBits {
    /// True for a primary.
    #[must_use]
    pub fn is_primary(&self) -> bool {
        self.role == Some(Role::Primary)
    }
}

/// The role from the kept labels, as policy resolution derives it.
pub(crate) fn role_from_labels(labels: &[(Box<str>, Box<str>)], cfg: &CacheConfig) -> Option<Role> {
    let label = |key: &str| labels.iter().find(|(k, _)| k.as_ref() == key).map(|(_, v)| v.as_ref());
    group::role_from_labels(label, &cfg.role_labels, &cfg.primary_values)
}

/// A trimmed Pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodObj {
    /// UID.
    pub uid: Arc<str>,
    /// Namespace.
    pub namespace: Arc<str>,
    /// Name.
    pub name: Arc<str>,
    /// `spec.nodeName`.
    pub node: Option<Arc<str>>,
    /// `status.nominatedNodeName`.
    pub nominated: Option<Arc<str>>,
    /// `metadata.deletionTimestamp` is set.
    pub terminating: bool,
    /// The `Ready` condition is true.
    pub ready: bool,
    /// Requests and QoS facts.
    pub resources: PodResources,
    /// A node agent: controlled by a DaemonSet, or a static (mirror) pod. Such pods run on every
    /// node of their kind, so they neither tell nodes apart nor can a placement avoid them; the
    /// noisy-neighbour term and `neighbours: avoid-unlimited` leave them out.
    pub node_agent: bool,
    /// Policy facts, for opted-in pods only.
    pub stowage: Option<Box<StowageBits>>,
}

/// PVC claim names a pod spec mounts (`persistentVolumeClaim` volumes and generic ephemeral
/// volumes, whose claim is `<pod>-<volume>`).
#[must_use]
pub fn claim_names(pod: &Pod) -> Vec<String> {
    let pod_name = pod.metadata.name.as_deref().unwrap_or_default();
    pod.spec
        .iter()
        .flat_map(|s| s.volumes.iter().flatten())
        .filter_map(|v| {
            if let Some(c) = &v.persistent_volume_claim {
                Some(c.claim_name.clone())
            } else {
                v.ephemeral.as_ref().map(|_| format!("{pod_name}-{}", v.name))
            }
        })
        .collect()
}

/// True for a pod controlled by a DaemonSet or a static pod's mirror.
#[must_use]
pub fn is_node_agent(pod: &Pod) -> bool {
    let meta = &pod.metadata;
    meta.annotations.as_ref().is_some_and(|a| a.contains_key("kubernetes.io/config.mirror"))
        || meta.owner_references.iter().flatten().any(|r| r.controller == Some(true) && r.kind == "DaemonSet")
}

impl PodObj {
    /// Trims a Pod; `None` for pods without uid/name or in a terminal phase (they hold no
    /// resources and are not members).
    #[must_use]
    pub fn from_k8s(pod: &Pod, interner: &Interner, cfg: &CacheConfig) -> Option<Self> {
        let meta = &pod.metadata;
        let status = pod.status.as_ref();
        if matches!(status.and_then(|s| s.phase.as_deref()), Some("Succeeded" | "Failed")) {
            return None;
        }
        let uid: Arc<str> = Arc::from(meta.uid.as_deref()?);
        let name: Arc<str> = Arc::from(meta.name.as_deref()?);
        let namespace = interner.intern(meta.namespace.as_deref().unwrap_or("default"));
        let spec = pod.spec.as_ref();
        let node = spec.and_then(|s| s.node_name.as_deref()).filter(|n| !n.is_empty()).map(|n| interner.intern(n));
        let nominated =
            status.and_then(|s| s.nominated_node_name.as_deref()).filter(|n| !n.is_empty()).map(|n| interner.intern(n));
        let ready = status
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
        let resources = spec.map(pod_resources).unwrap_or_default();
        let stowage = annotations::opted_in(meta).then(|| {
            let ann = meta.annotations.as_ref();
            let get = |k: &str| ann.and_then(|a| a.get(k));
            let labels: Box<[(Box<str>, Box<str>)]> =
                meta.labels.iter().flatten().map(|(k, v)| (k.as_str().into(), v.as_str().into())).collect();
            let role_annotation = get(ROLE).and_then(|r| Role::parse(r));
            let role = role_annotation.or_else(|| role_from_labels(&labels, cfg));
            let profile = get(PROFILE).map_or(DEFAULT_PROFILE, String::as_str);
            Box::new(StowageBits {
                group: group::group_name(meta).ok().flatten().map(|(g, _)| interner.intern(g)),
                counted: cfg.scopes.allows(profile, &namespace),
                profile: interner.intern(profile),
                role,
                role_annotation,
                members: get(MEMBERS).and_then(|m| group::parse_members(m)),
                statefulset: group::controlling_statefulset(meta).map(|s| interner.intern(s)),
                claims: claim_names(pod).iter().map(|c| interner.intern(c)).collect(),
                labels,
            })
        });
        Some(Self {
            uid,
            namespace,
            name,
            node,
            nominated,
            terminating: meta.deletion_timestamp.is_some(),
            ready,
            resources,
            node_agent: is_node_agent(pod),
            stowage,
        })
    }
}

/// Phase of a PersistentVolume.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PvPhase {
    /// Not yet bound to a claim.
    Available,
    /// Bound.
    Bound,
    /// Released, Failed or Pending (not usable for new claims).
    Other,
}

/// A trimmed PersistentVolume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PvObj {
    /// Name.
    pub name: Arc<str>,
    /// Storage class.
    pub class: Option<Arc<str>>,
    /// Capacity in bytes.
    pub capacity: i64,
    /// Required node affinity.
    pub pin: Option<NodeSelector>,
    /// The hostnames the affinity pins to, when it pins to hosts.
    pub hosts: Option<Box<[Arc<str>]>>,
    /// The affinity is nothing but `hostname In [hosts]`: a node found through its hostname
    /// label matches without evaluating the selector.
    pub host_only: bool,
    /// A `local` or `hostPath` volume.
    pub local: bool,
    /// `spec.claimRef` namespace/name.
    pub claim: Option<(Arc<str>, Arc<str>)>,
    /// Phase.
    pub phase: PvPhase,
}

impl PvObj {
    /// True when the volume can be used on `node`.
    #[must_use]
    pub fn usable_on(&self, node: &NodeObj) -> bool {
        if self.host_only && node.has_hostname_label {
            return self.hosts.as_ref().is_some_and(|h| h.contains(&node.hostname));
        }
        self.pin.as_ref().is_some_and(|p| p.matches(&node.name, &node.labels))
    }

    /// True when the volume lives on specific node(s): its affinity names hosts, or it is a
    /// local/hostPath volume with any affinity.
    #[must_use]
    pub fn node_pinned(&self) -> bool {
        self.hosts.is_some() || (self.local && self.pin.is_some())
    }

    /// Trims a PersistentVolume.
    #[must_use]
    pub fn from_k8s(pv: &PersistentVolume, interner: &Interner, cfg: &CacheConfig) -> Option<Self> {
        let name = interner.intern(pv.metadata.name.as_deref()?);
        let spec = pv.spec.as_ref();
        let pin = spec
            .and_then(|s| s.node_affinity.as_ref())
            .and_then(|a| a.required.as_ref())
            .map(|r| NodeSelector::from_k8s(interner, r));
        let hosts = pin.as_ref().and_then(|p| p.pinned_hosts(&cfg.hostname_label)).map(Vec::into_boxed_slice);
        let host_only = hosts.is_some()
            && pin.as_ref().is_some_and(|p| p.terms.iter().all(|t| t.exprs.len() == 1 && t.fields.is_empty()));
        let phase = match pv.status.as_ref().and_then(|s| s.phase.as_deref()) {
            Some("Available") => PvPhase::Available,
            Some("Bound") => PvPhase::Bound,
            // A PV without status yet is treated as available (the binder will set it).
            None => PvPhase::Available,
            Some(_) => PvPhase::Other,
        };
        Some(Self {
            name,
            class: spec
                .and_then(|s| s.storage_class_name.as_deref())
                .filter(|c| !c.is_empty())
                .map(|c| interner.intern(c)),
            capacity: spec.and_then(|s| s.capacity.as_ref()).and_then(|c| c.get("storage")).map_or(0, quantity_bytes),
            pin,
            hosts,
            host_only,
            local: spec.is_some_and(|s| s.local.is_some() || s.host_path.is_some()),
            claim: spec.and_then(|s| s.claim_ref.as_ref()).and_then(|c| {
                Some((
                    interner.intern(c.namespace.as_deref().unwrap_or("default")),
                    interner.intern(c.name.as_deref()?),
                ))
            }),
            phase,
        })
    }
}

/// A trimmed PersistentVolumeClaim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PvcObj {
    /// Namespace.
    pub namespace: Arc<str>,
    /// Name.
    pub name: Arc<str>,
    /// Storage class.
    pub class: Option<Arc<str>>,
    /// Requested size in bytes.
    pub request: i64,
    /// `spec.volumeName`.
    pub volume: Option<Arc<str>>,
    /// `status.phase == Bound`.
    pub bound: bool,
    /// The `volume.kubernetes.io/selected-node` annotation.
    pub selected_node: Option<Arc<str>>,
}

/// Annotation the scheduler sets on a WaitForFirstConsumer claim once a node is chosen.
pub const SELECTED_NODE: &str = "volume.kubernetes.io/selected-node";

impl PvcObj {
    /// Trims a PersistentVolumeClaim.
    #[must_use]
    pub fn from_k8s(pvc: &PersistentVolumeClaim, interner: &Interner) -> Option<Self> {
        let spec = pvc.spec.as_ref();
        Some(Self {
            namespace: interner.intern(pvc.metadata.namespace.as_deref().unwrap_or("default")),
            name: interner.intern(pvc.metadata.name.as_deref()?),
            class: spec
                .and_then(|s| s.storage_class_name.as_deref())
                .filter(|c| !c.is_empty())
                .map(|c| interner.intern(c)),
            request: spec
                .and_then(|s| s.resources.as_ref())
                .and_then(|r| r.requests.as_ref())
                .and_then(|r| r.get("storage"))
                .map_or(0, quantity_bytes),
            volume: spec.and_then(|s| s.volume_name.as_deref()).filter(|v| !v.is_empty()).map(|v| interner.intern(v)),
            bound: pvc.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound"),
            selected_node: pvc
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(SELECTED_NODE))
                .map(|n| interner.intern(n)),
        })
    }
}

/// The provisioner of statically provisioned local volumes.
pub const NO_PROVISIONER: &str = "kubernetes.io/no-provisioner";

/// A trimmed StorageClass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClassObj {
    /// Name.
    pub name: Arc<str>,
    /// Provisioner.
    pub provisioner: Arc<str>,
    /// `volumeBindingMode: WaitForFirstConsumer`.
    pub wait_for_first_consumer: bool,
}

impl ClassObj {
    /// True for `kubernetes.io/no-provisioner` (pre-created local PVs).
    #[must_use]
    pub fn no_provisioner(&self) -> bool {
        self.provisioner.as_ref() == NO_PROVISIONER
    }

    /// Trims a StorageClass.
    #[must_use]
    pub fn from_k8s(sc: &StorageClass, interner: &Interner) -> Option<Self> {
        Some(Self {
            name: interner.intern(sc.metadata.name.as_deref()?),
            provisioner: interner.intern(&sc.provisioner),
            wait_for_first_consumer: sc.volume_binding_mode.as_deref() == Some("WaitForFirstConsumer"),
        })
    }
}

/// A trimmed CSIStorageCapacity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CapObj {
    /// `namespace/name`.
    pub key: Arc<str>,
    /// Storage class.
    pub class: Arc<str>,
    /// Topology segment (`nodeTopology`); `None` matches no node, as upstream.
    pub topology: Option<LabelSelector>,
    /// The hostname the segment is pinned to, when its matchLabels name one.
    pub host: Option<Arc<str>>,
    /// Capacity in bytes.
    pub capacity: Option<i64>,
    /// `maximumVolumeSize` in bytes.
    pub max_volume_size: Option<i64>,
}

impl CapObj {
    /// The largest single volume this segment can provision (`maximumVolumeSize`, else
    /// `capacity`), as the scheduler's VolumeBinding plugin checks it.
    #[must_use]
    pub fn usable(&self) -> i64 {
        self.max_volume_size.or(self.capacity).unwrap_or(0)
    }

    /// Trims a CSIStorageCapacity.
    #[must_use]
    pub fn from_k8s(cap: &CSIStorageCapacity, interner: &Interner, cfg: &CacheConfig) -> Option<Self> {
        let ns = cap.metadata.namespace.as_deref().unwrap_or("default");
        let name = cap.metadata.name.as_deref()?;
        let topology = cap.node_topology.as_ref().map(|t| LabelSelector::from_k8s(interner, t));
        let host = topology.as_ref().and_then(|t| t.required_value(&cfg.hostname_label)).cloned();
        Some(Self {
            key: Arc::from(format!("{ns}/{name}")),
            class: interner.intern(&cap.storage_class_name),
            topology,
            host,
            capacity: cap.capacity.as_ref().map(quantity_bytes),
            max_volume_size: cap.maximum_volume_size.as_ref().map(quantity_bytes),
        })
    }
}

/// A trimmed StatefulSet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StsObj {
    /// Namespace.
    pub namespace: Arc<str>,
    /// Name.
    pub name: Arc<str>,
    /// `spec.replicas` (default 1).
    pub replicas: u32,
    /// `volumeClaimTemplates[].metadata.name`.
    pub templates: Box<[Arc<str>]>,
}

impl StsObj {
    /// Trims a StatefulSet.
    #[must_use]
    pub fn from_k8s(sts: &StatefulSet, interner: &Interner) -> Option<Self> {
        let spec = sts.spec.as_ref();
        Some(Self {
            namespace: interner.intern(sts.metadata.namespace.as_deref().unwrap_or("default")),
            name: interner.intern(sts.metadata.name.as_deref()?),
            replicas: spec.and_then(|s| s.replicas).map_or(1, |r| u32::try_from(r).unwrap_or(0)),
            templates: spec
                .and_then(|s| s.volume_claim_templates.as_ref())
                .iter()
                .flat_map(|t| t.iter())
                .filter_map(|t| t.metadata.name.as_deref().map(|n| interner.intern(n)))
                .collect(),
        })
    }
}
