//! Object builders for tests and benchmarks (not part of the supported API).

use std::collections::BTreeMap;

use k8s_openapi::api::{
    apps::v1::StatefulSet,
    core::v1::{Node, PersistentVolume, PersistentVolumeClaim, Pod},
    storage::v1::{CSIStorageCapacity, StorageClass},
};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

/// Zone label used by the builders.
pub const ZONE: &str = "topology.kubernetes.io/zone";
/// Hostname label used by the builders.
pub const HOSTNAME: &str = "kubernetes.io/hostname";

fn from<T: DeserializeOwned + Default>(v: Value) -> T {
    serde_json::from_value(v).unwrap_or_default()
}

/// A Node with a zone (or none), allocatable cpu/memory and a hostname label equal to its name.
#[must_use]
pub fn node(name: &str, zone: Option<&str>, cpu: &str, mem: &str) -> Node {
    let mut labels = json!({ HOSTNAME: name });
    if let Some(z) = zone {
        labels[ZONE] = json!(z);
    }
    from(json!({
        "metadata": {"name": name, "labels": labels},
        "status": {"allocatable": {"cpu": cpu, "memory": mem, "pods": "110"}}
    }))
}

/// Builds a Pod step by step.
#[derive(Debug, Clone)]
pub struct PodBuilder(Value);

impl PodBuilder {
    /// A running pod with one container and no resources.
    #[must_use]
    pub fn new(namespace: &str, name: &str) -> Self {
        Self(json!({
            "metadata": {"namespace": namespace, "name": name, "uid": format!("uid-{namespace}-{name}"),
                         "annotations": {}, "labels": {}},
            "spec": {"containers": [{"name": "db", "image": "db"}], "volumes": []},
            "status": {"phase": "Running"}
        }))
    }

    /// Sets the uid.
    #[must_use]
    pub fn uid(mut self, uid: &str) -> Self {
        self.0["metadata"]["uid"] = json!(uid);
        self
    }

    /// Adds an annotation.
    #[must_use]
    pub fn annotate(mut self, key: &str, value: &str) -> Self {
        self.0["metadata"]["annotations"][key] = json!(value);
        self
    }

    /// Opts in with a profile and a group.
    #[must_use]
    pub fn member(self, profile: &str, group: &str) -> Self {
        self.annotate("stowage.io/profile", profile).annotate("stowage.io/group", group)
    }

    /// Adds a label.
    #[must_use]
    pub fn label(mut self, key: &str, value: &str) -> Self {
        self.0["metadata"]["labels"][key] = json!(value);
        self
    }

    /// Sets a controlling StatefulSet owner.
    #[must_use]
    pub fn owned_by_statefulset(mut self, sts: &str) -> Self {
        self.0["metadata"]["ownerReferences"] = json!([{
            "apiVersion": "apps/v1", "kind": "StatefulSet", "name": sts, "uid": format!("sts-{sts}"), "controller": true
        }]);
        self
    }

    /// Binds the pod to a node.
    #[must_use]
    pub fn node(mut self, node: &str) -> Self {
        self.0["spec"]["nodeName"] = json!(node);
        self
    }

    /// Sets the nominated node.
    #[must_use]
    pub fn nominated(mut self, node: &str) -> Self {
        self.0["status"]["nominatedNodeName"] = json!(node);
        self
    }

    /// Sets container requests (and limits equal to them, for Guaranteed QoS).
    #[must_use]
    pub fn guaranteed(mut self, cpu: &str, mem: &str) -> Self {
        let r = json!({"cpu": cpu, "memory": mem});
        self.0["spec"]["containers"][0]["resources"] = json!({"requests": r, "limits": r});
        self
    }

    /// Sets container requests only.
    #[must_use]
    pub fn requests(mut self, cpu: &str, mem: &str) -> Self {
        self.0["spec"]["containers"][0]["resources"] = json!({"requests": {"cpu": cpu, "memory": mem}});
        self
    }

    /// Mounts a PVC.
    #[must_use]
    pub fn claim(mut self, claim: &str) -> Self {
        if let Some(v) = self.0["spec"]["volumes"].as_array_mut() {
            v.push(json!({"name": format!("v{}", v.len()), "persistentVolumeClaim": {"claimName": claim}}));
        }
        self
    }

    /// Sets the phase.
    #[must_use]
    pub fn phase(mut self, phase: &str) -> Self {
        self.0["status"]["phase"] = json!(phase);
        self
    }

    /// Marks the pod terminating.
    #[must_use]
    pub fn terminating(mut self) -> Self {
        self.0["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
        self
    }

    /// Marks the pod Ready.
    #[must_use]
    pub fn ready(mut self) -> Self {
        self.0["status"]["conditions"] = json!([{"type": "Ready", "status": "True"}]);
        self
    }

    /// Sets a nodeSelector entry.
    #[must_use]
    pub fn node_selector(mut self, key: &str, value: &str) -> Self {
        self.0["spec"]["nodeSelector"][key] = json!(value);
        self
    }

    /// The pod.
    #[must_use]
    pub fn build(self) -> Pod {
        from(self.0)
    }
}

/// A local PV pinned to `host` by hostname affinity.
#[must_use]
pub fn local_pv(name: &str, host: &str, class: &str, size: &str) -> PersistentVolume {
    from(json!({
        "metadata": {"name": name},
        "spec": {
            "capacity": {"storage": size}, "storageClassName": class, "local": {"path": "/mnt/disks/d"},
            "accessModes": ["ReadWriteOnce"],
            "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                {"key": HOSTNAME, "operator": "In", "values": [host]}]}]}}
        },
        "status": {"phase": "Available"}
    }))
}

/// A local PV bound to `namespace/claim`.
#[must_use]
pub fn bound_local_pv(
    name: &str,
    host: &str,
    class: &str,
    size: &str,
    namespace: &str,
    claim: &str,
) -> PersistentVolume {
    let mut pv = local_pv(name, host, class, size);
    if let Some(spec) = pv.spec.as_mut() {
        spec.claim_ref = Some(k8s_openapi::api::core::v1::ObjectReference {
            namespace: Some(namespace.into()),
            name: Some(claim.into()),
            ..Default::default()
        });
    }
    if let Some(status) = pv.status.as_mut() {
        status.phase = Some("Bound".into());
    }
    pv
}

/// A PVC of `class` requesting `size`, bound to `volume` when given.
#[must_use]
pub fn pvc(namespace: &str, name: &str, class: &str, size: &str, volume: Option<&str>) -> PersistentVolumeClaim {
    let mut v = json!({
        "metadata": {"namespace": namespace, "name": name},
        "spec": {"storageClassName": class, "accessModes": ["ReadWriteOnce"],
                 "resources": {"requests": {"storage": size}}},
        "status": {"phase": "Pending"}
    });
    if let Some(vol) = volume {
        v["spec"]["volumeName"] = json!(vol);
        v["status"]["phase"] = json!("Bound");
    }
    from(v)
}

/// A StorageClass.
#[must_use]
pub fn storage_class(name: &str, provisioner: &str, wait_for_first_consumer: bool) -> StorageClass {
    from(json!({
        "metadata": {"name": name},
        "provisioner": provisioner,
        "volumeBindingMode": if wait_for_first_consumer { "WaitForFirstConsumer" } else { "Immediate" }
    }))
}

/// A StatefulSet with replicas and claim templates.
#[must_use]
pub fn statefulset(namespace: &str, name: &str, replicas: i32, templates: &[&str]) -> StatefulSet {
    let templates: Vec<Value> = templates.iter().map(|t| json!({"metadata": {"name": t}})).collect();
    from(json!({
        "metadata": {"namespace": namespace, "name": name},
        "spec": {"replicas": replicas, "selector": {}, "serviceName": name,
                 "template": {"metadata": {}, "spec": {"containers": []}},
                 "volumeClaimTemplates": templates}
    }))
}

/// A CSIStorageCapacity for `class` on the segment `labels`.
#[must_use]
pub fn capacity(
    namespace: &str,
    name: &str,
    class: &str,
    labels: &BTreeMap<String, String>,
    capacity: &str,
    max_volume_size: Option<&str>,
) -> CSIStorageCapacity {
    let mut v = json!({
        "metadata": {"namespace": namespace, "name": name},
        "storageClassName": class,
        "nodeTopology": {"matchLabels": labels},
        "capacity": capacity
    });
    if let Some(m) = max_volume_size {
        v["maximumVolumeSize"] = json!(m);
    }
    from(v)
}

pub mod realistic;
