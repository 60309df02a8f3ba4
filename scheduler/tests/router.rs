//! The HTTP edge, in-process with `tower::ServiceExt::oneshot`.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::{sync::Arc, time::Duration};

use axum::{
    Router,
    body::Body,
    http::{Method, Request, StatusCode, header},
};
use common::*;
use http_body_util::BodyExt;
use serde_json::{Value, json};
use stowage_fixtures::statefulset;
use stowage_scheduler::{
    ClusterCache, Extender, FakeBinder, NoopEvents, Options, RouterOptions, metrics::Metrics, router, router_with,
    snapshot::Snapshot,
};
use tower::ServiceExt;

fn app() -> (World, Router) {
    let w = world(
        PG_CONFIG,
        Snapshot { nodes: six_nodes(), stateful_sets: vec![statefulset("db", "pg", 3, &[])], ..Snapshot::default() },
    );
    let r = router(w.ext.clone());
    (w, r)
}

fn unsynced() -> Router {
    let cfg = stowage_policy::Config::from_yaml(PG_CONFIG).unwrap();
    let ext = Extender::with_metrics(
        Arc::new(ClusterCache::new(&cfg)),
        Arc::new(arc_swap::ArcSwap::from_pointee(cfg)),
        Arc::new(FakeBinder::default()),
        Arc::new(NoopEvents),
        Metrics::unregistered(),
        Options::default(),
    );
    router(Arc::new(ext))
}

fn post(uri: &str, body: impl Into<Body>) -> Request<Body> {
    Request::builder()
        .method(Method::POST)
        .uri(uri)
        .header(header::CONTENT_TYPE, "application/json")
        .body(body.into())
        .unwrap()
}

fn get(uri: &str) -> Request<Body> {
    Request::builder().uri(uri).body(Body::empty()).unwrap()
}

async fn send(app: &Router, req: Request<Body>) -> (StatusCode, String) {
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8(bytes.to_vec()).unwrap())
}

fn fixture(name: &str) -> String {
    std::fs::read_to_string(format!("{}/tests/fixtures/{name}.json", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

#[tokio::test]
async fn filter_before_sync_is_an_error_reply_and_readyz_is_503() {
    let app = unsynced();
    let (status, body) = send(&app, post("/scheduler/filter", fixture("handwritten-filter-args-node-names"))).await;
    assert_eq!(status, StatusCode::OK);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["Error"], "stowage cache has not synced yet");
    let (status, body) = send(&app, get("/readyz")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(body.contains("\"ready\":false") && body.contains("\"kind\":\"pods\""), "{body}");
    let (status, body) = send(&app, post("/scheduler/prioritize", fixture("handwritten-filter-args-node-names"))).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "[]"));
    let (status, _) = send(&app, get("/healthz")).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn synced_filter_and_prioritize_speak_pascal_case() {
    let (_w, app) = app();
    let (status, _) = send(&app, get("/readyz")).await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = send(&app, post("/scheduler/filter", fixture("handwritten-filter-args-node-names"))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["NodeNames"], json!(["a1", "b1"]));
    assert_eq!(v["Nodes"], Value::Null);
    assert!(v.get("FailedNodes").is_some() && v.get("FailedAndUnresolvableNodes").is_some());
    let (status, body) = send(&app, post("/scheduler/prioritize", fixture("handwritten-filter-args-lowercase"))).await;
    assert_eq!(status, StatusCode::OK);
    let v: Value = serde_json::from_str(&body).unwrap();
    let arr = v.as_array().unwrap();
    assert_eq!(arr.len(), 2);
    assert!(arr.iter().all(|h| h["Host"].is_string() && (0..=10).contains(&h["Score"].as_i64().unwrap())));
}

#[tokio::test]
async fn full_node_objects_come_back_as_objects() {
    let (_w, app) = app();
    let (status, body) = send(&app, post("/scheduler/filter", fixture("handwritten-filter-args-nodes"))).await;
    assert_eq!(status, StatusCode::OK);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["NodeNames"], Value::Null);
    assert_eq!(v["Nodes"]["items"].as_array().unwrap().len(), 2);
    assert_eq!(v["Nodes"]["items"][0]["status"]["allocatable"]["cpu"], "8");
}

#[tokio::test]
async fn bind_and_preempt_over_http() {
    let (w, app) = app();
    w.binder.add_pod("db", "pg-0", "0f6b1c7e-0000-4000-8000-000000000001", None);
    let (status, body) = send(&app, post("/scheduler/bind", fixture("handwritten-bind-args"))).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, r#"{"Error":""}"#));
    let (status, body) = send(&app, post("/scheduler/preempt", fixture("handwritten-preempt-args-victims"))).await;
    assert_eq!(status, StatusCode::OK);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["NodeNameToMetaVictims"]["b1"]["Pods"][0]["UID"], "22222222-0000-4000-8000-000000000002");
    assert_eq!(v["NodeNameToMetaVictims"]["b1"]["NumPDBViolations"], 1);
}

#[tokio::test]
async fn malformed_bodies_are_precise_400s() {
    let (_w, app) = app();
    let (status, body) = send(&app, post("/scheduler/filter", "{\"Pod\": {}, \"NodeNames\": [1,")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["code"], 400);
    assert!(v["message"].as_str().unwrap().contains("line 1 column"), "{body}");
    let (status, body) = send(&app, post("/scheduler/filter", r#"{"NodeNames":["a1"]}"#)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body.contains("missing field `Pod`"), "{body}");
    let (status, body) = send(&app, post("/scheduler/bind", r#"{"PodName": 3}"#)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body.contains("bind: invalid request body"), "{body}");
}

#[tokio::test]
async fn wrong_content_type_is_415_and_wrong_method_405() {
    let (_w, app) = app();
    let req = Request::builder()
        .method(Method::POST)
        .uri("/scheduler/filter")
        .header(header::CONTENT_TYPE, "text/plain")
        .body(Body::from("{}"))
        .unwrap();
    let (status, body) = send(&app, req).await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert!(body.contains("\"code\":415"), "{body}");
    let req = Request::builder().method(Method::POST).uri("/scheduler/filter").body(Body::from("{}")).unwrap();
    assert_eq!(send(&app, req).await.0, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let ok = Request::builder()
        .method(Method::POST)
        .uri("/scheduler/filter")
        .header(header::CONTENT_TYPE, "application/json; charset=utf-8")
        .body(Body::from(fixture("handwritten-filter-args-node-names")))
        .unwrap();
    assert_eq!(send(&app, ok).await.0, StatusCode::OK);
    let (status, body) = send(&app, get("/scheduler/filter")).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert!(body.contains("\"code\":405"), "{body}");
    assert_eq!(send(&app, post("/readyz", "{}")).await.0, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(send(&app, get("/nope")).await.0, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn oversized_bodies_are_413_before_and_while_reading() {
    let (w, _) = app();
    let app = router_with(w.ext.clone(), RouterOptions { body_limit: 1024, ..RouterOptions::default() });
    let big = "x".repeat(4096);
    let mut req = post("/scheduler/filter", big.clone());
    req.headers_mut().insert(header::CONTENT_LENGTH, big.len().into());
    let (status, body) = send(&app, req).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(body.contains("request body of 4096 bytes is above the limit of 1024 bytes"), "{body}");
    // Chunked: no Content-Length, cut off while reading.
    let chunks: Vec<Result<String, std::io::Error>> = (0..8).map(|_| Ok("y".repeat(512))).collect();
    let req = Request::builder()
        .method(Method::POST)
        .uri("/scheduler/filter")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from_stream(futures::stream::iter(chunks)))
        .unwrap();
    let (status, body) = send(&app, req).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    assert!(body.contains("\"code\":413"), "{body}");
}

#[tokio::test(start_paused = true)]
async fn requests_are_bounded_by_the_timeout() {
    let (w, _) = app();
    let app = router_with(
        w.ext.clone(),
        RouterOptions { request_timeout: Duration::from_millis(100), ..RouterOptions::default() },
    );
    // A binding API call slower than the timeout.
    w.binder.add_pod("db", "pg-0", "uid-db-pg-0", None);
    w.binder.set_delay(Duration::from_secs(1));
    let body = serde_json::json!({"PodName": "pg-0", "PodNamespace": "db", "PodUID": "uid-db-pg-0", "Node": "a1"});
    let (status, _) = send(&app, post("/scheduler/bind", body.to_string())).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test]
async fn debug_decisions_as_json_and_text() {
    let (w, app) = app();
    let _ = w.filter(&member(0).build(), &["a1"]).await;
    let _ = w.filter(&member(1).build(), &ALL).await;
    let (status, body) = send(&app, get("/debug/decisions?pod=db/pg-0&limit=5")).await;
    assert_eq!(status, StatusCode::OK);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 1);
    assert_eq!(v[0]["verb"], "filter");
    assert_eq!(v[0]["group"], "db/pg");
    let (status, body) = send(&app, get("/debug/decisions?format=text")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("filter db/pg-1") && body.contains("filter db/pg-0"), "{body}");
    let (status, _) = send(&app, get("/debug/decisions?format=xml")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = send(&app, get("/debug/decisions?limit=many")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

/// A wrong content type is refused before a byte of the body is read (a client cannot make the
/// extender buffer 32 MiB it will refuse anyway).
#[tokio::test]
async fn wrong_content_type_is_415_before_the_body_is_read() {
    let (_w, app) = app();
    let read = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = read.clone();
    let body = futures::stream::once(async move {
        flag.store(true, std::sync::atomic::Ordering::SeqCst);
        Ok::<_, std::io::Error>(bytes::Bytes::from_static(b"{}"))
    });
    let req = Request::builder()
        .method(Method::POST)
        .uri("/scheduler/filter")
        .header(header::CONTENT_TYPE, "text/plain")
        .body(Body::from_stream(body))
        .unwrap();
    let (status, body) = send(&app, req).await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["code"], 415, "{body}");
    assert!(v["message"].as_str().unwrap().contains("application/json"), "{body}");
    assert!(!read.load(std::sync::atomic::Ordering::SeqCst), "the body was read before the content type was checked");
}

/// Requests beyond the in-flight cap (256 by default) are refused at once with a JSON 503
/// instead of queueing behind slow ones; the probes stay answerable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_beyond_the_in_flight_cap_are_shed_with_a_json_503() {
    let (w, app) = app();
    w.binder.set_delay(Duration::from_secs(30));
    let bind = |i: usize| {
        let body =
            json!({"PodName": format!("pg-{i}"), "PodNamespace": "db", "PodUID": format!("uid-{i}"), "Node": "a1"});
        post("/scheduler/bind", body.to_string())
    };
    let slow: Vec<_> = (0..256).map(|i| tokio::spawn(app.clone().oneshot(bind(i)))).collect();
    // Wait until all of them are inside the (slow) binder.
    tokio::time::timeout(Duration::from_secs(30), async {
        while w.binder.calls().len() < 256 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("256 binds in flight");
    let refused = tokio::time::timeout(Duration::from_secs(2), send(&app, bind(256))).await;
    let (status, body) = refused.expect("the request beyond the cap was not answered within 2 s (it queued)");
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["code"], 503, "{body}");
    assert_eq!(send(&app, get("/healthz")).await.0, StatusCode::OK);
    for task in slow {
        task.abort();
    }
}

/// A nameless candidate is a protocol error the edge names by position (400), for both verbs
/// that take candidates; a node named twice is answered once.
#[tokio::test]
async fn nameless_candidates_are_400s_naming_the_position_and_duplicates_are_answered_once() {
    let (_w, app) = app();
    let mut args: Value = serde_json::from_str(&fixture("handwritten-filter-args-node-names")).unwrap();
    let first = args["NodeNames"][0].as_str().unwrap().to_owned();
    args["NodeNames"] = json!([first, ""]);
    for verb in ["filter", "prioritize"] {
        let (status, body) = send(&app, post(&format!("/scheduler/{verb}"), args.to_string())).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{verb}: {body}");
        assert!(body.contains("NodeNames[1] is empty"), "{verb}: {body}");
    }
    args["NodeNames"] = json!([first, first]);
    let (status, body) = send(&app, post("/scheduler/prioritize", args.to_string())).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let scores: Vec<Value> = serde_json::from_str(&body).unwrap();
    assert_eq!(scores.len(), 1, "{body}");
}
