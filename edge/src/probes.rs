//! The probes, the same on every port: `GET /healthz` answers 200 `ok` while the process
//! serves; `GET /readyz` answers 200 `ok` when the component is ready, else 503 with the JSON
//! error body (`{"code": 503, "message": "not ready: <why>"}`) plus the component's detail
//! fields (e.g. the extender's per-kind cache sync state). Probes stay outside the API layers:
//! no authentication, no tracing, no load shedding, so they answer fast under load.

use std::sync::Arc;

use axum::{
    Json, Router,
    response::{IntoResponse, Response},
    routing::get,
};
use http::StatusCode;
use serde::Serialize;
use serde_json::{Map, Value};

/// A component that can say whether it is ready.
pub trait Probe: Send + Sync + 'static {
    /// `Ok` when ready, else why not (may be empty).
    ///
    /// # Errors
    /// The reason the component is not ready.
    fn ready(&self) -> Result<(), String>;

    /// Fields added to the not-ready body. None by default.
    fn detail(&self) -> Map<String, Value> {
        Map::new()
    }
}

impl<F: Fn() -> Result<(), String> + Send + Sync + 'static> Probe for F {
    fn ready(&self) -> Result<(), String> {
        self()
    }
}

/// The 503 body: the API error shape plus detail.
#[derive(Serialize)]
struct NotReady {
    code: u16,
    message: String,
    ready: bool,
    #[serde(flatten)]
    detail: Map<String, Value>,
}

/// `/healthz` and `/readyz` for `probe`, mergeable into any router.
pub fn probes<S: Clone + Send + Sync + 'static>(probe: Arc<dyn Probe>) -> Router<S> {
    Router::new().route("/healthz", get(|| async { "ok" })).route("/readyz", get(move || readyz(Arc::clone(&probe))))
}

async fn readyz(probe: Arc<dyn Probe>) -> Response {
    match probe.ready() {
        Ok(()) => "ok".into_response(),
        Err(why) => {
            let message = if why.is_empty() { "not ready".to_owned() } else { format!("not ready: {why}") };
            let status = StatusCode::SERVICE_UNAVAILABLE;
            let body = NotReady { code: status.as_u16(), message, ready: false, detail: probe.detail() };
            (status, Json(body)).into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt as _;
    use tower::ServiceExt as _;

    async fn get(app: Router, path: &str) -> (StatusCode, String) {
        let response = app.oneshot(http::Request::get(path).body(axum::body::Body::empty()).unwrap()).await.unwrap();
        let status = response.status();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8(body.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn readyz_follows_the_probe_and_healthz_does_not() {
        let up = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = Arc::clone(&up);
        let app: Router = probes(Arc::new(move || {
            if flag.load(std::sync::atomic::Ordering::SeqCst) { Ok(()) } else { Err("warming up".to_owned()) }
        }));
        assert_eq!(get(app.clone(), "/healthz").await, (StatusCode::OK, "ok".to_owned()));
        let (status, body) = get(app.clone(), "/readyz").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body, r#"{"code":503,"message":"not ready: warming up","ready":false}"#);
        up.store(true, std::sync::atomic::Ordering::SeqCst);
        assert_eq!(get(app, "/readyz").await, (StatusCode::OK, "ok".to_owned()));
    }
}
