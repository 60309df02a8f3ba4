//! Tracing: one span per API request (method, path, HTTP version), with its status and latency
//! logged at `debug` when the response is ready and failures (5xx) at `error`. Probes are routed
//! outside this layer, so a kubelet polling `/readyz` adds nothing to the traces.

use axum::Router;
use tower_http::trace::{DefaultOnFailure, DefaultOnResponse, TraceLayer};
use tracing::Level;

/// Adds the request span to every route of `routes`.
pub fn traced<S: Clone + Send + Sync + 'static>(routes: Router<S>) -> Router<S> {
    routes.layer(
        TraceLayer::new_for_http()
            .make_span_with(|request: &http::Request<_>| {
                tracing::debug_span!(
                    "request",
                    method = %request.method(),
                    path = request.uri().path(),
                    version = ?request.version(),
                )
            })
            .on_response(DefaultOnResponse::new().level(Level::DEBUG))
            .on_failure(DefaultOnFailure::new().level(Level::ERROR)),
    )
}
