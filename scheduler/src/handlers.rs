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
//! Protocol errors are HTTP errors with the edge's JSON body `{"code": N, "message": "..."}`
//! ([`ApiError`]): a malformed body is 400 (naming serde's line/column and the missing field), so
//! is a candidate node without a name (a node named twice is answered once: see
//! `ExtenderArgs::into_candidates`; the set is made once, here), a wrong method 405. Logical failures are 200 with the
//! reply's `Error`, as the scheduler expects.
//!
//! The verbs sit behind the edge's API layers (`stowage_edge::api`): a tracing span per
//! request; load shedding (503 beyond [`RouterOptions::max_in_flight`] requests at once); a
//! deadline below the scheduler's `httpTimeout` (503); JSON content type only (415, before the
//! body is read); the body limit (413, from `Content-Length` before reading anything, or while
//! reading a chunked body). The probes are the edge's, outside those layers.

use std::{sync::Arc, time::Duration};

use axum::{
    Json, Router,
    body::Bytes,
    extract::{Query, State, rejection::BytesRejection},
    http::{StatusCode, header},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use serde_json::{Map, Value};
use stowage_edge::{ApiError, ApiLimits, Probe};
use stowage_policy::text;
use tokio::time::Instant;

use crate::{
    cache::ClusterCache,
    extender::v1::{Candidates, ExtenderArgs, ExtenderBindingArgs, ExtenderPreemptionArgs},
    service::Extender,
};

/// Longest piece of a request (query value, serde error) quoted in an error body.
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
    /// Verb requests served at once; more are refused with 503 at once (default 256: the
    /// scheduler sends filter and prioritize one pod at a time, binds in parallel).
    pub max_in_flight: usize,
}

impl Default for RouterOptions {
    fn default() -> Self {
        Self { body_limit: 32 << 20, request_timeout: Duration::from_secs(4), max_in_flight: 256 }
    }
}

/// The router with default [`RouterOptions`].
pub fn router(extender: Arc<Extender>) -> Router {
    router_with(extender, RouterOptions::default())
}

/// The router.
pub fn router_with(extender: Arc<Extender>, options: RouterOptions) -> Router {
    let verbs = Router::new()
        .route("/scheduler/filter", post(filter))
        .route("/scheduler/prioritize", post(prioritize))
        .route("/scheduler/preempt", post(preempt))
        .route("/scheduler/bind", post(bind));
    let verbs = stowage_edge::api(
        verbs,
        ApiLimits {
            max_body_bytes: options.body_limit,
            deadline: options.request_timeout,
            deadline_status: StatusCode::SERVICE_UNAVAILABLE,
            max_in_flight: options.max_in_flight,
        },
    );
    let debug = stowage_edge::traced(Router::new().route("/debug/decisions", get(decisions)));
    let probe: Arc<dyn Probe> = Arc::new(CacheProbe(Arc::clone(extender.cache())));
    Router::new()
        .merge(verbs)
        .merge(debug)
        .merge(stowage_edge::probes(probe))
        .method_not_allowed_fallback(method_not_allowed)
        .fallback(not_found)
        .with_state(extender)
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method not allowed: the extender verbs take POST, the rest GET")
}

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "no such route")
}

/// Decodes the body (its content type and size were checked by the edge layers).
fn decode<T: DeserializeOwned>(verb: &str, body: Result<Bytes, BytesRejection>) -> Result<T, ApiError> {
    let bytes = body.map_err(|r| ApiError::new(r.status(), format!("{verb}: {}", r.body_text())))?;
    serde_json::from_slice(&bytes).map_err(|e| {
        // serde quotes offending strings whole.
        let e = text::clip(&e.to_string(), MAX_ECHO);
        ApiError::new(StatusCode::BAD_REQUEST, format!("{verb}: invalid request body: {e}"))
    })
}

/// Decodes `filter`/`prioritize` arguments with their candidates made a set.
fn decode_args(verb: &str, body: Result<Bytes, BytesRejection>) -> Result<Candidates, ApiError> {
    let args: ExtenderArgs = decode(verb, body)?;
    args.into_candidates()
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, format!("{verb}: invalid candidate nodes: {e}")))
}

fn record(ext: &Extender, verb: &'static str, start: Instant) {
    ext.metrics().observe(verb, start.elapsed().as_secs_f64());
}

async fn filter(State(ext): State<Arc<Extender>>, body: Result<Bytes, BytesRejection>) -> Response {
    let start = Instant::now();
    let resp = match decode_args("filter", body) {
        Ok(args) => Json(ext.filter_candidates(args).await).into_response(),
        Err(e) => {
            ext.metrics().error("filter", "bad_request");
            e.into_response()
        }
    };
    record(&ext, "filter", start);
    resp
}

async fn prioritize(State(ext): State<Arc<Extender>>, body: Result<Bytes, BytesRejection>) -> Response {
    let start = Instant::now();
    let resp = match decode_args("prioritize", body) {
        Ok(args) => Json(ext.prioritize_candidates(args)).into_response(),
        Err(e) => {
            ext.metrics().error("prioritize", "bad_request");
            e.into_response()
        }
    };
    record(&ext, "prioritize", start);
    resp
}

async fn preempt(State(ext): State<Arc<Extender>>, body: Result<Bytes, BytesRejection>) -> Response {
    let start = Instant::now();
    let resp = match decode::<ExtenderPreemptionArgs>("preempt", body) {
        Ok(args) => Json(ext.preempt(args)).into_response(),
        Err(e) => {
            ext.metrics().error("preempt", "bad_request");
            e.into_response()
        }
    };
    record(&ext, "preempt", start);
    resp
}

async fn bind(State(ext): State<Arc<Extender>>, body: Result<Bytes, BytesRejection>) -> Response {
    let start = Instant::now();
    let resp = match decode::<ExtenderBindingArgs>("bind", body) {
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

/// Ready once every watched kind has synced; the not-ready body lists each kind's state.
struct CacheProbe(Arc<ClusterCache>);

impl Probe for CacheProbe {
    fn ready(&self) -> Result<(), String> {
        if self.0.is_ready() {
            return Ok(());
        }
        let waiting: Vec<&str> = self.0.status().into_iter().filter(|k| !k.synced).map(|k| k.kind.as_str()).collect();
        Err(format!("cluster cache has not synced yet (waiting for {})", waiting.join(", ")))
    }

    fn detail(&self) -> Map<String, Value> {
        let kinds: Vec<KindReport> = self
            .0
            .status()
            .into_iter()
            .map(|s| KindReport { kind: s.kind.as_str(), synced: s.synced, objects: s.objects })
            .collect();
        let mut detail = Map::new();
        detail.insert("kinds".to_owned(), serde_json::to_value(kinds).unwrap_or_default());
        detail
    }
}
