//! Implementations of the subcommands that need no server.

use std::{path::Path, process::ExitCode};

use anyhow::Context as _;
use stowage_policy::{Config, config};

/// Reads a config file, or the built-in defaults when none is given.
pub(crate) fn load_config(path: Option<&Path>) -> anyhow::Result<Config> {
    let Some(path) = path else { return Ok(Config::default()) };
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read config {}", path.display()))?;
    Config::from_yaml(&text).with_context(|| format!("config {}", path.display()))
}

/// `stowage config check FILE`: prints every problem; exit code 1 when there is any.
pub(crate) fn config_check(path: &Path) -> anyhow::Result<ExitCode> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read config {}", path.display()))?;
    match Config::from_yaml(&text) {
        Ok(cfg) => {
            let names: Vec<&str> = cfg.profiles.keys().map(String::as_str).collect();
            println!(
                "{}: ok ({} profile(s): {}; {} pool(s))",
                path.display(),
                names.len(),
                names.join(", "),
                cfg.pools.len()
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(config::Error::Invalid(issues)) => {
            println!("{}: {} problem(s)", path.display(), issues.len());
            for issue in issues {
                println!("  - {issue}");
            }
            Ok(ExitCode::FAILURE)
        }
        Err(e @ config::Error::Yaml(_)) => {
            println!("{}: {e}", path.display());
            Ok(ExitCode::FAILURE)
        }
    }
}
