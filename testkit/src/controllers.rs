//! The real controllers next to the apiserver: kube-controller-manager (StatefulSet, PV binder,
//! node lifecycle, taint eviction, garbage collector, ...) and KWOK's simulated kubelets.
//!
//! Timings are shortened so node death shows within seconds, not minutes: kwok renews each
//! managed node's Lease every [`NODE_LEASE_SECONDS`]` / 4` seconds, and the node lifecycle
//! controller marks a node `Unknown` (and taints it `node.kubernetes.io/unreachable`) once its
//! Lease is older than [`NODE_MONITOR_GRACE`].

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::Api;

use crate::binaries::Binaries;
use crate::process::Supervised;

/// Label that makes a node one of kwok's: kwok runs it (Lease, pods Running/Ready, deletions
/// confirmed) while the label is there. Removing it "kills" the node, re-adding it revives it.
pub const KWOK_NODE_LABEL: &str = "kwok.x-k8s.io/node";
/// Value of [`KWOK_NODE_LABEL`] on a live node.
pub const KWOK_NODE_ALIVE: &str = "fake";
/// The Lease duration kwok sets on its nodes (it renews every quarter of it).
pub const NODE_LEASE_SECONDS: u64 = 8;
/// `--node-monitor-grace-period` of the node lifecycle controller: how long a node may go
/// without a renewed Lease before it is `Unknown`.
pub const NODE_MONITOR_GRACE: Duration = Duration::from_secs(16);

/// The files kube-controller-manager needs from the control plane's PKI.
pub(crate) struct ControllerManagerFiles<'a> {
    pub(crate) kubeconfig: &'a Path,
    pub(crate) ca_cert: &'a Path,
    pub(crate) ca_key: &'a Path,
    pub(crate) service_account_key: &'a Path,
}

/// Starts kube-controller-manager with every default controller, each under its own
/// ServiceAccount (`--use-service-account-credentials`, as kubeadm runs it), no leader election
/// and no serving port.
pub(crate) fn start_controller_manager(
    binaries: &Binaries,
    files: &ControllerManagerFiles<'_>,
    dir: &Path,
) -> Result<Supervised> {
    let p = |path: &Path| path.display().to_string();
    let args = vec![
        format!("--kubeconfig={}", p(files.kubeconfig)),
        "--controllers=*".to_owned(),
        "--use-service-account-credentials=true".to_owned(),
        format!("--service-account-private-key-file={}", p(files.service_account_key)),
        format!("--root-ca-file={}", p(files.ca_cert)),
        format!("--cluster-signing-cert-file={}", p(files.ca_cert)),
        format!("--cluster-signing-key-file={}", p(files.ca_key)),
        "--leader-elect=false".to_owned(),
        "--secure-port=0".to_owned(),
        // Node death within seconds: the Lease is checked every second and is stale after the
        // grace period; a node that never reported gets the same grace.
        "--node-monitor-period=1s".to_owned(),
        format!("--node-monitor-grace-period={}s", NODE_MONITOR_GRACE.as_secs()),
        format!("--node-startup-grace-period={}s", NODE_MONITOR_GRACE.as_secs()),
        // Tests create many objects at once; the default 20 qps would pace the controllers.
        "--kube-api-qps=200".to_owned(),
        "--kube-api-burst=400".to_owned(),
        "--concurrent-statefulset-syncs=10".to_owned(),
        "--v=1".to_owned(),
    ];
    Supervised::spawn(
        "kube-controller-manager",
        &binaries.kube_controller_manager,
        &args,
        &dir.join("kube-controller-manager.log"),
    )
}

/// Starts kwok managing the nodes labelled [`KWOK_NODE_LABEL`]`=`[`KWOK_NODE_ALIVE`], with the
/// stages shipped in `testkit/kwok/stages.yaml` and a private work directory (so it never reads
/// a configuration from the home directory).
pub(crate) fn start_kwok(binaries: &Binaries, kubeconfig: &Path, dir: &Path) -> Result<Supervised> {
    let work = dir.join("kwok");
    std::fs::create_dir_all(&work)?;
    let stages = work.join("stages.yaml");
    std::fs::write(&stages, include_str!("../kwok/stages.yaml"))?;
    let args = vec![
        format!("KWOK_WORKDIR={}", work.display()),
        binaries.kwok.display().to_string(),
        format!("--kubeconfig={}", kubeconfig.display()),
        format!("--config={}", stages.display()),
        "--manage-all-nodes=false".to_owned(),
        format!("--manage-nodes-with-label-selector={KWOK_NODE_LABEL}={KWOK_NODE_ALIVE}"),
        format!("--node-lease-duration-seconds={NODE_LEASE_SECONDS}"),
        "--cidr=10.244.0.0/16".to_owned(),
        "--node-ip=10.0.0.2".to_owned(),
    ];
    Supervised::spawn("kwok", Path::new("/usr/bin/env"), &args, &dir.join("kwok.log"))
}

/// Waits until kube-controller-manager works: its ServiceAccount controller has created the
/// `default` ServiceAccount of the `default` namespace.
pub(crate) async fn wait_for_controller_manager(
    client: &kube::Client,
    manager: &Supervised,
    timeout: Duration,
) -> Result<()> {
    let api: Api<ServiceAccount> = Api::namespaced(client.clone(), "default");
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = manager.exit_status() {
            bail!("kube-controller-manager exited with {status} during startup\n{}", manager.describe_failure(40));
        }
        if matches!(api.get_opt("default").await, Ok(Some(_))) {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!(
                "kube-controller-manager did not create the default ServiceAccount within {timeout:?}\n{}",
                manager.describe_failure(40)
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
