//! Per-request deadline: a request not answered within its time (body reading included) gets a
//! JSON error instead of holding its client past the client's own timeout. The status is the
//! caller's: the extender answers 503 (the scheduler retries), a timed-out admission review 408.

use std::time::Duration;

use axum::{
    extract::Request,
    middleware::Next,
    response::{IntoResponse as _, Response},
};
use http::StatusCode;

use crate::error::ApiError;

/// Runs the rest of the stack under `deadline`.
pub(crate) async fn within(deadline: Duration, status: StatusCode, request: Request, next: Next) -> Response {
    match tokio::time::timeout(deadline, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::new(status, format!("the request did not complete within {deadline:?}")).into_response(),
    }
}
