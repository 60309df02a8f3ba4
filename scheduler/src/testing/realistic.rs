//! A synthetic cluster of **full** objects, shaped as a real kube-apiserver returns them
//! (labels, annotations, ownerReferences, managedFields, several containers with env and
//! resources, volumes, status conditions, node images), for benchmarks of the cache, the
//! extender and snapshot loading. Every benchmark builds its cluster here.
//!
//! Layout of a [`ClusterShape`] with `n` nodes and `p` pods per node, in `zones` zones (node `i`
//! is in zone `i % zones`):
//! - on every node, pod 0 is an opted-in database member: member `i % 3` of the 3-member group
//!   `g{i / 3}` (a StatefulSet in namespace `db`, profile `pg`: zone quorum, required zone and node
//!   spread, local data), Guaranteed, with a claim bound to a local PV pinned to its node;
//! - the other pods are ordinary ReplicaSet pods in 50 namespaces: a tenth BestEffort, three
//!   tenths Burstable, the rest Guaranteed;
//! - every 10th node also has an available local PV;
//! - the group `bench` has two running members on nodes 0 and 1; [`ClusterShape::pending_member`]
//!   is its third member, pending, with an unbound WaitForFirstConsumer local claim.
//!
//! Objects are made by cloning a template deserialized once and renaming it, so each object
//! owns its strings exactly as a deserialized one would (memory measurements stay honest) at a
//! fraction of the cost of parsing.

use k8s_openapi::{
    api::{
        apps::v1::StatefulSet,
        core::v1::{Node, PersistentVolume, PersistentVolumeClaim, Pod},
        storage::v1::{CSIStorageCapacity, StorageClass},
    },
    apimachinery::pkg::apis::meta::v1::ObjectMeta,
};
use kube::runtime::watcher::Event;
use serde::{Serialize, de::DeserializeOwned};
use serde_json::{Value, json};

use std::sync::Arc;

use arc_swap::ArcSwap;
use stowage_policy::Config;

use crate::{
    FakeBinder, NoopEvents,
    cache::{Cached, ClusterCache},
    metrics::Metrics,
    service::{Extender, Options},
};

/// The cluster config the benchmarks use: profile `pg` with the quorum guard, required zone and
/// node spread and local data.
pub const CONFIG: &str =
    "profiles:\n  pg: {quorum: zone, zoneSpread: required, nodeSpread: required, localData: prefer}\n";

/// Namespaces of the ordinary pods.
const APP_NAMESPACES: usize = 50;

/// The size and layout of a synthetic cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClusterShape {
    /// Nodes.
    pub nodes: usize,
    /// Pods per node (the first is a database member).
    pub pods_per_node: usize,
    /// Zones.
    pub zones: usize,
}

impl ClusterShape {
    /// `nodes` nodes with `pods_per_node` pods each, in 3 zones.
    #[must_use]
    pub fn new(nodes: usize, pods_per_node: usize) -> Self {
        Self { nodes, pods_per_node: pods_per_node.max(1), zones: 3 }
    }

    /// Total pods (bound, plus the two running `bench` members).
    #[must_use]
    pub fn pod_count(&self) -> usize {
        self.nodes * self.pods_per_node + 2
    }

    /// Name of node `i`.
    #[must_use]
    pub fn node_name(i: usize) -> String {
        format!("node-{i:05}")
    }

    /// Every node name, in order.
    #[must_use]
    pub fn node_names(&self) -> Vec<String> {
        (0..self.nodes).map(Self::node_name).collect()
    }

    /// The nodes.
    pub fn nodes(&self) -> impl Iterator<Item = Node> + '_ {
        let template: Node = from(node_template());
        (0..self.nodes).map(move |i| {
            let mut n = template.clone();
            let name = Self::node_name(i);
            let zone = format!("zone-{}", i % self.zones);
            set_name(&mut n.metadata, None, &name, i);
            let labels = n.metadata.labels.get_or_insert_default();
            labels.insert("kubernetes.io/hostname".into(), name.clone());
            labels.insert("topology.kubernetes.io/zone".into(), zone.clone());
            labels.insert("failure-domain.beta.kubernetes.io/zone".into(), zone);
            if let Some(spec) = n.spec.as_mut() {
                spec.pod_cidr = Some(format!("10.{}.{}.0/24", 64 + i / 256, i % 256));
                spec.pod_cidrs = spec.pod_cidr.clone().map(|c| vec![c]);
                spec.provider_id = Some(format!("gce://bench-project/us-central1/{name}"));
            }
            if let Some(addresses) = n.status.as_mut().and_then(|s| s.addresses.as_mut()) {
                addresses[0].address = format!("10.128.{}.{}", i / 256, i % 256);
                addresses[1].address = name.clone();
                addresses[2].address = name;
            }
            n
        })
    }

    /// The pods: bound members and ordinary pods on every node, plus two `bench` members.
    pub fn pods(&self) -> impl Iterator<Item = Pod> + '_ {
        let member: Pod = from(member_template());
        let app: Pod = from(app_template());
        let per_node = self.pods_per_node;
        let nodes = (0..self.nodes).flat_map(move |i| (0..per_node).map(move |k| (i, k)));
        let bench = [0usize, 1].into_iter().map(|m| (usize::MAX, m));
        nodes.chain(bench).map(move |(i, k)| {
            if i == usize::MAX {
                return member_pod(&member, "bench", k, &Self::node_name(k), 0xbe00 + k);
            }
            let node = Self::node_name(i);
            if k == 0 {
                return member_pod(&member, &format!("g{}", i / 3), i % 3, &node, i);
            }
            app_pod(&app, i, k, &node)
        })
    }

    /// The pending third member of group `bench`, as the scheduler sends it.
    #[must_use]
    pub fn pending_member(&self) -> Pod {
        let mut pod = member_pod(&from(member_template()), "bench", 2, "", 7);
        if let Some(spec) = pod.spec.as_mut() {
            spec.node_name = None;
        }
        pod.status = Some(from(json!({"phase": "Pending", "qosClass": "Guaranteed"})));
        pod
    }

    /// The PersistentVolumes: one bound local PV per node, an available one on every 10th node.
    pub fn persistent_volumes(&self) -> impl Iterator<Item = PersistentVolume> + '_ {
        let template: PersistentVolume = from(pv_template());
        let free_template = template.clone();
        let bound = (0..self.nodes).map(move |i| {
            let claim = format!("data-g{}-{}", i / 3, i % 3);
            let mut pv = local_pv(&template, &format!("local-pv-{i:05}"), &Self::node_name(i), i);
            if let Some(spec) = pv.spec.as_mut() {
                spec.claim_ref = Some(from(json!({
                    "kind": "PersistentVolumeClaim", "namespace": "db", "name": claim, "apiVersion": "v1",
                    "uid": uid(i, 0xc1a), "resourceVersion": (i * 7 + 3).to_string()
                })));
            }
            if let Some(status) = pv.status.as_mut() {
                status.phase = Some("Bound".into());
            }
            pv
        });
        let free = (0..self.nodes)
            .step_by(10)
            .map(move |i| local_pv(&free_template, &format!("local-pv-free-{i:05}"), &Self::node_name(i), i + 1));
        bound.chain(free)
    }

    /// The claims of the members: bound on every node, plus `data-bench-2`, unbound.
    pub fn persistent_volume_claims(&self) -> impl Iterator<Item = PersistentVolumeClaim> + '_ {
        let template: PersistentVolumeClaim = from(pvc_template());
        let mut pending = template.clone();
        set_name(&mut pending.metadata, Some("db"), "data-bench-2", 0xbe2c);
        pending.metadata.annotations = None;
        if let Some(spec) = pending.spec.as_mut() {
            spec.volume_name = None;
        }
        pending.status = Some(from(json!({"phase": "Pending"})));
        (0..self.nodes)
            .map(move |i| {
                let mut pvc = template.clone();
                set_name(&mut pvc.metadata, Some("db"), &format!("data-g{}-{}", i / 3, i % 3), i ^ 0xc1a);
                if let Some(selected) =
                    pvc.metadata.annotations.as_mut().and_then(|a| a.get_mut("volume.kubernetes.io/selected-node"))
                {
                    *selected = Self::node_name(i);
                }
                if let Some(spec) = pvc.spec.as_mut() {
                    spec.volume_name = Some(format!("local-pv-{i:05}"));
                }
                pvc
            })
            .chain(std::iter::once(pending))
    }

    /// The StatefulSets of the groups (3 replicas each).
    pub fn stateful_sets(&self) -> impl Iterator<Item = StatefulSet> + '_ {
        let template: StatefulSet = from(sts_template());
        (0..self.nodes.div_ceil(3)).map(|g| format!("g{g}")).chain(std::iter::once("bench".to_owned())).enumerate().map(
            move |(i, name)| {
                let mut sts = template.clone();
                set_name(&mut sts.metadata, Some("db"), &name, i ^ 0x575);
                sts
            },
        )
    }

    /// The storage class of the local PVs.
    #[must_use]
    pub fn storage_classes(&self) -> Vec<StorageClass> {
        vec![from(json!({
            "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
            "metadata": {"name": "local", "uid": uid(1, 0x5c), "resourceVersion": "311",
                         "creationTimestamp": "2026-01-10T08:00:00Z",
                         "annotations": {"storageclass.kubernetes.io/is-default-class": "false"}},
            "provisioner": "kubernetes.io/no-provisioner", "reclaimPolicy": "Retain",
            "volumeBindingMode": "WaitForFirstConsumer"
        }))]
    }

    /// Feeds every kind into `cache` through its appliers, as the watchers do after a list
    /// (`Init`, one `InitApply` per object, `InitDone`), without holding the full objects.
    pub fn feed(&self, cache: &ClusterCache) {
        list(cache, self.nodes());
        list(cache, self.storage_classes().into_iter());
        list::<CSIStorageCapacity>(cache, std::iter::empty());
        list(cache, self.stateful_sets());
        list(cache, self.persistent_volumes());
        list(cache, self.persistent_volume_claims());
        list(cache, self.pods());
    }

    /// An extender over a fed cache with the [`CONFIG`] profiles, a fake binder, no events and
    /// unregistered metrics: the service the benches call.
    #[must_use]
    pub fn extender(&self) -> Arc<Extender> {
        let config = Config::from_yaml(CONFIG).unwrap_or_else(|e| panic!("the bench config is valid: {e}"));
        let cache = Arc::new(ClusterCache::new(&config));
        self.feed(&cache);
        Arc::new(Extender::with_metrics(
            cache,
            Arc::new(ArcSwap::from_pointee(config)),
            Arc::new(FakeBinder::default()),
            Arc::new(NoopEvents),
            Metrics::unregistered(),
            Options::default(),
        ))
    }

    /// The cluster as a snapshot file: multi-document YAML, as `kubectl get -o yaml` prints
    /// objects.
    #[must_use]
    pub fn snapshot_yaml(&self) -> String {
        let mut out = String::new();
        self.each_object(&mut |o| {
            out.push_str("---\n");
            out.push_str(&o.yaml());
        });
        out
    }

    /// The cluster as a snapshot file in JSON: one `List`, as `kubectl get -o json` prints it.
    #[must_use]
    pub fn snapshot_json(&self) -> String {
        let mut items = Vec::new();
        self.each_object(&mut |o| items.push(o.json()));
        let list = serde_json::json!({"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": ""}, "items": items});
        serde_json::to_string_pretty(&list).unwrap_or_default()
    }

    /// Every object of the cluster, in the order a snapshot lists them.
    fn each_object(&self, f: &mut dyn FnMut(&dyn erased::Object)) {
        self.storage_classes().iter().for_each(|o| f(o));
        self.stateful_sets().for_each(|o| f(&o));
        self.persistent_volumes().for_each(|o| f(&o));
        self.persistent_volume_claims().for_each(|o| f(&o));
        self.nodes().for_each(|o| f(&o));
        self.pods().for_each(|o| f(&o));
    }
}

mod erased {
    /// An object that prints itself as one YAML document or as a JSON value.
    pub(super) trait Object {
        fn yaml(&self) -> String;
        fn json(&self) -> serde_json::Value;
    }

    impl<T: super::Serialize + k8s_openapi::Resource> Object for T {
        fn yaml(&self) -> String {
            // Typed objects serialize apiVersion and kind first, as kubectl prints them.
            serde_saphyr::to_string(self).unwrap_or_default()
        }

        fn json(&self) -> serde_json::Value {
            serde_json::to_value(self).unwrap_or_default()
        }
    }
}

fn list<K: Cached>(cache: &ClusterCache, objects: impl Iterator<Item = K>) {
    let mut applier = cache.applier::<K>();
    applier.apply(Event::Init);
    for o in objects {
        applier.apply(Event::InitApply(o));
    }
    applier.apply(Event::InitDone);
}

fn from<T: DeserializeOwned>(v: Value) -> T {
    match serde_json::from_value(v) {
        Ok(t) => t,
        Err(e) => panic!("a realistic template does not deserialize: {e}"),
    }
}

/// A UUID-shaped uid, distinct per `(i, salt)`.
fn uid(i: usize, salt: usize) -> String {
    let a = (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ (salt as u64);
    let b = a.rotate_left(17).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    format!(
        "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xfff,
        b >> 52,
        b & 0xffff_ffff_ffff
    )
}

fn set_name(meta: &mut ObjectMeta, namespace: Option<&str>, name: &str, i: usize) {
    meta.name = Some(name.to_owned());
    meta.namespace = namespace.map(str::to_owned);
    meta.uid = Some(uid(i, name.len()));
    meta.resource_version = Some((1000 + i * 3).to_string());
}

fn member_pod(template: &Pod, group: &str, member: usize, node: &str, i: usize) -> Pod {
    let mut pod = template.clone();
    let name = format!("{group}-{member}");
    set_name(&mut pod.metadata, Some("db"), &name, i ^ 0xdb);
    pod.metadata.generate_name = Some(format!("{group}-"));
    let labels = pod.metadata.labels.get_or_insert_default();
    labels.insert("app.kubernetes.io/instance".into(), group.to_owned());
    labels.insert("statefulset.kubernetes.io/pod-name".into(), name.clone());
    labels.insert("apps.kubernetes.io/pod-index".into(), member.to_string());
    labels.insert("controller-revision-hash".into(), format!("{group}-6d8f9c7b5d"));
    if let Some(owner) = pod.metadata.owner_references.as_mut().and_then(|o| o.first_mut()) {
        owner.name = group.to_owned();
        owner.uid = uid(group.bytes().fold(0usize, |h, b| h.wrapping_mul(31).wrapping_add(usize::from(b))), 0x575);
    }
    if let Some(spec) = pod.spec.as_mut() {
        spec.node_name = Some(node.to_owned());
        spec.hostname = Some(name.clone());
        spec.subdomain = Some(group.to_owned());
        if let Some(claim) = spec.volumes.as_mut().and_then(|v| v[0].persistent_volume_claim.as_mut()) {
            claim.claim_name = format!("data-{name}");
        }
    }
    set_status(&mut pod, i);
    pod
}

fn app_pod(template: &Pod, i: usize, k: usize, node: &str) -> Pod {
    let mut pod = template.clone();
    let app = format!("app-{}", (i * 7 + k) % 400);
    let rs = format!("{app}-7c9f8d6b5");
    let name = format!("{rs}-{}", &uid(i, k)[..5]);
    set_name(&mut pod.metadata, Some(&format!("team-{:02}", i % APP_NAMESPACES)), &name, i * 64 + k);
    pod.metadata.generate_name = Some(format!("{rs}-"));
    let labels = pod.metadata.labels.get_or_insert_default();
    labels.insert("app.kubernetes.io/name".into(), app.clone());
    labels.insert("app".into(), app);
    if let Some(owner) = pod.metadata.owner_references.as_mut().and_then(|o| o.first_mut()) {
        owner.name = rs;
        owner.uid = uid(i % 400, 0x25);
    }
    if let Some(spec) = pod.spec.as_mut() {
        spec.node_name = Some(node.to_owned());
        let qos = k % 10;
        for c in &mut spec.containers {
            match qos {
                0 => c.resources = None,
                1..=3 => {
                    if let Some(r) = c.resources.as_mut() {
                        r.limits = None;
                    }
                }
                _ => {}
            }
        }
        if let Some(status) = pod.status.as_mut() {
            status.qos_class = Some(
                ["BestEffort", "Burstable", "Burstable", "Burstable"].get(qos).map_or("Guaranteed", |q| q).to_owned(),
            );
        }
    }
    set_status(&mut pod, i * 64 + k);
    pod
}

fn set_status(pod: &mut Pod, i: usize) {
    let ip = format!("10.{}.{}.{}", 64 + i / 65_536, (i / 256) % 256, i % 256);
    if let Some(status) = pod.status.as_mut() {
        status.pod_ip = Some(ip.clone());
        status.pod_ips = Some(vec![from(json!({"ip": ip}))]);
        for (n, c) in status.container_statuses.iter_mut().flatten().enumerate() {
            c.container_id = Some(format!("containerd://{}{}", uid(i, n).replace('-', ""), uid(n, i).replace('-', "")));
        }
    }
}

fn local_pv(template: &PersistentVolume, name: &str, node: &str, i: usize) -> PersistentVolume {
    let mut pv = template.clone();
    set_name(&mut pv.metadata, None, name, i ^ 0x9f);
    if let Some(spec) = pv.spec.as_mut() {
        if let Some(local) = spec.local.as_mut() {
            local.path = format!("/mnt/disks/ssd0/{name}");
        }
        if let Some(term) = spec
            .node_affinity
            .as_mut()
            .and_then(|a| a.required.as_mut())
            .and_then(|r| r.node_selector_terms.first_mut())
            .and_then(|t| t.match_expressions.as_mut())
            .and_then(|e| e.first_mut())
        {
            term.values = Some(vec![node.to_owned()]);
        }
    }
    pv
}

fn managed_fields(manager: &str, time: &str, fields: Value) -> Value {
    json!({"manager": manager, "operation": "Update", "apiVersion": "v1", "time": time,
           "fieldsType": "FieldsV1", "fieldsV1": fields})
}

fn node_template() -> Value {
    let images: Vec<Value> = (0..24)
        .map(|k| {
            json!({"names": [format!("registry.example.com/platform/image-{k}@sha256:{:064x}", k * 7919 + 1),
                             format!("registry.example.com/platform/image-{k}:v1.{k}.0")],
                   "sizeBytes": 10_000_000 + k * 3_000_000})
        })
        .collect();
    let conditions: Vec<Value> = [
        ("MemoryPressure", "False", "KubeletHasSufficientMemory"),
        ("DiskPressure", "False", "KubeletHasNoDiskPressure"),
        ("PIDPressure", "False", "KubeletHasSufficientPID"),
        ("Ready", "True", "KubeletReady"),
        ("NetworkUnavailable", "False", "RouteCreated"),
    ]
    .iter()
    .map(|(t, s, r)| {
        json!({"type": t, "status": s, "reason": r, "message": format!("kubelet reports {t} is {s}"),
               "lastHeartbeatTime": "2026-03-14T09:20:00Z", "lastTransitionTime": "2026-01-10T08:00:00Z"})
    })
    .collect();
    json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {
            "name": "node", "uid": "u", "resourceVersion": "1", "creationTimestamp": "2026-01-10T08:00:00Z",
            "labels": {
                "beta.kubernetes.io/arch": "amd64", "beta.kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64", "kubernetes.io/os": "linux",
                "node.kubernetes.io/instance-type": "n2-standard-64",
                "beta.kubernetes.io/instance-type": "n2-standard-64",
                "topology.kubernetes.io/region": "us-central1", "failure-domain.beta.kubernetes.io/region": "us-central1",
                "cloud.google.com/gke-nodepool": "pool-db", "cloud.google.com/machine-family": "n2",
                "cloud.google.com/gke-os-distribution": "cos", "node.kubernetes.io/local-ssd": "true"
            },
            "annotations": {
                "node.alpha.kubernetes.io/ttl": "0",
                "volumes.kubernetes.io/controller-managed-attach-detach": "true",
                "csi.volume.kubernetes.io/nodeid": "{\"pd.csi.storage.gke.io\":\"projects/bench-project/zones/us-central1-a/instances/node\"}",
                "container.googleapis.com/instance_id": "4711081512345678901"
            },
            "managedFields": [
                managed_fields("kubelet", "2026-01-10T08:00:00Z", json!({"f:metadata": {"f:annotations": {".": {},
                    "f:node.alpha.kubernetes.io/ttl": {}, "f:volumes.kubernetes.io/controller-managed-attach-detach": {}},
                    "f:labels": {".": {}, "f:beta.kubernetes.io/arch": {}, "f:beta.kubernetes.io/os": {},
                    "f:kubernetes.io/arch": {}, "f:kubernetes.io/hostname": {}, "f:kubernetes.io/os": {}}},
                    "f:spec": {"f:providerID": {}}})),
                managed_fields("kube-controller-manager", "2026-01-10T08:00:05Z",
                    json!({"f:spec": {"f:podCIDR": {}, "f:podCIDRs": {".": {}, "v:\"10.64.0.0/24\"": {}}}})),
                managed_fields("kubelet", "2026-03-14T09:20:00Z", json!({"f:status": {"f:allocatable": {"f:cpu": {},
                    "f:ephemeral-storage": {}, "f:memory": {}}, "f:conditions": {"k:{\"type\":\"Ready\"}": {
                    "f:lastHeartbeatTime": {}, "f:message": {}, "f:reason": {}, "f:status": {}}}, "f:images": {},
                    "f:nodeInfo": {"f:bootID": {}}}}))
            ]
        },
        "spec": {"podCIDR": "10.64.0.0/24", "podCIDRs": ["10.64.0.0/24"], "providerID": "gce://p/z/node"},
        "status": {
            "capacity": {"cpu": "64", "ephemeral-storage": "98831908Ki", "hugepages-1Gi": "0", "hugepages-2Mi": "0",
                         "memory": "263940000Ki", "pods": "110"},
            "allocatable": {"cpu": "63770m", "ephemeral-storage": "47060071478", "hugepages-1Gi": "0",
                            "hugepages-2Mi": "0", "memory": "251284000Ki", "pods": "110"},
            "conditions": conditions,
            "addresses": [{"type": "InternalIP", "address": "10.128.0.1"}, {"type": "Hostname", "address": "node"},
                          {"type": "InternalDNS", "address": "node"}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
            "nodeInfo": {"machineID": "3c1f6a0e8b2d4f6a9c0e1b3d5f7a9c1e", "systemUUID": "3c1f6a0e-8b2d-4f6a-9c0e-1b3d5f7a9c1e",
                         "bootID": "8f0e2d4c-6b8a-4c0e-9f1d-3b5d7f9a1c3e", "kernelVersion": "6.6.56+",
                         "osImage": "Container-Optimized OS from Google", "containerRuntimeVersion": "containerd://1.7.24",
                         "kubeletVersion": "v1.35.0", "kubeProxyVersion": "v1.35.0", "operatingSystem": "linux",
                         "architecture": "amd64"},
            "images": images
        }
    })
}

fn env(names: &[&str]) -> Vec<Value> {
    let mut env: Vec<Value> = names
        .iter()
        .enumerate()
        .map(|(k, n)| json!({"name": n, "value": format!("value-{k}-for-{}", n.to_lowercase())}))
        .collect();
    env.push(
        json!({"name": "POD_NAME", "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.name"}}}),
    );
    env.push(json!({"name": "POD_IP", "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "status.podIP"}}}));
    env
}

fn probe(path: &str, port: i32) -> Value {
    json!({"httpGet": {"path": path, "port": port, "scheme": "HTTP"}, "initialDelaySeconds": 10, "timeoutSeconds": 1,
           "periodSeconds": 10, "successThreshold": 1, "failureThreshold": 3})
}

fn container(name: &str, image: &str, cpu: &str, mem: &str, env_names: &[&str], port: i32) -> Value {
    json!({
        "name": name, "image": image, "imagePullPolicy": "IfNotPresent",
        "ports": [{"name": "http", "containerPort": port, "protocol": "TCP"}],
        "env": env(env_names),
        "resources": {"requests": {"cpu": cpu, "memory": mem}, "limits": {"cpu": cpu, "memory": mem}},
        "volumeMounts": [{"name": "config", "mountPath": "/etc/app", "readOnly": true},
                         {"name": "kube-api-access", "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount",
                          "readOnly": true}],
        "livenessProbe": probe("/healthz", port), "readinessProbe": probe("/readyz", port),
        "terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "File",
        "securityContext": {"allowPrivilegeEscalation": false, "readOnlyRootFilesystem": true,
                            "runAsNonRoot": true, "capabilities": {"drop": ["ALL"]}}
    })
}

fn container_status(name: &str, image: &str) -> Value {
    json!({"name": name, "state": {"running": {"startedAt": "2026-03-14T09:27:10Z"}}, "lastState": {},
           "ready": true, "restartCount": 0, "image": image, "started": true,
           "imageID": format!("{image}@sha256:{:064x}", name.len() * 104_729), "containerID": "containerd://0"})
}

fn pod_status(containers: &[(&str, &str)]) -> Value {
    let conditions: Vec<Value> =
        ["PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady", "PodScheduled"]
            .iter()
            .map(|t| {
                json!({"type": t, "status": "True", "lastProbeTime": null,
                            "lastTransitionTime": "2026-03-14T09:27:12Z"})
            })
            .collect();
    json!({
        "phase": "Running", "conditions": conditions, "hostIP": "10.128.0.1", "hostIPs": [{"ip": "10.128.0.1"}],
        "podIP": "10.64.0.1", "podIPs": [{"ip": "10.64.0.1"}], "startTime": "2026-03-14T09:26:54Z",
        "containerStatuses": containers.iter().map(|(n, i)| container_status(n, i)).collect::<Vec<_>>(),
        "qosClass": "Guaranteed"
    })
}

fn pod_managed_fields() -> Value {
    json!([
        managed_fields(
            "kube-controller-manager",
            "2026-03-14T09:26:53Z",
            json!({"f:metadata": {"f:generateName": {},
            "f:labels": {".": {}, "f:app.kubernetes.io/name": {}, "f:pod-template-hash": {}},
            "f:ownerReferences": {".": {}, "k:{\"uid\":\"0\"}": {}}}, "f:spec": {"f:containers": {
            "k:{\"name\":\"app\"}": {".": {}, "f:env": {".": {}}, "f:image": {}, "f:imagePullPolicy": {},
            "f:livenessProbe": {".": {}, "f:httpGet": {".": {}, "f:path": {}, "f:port": {}}}, "f:name": {},
            "f:ports": {".": {}}, "f:readinessProbe": {".": {}}, "f:resources": {".": {}, "f:limits": {},
            "f:requests": {}}, "f:securityContext": {".": {}}, "f:volumeMounts": {".": {}}}},
            "f:dnsPolicy": {}, "f:enableServiceLinks": {}, "f:restartPolicy": {}, "f:schedulerName": {},
            "f:securityContext": {}, "f:terminationGracePeriodSeconds": {}, "f:volumes": {".": {}}}})
        ),
        managed_fields(
            "kubelet",
            "2026-03-14T09:27:12Z",
            json!({"f:status": {"f:conditions": {
            "k:{\"type\":\"ContainersReady\"}": {".": {}, "f:lastProbeTime": {}, "f:lastTransitionTime": {},
            "f:status": {}, "f:type": {}}, "k:{\"type\":\"Ready\"}": {".": {}, "f:lastProbeTime": {},
            "f:lastTransitionTime": {}, "f:status": {}, "f:type": {}}}, "f:containerStatuses": {}, "f:hostIP": {},
            "f:hostIPs": {}, "f:phase": {}, "f:podIP": {}, "f:podIPs": {".": {}}, "f:startTime": {}}})
        )
    ])
}

fn common_spec(containers: Vec<Value>, volumes: Vec<Value>) -> Value {
    let mut volumes = volumes;
    volumes.push(json!({"name": "kube-api-access", "projected": {"defaultMode": 420, "sources": [
        {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
        {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
        {"downwardAPI": {"items": [{"path": "namespace",
            "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}}]}}));
    volumes.push(json!({"name": "config", "configMap": {"name": "app-config", "defaultMode": 420}}));
    json!({
        "containers": containers, "volumes": volumes, "restartPolicy": "Always", "terminationGracePeriodSeconds": 30,
        "dnsPolicy": "ClusterFirst", "serviceAccountName": "default", "serviceAccount": "default",
        "nodeName": "node", "securityContext": {"fsGroup": 1000, "runAsUser": 1000},
        "schedulerName": "default-scheduler", "priority": 0, "enableServiceLinks": true,
        "preemptionPolicy": "PreemptLowerPriority",
        "tolerations": [
            {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
            {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute",
             "tolerationSeconds": 300}
        ]
    })
}

fn member_template() -> Value {
    let db = "registry.example.com/db/postgres:17.2";
    let exporter = "quay.io/prometheuscommunity/postgres-exporter:v0.17.1";
    let mut db_container =
        container("postgres", db, "4", "16Gi", &["PGDATA", "POSTGRES_DB", "PATRONI_SCOPE", "PATRONI_NAME"], 5432);
    if let Some(mounts) = db_container["volumeMounts"].as_array_mut() {
        mounts.push(json!({"name": "data", "mountPath": "/var/lib/postgresql/data"}));
    }
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "name": "m", "namespace": "db", "uid": "u", "resourceVersion": "1",
            "creationTimestamp": "2026-03-14T09:26:53Z",
            "labels": {"app.kubernetes.io/name": "postgres", "app.kubernetes.io/component": "database",
                       "app.kubernetes.io/managed-by": "db-operator"},
            "annotations": {"stowage.io/profile": "pg", "kubectl.kubernetes.io/default-container": "postgres",
                            "prometheus.io/scrape": "true", "prometheus.io/port": "9187"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "g", "uid": "0",
                                 "controller": true, "blockOwnerDeletion": true}],
            "managedFields": pod_managed_fields()
        },
        "spec": common_spec(
            vec![db_container, container("exporter", exporter, "100m", "128Mi", &["DATA_SOURCE_NAME"], 9187)],
            vec![json!({"name": "data", "persistentVolumeClaim": {"claimName": "data"}})],
        ),
        "status": pod_status(&[("exporter", exporter), ("postgres", db)])
    })
}

fn app_template() -> Value {
    let app = "registry.example.com/team/api-server:2.14.3";
    let proxy = "registry.example.com/mesh/proxy:1.24.1";
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "name": "a", "namespace": "team", "uid": "u", "resourceVersion": "1",
            "creationTimestamp": "2026-03-14T09:26:53Z",
            "labels": {"app.kubernetes.io/name": "api", "app": "api", "pod-template-hash": "7c9f8d6b5",
                       "security.istio.io/tlsMode": "istio", "version": "v2"},
            "annotations": {"kubectl.kubernetes.io/restartedAt": "2026-03-01T10:00:00Z",
                            "checksum/config": "5f0c3b9a1e7d2c4b6a8f0e1d3c5b7a9f1e3d5c7b9a1f3e5d7c9b1a3f5e7d9c1b"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs", "uid": "0",
                                 "controller": true, "blockOwnerDeletion": true}],
            "managedFields": pod_managed_fields()
        },
        "spec": common_spec(
            vec![
                container("app", app, "200m", "512Mi", &["LOG_LEVEL", "DATABASE_URL", "CACHE_URL", "FEATURE_FLAGS",
                    "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_SERVICE_NAME"], 8080),
                container("proxy", proxy, "100m", "128Mi", &["PROXY_CONFIG", "ISTIO_META_CLUSTER_ID"], 15090),
            ],
            Vec::new(),
        ),
        "status": pod_status(&[("app", app), ("proxy", proxy)])
    })
}

fn pv_template() -> Value {
    json!({
        "apiVersion": "v1", "kind": "PersistentVolume",
        "metadata": {"name": "pv", "uid": "u", "resourceVersion": "1", "creationTimestamp": "2026-01-10T08:10:00Z",
                     "labels": {"storage.example.com/provisioner": "local-static"},
                     "annotations": {"pv.kubernetes.io/provisioned-by": "local-volume-provisioner-node"},
                     "finalizers": ["kubernetes.io/pv-protection"]},
        "spec": {
            "capacity": {"storage": "1490Gi"}, "local": {"path": "/mnt/disks/ssd0"},
            "accessModes": ["ReadWriteOnce"], "persistentVolumeReclaimPolicy": "Retain",
            "storageClassName": "local", "volumeMode": "Filesystem",
            "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                {"key": "kubernetes.io/hostname", "operator": "In", "values": ["node"]}]}]}}
        },
        "status": {"phase": "Available", "lastPhaseTransitionTime": "2026-01-10T08:10:00Z"}
    })
}

fn pvc_template() -> Value {
    json!({
        "apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": {"name": "c", "namespace": "db", "uid": "u", "resourceVersion": "1",
                     "creationTimestamp": "2026-03-14T09:26:50Z",
                     "labels": {"app.kubernetes.io/name": "postgres"},
                     "annotations": {"pv.kubernetes.io/bind-completed": "yes",
                                     "volume.kubernetes.io/selected-node": "node"},
                     "finalizers": ["kubernetes.io/pvc-protection"]},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Ti"}},
                 "storageClassName": "local", "volumeMode": "Filesystem", "volumeName": "pv"},
        "status": {"phase": "Bound", "accessModes": ["ReadWriteOnce"], "capacity": {"storage": "1490Gi"}}
    })
}

fn sts_template() -> Value {
    let mut template = member_template();
    template["metadata"] = json!({"labels": {"app.kubernetes.io/name": "postgres"},
                                  "annotations": {"stowage.io/profile": "pg"}});
    if let Some(spec) = template["spec"].as_object_mut() {
        spec.remove("nodeName");
    }
    json!({
        "apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": "g", "namespace": "db", "uid": "u", "resourceVersion": "1", "generation": 1,
                     "creationTimestamp": "2026-03-14T09:26:50Z", "labels": {"app.kubernetes.io/name": "postgres"}},
        "spec": {
            "replicas": 3, "serviceName": "g", "podManagementPolicy": "Parallel",
            "selector": {"matchLabels": {"app.kubernetes.io/name": "postgres"}},
            "template": {"metadata": template["metadata"].clone(), "spec": template["spec"].clone()},
            "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {"accessModes": ["ReadWriteOnce"],
                "storageClassName": "local", "resources": {"requests": {"storage": "1Ti"}}}}],
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}}
        },
        "status": {"replicas": 3, "readyReplicas": 3, "currentReplicas": 3, "updatedReplicas": 3,
                   "availableReplicas": 3, "observedGeneration": 1}
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::Kind;

    #[test]
    fn a_small_cluster_feeds_the_cache_and_round_trips_as_a_snapshot() {
        let shape = ClusterShape::new(9, 4);
        let config = Config::from_yaml(CONFIG).unwrap();
        let cache = ClusterCache::new(&config);
        shape.feed(&cache);
        assert!(cache.is_ready());
        let model = cache.read();
        assert_eq!(model.count(Kind::Node), 9);
        assert_eq!(model.count(Kind::Pod), shape.pod_count());
        assert_eq!(model.group_members("db", "g1").count(), 3);
        drop(model);

        let snapshot = crate::snapshot::Snapshot::from_yaml(&shape.snapshot_yaml()).unwrap();
        assert_eq!(snapshot.nodes.len(), 9);
        assert_eq!(snapshot.pods.len(), shape.pod_count());
        assert_eq!(snapshot.persistent_volumes.len(), 9 + 1);
        assert_eq!(snapshot.stateful_sets.len(), 3 + 1);
        assert!(snapshot.warnings.is_empty(), "{:?}", snapshot.warnings);
        let pod = &snapshot.pods[0];
        assert!(pod.metadata.managed_fields.as_ref().is_some_and(|m| m.len() == 2));
        assert_eq!(pod.spec.as_ref().unwrap().containers.len(), 2);
    }

    #[test]
    fn the_pending_member_fits_only_on_free_local_volumes_in_the_zone_without_a_sibling() {
        let shape = ClusterShape::new(60, 2);
        let ext = shape.extender();
        let args = crate::extender::v1::ExtenderArgs {
            pod: Some(shape.pending_member()),
            nodes: None,
            node_names: Some(shape.node_names()),
        };
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let result = rt.block_on(ext.filter(args));
        assert_eq!(result.error, "", "{result:?}");
        // Siblings run on node 0 (zone-0) and node 1 (zone-1), so zone-2 is the only one left,
        // and the unbound local claim needs an available PV (every 10th node has one).
        // The member is under cross-pod rules: filter reserves the best of the two and refuses
        // the other as not chosen.
        assert_eq!(result.node_names, Some(vec![ClusterShape::node_name(20)]));
        assert_eq!(result.failed_nodes.get(&ClusterShape::node_name(50)), Some(crate::framework::NOT_CHOSEN.message));
    }
}
