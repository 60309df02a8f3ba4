//! Group, member and node facts: the plain values [`crate::decide`] and [`crate::audit`] work
//! on, and pure functions that derive them from Kubernetes objects (no IO).

use std::{
    collections::{BTreeMap, HashMap},
    sync::Arc,
    time::Duration,
};

use k8s_openapi::{
    api::{
        apps::v1::StatefulSet,
        coordination::v1::Lease,
        core::v1::{Node, PersistentVolume, PersistentVolumeClaim, Pod},
    },
    apimachinery::pkg::apis::meta::v1::ObjectMeta,
    jiff::Timestamp,
};
use stowage_policy::{Config, GroupKey, Role, annotations, config::RecoveryMode};

/// Pod annotation overriding the profile's recovery mode: `off`, `report` or `rebuild`.
pub const RECOVERY_ANNOTATION: &str = "stowage.io/recovery";
/// Annotation (`"true"`) on a member pod or on the StatefulSet that stops every recovery action
/// for the group.
pub const PAUSED_ANNOTATION: &str = "stowage.io/recovery-paused";
/// The taint an administrator sets on a node that is shut down for good (non-graceful node
/// shutdown).
pub const OUT_OF_SERVICE_TAINT: &str = "node.kubernetes.io/out-of-service";
/// Namespace of the kubelets' heartbeat Leases.
pub const NODE_LEASE_NAMESPACE: &str = "kube-node-lease";

/// The status of a node's `Ready` condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Readiness {
    /// `True`.
    Ready,
    /// `False`.
    NotReady,
    /// `Unknown` (the node lifecycle controller stopped hearing from the kubelet), or no
    /// condition at all.
    Unknown,
}

/// What recovery needs to know about one node that exists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeFacts {
    /// Node name.
    pub name: String,
    /// Zone label value, if any.
    pub zone: Option<String>,
    /// The `Ready` condition.
    pub readiness: Readiness,
    /// When the `Ready` condition last changed status.
    pub ready_since: Option<Timestamp>,
    /// The last renewal of the node's Lease in `kube-node-lease`.
    pub lease_renewed: Option<Timestamp>,
    /// Tainted `node.kubernetes.io/out-of-service`.
    pub out_of_service: bool,
    /// When that taint was added (`timeAdded`; the apiserver records it for `NoExecute`).
    pub out_of_service_since: Option<Timestamp>,
    /// `spec.unschedulable` (cordoned).
    pub unschedulable: bool,
}

impl NodeFacts {
    /// Ready, not out of service.
    #[must_use]
    pub fn healthy(&self) -> bool {
        self.readiness == Readiness::Ready && !self.out_of_service
    }

    /// Can take a rebuilt member: healthy and not cordoned.
    #[must_use]
    pub fn can_host(&self) -> bool {
        self.healthy() && !self.unschedulable
    }
}

/// The nodes that exist, by name. A node missing from the map has been deleted.
pub type Nodes = BTreeMap<String, NodeFacts>;

/// One claim of a member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimFacts {
    /// Claim name (same namespace as the pod).
    pub name: String,
    /// Claim uid (empty when the claim does not exist).
    pub uid: String,
    /// The node the claim's volume is pinned to (a local or hostPath volume, or any volume
    /// whose node affinity names exactly one host), if any.
    pub pinned_node: Option<String>,
    /// The claim is already being deleted.
    pub terminating: bool,
}

/// One member pod of a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberFacts {
    /// Pod name.
    pub name: String,
    /// Pod uid.
    pub uid: String,
    /// `spec.nodeName`, when bound.
    pub node: Option<String>,
    /// `Ready` condition `True`.
    pub ready: bool,
    /// Has a deletion timestamp (Terminating).
    pub terminating: bool,
    /// Labelled primary (the config's role labels) or annotated `stowage.io/role: primary`.
    pub primary: bool,
    /// Effective recovery mode (profile, then the pod's annotation).
    pub mode: RecoveryMode,
    /// The profile's `after`.
    pub after: Duration,
    /// The profile's `stuckAfter`.
    pub stuck_after: Duration,
    /// Not bound, and the scheduler said why: `PodScheduled` is `False` with reason
    /// `Unschedulable`.
    pub unschedulable: bool,
    /// Carries the pause annotation.
    pub paused: bool,
    /// The pod's claims.
    pub claims: Vec<ClaimFacts>,
}

impl MemberFacts {
    /// The node the member lives on: where it is bound, else where its local data is.
    #[must_use]
    pub fn home(&self) -> Option<&str> {
        self.node.as_deref().or_else(|| self.claims.iter().find_map(|c| c.pinned_node.as_deref()))
    }
}

/// A replica group and everything recovery decides on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupFacts {
    /// Namespace and group name.
    pub key: GroupKey,
    /// Voting members `n`: `stowage.io/members`, else the StatefulSet's replicas, else the
    /// members seen.
    pub n: u32,
    /// The controlling StatefulSet, when every member has the same one.
    pub statefulset: Option<String>,
    /// The StatefulSet carries the pause annotation.
    pub statefulset_paused: bool,
    /// Member pods, by name.
    pub members: Vec<MemberFacts>,
}

impl GroupFacts {
    /// Paused on the StatefulSet or on any member.
    #[must_use]
    pub fn paused(&self) -> bool {
        self.statefulset_paused || self.members.iter().any(|m| m.paused)
    }

    /// The member named `name`.
    #[must_use]
    pub fn member(&self, name: &str) -> Option<&MemberFacts> {
        self.members.iter().find(|m| m.name == name)
    }
}

/// The Kubernetes objects facts are derived from (any order), borrowed as the watch caches hold
/// them: shared, never copied.
#[derive(Debug, Clone, Copy)]
pub struct Objects<'a> {
    /// Nodes.
    pub nodes: &'a [Arc<Node>],
    /// Node Leases (those outside `kube-node-lease` are ignored).
    pub leases: &'a [Arc<Lease>],
    /// Pods.
    pub pods: &'a [Arc<Pod>],
    /// Claims.
    pub claims: &'a [Arc<PersistentVolumeClaim>],
    /// Volumes.
    pub volumes: &'a [Arc<PersistentVolume>],
    /// StatefulSets.
    pub statefulsets: &'a [Arc<StatefulSet>],
}

/// The same objects owned, as the watch caches hand them out (their `Arc`s, never the objects
/// copied); [`Lists::objects`] borrows them for the facts.
#[derive(Debug, Clone, Default)]
pub struct Lists {
    /// Nodes.
    pub nodes: Vec<Arc<Node>>,
    /// Node Leases (those outside `kube-node-lease` are ignored).
    pub leases: Vec<Arc<Lease>>,
    /// Pods.
    pub pods: Vec<Arc<Pod>>,
    /// Claims.
    pub claims: Vec<Arc<PersistentVolumeClaim>>,
    /// Volumes.
    pub volumes: Vec<Arc<PersistentVolume>>,
    /// StatefulSets.
    pub statefulsets: Vec<Arc<StatefulSet>>,
}

impl Lists {
    /// What the leader takes from its caches for a round: every list as it is, except the pods,
    /// of which only the opted-in ones are kept (no other pod can be a member).
    #[must_use]
    pub fn for_round(
        nodes: Vec<Arc<Node>>,
        leases: Vec<Arc<Lease>>,
        mut pods: Vec<Arc<Pod>>,
        claims: Vec<Arc<PersistentVolumeClaim>>,
        volumes: Vec<Arc<PersistentVolume>>,
        statefulsets: Vec<Arc<StatefulSet>>,
    ) -> Self {
        pods.retain(|p| annotations::opted_in(&p.metadata));
        Self { nodes, leases, pods, claims, volumes, statefulsets }
    }

    /// The lists, borrowed.
    #[must_use]
    pub fn objects(&self) -> Objects<'_> {
        Objects {
            nodes: &self.nodes,
            leases: &self.leases,
            pods: &self.pods,
            claims: &self.claims,
            volumes: &self.volumes,
            statefulsets: &self.statefulsets,
        }
    }
}

/// Node facts for every node.
#[must_use]
pub fn node_facts(nodes: &[Arc<Node>], leases: &[Arc<Lease>], cfg: &Config) -> Nodes {
    let renewed: HashMap<&str, Timestamp> = leases
        .iter()
        .filter(|l| l.metadata.namespace.as_deref() == Some(NODE_LEASE_NAMESPACE))
        .filter_map(|l| Some((l.metadata.name.as_deref()?, l.spec.as_ref()?.renew_time.as_ref()?.0)))
        .collect();
    nodes
        .iter()
        .filter_map(|node| {
            let name = node.metadata.name.clone()?;
            let ready = node
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"));
            let readiness = match ready.map(|c| c.status.as_str()) {
                Some("True") => Readiness::Ready,
                Some("False") => Readiness::NotReady,
                _ => Readiness::Unknown,
            };
            let spec = node.spec.as_ref();
            let out_of_service =
                spec.and_then(|s| s.taints.as_ref()).and_then(|ts| ts.iter().find(|t| t.key == OUT_OF_SERVICE_TAINT));
            let facts = NodeFacts {
                zone: label(&node.metadata, &cfg.zone_label).map(str::to_owned),
                readiness,
                ready_since: ready.and_then(|c| c.last_transition_time.as_ref()).map(|t| t.0),
                lease_renewed: renewed.get(name.as_str()).copied(),
                out_of_service: out_of_service.is_some(),
                out_of_service_since: out_of_service.and_then(|t| t.time_added.as_ref()).map(|t| t.0),
                unschedulable: spec.and_then(|s| s.unschedulable).unwrap_or(false),
                name: name.clone(),
            };
            Some((name, facts))
        })
        .collect()
}

fn label<'m>(meta: &'m ObjectMeta, key: &str) -> Option<&'m str> {
    meta.labels.as_ref()?.get(key).map(String::as_str)
}

fn annotation<'m>(meta: &'m ObjectMeta, key: &str) -> Option<&'m str> {
    meta.annotations.as_ref()?.get(key).map(String::as_str)
}

fn is_true(v: Option<&str>) -> bool {
    v.is_some_and(|v| v.eq_ignore_ascii_case("true"))
}

/// The host a volume is pinned to: the single value of a required node-affinity term on the
/// hostname label (as local and hostPath volumes are provisioned), mapped to a node name.
#[must_use]
pub fn pinned_host(pv: &PersistentVolume, cfg: &Config) -> Option<String> {
    let terms = &pv.spec.as_ref()?.node_affinity.as_ref()?.required.as_ref()?.node_selector_terms;
    let mut hosts = terms.iter().flat_map(|t| t.match_expressions.iter().flatten()).filter(|e| {
        e.key == cfg.hostname_label && e.operator == "In" && e.values.as_ref().is_some_and(|v| v.len() == 1)
    });
    let host = hosts.next()?.values.as_ref()?.first()?.clone();
    // Several terms naming different hosts: not pinned to one node.
    let single = terms.len() == 1 && hosts.next().is_none();
    single.then_some(host)
}

/// The recovery mode and pause the pod's own annotations ask for.
fn pod_recovery(meta: &ObjectMeta, profile_mode: RecoveryMode) -> (RecoveryMode, bool) {
    let mode = match annotation(meta, RECOVERY_ANNOTATION) {
        None => profile_mode,
        // An unreadable override never widens what is done.
        Some(v) => RecoveryMode::parse(v).unwrap_or(RecoveryMode::Off),
    };
    (mode, is_true(annotation(meta, PAUSED_ANNOTATION)))
}

/// The pod's metadata without recovery's own annotations, which the placement vocabulary does
/// not know.
fn placement_meta(meta: &ObjectMeta) -> ObjectMeta {
    let mut meta = meta.clone();
    if let Some(a) = meta.annotations.as_mut() {
        a.remove(RECOVERY_ANNOTATION);
        a.remove(PAUSED_ANNOTATION);
    }
    meta
}

/// Every group of opted-in pods, with member, claim and volume facts. Pods whose annotations do
/// not resolve, or that have no group, are skipped. Members are sorted by name.
#[must_use]
pub fn group_facts(objects: &Objects<'_>, cfg: &Config) -> Vec<GroupFacts> {
    let hosts_by_label: HashMap<&str, &str> = objects
        .nodes
        .iter()
        .filter_map(|n| Some((label(&n.metadata, &cfg.hostname_label)?, n.metadata.name.as_deref()?)))
        .collect();
    let volumes: HashMap<&str, &PersistentVolume> =
        objects.volumes.iter().filter_map(|v| Some((v.metadata.name.as_deref()?, &**v))).collect();
    let claims: HashMap<(&str, &str), &PersistentVolumeClaim> = objects
        .claims
        .iter()
        .filter_map(|c| Some(((c.metadata.namespace.as_deref()?, c.metadata.name.as_deref()?), &**c)))
        .collect();
    let statefulsets: HashMap<(&str, &str), &StatefulSet> = objects
        .statefulsets
        .iter()
        .filter_map(|s| Some(((s.metadata.namespace.as_deref()?, s.metadata.name.as_deref()?), &**s)))
        .collect();

    struct Acc {
        members: Vec<MemberFacts>,
        announced: Option<u32>,
        statefulsets: Vec<Option<String>>,
    }
    let mut groups: BTreeMap<GroupKey, Acc> = BTreeMap::new();
    for pod in objects.pods {
        if !annotations::opted_in(&pod.metadata) {
            continue;
        }
        let meta = placement_meta(&pod.metadata);
        let Ok(Some(policy)) = stowage_policy::resolve(&meta, cfg) else { continue };
        let Some(key) = policy.group.clone() else { continue };
        let namespace = key.namespace.as_str();
        let (mode, paused) = pod_recovery(&pod.metadata, policy.profile.recovery.mode);
        let pod_claims = pod
            .spec
            .iter()
            .flat_map(|s| s.volumes.iter().flatten())
            .filter_map(|v| v.persistent_volume_claim.as_ref().map(|c| c.claim_name.clone()))
            .map(|name| {
                let claim = claims.get(&(namespace, name.as_str()));
                let pinned_node = claim
                    .and_then(|c| c.spec.as_ref()?.volume_name.as_deref())
                    .and_then(|pv| volumes.get(pv))
                    .and_then(|pv| pinned_host(pv, cfg))
                    .map(|host| hosts_by_label.get(host.as_str()).map_or(host.clone(), |n| (*n).to_owned()));
                let terminating = claim.is_some_and(|c| c.metadata.deletion_timestamp.is_some());
                let uid = claim.and_then(|c| c.metadata.uid.clone()).unwrap_or_default();
                ClaimFacts { name, uid, pinned_node, terminating }
            })
            .collect();
        let conditions = pod.status.as_ref().and_then(|s| s.conditions.as_deref()).unwrap_or_default();
        let ready = conditions.iter().any(|c| c.type_ == "Ready" && c.status == "True");
        let unschedulable = conditions
            .iter()
            .any(|c| c.type_ == "PodScheduled" && c.status == "False" && c.reason.as_deref() == Some("Unschedulable"));
        let member = MemberFacts {
            name: pod.metadata.name.clone().unwrap_or_default(),
            uid: pod.metadata.uid.clone().unwrap_or_default(),
            node: pod.spec.as_ref().and_then(|s| s.node_name.clone()).filter(|n| !n.is_empty()),
            ready,
            terminating: pod.metadata.deletion_timestamp.is_some(),
            primary: policy.role == Some(Role::Primary),
            mode,
            after: policy.profile.recovery.after,
            stuck_after: policy.profile.recovery.stuck_after,
            unschedulable,
            paused,
            claims: pod_claims,
        };
        let acc =
            groups.entry(key).or_insert_with(|| Acc { members: Vec::new(), announced: None, statefulsets: vec![] });
        acc.announced = acc.announced.max(policy.members);
        acc.statefulsets.push(policy.statefulset.clone());
        acc.members.push(member);
    }
    groups
        .into_iter()
        .map(|(key, mut acc)| {
            acc.members.sort_by(|a, b| a.name.cmp(&b.name));
            let first = acc.statefulsets.first().cloned().flatten();
            let statefulset = first.filter(|s| acc.statefulsets.iter().all(|o| o.as_deref() == Some(s.as_str())));
            let sts = statefulset.as_deref().and_then(|s| statefulsets.get(&(key.namespace.as_str(), s)));
            let replicas = sts.and_then(|s| s.spec.as_ref()?.replicas).and_then(|r| u32::try_from(r).ok());
            let seen = u32::try_from(acc.members.len()).unwrap_or(u32::MAX);
            GroupFacts {
                n: stowage_policy::group::voting_members(acc.announced, replicas, || seen).0,
                statefulset_paused: sts.is_some_and(|s| is_true(annotation(&s.metadata, PAUSED_ANNOTATION))),
                statefulset,
                members: acc.members,
                key,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn from<T: serde::de::DeserializeOwned>(v: serde_json::Value) -> T {
        serde_json::from_value(v).expect("valid object")
    }

    fn pv(name: &str, host: &str, claim: &str) -> PersistentVolume {
        from(json!({
            "metadata": {"name": name},
            "spec": {
                "capacity": {"storage": "1Gi"}, "local": {"path": "/mnt"},
                "claimRef": {"namespace": "db", "name": claim},
                "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                    {"key": "kubernetes.io/hostname", "operator": "In", "values": [host]}]}]}}
            }
        }))
    }

    fn pod(name: &str, node: &str, annotations: serde_json::Value, labels: serde_json::Value) -> Pod {
        from(json!({
            "metadata": {"name": name, "namespace": "db", "uid": format!("uid-{name}"),
                "annotations": annotations, "labels": labels,
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "pg", "uid": "s", "controller": true}]},
            "spec": {"nodeName": node, "containers": [{"name": "c"}],
                "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": format!("data-{name}")}}]},
            "status": {"conditions": [{"type": "Ready", "status": "True"}]}
        }))
    }

    /// The objects as the watch caches share them.
    fn arcs<T>(objects: Vec<T>) -> Vec<Arc<T>> {
        objects.into_iter().map(Arc::new).collect()
    }

    #[test]
    fn facts_from_objects() {
        let cfg = Config::from_yaml("profiles: {pg: {recovery: {mode: report, after: 30s}}}").unwrap();
        let nodes: Vec<Node> = vec![
            from(
                json!({"metadata": {"name": "n1", "labels": {"kubernetes.io/hostname": "h1", "topology.kubernetes.io/zone": "a"}},
                "spec": {"taints": [{"key": OUT_OF_SERVICE_TAINT, "effect": "NoExecute", "timeAdded": "2026-01-01T00:00:09Z"}]},
                "status": {"conditions": [{"type": "Ready", "status": "Unknown", "lastTransitionTime": "2026-01-01T00:00:00Z"}]}}),
            ),
            from(json!({"metadata": {"name": "n2", "labels": {"kubernetes.io/hostname": "n2"}},
                "status": {"conditions": [{"type": "Ready", "status": "True"}]}})),
        ];
        let leases: Vec<Lease> = vec![
            from(
                json!({"metadata": {"name": "n1", "namespace": NODE_LEASE_NAMESPACE}, "spec": {"renewTime": "2026-01-01T00:00:05.000000Z"}}),
            ),
            from(
                json!({"metadata": {"name": "n2", "namespace": "other"}, "spec": {"renewTime": "2026-01-01T00:00:05.000000Z"}}),
            ),
        ];
        let (nodes, leases) = (arcs(nodes), arcs(leases));
        let facts = node_facts(&nodes, &leases, &cfg);
        let n1 = &facts["n1"];
        assert_eq!((n1.readiness, n1.out_of_service, n1.zone.as_deref()), (Readiness::Unknown, true, Some("a")));
        assert_eq!(n1.ready_since, Some("2026-01-01T00:00:00Z".parse().unwrap()));
        assert_eq!(n1.out_of_service_since, Some("2026-01-01T00:00:09Z".parse().unwrap()));
        assert!(n1.lease_renewed.is_some());
        assert!(facts["n2"].healthy() && facts["n2"].lease_renewed.is_none(), "leases elsewhere are not node leases");

        let pods = vec![
            pod("pg-0", "n1", json!({"stowage.io/profile": "pg", "stowage.io/recovery": "rebuild"}), json!({})),
            pod(
                "pg-1",
                "n2",
                json!({"stowage.io/profile": "pg", "stowage.io/recovery-paused": "true"}),
                json!({"role": "primary"}),
            ),
            pod("other", "n2", json!({}), json!({})),
        ];
        let claims: Vec<PersistentVolumeClaim> = vec![
            from(json!({"metadata": {"name": "data-pg-0", "namespace": "db"}, "spec": {"volumeName": "pv-0"}})),
            from(
                json!({"metadata": {"name": "data-pg-1", "namespace": "db", "deletionTimestamp": "2026-01-01T00:00:00Z"}, "spec": {"volumeName": "pv-1"}}),
            ),
        ];
        let volumes = vec![pv("pv-0", "h1", "data-pg-0"), pv("pv-1", "n2", "data-pg-1")];
        let sts: Vec<StatefulSet> =
            vec![from(json!({"metadata": {"name": "pg", "namespace": "db"}, "spec": {"replicas": 3,
            "selector": {}, "serviceName": "pg", "template": {}}}))];
        let lists = Lists {
            nodes,
            leases,
            pods: arcs(pods),
            claims: arcs(claims),
            volumes: arcs(volumes),
            statefulsets: arcs(sts),
        };
        let groups = group_facts(&lists.objects(), &cfg);
        assert_eq!(groups.len(), 1);
        let g = &groups[0];
        assert_eq!((g.key.to_string(), g.n, g.statefulset.as_deref()), ("db/pg".to_owned(), 3, Some("pg")));
        assert!(g.paused(), "a paused member pauses the group");
        let m0 = g.member("pg-0").unwrap();
        assert_eq!(m0.mode, RecoveryMode::Rebuild, "the pod's annotation overrides the profile");
        assert_eq!(m0.after, Duration::from_secs(30));
        assert_eq!(m0.claims[0].pinned_node.as_deref(), Some("n1"), "hostname label mapped to the node name");
        assert!(!m0.primary);
        let m1 = g.member("pg-1").unwrap();
        assert!(m1.primary && m1.paused && m1.claims[0].terminating);
        assert_eq!(m1.mode, RecoveryMode::Report);
    }

    #[test]
    fn a_bad_override_means_off() {
        let meta: ObjectMeta = from(json!({"annotations": {RECOVERY_ANNOTATION: "yes"}}));
        assert_eq!(pod_recovery(&meta, RecoveryMode::Rebuild), (RecoveryMode::Off, false));
    }

    #[test]
    fn a_volume_reachable_from_two_hosts_is_not_pinned() {
        let cfg = Config::default();
        let mut two = pv("pv", "h1", "c");
        let json = serde_json::to_value(&two).unwrap();
        let mut json = json;
        json["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"][0]["matchExpressions"][0]["values"] =
            json!(["h1", "h2"]);
        two = from(json);
        assert_eq!(pinned_host(&two, &cfg), None);
        assert_eq!(pinned_host(&pv("pv", "h1", "c"), &cfg).as_deref(), Some("h1"));
    }
}
