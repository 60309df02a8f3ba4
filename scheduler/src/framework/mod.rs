//! The scheduling-framework vocabulary the plugins are written in, and the runner that calls
//! them. Mirrors `k8s.io/kube-scheduler/framework`; it never names a concrete plugin.
//!
//! - `status`: [`Code`], [`Status`] and constant `node(s) ...` [`Reason`]s; codes map onto
//!   the wire in one place, [`Code::failed_map`]: `Unschedulable` → `FailedNodes` (preemption
//!   may help), `UnschedulableAndUnresolvable` → `FailedAndUnresolvableNodes` (it cannot),
//!   `Error` → the reply's `Error`;
//! - `pod`: the [`PodContext`] plugins read;
//! - `cycle`: [`NodeView`], the ledger's [`LedgerFacts`] and the [`CycleState`] container
//!   holding each plugin's own state;
//! - `runner`: the [`Plugin`] trait and the [`Framework`] that runs a registry of them;
//! - `score`: weighted combination and normalisation of scores.

mod cycle;
mod pod;
mod runner;
mod score;
mod status;

pub use cycle::{CycleState, LedgerAdd, LedgerFacts, NodeSet, NodeView};
pub use pod::{PodContext, cross_pod_rule};
pub use runner::{FilterOutcome, Framework, Plugin, ScoreTable};
pub use score::{MAX_NODE_SCORE, broken_linear, combine, normalize_extender};
pub use status::{Code, FailedMap, NODE_NOT_CACHED, NOT_CHOSEN, Reason, Status};
