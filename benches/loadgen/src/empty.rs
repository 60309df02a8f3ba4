//! Baseline servers: the same accept loop, TLS and HTTP stack as stowage
//! ([`stowage_edge::serve_tls`] / [`stowage_edge::serve_plain`] + axum), with handlers that read
//! the body and return a fixed minimal answer. Comparing stowage with these isolates the cost of
//! stowage's own handlers from the cost of the transport.

use std::{future::Future, path::Path, sync::Arc};

use axum::{Router, body::Bytes, http::header, response::IntoResponse, routing::post};
use stowage_certs::{CertPaths, ReloadingCert, server_config};
use stowage_edge::{ServeOptions, serve_plain, serve_tls};
use tokio::net::TcpListener;

/// The fixed answer of the empty webhook: allowed, no patch.
pub const EMPTY_REVIEW: &str =
    r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":{"uid":"","allowed":true}}"#;
/// The fixed answer of the empty filter: no node names, no error.
pub const EMPTY_FILTER: &str = r#"{"NodeNames":[],"FailedNodes":{},"Error":""}"#;
/// The fixed answer of the empty prioritize: no scores.
pub const EMPTY_PRIORITIZE: &str = "[]";

fn json(body: &'static str) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], body)
}

/// `POST /mutate` answering [`EMPTY_REVIEW`].
pub fn webhook_router() -> Router {
    Router::new().route("/mutate", post(|_body: Bytes| async { json(EMPTY_REVIEW) }))
}

/// The review's uid; the object and everything else are skipped unread.
#[derive(serde::Deserialize)]
struct ReviewUid {
    request: ReviewRequestUid,
}

#[derive(serde::Deserialize)]
struct ReviewRequestUid {
    uid: String,
}

/// The fixed JSONPatch of [`one_operation_answer`], base64:
/// `[{"op":"add","path":"/spec/schedulerName","value":"stowage"}]`.
const ONE_OPERATION_PATCH: &str =
    "W3sib3AiOiJhZGQiLCJwYXRoIjoiL3NwZWMvc2NoZWR1bGVyTmFtZSIsInZhbHVlIjoic3Rvd2FnZSJ9XQ==";

/// A floor answer with one patch operation that changes every pod, so the apiserver takes its
/// whole patch path (encode the pod, apply, decode, compare, default, run the in-tree mutating
/// plugins again) for the least a patch can change.
#[must_use]
pub fn one_operation_answer() -> serde_json::Map<String, serde_json::Value> {
    let mut answer = serde_json::Map::new();
    answer.insert("patchType".to_owned(), "JSONPatch".into());
    answer.insert("patch".to_owned(), ONE_OPERATION_PATCH.into());
    answer
}

/// The least any webhook the apiserver accepts must do: decode the review far enough to echo
/// its uid, and answer allowed with the fixed fields of `answer` (none: no patch; a patch,
/// warnings, audit annotations: those, always). Next to stowage through a real apiserver this
/// is the floor of a mutating webhook: what the apiserver's webhook path costs whatever the
/// webhook decides.
pub fn floor_webhook_router(answer: serde_json::Map<String, serde_json::Value>) -> Router {
    let answer = Arc::new(answer);
    Router::new().route(
        "/mutate",
        post(move |body: Bytes| {
            let answer = Arc::clone(&answer);
            async move { floor_answer(&body, &answer) }
        }),
    )
}

/// [`floor_webhook_router`]'s answer to one review body: 400 when it is not a review.
fn floor_answer(body: &[u8], answer: &serde_json::Map<String, serde_json::Value>) -> axum::response::Response {
    match floor_review(body, answer) {
        Ok(review) => axum::Json(review).into_response(),
        Err(e) => (axum::http::StatusCode::BAD_REQUEST, e.to_string()).into_response(),
    }
}

/// The AdmissionReview answering `body`: its uid, allowed, and `answer`'s fields.
fn floor_review(
    body: &[u8],
    answer: &serde_json::Map<String, serde_json::Value>,
) -> Result<serde_json::Value, serde_json::Error> {
    let uid = serde_json::from_slice::<ReviewUid>(body)?.request.uid;
    let mut response = answer.clone();
    response.insert("uid".to_owned(), uid.into());
    response.insert("allowed".to_owned(), true.into());
    Ok(serde_json::json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response}))
}

/// `POST /scheduler/filter` and `/scheduler/prioritize` answering [`EMPTY_FILTER`] and
/// [`EMPTY_PRIORITIZE`].
pub fn extender_router() -> Router {
    empty_prioritize().route("/scheduler/filter", post(|_body: Bytes| async { json(EMPTY_FILTER) }))
}

/// `POST /scheduler/prioritize` answering [`EMPTY_PRIORITIZE`].
fn empty_prioritize() -> Router {
    Router::new().route("/scheduler/prioritize", post(|_body: Bytes| async { json(EMPTY_PRIORITIZE) }))
}

/// The candidate names of an extender request; the pod and everything else are skipped unread.
#[derive(serde::Deserialize)]
struct Candidates {
    #[serde(rename = "NodeNames", default)]
    node_names: Option<Vec<String>>,
}

/// A pass-through extender for a real kube-scheduler (`nodeCacheCapable: true`): filter keeps
/// every candidate, prioritize scores nothing. It costs what any filter + prioritize extender
/// costs on the wire (the scheduler's encode, HTTP, decoding the names, encoding them back)
/// and nothing more, so it is the protocol's floor next to stowage.
pub fn passthrough_extender_router() -> Router {
    empty_prioritize().route(
        "/scheduler/filter",
        post(|body: Bytes| async move {
            match serde_json::from_slice::<Candidates>(&body) {
                Ok(c) => axum::Json(serde_json::json!({
                    "NodeNames": c.node_names.unwrap_or_default(), "FailedNodes": {}, "Error": ""
                }))
                .into_response(),
                Err(e) => (axum::http::StatusCode::BAD_REQUEST, e.to_string()).into_response(),
            }
        }),
    )
}

/// Serves [`webhook_router`] over TLS with the `tls.crt` / `tls.key` pair in `tls_dir`.
///
/// # Errors
/// When the certificate cannot be loaded.
pub async fn serve_webhook(
    listener: TcpListener,
    tls_dir: &Path,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    serve_tls_router(listener, tls_dir, webhook_router(), shutdown).await
}

/// Serves [`floor_webhook_router`] over TLS with the `tls.crt` / `tls.key` pair in `tls_dir`.
///
/// # Errors
/// When the certificate cannot be loaded.
pub async fn serve_floor_webhook(
    listener: TcpListener,
    tls_dir: &Path,
    answer: serde_json::Map<String, serde_json::Value>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    serve_tls_router(listener, tls_dir, floor_webhook_router(answer), shutdown).await
}

/// `app` over TLS on stowage's accept loop, with the certificate pair in `tls_dir`.
async fn serve_tls_router(
    listener: TcpListener,
    tls_dir: &Path,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let cert = Arc::new(ReloadingCert::load(CertPaths::in_dir(tls_dir))?);
    let config = server_config(cert, None)?;
    serve_tls(listener, config, app, ServeOptions::default(), shutdown).await?;
    Ok(())
}

/// Serves [`extender_router`] over plain HTTP.
///
/// # Errors
/// As [`serve_plain`].
pub async fn serve_extender(
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    serve_plain(listener, extender_router(), ServeOptions::default(), shutdown).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{review, uid_for};

    #[test]
    fn the_floor_echoes_the_uid_and_answers_its_fixed_fields() {
        let pod = serde_json::json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "n"}});
        let body = serde_json::to_vec(&review(&pod, &uid_for(7))).expect("encodes");

        let allowed = floor_review(&body, &serde_json::Map::new()).expect("a review");
        assert_eq!(allowed["response"], serde_json::json!({"uid": uid_for(7), "allowed": true}));

        let patched = floor_review(&body, &one_operation_answer()).expect("a review");
        assert_eq!(patched["response"]["uid"], uid_for(7));
        assert_eq!(patched["response"]["patchType"], "JSONPatch");
        let patch = patched["response"]["patch"].as_str().expect("a patch");
        let patch = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, patch).expect("base64");
        assert_eq!(
            serde_json::from_slice::<serde_json::Value>(&patch).expect("JSON"),
            serde_json::json!([{"op": "add", "path": "/spec/schedulerName", "value": "stowage"}])
        );
    }

    #[test]
    fn the_floor_refuses_what_is_not_a_review() {
        assert!(floor_review(br#"{"request": {}}"#, &serde_json::Map::new()).is_err());
        assert!(floor_review(b"not json", &serde_json::Map::new()).is_err());
    }
}
