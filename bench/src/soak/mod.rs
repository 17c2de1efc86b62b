//! The soak (issue 24): the operator for a set time against the real control plane, the
//! simulators and an S3 server, under everything at once (a steady stream of reports on all
//! five backends, faults injected into the simulators, the operator SIGKILLed every 20 to
//! 90 s, the API server restarted twice, the object store down for a minute, a namespace
//! deleted with reports in flight), then checked from sources other than the operator and
//! printed as a table of figures. `hack/soak.sh` builds and runs it on a control plane of
//! its own; the figures of a 30-minute run are in `docs/src/operations/reliability.md`.
//!
//! A run is drawn from one seed (printed first): the same seed gives the same plan.

mod assess;
mod chaos;
mod check;
mod observe;
mod plan;
mod replicas;
mod store;
mod table;
mod workload;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use chrono::NaiveDate;
use clap::Parser;
use report_sim::{SimConfig, SimServer};

use self::observe::{Episode, Milestone, ReadyLog};
use self::plan::{Event, GeneratorPlan, PlanSettings};
use self::replicas::{ReplicaMode, Replicas};
use self::store::ObjectStore;
use crate::BenchError;
use crate::cluster::Cluster;
use crate::operator::OperatorCommand;

#[derive(Parser, Debug, Clone)]
#[command(about = "Soak of report-operator under every fault at once, with figures")]
pub struct SoakArgs {
    /// How long reports are asked for and faults made; the settling and the checks follow.
    #[arg(long, default_value_t = 30.0)]
    pub minutes: f64,
    /// Operator replicas.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=2))]
    pub replicas: u8,
    /// How two replicas share the work.
    #[arg(long, value_enum, default_value = "leader-elect")]
    pub replica_mode: ReplicaMode,
    /// The seed of the plan; default: a fresh one (printed, to replay the run).
    #[arg(long)]
    pub seed: Option<u64>,
    /// The operator binary.
    #[arg(long, default_value = "target/release/report-operator")]
    pub operator: PathBuf,
    /// The versitygw binary (`hack/s3.sh` prints it).
    #[arg(long, env = "REPORT_OPERATOR_S3")]
    pub s3: PathBuf,
    /// The control-plane script, for `restart-apiserver` (its state dir comes from
    /// CP_STATE_DIR).
    #[arg(long, default_value = "hack/control-plane.sh")]
    pub control_plane_script: PathBuf,
    /// Where logs go (a directory per run).
    #[arg(long, default_value = "target/soak")]
    pub log_dir: PathBuf,
    /// RUST_LOG of the operator processes.
    #[arg(long, default_value = "info,kube=warn")]
    pub operator_log: String,
    /// New generators a minute (on average), besides one of each kind per namespace at the
    /// start.
    #[arg(long, default_value_t = 8.0)]
    pub generators_per_minute: f64,
    /// Faults injected a minute (on average).
    #[arg(long, default_value_t = 6.0)]
    pub faults_per_minute: f64,
    /// The shortest and longest pause between two kills of the operator, seconds.
    #[arg(long, num_args = 2, default_values_t = [20, 90])]
    pub kill_every: Vec<u64>,
    /// Milliseconds the simulators take to make a report.
    #[arg(long, default_value_t = 4000)]
    pub generation_ms: u64,
    /// Share of reports the simulators fail (a backend's own, permanent failure).
    #[arg(long, default_value_t = 0.03)]
    pub failure_rate: f64,
    /// The settling ends when no report has moved for this many minutes (longer than the
    /// operator's longest retry, 5 minutes, and its longest poll interval, 10)…
    #[arg(long, default_value_t = 12.0)]
    pub settle_quiet_minutes: f64,
    /// …or after this many.
    #[arg(long, default_value_t = 30.0)]
    pub settle_minutes: f64,
}

/// A generator the API server accepted.
#[derive(Debug, Clone)]
pub struct Made {
    pub plan: GeneratorPlan,
    pub namespace: String,
    pub name: String,
    /// A PERIODIC generator's first day.
    pub start: Option<NaiveDate>,
}

/// The doomed namespace's deletion.
#[derive(Debug, Clone)]
pub struct Deletion {
    pub namespace: String,
    pub at: Instant,
    /// Its reports in progress when it was deleted.
    pub in_flight: usize,
    /// How long until it was gone.
    pub gone: Option<Duration>,
}

/// What happened, for the checks.
#[derive(Default)]
pub struct Ledger {
    pub made: Vec<Made>,
    pub not_made: Vec<String>,
    /// CMP invoice reports by generator.
    pub invoices: BTreeMap<usize, String>,
    pub rde_runs: u32,
    pub rde_runs_skipped: u32,
    pub episodes: Vec<Episode>,
    /// Faults not injected because the same one was still waiting.
    pub faults_skipped: u32,
    /// Calls that injected faults were still waiting for at the end.
    pub unstruck: u64,
    /// Calls injected 429 faults were to hit, by API; at the end, those they hit.
    pub injected_429: BTreeMap<&'static str, u64>,
    pub deletion: Option<Deletion>,
}

pub struct Soak {
    pub args: SoakArgs,
    pub seed: u64,
    /// Names this run's namespaces and Lease.
    pub run: String,
    pub cluster: Cluster,
    pub sim: SimServer,
    pub store: tokio::sync::Mutex<ObjectStore>,
    pub store_endpoint: String,
    pub replicas: Mutex<Replicas>,
    pub ledger: Mutex<Ledger>,
    pub ready: ReadyLog,
    pub started: Instant,
}

impl Soak {
    pub fn ledger(&self) -> MutexGuard<'_, Ledger> {
        self.ledger
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn replicas(&self) -> MutexGuard<'_, Replicas> {
        self.replicas
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The `soak` binary.
pub fn main() -> ExitCode {
    let args = SoakArgs::parse();
    match report_sim::block_on(run(args)) {
        Ok(Ok(true)) => ExitCode::SUCCESS,
        Ok(Ok(false)) => ExitCode::FAILURE,
        Ok(Err(e)) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
        Err(code) => code,
    }
}

/// The simulators as the soak runs them: reports take `generation_ms`, a share fail, and
/// SUPPLIER allows 1,000 token requests an hour instead of 100, because every restart of
/// the operator (one a minute or so, with three SUPPLIER backends) asks for new tokens.
fn sim_config(args: &SoakArgs, seed: u64) -> SimConfig {
    let mut config = SimConfig::default().for_all(|b| {
        b.generation_ms = args.generation_ms;
        b.failure_rate = args.failure_rate;
    });
    config.seed = Some(seed);
    config.supplier.token_requests_per_window = 1000;
    config
}

async fn run(args: SoakArgs) -> Result<bool, BenchError> {
    let seed = args.seed.unwrap_or_else(rand::random);
    let run = format!("{:06x}", seed & 0xff_ffff);
    let chaos = Duration::from_secs_f64(args.minutes.max(0.5) * 60.0);
    let kill_every = match args.kill_every[..] {
        [lo, hi] => (Duration::from_secs(lo), Duration::from_secs(hi.max(lo))),
        _ => (Duration::from_secs(20), Duration::from_secs(90)),
    };
    let settings = PlanSettings {
        chaos,
        generators_per_minute: args.generators_per_minute,
        faults_per_minute: args.faults_per_minute,
        kill_every,
        // A minute, or a quarter of a short run.
        store_outage: Duration::from_secs(60).min(chaos / 4),
    };
    let plan = plan::draw(seed, &settings);
    let count = |f: fn(&Event) -> bool| plan.iter().filter(|p| f(&p.event)).count();
    println!(
        "[soak] seed {seed} (replay: hack/soak.sh --seed {seed} --minutes {} --replicas {}); namespaces soak-{run}-*",
        args.minutes, args.replicas
    );
    println!(
        "[soak] plan: {} generators, {} faults, {} kills, 2 API server restarts, the object store down {} s, a namespace deleted",
        count(|e| matches!(e, Event::Generator(_))),
        count(|e| matches!(e, Event::Fault(_))),
        count(|e| *e == Event::KillOperator),
        settings.store_outage.as_secs()
    );

    let load_before = load_average();
    let log_dir = args.log_dir.join(&run);
    std::fs::create_dir_all(&log_dir)?;
    let cluster = Cluster::connect().await?;
    let sim = SimServer::start(
        sim_config(&args, seed),
        "127.0.0.1:0"
            .parse()
            .map_err(|_| BenchError::Other("address".into()))?,
    )
    .await?;
    let store = ObjectStore::start(&args.s3, &log_dir.join("s3"), &log_dir).await?;
    let store_endpoint = store.endpoint();
    workload::setup(&cluster, &sim, &store_endpoint, &run).await?;
    let command = OperatorCommand {
        binary: args.operator.clone(),
        log_dir: log_dir.clone(),
        rust_log: args.operator_log.clone(),
    };
    let replicas = Replicas::start(
        command,
        &cluster.kubeconfig,
        usize::from(args.replicas),
        args.replica_mode,
        &format!("soak-{run}"),
    )?;
    let ready = ReadyLog::start(cluster.client.clone());
    let soak = Arc::new(Soak {
        args: args.clone(),
        seed,
        run,
        cluster,
        sim,
        store: tokio::sync::Mutex::new(store),
        store_endpoint,
        replicas: Mutex::new(replicas),
        ledger: Mutex::new(Ledger::default()),
        ready,
        started: Instant::now(),
    });
    let monitor = tokio::spawn({
        let soak = soak.clone();
        async move {
            for tick in 1u64.. {
                if let Err(e) = soak.replicas().poll() {
                    eprintln!("[soak] an operator replica did not start: {e}");
                }
                if tick % 60 == 0 {
                    let seen = soak.ready.seen();
                    let ready = seen.iter().filter(|r| r.milestone == Milestone::Ready).count();
                    eprintln!(
                        "[soak] {} {} generators, {ready} READY, {} copies, {} operator processes so far",
                        chaos::elapsed(&soak),
                        soak.ledger().made.len(),
                        seen.len() - ready,
                        soak.replicas().processes.len()
                    );
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    });

    chaos::run(soak.clone(), plan).await;
    eprintln!(
        "[soak] {} settling: waiting for every report to finish",
        chaos::elapsed(&soak)
    );
    let minutes = |m: f64| Duration::from_secs_f64(m.max(0.0) * 60.0);
    let settled = check::settle(
        &soak,
        minutes(args.settle_quiet_minutes),
        minutes(args.settle_minutes),
    )
    .await;
    let table = check::check(&soak, settled).await;
    monitor.abort();
    soak.replicas().stop();
    let table = table?;
    let rendered = table.render();
    println!("\n{rendered}");
    let header = format!(
        "seed {seed}; {} minutes; {} replica(s); {} cores, {}; load average at the start {load_before}, at the end {}\n\n",
        args.minutes,
        args.replicas,
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        cpu_model(),
        load_average()
    );
    std::fs::write(log_dir.join("figures.md"), format!("{header}{rendered}"))?;
    println!(
        "[soak] {}; figures and logs in {}",
        if table.passed() {
            "all checks passed"
        } else {
            "CHECKS FAILED"
        },
        log_dir.display()
    );
    Ok(table.passed())
}

/// The 1, 5 and 15 minute load averages: other work on the machine shows in the figures.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines().find_map(|l| {
                l.strip_prefix("model name")?
                    .split_once(':')
                    .map(|(_, m)| m.trim().to_string())
            })
        })
        .unwrap_or_default()
}
