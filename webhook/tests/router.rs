//! The HTTP edge, in process (`oneshot`): the contract on good input and a precise 4xx/5xx with
//! a JSON body on every kind of bad input.

#![allow(clippy::unwrap_used)] // helpers outside #[test] functions

mod common;

use std::{
    io,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    task::Poll,
    time::Duration,
};

use arc_swap::ArcSwap;
use axum::{Router, body::Body};
use base64::{Engine as _, engine::general_purpose::STANDARD};
use bytes::Bytes;
use http::{Method, Request, StatusCode, header};
use http_body_util::BodyExt as _;
use prometheus_client::{encoding::text::encode, registry::Registry};
use serde_json::{Value, json};
use stowage_webhook::{AdmissionMetrics, Limits, WebhookState, router};
use tokio::sync::oneshot;
use tower::ServiceExt as _;

const CONFIG: &str = "schedulerName: stowage\nprofiles: {pg: {zoneSpread: required, nodeSpread: required}}";
const FIXTURE: &str = include_str!("fixtures/statefulset-pod-create.json");

fn state_with(limits: Limits, metrics: AdmissionMetrics) -> Arc<WebhookState> {
    let config = Arc::new(ArcSwap::from_pointee(common::config(CONFIG)));
    Arc::new(WebhookState::new(config, metrics).with_limits(limits).with_skip_namespaces(vec!["stowage-system".into()]))
}

fn app() -> Router {
    router(state_with(Limits::default(), AdmissionMetrics::new()))
}

fn review_body() -> Vec<u8> {
    serde_json::to_vec(&json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "abc-123",
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": "db",
            "operation": "CREATE",
            "object": {"metadata": {"name": "p", "namespace": "db", "annotations": {"stowage.io/profile": "pg", "stowage.io/group": "g"}},
                       "spec": {"containers": [{"name": "db"}], "schedulerName": "default-scheduler"}}
        }
    }))
    .unwrap()
}

fn post() -> http::request::Builder {
    Request::builder().method(Method::POST).uri("/mutate").header(header::CONTENT_TYPE, "application/json")
}

fn json_request(body: Vec<u8>) -> Request<Body> {
    post().header(header::CONTENT_LENGTH, body.len()).body(Body::from(body)).unwrap()
}

async fn send(app: Router, request: Request<Body>) -> (StatusCode, http::HeaderMap, Value) {
    let response = app.oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let body = if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes).unwrap_or(Value::Null) };
    (status, headers, body)
}

/// Asserts a JSON error body `{"code": <status>, "message": ...}` and returns the message.
fn error_message(status: StatusCode, headers: &http::HeaderMap, body: &Value) -> String {
    assert_eq!(headers.get(header::CONTENT_TYPE).unwrap(), "application/json");
    assert_eq!(body["code"], status.as_u16(), "{body}");
    body["message"].as_str().expect("a message").to_owned()
}

/// A body that records whether anyone read it.
fn watched_body(read: Arc<AtomicBool>) -> Body {
    Body::from_stream(futures::stream::once(async move {
        read.store(true, Ordering::SeqCst);
        Ok::<_, io::Error>(Bytes::from(review_body()))
    }))
}

/// A body that signals when first read and then never delivers anything.
fn stalled_body(polled: oneshot::Sender<()>) -> Body {
    let mut polled = Some(polled);
    Body::from_stream(futures::stream::poll_fn(move |_| -> Poll<Option<Result<Bytes, io::Error>>> {
        if let Some(tx) = polled.take() {
            let _ = tx.send(());
        }
        Poll::Pending
    }))
}

#[tokio::test]
async fn a_review_is_answered_with_the_uid_and_a_base64_patch() {
    for content_type in ["application/json", "application/json; charset=utf-8", "Application/JSON;charset=UTF-8"] {
        let request = Request::builder()
            .method(Method::POST)
            .uri("/mutate")
            .header(header::CONTENT_TYPE, content_type)
            .body(Body::from(review_body()))
            .unwrap();
        let (status, headers, body) = send(app(), request).await;
        assert_eq!(status, StatusCode::OK, "{content_type}: {body}");
        assert_eq!(headers.get(header::CONTENT_TYPE).unwrap(), "application/json");
        assert_eq!(
            (body["apiVersion"].as_str(), body["kind"].as_str()),
            (Some("admission.k8s.io/v1"), Some("AdmissionReview"))
        );
        let response = &body["response"];
        assert_eq!(response["uid"], "abc-123");
        assert_eq!(response["allowed"], true);
        assert_eq!(response["patchType"], "JSONPatch");
        let patch: Value =
            serde_json::from_slice(&STANDARD.decode(response["patch"].as_str().unwrap()).unwrap()).unwrap();
        assert!(
            patch.as_array().unwrap().iter().any(|op| op["path"] == "/spec/schedulerName" && op["value"] == "stowage")
        );
        assert!(response["warnings"].as_array().unwrap().iter().any(|w| w == "set schedulerName stowage"));
    }
}

#[tokio::test]
async fn the_fixture_round_trips_through_the_router() {
    let (status, _, body) = send(app(), json_request(FIXTURE.as_bytes().to_vec())).await;
    assert_eq!(status, StatusCode::OK);
    // Profile "postgres" is not in this config: a precise denial, not an error.
    assert_eq!(body["response"]["allowed"], false);
    assert_eq!(body["response"]["uid"], "7c5b3a8e-2f4d-4e61-9b1a-0d3c6e9f8a21");
    assert_eq!(body["response"]["status"]["code"], 400);
    assert!(body["response"]["status"]["message"].as_str().unwrap().contains("\"postgres\" names no profile"));
    assert!(body["response"].get("patch").is_none() && body["response"].get("patchType").is_none());
}

#[tokio::test]
async fn a_review_without_changes_has_neither_patch_nor_patch_type() {
    let mut review: Value = serde_json::from_slice(&review_body()).unwrap();
    review["request"]["object"]["metadata"]["annotations"] = json!({});
    let (status, _, body) = send(app(), json_request(serde_json::to_vec(&review).unwrap())).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["response"], json!({"uid": "abc-123", "allowed": true}));
}

#[tokio::test]
async fn wrong_methods_get_405_with_allow() {
    for method in [Method::GET, Method::PUT, Method::DELETE] {
        let request = Request::builder().method(method.clone()).uri("/mutate").body(Body::empty()).unwrap();
        let (status, headers, body) = send(app(), request).await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{method}");
        assert_eq!(headers.get(header::ALLOW).unwrap(), "POST");
        assert!(error_message(status, &headers, &body).contains(method.as_str()));
    }
}

#[tokio::test]
async fn wrong_content_type_is_415_before_the_body_is_read() {
    for content_type in [Some("text/plain"), Some("application/jsonx"), Some("application/yaml"), None] {
        let read = Arc::new(AtomicBool::new(false));
        let mut builder = Request::builder().method(Method::POST).uri("/mutate");
        if let Some(ct) = content_type {
            builder = builder.header(header::CONTENT_TYPE, ct);
        }
        let (status, headers, body) = send(app(), builder.body(watched_body(read.clone())).unwrap()).await;
        assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{content_type:?}");
        assert!(error_message(status, &headers, &body).starts_with("Content-Type must be application/json"));
        assert!(!read.load(Ordering::SeqCst), "the body must not be read");
    }
}

#[tokio::test]
async fn declared_oversized_bodies_are_413_before_buffering() {
    let read = Arc::new(AtomicBool::new(false));
    let request = post().header(header::CONTENT_LENGTH, 8 * 1024 * 1024).body(watched_body(read.clone())).unwrap();
    let (status, headers, body) = send(app(), request).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(error_message(status, &headers, &body), "request body is larger than the limit of 7340032 bytes");
    assert!(!read.load(Ordering::SeqCst));
}

#[tokio::test]
async fn a_chunked_body_growing_past_the_limit_is_413_as_soon_as_it_crosses() {
    const CHUNK: usize = 64 * 1024;
    let limits = Limits { max_body_bytes: 1024 * 1024, ..Limits::default() };
    let chunks = Arc::new(AtomicUsize::new(0));
    let counter = chunks.clone();
    // An endless body: answering at all proves it was not buffered to the end.
    let endless = futures::stream::repeat_with(move || {
        counter.fetch_add(1, Ordering::SeqCst);
        Ok::<_, io::Error>(Bytes::from(vec![b' '; CHUNK]))
    });
    let request = post().body(Body::from_stream(endless)).unwrap();
    let (status, headers, body) = send(router(state_with(limits, AdmissionMetrics::new())), request).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    error_message(status, &headers, &body);
    assert_eq!(
        chunks.load(Ordering::SeqCst),
        limits.max_body_bytes / CHUNK + 1,
        "stopped at the first chunk past the limit"
    );
}

#[tokio::test]
async fn a_large_but_legitimate_review_is_accepted() {
    let mut review: Value = serde_json::from_slice(&review_body()).unwrap();
    review["request"]["object"]["metadata"]["annotations"]["big"] = json!("x".repeat(2_900_000));
    let (status, _, body) = send(app(), json_request(serde_json::to_vec(&review).unwrap())).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["response"]["allowed"], true);
}

#[tokio::test]
async fn malformed_reviews_are_400_naming_the_problem() {
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (Vec::new(), "request body is empty"),
        (b"{\"apiVersion\": \"admission.k8s.io/v1\",\n \"kind\": }".to_vec(), "at line 2 column"),
        (b"[1, 2]".to_vec(), "is not a valid AdmissionReview"),
        (
            br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}"#.to_vec(),
            "AdmissionReview has no request",
        ),
        (br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":null}"#.to_vec(), "has no request"),
        (
            br#"{"apiVersion":"admission.k8s.io/v1beta1","kind":"AdmissionReview","request":{}}"#.to_vec(),
            "got apiVersion \"admission.k8s.io/v1beta1\" and kind \"AdmissionReview\"; expected apiVersion \"admission.k8s.io/v1\"",
        ),
        (
            br#"{"apiVersion":"admission.k8s.io/v1","kind":"ConversionReview","request":{}}"#.to_vec(),
            "kind \"ConversionReview\"",
        ),
        (br#"{}"#.to_vec(), "got apiVersion \"\" and kind \"\""),
        (
            br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u"}}"#.to_vec(),
            "missing field `operation`",
        ),
    ];
    for (bytes, expected) in cases {
        let shown = String::from_utf8_lossy(&bytes).into_owned();
        let (status, headers, body) = send(app(), json_request(bytes)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{shown}");
        let message = error_message(status, &headers, &body);
        assert!(message.contains(expected), "{shown}: {message}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_stalled_body_times_out_with_408() {
    let limits = Limits { timeout: Duration::from_millis(100), ..Limits::default() };
    let (tx, _rx) = oneshot::channel();
    let request = post().body(stalled_body(tx)).unwrap();
    let mut registry = Registry::default();
    let metrics = AdmissionMetrics::register(&mut registry);
    let (status, headers, body) = send(router(state_with(limits, metrics)), request).await;
    assert_eq!(status, StatusCode::REQUEST_TIMEOUT);
    assert!(error_message(status, &headers, &body).contains("100ms"));
    let mut text = String::new();
    encode(&mut text, &registry).unwrap();
    assert!(text.contains("stowage_admission_errors_total{reason=\"timeout\"} 1"), "{text}");
}

/// A review of a StatefulSet member, so deciding asks the member source.
fn member_review_body() -> Vec<u8> {
    let mut review: Value = serde_json::from_slice(&review_body()).unwrap();
    review["request"]["object"]["metadata"]["ownerReferences"] =
        json!([{"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "pg", "uid": "u", "controller": true}]);
    serde_json::to_vec(&review).unwrap()
}

/// Issue 12: 600 slow clients each sending headers and one body byte took every review slot,
/// and the next real review got 503. A slot is now taken only once the body is in.
#[tokio::test]
async fn a_trickling_body_holds_no_review_slot() {
    let limits = Limits { max_in_flight: 1, ..Limits::default() };
    let app = router(state_with(limits, AdmissionMetrics::new()));
    let (tx, polled) = oneshot::channel();
    let slow = tokio::spawn(app.clone().oneshot(post().body(stalled_body(tx)).unwrap()));
    polled.await.unwrap(); // the slow client's body is being read
    let (status, _, body) = send(app.clone(), json_request(review_body())).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // The slow client is cut off by the body timeout (1s, shorter than the review timeout).
    assert_eq!(slow.await.unwrap().unwrap().status(), StatusCode::REQUEST_TIMEOUT);
}

/// A webhook whose StatefulSet member lookup blocks until released, so the first review of a
/// StatefulSet pod holds what it took (a slot, bytes of the budget) while a test looks. Returns
/// the router, what says the lookup was entered, and what releases it.
fn gated_app(
    limits: Limits,
    metrics: AdmissionMetrics,
) -> (Router, std::sync::mpsc::Receiver<()>, std::sync::mpsc::Sender<()>) {
    let (entered_tx, entered_rx) = std::sync::mpsc::channel::<()>();
    let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
    let gate = std::sync::Mutex::new((entered_tx, release_rx));
    let members = move |_: &str, _: &str| {
        let gate = gate.lock().unwrap();
        let _ = gate.0.send(());
        let _ = gate.1.recv();
        Some(3)
    };
    let config = Arc::new(ArcSwap::from_pointee(common::config(CONFIG)));
    let state = WebhookState::new(config, metrics).with_limits(limits).with_members(Arc::new(members));
    (router(Arc::new(state)), entered_rx, release_tx)
}

// Two workers: a small review is decided on the worker that read it, and the gated decision
// below holds its worker until released.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overload_is_shed_with_503() {
    let limits = Limits { max_in_flight: 1, ..Limits::default() };
    let mut registry = Registry::default();
    // The first decision blocks until told, so it holds the only slot.
    let (app, entered_rx, release_tx) = gated_app(limits, AdmissionMetrics::register(&mut registry));
    let busy = tokio::spawn(app.clone().oneshot(json_request(member_review_body())));
    tokio::task::spawn_blocking(move || entered_rx.recv().unwrap()).await.unwrap();
    let (status, headers, body) = send(app.clone(), json_request(review_body())).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    error_message(status, &headers, &body);
    let mut text = String::new();
    encode(&mut text, &registry).unwrap();
    assert!(text.contains("stowage_admission_errors_total{reason=\"overloaded\"} 1"), "{text}");
    release_tx.send(()).unwrap();
    assert_eq!(busy.await.unwrap().unwrap().status(), StatusCode::OK);
    // The slot is free again.
    let (status, _, _) = send(app, json_request(review_body())).await;
    assert_eq!(status, StatusCode::OK);
}

/// `review` with an annotation of `bytes` bytes: a review above the inline size.
fn padded(review: &[u8], bytes: usize) -> Vec<u8> {
    let mut review: Value = serde_json::from_slice(review).unwrap();
    review["request"]["object"]["metadata"]["annotations"]["example.com/padding"] = json!("x".repeat(bytes));
    serde_json::to_vec(&review).unwrap()
}

// Large reviews are bounded by their bytes, not their count: decoding costs memory in
// proportion to size, and four 6.9 MB reviews at once took 532 MiB of a 256 MiB container.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_reviews_beyond_the_byte_budget_are_shed_and_small_ones_still_pass() {
    let limits = Limits { max_large_bytes_in_flight: 150 * 1024, ..Limits::default() };
    let (app, entered_rx, release_tx) = gated_app(limits, AdmissionMetrics::new());
    // A 100 KiB review held in its decision keeps 100 KiB of the 150 KiB budget.
    let busy = tokio::spawn(app.clone().oneshot(json_request(padded(&member_review_body(), 100 * 1024))));
    tokio::task::spawn_blocking(move || entered_rx.recv().unwrap()).await.unwrap();

    let (status, headers, body) = send(app.clone(), json_request(padded(&review_body(), 100 * 1024))).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "a second large review fit: {body}");
    error_message(status, &headers, &body);
    let (status, _, body) = send(app.clone(), json_request(review_body())).await;
    assert_eq!(status, StatusCode::OK, "a small review was refused: {body}");

    release_tx.send(()).unwrap();
    assert_eq!(busy.await.unwrap().unwrap().status(), StatusCode::OK);
    let (status, _, body) = send(app, json_request(padded(&review_body(), 100 * 1024))).await;
    assert_eq!(status, StatusCode::OK, "the budget was not given back: {body}");
}

#[tokio::test]
async fn probes() {
    let state = state_with(Limits::default(), AdmissionMetrics::new());
    let get = |uri: &str| Request::builder().uri(uri).body(Body::empty()).unwrap();
    assert_eq!(send(router(state.clone()), get("/healthz")).await.0, StatusCode::OK);
    let (status, headers, body) = send(router(state.clone()), get("/readyz")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(error_message(status, &headers, &body), "not ready");
    state.set_ready(true);
    assert_eq!(send(router(state.clone()), get("/readyz")).await.0, StatusCode::OK);
    state.set_ready(false);
    assert_eq!(send(router(state), get("/readyz")).await.0, StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test]
async fn config_changes_apply_to_the_next_review() {
    let state = state_with(Limits::default(), AdmissionMetrics::new());
    let (_, _, body) = send(router(state.clone()), json_request(review_body())).await;
    assert!(body["response"]["warnings"].to_string().contains("set schedulerName stowage"));
    state.config().store(Arc::new(common::config("profiles: {pg: {zoneSpread: required, nodeSpread: required}}")));
    let (_, _, body) = send(router(state), json_request(review_body())).await;
    assert!(!body["response"]["warnings"].to_string().contains("schedulerName"), "{body}");
}

#[tokio::test]
async fn decisions_and_errors_are_counted() {
    let mut registry = Registry::default();
    let metrics = AdmissionMetrics::register(&mut registry);
    let app = router(state_with(Limits::default(), metrics));
    send(app.clone(), json_request(review_body())).await;
    let mut dry: Value = serde_json::from_slice(&review_body()).unwrap();
    dry["request"]["dryRun"] = json!(true);
    send(app.clone(), json_request(serde_json::to_vec(&dry).unwrap())).await;
    send(app.clone(), json_request(b"nope".to_vec())).await;
    send(app.clone(), Request::builder().method(Method::POST).uri("/mutate").body(Body::empty()).unwrap()).await;
    send(app, Request::builder().uri("/mutate").body(Body::empty()).unwrap()).await;
    let mut text = String::new();
    encode(&mut text, &registry).unwrap();
    for line in [
        "stowage_admission_reviews_total{outcome=\"mutated\",dry_run=\"false\"} 1",
        "stowage_admission_reviews_total{outcome=\"mutated\",dry_run=\"true\"} 1",
        "stowage_admission_errors_total{reason=\"bad_json\"} 1",
        "stowage_admission_errors_total{reason=\"content_type\"} 1",
        "stowage_admission_errors_total{reason=\"method\"} 1",
        "stowage_admission_duration_seconds_count{outcome=\"mutated\"} 2",
    ] {
        assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
    }
}

/// A small review is decided on the I/O thread that read it, not queued for the blocking pool:
/// the hand-off costs two thread wake-ups per review, which on a loaded node added
/// milliseconds to every pod create. Here the only blocking thread is busy, so a review sent
/// to the pool would wait out the router's timeout (408).
#[test]
fn a_small_review_does_not_wait_for_the_blocking_pool() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .max_blocking_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let (release, held) = std::sync::mpsc::channel::<()>();
    let (busy, started) = std::sync::mpsc::channel::<()>();
    let blocker = runtime.spawn_blocking(move || {
        busy.send(()).unwrap();
        let _ = held.recv_timeout(Duration::from_secs(30));
    });
    started.recv().unwrap();
    let body = review_body();
    assert!(body.len() <= stowage_webhook::INLINE_DECISION_MAX_BYTES);
    let limits = Limits { timeout: Duration::from_secs(1), ..Limits::default() };
    let app = router(state_with(limits, AdmissionMetrics::new()));
    let (status, headers, reply) = runtime.block_on(send(app, json_request(body)));
    release.send(()).unwrap();
    runtime.block_on(blocker).unwrap();
    assert_eq!(status, StatusCode::OK, "{}", error_message(status, &headers, &reply));
    assert_eq!(reply["response"]["allowed"], true);
}
