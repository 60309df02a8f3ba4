//! The admission decision: what is mutated, skipped or denied, on requests as the apiserver
//! sends them.

#![allow(clippy::unwrap_used)] // helpers outside #[test] functions

mod common;

use common::{apply, check_response, config};
use serde_json::{Value, json};
use stowage_policy::Config;
use stowage_webhook::{
    AdmissionRequest, AdmitContext, Operation, Outcome, StaticMembers, decide, decode_request, review::SYNTHETIC_UID,
};

const FIXTURE: &str = include_str!("fixtures/statefulset-pod-create.json");

const CONFIG: &str = r#"
schedulerName: stowage
pools:
  postgres:
    nodeSelector: {node-role.kubernetes.io/postgres: ""}
    tolerations: [{key: dedicated, value: postgres, effect: NoSchedule}]
profiles:
  postgres:
    qos: guaranteed
    integerCPU: true
    pool: postgres
    priorityClassName: database
    zoneSpread: required
    nodeSpread: required
    minDomains: 5
    resources:
      containers:
        postgres: {requests: {cpu: "2", memory: 8Gi}, limits: {cpu: "2", memory: 8Gi}}
      default: {requests: {cpu: 100m, memory: 64Mi}}
"#;

fn fixture() -> AdmissionRequest {
    decode_request(FIXTURE.as_bytes()).expect("fixture decodes")
}

fn request(operation: &str, object: Value) -> AdmissionRequest {
    serde_json::from_value(json!({
        "uid": "uid-1",
        "kind": {"group": "", "version": "v1", "kind": "Pod"},
        "resource": {"group": "", "version": "v1", "resource": "pods"},
        "namespace": "db",
        "operation": operation,
        "object": object,
    }))
    .unwrap()
}

fn opted_in_pod() -> Value {
    json!({"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": "p", "namespace": "db", "annotations": {"stowage.io/profile": "postgres", "stowage.io/group": "g"}},
           "spec": {"containers": [{"name": "postgres"}]}})
}

fn decide_with(request: &AdmissionRequest, cfg: &Config) -> stowage_webhook::Verdict {
    let members = StaticMembers::default().with("db", "pg-main", 3);
    let skip = vec!["stowage-system".to_owned()];
    let ctx = AdmitContext::new(cfg).skip_namespaces(&skip).members(&members);
    let verdict = decide(request, &ctx);
    check_response(request.object.as_ref(), &request.uid, &verdict.response);
    verdict
}

#[test]
fn a_statefulset_pod_is_shaped_by_its_profile() {
    let cfg = config(CONFIG);
    let request = fixture();
    let verdict = decide_with(&request, &cfg);
    assert_eq!(verdict.outcome, Outcome::Mutated);
    let response = &verdict.response;
    assert!(response.allowed);
    assert_eq!(response.uid, "7c5b3a8e-2f4d-4e61-9b1a-0d3c6e9f8a21");
    assert_eq!(response.audit_annotations.get("profile").map(String::as_str), Some("postgres"));

    let pod = request.object.clone().unwrap();
    let mut mutated = pod.clone();
    response.apply_to(&mut mutated).unwrap();
    let spec = &mutated["spec"];
    assert_eq!(mutated["metadata"]["labels"]["stowage.io/group"], "pg-main");
    assert_eq!(
        spec["containers"][0]["resources"],
        json!({"limits": {"cpu": "4", "memory": "16Gi"}, "requests": {"cpu": "4", "memory": "16Gi"}})
    );
    assert_eq!(
        spec["initContainers"][0]["resources"],
        json!({"limits": {"cpu": "1", "memory": "64Mi"}, "requests": {"cpu": "1", "memory": "64Mi"}})
    );
    assert_eq!(spec["schedulerName"], "stowage");
    assert_eq!(spec["priorityClassName"], "database");
    assert!(spec.get("priority").is_none() && spec.get("preemptionPolicy").is_none());
    assert_eq!(spec["tolerations"].as_array().unwrap().len(), 3);
    assert_eq!(
        spec["topologySpreadConstraints"][0]["minDomains"], 3,
        "the StatefulSet's 3 replicas cap the profile's minDomains 5"
    );
    assert_eq!(
        spec["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][0]["topologyKey"],
        "kubernetes.io/hostname"
    );
    assert_eq!(
        spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"][0]["matchExpressions"]
            [0]["key"],
        "node-role.kubernetes.io/postgres"
    );
    // Everything else is exactly as sent, fields unknown to this crate's types included.
    for key in ["volumes", "hostname", "subdomain", "securityContext", "enableServiceLinks", "dnsPolicy"] {
        assert_eq!(spec[key], pod["spec"][key], "{key}");
    }
    assert_eq!(mutated["metadata"]["managedFields"], pod["metadata"]["managedFields"]);
    assert!(
        response.warnings.iter().any(|w| w == "container postgres: raised cpu request 3500m to 4 for Guaranteed QoS")
    );

    // Re-admission (reinvocation) of the mutated pod yields no patch.
    let again = AdmissionRequest { object: Some(mutated), ..request };
    let verdict = decide_with(&again, &cfg);
    assert_eq!(verdict.outcome, Outcome::Unchanged);
    assert!(verdict.response.patch.is_none());
}

#[test]
fn the_offline_request_answers_like_the_live_one() {
    let cfg = config(CONFIG);
    let live = fixture();
    let offline = AdmissionRequest::create_pod(live.object.clone().unwrap(), "default");
    assert_eq!(offline.uid, SYNTHETIC_UID);
    let (a, b) = (decide_with(&live, &cfg), decide_with(&offline, &cfg));
    assert_eq!(a.response.patch, b.response.patch);
    assert_eq!(a.response.warnings, b.response.warnings);
}

#[test]
fn dry_run_gets_the_identical_answer() {
    let cfg = config(CONFIG);
    let live = fixture();
    let dry = AdmissionRequest { dry_run: Some(true), ..live.clone() };
    assert_eq!(decide_with(&live, &cfg), decide_with(&dry, &cfg));
}

#[test]
fn only_pod_creates_are_mutated() {
    let cfg = config(CONFIG);
    let pod = opted_in_pod();
    assert_eq!(decide_with(&request("CREATE", pod.clone()), &cfg).outcome, Outcome::Mutated);
    for (operation, object) in
        [("UPDATE", pod.clone()), ("DELETE", Value::Null), ("CONNECT", Value::Null), ("PATCH", pod.clone())]
    {
        let verdict = decide_with(&request(operation, object), &cfg);
        assert_eq!(verdict.outcome, Outcome::Skipped, "{operation}");
        assert!(verdict.response.allowed && verdict.response.patch.is_none());
    }
    // Subresources (binding, eviction, status) and other kinds are not pods being created.
    let mut sub = request("CREATE", pod.clone());
    sub.sub_resource = Some("binding".into());
    assert_eq!(decide_with(&sub, &cfg).outcome, Outcome::Skipped);
    let mut cm =
        request("CREATE", json!({"metadata": {"annotations": {"stowage.io/profile": "postgres"}}, "data": {}}));
    cm.kind.kind = "ConfigMap".into();
    cm.resource.resource = "configmaps".into();
    assert_eq!(decide_with(&cm, &cfg).outcome, Outcome::Skipped);
    let mut sts = request("CREATE", pod);
    sts.resource.group = "apps".into();
    sts.kind.group = "apps".into();
    assert_eq!(decide_with(&sts, &cfg).outcome, Outcome::Skipped);
}

#[test]
fn skipped_namespaces_mirror_pods_and_pods_not_opted_in_are_untouched() {
    let cfg = config(CONFIG);
    let mut own = request("CREATE", opted_in_pod());
    own.namespace = Some("stowage-system".into());
    assert_eq!(decide_with(&own, &cfg).outcome, Outcome::Skipped);

    let mut mirror = opted_in_pod();
    mirror["metadata"]["annotations"]["kubernetes.io/config.mirror"] = json!("abc");
    assert_eq!(decide_with(&request("CREATE", mirror), &cfg).outcome, Outcome::Skipped);

    let mut plain = opted_in_pod();
    plain["metadata"]["annotations"] = json!({"other.io/x": "1"});
    assert_eq!(decide_with(&request("CREATE", plain.clone()), &cfg).outcome, Outcome::Skipped);
    plain["metadata"].as_object_mut().unwrap().remove("annotations");
    let verdict = decide_with(&request("CREATE", plain), &cfg);
    assert_eq!(verdict.outcome, Outcome::Skipped);
    assert_eq!(serde_json::to_value(&verdict.response).unwrap(), json!({"uid": "uid-1", "allowed": true}));
}

#[test]
fn invalid_annotations_are_denied_together_naming_key_value_and_allowed_values() {
    let cfg = config(CONFIG);
    let mut pod = opted_in_pod();
    pod["metadata"]["annotations"]["stowage.io/zone-spread"] = json!("always");
    pod["metadata"]["annotations"]["stowage.io/members"] = json!("three");
    let verdict = decide_with(&request("CREATE", pod), &cfg);
    assert_eq!(verdict.outcome, Outcome::Denied);
    let status = verdict.response.status.unwrap();
    assert_eq!((status.code, status.reason.as_str()), (400, "BadRequest"));
    assert!(
        status
            .message
            .contains("stowage.io/zone-spread: \"always\" is not allowed; allowed values: required, preferred, off"),
        "{}",
        status.message
    );
    assert!(status.message.contains("stowage.io/members: \"three\""), "{}", status.message);
}

#[test]
fn planner_denials_and_malformed_pods_are_denied_with_400() {
    let cfg = config(CONFIG);
    let mut conflict = opted_in_pod();
    conflict["metadata"]["labels"] = json!({"stowage.io/group": "other"});
    let v = decide_with(&request("CREATE", conflict), &cfg);
    assert_eq!(v.outcome, Outcome::Denied);
    assert!(v.response.status.unwrap().message.contains("\"other\""));

    let mut bad_spec = opted_in_pod();
    bad_spec["spec"]["containers"] = json!("not a list");
    let v = decide_with(&request("CREATE", bad_spec), &cfg);
    assert!(v.response.status.unwrap().message.starts_with("request.object.spec is not a valid pod spec"));

    let v = decide_with(&request("CREATE", Value::Null), &cfg);
    assert_eq!(v.response.status.unwrap().code, 400);
    let v = decide_with(&request("CREATE", json!({"metadata": {"labels": 3}})), &cfg);
    assert!(v.response.status.unwrap().message.starts_with("request.object.metadata"));
}

#[test]
fn the_namespace_of_the_request_keys_the_group() {
    // The group key uses the request namespace when the object has none (generateName pods).
    let cfg = config(CONFIG);
    let mut pod = fixture().object.unwrap();
    pod["metadata"].as_object_mut().unwrap().remove("namespace");
    let verdict = decide_with(&request("CREATE", pod.clone()), &cfg);
    let mutated = apply(&pod, verdict.response.patch.as_ref().unwrap());
    assert_eq!(mutated["spec"]["topologySpreadConstraints"][0]["minDomains"], 3, "found db/pg-main's replicas");
}

#[test]
fn the_synthetic_request_is_a_pod_create() {
    let r = AdmissionRequest::create_pod(opted_in_pod(), "default");
    assert_eq!(r.operation, Operation::Create);
    assert_eq!(r.resource.resource, "pods");
    assert_eq!(r.namespace.as_deref(), Some("db"));
}
