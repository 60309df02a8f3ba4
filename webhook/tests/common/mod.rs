//! Shared test helpers: configs, pods, and checks every planned patch must pass.

#![allow(dead_code, missing_docs, clippy::unwrap_used)]

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::Deserialize;
use serde_json::{Value, json};
use stowage_policy::{Config, Policy};
use stowage_webhook::{AdmissionResponse, Denial, Plan, plan};

/// Number of proptest cases: `PROPTEST_CASES` when set, else `default`.
pub fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES").ok().and_then(|s| s.parse().ok()).unwrap_or(default)
}

pub fn config(yaml: &str) -> Config {
    Config::from_yaml(yaml).unwrap_or_else(|e| panic!("test config: {e}"))
}

/// Resolves the pod's policy the way `admit` does.
pub fn policy<'c>(pod: &Value, cfg: &'c Config) -> Policy<'c> {
    let mut meta = ObjectMeta::deserialize(&pod["metadata"]).expect("metadata");
    meta.namespace.get_or_insert_with(|| "db".to_owned());
    stowage_policy::resolve(&meta, cfg).expect("valid annotations").expect("opted in")
}

/// Plans, applies the patch, and checks that planning again changes nothing.
pub fn run_with(pod: &Value, cfg: &Config, members: Option<u32>) -> (Plan, Value) {
    let p = policy(pod, cfg);
    let plan = plan(pod, &p, cfg, members).unwrap_or_else(|d| panic!("unexpected denial: {d}"));
    let mutated = apply(pod, &plan.patch);
    let again = plan_again(&mutated, cfg, members);
    assert!(again.patch.0.is_empty(), "not idempotent: second patch {}", serde_json::to_string(&again.patch).unwrap());
    (plan, mutated)
}

pub fn run(pod: &Value, cfg: &Config) -> (Plan, Value) {
    run_with(pod, cfg, None)
}

pub fn plan_again(pod: &Value, cfg: &Config, members: Option<u32>) -> Plan {
    let p = policy(pod, cfg);
    plan(pod, &p, cfg, members).unwrap_or_else(|d| panic!("denial on re-admission: {d}"))
}

pub fn deny(pod: &Value, cfg: &Config) -> Denial {
    let p = policy(pod, cfg);
    plan(pod, &p, cfg, None).expect_err("expected a denial")
}

pub fn apply(doc: &Value, patch: &json_patch::Patch) -> Value {
    let mut out = doc.clone();
    json_patch::patch(&mut out, patch).unwrap_or_else(|e| panic!("patch does not apply: {e}"));
    out
}

/// Compares a patch with the expected operations, ignoring their order.
pub fn assert_ops(patch: &json_patch::Patch, expected: Value) {
    let key = |v: &Value| format!("{}{}", v["path"].as_str().unwrap_or_default(), v["op"]);
    let mut got: Vec<Value> = serde_json::to_value(patch).unwrap().as_array().unwrap().clone();
    let mut want: Vec<Value> = expected.as_array().expect("expected ops array").clone();
    got.sort_by_key(key);
    want.sort_by_key(key);
    assert_eq!(
        got,
        want,
        "\n got: {}\nwant: {}",
        serde_json::to_string_pretty(&got).unwrap(),
        serde_json::to_string_pretty(&want).unwrap()
    );
}

pub fn has_warning(plan: &Plan, needle: &str) -> bool {
    plan.warnings.iter().any(|w| w.contains(needle))
}

/// A pod opted in with `annotations` (plus `stowage.io/profile`), in namespace `db`.
pub fn pod(annotations: Value, spec: Value) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "pg-0", "namespace": "db", "annotations": annotations},
        "spec": spec,
    })
}

/// Contract checks on any response: a patch only when allowed, and one that applies.
pub fn check_response(object: Option<&Value>, uid: &str, response: &AdmissionResponse) {
    assert_eq!(response.uid, uid, "uid must be echoed");
    let wire = serde_json::to_value(response).unwrap();
    assert_eq!(wire.get("patch").is_some(), wire.get("patchType").is_some(), "patch iff patchType: {wire}");
    if let Some(t) = wire.get("patchType") {
        assert_eq!(t, "JSONPatch");
    }
    let back: AdmissionResponse = serde_json::from_value(wire).unwrap();
    assert_eq!(back.patch.as_ref().map(|p| p.0.len()).unwrap_or(0), response.operations());
    if !response.allowed {
        assert!(response.patch.is_none(), "a denial carries no patch");
        let status = response.status.as_ref().expect("a denial has a status");
        assert!(status.code >= 400 && !status.message.is_empty());
    }
    if let Some(patch) = &response.patch {
        assert!(!patch.0.is_empty());
        let object = object.expect("a patch needs an object");
        apply(object, patch);
    }
    let total: usize = response.warnings.iter().map(String::len).sum();
    assert!(total < 4096, "warnings too long: {total}");
}
