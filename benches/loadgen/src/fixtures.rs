//! Request bodies shared by the benches: admission reviews of a small and a large pod, and
//! extender arguments.

use bytes::Bytes;
use serde_json::{Value, json};

/// The admission review the webhook's own tests use: a StatefulSet pod (`db/pg-main-1`, profile
/// `postgres`) as the StatefulSet controller creates it.
pub const STATEFULSET_REVIEW: &str = include_str!("../../../webhook/tests/fixtures/statefulset-pod-create.json");

/// The pod of [`STATEFULSET_REVIEW`].
#[must_use]
pub fn small_pod() -> Value {
    let review: Value = serde_json::from_str(STATEFULSET_REVIEW).unwrap_or_default();
    review["request"]["object"].clone()
}

/// A large opted-in pod (profile `postgres`): 8 containers and 3 init containers with 40 env
/// vars, 8 mounts and resources each, 24 volumes, 30 labels, 20 annotations, 30 tolerations and
/// a big affinity (8 node-selector terms, preferred node and pod (anti-)affinity terms).
#[must_use]
pub fn large_pod() -> Value {
    let container = |name: String, k: usize| {
        let env: Vec<Value> = (0..40)
            .map(|e| json!({"name": format!("SETTING_{e}"), "value": format!("value-{k}-{e}-0123456789abcdef")}))
            .collect();
        let mounts: Vec<Value> = (0..8)
            .map(|m| json!({"name": format!("vol-{}", (k + m) % 24), "mountPath": format!("/mnt/{m}")}))
            .collect();
        let mut c = json!({
            "name": name, "image": format!("registry.example.com/team/image-{k}:1.{k}.0"),
            "imagePullPolicy": "IfNotPresent", "env": env, "volumeMounts": mounts,
            "ports": [{"containerPort": 8000 + k, "protocol": "TCP"}],
            "terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "File"
        });
        if k % 3 != 2 {
            c["resources"] = json!({"requests": {"cpu": "250m", "memory": "256Mi"}, "limits": {"memory": "512Mi"}});
        }
        c
    };
    let expressions = |t: usize| -> Vec<Value> {
        (0..4)
            .map(|e| {
                json!({"key": format!("example.com/label-{t}-{e}"), "operator": "In",
                       "values": [format!("a{e}"), format!("b{e}"), format!("c{e}")]})
            })
            .collect()
    };
    let pod_term = |t: usize| {
        json!({"weight": 10 + t, "podAffinityTerm": {"topologyKey": "kubernetes.io/hostname",
            "labelSelector": {"matchExpressions": [{"key": "app", "operator": "In", "values": [format!("svc-{t}")]}]}}})
    };
    json!({
        "kind": "Pod", "apiVersion": "v1",
        "metadata": {
            "name": "big-db-0", "generateName": "big-db-", "namespace": "db",
            "labels": (0..30).map(|l| (format!("example.com/label-{l}"), json!(format!("value-{l}"))))
                .chain([("app.kubernetes.io/instance".to_owned(), json!("big-db"))])
                .collect::<serde_json::Map<_, _>>(),
            "annotations": (0..20).map(|a| (format!("example.com/annotation-{a}"), json!(format!("{a:064x}"))))
                .chain([("stowage.io/profile".to_owned(), json!("postgres"))])
                .collect::<serde_json::Map<_, _>>(),
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "big-db",
                                 "uid": "9e8d7c6b-5a4f-4e3d-8c2b-1a0f9e8d7c6c", "controller": true,
                                 "blockOwnerDeletion": true}]
        },
        "spec": {
            "initContainers": (0..3).map(|k| container(format!("init-{k}"), k)).collect::<Vec<_>>(),
            "containers": std::iter::once(container("postgres".to_owned(), 3))
                .chain((1..8).map(|k| container(format!("sidecar-{k}"), k + 3)))
                .collect::<Vec<_>>(),
            "volumes": (0..24).map(|v| json!({"name": format!("vol-{v}"), "emptyDir": {}})).collect::<Vec<_>>(),
            "tolerations": (0..30).map(|t| json!({"key": format!("example.com/taint-{t}"), "operator": "Equal",
                "value": "yes", "effect": "NoSchedule"})).collect::<Vec<_>>(),
            "affinity": {
                "nodeAffinity": {
                    "requiredDuringSchedulingIgnoredDuringExecution": {
                        "nodeSelectorTerms": (0..8).map(|t| json!({"matchExpressions": expressions(t)}))
                            .collect::<Vec<_>>()},
                    "preferredDuringSchedulingIgnoredDuringExecution": (0..5).map(|t| json!({"weight": 1 + t,
                        "preference": {"matchExpressions": expressions(t + 8)}})).collect::<Vec<_>>()
                },
                "podAffinity": {"preferredDuringSchedulingIgnoredDuringExecution":
                    (0..5).map(pod_term).collect::<Vec<_>>()},
                "podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution":
                    (5..10).map(pod_term).collect::<Vec<_>>()}
            },
            "restartPolicy": "Always", "terminationGracePeriodSeconds": 30, "dnsPolicy": "ClusterFirst",
            "serviceAccountName": "default", "hostname": "big-db-0", "subdomain": "big-db",
            "schedulerName": "default-scheduler", "enableServiceLinks": true
        }
    })
}

/// An AdmissionReview v1 request to create `pod`, with request uid `uid`.
#[must_use]
pub fn review(pod: &Value, uid: &str) -> Value {
    let namespace = pod["metadata"]["namespace"].clone();
    json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": uid,
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "requestKind": {"group": "", "version": "v1", "kind": "Pod"},
            "requestResource": {"group": "", "version": "v1", "resource": "pods"},
            "name": pod["metadata"]["name"].clone(), "namespace": namespace, "operation": "CREATE",
            "userInfo": {"username": "system:serviceaccount:kube-system:statefulset-controller",
                         "groups": ["system:serviceaccounts", "system:authenticated"]},
            "object": pod, "oldObject": null, "dryRun": false,
            "options": {"kind": "CreateOptions", "apiVersion": "meta.k8s.io/v1"}
        }
    })
}

/// The request uid of request number `seq`: UUID-shaped, fixed width.
#[must_use]
pub fn uid_for(seq: u64) -> String {
    format!("00000000-0000-4000-8000-{:012x}", seq & 0xffff_ffff_ffff)
}

/// A serialized review whose uid is rewritten in place for each request.
#[derive(Debug, Clone)]
pub struct UidTemplate {
    bytes: Vec<u8>,
    at: usize,
}

impl UidTemplate {
    /// A template for `review(pod, ..)`.
    #[must_use]
    pub fn new(pod: &Value) -> Self {
        let placeholder = uid_for(0);
        let bytes = serde_json::to_vec(&review(pod, &placeholder)).unwrap_or_default();
        let needle = format!("\"uid\":\"{placeholder}\"");
        let at = bytes.windows(needle.len()).position(|w| w == needle.as_bytes()).map_or(0, |p| p + 7);
        Self { bytes, at }
    }

    /// The review for request `seq` (uid [`uid_for`]`(seq)`).
    #[must_use]
    pub fn body(&self, seq: u64) -> Bytes {
        let mut bytes = self.bytes.clone();
        let uid = uid_for(seq);
        bytes[self.at..self.at + uid.len()].copy_from_slice(uid.as_bytes());
        Bytes::from(bytes)
    }
}

/// Extender arguments as kube-scheduler sends them with `nodeCacheCapable: true`: the full pod
/// and the candidate node names.
#[must_use]
pub fn extender_args(pod: &Value, node_names: &[String]) -> Bytes {
    Bytes::from(serde_json::to_vec(&json!({"Pod": pod, "NodeNames": node_names})).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_uid_template_rewrites_only_the_uid() {
        let template = UidTemplate::new(&small_pod());
        let body: Value = serde_json::from_slice(&template.body(0xabc)).unwrap();
        assert_eq!(body["request"]["uid"], uid_for(0xabc));
        assert_eq!(body["request"]["object"]["metadata"]["name"], "pg-main-1");
        let large: Value = serde_json::from_slice(&UidTemplate::new(&large_pod()).body(7)).unwrap();
        assert_eq!(large["request"]["object"]["spec"]["containers"].as_array().map(Vec::len), Some(8));
    }
}
