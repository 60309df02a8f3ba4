//! Wire compatibility with kube-scheduler's extender/v1 JSON (PascalCase out, any casing in).
#![allow(clippy::unwrap_used, missing_docs)]

mod roundtrip;

use serde::{Serialize, de::DeserializeOwned};
use serde_json::Value;
use stowage_scheduler::extender::v1::{
    ExtenderArgs, ExtenderBindingArgs, ExtenderBindingResult, ExtenderFilterResult, ExtenderPreemptionArgs,
    ExtenderPreemptionResult, HostPriorityList, clamp_score,
};

fn fixture(name: &str) -> String {
    let path = format!("{}/tests/fixtures/{name}.json", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Parses a fixture into `T`, serialises it back and compares with the fixture as JSON values.
fn round_trip<T: DeserializeOwned + Serialize>(name: &str) -> T {
    let want: Value = serde_json::from_str(&fixture(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
    roundtrip::round_trip(name, &want)
}

#[test]
fn filter_args_with_node_names() {
    let a: ExtenderArgs = round_trip("handwritten-filter-args-node-names");
    assert_eq!(a.node_names.unwrap(), ["a1", "b1"]);
    assert!(a.nodes.is_none());
    assert_eq!(a.pod.unwrap().metadata.name.as_deref(), Some("pg-0"));
}

#[test]
fn filter_args_with_full_nodes() {
    let a: ExtenderArgs = round_trip("handwritten-filter-args-nodes");
    assert!(a.node_names.is_none());
    assert_eq!(a.nodes.unwrap().items.len(), 2);
}

#[test]
fn any_casing_is_accepted_and_pascal_case_is_emitted() {
    let a: ExtenderArgs = serde_json::from_str(&fixture("handwritten-filter-args-lowercase")).unwrap();
    let want: Value = serde_json::from_str(&fixture("handwritten-filter-args-node-names")).unwrap();
    let mut back = serde_json::to_value(&a).unwrap();
    roundtrip::strip_added_type_meta(&mut back, &want);
    assert_eq!(back, want);
    let b: ExtenderBindingArgs =
        serde_json::from_str(r#"{"podname":"p","PODNAMESPACE":"ns","podUid":"u","node":"n"}"#).unwrap();
    assert_eq!(
        serde_json::to_value(&b).unwrap(),
        serde_json::json!({"PodName":"p","PodNamespace":"ns","PodUID":"u","Node":"n"})
    );
}

#[test]
fn null_and_absent_are_the_same() {
    let absent: ExtenderArgs = serde_json::from_str(r#"{"Pod":{}}"#).unwrap();
    let null: ExtenderArgs = serde_json::from_str(r#"{"Pod":{},"Nodes":null,"NodeNames":null}"#).unwrap();
    assert_eq!(serde_json::to_value(&absent).unwrap(), serde_json::to_value(&null).unwrap());
    let r: ExtenderFilterResult = serde_json::from_str(r#"{"FailedNodes":null,"Error":null}"#).unwrap();
    assert!(r.failed_nodes.is_empty() && r.error.is_empty());
    let v: ExtenderPreemptionArgs =
        serde_json::from_str(r#"{"Pod":{},"NodeNameToMetaVictims":{"n":{"Pods":null}}}"#).unwrap();
    assert!(v.node_name_to_meta_victims.unwrap()["n"].pods.is_empty());
}

#[test]
fn filter_results() {
    let r: ExtenderFilterResult = round_trip("handwritten-filter-result-node-names");
    assert_eq!(r.passing_names(), ["a1"]);
    let r: ExtenderFilterResult = round_trip("handwritten-filter-result-nodes");
    assert_eq!(r.passing_names(), ["a1"]);
    let r: ExtenderFilterResult = round_trip("handwritten-filter-result-error");
    assert_eq!(r.error, "stowage cache has not synced yet");
}

#[test]
fn prioritize_reply_is_a_bare_array() {
    let list: HostPriorityList = round_trip("handwritten-prioritize-result");
    assert_eq!(list.len(), 2);
    assert!(serde_json::to_string(&list).unwrap().starts_with('['));
    assert_eq!(clamp_score(42), 10);
    assert_eq!(clamp_score(-1), 0);
}

#[test]
fn preemption_types() {
    let a: ExtenderPreemptionArgs = round_trip("handwritten-preempt-args-meta-victims");
    assert_eq!(a.node_name_to_meta_victims.unwrap()["a1"].pods[0].uid, "11111111-0000-4000-8000-000000000001");
    let a: ExtenderPreemptionArgs = round_trip("handwritten-preempt-args-victims");
    assert_eq!(a.node_name_to_victims.unwrap()["b1"].num_pdb_violations, 1);
    let _: ExtenderPreemptionResult = round_trip("handwritten-preempt-result");
}

#[test]
fn binding_types() {
    let a: ExtenderBindingArgs = round_trip("handwritten-bind-args");
    assert_eq!(a.node, "a1");
    let r: ExtenderBindingResult = round_trip("handwritten-bind-result");
    assert!(r.error.is_empty());
}

#[test]
fn wrong_types_are_errors_with_positions() {
    let err = serde_json::from_str::<ExtenderArgs>(r#"{"Pod":{},"NodeNames":"a1"}"#).unwrap_err().to_string();
    assert!(err.contains("line 1 column"), "{err}");
}
