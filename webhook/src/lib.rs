//! Stowage's mutating admission webhook.
//!
//! - [`review`]: the `AdmissionReview` v1 wire types and request decoding;
//! - [`mod@admit`]: the decision for one request (pure; shared with `stowage mutate`);
//! - [`planner`]: the pod mutation planner, raw JSON in, JSON Patch and warnings out;
//! - [`handler`]: the HTTP routes (`/mutate`, `/healthz`, `/readyz`) with limits;
//! - [`metrics`]: Prometheus metrics of the endpoint.
//!
//! Embedding: build a [`WebhookState`] over the hot-reloadable config, serve [`router`], and
//! flip [`WebhookState::set_ready`] once TLS and config are loaded. Offline: wrap a pod in
//! [`AdmissionRequest::create_pod`] and call [`admit()`].

pub mod admit;
pub mod handler;
pub mod metrics;
pub mod planner;
pub mod review;

pub use admit::{AdmitContext, MemberSource, NoMembers, Outcome, StaticMembers, Verdict, admit, decide};
pub use handler::{INLINE_DECISION_MAX_BYTES, Limits, Reject, WebhookState, router};
pub use metrics::AdmissionMetrics;
pub use planner::{Denial, Plan, plan};
pub use review::{AdmissionRequest, AdmissionResponse, AdmissionReview, Operation, decode_request};
