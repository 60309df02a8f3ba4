//! Content-type check: the APIs behind the edge take JSON only. `application/json` is accepted
//! with any parameters (`; charset=utf-8`) and in any case; anything else, or no header, is 415
//! before a byte of the body is read.

use axum::{extract::Request, middleware::Next, response::Response};
use http::{HeaderMap, StatusCode, header};

use crate::error::ApiError;

/// Longest header value quoted back in the error.
const MAX_ECHO: usize = 128;

/// The request's `Content-Type` is not JSON (the header as received, cut short).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Content-Type must be application/json, got {0:?}")]
pub struct NotJson(pub String);

impl From<NotJson> for ApiError {
    fn from(e: NotJson) -> Self {
        ApiError::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, e.to_string())
    }
}

/// Checks that `headers` declare a JSON body.
///
/// # Errors
/// [`NotJson`] with the header value as received (at most 128 bytes).
pub fn require_json(headers: &HeaderMap) -> Result<(), NotJson> {
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        return Err(NotJson(String::new()));
    };
    let value = String::from_utf8_lossy(value.as_bytes());
    let essence = value.split(';').next().unwrap_or_default().trim();
    if essence.eq_ignore_ascii_case("application/json") { Ok(()) } else { Err(NotJson(clip(&value, MAX_ECHO))) }
}

/// The middleware form of [`require_json`], for routes that all take JSON.
pub(crate) async fn json_only(request: Request, next: Next) -> Response {
    match require_json(request.headers()) {
        Ok(()) => next.run(request).await,
        Err(e) => axum::response::IntoResponse::into_response(ApiError::from(e)),
    }
}

/// `s` cut to at most `max` bytes on a character boundary, with `…` when cut.
fn clip(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn with(ct: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_str(ct).unwrap());
        h
    }

    #[test]
    fn json_with_parameters_in_any_case_passes_and_the_rest_is_quoted_short() {
        assert!(require_json(&with("application/json")).is_ok());
        assert!(require_json(&with("Application/JSON; charset=utf-8")).is_ok());
        assert_eq!(require_json(&HeaderMap::new()), Err(NotJson(String::new())));
        assert_eq!(require_json(&with("application/jsonx")), Err(NotJson("application/jsonx".to_owned())));
        let long = "x".repeat(1000);
        assert_eq!(require_json(&with(&long)).unwrap_err().0.len(), MAX_ECHO + '…'.len_utf8());
    }
}
