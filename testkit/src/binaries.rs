//! Locating (and on first use building) the control-plane binaries: kube-apiserver,
//! kube-scheduler, kube-controller-manager and kubectl of one Kubernetes version, etcd, and kwok.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use anyhow::{Context as _, Result, bail};

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
        CACHE.get_or_init(|| Self::locate().map_err(|e| format!("{e:#}"))).clone().map_err(anyhow::Error::msg)
    }

    /// Finds the binaries.
    ///
    /// `STOWAGE_K8S_BIN`, `STOWAGE_ETCD_BIN` and `STOWAGE_KWOK_BIN` name directories to use as
    /// they are. Otherwise `scripts/control-plane.sh print-dir [$STOWAGE_K8S_VERSION]` names the
    /// version-keyed cache, and if a binary is missing there `scripts/control-plane.sh` builds it
    /// from Go modules (slow the first time; progress goes to stderr).
    pub fn locate() -> Result<Self> {
        let from_env = (std::env::var_os(K8S_BIN_ENV), std::env::var_os(ETCD_BIN_ENV), std::env::var_os(KWOK_BIN_ENV));
        if let (Some(k8s), Some(etcd), Some(kwok)) = from_env {
            let found = Self::in_dirs(Path::new(&k8s), Path::new(&etcd), Path::new(&kwok));
            found.missing().map_or(Ok(()), |m| {
                bail!("{} not found (from ${K8S_BIN_ENV} / ${ETCD_BIN_ENV} / ${KWOK_BIN_ENV})", m.display())
            })?;
            return Ok(found);
        }

        let script = workspace_root().join("scripts/control-plane.sh");
        let version = std::env::var(K8S_VERSION_ENV).ok().filter(|v| !v.is_empty());
        let mut args = vec!["print-dir"];
        args.extend(version.as_deref());
        let dirs = run_script(&script, &args)?;
        let [k8s, etcd, kwok] = split_dirs(&dirs)?;
        let (k8s, etcd, kwok) = (
            std::env::var_os(K8S_BIN_ENV).map_or(k8s, PathBuf::from),
            std::env::var_os(ETCD_BIN_ENV).map_or(etcd, PathBuf::from),
            std::env::var_os(KWOK_BIN_ENV).map_or(kwok, PathBuf::from),
        );
        let found = Self::in_dirs(&k8s, &etcd, &kwok);
        let Some(missing) = found.missing() else { return Ok(found) };

        eprintln!("[testkit] {} is missing; building the control plane with {}", missing.display(), script.display());
        eprintln!("[testkit] the first build compiles Kubernetes from source and can take 15-30 minutes");
        ensure_go()?;
        let mut command = Command::new("bash");
        command.arg(&script);
        if let Some(version) = &version {
            // Build only the version asked for.
            command.env("K8S_VERSIONS", version);
        }
        let status = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .status()
            .with_context(|| format!("running {}", script.display()))?;
        if !status.success() {
            bail!("{} failed with {status}; see its output above", script.display());
        }
        let built = Self::in_dirs(&k8s, &etcd, &kwok);
        if let Some(missing) = built.missing() {
            bail!("{} still missing after {} succeeded", missing.display(), script.display());
        }
        Ok(built)
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

/// The cargo workspace root (the parent of this crate's directory).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

fn run_script(script: &Path, args: &[&str]) -> Result<String> {
    let out = Command::new("bash")
        .arg(script)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {}", script.display()))?;
    if !out.status.success() {
        bail!(
            "{} {} failed with {}: {}",
            script.display(),
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// Splits the `K8S_BIN:ETCD_BIN:KWOK_BIN` line printed by `control-plane.sh print-dir`.
fn split_dirs(line: &str) -> Result<[PathBuf; 3]> {
    let line = line.lines().last().unwrap_or_default();
    let parts: Vec<&str> = line.split(':').collect();
    match parts.as_slice() {
        [k8s, etcd, kwok] if !k8s.is_empty() && !etcd.is_empty() && !kwok.is_empty() => {
            Ok([PathBuf::from(k8s), PathBuf::from(etcd), PathBuf::from(kwok)])
        }
        _ => bail!("unexpected output of control-plane.sh print-dir: {line:?}"),
    }
}

fn ensure_go() -> Result<()> {
    match Command::new("go").arg("version").stdin(Stdio::null()).output() {
        Ok(out) if out.status.success() => Ok(()),
        _ => bail!(
            "the Go toolchain (`go`, 1.26 or newer) is needed to build the Kubernetes control plane, etcd and kwok; \
             install it, or point ${K8S_BIN_ENV}, ${ETCD_BIN_ENV} and ${KWOK_BIN_ENV} at directories holding those binaries"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_print_dir_output() {
        let [k8s, etcd, kwok] = split_dirs("/c/kubernetes-v1.35.8/bin:/c/etcd-v3/bin:/c/kwok-v0.8.0/bin\n").unwrap();
        assert_eq!(k8s, Path::new("/c/kubernetes-v1.35.8/bin"));
        assert_eq!(etcd, Path::new("/c/etcd-v3/bin"));
        assert_eq!(kwok, Path::new("/c/kwok-v0.8.0/bin"));
        assert_eq!(Binaries::in_dirs(&k8s, &etcd, &kwok).kubernetes_version().as_deref(), Some("v1.35.8"));
        assert!(split_dirs("garbage").is_err());
        assert!(split_dirs("/a:/b").is_err(), "the kwok directory is required");
    }

    #[test]
    fn workspace_root_holds_the_build_script() {
        assert!(workspace_root().join("scripts/control-plane.sh").is_file());
    }
}
