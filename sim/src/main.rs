//! The `report-sim` binary: the simulators of the five reporting APIs as a process, for demos
//! and load tests. It is not part of the operator's binary or image.
//!
//! It prints its URLs at start and reports what it served at `/_sim/stats`; it installs no
//! log subscriber, because nothing in it logs through `tracing`.

use std::process::ExitCode;

use clap::Parser;

#[derive(Parser)]
#[command(
    name = "report-sim",
    version,
    about = "Serve simulators of the five reporting APIs, for tests, demos and benchmarks"
)]
struct Cli {
    #[command(flatten)]
    sim: report_sim::SimArgs,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: starting the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(report_sim::run_cli(cli.sim)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
