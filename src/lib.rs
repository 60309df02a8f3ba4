//! Stowage: stateful-aware placement for databases on Kubernetes.
//!
//! The binary wires the workspace crates together: [`stowage_policy`] (annotations and the
//! cluster config), [`stowage_scheduler`] (the extender), [`stowage_webhook`] (admission) and
//! [`stowage_certs`] (TLS). Each subcommand lives in its own module.

mod admin_auth;
mod audit_cmd;
mod certs_cmd;
pub mod cli;
mod commands;
mod explain_cmd;
mod kube_client;
mod mutate_cmd;
mod serve;
mod waiting;

use std::process::ExitCode;

use cli::{CertsCommand, Cli, Command, ConfigCommand, LogFormat};

/// Runs a parsed command line.
///
/// # Errors
/// Any failure of the command, to be printed by `main`.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    // kube and the TLS listeners share one explicit crypto provider.
    let _ = rustls::crypto::ring::default_provider().install_default();
    match cli.command {
        Command::Config(ConfigCommand::Check { file }) => commands::config_check(&file),
        Command::Certs(CertsCommand::Generate(args)) => certs_cmd::generate(&args),
        Command::Certs(CertsCommand::Install(args)) => runtime()?.block_on(certs_cmd::install(&args)),
        Command::Mutate(args) => mutate_cmd::mutate(&args),
        Command::Serve(args) => runtime()?.block_on(serve::serve(*args)),
        Command::Explain(args) if args.target.is_some() => runtime()?.block_on(explain_cmd::explain_live(&args)),
        Command::Explain(args) => explain_cmd::explain_cmd(&args),
        Command::Audit(args) => runtime()?.block_on(audit_cmd::audit(&args)),
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread().enable_all().build()?)
}

/// Installs the tracing subscriber (`RUST_LOG` filters; default `info`).
pub fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}
