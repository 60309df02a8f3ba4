//! The `stowage` binary: parses the command line and hands over to [`stowage::run`].

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = stowage::cli::Cli::parse();
    stowage::init_logging(cli.log_format);
    match stowage::run(cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
