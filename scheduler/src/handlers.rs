//! The HTTP edge: a thin axum router that decodes, calls [`Extender`], encodes and records
//! request metrics.
//!
//! | route | method | answer |
//! |---|---|---|
//! | `/scheduler/filter` | POST | `ExtenderFilterResult` |
//! | `/scheduler/prioritize` | POST | `HostPriorityList` (bare array) |
//! | `/scheduler/preempt` | POST | `ExtenderPreemptionResult` |
//! | `/scheduler/bind` | POST | `ExtenderBindingResult` |
//! | `/debug/decisions?pod=ns/name&limit=N&format=text` | GET | recent decisions (JSON or text) |
//! | `/readyz` | GET | 200 once the cache has synced, else 503 with per-kind state |
//! | `/healthz` | GET | 200 |
//!
//! Protocol errors are HTTP errors with a JSON body `{"code": N, "message": "..."}`: a malformed
//! body is 400 (naming serde's line/column and the missing field), so is a candidate node
//! without a name (a node named twice is answered once: see
//! `ExtenderArgs::dedupe_candidates`), a wrong content type 415, a
//! wrong method 405, a body above the limit 413 (from `Content-Length` before reading anything,
//! or while reading a chunked body). Logical failures are 200 with the reply's `Error`, as the
//! scheduler expects. Each request is bounded by a timeout kept below the scheduler's
//! `httpTimeout`.

use std::{sync::Arc, time::Duration};

use axum::{
    Json, Router,
    body::Bytes,
    extract::{DefaultBodyLimit, Query, Request, State, rejection::BytesRejection},
    http::{HeaderMap, StatusCode, header},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use stowage_policy::text;
use tokio::time::Instant;
use tower_http::timeout::TimeoutLayer;

use crate::{
    extender::v1::{ExtenderArgs, ExtenderBindingArgs, ExtenderPreemptionArgs},
    service::Extender,
};

/// Longest piece of a request (header value, serde error) quoted in an error body.
const MAX_ECHO: usize = 256;

/// Router settings.
#[derive(Debug, Clone, Copy)]
pub struct RouterOptions {
    /// Largest accepted request body (default 32 MiB: `nodeCacheCapable: false` sends whole
    /// Node objects).
    pub body_limit: usize,
    /// Per-request timeout (default 4 s, below the scheduler's default 5 s `httpTimeout`; lower
    /// it together with `httpTimeout`).
    pub request_timeout: Duration,
}

impl Default for RouterOptions {
    fn default() -> Self {
        Self { body_limit: 32 << 20, request_timeout: Duration::from_secs(4) }
    }
}

/// The JSON body of an HTTP error.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiError {
    /// HTTP status code.
    pub code: u16,
    /// What went wrong.
    pub message: String,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self { code: status.as_u16(), message: message.into() }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (status, Json(self)).into_response()
    }
}

/// The router with default [`RouterOptions`].
pub fn router(extender: Arc<Extender>) -> Router {
    router_with(extender, RouterOptions::default())
}

/// The router.
pub fn router_with(extender: Arc<Extender>, options: RouterOptions) -> Router {
    let limit = options.body_limit;
    Router::new()
        .route("/scheduler/filter", post(filter))
        .route("/scheduler/prioritize", post(prioritize))
        .route("/scheduler/preempt", post(preempt))
        .route("/scheduler/bind", post(bind))
        .route("/debug/decisions", get(decisions))
        .route("/readyz", get(readyz))
        .route("/healthz", get(healthz))
        .method_not_allowed_fallback(method_not_allowed)
        .fallback(not_found)
        // Chunked bodies are cut off while reading (axum answers 413 through the rejection).
        .layer(DefaultBodyLimit::max(limit))
        // Bound every request below the scheduler's httpTimeout.
        .layer(TimeoutLayer::with_status_code(StatusCode::SERVICE_UNAVAILABLE, options.request_timeout))
        // Refuse oversized bodies from Content-Length before reading a byte.
        .layer(middleware::from_fn(move |req: Request, next: Next| content_length_guard(limit, req, next)))
        .with_state(extender)
}

async fn content_length_guard(limit: usize, req: Request, next: Next) -> Response {
    let declared =
        req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if let Some(len) = declared
        && len > limit as u64
    {
        return ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("request body of {len} bytes is above the limit of {limit} bytes"),
        )
        .into_response();
    }
    next.run(req).await
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method not allowed: the extender verbs take POST, the rest GET")
}

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "no such route")
}

/// Checks the content type and decodes the body.
fn decode<T: DeserializeOwned>(
    verb: &str,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<T, ApiError> {
    let ct = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let essence = ct.split(';').next().unwrap_or("").trim();
    if !essence.eq_ignore_ascii_case("application/json") {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!(
                "{verb}: content type must be application/json, got {:?}",
                if ct.is_empty() { "(none)".to_owned() } else { text::clip(ct, MAX_ECHO) }
            ),
        ));
    }
    let bytes = body.map_err(|r| ApiError::new(r.status(), format!("{verb}: {}", r.body_text())))?;
    serde_json::from_slice(&bytes).map_err(|e| {
        // serde quotes offending strings whole.
        let e = text::clip(&e.to_string(), MAX_ECHO);
        ApiError::new(StatusCode::BAD_REQUEST, format!("{verb}: invalid request body: {e}"))
    })
}

/// Decodes `filter`/`prioritize` arguments with their candidates made a set.
fn decode_args(verb: &str, headers: &HeaderMap, body: Result<Bytes, BytesRejection>) -> Result<ExtenderArgs, ApiError> {
    let mut args: ExtenderArgs = decode(verb, headers, body)?;
    args.dedupe_candidates()
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, format!("{verb}: invalid candidate nodes: {e}")))?;
    Ok(args)
}

fn record(ext: &Extender, verb: &'static str, start: Instant) {
    ext.metrics().observe(verb, start.elapsed().as_secs_f64());
}

async fn filter(State(ext): State<Arc<Extender>>, headers: HeaderMap, body: Result<Bytes, BytesRejection>) -> Response {
    let start = Instant::now();
    let resp = match decode_args("filter", &headers, body) {
        Ok(args) => Json(ext.filter(args).await).into_response(),
        Err(e) => {
            ext.metrics().error("filter", "bad_request");
            e.into_response()
        }
    };
    record(&ext, "filter", start);
    resp
}

async fn prioritize(
    State(ext): State<Arc<Extender>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let start = Instant::now();
    let resp = match decode_args("prioritize", &headers, body) {
        Ok(args) => Json(ext.prioritize(args)).into_response(),
        Err(e) => {
            ext.metrics().error("prioritize", "bad_request");
            e.into_response()
        }
    };
    record(&ext, "prioritize", start);
    resp
}

async fn preempt(
    State(ext): State<Arc<Extender>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let start = Instant::now();
    let resp = match decode::<ExtenderPreemptionArgs>("preempt", &headers, body) {
        Ok(args) => Json(ext.preempt(args)).into_response(),
        Err(e) => {
            ext.metrics().error("preempt", "bad_request");
            e.into_response()
        }
    };
    record(&ext, "preempt", start);
    resp
}

async fn bind(State(ext): State<Arc<Extender>>, headers: HeaderMap, body: Result<Bytes, BytesRejection>) -> Response {
    let start = Instant::now();
    let resp = match decode::<ExtenderBindingArgs>("bind", &headers, body) {
        Ok(args) => Json(ext.bind(args).await).into_response(),
        Err(e) => {
            ext.metrics().error("bind", "bad_request");
            e.into_response()
        }
    };
    record(&ext, "bind", start);
    resp
}

/// Query of `/debug/decisions`.
#[derive(Debug, Deserialize)]
struct DecisionsQuery {
    pod: Option<String>,
    limit: Option<usize>,
    format: Option<String>,
}

async fn decisions(
    State(ext): State<Arc<Extender>>,
    query: Result<Query<DecisionsQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Query(q) = match query {
        Ok(q) => q,
        Err(r) => return ApiError::new(StatusCode::BAD_REQUEST, r.body_text()).into_response(),
    };
    let list = ext.decisions().recent(q.pod.as_deref(), q.limit.unwrap_or(20));
    match q.format.as_deref() {
        Some("text") => {
            let text: String = list.iter().map(|d| d.render_text()).collect::<Vec<_>>().join("\n");
            ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text).into_response()
        }
        None | Some("json") => Json(list.iter().map(|d| d.as_ref()).collect::<Vec<_>>()).into_response(),
        Some(other) => {
            let other = text::clip(other, MAX_ECHO);
            ApiError::new(StatusCode::BAD_REQUEST, format!("format {other:?} is not allowed; use json or text"))
                .into_response()
        }
    }
}

#[derive(Serialize)]
struct KindReport {
    kind: &'static str,
    synced: bool,
    objects: usize,
}

#[derive(Serialize)]
struct Readiness {
    ready: bool,
    kinds: Vec<KindReport>,
}

async fn readyz(State(ext): State<Arc<Extender>>) -> Response {
    let cache = ext.cache();
    let body = Readiness {
        ready: cache.is_ready(),
        kinds: cache
            .status()
            .into_iter()
            .map(|s| KindReport { kind: s.kind.as_str(), synced: s.synced, objects: s.objects })
            .collect(),
    };
    let status = if body.ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, Json(body)).into_response()
}

async fn healthz() -> &'static str {
    "ok"
}
