//! The `report-operator` binary: `run` (the controller) and `crd` (print the CRDs). The
//! simulators of the reporting APIs are a separate binary, `report-sim` (`sim/`).

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "report-operator", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the controller.
    Run(report_operator::controller::RunArgs),
    /// Print the CustomResourceDefinitions as YAML.
    Crd,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Crd => match report_operator::api::crds_yaml() {
            Ok(yaml) => {
                print!("{yaml}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: rendering CRDs: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Run(args) => {
            args.init_logging();
            block_on(report_operator::controller::run(args))
        }
    }
}

/// Runs a command's future on a multi-threaded runtime and turns its error into an exit code.
fn block_on<E: std::fmt::Display>(fut: impl std::future::Future<Output = Result<(), E>>) -> ExitCode {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: starting the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(fut) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "report-operator failed");
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
