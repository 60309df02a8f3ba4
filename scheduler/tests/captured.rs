//! The wire traffic of a real kube-scheduler, captured by the e2e suite (`tests/e2e_extender.rs`,
//! see `fixtures/README.md`), round-trips through our wire types: every request decodes and
//! encodes back to what the scheduler sent, and every reply of ours decodes and encodes back to
//! itself, with the keys and value ranges the scheduler reads.
#![allow(clippy::unwrap_used, missing_docs)]

mod roundtrip;

use std::collections::BTreeSet;

use roundtrip::round_trip;
use serde_json::Value;
use stowage_scheduler::extender::v1::{
    ExtenderArgs, ExtenderBindingArgs, ExtenderBindingResult, ExtenderFilterResult, ExtenderPreemptionArgs,
    ExtenderPreemptionResult, HostPriorityList, MAX_EXTENDER_PRIORITY, MIN_EXTENDER_PRIORITY,
};

const MODES: [&str; 2] = ["cache", "nocache"];

fn fixture(verb: &str, mode: &str, part: &str) -> Value {
    let path = format!("{}/tests/fixtures/captured-{verb}-{mode}-{part}.json", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn keys(v: &Value) -> BTreeSet<&str> {
    v.as_object().unwrap().keys().map(String::as_str).collect()
}

fn set<'a>(items: &[&'a str]) -> BTreeSet<&'a str> {
    items.iter().copied().collect()
}

/// Candidate node names of a filter/prioritize request.
fn candidates(args: &ExtenderArgs) -> Vec<String> {
    match (&args.node_names, &args.nodes) {
        (Some(names), _) => names.clone(),
        (None, Some(nodes)) => nodes
            .items
            .iter()
            .map(|raw| {
                serde_json::from_str::<Value>(raw.get()).unwrap()["metadata"]["name"].as_str().unwrap().to_owned()
            })
            .collect(),
        (None, None) => Vec::new(),
    }
}

fn check_mode(mode: &str, request: &Value) {
    match mode {
        "cache" => assert!(request["Nodes"].is_null() && request["NodeNames"].is_array(), "{mode}"),
        _ => assert!(request["NodeNames"].is_null() && request["Nodes"]["items"].is_array(), "{mode}"),
    }
}

#[test]
fn filter_requests_and_replies_round_trip() {
    for mode in MODES {
        let request = fixture("filter", mode, "request");
        assert_eq!(keys(&request), set(&["Pod", "Nodes", "NodeNames"]));
        check_mode(mode, &request);
        let args: ExtenderArgs = round_trip(&format!("filter {mode} request"), &request);
        let input = candidates(&args);
        assert!(input.len() > 1, "{input:?}");

        let reply = fixture("filter", mode, "response");
        assert_eq!(keys(&reply), set(&["Nodes", "NodeNames", "FailedNodes", "FailedAndUnresolvableNodes", "Error"]));
        let result: ExtenderFilterResult = round_trip(&format!("filter {mode} response"), &reply);
        assert!(result.error.is_empty());
        let mut answered = result.passing_names();
        answered.extend(result.failed_nodes.0.iter().map(|(n, _)| n.clone()));
        answered.extend(result.failed_and_unresolvable_nodes.0.iter().map(|(n, _)| n.clone()));
        answered.sort();
        let mut want = input.clone();
        want.sort();
        assert_eq!(answered, want, "every candidate answered once ({mode})");
        assert!(!result.failed_and_unresolvable_nodes.is_empty(), "the capture shows the quorum guard ({mode})");
        match mode {
            "cache" => assert!(reply["Nodes"].is_null() && reply["NodeNames"].is_array()),
            _ => {
                assert!(reply["NodeNames"].is_null());
                let sent = request["Nodes"]["items"].as_array().unwrap();
                for item in reply["Nodes"]["items"].as_array().unwrap() {
                    assert!(sent.contains(item), "passing nodes are echoed unchanged ({mode})");
                }
            }
        }
    }
}

#[test]
fn prioritize_requests_and_bare_array_replies_round_trip() {
    for mode in MODES {
        let request = fixture("prioritize", mode, "request");
        check_mode(mode, &request);
        let args: ExtenderArgs = round_trip(&format!("prioritize {mode} request"), &request);
        let input = candidates(&args);

        let reply = fixture("prioritize", mode, "response");
        assert!(reply.is_array(), "a bare array ({mode})");
        for entry in reply.as_array().unwrap() {
            assert_eq!(keys(entry), set(&["Host", "Score"]));
        }
        let list: HostPriorityList = round_trip(&format!("prioritize {mode} response"), &reply);
        assert_eq!(list.len(), input.len());
        for p in &list {
            assert!(input.contains(&p.host), "{} was not a candidate", p.host);
            assert!((MIN_EXTENDER_PRIORITY..=MAX_EXTENDER_PRIORITY).contains(&p.score), "{p:?}");
        }
    }
}

#[test]
fn bind_requests_and_replies_round_trip() {
    for mode in MODES {
        let request = fixture("bind", mode, "request");
        assert_eq!(keys(&request), set(&["PodName", "PodNamespace", "PodUID", "Node"]));
        let args: ExtenderBindingArgs = round_trip(&format!("bind {mode} request"), &request);
        assert!(!args.pod_uid.is_empty() && !args.node.is_empty());
        let reply = fixture("bind", mode, "response");
        let result: ExtenderBindingResult = round_trip(&format!("bind {mode} response"), &reply);
        assert!(result.error.is_empty());
    }
}

#[test]
fn preempt_requests_and_replies_round_trip() {
    for mode in MODES {
        let request = fixture("preempt", mode, "request");
        assert_eq!(keys(&request), set(&["Pod", "NodeNameToVictims", "NodeNameToMetaVictims"]));
        let args: ExtenderPreemptionArgs = round_trip(&format!("preempt {mode} request"), &request);
        let victims: BTreeSet<String> = match mode {
            "cache" => {
                assert!(args.node_name_to_victims.is_none());
                args.node_name_to_meta_victims
                    .unwrap()
                    .values()
                    .flat_map(|v| v.pods.iter().map(|p| p.uid.clone()))
                    .collect()
            }
            _ => {
                assert!(args.node_name_to_meta_victims.is_none());
                args.node_name_to_victims
                    .unwrap()
                    .values()
                    .flat_map(|v| v.pods.iter().map(|p| p.metadata.uid.clone().unwrap()))
                    .collect()
            }
        };
        assert!(!victims.is_empty());

        let reply = fixture("preempt", mode, "response");
        assert_eq!(keys(&reply), set(&["NodeNameToMetaVictims"]));
        let result: ExtenderPreemptionResult = round_trip(&format!("preempt {mode} response"), &reply);
        for meta in result.node_name_to_meta_victims.values() {
            for p in &meta.pods {
                assert!(victims.contains(&p.uid), "{} was not a victim ({mode})", p.uid);
            }
        }
    }
}
