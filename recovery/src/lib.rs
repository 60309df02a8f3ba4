//! Recovery of database members stranded on a dead node's local volume, and the zone-failure
//! readiness audit (docs/recovery.md).
//!
//! A member bound to a local volume whose node died stays down forever in plain Kubernetes:
//! evicted, it stays Terminating (no kubelet confirms), the StatefulSet never recreates it, and
//! its claim stays pinned to the dead node's volume. The recovery controller rebuilds such a
//! member — deletes the stranded claim, then force-deletes the pod, so the StatefulSet
//! recreates both — only when it is safe.
//!
//! - [`facts`]: group, member and node facts derived from Kubernetes objects (pure);
//! - [`decide`]: the decision `decide(facts, now) -> Nothing | Held(gate) | Report | Act`
//!   (pure, table-tested for every gate);
//! - [`audit`]: per group, whether losing one zone or one node keeps a Ready majority (pure);
//! - [`round`]: one leader round (facts, the rebuilds in flight, every decision, the audit) as
//!   a pure function the controller carries out;
//! - [`lease`]: a hand-written `coordination.k8s.io/v1` Lease elector;
//! - [`controller`]: the leader-elected loop that watches, decides, acts and reports;
//! - [`metrics`]: its Prometheus metrics;
//! - [`debug`]: `GET /debug/recovery`, the leader's last round (bounded JSON).

pub mod audit;
pub mod controller;
pub mod debug;
pub mod decide;
pub mod facts;
pub mod lease;
pub mod metrics;
pub mod round;

pub use controller::{Controller, Options};
pub use decide::{Action, Decision, Gate, Situation, decide};
pub use metrics::RecoveryMetrics;
