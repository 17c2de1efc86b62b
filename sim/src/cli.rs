//! `report-sim`: the simulators as a process, for demos and load tests.

use std::net::SocketAddr;
use std::path::PathBuf;

use super::{ReportingApi, SimConfig, SimError, SimServer};

/// Flags of `report-sim`. Flags override the config file; the timing and fault
/// flags apply to all five APIs.
#[derive(clap::Args, Debug, Clone)]
pub struct SimArgs {
    /// Address to listen on (port 0: any free port).
    #[arg(long, env = "REPORT_SIM_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// A YAML or JSON file with a SimConfig (credentials, limits, per-API knobs).
    #[arg(long, env = "REPORT_SIM_CONFIG")]
    pub config: Option<PathBuf>,
    /// Milliseconds a report takes to generate.
    #[arg(long)]
    pub generation_ms: Option<u64>,
    /// Milliseconds added before every answer.
    #[arg(long)]
    pub latency_ms: Option<u64>,
    /// Share of calls (0 to 1) answered 503 without being carried out.
    #[arg(long)]
    pub error_rate: Option<f64>,
    /// Share of calls (0 to 1) carried out whose answer is lost.
    #[arg(long)]
    pub lost_response_rate: Option<f64>,
    /// Share of reports (0 to 1) that end failed.
    #[arg(long)]
    pub failure_rate: Option<f64>,
    /// How long SUPPLIER's signed URLs work, in seconds.
    #[arg(long)]
    pub supplier_url_lifetime_secs: Option<u64>,
    /// Seed of the random faults, for a repeatable run.
    #[arg(long)]
    pub seed: Option<u64>,
}

impl SimArgs {
    /// The config file (or the defaults) with the flags applied.
    pub fn to_config(&self) -> Result<SimConfig, SimError> {
        let mut config = match &self.config {
            Some(path) => SimConfig::from_file(path)?,
            None => SimConfig::default(),
        };
        config = config.for_all(|b| {
            if let Some(v) = self.generation_ms {
                b.generation_ms = v;
            }
            if let Some(v) = self.latency_ms {
                b.latency_ms = v;
            }
            if let Some(v) = self.error_rate {
                b.error_rate = v;
            }
            if let Some(v) = self.lost_response_rate {
                b.lost_response_rate = v;
            }
            if let Some(v) = self.failure_rate {
                b.failure_rate = v;
            }
        });
        if let Some(v) = self.supplier_url_lifetime_secs {
            config.supplier.url_lifetime_secs = v;
        }
        if self.seed.is_some() {
            config.seed = self.seed;
        }
        config.validate()?;
        Ok(config)
    }
}

/// Runs the simulators until Ctrl-C or SIGTERM, printing where each API is.
pub async fn run_cli(args: SimArgs) -> Result<(), SimError> {
    let config = args.to_config()?;
    let sim = SimServer::start(config, args.listen).await?;
    println!("report-sim listening on {}", sim.base_url());
    for t in ReportingApi::ALL {
        println!("  {:<9} spec.url: {}", t.as_str(), sim.backend_url(t));
    }
    println!("  SUPPLIER  spec.supplier.tokenUrl: {}", sim.supplier_token_url());
    println!(
        "  statistics: {}/_sim/stats  faults: {}/_sim/faults",
        sim.base_url(),
        sim.base_url()
    );
    wait_for_stop().await?;
    sim.shutdown();
    Ok(())
}

async fn wait_for_stop() -> std::io::Result<()> {
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            r = tokio::signal::ctrl_c() => r,
            _ = term.recv() => Ok(()),
        }
    }
    #[cfg(not(unix))]
    {
        tokio::signal::ctrl_c().await
    }
}
