//! End-to-end test support for stowage: real components, no mocks.
//!
//! * [`ControlPlane`] runs etcd and kube-apiserver as local processes (binaries located or built
//!   by [`Binaries`]), with a throw-away CA, an admin token and kubeconfigs for any [`Identity`].
//!   [`ControlPlane::shared`] gives every test in a test binary the same control plane.
//! * [`ControlPlane::start_scheduler`] runs kube-scheduler with a [`SchedulerConfig`] (profiles,
//!   [`Extender`]s).
//! * Builders for fake nodes, storage, StatefulSet pods ([`fake_node`], [`local_pv`], [`pvc`],
//!   [`statefulset_pod`], ...) and polling helpers ([`wait_for_pod_bound`],
//!   [`assert_pod_stays_unbound`], [`pod_events`], [`force_delete_pod`]).
//! * [`RecordingProxy`], a transparent HTTP(S) reverse proxy that records what a real component
//!   sent to a webhook or extender and what it got back.
//! * [`Supervised`] runs any other binary (e.g. `stowage serve`) with the same no-orphan guarantee.
//!
//! Child processes never outlive the test process, even if it is killed. Set `STOWAGE_TEST_KEEP=1`
//! to keep the control plane's directory (logs, PKI, configs) and `STOWAGE_TEST_TIMEOUT_SCALE` to
//! stretch every deadline on a slow machine.

mod binaries;
mod control_plane;
mod objects;
mod pki;
mod process;
mod proxy;
mod scheduler;
mod stowage;
mod wait;

pub use binaries::{Binaries, ETCD_BIN_ENV, K8S_BIN_ENV, workspace_root};
pub use control_plane::{ControlPlane, Identity, KEEP_ENV};
pub use objects::{
    HOSTNAME_LABEL, NodeBuilder, PersistentVolumeBuilder, PodBuilder, PvcBuilder, REGION_LABEL, STS_POD_INDEX_LABEL,
    STS_POD_NAME_LABEL, StatefulSetBuilder, StorageClassBuilder, TEST_IMAGE, ZONE_LABEL, create, create_nodes,
    delete_nodes, fake_node, local_pv, namespace, namespace_with_labels, pod, pvc, statefulset, statefulset_pod,
    storage_class, unique_name,
};
pub use pki::CertPair;
pub use process::{Supervised, free_ports};
pub use proxy::{Exchange, ProxyOptions, RecordingProxy, Upstream, pem_to_der, served_certificate};
pub use scheduler::{Extender, SchedulerConfig, SchedulerHandle};
pub use stowage::{StowageArgs, StowageProcess, http_get, metric_series, metric_sum};
pub use wait::{
    TIMEOUT_SCALE_ENV, assert_pod_stays_unbound, describe_pod, force_delete_pod, is_bound, node_name, pod_condition,
    pod_events, poll_until, scaled, wait_for_pod, wait_for_pod_bound, wait_for_pod_event, wait_for_pods_bound,
};
