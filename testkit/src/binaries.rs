//! Locating (and on first use building) the control-plane binaries: kube-apiserver,
//! kube-scheduler, kube-controller-manager and kubectl of one Kubernetes version, etcd, and kwok.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use anyhow::Result;

use crate::locate::{BuildScript, once};

/// Directory holding `kube-apiserver`, `kube-scheduler`, `kube-controller-manager` and
/// `kubectl`; overrides the build script.
pub const K8S_BIN_ENV: &str = "STOWAGE_K8S_BIN";
/// Directory holding `etcd`; overrides the build script.
pub const ETCD_BIN_ENV: &str = "STOWAGE_ETCD_BIN";
/// Directory holding `kwok`; overrides the build script.
pub const KWOK_BIN_ENV: &str = "STOWAGE_KWOK_BIN";
/// Kubernetes release to test against (e.g. `v1.37.2`), one of the build script's
/// `K8S_VERSIONS`; default: the oldest one.
pub const K8S_VERSION_ENV: &str = "STOWAGE_K8S_VERSION";

/// Paths of the control-plane binaries.
#[derive(Clone, Debug)]
pub struct Binaries {
    /// `kube-apiserver`.
    pub kube_apiserver: PathBuf,
    /// `kube-scheduler`.
    pub kube_scheduler: PathBuf,
    /// `kube-controller-manager`.
    pub kube_controller_manager: PathBuf,
    /// `etcd`.
    pub etcd: PathBuf,
    /// `kwok`, the kubelet simulator.
    pub kwok: PathBuf,
    /// `kubectl` (optional: nothing in the harness needs it, tests may).
    pub kubectl: PathBuf,
}

impl Binaries {
    /// Finds the binaries once per process (see [`Binaries::locate`]) and caches the answer.
    ///
    /// This blocks, possibly for a long time on a fresh machine; call it off the async runtime.
    pub fn get() -> Result<Self> {
        static CACHE: OnceLock<Result<Binaries, String>> = OnceLock::new();
        once(&CACHE, Self::locate)
    }

    /// Finds the binaries.
    ///
    /// `STOWAGE_K8S_BIN`, `STOWAGE_ETCD_BIN` and `STOWAGE_KWOK_BIN` name directories to use as
    /// they are. Otherwise `scripts/control-plane.sh print-dir [$STOWAGE_K8S_VERSION]` names the
    /// version-keyed cache, and if a binary is missing there `scripts/control-plane.sh` builds it
    /// (only that version) from Go modules (slow the first time; progress goes to stderr).
    pub fn locate() -> Result<Self> {
        let version = std::env::var(K8S_VERSION_ENV).ok().filter(|v| !v.is_empty());
        let script = BuildScript {
            path: "scripts/control-plane.sh",
            print_dir_args: version.iter().cloned().collect(),
            env: [K8S_BIN_ENV, ETCD_BIN_ENV, KWOK_BIN_ENV],
            build_env: version.map(|v| ("K8S_VERSIONS", v)).into_iter().collect(),
            what: "the control plane",
            note: "the first build compiles Kubernetes from source and can take 15-30 minutes",
        };
        script.locate(|[k8s, etcd, kwok]| Self::in_dirs(k8s, etcd, kwok), |b| b.missing().map(Path::to_path_buf))
    }

    fn in_dirs(k8s: &Path, etcd: &Path, kwok: &Path) -> Self {
        Self {
            kube_apiserver: k8s.join("kube-apiserver"),
            kube_scheduler: k8s.join("kube-scheduler"),
            kube_controller_manager: k8s.join("kube-controller-manager"),
            etcd: etcd.join("etcd"),
            kwok: kwok.join("kwok"),
            kubectl: k8s.join("kubectl"),
        }
    }

    /// The Kubernetes release of these binaries, from the cache directory's name
    /// (`kubernetes-<version>/bin`), e.g. `v1.35.8`; `None` for directories named otherwise.
    pub fn kubernetes_version(&self) -> Option<String> {
        let dir = self.kube_apiserver.parent()?.parent()?.file_name()?.to_str()?;
        dir.strip_prefix("kubernetes-").map(str::to_owned)
    }

    fn missing(&self) -> Option<&Path> {
        [&self.kube_apiserver, &self.kube_scheduler, &self.kube_controller_manager, &self.etcd, &self.kwok]
            .into_iter()
            .find(|p| !p.is_file())
            .map(PathBuf::as_path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_version_is_the_cache_directory_name() {
        let (k8s, etcd, kwok) =
            (Path::new("/c/kubernetes-v1.35.8/bin"), Path::new("/c/etcd-v3/bin"), Path::new("/c/kwok-v0.8.0/bin"));
        assert_eq!(Binaries::in_dirs(k8s, etcd, kwok).kubernetes_version().as_deref(), Some("v1.35.8"));
        assert_eq!(Binaries::in_dirs(etcd, etcd, kwok).kubernetes_version(), None);
    }
}
