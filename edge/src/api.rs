//! The request layers of an API (the extender's verbs; the webhook applies the same pieces in
//! its handler, where its metrics see them). From the outside in:
//!
//! 1. tracing span ([`crate::traced`]);
//! 2. load shedding: one slot per request, 503 when none is free (`shed`);
//! 3. deadline over the rest, body reading included (`deadline`);
//! 4. content type: JSON only, 415 before the body is read (`content_type`);
//! 5. body limit: 413 from `Content-Length` before reading, and while reading a body without
//!    one (`body_limit`, axum's `DefaultBodyLimit` for the extractors).
//!
//! Every refusal is an [`ApiError`](crate::ApiError) JSON body.

use std::time::Duration;

use axum::{Router, extract::DefaultBodyLimit, middleware};
use http::StatusCode;

use crate::{body_limit, content_type, deadline, shed, shed::Slots, trace};

/// Limits of one API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApiLimits {
    /// Largest accepted request body.
    pub max_body_bytes: usize,
    /// Time to read, decide and answer one request.
    pub deadline: Duration,
    /// The status of a request past its deadline.
    pub deadline_status: StatusCode,
    /// Requests served at once; more are refused with 503.
    pub max_in_flight: usize,
}

/// `routes` (all taking JSON bodies) behind the API layers.
pub fn api<S: Clone + Send + Sync + 'static>(routes: Router<S>, limits: ApiLimits) -> Router<S> {
    let ApiLimits { max_body_bytes, deadline, deadline_status, max_in_flight } = limits;
    let slots = Slots::new(max_in_flight);
    let routes = routes
        // Innermost first: axum's layers wrap what is above them.
        .route_layer(DefaultBodyLimit::max(max_body_bytes))
        .route_layer(middleware::from_fn(move |request, next| {
            body_limit::declared_within(max_body_bytes, request, next)
        }))
        .route_layer(middleware::from_fn(content_type::json_only))
        .route_layer(middleware::from_fn(move |request, next| {
            deadline::within(deadline, deadline_status, request, next)
        }))
        .route_layer(middleware::from_fn(move |request, next| {
            shed::one_slot_per_request(slots.clone(), request, next)
        }));
    trace::traced(routes)
}
