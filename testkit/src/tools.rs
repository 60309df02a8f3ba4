//! Locating (and on first use building) the tools that check the deployment artifacts: `helm`
//! (the chart) and `promtool` (the Prometheus rules and the dashboard's queries).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use anyhow::{Context as _, Result, bail};

use crate::workspace_root;

/// Directory holding `helm`; overrides the build script.
pub const HELM_BIN_ENV: &str = "STOWAGE_HELM_BIN";
/// Directory holding `promtool`; overrides the build script.
pub const PROMTOOL_BIN_ENV: &str = "STOWAGE_PROMTOOL_BIN";

/// Paths of the tools.
#[derive(Clone, Debug)]
pub struct Tools {
    /// `helm` (helm.sh/helm/v4).
    pub helm: PathBuf,
    /// `promtool` (github.com/prometheus/prometheus).
    pub promtool: PathBuf,
}

impl Tools {
    /// Finds the tools once per process: `$STOWAGE_HELM_BIN` / `$STOWAGE_PROMTOOL_BIN` name
    /// directories to use as they are; otherwise `scripts/tools.sh print-dir` names the
    /// version-keyed cache, and if a tool is missing there `scripts/tools.sh` builds it from Go
    /// modules (a few minutes the first time; progress goes to stderr).
    ///
    /// This blocks; call it off the async runtime or before starting one.
    ///
    /// # Errors
    /// When a tool is neither found nor buildable (no Go toolchain).
    pub fn get() -> Result<Self> {
        static CACHE: OnceLock<Result<Tools, String>> = OnceLock::new();
        CACHE.get_or_init(|| Self::locate().map_err(|e| format!("{e:#}"))).clone().map_err(anyhow::Error::msg)
    }

    fn locate() -> Result<Self> {
        let script = workspace_root().join("scripts/tools.sh");
        let from_env = (std::env::var_os(HELM_BIN_ENV), std::env::var_os(PROMTOOL_BIN_ENV));
        let (helm_dir, promtool_dir) = if let (Some(helm), Some(promtool)) = from_env {
            (PathBuf::from(helm), PathBuf::from(promtool))
        } else {
            let line = run(&script, &["print-dir"])?;
            let (helm, promtool) = line
                .lines()
                .last()
                .and_then(|l| l.split_once(':'))
                .with_context(|| format!("unexpected output of tools.sh print-dir: {line:?}"))?;
            (
                std::env::var_os(HELM_BIN_ENV).map_or_else(|| PathBuf::from(helm), PathBuf::from),
                std::env::var_os(PROMTOOL_BIN_ENV).map_or_else(|| PathBuf::from(promtool), PathBuf::from),
            )
        };
        let tools = Self { helm: helm_dir.join("helm"), promtool: promtool_dir.join("promtool") };
        let Some(missing) = tools.missing() else { return Ok(tools) };
        if std::env::var_os(HELM_BIN_ENV).is_some() || std::env::var_os(PROMTOOL_BIN_ENV).is_some() {
            bail!("{} not found (from ${HELM_BIN_ENV} / ${PROMTOOL_BIN_ENV})", missing.display());
        }
        eprintln!("[testkit] {} is missing; building the tools with {}", missing.display(), script.display());
        let status = Command::new("bash")
            .arg(&script)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .status()
            .with_context(|| format!("running {} (needs the Go toolchain)", script.display()))?;
        if !status.success() {
            bail!("{} failed with {status}; see its output above", script.display());
        }
        match tools.missing() {
            Some(missing) => bail!("{} still missing after {} succeeded", missing.display(), script.display()),
            None => Ok(tools),
        }
    }

    fn missing(&self) -> Option<&Path> {
        [&self.helm, &self.promtool].into_iter().find(|p| !p.is_file()).map(PathBuf::as_path)
    }
}

fn run(script: &Path, args: &[&str]) -> Result<String> {
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
