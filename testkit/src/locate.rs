//! The locate-once shape [`crate::Binaries`] and [`crate::Tools`] share: directories named by
//! environment variables, else by a build script's `print-dir`, and that script run to build
//! whatever is missing from its version-keyed cache.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use anyhow::{Context as _, Result, bail};

/// The cargo workspace root (the parent of this crate's directory).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

/// The answer of `locate`, computed once per process in `cell` (errors as their text).
pub(crate) fn once<T: Clone>(cell: &OnceLock<Result<T, String>>, locate: impl FnOnce() -> Result<T>) -> Result<T> {
    cell.get_or_init(|| locate().map_err(|e| format!("{e:#}"))).clone().map_err(anyhow::Error::msg)
}

/// A build script under `scripts/` that prints its cache directories (`print-dir`, one line of
/// `N` paths separated by `:`) and builds into them when run without arguments.
pub(crate) struct BuildScript<const N: usize> {
    /// Path from the workspace root.
    pub path: &'static str,
    /// Arguments after `print-dir`.
    pub print_dir_args: Vec<String>,
    /// Per directory, the environment variable that names it instead.
    pub env: [&'static str; N],
    /// Environment for the build.
    pub build_env: Vec<(&'static str, String)>,
    /// What the script builds, for messages (e.g. "the control plane").
    pub what: &'static str,
    /// Said before a build (e.g. how long it takes).
    pub note: &'static str,
}

impl<const N: usize> BuildScript<N> {
    /// The directories, as `found` turns them into `T`. When every environment variable is set
    /// they are used as they are; otherwise the script's `print-dir` names the others. When
    /// `missing` names a file of `T` that is absent from a directory the script owns, the script
    /// builds (needs the Go toolchain); absent from a directory the environment names, that is
    /// an error.
    pub fn locate<T>(&self, found: impl Fn(&[PathBuf; N]) -> T, missing: impl Fn(&T) -> Option<PathBuf>) -> Result<T> {
        let from_env = self.env.map(|var| std::env::var_os(var).map(PathBuf::from));
        let script = workspace_root().join(self.path);
        let dirs: [PathBuf; N] = if from_env.iter().all(Option::is_some) {
            from_env.clone().map(Option::unwrap_or_default)
        } else {
            let mut args = vec!["print-dir".to_owned()];
            args.extend(self.print_dir_args.iter().cloned());
            let printed = split_dirs::<N>(&run_script(&script, &args)?, self.path)?;
            let mut dirs = printed;
            for (dir, env) in dirs.iter_mut().zip(&from_env) {
                if let Some(env) = env {
                    dir.clone_from(env);
                }
            }
            dirs
        };
        let located = found(&dirs);
        let Some(absent) = missing(&located) else { return Ok(located) };
        if from_env.iter().flatten().any(|dir| absent.parent() == Some(dir.as_path())) {
            bail!("{} not found (from ${})", absent.display(), self.env.join(" / $"));
        }
        eprintln!("[testkit] {} is missing; building {} with {}", absent.display(), self.what, script.display());
        if !self.note.is_empty() {
            eprintln!("[testkit] {}", self.note);
        }
        ensure_go(self)?;
        let status = Command::new("bash")
            .arg(&script)
            .envs(self.build_env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .status()
            .with_context(|| format!("running {}", script.display()))?;
        if !status.success() {
            bail!("{} failed with {status}; see its output above", script.display());
        }
        let built = found(&dirs);
        match missing(&built) {
            Some(absent) => bail!("{} still missing after {} succeeded", absent.display(), script.display()),
            None => Ok(built),
        }
    }
}

fn run_script(script: &Path, args: &[String]) -> Result<String> {
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

/// Splits the last line of `print-dir`'s output into `N` non-empty directories.
fn split_dirs<const N: usize>(output: &str, script: &str) -> Result<[PathBuf; N]> {
    let line = output.lines().last().unwrap_or_default();
    let parts: Vec<PathBuf> = line.split(':').filter(|p| !p.is_empty()).map(PathBuf::from).collect();
    match <[PathBuf; N]>::try_from(parts) {
        Ok(dirs) if line.split(':').count() == N => Ok(dirs),
        _ => bail!("unexpected output of {script} print-dir: {line:?}"),
    }
}

fn ensure_go<const N: usize>(script: &BuildScript<N>) -> Result<()> {
    match Command::new("go").arg("version").stdin(Stdio::null()).output() {
        Ok(out) if out.status.success() => Ok(()),
        _ => bail!(
            "the Go toolchain (`go`, 1.26 or newer) is needed to build {}; install it, or point ${} at \
             directories holding the binaries",
            script.what,
            script.env.join(", $")
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_print_dir_output() {
        let [k8s, etcd, kwok] =
            split_dirs::<3>("/c/kubernetes-v1.35.8/bin:/c/etcd-v3/bin:/c/kwok-v0.8.0/bin\n", "s").unwrap();
        assert_eq!(k8s, Path::new("/c/kubernetes-v1.35.8/bin"));
        assert_eq!(etcd, Path::new("/c/etcd-v3/bin"));
        assert_eq!(kwok, Path::new("/c/kwok-v0.8.0/bin"));
        let [helm, promtool] = split_dirs::<2>("building...\n/c/helm/bin:/c/prom/bin", "s").unwrap();
        assert_eq!((helm.as_path(), promtool.as_path()), (Path::new("/c/helm/bin"), Path::new("/c/prom/bin")));
        assert!(split_dirs::<3>("garbage", "s").is_err());
        assert!(split_dirs::<3>("/a:/b", "s").is_err(), "every directory is required");
        assert!(split_dirs::<2>("/a::/b", "s").is_err());
    }

    #[test]
    fn workspace_root_holds_the_build_scripts() {
        assert!(workspace_root().join("scripts/control-plane.sh").is_file());
        assert!(workspace_root().join("scripts/tools.sh").is_file());
    }
}
