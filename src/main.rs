//! The `report-operator` binary: `run` (the controller), `crd` (print the CRDs), `report`
//! (commands for people) and, hidden, `docs reference` (the book's generated reference).
//! Installed as `kubectl-report`, it is the kubectl plugin `kubectl report`: one binary, one
//! implementation. The simulators of the reporting APIs are
//! a separate binary, `report-sim` (`sim/`).

use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

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
    /// Commands for people, the same as the kubectl plugin `kubectl report`.
    Report(report_operator::plugin::PluginArgs),
    /// Writes the book's reference pages, generated from the code (`hack/docs.sh reference`).
    #[command(hide = true)]
    Docs {
        #[command(subcommand)]
        what: DocsCommand,
    },
}

#[derive(Subcommand)]
enum DocsCommand {
    /// The CRD and command-line reference, into a directory (docs/src/reference).
    Reference {
        #[arg(long)]
        out: std::path::PathBuf,
    },
}

/// The plugin's command line when the binary is called as `kubectl-report` (kubectl runs
/// plugins by that name from PATH).
#[derive(Parser)]
#[command(
    name = "kubectl-report",
    bin_name = "kubectl report",
    version,
    about = "See, run and download reports of report-operator"
)]
struct PluginCli {
    #[command(flatten)]
    args: report_operator::plugin::PluginArgs,
}

/// Whether the binary was started under the plugin's name (a copy or a symlink).
fn called_as_plugin() -> bool {
    std::env::args_os()
        .next()
        .and_then(|arg0| {
            std::path::Path::new(&arg0)
                .file_stem()
                .map(|s| s == "kubectl-report")
        })
        .unwrap_or(false)
}

fn main() -> ExitCode {
    if called_as_plugin() {
        return block_on(plugin(PluginCli::parse().args));
    }
    let cli = Cli::parse();
    match cli.command {
        Command::Report(args) => block_on(plugin(args)),
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
        Command::Docs {
            what: DocsCommand::Reference { out },
        } => {
            let commands = report_operator::docs::Commands {
                operator: Cli::command(),
                plugin: PluginCli::command(),
            };
            match report_operator::docs::write(&out, &commands) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: writing the reference into {}: {e}", out.display());
                    ExitCode::FAILURE
                }
            }
        }
        Command::Run(args) => {
            args.init_logging();
            block_on(report_operator::controller::run(args))
        }
    }
}

/// A plugin command, its error message escaped for the terminal (it may quote servers).
async fn plugin(args: report_operator::plugin::PluginArgs) -> Result<(), String> {
    report_operator::plugin::run(args).await.map_err(|e| e.shown())
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
