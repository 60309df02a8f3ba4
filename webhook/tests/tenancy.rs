//! Namespace-scoped profiles (issue 12): a pod may use a profile limited to some namespaces only
//! there; elsewhere the review is denied with a message naming the profile and the namespace, so
//! a tenant cannot take a database profile's pool, priority class or density class by
//! annotating a pod.

#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use serde_json::{Value, json};
use stowage_webhook::{AdmissionRequest, AdmitContext, Outcome, decide};

const CONFIG: &str = r#"
pools:
  postgres:
    nodeSelector: {pool: postgres}
    tolerations: [{key: dedicated, value: postgres, effect: NoSchedule}]
profiles:
  postgres:
    pool: postgres
    priorityClassName: database-critical
    density: {maxPerNode: 2}
    namespaces: [db]
  default:
    namespaces: [db, apps]
"#;

fn request(namespace: &str, annotations: Value) -> AdmissionRequest {
    serde_json::from_value(json!({
        "uid": "uid-1",
        "kind": {"group": "", "version": "v1", "kind": "Pod"},
        "resource": {"group": "", "version": "v1", "resource": "pods"},
        "namespace": namespace,
        "operation": "CREATE",
        "object": {"apiVersion": "v1", "kind": "Pod",
                   "metadata": {"name": "p", "namespace": namespace, "annotations": annotations},
                   "spec": {"containers": [{"name": "db"}]}},
    }))
    .unwrap()
}

#[test]
fn a_profile_is_denied_outside_its_namespaces() {
    let cfg = common::config(CONFIG);
    let ctx = AdmitContext::new(&cfg);

    let inside = decide(&request("db", json!({"stowage.io/profile": "postgres"})), &ctx);
    assert_eq!(inside.outcome, Outcome::Mutated);

    let outside = decide(&request("tenant", json!({"stowage.io/profile": "postgres"})), &ctx);
    assert_eq!(outside.outcome, Outcome::Denied);
    let status = outside.response.status.unwrap();
    assert_eq!(status.code, 403);
    assert_eq!(
        status.message,
        "profile \"postgres\" is not allowed in namespace \"tenant\": the cluster config limits it to namespace(s) db"
    );
    assert!(outside.response.patch.is_none(), "no pool toleration or priority class for the tenant");

    // The default profile (a pod opting in without naming one) is scoped the same way.
    let default = decide(&request("tenant", json!({"stowage.io/group": "g"})), &ctx);
    assert_eq!(default.outcome, Outcome::Denied);
    assert!(default.response.status.unwrap().message.contains("profile \"default\""));
    assert_eq!(decide(&request("apps", json!({"stowage.io/group": "g"})), &ctx).outcome, Outcome::Mutated);

    // The profile's pool cannot be taken by naming it directly either.
    let pool = decide(&request("apps", json!({"stowage.io/pool": "postgres"})), &ctx);
    assert_eq!(pool.outcome, Outcome::Denied);
    assert_eq!(
        pool.response.status.unwrap().message,
        "pool \"postgres\" is not allowed in namespace \"apps\": the profiles using it are limited to namespace(s) db"
    );

    // Pods that have not opted in are never concerned.
    assert_eq!(decide(&request("tenant", json!({"team": "a"})), &ctx).outcome, Outcome::Skipped);
}
