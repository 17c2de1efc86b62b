//! The `report-operator` binary: `run` (the controller), `crd` (print the CRDs) and `sim`
//! (the simulators of the five reporting APIs).

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "report-operator", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the CustomResourceDefinitions as YAML.
    Crd,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Crd => match report_operator::api::crds_yaml() {
            Ok(yaml) => {
                print!("{yaml}");
                std::process::ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: rendering CRDs: {e}");
                std::process::ExitCode::FAILURE
            }
        },
    }
}
