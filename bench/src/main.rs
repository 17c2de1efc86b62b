//! The operator's benchmark (issue 15): the release `report-operator` against a real control
//! plane and in-process simulators, one namespace, one simulator and one operator process per
//! scenario, so that each scenario's backend calls, memory and CPU are its own.
//!
//! `hack/bench.sh` builds everything, starts a control plane of its own and runs this; by
//! hand: `KUBECONFIG=… bench --operator target/release/report-operator [--scenarios a,b,c,d]`.
//!
//! READY is what a watch on the namespace's ReportFiles sees (no polling); backend calls come
//! from the simulator's statistics; memory (VmHWM, VmRSS) and CPU (utime + stime) from
//! `/proc/<pid>`.

mod failover;
mod reference;
mod scale;
mod scenarios;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use report_bench::operator::OperatorCommand;
use report_bench::{BenchError, cluster, operator};

#[derive(Parser, Clone)]
#[command(about = "Benchmark of report-operator on a real control plane")]
pub struct Args {
    /// The operator binary (the release build).
    #[arg(long, default_value = "target/release/report-operator")]
    operator: PathBuf,
    /// Which scenarios to run, of a (one report), b (1,000 at once), c (idle generators), d
    /// (SUPPLIER fan-out and the hand-written client), e (restart and reconcile time at scale,
    /// at a fiftieth of the scale first), f (failover: one Lease against warm standbys).
    #[arg(long, value_delimiter = ',', default_value = "a,b,c,d,e,f")]
    scenarios: Vec<String>,
    /// Runs of scenario a.
    #[arg(long, env = "BENCH_RUNS", default_value_t = 20)]
    runs: usize,
    /// Reports applied at once in scenario b.
    #[arg(long, env = "BENCH_REPORTS", default_value_t = 1000)]
    reports: usize,
    /// Idle PERIODIC generators in scenario c.
    #[arg(long, env = "BENCH_IDLE_GENERATORS", default_value_t = 10_000)]
    idle_generators: usize,
    /// Seconds over which scenario c measures the idle operator's CPU.
    #[arg(long, env = "BENCH_IDLE_SECONDS", default_value_t = 60)]
    idle_seconds: u64,
    /// Generators made before the operator starts in scenario e.
    #[arg(long, env = "BENCH_SCALE_GENERATORS", default_value_t = 10_000)]
    scale_generators: usize,
    /// Finished ReportFiles made before the operator starts in scenario e.
    #[arg(long, env = "BENCH_SCALE_FILES", default_value_t = 50_000)]
    scale_files: usize,
    /// Generators in the namespace of scenario f.
    #[arg(long, env = "BENCH_FAILOVER_GENERATORS", default_value_t = 2_000)]
    failover_generators: usize,
    /// Finished ReportFiles in the namespace of scenario f.
    #[arg(long, env = "BENCH_FAILOVER_FILES", default_value_t = 10_000)]
    failover_files: usize,
    /// Where the operators' logs go.
    #[arg(long, default_value = "target/bench")]
    log_dir: PathBuf,
    /// RUST_LOG of the operators (debug logs cost CPU; scenario d's log has the timings).
    #[arg(
        long,
        env = "BENCH_OPERATOR_LOG",
        default_value = "info,report_operator=debug,kube=warn"
    )]
    operator_log: String,
}

impl Args {
    /// How the scenarios start operator processes.
    pub fn operator_command(&self) -> OperatorCommand {
        OperatorCommand {
            binary: self.operator.clone(),
            log_dir: self.log_dir.clone(),
            rust_log: self.operator_log.clone(),
        }
    }
}

/// One line of the table.
pub struct Row {
    pub scenario: String,
    pub result: String,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let result = match report_sim::block_on(run(args)) {
        Ok(result) => result,
        Err(code) => return code,
    };
    match result {
        Ok(rows) => {
            println!("\n| scenario | result |\n|---|---|");
            for r in rows {
                println!("| {} | {} |", r.scenario, r.result);
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<Vec<Row>, BenchError> {
    let cluster = cluster::Cluster::connect().await?;
    let mut rows = Vec::new();
    for s in &args.scenarios {
        let found = match s.as_str() {
            "a" => scenarios::one_report(&cluster, &args).await?,
            "b" => scenarios::many_reports(&cluster, &args).await?,
            "c" => scenarios::idle_generators(&cluster, &args).await?,
            "d" => scenarios::fan_out(&cluster, &args).await?,
            "e" => scale::scale(&cluster, &args).await?,
            "f" => failover::failover(&cluster, &args).await?,
            other => {
                return Err(BenchError::Other(format!(
                    "no scenario {other:?} (a, b, c, d, e, f)"
                )));
            }
        };
        for r in &found {
            eprintln!("[bench] {}: {}", r.scenario, r.result);
        }
        rows.extend(found);
    }
    Ok(rows)
}
