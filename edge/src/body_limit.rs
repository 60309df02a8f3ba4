//! Body limits: a request declaring a body above the limit (`Content-Length`) is 413 before a
//! byte is read; a body streamed without a length is cut off, 413, as soon as it crosses the
//! limit; a body that does not arrive within its time is 408.

use std::time::Duration;

use axum::{
    body::{Body, HttpBody},
    extract::Request,
    middleware::Next,
    response::{IntoResponse as _, Response},
};
use bytes::{Bytes, BytesMut};
use http::{HeaderMap, StatusCode, header};
use http_body_util::BodyExt as _;

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
/// Each frame is copied into one growing buffer and dropped at once. Keeping the frames until the
/// end (as `http_body_util`'s `collect` does) keeps every buffer the connection read them into
/// alive: over TLS a frame is a small slice of a much larger read buffer, and a 6.9 MB review
/// held about 190 MiB that way.
///
/// # Errors
/// [`BodyError::TooLarge`] as soon as the body crosses `limit`, [`BodyError::TimedOut`],
/// [`BodyError::Unreadable`].
pub async fn read(body: Body, limit: usize, timeout: Duration) -> Result<Bytes, BodyError> {
    tokio::time::timeout(timeout, copy_frames(body, limit)).await.map_err(|_| BodyError::TimedOut(timeout))?
}

/// The first allocation for a body: its declared length up to this, so a client that declares a
/// large body and then stalls does not get the whole of it reserved.
const FIRST_CAPACITY: usize = 64 * 1024;

/// Copies the data frames of `body` into one buffer, at most `limit` bytes.
async fn copy_frames(mut body: Body, limit: usize) -> Result<Bytes, BodyError> {
    let declared = usize::try_from(HttpBody::size_hint(&body).lower()).unwrap_or(usize::MAX);
    let mut buf = BytesMut::with_capacity(declared.min(limit).min(FIRST_CAPACITY));
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|_| BodyError::Unreadable)?;
        let Ok(data) = frame.into_data() else { continue };
        if data.len() > limit - buf.len() {
            return Err(BodyError::TooLarge(limit));
        }
        buf.extend_from_slice(&data);
    }
    Ok(buf.freeze())
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
