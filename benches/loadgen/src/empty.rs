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
    let cert = Arc::new(ReloadingCert::load(CertPaths::in_dir(tls_dir))?);
    let config = server_config(cert, None)?;
    serve_tls(listener, config, webhook_router(), ServeOptions::default(), shutdown).await?;
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
