//! Bounded answers and a bounded decision log whatever the input (security review, issue 12),
//! and candidate lists cleaned at the wire edge: repeated names once, empty names refused.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use axum::{
    Router,
    body::Body,
    http::{Method, Request, StatusCode, header},
};
use common::*;
use http_body_util::BodyExt;
use serde_json::{Value, json};
use stowage_fixtures::statefulset;
use stowage_scheduler::{router, snapshot::Snapshot};
use tower::ServiceExt;

fn app() -> (World, Router) {
    let w = world(
        PG_CONFIG,
        Snapshot { nodes: six_nodes(), stateful_sets: vec![statefulset("db", "pg", 3, &[])], ..Snapshot::default() },
    );
    let r = router(w.ext.clone());
    (w, r)
}

fn post(uri: &str, body: &Value) -> Request<Body> {
    Request::builder()
        .method(Method::POST)
        .uri(uri)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_string()))
        .unwrap()
}

async fn send(app: &Router, req: Request<Body>) -> (StatusCode, String) {
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8(bytes.to_vec()).unwrap())
}

fn pod_json() -> Value {
    serde_json::to_value(member(0).build()).unwrap()
}

fn filter_args(node_names: &[&str]) -> Value {
    json!({"Pod": pod_json(), "NodeNames": node_names})
}

fn node_object(name: &str, zone: &str) -> Value {
    json!({"metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, "topology.kubernetes.io/zone": zone}},
           "status": {"allocatable": {"cpu": "8", "memory": "32Gi", "pods": "110"}}})
}

/// Pods are stored, so their annotations are within the apiserver's 256 KiB; 1,000 unknown
/// keys made a 220 KB error before (each key followed by every known key).
#[tokio::test]
async fn a_filter_error_naming_unknown_keys_is_small() {
    let (w, app) = app();
    let mut pod = pod_json();
    for i in 0..1_000 {
        pod["metadata"]["annotations"][format!("stowage.io/unknown-{i:04}")] = json!("");
    }
    let (status, body) = send(&app, post("/scheduler/filter", &json!({"Pod": pod, "NodeNames": ["a1"]}))).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.len() < 2048, "{} bytes: {}", body.len(), &body[..600]);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert!(v["Error"].as_str().unwrap().contains("and 995 more"), "{body}");
    let logged = w.ext.decisions().recent(None, 1);
    assert!(logged[0].error.as_ref().unwrap().len() < 2048);
}

/// Long names from the wire (bind arguments, candidate names) are cut in the log, and the log
/// as a whole stays within its byte budget, so `/debug/decisions` stays bounded too.
#[tokio::test]
async fn the_decision_log_and_its_endpoint_stay_bounded() {
    let (_w, app) = app();
    let long = |c: char| c.to_string().repeat(100_000);
    for i in 0..150 {
        let args = json!({"PodName": format!("{i}{}", long('p')), "PodNamespace": "db", "PodUID": "u",
                          "Node": long('n')});
        let (status, _) = send(&app, post("/scheduler/bind", &args)).await;
        assert_eq!(status, StatusCode::OK);
        let names: Vec<String> = (0..20).map(|j| format!("{j}{}", "m".repeat(10_000))).collect();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        let (status, _) = send(&app, post("/scheduler/filter", &filter_args(&names))).await;
        assert_eq!(status, StatusCode::OK);
    }
    for query in ["limit=100000", "limit=100000&format=text"] {
        let (status, body) =
            send(&app, Request::get(format!("/debug/decisions?{query}")).body(Body::empty()).unwrap()).await;
        assert_eq!(status, StatusCode::OK);
        assert!(body.len() < 6 << 20, "{query}: {} bytes", body.len());
        assert!(body.contains('…'), "long strings are cut visibly");
    }
}

#[tokio::test]
async fn repeated_candidate_names_are_answered_once() {
    let (_w, app) = app();
    // "zz" is unknown (refused), "a1" may pass; both repeated.
    let (status, body) = send(&app, post("/scheduler/filter", &filter_args(&["zz", "a1", "zz", "a1"]))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body.matches("\"zz\"").count(), 1, "one FailedNodes key per node: {body}");
    assert_eq!(body.matches("\"a1\"").count(), 1, "{body}");
    let (status, body) = send(&app, post("/scheduler/prioritize", &filter_args(&["a1", "b1", "a1"]))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    let hosts: Vec<&str> = v.as_array().unwrap().iter().map(|h| h["Host"].as_str().unwrap()).collect();
    assert_eq!(hosts, ["a1", "b1"]);
    // The same with node objects: the first occurrence is kept, byte for byte.
    let items = json!([node_object("a1", "a"), node_object("zz", "z"), node_object("a1", "x"), node_object("zz", "y")]);
    let args = json!({"Pod": pod_json(), "Nodes": {"items": items}});
    let (status, body) = send(&app, post("/scheduler/filter", &args)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    let kept = v["Nodes"]["items"].as_array().unwrap();
    let first_zone = |name: &str| if name == "a1" { "a" } else { "z" };
    for n in kept {
        let name = n["metadata"]["name"].as_str().unwrap();
        assert_eq!(n["metadata"]["labels"]["topology.kubernetes.io/zone"], first_zone(name), "first kept: {body}");
    }
    let refused = body.matches("\"zz\":").count() + body.matches("\"a1\":").count();
    assert_eq!(kept.len() + refused, 2, "each node answered once: {body}");
}

#[tokio::test]
async fn empty_candidate_names_are_refused_with_a_reason() {
    let (_w, app) = app();
    let nameless = [
        ("/scheduler/filter", filter_args(&["a1", ""])),
        ("/scheduler/prioritize", filter_args(&[""])),
        (
            "/scheduler/filter",
            json!({"Pod": pod_json(), "Nodes": {"items": [node_object("a1", "a"), node_object("", "a")]}}),
        ),
        ("/scheduler/filter", json!({"Pod": pod_json(), "Nodes": {"items": [{"metadata": {}}]}})),
        ("/scheduler/prioritize", json!({"Pod": pod_json(), "Nodes": {"items": [42]}})),
    ];
    for (uri, args) in nameless {
        let (status, body) = send(&app, post(uri, &args)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{uri} {args}: {body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        let message = v["message"].as_str().unwrap();
        assert!(message.contains("no name") || message.contains("empty"), "{message}");
    }
}
