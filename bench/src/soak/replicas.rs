//! The operator's replicas as processes: how they are started (the one place that knows the
//! replica mode's flags), which one a kill hits, how each process ended, and its peak memory.
//!
//! A process that exits on its own is started again as the kubelet restarts a container (at
//! once the first time, then after 10 s, 20 s, … up to 5 minutes; a process that ran 10
//! minutes starts the count afresh), and its exit is recorded: a replica that stepped down
//! after losing its Lease (documented in high-availability.md) apart from any other exit.

use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use kube::{Api, Client};

use crate::BenchError;
use crate::operator::{Operator, OperatorCommand};

/// How two or more replicas share the work.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ReplicaMode {
    /// `--leader-elect`: one Lease, one leader; a kill hits the leader.
    LeaderElect,
    /// `--sharding`: namespaces shared out over shard Leases; a
    /// kill hits a replica drawn at random.
    Sharding,
}

/// Which replica a kill hits.
pub struct Targeting {
    mode: Option<ReplicaMode>,
    lease_name: String,
    count: usize,
}

impl Targeting {
    /// The only one; the Lease holder under leader election (read from the API server;
    /// replica 0 when it cannot be read); under sharding, replica `draw` modulo their number.
    pub async fn victim(&self, client: &Client, draw: u64) -> usize {
        match self.mode {
            None => 0,
            Some(ReplicaMode::Sharding) => (draw % self.count.max(1) as u64) as usize,
            Some(ReplicaMode::LeaderElect) => {
                let api: Api<Lease> = Api::namespaced(client.clone(), LEASE_NAMESPACE);
                let lease = tokio::time::timeout(Duration::from_secs(3), api.get(&self.lease_name)).await;
                let holder = match lease {
                    Ok(Ok(l)) => l.spec.and_then(|s| s.holder_identity),
                    _ => None,
                };
                (0..self.count)
                    .find(|r| {
                        // The operator adds a suffix per process: `<POD_NAME>_<8 hex>`.
                        let pod = format!("{}_", Replicas::identity(*r));
                        holder.as_deref().is_some_and(|h| h.starts_with(&pod))
                    })
                    .unwrap_or(0)
            }
        }
    }
}

/// What the log of a replica that stepped down says (`controller::leader`): the Lease went to
/// another replica, or its renewals stopped reaching the API server.
const LOST_TO_ANOTHER: &str = "another replica holds the leader-election Lease; stopping reconciles";
const LOST_CONTACT: &str = "lost contact with the API server; stopping reconciles";
const ACQUIRED: &str = "acquired the leader-election Lease";

/// The Lease duration the replicas run with (the operator's default).
const LEASE_SECONDS: u64 = 15;

/// How long before the kubelet starts a container again after its `n`th exit in a row.
fn restart_delay(n: u32) -> Duration {
    match n {
        0 | 1 => Duration::ZERO,
        n => Duration::from_secs(10u64.saturating_mul(1 << (n - 2).min(5))).min(Duration::from_secs(300)),
    }
}

/// A process that ran this long starts the kubelet's count of exits afresh.
const STABLE: Duration = Duration::from_secs(600);

/// How a process ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum End {
    Running,
    /// SIGKILLed by the soak's plan.
    Killed,
    /// Stopped by the soak after the run.
    Stopped,
    /// Exited by itself after losing its Lease, as documented.
    SteppedDown(String),
    /// Any other exit: a failure of the soak.
    Unexpected(String),
}

/// One process of one replica.
#[derive(Debug, Clone)]
pub struct Process {
    pub replica: usize,
    pub log: PathBuf,
    pub started: Instant,
    /// VmHWM, KiB, the last time it was read.
    pub peak_kib: u64,
    pub end: End,
}

pub struct Replicas {
    cmd: OperatorCommand,
    kubeconfig: PathBuf,
    mode: Option<ReplicaMode>,
    lease_name: String,
    live: Vec<Option<Operator>>,
    /// Per replica: exits in a row, and when it starts again after the last one.
    crashes: Vec<(u32, Option<Instant>)>,
    /// Every process started, the live ones last per replica.
    pub processes: Vec<Process>,
    /// Index into `processes` of each replica's live process.
    current: Vec<usize>,
}

/// The Lease of leader election lives in `default`.
const LEASE_NAMESPACE: &str = "default";

impl Replicas {
    /// `count` replicas; with more than one, `mode` says how they share the work.
    pub fn start(
        cmd: OperatorCommand,
        kubeconfig: &Path,
        count: usize,
        mode: ReplicaMode,
        lease_name: &str,
    ) -> Result<Replicas, BenchError> {
        let mut replicas = Replicas {
            cmd,
            kubeconfig: kubeconfig.to_path_buf(),
            mode: (count > 1).then_some(mode),
            lease_name: lease_name.to_string(),
            live: (0..count).map(|_| None).collect(),
            crashes: vec![(0, None); count],
            processes: Vec::new(),
            current: vec![0; count],
        };
        for r in 0..count {
            replicas.launch(r)?;
        }
        Ok(replicas)
    }

    /// The flags of `run` for this mode.
    fn flags(&self) -> Vec<String> {
        let mode = match self.mode {
            None => return vec![],
            Some(ReplicaMode::LeaderElect) => "--leader-elect",
            Some(ReplicaMode::Sharding) => "--sharding",
        };
        // The shard Leases are named after the lease name, in its namespace, with its duration.
        vec![
            mode.into(),
            "--leader-election-namespace".into(),
            LEASE_NAMESPACE.into(),
            "--leader-election-lease-name".into(),
            self.lease_name.clone(),
            "--leader-election-lease-seconds".into(),
            LEASE_SECONDS.to_string(),
        ]
    }

    /// The identity of replica `r` (`POD_NAME`): a restarted process keeps it, as a pod's
    /// container restarted in place does.
    fn identity(r: usize) -> String {
        format!("soak-replica-{r}")
    }

    fn launch(&mut self, r: usize) -> Result<(), BenchError> {
        let n = self.processes.len();
        let flags = self.flags();
        let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
        let identity = Self::identity(r);
        let op = Operator::spawn(
            &self.cmd,
            &self.kubeconfig,
            &format!("operator-{r}-{n:03}"),
            &flags,
            &[("POD_NAME", identity.as_str())],
        )?;
        self.processes.push(Process {
            replica: r,
            log: op.log.clone(),
            started: Instant::now(),
            peak_kib: 0,
            end: End::Running,
        });
        self.current[r] = n;
        self.live[r] = Some(op);
        Ok(())
    }

    /// Reads each live process's VmHWM; records the exit of every process that exited by
    /// itself, and starts its replica again when the kubelet would.
    pub fn poll(&mut self) -> Result<(), BenchError> {
        for r in 0..self.live.len() {
            self.sample(r);
            let exited = self.live[r].as_mut().and_then(Operator::exited);
            if let Some(status) = exited {
                self.live[r] = None;
                let p = &mut self.processes[self.current[r]];
                let log = std::fs::read_to_string(&p.log).unwrap_or_default();
                p.end = classify(status, &log);
                let ran = p.started.elapsed();
                let (n, at) = &mut self.crashes[r];
                *n = if ran >= STABLE { 1 } else { *n + 1 };
                *at = Some(Instant::now() + restart_delay(*n));
                eprintln!(
                    "[soak] operator replica {r} exited by itself ({status}), starting again in {} s: {:?}; log {}",
                    restart_delay(*n).as_secs(),
                    p.end,
                    p.log.display()
                );
            }
            if self.live[r].is_none() && self.crashes[r].1.is_some_and(|at| Instant::now() >= at) {
                self.crashes[r].1 = None;
                self.launch(r)?;
            }
        }
        Ok(())
    }

    fn sample(&mut self, r: usize) {
        if let Some(op) = &self.live[r] {
            let kib = op.hwm_kib();
            let p = &mut self.processes[self.current[r]];
            p.peak_kib = p.peak_kib.max(kib);
        }
    }

    /// What decides which replica a kill hits.
    pub fn targeting(&self) -> Targeting {
        Targeting {
            mode: self.mode,
            lease_name: self.lease_name.clone(),
            count: self.live.len(),
        }
    }

    /// SIGKILLs replica `r` and starts it again at once.
    pub fn kill(&mut self, r: usize) -> Result<(), BenchError> {
        self.sample(r);
        if let Some(mut op) = self.live[r].take() {
            op.kill();
            self.processes[self.current[r]].end = End::Killed;
        }
        self.launch(r)
    }

    /// Stops every replica after the run.
    pub fn stop(&mut self) {
        for r in 0..self.live.len() {
            self.sample(r);
            if let Some(mut op) = self.live[r].take() {
                op.kill();
                self.processes[self.current[r]].end = End::Stopped;
            }
        }
    }
}

/// An exit the soak did not cause. A step-down is as documented when the Lease went to
/// another replica, or when the process had held the Lease for about the time after which
/// its watchdog stops it (the duration less a fifth, less 2 s for reading the renewal back):
/// a renewal this process made cannot be that old sooner. Anything else is unexpected.
fn classify(status: ExitStatus, log: &str) -> End {
    let failed = status.code() == Some(1);
    if failed && log.contains(LOST_TO_ANOTHER) {
        return End::SteppedDown("the Lease went to another replica".into());
    }
    if failed && log.contains(LOST_CONTACT) {
        let lease = Duration::from_secs(LEASE_SECONDS);
        let watchdog = lease - (lease / 5).max(Duration::from_secs(1));
        let held = match (logged_at(log, ACQUIRED), logged_at(log, LOST_CONTACT)) {
            (Some(from), Some(to)) => (to - from).to_std().unwrap_or_default(),
            _ => Duration::ZERO,
        };
        return if held + Duration::from_secs(2) >= watchdog {
            End::SteppedDown("its renewals stopped reaching the API server".into())
        } else {
            End::Unexpected(format!(
                "stepped down {:.1} s after acquiring the Lease for lack of a renewal {} s old, which this process cannot have made: it took an earlier process's renewal under the same identity for its own",
                held.as_secs_f64(),
                watchdog.as_secs()
            ))
        };
    }
    let tail: Vec<&str> = log.lines().rev().take(2).collect();
    let tail: Vec<&str> = tail.into_iter().rev().collect();
    End::Unexpected(format!("{status}: {}", tail.join(" | ")))
}

/// The timestamp of the first log line holding `text` (lines start with one, RFC 3339).
fn logged_at(log: &str, text: &str) -> Option<chrono::DateTime<chrono::FixedOffset>> {
    let line = log.lines().find(|l| l.contains(text))?;
    chrono::DateTime::parse_from_rfc3339(line.split_whitespace().next()?).ok()
}

#[cfg(test)]
mod tests {
    use std::os::unix::process::ExitStatusExt;

    use super::*;

    #[test]
    fn a_step_down_is_documented_only_after_the_lease_was_held_long_enough() {
        let failed = ExitStatus::from_raw(1 << 8);
        let segfault = ExitStatus::from_raw(11);
        let log = |acquired: &str, lost: &str| {
            format!(
                "{acquired}  INFO report_operator::controller::leader: acquired the leader-election Lease identity=x\n\
                 {lost}  WARN report_operator::controller::leader: lost contact with the API server; stopping reconciles before the Lease can pass to another replica\n\
                 error: lost the leader-election Lease\n"
            )
        };
        let held_long = log("2026-12-06T03:38:00.000Z", "2026-12-06T03:38:30.500Z");
        let at_once = log("2026-12-06T03:38:41.320664Z", "2026-12-06T03:38:41.325566Z");
        assert!(matches!(classify(failed, &held_long), End::SteppedDown(_)));
        assert!(matches!(classify(segfault, &held_long), End::Unexpected(_)));
        match classify(failed, &at_once) {
            End::Unexpected(why) => assert!(why.starts_with("stepped down 0.0 s after acquiring"), "{why}"),
            other => panic!("{other:?}"),
        }
        let another = "x WARN another replica holds the leader-election Lease; stopping reconciles\n";
        assert!(matches!(classify(failed, another), End::SteppedDown(_)));
        match classify(
            failed,
            "a\nb\nerror: leader election: Kube error: ServiceError: client error (Connect)",
        ) {
            End::Unexpected(why) => assert!(
                why.ends_with("b | error: leader election: Kube error: ServiceError: client error (Connect)"),
                "{why}"
            ),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn restarts_back_off_as_the_kubelet_does() {
        let secs: Vec<u64> = (1..=8).map(|n| restart_delay(n).as_secs()).collect();
        assert_eq!(secs, [0, 10, 20, 40, 80, 160, 300, 300]);
    }
}
