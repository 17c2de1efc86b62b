//! The operator as a process, and what `/proc` says about it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::BenchError;

/// How operator processes are started: the binary, where their logs go, their RUST_LOG.
#[derive(Debug, Clone)]
pub struct OperatorCommand {
    pub binary: PathBuf,
    pub log_dir: PathBuf,
    pub rust_log: String,
}

pub struct Operator {
    child: Child,
    pub log: PathBuf,
    /// Where its `/metrics` are served.
    metrics: String,
}

impl Operator {
    /// `report-operator run --namespace <namespace>`, allowed to reach the simulators on
    /// loopback, logging to `<log_dir>/<namespace>-<n>.log`.
    pub fn start(
        cmd: &OperatorCommand,
        kubeconfig: &Path,
        namespace: &str,
        n: u32,
    ) -> Result<Operator, BenchError> {
        Operator::start_with(cmd, kubeconfig, namespace, n, &[])
    }

    /// [`Operator::start`] with more flags for `run` (Leases: with `POD_NAME` `<namespace>-<n>`).
    pub fn start_with(
        cmd: &OperatorCommand,
        kubeconfig: &Path,
        namespace: &str,
        n: u32,
        extra: &[&str],
    ) -> Result<Operator, BenchError> {
        let name = format!("{namespace}-{n}");
        let args: Vec<&str> = ["--namespace", namespace]
            .into_iter()
            .chain(extra.iter().copied())
            .collect();
        Operator::spawn(cmd, kubeconfig, &name, &args, &[("POD_NAME", name.as_str())])
    }

    /// `report-operator run <args>`, allowed to reach the simulators (and an object store)
    /// on loopback, with `env` set, logging to `<log_dir>/<log_name>.log`.
    pub fn spawn(
        cmd: &OperatorCommand,
        kubeconfig: &Path,
        log_name: &str,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Result<Operator, BenchError> {
        std::fs::create_dir_all(&cmd.log_dir)?;
        let log = cmd.log_dir.join(format!("{log_name}.log"));
        let out = std::fs::File::create(&log)?;
        // A free port for the metrics, found by binding one and letting it go.
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let metrics = format!("127.0.0.1:{port}");
        let child = Command::new(&cmd.binary)
            .args(["run", "--metrics-addr", &metrics])
            .args(["--outbound-allow-cidr=127.0.0.1/32", "--outbound-allow-http"])
            .args(args)
            .env("KUBECONFIG", kubeconfig)
            .env("RUST_LOG", &cmd.rust_log)
            .env("NO_COLOR", "1")
            .envs(env.iter().copied())
            .stdout(Stdio::from(out.try_clone()?))
            .stderr(Stdio::from(out))
            .spawn()?;
        Ok(Operator {
            child,
            log,
            metrics: format!("http://{metrics}/metrics"),
        })
    }

    /// SIGKILL, as a node failure or an OOM kill; how the process ended.
    pub fn kill(&mut self) -> Option<ExitStatus> {
        let _ = self.child.kill();
        self.child.wait().ok()
    }

    /// How the process ended, or `None` while it runs.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// The operator's metrics in the Prometheus text format.
    async fn scrape(&self) -> Result<String, BenchError> {
        Ok(reqwest::get(&self.metrics)
            .await?
            .error_for_status()?
            .text()
            .await?)
    }

    /// Reconciles of every kind so far.
    pub async fn reconciles(&self) -> Result<u64, BenchError> {
        let text = self.scrape().await?;
        Ok(samples(&text, "report_operator_reconciles_total{")
            .map(|v| v as u64)
            .sum())
    }

    /// The sum (seconds) and count of the reconciles of `kind` so far.
    pub async fn reconcile_time(&self, kind: &str) -> Result<(f64, u64), BenchError> {
        let text = self.scrape().await?;
        let labels = format!("{{kind=\"{kind}\"}}");
        let sum = samples(
            &text,
            &format!("report_operator_reconcile_duration_seconds_sum{labels}"),
        )
        .sum();
        let count = samples(
            &text,
            &format!("report_operator_reconcile_duration_seconds_count{labels}"),
        )
        .sum::<f64>() as u64;
        Ok((sum, count))
    }

    /// Waits for the "caches synced" line: the operator has listed everything and reconciles.
    pub async fn synced(&mut self) -> Result<Duration, BenchError> {
        let started = Instant::now();
        loop {
            if std::fs::read_to_string(&self.log)?.contains("caches synced") {
                return Ok(started.elapsed());
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(BenchError::Other(format!(
                    "the operator exited ({status}); see {}",
                    self.log.display()
                )));
            }
            if started.elapsed() > Duration::from_secs(300) {
                return Err(BenchError::Other(format!(
                    "the operator did not sync; see {}",
                    self.log.display()
                )));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Peak resident memory so far, KiB.
    pub fn hwm_kib(&self) -> u64 {
        status_kib(self.pid(), "VmHWM")
    }

    /// Resident memory now, KiB.
    pub fn rss_kib(&self) -> u64 {
        status_kib(self.pid(), "VmRSS")
    }

    /// CPU time used so far (user + system), milliseconds.
    pub fn cpu_ms(&self) -> u64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).unwrap_or_default();
        // The command name is in parentheses and may hold spaces: fields count from after it.
        let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
        let fields: Vec<&str> = rest.split_whitespace().collect();
        // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
        let ticks: u64 = [11, 12]
            .iter()
            .filter_map(|i| fields.get(*i)?.parse::<u64>().ok())
            .sum();
        ticks.saturating_mul(1000) / clock_ticks()
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The values of the samples whose line starts with `prefix`.
fn samples<'a>(text: &'a str, prefix: &'a str) -> impl Iterator<Item = f64> + 'a {
    text.lines()
        .filter(move |l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse().ok())
}

fn status_kib(pid: u32, key: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// `sysconf(_SC_CLK_TCK)`, asked of `getconf` once (100 on Linux nearly everywhere).
fn clock_ticks() -> u64 {
    static TICKS: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok()?.trim().parse().ok())
            .filter(|t| *t > 0)
            .unwrap_or(100)
    })
}

pub fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}
