//! The one error body of every stowage HTTP endpoint: `{"code": <status>, "message": "..."}`
//! with `Content-Type: application/json`.
//!
//! Each layer of the edge that refuses a request (body limit, content type, deadline, load
//! shedding, unknown route or method) answers with an [`ApiError`], and so do the handlers
//! behind it: a client sees one shape whichever layer said no.

use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use serde::{Deserialize, Serialize};

/// A refused request: the HTTP status and a message for the person reading the client's log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ApiError {
    /// The HTTP status code, repeated in the body for clients that only log bodies.
    pub code: u16,
    /// What went wrong, bounded: callers clip anything echoed from the request.
    pub message: String,
}

impl ApiError {
    /// An error with `status` and `message`.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self { code: status.as_u16(), message: message.into() }
    }

    /// The status as a [`StatusCode`] (500 if `code` is not a valid status).
    #[must_use]
    pub fn status(&self) -> StatusCode {
        StatusCode::from_u16(self.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        // Serialising two plain fields cannot fail; the fallback keeps the shape anyway.
        let body = serde_json::to_string(&self).unwrap_or_else(|_| format!("{{\"code\":{}}}", self.code));
        let mut response = (status, body).into_response();
        response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_body_is_code_and_message_as_json() {
        let response = ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "too big").into_response();
        assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(response.headers()[header::CONTENT_TYPE], "application/json");
    }
}
