//! The admission endpoint: decode, decide, encode. Bad input gets a precise 4xx with the edge's
//! JSON error body (`{"code": .., "message": ".."}`, [`stowage_edge::ApiError`]), decided as
//! early as possible: the method and `Content-Type` before the body is touched,
//! `Content-Length` before it is buffered, and a body that grows past the limit as soon as it
//! crosses it. The checks are the edge's (`stowage_edge::{require_json, check_declared, read,
//! Slots}`), called here so the admission metrics count each refusal by reason; the probes
//! and the request span are the edge's too.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use arc_swap::ArcSwap;
use axum::{
    Router,
    error_handling::HandleErrorLayer,
    extract::{Request, State},
    response::{IntoResponse, Response},
    routing::post,
};
use http::{HeaderValue, StatusCode, header};
use stowage_edge::{ApiError, BodyError, Budget, NotJson, Probe, Slots};
use stowage_policy::Config;
use tower::{BoxError, ServiceBuilder};
use tracing::{debug, warn};

use crate::{
    admit::{AdmitContext, MemberSource, NoMembers, decide},
    metrics::AdmissionMetrics,
    review::{AdmissionReview, DecodeError, decode_request},
};

/// Request limits of the admission endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest accepted body. Default 7 MiB (a large UPDATE carries two objects).
    pub max_body_bytes: usize,
    /// Time to read, decide and answer one review, body included. Default 2s; keep it below the
    /// webhook configuration's `timeoutSeconds` so the apiserver gets an answer, not a timeout.
    pub timeout: Duration,
    /// Reviews decided at once; more are refused with 503 instead of queueing. A review takes
    /// its slot only once its body is fully read, so clients that trickle bodies hold none.
    /// Default 512.
    pub max_in_flight: usize,
    /// Time to receive the whole body once the request head is in (capped by `timeout`).
    /// Default 1s: the apiserver sends a review at once; only a slow or hostile client needs
    /// longer.
    pub body_timeout: Duration,
    /// Bytes of reviews above [`INLINE_DECISION_MAX_BYTES`] decided at once; a large review
    /// that does not fit in what is left is refused with 503 at once. Decoding takes up to about
    /// 30 times a review's size (a 6.9 MB review of 300,000 annotation keys: 213 MiB), so this,
    /// not the count of reviews, bounds the webhook's memory. Default 7 MiB: one review of the
    /// largest size, or several smaller ones, at a time; keep it at about a thirty-second of
    /// the container's memory limit above the idle process.
    pub max_large_bytes_in_flight: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_body_bytes: 7 * 1024 * 1024,
            timeout: Duration::from_secs(2),
            max_in_flight: 512,
            body_timeout: Duration::from_secs(1),
            max_large_bytes_in_flight: 7 * 1024 * 1024,
        }
    }
}

/// Everything the webhook's handlers share.
pub struct WebhookState {
    config: Arc<ArcSwap<Config>>,
    members: Arc<dyn MemberSource>,
    skip_namespaces: Vec<String>,
    limits: Limits,
    /// Review slots ([`Limits::max_in_flight`]).
    slots: Slots,
    /// Bytes of large reviews being decided ([`Limits::max_large_bytes_in_flight`]).
    large: Budget,
    ready: AtomicBool,
    metrics: AdmissionMetrics,
}

impl std::fmt::Debug for WebhookState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookState")
            .field("skip_namespaces", &self.skip_namespaces)
            .field("limits", &self.limits)
            .field("ready", &self.is_ready())
            .finish_non_exhaustive()
    }
}

impl WebhookState {
    /// A state reading the (hot-reloadable) config; not ready, no member source, no skipped
    /// namespaces and default [`Limits`] until set.
    #[must_use]
    pub fn new(config: Arc<ArcSwap<Config>>, metrics: AdmissionMetrics) -> Self {
        Self {
            config,
            members: Arc::new(NoMembers),
            skip_namespaces: Vec::new(),
            limits: Limits::default(),
            slots: Slots::new(Limits::default().max_in_flight),
            large: Budget::new(Limits::default().max_large_bytes_in_flight),
            ready: AtomicBool::new(false),
            metrics,
        }
    }

    /// Sets where StatefulSet replica counts come from.
    #[must_use]
    pub fn with_members(mut self, members: Arc<dyn MemberSource>) -> Self {
        self.members = members;
        self
    }

    /// Sets the namespaces never mutated (the webhook's own belongs here).
    #[must_use]
    pub fn with_skip_namespaces(mut self, namespaces: Vec<String>) -> Self {
        self.skip_namespaces = namespaces;
        self
    }

    /// Sets the request limits.
    #[must_use]
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self.slots = Slots::new(limits.max_in_flight);
        self.large = Budget::new(limits.max_large_bytes_in_flight);
        self
    }

    /// Flips readiness (`/readyz`); the binary sets it once TLS and the config are loaded and
    /// clears it first on shutdown.
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Release);
    }

    /// Whether `/readyz` answers 200.
    #[must_use]
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// The config handle, for reloading.
    #[must_use]
    pub fn config(&self) -> &Arc<ArcSwap<Config>> {
        &self.config
    }

    /// The metrics.
    #[must_use]
    pub fn metrics(&self) -> &AdmissionMetrics {
        &self.metrics
    }

    /// The limits in force.
    #[must_use]
    pub fn limits(&self) -> Limits {
        self.limits
    }
}

/// Why a request got no admission decision.
#[derive(Debug, thiserror::Error)]
pub enum Reject {
    /// Not a POST.
    #[error("method {0} is not allowed; use POST")]
    Method(String),
    /// Not `application/json`.
    #[error(transparent)]
    ContentType(#[from] NotJson),
    /// Body larger than the limit.
    #[error("request body is larger than the limit of {0} bytes")]
    TooLarge(usize),
    /// The body could not be read (client went away, bad framing).
    #[error("request body could not be read")]
    BodyRead,
    /// The body is not a usable review.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// The review took longer than the timeout.
    #[error("the review did not complete within {0:?}")]
    Timeout(Duration),
    /// The body did not arrive in time.
    #[error("the request body did not arrive within {0:?}")]
    BodyTimeout(Duration),
    /// Too many reviews in flight.
    #[error("too many admission reviews in flight; retry")]
    Overloaded,
    /// The response could not be encoded.
    #[error("internal error")]
    Internal,
}

impl Reject {
    /// The HTTP status.
    #[must_use]
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Method(_) => StatusCode::METHOD_NOT_ALLOWED,
            Self::ContentType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::BodyRead | Self::Decode(_) => StatusCode::BAD_REQUEST,
            Self::Timeout(_) | Self::BodyTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            Self::Overloaded => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// A bounded label for metrics (one of [`crate::metrics::ERROR_REASONS`]).
    #[must_use]
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Method(_) => "method",
            Self::ContentType(_) => "content_type",
            Self::TooLarge(_) => "too_large",
            Self::BodyRead => "body_read",
            Self::Decode(e) => e.reason(),
            Self::Timeout(_) | Self::BodyTimeout(_) => "timeout",
            Self::Overloaded => "overloaded",
            Self::Internal => "internal",
        }
    }
}

impl From<BodyError> for Reject {
    fn from(e: BodyError) -> Self {
        match e {
            BodyError::Declared { limit, .. } | BodyError::TooLarge(limit) => Self::TooLarge(limit),
            BodyError::Unreadable => Self::BodyRead,
            BodyError::TimedOut(d) => Self::BodyTimeout(d),
        }
    }
}

impl IntoResponse for Reject {
    fn into_response(self) -> Response {
        let mut response = ApiError::new(self.status(), self.to_string()).into_response();
        if matches!(self, Self::Method(_)) {
            response.headers_mut().insert(header::ALLOW, HeaderValue::from_static("POST"));
        }
        response
    }
}

/// The webhook's routes: `POST /mutate`, `GET /healthz`, `GET /readyz`.
pub fn router(state: Arc<WebhookState>) -> Router {
    let limits = state.limits;
    let metrics = state.metrics.clone();
    let mutate = post(mutate).fallback(method_not_allowed).layer(
        ServiceBuilder::new()
            // Answer the failures of the layers below (timeout, overload) as JSON, and count them.
            .layer(HandleErrorLayer::new(move |err: BoxError| {
                let metrics = metrics.clone();
                async move {
                    let reject = if err.is::<tower::timeout::error::Elapsed>() {
                        Reject::Timeout(limits.timeout)
                    } else if err.is::<tower::load_shed::error::Overloaded>() {
                        Reject::Overloaded
                    } else {
                        Reject::Internal
                    };
                    metrics.error(reject.reason());
                    warn!(reason = reject.reason(), status = reject.status().as_u16(), "admission request failed");
                    reject
                }
            }))
            // Bound each review, reading the body included, below the webhook's timeoutSeconds.
            // (Review slots are taken inside, once the body is in: see `review`.)
            .timeout(limits.timeout),
    );
    let probe: Arc<dyn Probe> = Arc::new(ReadyFlag(Arc::clone(&state)));
    // Trace admission requests; the probes stay out of traces.
    stowage_edge::traced(Router::new().route("/mutate", mutate)).merge(stowage_edge::probes(probe)).with_state(state)
}

/// `/readyz` follows [`WebhookState::set_ready`].
struct ReadyFlag(Arc<WebhookState>);

impl Probe for ReadyFlag {
    fn ready(&self) -> Result<(), String> {
        if self.0.is_ready() { Ok(()) } else { Err(String::new()) }
    }
}

async fn method_not_allowed(State(state): State<Arc<WebhookState>>, request: Request) -> Reject {
    let reject = Reject::Method(request.method().to_string());
    state.metrics.error(reject.reason());
    reject
}

async fn mutate(State(state): State<Arc<WebhookState>>, request: Request) -> Response {
    let started = Instant::now();
    match review(Arc::clone(&state), request, started).await {
        Ok(response) => response,
        Err(reject) => {
            state.metrics.error(reject.reason());
            warn!(reason = reject.reason(), status = reject.status().as_u16(), "admission request rejected");
            reject.into_response()
        }
    }
}

async fn review(state: Arc<WebhookState>, request: Request, started: Instant) -> Result<Response, Reject> {
    stowage_edge::require_json(request.headers())?;
    let limit = state.limits.max_body_bytes;
    stowage_edge::check_declared(request.headers(), limit)?;
    let body_timeout = state.limits.body_timeout.min(state.limits.timeout);
    let body = stowage_edge::read(request.into_body(), limit, body_timeout).await?;
    // A slot only now that the body is in: a client trickling its body holds none. Refuse at
    // once when every slot is taken; queueing would spend the apiserver's timeout.
    let slot = state.slots.try_take().map_err(|_| Reject::Overloaded)?;
    if body.len() <= INLINE_DECISION_MAX_BYTES {
        let _slot = slot;
        return decide_and_encode(&state, &body, started);
    }
    // Decoding a large review costs memory in proportion to its size: refuse it at once when
    // the large reviews already being decided leave too little of the budget.
    let bytes = state.large.try_take(body.len()).map_err(|_| Reject::Overloaded)?;
    // Decoding and deciding a large review is CPU work: off the I/O threads. The router's
    // timeout still answers the client in time; the slot and the bytes are held until the work
    // ends, so at most `max_in_flight` decisions and `max_large_bytes_in_flight` bytes ever run.
    tokio::task::spawn_blocking(move || {
        let (_slot, _bytes) = (slot, bytes);
        decide_and_encode(&state, &body, started)
    })
    .await
    .map_err(|_| Reject::Internal)?
}

/// Reviews up to this size are decided on the I/O thread that read them. Deciding a pod of a
/// few KiB takes tens of microseconds; handing it to the blocking pool and back costs two
/// thread wake-ups, each a trip through the OS scheduler that, on a busy node, waits behind
/// the apiserver and etcd. Larger reviews (up to [`Limits::max_body_bytes`]) still go to the
/// blocking pool, so no review stalls the I/O threads for long.
pub const INLINE_DECISION_MAX_BYTES: usize = 64 * 1024;

/// Decodes, decides and encodes one review whose body is in.
fn decide_and_encode(state: &WebhookState, body: &[u8], started: Instant) -> Result<Response, Reject> {
    let request = decode_request(body)?;

    let config = state.config.load();
    let ctx = AdmitContext::new(&config).skip_namespaces(&state.skip_namespaces).members(state.members.as_ref());
    let verdict = decide(&request, &ctx);

    let response = &verdict.response;
    let operations = response.operations();
    state.metrics.review(verdict.outcome, request.is_dry_run(), started.elapsed().as_secs_f64(), operations);
    let meta = request.object.as_ref().and_then(|o| o.get("metadata"));
    let name = request
        .name
        .as_deref()
        .filter(|n| !n.is_empty())
        .or_else(|| meta.and_then(|m| m.get("generateName")).and_then(|g| g.as_str()))
        .unwrap_or_default();
    debug!(
        uid = %request.uid,
        namespace = request.namespace.as_deref().unwrap_or_default(),
        name,
        outcome = verdict.outcome.as_str(),
        allowed = response.allowed,
        mutated = operations > 0,
        operations,
        dry_run = request.is_dry_run(),
        "admission decision"
    );

    let body = serde_json::to_vec(&AdmissionReview::from_response(verdict.response)).map_err(|_| Reject::Internal)?;
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}
