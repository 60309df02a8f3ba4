//! Locating (and on first use building) the kube-apiserver, kube-scheduler and etcd binaries.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use anyhow::{Context as _, Result, bail};

/// Directory holding `kube-apiserver` and `kube-scheduler`; overrides the build script.
pub const K8S_BIN_ENV: &str = "STOWAGE_K8S_BIN";
/// Directory holding `etcd`; overrides the build script.
pub const ETCD_BIN_ENV: &str = "STOWAGE_ETCD_BIN";

/// Paths of the control-plane binaries.
#[derive(Clone, Debug)]
pub struct Binaries {
    /// `kube-apiserver`.
    pub kube_apiserver: PathBuf,
    /// `kube-scheduler`.
    pub kube_scheduler: PathBuf,
    /// `etcd`.
    pub etcd: PathBuf,
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
    /// `STOWAGE_K8S_BIN` and `STOWAGE_ETCD_BIN` name directories to use as they are. Otherwise
    /// `scripts/control-plane.sh print-dir` names the version-keyed cache, and if a binary is missing
    /// there `scripts/control-plane.sh` builds it from Go modules (slow the first time; progress goes
    /// to stderr).
    pub fn locate() -> Result<Self> {
        let from_env = (std::env::var_os(K8S_BIN_ENV), std::env::var_os(ETCD_BIN_ENV));
        if let (Some(k8s), Some(etcd)) = from_env {
            let found = Self::in_dirs(Path::new(&k8s), Path::new(&etcd));
            found
                .missing()
                .map_or(Ok(()), |m| bail!("{} not found (from ${K8S_BIN_ENV} / ${ETCD_BIN_ENV})", m.display()))?;
            return Ok(found);
        }

        let script = workspace_root().join("scripts/control-plane.sh");
        let dirs = run_script(&script, &["print-dir"])?;
        let (k8s, etcd) = split_dirs(&dirs)?;
        let (k8s, etcd) = (
            std::env::var_os(K8S_BIN_ENV).map_or(k8s, PathBuf::from),
            std::env::var_os(ETCD_BIN_ENV).map_or(etcd, PathBuf::from),
        );
        let found = Self::in_dirs(&k8s, &etcd);
        let Some(missing) = found.missing() else { return Ok(found) };

        eprintln!("[testkit] {} is missing; building the control plane with {}", missing.display(), script.display());
        eprintln!("[testkit] the first build compiles Kubernetes from source and can take 15-30 minutes");
        ensure_go()?;
        let status = Command::new("bash")
            .arg(&script)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .status()
            .with_context(|| format!("running {}", script.display()))?;
        if !status.success() {
            bail!("{} failed with {status}; see its output above", script.display());
        }
        let built = Self::in_dirs(&k8s, &etcd);
        if let Some(missing) = built.missing() {
            bail!("{} still missing after {} succeeded", missing.display(), script.display());
        }
        Ok(built)
    }

    fn in_dirs(k8s: &Path, etcd: &Path) -> Self {
        Self {
            kube_apiserver: k8s.join("kube-apiserver"),
            kube_scheduler: k8s.join("kube-scheduler"),
            etcd: etcd.join("etcd"),
            kubectl: k8s.join("kubectl"),
        }
    }

    fn missing(&self) -> Option<&Path> {
        [&self.kube_apiserver, &self.kube_scheduler, &self.etcd]
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

/// Splits the `K8S_BIN:ETCD_BIN` line printed by `control-plane.sh print-dir`.
fn split_dirs(line: &str) -> Result<(PathBuf, PathBuf)> {
    let line = line.lines().last().unwrap_or_default();
    match line.split_once(':') {
        Some((k8s, etcd)) if !k8s.is_empty() && !etcd.is_empty() => Ok((PathBuf::from(k8s), PathBuf::from(etcd))),
        _ => bail!("unexpected output of control-plane.sh print-dir: {line:?}"),
    }
}

fn ensure_go() -> Result<()> {
    match Command::new("go").arg("version").stdin(Stdio::null()).output() {
        Ok(out) if out.status.success() => Ok(()),
        _ => bail!(
            "the Go toolchain (`go`, 1.25 or newer) is needed to build kube-apiserver, kube-scheduler and etcd; \
             install it, or point ${K8S_BIN_ENV} and ${ETCD_BIN_ENV} at directories holding those binaries"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_print_dir_output() {
        let (k8s, etcd) = split_dirs("/c/kubernetes-v1/bin:/c/etcd-v3/bin\n").unwrap();
        assert_eq!(k8s, Path::new("/c/kubernetes-v1/bin"));
        assert_eq!(etcd, Path::new("/c/etcd-v3/bin"));
        assert!(split_dirs("garbage").is_err());
    }

    #[test]
    fn workspace_root_holds_the_build_script() {
        assert!(workspace_root().join("scripts/control-plane.sh").is_file());
    }
}
