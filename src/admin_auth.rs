//! Authentication and authorisation of the admin port's `/metrics` and `/debug/*`, the way
//! Kubernetes components and controller-runtime's secure metrics serving do it: the bearer
//! token is checked with a TokenReview, then the user it names is checked with a
//! SubjectAccessReview for the request's path and verb (a non-resource URL, so RBAC grants it
//! with `nonResourceURLs`). Answers are cached briefly in a bounded map. Probes never pass
//! through here.

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::Arc,
    time::{Duration, Instant},
};

use axum::{
    extract::{Request, State},
    http::{HeaderValue, StatusCode, header},
    middleware::Next,
    response::{IntoResponse, Response},
};
use k8s_openapi::api::{
    authentication::v1::{TokenReview, TokenReviewSpec, UserInfo},
    authorization::v1::{NonResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec},
};
use kube::{Api, api::PostParams};
use parking_lot::Mutex;
use sha2::{Digest as _, Sha256};
use stowage_policy::text;
use tokio::sync::Semaphore;
use tracing::warn;

use crate::cli::AdminAuthMode;

/// How long an allowed answer is reused (the authenticator's token cache TTL upstream).
const ALLOW_TTL: Duration = Duration::from_secs(60);
/// How long a refusal is reused (the authorizer's deny cache TTL upstream).
const DENY_TTL: Duration = Duration::from_secs(30);
/// Most cached answers; a full cache drops its expired entries, then everything.
const MAX_CACHED: usize = 4096;
/// Reviews in flight towards the apiserver at once; more requests wait for a slot.
const MAX_REVIEWS: usize = 8;
/// Longest wait for the apiserver's answers (slot and both reviews).
const REVIEW_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest bearer token accepted (service account tokens are about 1 KiB).
const MAX_TOKEN: usize = 16 * 1024;

/// Errors choosing the admin port's protection.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Error {
    /// `none` on an address other processes can reach.
    #[error(
        "--admin-auth=none serves /metrics and /debug/* to anyone who connects, so it needs a loopback --admin-addr (127.0.0.1 or [::1]), not {0}"
    )]
    NotLoopback(SocketAddr),
    /// `kubernetes` without an apiserver to ask.
    #[error(
        "--admin-auth=kubernetes asks the apiserver (TokenReview, SubjectAccessReview) and cannot run with --snapshot; use --admin-auth=none with a loopback --admin-addr"
    )]
    NoCluster,
}

/// How the admin port protects `/metrics` and `/debug/*`.
#[derive(Clone)]
pub(crate) enum AdminAuth {
    /// No check (loopback only).
    None,
    /// TokenReview + SubjectAccessReview.
    Kubernetes(Arc<Delegated>),
}

impl AdminAuth {
    /// The protection `mode` asks for, refused where it would be unsafe or cannot work.
    pub(crate) fn new(mode: AdminAuthMode, addr: SocketAddr, client: Option<kube::Client>) -> Result<Self, Error> {
        match mode {
            AdminAuthMode::None if addr.ip().is_loopback() => Ok(Self::None),
            AdminAuthMode::None => Err(Error::NotLoopback(addr)),
            AdminAuthMode::Kubernetes => {
                let client = client.ok_or(Error::NoCluster)?;
                Ok(Self::Kubernetes(Arc::new(Delegated {
                    client,
                    cache: Mutex::new(HashMap::new()),
                    slots: Semaphore::new(MAX_REVIEWS),
                })))
            }
        }
    }
}

/// The middleware: passes the request on, or answers 401, 403 or 503 with a plain-text reason.
pub(crate) async fn require(State(auth): State<AdminAuth>, request: Request, next: Next) -> Response {
    let AdminAuth::Kubernetes(delegated) = auth else { return next.run(request).await };
    let verb = request.method().as_str().to_ascii_lowercase();
    let path = request.uri().path().to_owned();
    let Some(token) = bearer(request.headers().get(header::AUTHORIZATION)) else {
        return unauthorized("send a bearer token the apiserver accepts (Authorization: Bearer <token>)");
    };
    match delegated.decide(token, &verb, &path).await {
        Ok(Decision::Allowed) => next.run(request).await,
        Ok(Decision::Unauthenticated) => unauthorized("the apiserver did not accept the bearer token"),
        Ok(Decision::Forbidden(user)) => (
            StatusCode::FORBIDDEN,
            format!(
                "Forbidden: user {user:?} may not {verb} {path}; grant it a ClusterRole with nonResourceURLs [{path}] (or a wildcard) and verb {verb}, e.g. stowage-metrics-reader\n",
                path = text::echo(&path),
            ),
        )
            .into_response(),
        Err(e) => {
            warn!("admin port: checking a request failed: {e}");
            (StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable: the apiserver could not check the request\n")
                .into_response()
        }
    }
}

fn unauthorized(why: &str) -> Response {
    let mut response = (StatusCode::UNAUTHORIZED, format!("Unauthorized: {why}\n")).into_response();
    response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    response
}

/// The token of an `Authorization: Bearer <token>` header.
fn bearer(value: Option<&HeaderValue>) -> Option<&str> {
    let value = value?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty() && token.len() <= MAX_TOKEN).then_some(token)
}

/// What the apiserver said about one token, verb and path.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Decision {
    Allowed,
    Unauthenticated,
    /// The user name (clipped).
    Forbidden(String),
}

/// The apiserver-backed checker and its cache.
pub(crate) struct Delegated {
    client: kube::Client,
    cache: Mutex<HashMap<[u8; 32], (Decision, Instant)>>,
    slots: Semaphore,
}

impl Delegated {
    async fn decide(&self, token: &str, verb: &str, path: &str) -> Result<Decision, String> {
        let key = cache_key(token, verb, path);
        if let Some(hit) = self.cached(&key) {
            return Ok(hit);
        }
        let decision = tokio::time::timeout(REVIEW_TIMEOUT, self.review(token, verb, path))
            .await
            .map_err(|_| format!("no answer within {REVIEW_TIMEOUT:?}"))??;
        self.remember(key, decision.clone());
        Ok(decision)
    }

    fn cached(&self, key: &[u8; 32]) -> Option<Decision> {
        let cache = self.cache.lock();
        cache.get(key).filter(|(_, expires)| *expires > Instant::now()).map(|(d, _)| d.clone())
    }

    fn remember(&self, key: [u8; 32], decision: Decision) {
        let now = Instant::now();
        let ttl = if decision == Decision::Allowed { ALLOW_TTL } else { DENY_TTL };
        let mut cache = self.cache.lock();
        if cache.len() >= MAX_CACHED {
            cache.retain(|_, (_, expires)| *expires > now);
            if cache.len() >= MAX_CACHED {
                cache.clear();
            }
        }
        cache.insert(key, (decision, now + ttl));
    }

    async fn review(&self, token: &str, verb: &str, path: &str) -> Result<Decision, String> {
        let _slot = self.slots.acquire().await.map_err(|e| e.to_string())?;
        let review = TokenReview {
            spec: TokenReviewSpec { token: Some(token.to_owned()), ..TokenReviewSpec::default() },
            ..TokenReview::default()
        };
        let reviewed = Api::<TokenReview>::all(self.client.clone())
            .create(&PostParams::default(), &review)
            .await
            .map_err(|e| format!("TokenReview: {e}"))?;
        let status = reviewed.status.unwrap_or_default();
        let user = match (status.authenticated, status.user) {
            (Some(true), Some(user)) => user,
            _ => return Ok(Decision::Unauthenticated),
        };
        let access = Api::<SubjectAccessReview>::all(self.client.clone())
            .create(&PostParams::default(), &access_review(&user, verb, path))
            .await
            .map_err(|e| format!("SubjectAccessReview: {e}"))?;
        Ok(if access.status.is_some_and(|s| s.allowed) {
            Decision::Allowed
        } else {
            Decision::Forbidden(text::echo(user.username.as_deref().unwrap_or_default()))
        })
    }
}

/// The SubjectAccessReview for `user` doing `verb` on the non-resource URL `path`.
fn access_review(user: &UserInfo, verb: &str, path: &str) -> SubjectAccessReview {
    SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: user.username.clone(),
            uid: user.uid.clone(),
            groups: user.groups.clone(),
            extra: user.extra.clone(),
            non_resource_attributes: Some(NonResourceAttributes {
                path: Some(path.to_owned()),
                verb: Some(verb.to_owned()),
            }),
            ..SubjectAccessReviewSpec::default()
        },
        ..SubjectAccessReview::default()
    }
}

/// The cache key: a hash, so tokens are not kept in memory longer than a request.
fn cache_key(token: &str, verb: &str, path: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    for part in [token, verb, path] {
        h.update(part.len().to_le_bytes());
        h.update(part.as_bytes());
    }
    h.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_tokens_are_read_exactly() {
        let v = |s: &'static str| HeaderValue::from_static(s);
        assert_eq!(bearer(Some(&v("Bearer abc"))), Some("abc"));
        assert_eq!(bearer(Some(&v("bearer  abc "))), Some("abc"));
        assert_eq!(bearer(Some(&v("Basic abc"))), None);
        assert_eq!(bearer(Some(&v("Bearer "))), None);
        assert_eq!(bearer(None), None);
        let long = HeaderValue::from_str(&format!("Bearer {}", "x".repeat(MAX_TOKEN + 1))).unwrap();
        assert_eq!(bearer(Some(&long)), None);
    }

    #[test]
    fn none_is_refused_off_loopback() {
        let any: SocketAddr = "0.0.0.0:9090".parse().unwrap();
        let local: SocketAddr = "127.0.0.1:9090".parse().unwrap();
        let local6: SocketAddr = "[::1]:9090".parse().unwrap();
        assert!(matches!(AdminAuth::new(AdminAuthMode::None, local, None), Ok(AdminAuth::None)));
        assert!(matches!(AdminAuth::new(AdminAuthMode::None, local6, None), Ok(AdminAuth::None)));
        let err = AdminAuth::new(AdminAuthMode::None, any, None).err().unwrap();
        assert_eq!(
            err.to_string(),
            "--admin-auth=none serves /metrics and /debug/* to anyone who connects, so it needs a loopback --admin-addr (127.0.0.1 or [::1]), not 0.0.0.0:9090"
        );
        assert!(matches!(AdminAuth::new(AdminAuthMode::Kubernetes, any, None), Err(Error::NoCluster)));
    }

    #[test]
    fn access_reviews_ask_for_the_non_resource_url() {
        let user = UserInfo {
            username: Some("system:serviceaccount:monitoring:prometheus".to_owned()),
            groups: Some(vec!["system:serviceaccounts".to_owned()]),
            uid: Some("u".to_owned()),
            extra: None,
        };
        let review = serde_json::to_value(access_review(&user, "get", "/debug/decisions")).unwrap();
        assert_eq!(
            review["spec"],
            serde_json::json!({
                "user": "system:serviceaccount:monitoring:prometheus",
                "uid": "u",
                "groups": ["system:serviceaccounts"],
                "nonResourceAttributes": {"path": "/debug/decisions", "verb": "get"},
            })
        );
    }

    #[test]
    fn cache_keys_separate_token_verb_and_path() {
        assert_ne!(cache_key("ab", "c", "/m"), cache_key("a", "bc", "/m"));
        assert_ne!(cache_key("t", "get", "/metrics"), cache_key("t", "get", "/debug/decisions"));
    }
}
