//! `AdmissionReview` (`admission.k8s.io/v1`) wire types, written by hand.
//!
//! kube-core's admission types are not used: its response serialises `patch` as an array of
//! numbers instead of the documented base64 string (kube-rs#1781), and its `invalid()` drops
//! the request uid, which makes the apiserver discard the answer. Here the response always
//! echoes the uid, and `patchType`/`patch` appear together or not at all.
//!
//! Reference: `k8s.io/api/admission/v1/types.go`.

use std::collections::BTreeMap;

use base64::{Engine as _, engine::general_purpose::STANDARD};
use serde::{Deserialize, Deserializer, Serialize, Serializer, de, ser};
use serde_json::{Value, value::RawValue};
use stowage_policy::text;

/// The only review version served.
pub const API_VERSION: &str = "admission.k8s.io/v1";
/// The review kind.
pub const KIND: &str = "AdmissionReview";
/// The only patch type the apiserver accepts.
pub const PATCH_TYPE_JSON_PATCH: &str = "JSONPatch";
/// The uid of synthetic requests built by [`AdmissionRequest::create_pod`].
pub const SYNTHETIC_UID: &str = "00000000-0000-0000-0000-000000000000";

/// Longest denial message sent. Every denial names a few offending items and counts the rest,
/// so this is a backstop: a review of any size gets an answer of a few KiB.
pub const MAX_DENIAL_MESSAGE: usize = 4096;
/// Longest serde error or field value quoted in a [`DecodeError`].
const MAX_DECODE_ECHO: usize = 256;

/// Why a request body is not a usable `AdmissionReview`. Quoted input is cut short.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The body has no bytes.
    #[error("request body is empty; expected an AdmissionReview")]
    Empty,
    /// The body is not JSON, or not shaped like a review.
    #[error("request body is not a valid AdmissionReview: {0}")]
    Json(String),
    /// Another review version or another kind.
    #[error(
        "unsupported review: got apiVersion {api_version:?} and kind {kind:?}; \
         expected apiVersion \"admission.k8s.io/v1\" and kind \"AdmissionReview\""
    )]
    Version {
        /// The apiVersion received (empty when absent).
        api_version: String,
        /// The kind received (empty when absent).
        kind: String,
    },
    /// `request` is absent or null.
    #[error("AdmissionReview has no request")]
    MissingRequest,
    /// `request` is present but malformed.
    #[error("AdmissionReview request is invalid: {0}")]
    Request(String),
}

impl DecodeError {
    /// A bounded label for metrics.
    #[must_use]
    pub const fn reason(&self) -> &'static str {
        match self {
            Self::Empty => "empty_body",
            Self::Json(_) | Self::Request(_) => "bad_json",
            Self::Version { .. } => "bad_version",
            Self::MissingRequest => "missing_request",
        }
    }
}

/// Group, version and kind of an object.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupVersionKind {
    /// API group (`""` for the core group).
    #[serde(default)]
    pub group: String,
    /// API version.
    #[serde(default)]
    pub version: String,
    /// Kind.
    #[serde(default)]
    pub kind: String,
}

/// Group, version and resource of a request.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupVersionResource {
    /// API group (`""` for the core group).
    #[serde(default)]
    pub group: String,
    /// API version.
    #[serde(default)]
    pub version: String,
    /// Resource (plural, lower case).
    #[serde(default)]
    pub resource: String,
}

/// The operation under review.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Operation {
    /// Object creation.
    Create,
    /// Object update.
    Update,
    /// Object deletion.
    Delete,
    /// Connect (exec, attach, port-forward, proxy).
    Connect,
    /// Anything newer; never mutated.
    #[serde(other)]
    Unknown,
}

/// `AdmissionReview.request`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AdmissionRequest {
    /// Identifies this review; the response must echo it.
    pub uid: String,
    /// Kind of the object as sent to the webhook.
    #[serde(default)]
    pub kind: GroupVersionKind,
    /// Resource being acted on.
    #[serde(default)]
    pub resource: GroupVersionResource,
    /// Subresource (`status`, `binding`, `eviction`...), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub_resource: Option<String>,
    /// Kind of the original request, when converted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_kind: Option<GroupVersionKind>,
    /// Resource of the original request, when converted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_resource: Option<GroupVersionResource>,
    /// Subresource of the original request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_sub_resource: Option<String>,
    /// Object name; empty when the client used `generateName`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Namespace of the object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// The operation.
    pub operation: Operation,
    /// The requesting user (kept opaque).
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub user_info: Value,
    /// The object as it would be stored (CREATE, UPDATE).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object: Option<Value>,
    /// The object as stored before (UPDATE, DELETE).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub old_object: Option<Value>,
    /// True for dry-run requests; they must have no side effects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dry_run: Option<bool>,
    /// Operation options (`CreateOptions`...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub options: Option<Value>,
}

impl AdmissionRequest {
    /// A pod CREATE request as the apiserver would send it, for offline use (`stowage mutate`):
    /// answering it with [`crate::admit()`] gives exactly what the live webhook would return.
    /// The namespace is the pod's own, else `default_namespace`.
    #[must_use]
    pub fn create_pod(pod: Value, default_namespace: &str) -> Self {
        let meta = pod.get("metadata");
        let text = |key: &str| meta.and_then(|m| m.get(key)).and_then(Value::as_str).filter(|s| !s.is_empty());
        let namespace = text("namespace").unwrap_or(default_namespace).to_owned();
        let name = text("name").unwrap_or_default().to_owned();
        let kind = GroupVersionKind { group: String::new(), version: "v1".to_owned(), kind: "Pod".to_owned() };
        let resource =
            GroupVersionResource { group: String::new(), version: "v1".to_owned(), resource: "pods".to_owned() };
        Self {
            uid: SYNTHETIC_UID.to_owned(),
            request_kind: Some(kind.clone()),
            request_resource: Some(resource.clone()),
            kind,
            resource,
            sub_resource: None,
            request_sub_resource: None,
            name: Some(name),
            namespace: Some(namespace),
            operation: Operation::Create,
            user_info: Value::Null,
            object: Some(pod),
            old_object: None,
            dry_run: Some(false),
            options: None,
        }
    }

    /// True for a dry-run request.
    #[must_use]
    pub fn is_dry_run(&self) -> bool {
        self.dry_run == Some(true)
    }
}

/// `status` of a denied review (a subset of `metav1.Status`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    /// HTTP-style code the apiserver reports to the client.
    pub code: u16,
    /// Human-readable reason of the denial.
    pub message: String,
    /// Machine-readable reason (`BadRequest`...).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
}

/// `AdmissionReview.response`.
///
/// Serialises `patch` as base64 with `patchType: JSONPatch`, and omits both when the patch has
/// no operations (the apiserver rejects one without the other).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct AdmissionResponse {
    /// The request uid, echoed.
    pub uid: String,
    /// Whether the object is admitted.
    pub allowed: bool,
    /// Why it was denied.
    pub status: Option<Status>,
    /// Mutation to apply, if any.
    pub patch: Option<json_patch::Patch>,
    /// Messages shown to the client as `Warning` headers.
    pub warnings: Vec<String>,
    /// Annotations for the audit event (prefixed by the apiserver with the webhook name).
    pub audit_annotations: BTreeMap<String, String>,
}

impl AdmissionResponse {
    /// Admits the request unchanged.
    #[must_use]
    pub fn allow(uid: &str) -> Self {
        Self { uid: uid.to_owned(), allowed: true, ..Self::default() }
    }

    /// Denies the request with a code (e.g. 400) and a message, cut to [`MAX_DENIAL_MESSAGE`]
    /// bytes.
    #[must_use]
    pub fn deny(uid: &str, code: u16, message: impl Into<String>) -> Self {
        let mut message = message.into();
        text::truncate(&mut message, MAX_DENIAL_MESSAGE);
        let reason = match code {
            400 => "BadRequest",
            403 => "Forbidden",
            422 => "Invalid",
            _ => "",
        };
        Self {
            uid: uid.to_owned(),
            allowed: false,
            status: Some(Status { code, message, reason: reason.to_owned() }),
            ..Self::default()
        }
    }

    /// Sets the patch; an empty one is dropped so no `patch`/`patchType` is sent.
    #[must_use]
    pub fn with_patch(mut self, patch: json_patch::Patch) -> Self {
        self.patch = if patch.0.is_empty() { None } else { Some(patch) };
        self
    }

    /// Number of patch operations.
    #[must_use]
    pub fn operations(&self) -> usize {
        self.patch.as_ref().map_or(0, |p| p.0.len())
    }

    /// Applies the patch to `object` (for showing the mutated pod).
    ///
    /// # Errors
    /// When an operation does not apply; `object` is then left unchanged.
    pub fn apply_to(&self, object: &mut Value) -> Result<(), json_patch::PatchError> {
        match &self.patch {
            Some(patch) => json_patch::patch(object, patch),
            None => Ok(()),
        }
    }
}

/// The JSON shape of [`AdmissionResponse`].
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireResponse {
    uid: String,
    allowed: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    status: Option<Status>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    patch_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    patch: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    warnings: Vec<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    audit_annotations: BTreeMap<String, String>,
}

impl Serialize for AdmissionResponse {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let patch = match &self.patch {
            Some(patch) if !patch.0.is_empty() => {
                Some(STANDARD.encode(serde_json::to_vec(patch).map_err(ser::Error::custom)?))
            }
            _ => None,
        };
        WireResponse {
            uid: self.uid.clone(),
            allowed: self.allowed,
            status: self.status.clone(),
            patch_type: patch.as_ref().map(|_| PATCH_TYPE_JSON_PATCH.to_owned()),
            patch,
            warnings: self.warnings.clone(),
            audit_annotations: self.audit_annotations.clone(),
        }
        .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for AdmissionResponse {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let wire = WireResponse::deserialize(deserializer)?;
        let patch = match (&wire.patch_type, &wire.patch) {
            (None, None) => None,
            (Some(t), Some(p)) if t == PATCH_TYPE_JSON_PATCH => {
                let bytes = STANDARD.decode(p).map_err(de::Error::custom)?;
                Some(serde_json::from_slice(&bytes).map_err(de::Error::custom)?)
            }
            (Some(t), Some(_)) => return Err(de::Error::custom(format!("invalid response.patchType of {t:?}"))),
            (Some(_), None) => return Err(de::Error::custom("response.patchType without response.patch")),
            (None, Some(_)) => return Err(de::Error::custom("response.patch without response.patchType")),
        };
        Ok(Self {
            uid: wire.uid,
            allowed: wire.allowed,
            status: wire.status,
            patch,
            warnings: wire.warnings,
            audit_annotations: wire.audit_annotations,
        })
    }
}

/// An `AdmissionReview` envelope, in either direction.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AdmissionReview {
    /// Always [`API_VERSION`].
    pub api_version: String,
    /// Always [`KIND`].
    pub kind: String,
    /// The request (apiserver to webhook).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<AdmissionRequest>,
    /// The response (webhook to apiserver).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response: Option<AdmissionResponse>,
}

impl AdmissionReview {
    /// Wraps a request, as the apiserver sends it.
    #[must_use]
    pub fn from_request(request: AdmissionRequest) -> Self {
        Self { api_version: API_VERSION.to_owned(), kind: KIND.to_owned(), request: Some(request), response: None }
    }

    /// Wraps a response, echoing the (only supported) request apiVersion and kind.
    #[must_use]
    pub fn from_response(response: AdmissionResponse) -> Self {
        Self { api_version: API_VERSION.to_owned(), kind: KIND.to_owned(), request: None, response: Some(response) }
    }
}

/// The envelope read before the request itself, so version and kind are checked first.
#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(rename = "apiVersion", default)]
    api_version: Option<String>,
    #[serde(default)]
    kind: Option<String>,
    #[serde(borrow, default)]
    request: Option<&'a RawValue>,
}

/// Decodes a request body into the review's request, checking version, kind and presence.
///
/// # Errors
/// [`DecodeError`] naming what is wrong (JSON errors carry serde's line and column).
pub fn decode_request(body: &[u8]) -> Result<AdmissionRequest, DecodeError> {
    if body.is_empty() {
        return Err(DecodeError::Empty);
    }
    let quote = |s: &str| text::clip(s, MAX_DECODE_ECHO);
    let envelope: Envelope<'_> = serde_json::from_slice(body).map_err(|e| DecodeError::Json(quote(&e.to_string())))?;
    let api_version = envelope.api_version.unwrap_or_default();
    let kind = envelope.kind.unwrap_or_default();
    if api_version != API_VERSION || kind != KIND {
        return Err(DecodeError::Version { api_version: quote(&api_version), kind: quote(&kind) });
    }
    let raw = envelope.request.filter(|r| r.get() != "null").ok_or(DecodeError::MissingRequest)?;
    serde_json::from_str(raw.get()).map_err(|e| DecodeError::Request(quote(&e.to_string())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn body(v: &Value) -> Vec<u8> {
        serde_json::to_vec(v).unwrap()
    }

    #[test]
    fn decodes_a_minimal_request() {
        let req = decode_request(&body(&json!({
            "apiVersion": API_VERSION, "kind": KIND,
            "request": {"uid": "u1", "operation": "CREATE", "kind": {"group": "", "version": "v1", "kind": "Pod"},
                        "resource": {"group": "", "version": "v1", "resource": "pods"}, "object": {"a": 1},
                        "dryRun": true}
        })))
        .unwrap();
        assert_eq!(req.uid, "u1");
        assert_eq!(req.operation, Operation::Create);
        assert!(req.is_dry_run());
        assert_eq!(req.object, Some(json!({"a": 1})));
    }

    #[test]
    fn unknown_operations_are_kept_apart() {
        let req: AdmissionRequest = serde_json::from_value(json!({"uid": "u", "operation": "PATCH"})).unwrap();
        assert_eq!(req.operation, Operation::Unknown);
    }

    #[test]
    fn decode_errors_are_precise() {
        assert_eq!(decode_request(b""), Err(DecodeError::Empty));
        let DecodeError::Json(msg) = decode_request(b"{\n  \"apiVersion\": }").unwrap_err() else { panic!() };
        assert!(msg.contains("line 2 column"), "{msg}");
        assert_eq!(
            decode_request(&body(&json!({"apiVersion": "admission.k8s.io/v1beta1", "kind": KIND}))),
            Err(DecodeError::Version { api_version: "admission.k8s.io/v1beta1".into(), kind: KIND.into() })
        );
        let text = decode_request(b"{}").unwrap_err().to_string();
        assert!(text.contains("got apiVersion \"\" and kind \"\"") && text.contains("expected apiVersion"), "{text}");
        for missing in [
            json!({"apiVersion": API_VERSION, "kind": KIND}),
            json!({"apiVersion": API_VERSION, "kind": KIND, "request": null}),
        ] {
            assert_eq!(decode_request(&body(&missing)), Err(DecodeError::MissingRequest));
        }
        let bad = decode_request(&body(
            &json!({"apiVersion": API_VERSION, "kind": KIND, "request": {"operation": "CREATE"}}),
        ));
        assert!(matches!(&bad, Err(DecodeError::Request(m)) if m.contains("uid")), "{bad:?}");
    }

    #[test]
    fn response_patch_is_base64_with_its_type_or_absent() {
        let patch: json_patch::Patch =
            serde_json::from_value(json!([{"op": "add", "path": "/spec/replicas", "value": 3}])).unwrap();
        let v = serde_json::to_value(AdmissionResponse::allow("u").with_patch(patch.clone())).unwrap();
        assert_eq!(v["patchType"], "JSONPatch");
        let decoded = STANDARD.decode(v["patch"].as_str().unwrap()).unwrap();
        assert_eq!(
            serde_json::from_slice::<Value>(&decoded).unwrap(),
            json!([{"op": "add", "path": "/spec/replicas", "value": 3}])
        );
        let back: AdmissionResponse = serde_json::from_value(v).unwrap();
        assert_eq!(back.patch, Some(patch));

        let empty = serde_json::to_value(AdmissionResponse::allow("u").with_patch(json_patch::Patch(vec![]))).unwrap();
        assert_eq!(empty, json!({"uid": "u", "allowed": true}));
        // Even a hand-set empty patch is never sent.
        let manual = AdmissionResponse { patch: Some(json_patch::Patch(vec![])), ..AdmissionResponse::allow("u") };
        assert_eq!(serde_json::to_value(manual).unwrap(), json!({"uid": "u", "allowed": true}));
    }

    #[test]
    fn denial_carries_code_message_and_reason() {
        let v = serde_json::to_value(AdmissionReview::from_response(AdmissionResponse::deny("u", 400, "bad"))).unwrap();
        assert_eq!(
            v,
            json!({"apiVersion": API_VERSION, "kind": KIND,
                   "response": {"uid": "u", "allowed": false, "status": {"code": 400, "message": "bad", "reason": "BadRequest"}}})
        );
    }

    #[test]
    fn synthetic_create_request_uses_the_pod_namespace_or_the_default() {
        let r = AdmissionRequest::create_pod(json!({"metadata": {"name": "p", "namespace": "db"}}), "default");
        assert_eq!((r.namespace.as_deref(), r.name.as_deref()), (Some("db"), Some("p")));
        assert_eq!(r.operation, Operation::Create);
        let r = AdmissionRequest::create_pod(json!({"metadata": {"generateName": "p-"}}), "other");
        assert_eq!(r.namespace.as_deref(), Some("other"));
        let review = serde_json::to_value(AdmissionReview::from_request(r)).unwrap();
        assert_eq!(decode_request(&body(&review)).unwrap().uid, SYNTHETIC_UID);
    }
}
