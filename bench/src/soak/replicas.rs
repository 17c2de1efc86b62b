//! The operator's replicas as processes: how they are started (the one place that knows the
//! replica mode's flags), which one a kill hits, how each process ended, and its peak memory.
//!
//! A process that exits on its own is started again at once, as a Deployment's pod would
//! be, and its exit is recorded: a replica that stepped down because it could not renew its
//! Lease (documented in high-availability.md) apart from any other exit.

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
    /// `--sharding`: namespaces shared out over Leases (an operator that has the flag); a
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
                    .find(|r| holder.as_deref() == Some(Replicas::identity(*r).as_str()))
                    .unwrap_or(0)
            }
        }
    }
}

/// What the log of a replica that stepped down says (`controller::leader`).
const STEPPED_DOWN: &str = "stopping reconciles";

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
        match self.mode {
            None => vec![],
            Some(ReplicaMode::LeaderElect) => vec![
                "--leader-elect".into(),
                "--leader-election-namespace".into(),
                LEASE_NAMESPACE.into(),
                "--leader-election-lease-name".into(),
                self.lease_name.clone(),
            ],
            Some(ReplicaMode::Sharding) => vec!["--sharding".into()],
        }
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

    /// Reads each live process's VmHWM; starts again every replica whose process exited by
    /// itself, recording how.
    pub fn poll(&mut self) -> Result<(), BenchError> {
        for r in 0..self.live.len() {
            self.sample(r);
            let exited = self.live[r].as_mut().and_then(Operator::exited);
            if let Some(status) = exited {
                self.live[r] = None;
                let p = &mut self.processes[self.current[r]];
                let log = std::fs::read_to_string(&p.log).unwrap_or_default();
                p.end = classify(status, &log);
                eprintln!(
                    "[soak] operator replica {r} exited by itself ({status}): {:?}; log {}",
                    p.end,
                    p.log.display()
                );
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

/// An exit the soak did not cause: a step-down after a lost Lease (the log says so, and the
/// process failed rather than crashed), or anything else.
fn classify(status: ExitStatus, log: &str) -> End {
    let tail: String = log
        .lines()
        .rev()
        .take(3)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect::<Vec<_>>()
        .join(" | ");
    if status.code() == Some(1) && log.contains(STEPPED_DOWN) {
        End::SteppedDown(format!("{status}"))
    } else {
        End::Unexpected(format!("{status}: {tail}"))
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::process::ExitStatusExt;

    use super::*;

    #[test]
    fn only_a_failed_exit_after_a_lost_lease_is_a_step_down() {
        let failed = ExitStatus::from_raw(1 << 8);
        let segfault = ExitStatus::from_raw(11);
        let lost = "WARN lost contact with the API server; stopping reconciles before the Lease can pass\nerror: lost leadership";
        assert!(matches!(classify(failed, lost), End::SteppedDown(_)));
        assert!(matches!(classify(segfault, lost), End::Unexpected(_)));
        match classify(failed, "a\nb\nerror: Kubernetes: connection refused") {
            End::Unexpected(why) => assert!(why.contains("connection refused"), "{why}"),
            other => panic!("{other:?}"),
        }
    }
}
