//! End-to-end test support for stowage: real components, no mocks.
//!
//! * [`ControlPlane`] runs etcd, kube-apiserver, kube-controller-manager (every default
//!   controller) and kwok (simulated kubelets) as local processes (binaries located or built by
//!   [`Binaries`], for the Kubernetes version in `$STOWAGE_K8S_VERSION`), with a throw-away CA, an
//!   admin token and kubeconfigs for any [`Identity`]. [`ControlPlane::shared`] gives every test
//!   in a test binary the same cluster. Real StatefulSets create their pods, the real PV
//!   controller binds claims, kwok runs pods on [`fake_node`]s, and [`kill_node`] makes the node
//!   lifecycle controller see a node die.
//! * [`ControlPlane::start_scheduler`] runs kube-scheduler with a [`SchedulerConfig`] (profiles,
//!   [`Extender`]s).
//! * [`fake_node`] (a node kwok runs), [`create`] for any object built with `stowage_fixtures`,
//!   unique [`namespace`]s, and polling helpers ([`wait_for_pod_bound`],
//!   [`wait_for_statefulset_ready`], [`assert_pod_stays_unbound`], [`pod_events`],
//!   [`force_delete_pod`], [`wait_for_node_ready_status`]).
//! * [`RecordingProxy`], a transparent HTTP(S) reverse proxy that records what a real component
//!   sent to a webhook or extender and what it got back.
//! * [`Tools`] locates (or builds) `helm` and `promtool` for the chart and monitoring tests and
//!   runs them; [`expect_success`] reads a tool's output or fails with all of it.
//! * [`Supervised`] runs any other binary (e.g. `stowage serve`) with the same no-orphan guarantee.
//!
//! Child processes never outlive the test process, even if it is killed. Set `STOWAGE_TEST_KEEP=1`
//! to keep the control plane's directory (logs, PKI, configs) and `STOWAGE_TEST_TIMEOUT_SCALE` to
//! stretch every deadline on a slow machine.

mod binaries;
mod comparison;
mod control_plane;
mod controllers;
mod lifecycle;
mod locate;
mod objects;
mod pki;
mod process;
mod proxy;
mod scheduler;
mod stowage;
mod tools;
mod wait;

pub use binaries::{Binaries, ETCD_BIN_ENV, K8S_BIN_ENV, K8S_VERSION_ENV, KWOK_BIN_ENV};
pub use comparison::{COMPARISON_ENV, record_comparison};
pub use control_plane::{ControlPlane, Identity, KEEP_ENV};
pub use controllers::{KWOK_NODE_ALIVE, KWOK_NODE_LABEL, NODE_LEASE_SECONDS, NODE_MONITOR_GRACE};
pub use lifecycle::{
    delete_statefulset, is_ready, kill_node, node_ready_status, revive_node, statefulset_pods, wait_for_claim_bound,
    wait_for_node_ready_status, wait_for_pod_ready, wait_for_statefulset_ready,
};
pub use locate::workspace_root;
pub use objects::{create, create_nodes, delete_nodes, fake_node, namespace, namespace_with_labels, unique_name};
pub use pki::CertPair;
pub use process::{Supervised, free_ports};
pub use proxy::{Exchange, ProxyOptions, RecordingProxy, Upstream, pem_to_der, served_certificate};
pub use scheduler::{Extender, SchedulerConfig, SchedulerHandle};
pub use stowage::{StowageArgs, StowageProcess, http_get, metric_series, metric_sum, start_extender};
pub use tools::{HELM_BIN_ENV, PROMTOOL_BIN_ENV, Tools, expect_success};
pub use wait::{
    TIMEOUT_SCALE_ENV, assert_pod_stays_unbound, describe_pod, force_delete_pod, is_bound, node_name, pod_condition,
    pod_events, poll_until, scaled, wait_for_pod, wait_for_pod_bound, wait_for_pod_event, wait_for_pods_bound,
};
