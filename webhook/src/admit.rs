//! The admission decision: which requests are mutated, denied or let through untouched.
//!
//! Pure and synchronous, shared by the HTTP handler and the `stowage mutate` command (which wraps
//! a pod file in [`AdmissionRequest::create_pod`]), so the command prints exactly what the live
//! webhook would apply.

use std::collections::{BTreeMap, HashMap};

use k8s_openapi::{api::core::v1::PodSpec, apimachinery::pkg::apis::meta::v1::ObjectMeta};
use serde::Deserialize;
use stowage_policy::{Config, text};

use crate::{
    planner,
    review::{AdmissionRequest, AdmissionResponse, Operation},
};

/// Annotation the kubelet sets on mirror pods of static pods; those are never mutated.
pub const MIRROR_ANNOTATION: &str = "kubernetes.io/config.mirror";

/// Where the member count of a StatefulSet comes from (the binary reads its StatefulSet cache).
pub trait MemberSource: Send + Sync {
    /// `spec.replicas` of the StatefulSet `namespace/name`, if known.
    fn statefulset_replicas(&self, namespace: &str, name: &str) -> Option<u32>;
}

/// A [`MemberSource`] that knows nothing (offline use without a snapshot).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoMembers;

impl MemberSource for NoMembers {
    fn statefulset_replicas(&self, _namespace: &str, _name: &str) -> Option<u32> {
        None
    }
}

/// A fixed map of StatefulSet replica counts (tests, snapshots).
#[derive(Debug, Clone, Default)]
pub struct StaticMembers(HashMap<(String, String), u32>);

impl StaticMembers {
    /// Adds `namespace/name` with `replicas` members.
    #[must_use]
    pub fn with(mut self, namespace: &str, name: &str, replicas: u32) -> Self {
        self.0.insert((namespace.to_owned(), name.to_owned()), replicas);
        self
    }
}

impl MemberSource for StaticMembers {
    fn statefulset_replicas(&self, namespace: &str, name: &str) -> Option<u32> {
        self.0.get(&(namespace.to_owned(), name.to_owned())).copied()
    }
}

impl<F> MemberSource for F
where
    F: Fn(&str, &str) -> Option<u32> + Send + Sync,
{
    fn statefulset_replicas(&self, namespace: &str, name: &str) -> Option<u32> {
        self(namespace, name)
    }
}

/// What one decision needs besides the request.
#[derive(Clone, Copy)]
pub struct AdmitContext<'a> {
    /// The cluster config (the binary loads it from its hot-reloaded `ArcSwap`).
    pub config: &'a Config,
    /// Namespaces never mutated (the webhook's own belongs here).
    pub skip_namespaces: &'a [String],
    /// Replica counts of owning StatefulSets.
    pub members: &'a dyn MemberSource,
}

impl<'a> AdmitContext<'a> {
    /// A context with no skipped namespaces and no member source.
    #[must_use]
    pub fn new(config: &'a Config) -> Self {
        Self { config, skip_namespaces: &[], members: &NoMembers }
    }

    /// Sets the namespaces never mutated.
    #[must_use]
    pub fn skip_namespaces(mut self, namespaces: &'a [String]) -> Self {
        self.skip_namespaces = namespaces;
        self
    }

    /// Sets the member source.
    #[must_use]
    pub fn members(mut self, members: &'a dyn MemberSource) -> Self {
        self.members = members;
        self
    }
}

/// How a review ended, for metrics and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// Admitted with a patch.
    Mutated,
    /// An opted-in pod that needed no change.
    Unchanged,
    /// Refused.
    Denied,
    /// Not for this webhook (other kind or operation, skipped namespace, mirror pod, not opted in).
    Skipped,
}

impl Outcome {
    /// Lower-case label value.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Mutated => "mutated",
            Self::Unchanged => "unchanged",
            Self::Denied => "denied",
            Self::Skipped => "skipped",
        }
    }
}

/// A response with how it was reached.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    /// The response to send.
    pub response: AdmissionResponse,
    /// The outcome class.
    pub outcome: Outcome,
}

/// Answers one admission request.
#[must_use]
pub fn admit(request: &AdmissionRequest, ctx: &AdmitContext<'_>) -> AdmissionResponse {
    decide(request, ctx).response
}

/// Answers one admission request and says how.
///
/// Only pod CREATE requests (core group, v1, no subresource) are mutated: a pod's resources and
/// affinity are immutable afterwards, and patching UPDATEs breaks label edits. A dry run gets
/// the identical answer (there are no side effects to suppress).
#[must_use]
pub fn decide(request: &AdmissionRequest, ctx: &AdmitContext<'_>) -> Verdict {
    let uid = request.uid.as_str();
    let skip = || Verdict { response: AdmissionResponse::allow(uid), outcome: Outcome::Skipped };
    let deny = |code: u16, message: String| Verdict {
        response: AdmissionResponse::deny(uid, code, message),
        outcome: Outcome::Denied,
    };

    if !is_pod_create(request) {
        return skip();
    }
    let Some(object) = request.object.as_ref() else {
        return deny(400, "request.object is missing; expected the pod being created".to_owned());
    };
    let Some(pod) = object.as_object() else {
        return deny(400, "request.object is not a JSON object".to_owned());
    };
    let mut meta = match pod.get("metadata").map(ObjectMeta::deserialize).transpose() {
        Ok(meta) => meta.unwrap_or_default(),
        Err(e) => {
            return deny(400, format!("request.object.metadata is not valid object metadata: {}", serde_error(&e)));
        }
    };
    // The apiserver fills the namespace in before admission, but be exact about the group key.
    let namespace = request
        .namespace
        .clone()
        .filter(|ns| !ns.is_empty())
        .or_else(|| meta.namespace.clone())
        .unwrap_or_else(|| "default".to_owned());
    if ctx.skip_namespaces.contains(&namespace) {
        return skip();
    }
    if meta.annotations.as_ref().is_some_and(|a| a.contains_key(MIRROR_ANNOTATION)) {
        return skip();
    }
    meta.namespace = Some(namespace.clone());
    let policy = match stowage_policy::resolve(&meta, ctx.config) {
        Ok(Some(policy)) => policy,
        Ok(None) => return skip(),
        Err(errors) => return deny(400, errors.to_string()),
    };
    if let Err(e) = stowage_policy::tenancy::check(
        ctx.config,
        &policy.profile_name,
        policy.pool.as_ref().map(|(name, _)| name.as_str()),
        &namespace,
    ) {
        return deny(403, e.to_string());
    }
    if let Err(e) = pod.get("spec").map_or(Ok(()), |spec| PodSpec::deserialize(spec).map(drop)) {
        return deny(400, format!("request.object.spec is not a valid pod spec: {}", serde_error(&e)));
    }
    let members = policy.statefulset.as_deref().and_then(|sts| ctx.members.statefulset_replicas(&namespace, sts));
    match planner::plan(object, &policy, ctx.config, members) {
        Ok(plan) => {
            let outcome = if plan.patch.0.is_empty() { Outcome::Unchanged } else { Outcome::Mutated };
            let mut response = AdmissionResponse::allow(uid).with_patch(plan.patch);
            response.warnings = plan.warnings;
            response.audit_annotations = BTreeMap::from([("profile".to_owned(), policy.profile_name.clone())]);
            Verdict { response, outcome }
        }
        Err(denial) => deny(denial.code(), denial.to_string()),
    }
}

/// Longest serde error quoted in a denial: serde quotes the offending string whole
/// (`invalid type: string "…", expected a sequence`).
const MAX_SERDE_ERROR: usize = 256;

fn serde_error(e: &serde_json::Error) -> String {
    text::clip(&e.to_string(), MAX_SERDE_ERROR)
}

fn is_pod_create(r: &AdmissionRequest) -> bool {
    r.operation == Operation::Create
        && r.resource.group.is_empty()
        && r.resource.version == "v1"
        && r.resource.resource == "pods"
        && r.sub_resource.as_deref().unwrap_or_default().is_empty()
        && r.kind.group.is_empty()
        && r.kind.kind == "Pod"
}
