//! Locating (and on first use building) the tools that check the deployment artifacts, `helm`
//! (the chart) and `promtool` (the Prometheus rules and the dashboard's queries), and running
//! them.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use anyhow::Result;

use crate::locate::{BuildScript, once, workspace_root};

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
        once(&CACHE, || {
            let script = BuildScript {
                path: "scripts/tools.sh",
                print_dir_args: Vec::new(),
                env: [HELM_BIN_ENV, PROMTOOL_BIN_ENV],
                build_env: Vec::new(),
                what: "helm and promtool",
                note: "",
            };
            script.locate(
                |[helm, promtool]| Self { helm: helm.join("helm"), promtool: promtool.join("promtool") },
                |t| t.missing().map(Path::to_path_buf),
            )
        })
    }

    /// `helm <args>` run from the workspace root, with Helm's config, cache and data
    /// directories under `home` (no repositories, plugins or state from the machine).
    ///
    /// # Panics
    /// When helm cannot be started.
    #[must_use]
    pub fn helm(&self, home: &Path, args: &[&str]) -> Output {
        Command::new(&self.helm)
            .current_dir(workspace_root())
            .env("HELM_CONFIG_HOME", home.join("config"))
            .env("HELM_CACHE_HOME", home.join("cache"))
            .env("HELM_DATA_HOME", home.join("data"))
            .args(args)
            .output()
            .expect("running helm")
    }

    /// `promtool <args>` run from the workspace root.
    ///
    /// # Panics
    /// When promtool cannot be started.
    #[must_use]
    pub fn promtool(&self, args: &[&str]) -> Output {
        Command::new(&self.promtool).current_dir(workspace_root()).args(args).output().expect("running promtool")
    }

    fn missing(&self) -> Option<&Path> {
        [&self.helm, &self.promtool].into_iter().find(|p| !p.is_file()).map(PathBuf::as_path)
    }
}

/// The stdout of a finished command; panics naming `what`, with its exit status, stdout and
/// stderr, when it failed.
///
/// # Panics
/// When the command did not succeed.
pub fn expect_success(what: &str, out: &Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{what} failed ({}):\nstdout:\n{stdout}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}
