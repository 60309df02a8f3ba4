//! Answers stay small whatever the review carries (security review, issue 12): a denial names a
//! few offending keys and counts the rest, echoed values are cut short, and HTTP errors do the
//! same. Integer-CPU rounding never yields a value that is not whole cores.

#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::{fmt::Write as _, sync::Arc, time::Duration};

use arc_swap::ArcSwap;
use axum::body::Body;
use http::{Method, Request, StatusCode, header};
use http_body_util::BodyExt as _;
use serde_json::{Value, json};
use stowage_webhook::{AdmissionMetrics, AdmissionRequest, AdmitContext, Limits, WebhookState, admit, router};
use tower::ServiceExt as _;

const CONFIG: &str = "profiles: {pg: {integerCPU: true, qos: guaranteed}}";
/// The bound the review asked for: a denial fits well inside it.
const SMALL: usize = 16 * 1024;

fn review(object: &Value) -> Value {
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "u-1",
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": "db",
            "operation": "CREATE",
            "object": object,
        }
    })
}

/// A review body (about 6.5 MB, under the 7 MiB limit) whose pod carries 300,000 unknown
/// `stowage.io/` annotation keys. Mutating admission runs before validation, so the apiserver's
/// 256 KiB annotation limit does not protect the webhook.
fn many_unknown_keys() -> Vec<u8> {
    let mut annotations = String::with_capacity(7 << 20);
    annotations.push_str(r#"{"stowage.io/profile":"pg""#);
    for i in 0..300_000u32 {
        let _ = write!(annotations, r#","stowage.io/{i:x}":"""#);
    }
    annotations.push('}');
    let object = format!(
        r#"{{"metadata":{{"name":"p","namespace":"db","annotations":{annotations}}},"spec":{{"containers":[{{"name":"db"}}]}}}}"#
    );
    let review = review(&json!("OBJECT")).to_string();
    review.replace(r#""OBJECT""#, &object).into_bytes()
}

async fn post(body: Vec<u8>) -> (StatusCode, Vec<u8>) {
    let config = Arc::new(ArcSwap::from_pointee(common::config(CONFIG)));
    // The deadline is enforced on the decision now (it runs off the I/O threads), and an
    // unoptimised build needs seconds for 300,000 keys: these tests are about sizes, not time.
    let limits =
        Limits { timeout: Duration::from_secs(120), body_timeout: Duration::from_secs(120), ..Limits::default() };
    let app = router(Arc::new(WebhookState::new(config, AdmissionMetrics::new()).with_limits(limits)));
    let request = Request::builder()
        .method(Method::POST)
        .uri("/mutate")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body))
        .unwrap();
    let response = app.oneshot(request).await.unwrap();
    let status = response.status();
    (status, response.into_body().collect().await.unwrap().to_bytes().to_vec())
}

fn denial_message(request: &AdmissionRequest) -> String {
    let cfg = common::config(CONFIG);
    let response = admit(request, &AdmitContext::new(&cfg));
    assert!(!response.allowed);
    response.status.unwrap().message
}

#[test]
fn a_denial_for_300000_unknown_keys_is_small() {
    let body = many_unknown_keys();
    assert!(body.len() < 7 * 1024 * 1024, "{} bytes", body.len());
    let request = stowage_webhook::decode_request(&body).unwrap();
    let message = denial_message(&request);
    assert!(message.len() < 2048, "{} bytes: {}", message.len(), &message[..message.len().min(600)]);
    assert!(message.contains("and 299995 more"), "{message}");
    let wire = serde_json::to_vec(&stowage_webhook::AdmissionReview::from_response(admit(
        &request,
        &AdmitContext::new(&common::config(CONFIG)),
    )))
    .unwrap();
    assert!(wire.len() < SMALL, "{} bytes on the wire", wire.len());
}

#[tokio::test]
async fn the_router_answers_300000_unknown_keys_with_a_small_denial() {
    let (status, body) = post(many_unknown_keys()).await;
    let text = String::from_utf8_lossy(&body[..body.len().min(600)]).into_owned();
    assert_eq!(status, StatusCode::OK, "{text}");
    assert!(body.len() < SMALL, "{} bytes: {text}", body.len());
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["response"]["allowed"], false, "{text}");
    assert!(v["response"]["status"]["message"].as_str().unwrap().contains("more"), "{text}");
}

#[test]
fn denials_that_quote_the_pod_are_cut_short() {
    let long = "z".repeat(1 << 20);
    // A container quantity that is no quantity, with a huge name and value.
    let quantity = json!({"metadata": {"name": "p", "annotations": {"stowage.io/profile": "pg"}},
        "spec": {"containers": [{"name": long, "resources": {"requests": {"cpu": long}}}]}});
    // A spec serde refuses, quoting the offending string.
    let spec = json!({"metadata": {"name": "p", "annotations": {"stowage.io/profile": "pg"}},
        "spec": {"containers": long}});
    // A group label that conflicts with the policy.
    let label = json!({"metadata": {"name": "p", "labels": {"stowage.io/group": long},
        "annotations": {"stowage.io/profile": "pg", "stowage.io/group": "g"}},
        "spec": {"containers": [{"name": "db"}]}});
    for object in [quantity, spec, label] {
        let request = AdmissionRequest::create_pod(object, "db");
        let message = denial_message(&request);
        assert!(message.len() < 2048, "{} bytes: {}", message.len(), &message[..600]);
        assert!(message.contains('…'), "{message}");
    }
}

#[tokio::test]
async fn http_errors_that_quote_the_request_are_cut_short() {
    let long = "v".repeat(6 << 20);
    let body = json!({"apiVersion": long, "kind": "AdmissionReview", "request": {}}).to_string().into_bytes();
    let (status, body) = post(body).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body.len() < SMALL, "{} bytes", body.len());
    let body = format!(
        r#"{{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {{"uid": "u", "operation": "CREATE", "dryRun": "{long}"}}}}"#
    );
    let (status, body) = post(body.into_bytes()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body.len() < SMALL, "{} bytes", body.len());
}

#[test]
fn integer_cpu_never_yields_a_fraction_of_a_core() {
    // 9223372036854775.5 cores is 9223372036854775500m, which fits; rounding it up to whole
    // cores does not.
    for cpu in ["9223372036854775.5", "9223372036854775001m"] {
        let pod = json!({"metadata": {"name": "p", "annotations": {"stowage.io/profile": "pg"}},
            "spec": {"containers": [{"name": "db", "resources": {"requests": {"cpu": cpu, "memory": "1Gi"}}}]}});
        let cfg = common::config(CONFIG);
        let response = admit(&AdmissionRequest::create_pod(pod.clone(), "db"), &AdmitContext::new(&cfg));
        // Before, the patch set the cpu to 9223372036854775807m: saturated, not whole cores.
        if let Some(patch) = &response.patch {
            let ops = serde_json::to_string(patch).unwrap();
            assert!(!ops.contains("9223372036854775807m"), "{cpu}: {ops}");
        }
        assert!(!response.allowed, "{cpu}: the value cannot be rounded to whole cores, so it is refused");
        let message = response.status.unwrap().message;
        assert!(message.contains("whole cores") && message.contains(cpu), "{message}");
    }
}
