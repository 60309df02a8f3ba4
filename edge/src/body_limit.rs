//! Body limits: a request declaring a body above the limit (`Content-Length`) is 413 before a
//! byte is read; a body streamed without a length is cut off, 413, as soon as it crosses the
//! limit; a body that does not arrive within its time is 408.

use std::time::Duration;

use axum::{
    body::Body,
    extract::Request,
    middleware::Next,
    response::{IntoResponse as _, Response},
};
use bytes::Bytes;
use http::{HeaderMap, StatusCode, header};
use http_body_util::{BodyExt as _, LengthLimitError, Limited};

use crate::error::ApiError;

/// Why a body was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    /// `Content-Length` is above the limit.
    #[error("request body of {declared} bytes is above the limit of {limit} bytes")]
    Declared {
        /// The declared length.
        declared: u64,
        /// The limit in bytes.
        limit: usize,
    },
    /// The body grew past the limit while being read.
    #[error("request body is larger than the limit of {0} bytes")]
    TooLarge(usize),
    /// `Content-Length` is not a number, or the body could not be read (client gone, bad
    /// framing).
    #[error("request body could not be read")]
    Unreadable,
    /// The body did not arrive in time.
    #[error("the request body did not arrive within {0:?}")]
    TimedOut(Duration),
}

impl From<BodyError> for ApiError {
    fn from(e: BodyError) -> Self {
        let status = match e {
            BodyError::Declared { .. } | BodyError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            BodyError::Unreadable => StatusCode::BAD_REQUEST,
            BodyError::TimedOut(_) => StatusCode::REQUEST_TIMEOUT,
        };
        ApiError::new(status, e.to_string())
    }
}

/// Refuses a declared `Content-Length` above `limit`.
///
/// # Errors
/// [`BodyError::Declared`], or [`BodyError::Unreadable`] for a length that is not a number.
pub fn check_declared(headers: &HeaderMap, limit: usize) -> Result<(), BodyError> {
    let Some(length) = headers.get(header::CONTENT_LENGTH) else { return Ok(()) };
    let declared: u64 = length.to_str().ok().and_then(|s| s.parse().ok()).ok_or(BodyError::Unreadable)?;
    if declared > limit as u64 { Err(BodyError::Declared { declared, limit }) } else { Ok(()) }
}

/// Reads a whole body of at most `limit` bytes within `timeout`.
///
/// # Errors
/// [`BodyError::TooLarge`] as soon as the body crosses `limit`, [`BodyError::TimedOut`],
/// [`BodyError::Unreadable`].
pub async fn read(body: Body, limit: usize, timeout: Duration) -> Result<Bytes, BodyError> {
    let collected = tokio::time::timeout(timeout, Limited::new(body, limit).collect())
        .await
        .map_err(|_| BodyError::TimedOut(timeout))?
        .map_err(|e| if e.is::<LengthLimitError>() { BodyError::TooLarge(limit) } else { BodyError::Unreadable })?;
    Ok(collected.to_bytes())
}

/// The middleware form of [`check_declared`]; the streamed limit is axum's `DefaultBodyLimit`,
/// which the body extractors enforce (see [`crate::ApiLimits`]).
pub(crate) async fn declared_within(limit: usize, request: Request, next: Next) -> Response {
    match check_declared(request.headers(), limit) {
        Ok(()) => next.run(request).await,
        Err(e) => ApiError::from(e).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn declared_lengths_are_checked_before_reading() {
        let mut h = HeaderMap::new();
        assert_eq!(check_declared(&h, 10), Ok(()));
        h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("10"));
        assert_eq!(check_declared(&h, 10), Ok(()));
        h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("11"));
        assert_eq!(check_declared(&h, 10), Err(BodyError::Declared { declared: 11, limit: 10 }));
        h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("many"));
        assert_eq!(check_declared(&h, 10), Err(BodyError::Unreadable));
    }

    #[tokio::test]
    async fn a_body_past_the_limit_is_too_large() {
        let read = read(Body::from("x".repeat(11)), 10, Duration::from_secs(1)).await;
        assert_eq!(read, Err(BodyError::TooLarge(10)));
    }
}
