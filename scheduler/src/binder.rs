//! Binding pods to nodes: the [`Binder`] trait, the API-server implementation and a fake.
//!
//! [`KubeBinder`] POSTs the `pods/binding` subresource exactly as kube-scheduler's DefaultBinder
//! does: `Binding{metadata{namespace, name, uid}, target{kind: Node, name}}`. The `uid` makes the
//! API server refuse (409) a binding for a recreated pod of the same name. RBAC: `create` on
//! `pods/binding` and `get` on `pods`.
//!
//! Idempotency (a retried bind after a timeout) is handled by the caller
//! ([`crate::service::Extender::bind`]): on [`BindError::Conflict`] it asks
//! [`Binder::current`] where the pod is.

use std::{future::Future, pin::Pin};

use k8s_openapi::{
    api::core::v1::{Binding, ObjectReference, Pod},
    apimachinery::pkg::apis::meta::v1::ObjectMeta,
};
use kube::{Api, Client, api::PostParams};
use parking_lot::Mutex;

/// Why a bind failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BindError {
    /// 409: the pod is already assigned, or was recreated (uid mismatch).
    #[error("conflict: {0}")]
    Conflict(String),
    /// 404: the pod does not exist.
    #[error("not found: {0}")]
    NotFound(String),
    /// Any other API answer.
    #[error("API error {code}: {message}")]
    Api {
        /// HTTP status.
        code: u16,
        /// Message.
        message: String,
    },
    /// The request did not get an answer.
    #[error("request failed: {0}")]
    Transport(String),
}

impl BindError {
    /// Bounded label for metrics.
    #[must_use]
    pub const fn reason(&self) -> &'static str {
        match self {
            BindError::Conflict(_) => "conflict",
            BindError::NotFound(_) => "not_found",
            BindError::Api { .. } => "api",
            BindError::Transport(_) => "transport",
        }
    }
}

impl From<kube::Error> for BindError {
    fn from(e: kube::Error) -> Self {
        match e {
            kube::Error::Api(s) if s.code == 409 => BindError::Conflict(s.message),
            kube::Error::Api(s) if s.code == 404 => BindError::NotFound(s.message),
            kube::Error::Api(s) => BindError::Api { code: s.code, message: s.message },
            other => BindError::Transport(other.to_string()),
        }
    }
}

/// Where a pod currently is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodLocation {
    /// The pod's uid.
    pub uid: String,
    /// `spec.nodeName`, if bound.
    pub node: Option<String>,
}

/// Boxed future of the binder.
pub type BindFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, BindError>> + Send + 'a>>;

/// Binds pods.
pub trait Binder: Send + Sync + std::fmt::Debug + 'static {
    /// Creates the binding of `namespace/name` (uid `uid`, may be empty) to `node`.
    fn bind<'a>(&'a self, namespace: &'a str, name: &'a str, uid: &'a str, node: &'a str) -> BindFuture<'a, ()>;
    /// Where the pod is now; `None` when it does not exist.
    fn current<'a>(&'a self, namespace: &'a str, name: &'a str) -> BindFuture<'a, Option<PodLocation>>;
}

/// Binds through the API server.
#[derive(Clone)]
pub struct KubeBinder {
    client: Client,
}

impl std::fmt::Debug for KubeBinder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KubeBinder")
    }
}

impl KubeBinder {
    /// A binder using `client`.
    #[must_use]
    pub fn new(client: Client) -> Self {
        Self { client }
    }
}

impl Binder for KubeBinder {
    fn bind<'a>(&'a self, namespace: &'a str, name: &'a str, uid: &'a str, node: &'a str) -> BindFuture<'a, ()> {
        Box::pin(async move {
            let binding = Binding {
                metadata: ObjectMeta {
                    namespace: Some(namespace.to_owned()),
                    name: Some(name.to_owned()),
                    uid: (!uid.is_empty()).then(|| uid.to_owned()),
                    ..ObjectMeta::default()
                },
                target: ObjectReference {
                    kind: Some("Node".to_owned()),
                    name: Some(node.to_owned()),
                    ..ObjectReference::default()
                },
            };
            let pods: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
            pods.create_subresource::<Binding, serde_json::Value>("binding", name, &PostParams::default(), &binding)
                .await?;
            Ok(())
        })
    }

    fn current<'a>(&'a self, namespace: &'a str, name: &'a str) -> BindFuture<'a, Option<PodLocation>> {
        Box::pin(async move {
            let pods: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
            let pod = pods.get_opt(name).await?;
            Ok(pod.map(|p| PodLocation {
                uid: p.metadata.uid.unwrap_or_default(),
                node: p.spec.and_then(|s| s.node_name).filter(|n| !n.is_empty()),
            }))
        })
    }
}

/// An in-memory binder for tests: pods are `(namespace, name) → (uid, node)`; a bind of an
/// already bound pod answers 409 like the API server.
#[derive(Debug, Default)]
pub struct FakeBinder {
    pods: Mutex<std::collections::BTreeMap<(String, String), PodLocation>>,
    calls: Mutex<Vec<(String, String, String)>>,
    fail_next: Mutex<Option<BindError>>,
    delay: Mutex<Option<std::time::Duration>>,
}

impl FakeBinder {
    /// Adds a pod.
    pub fn add_pod(&self, namespace: &str, name: &str, uid: &str, node: Option<&str>) {
        self.pods.lock().insert(
            (namespace.to_owned(), name.to_owned()),
            PodLocation { uid: uid.to_owned(), node: node.map(str::to_owned) },
        );
    }

    /// Makes the next bind fail with `err`.
    pub fn fail_next(&self, err: BindError) {
        *self.fail_next.lock() = Some(err);
    }

    /// Delays every bind.
    pub fn set_delay(&self, d: std::time::Duration) {
        *self.delay.lock() = Some(d);
    }

    /// `(namespace/name, uid, node)` of every bind call.
    #[must_use]
    pub fn calls(&self) -> Vec<(String, String, String)> {
        self.calls.lock().clone()
    }
}

impl Binder for FakeBinder {
    fn bind<'a>(&'a self, namespace: &'a str, name: &'a str, uid: &'a str, node: &'a str) -> BindFuture<'a, ()> {
        Box::pin(async move {
            self.calls.lock().push((format!("{namespace}/{name}"), uid.to_owned(), node.to_owned()));
            let delay = *self.delay.lock();
            if let Some(d) = delay {
                tokio::time::sleep(d).await;
            }
            if let Some(e) = self.fail_next.lock().take() {
                return Err(e);
            }
            let mut pods = self.pods.lock();
            let Some(p) = pods.get_mut(&(namespace.to_owned(), name.to_owned())) else {
                return Err(BindError::NotFound(format!("pods \"{name}\" not found")));
            };
            if !uid.is_empty() && p.uid != uid {
                return Err(BindError::Conflict(format!(
                    "Operation cannot be fulfilled on pods/binding \"{name}\": the object might have been deleted and then recreated"
                )));
            }
            if let Some(existing) = &p.node {
                return Err(BindError::Conflict(format!("pod {name} is already assigned to node \"{existing}\"")));
            }
            p.node = Some(node.to_owned());
            Ok(())
        })
    }

    fn current<'a>(&'a self, namespace: &'a str, name: &'a str) -> BindFuture<'a, Option<PodLocation>> {
        Box::pin(async move { Ok(self.pods.lock().get(&(namespace.to_owned(), name.to_owned())).cloned()) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use http::{Request, Response, StatusCode};
    use http_body_util::{BodyExt, Full};
    use std::sync::Arc;

    type Seen = Arc<Mutex<Vec<(String, String, serde_json::Value)>>>;

    /// A client whose API server answers every request with `status` and `body`, recording
    /// method, path and JSON body.
    fn client(status: StatusCode, answer: &'static str, seen: Seen) -> Client {
        let svc = tower::service_fn(move |req: Request<kube::client::Body>| {
            let seen = seen.clone();
            async move {
                let (parts, body) = req.into_parts();
                let bytes = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                let json = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
                seen.lock().push((parts.method.to_string(), parts.uri.path().to_owned(), json));
                Ok::<_, std::convert::Infallible>(
                    Response::builder()
                        .status(status)
                        .header("content-type", "application/json")
                        .body(Full::new(Bytes::from_static(answer.as_bytes())))
                        .unwrap(),
                )
            }
        });
        Client::new(svc, "default")
    }

    #[tokio::test]
    async fn posts_the_binding_like_the_default_binder() {
        let seen: Seen = Arc::default();
        let b = KubeBinder::new(client(
            StatusCode::CREATED,
            r#"{"kind":"Status","status":"Success","code":201}"#,
            seen.clone(),
        ));
        b.bind("db", "pg-0", "u-1", "n1").await.unwrap();
        let (method, path, body) = seen.lock()[0].clone();
        assert_eq!(method, "POST");
        assert_eq!(path, "/api/v1/namespaces/db/pods/pg-0/binding");
        assert_eq!(body["metadata"], serde_json::json!({"name": "pg-0", "namespace": "db", "uid": "u-1"}));
        assert_eq!(body["target"], serde_json::json!({"kind": "Node", "name": "n1"}));
    }

    #[tokio::test]
    async fn maps_api_answers_to_bind_errors() {
        let conflict = r#"{"kind":"Status","status":"Failure","code":409,"reason":"Conflict","message":"pod pg-0 is already assigned to node \"n2\""}"#;
        let b = KubeBinder::new(client(StatusCode::CONFLICT, conflict, Arc::default()));
        let err = b.bind("db", "pg-0", "u-1", "n1").await.unwrap_err();
        assert!(matches!(&err, BindError::Conflict(m) if m.contains("already assigned")), "{err:?}");
        let gone = r#"{"kind":"Status","status":"Failure","code":404,"reason":"NotFound","message":"pods \"pg-0\" not found"}"#;
        let b = KubeBinder::new(client(StatusCode::NOT_FOUND, gone, Arc::default()));
        assert!(matches!(b.bind("db", "pg-0", "", "n1").await, Err(BindError::NotFound(_))));
        assert_eq!(b.current("db", "pg-0").await.unwrap(), None);
    }

    #[tokio::test]
    async fn reads_where_the_pod_is() {
        let pod = r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"pg-0","namespace":"db","uid":"u-1"},"spec":{"nodeName":"n2","containers":[]}}"#;
        let b = KubeBinder::new(client(StatusCode::OK, pod, Arc::default()));
        assert_eq!(
            b.current("db", "pg-0").await.unwrap(),
            Some(PodLocation { uid: "u-1".into(), node: Some("n2".into()) })
        );
    }
}
