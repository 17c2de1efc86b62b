//! The harness of the hostile-tenant suite (tests/e2e_hostile.rs): the suite's shared state
//! and its helpers, findings collected from cases that run at once, and a watchdog on the
//! operator's memory.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::{Api, ListParams};
use report_operator::api::{BackendType, ReportBackend, ReportFile, ReportGenerator, find_condition};
use report_sim::SimServer;

use super::ControlPlane;
use super::fixtures::{self, lower};
use super::hostile::HostileServer;
use super::operator::{Operator, memory_kib};

/// Above this, the watchdog kills the operator to protect the machine.
pub const WATCHDOG_KILL_MIB: u64 = 1024;
/// A condition message longer than this copied too much of an answer.
pub const MAX_MESSAGE_CHARS: usize = 1024;

/// Expectations that failed, collected from all cases.
#[derive(Default)]
pub struct Findings(Mutex<Vec<String>>);

impl Findings {
    pub fn fail(&self, case: &str, what: impl std::fmt::Display) {
        eprintln!("[hostile] FAIL {case}: {what}");
        self.0.lock().expect("findings").push(format!("{case}: {what}"));
    }

    pub fn check(&self, case: &str, ok: bool, what: impl FnOnce() -> String) {
        if !ok {
            self.fail(case, what());
        }
    }

    pub fn all(&self) -> Vec<String> {
        self.0.lock().expect("findings").clone()
    }
}

pub fn note(case: &str, what: impl std::fmt::Display) {
    eprintln!("[hostile] {case}: {what}");
}

/// Checks made once every case has run.
pub enum FinalCheck {
    /// A hostile backend must not have been marked Authenticated since.
    NeverAuthenticated { case: String, ns: String, name: String },
    /// A namespace must hold at most `max` ReportFiles.
    AtMostFiles { case: String, ns: String, max: usize },
}

pub struct Suite {
    pub cp: ControlPlane,
    pub client: kube::Client,
    pub sim: SimServer,
    pub hostile: HostileServer,
    pub findings: Findings,
    pub finals: Mutex<Vec<FinalCheck>>,
    /// Part of every hostile credential: it must never show up in a condition or the log.
    pub marker: String,
    /// Set by the watchdog when the operator is gone: waits stop early.
    pub operator_gone: Arc<AtomicBool>,
}

impl Suite {
    /// `kubectl <verb> -f -` in `ns`: stdout, or stderr when it fails.
    pub async fn kubectl(&self, ns: &str, verb: &str, yaml: &str) -> Result<String, String> {
        let cp = self.cp.clone();
        let (ns, verb, yaml) = (ns.to_string(), verb.to_string(), yaml.to_string());
        let out = tokio::task::spawn_blocking(move || {
            cp.kubectl_with_stdin(&["-n", &ns, &verb, "-f", "-"], Some(&yaml))
        })
        .await
        .expect("kubectl task");
        if out.status.success() {
            Ok(super::stdout(&out))
        } else {
            Err(super::stderr(&out))
        }
    }

    pub async fn apply(&self, ns: &str, yaml: &str) -> Result<String, String> {
        self.kubectl(ns, "apply", yaml).await
    }

    /// Polls `check` until it gives an answer, `deadline` passes or the operator is gone.
    pub async fn poll<T, F, Fut>(&self, deadline: Duration, mut check: F) -> Option<T>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Option<T>>,
    {
        let start = Instant::now();
        loop {
            if let Some(v) = check().await {
                return Some(v);
            }
            if start.elapsed() >= deadline || self.operator_gone.load(Ordering::Relaxed) {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// How a wait that gave no answer ended, for failure messages.
    pub fn ended(&self, deadline: Duration) -> String {
        if self.operator_gone.load(Ordering::Relaxed) {
            "before the operator went away".into()
        } else {
            format!("within {deadline:?}")
        }
    }

    pub fn backends(&self, ns: &str) -> Api<ReportBackend> {
        Api::namespaced(self.client.clone(), ns)
    }

    pub fn generators(&self, ns: &str) -> Api<ReportGenerator> {
        Api::namespaced(self.client.clone(), ns)
    }

    pub fn files(&self, ns: &str) -> Api<ReportFile> {
        Api::namespaced(self.client.clone(), ns)
    }

    pub fn secrets(&self, ns: &str) -> Api<Secret> {
        Api::namespaced(self.client.clone(), ns)
    }

    /// The current Ready condition of a ReportBackend, once it describes the latest spec.
    pub async fn backend_ready(&self, ns: &str, name: &str) -> Option<Condition> {
        let rb = self.backends(ns).get(name).await.ok()?;
        let c = find_condition(&rb.status?.conditions, "Ready")?.clone();
        (c.observed_generation == rb.metadata.generation).then_some(c)
    }

    pub async fn file_count(&self, ns: &str) -> usize {
        self.files(ns)
            .list(&ListParams::default())
            .await
            .map(|l| l.items.len())
            .unwrap_or(0)
    }

    /// Waits for a ReportBackend to be Ready=False with one of `expected`, failing at once if
    /// it is marked Authenticated; then checks the message.
    pub async fn expect_backend_refused(
        &self,
        case: &str,
        ns: &str,
        name: &str,
        expected: &[&str],
        deadline: Duration,
    ) {
        let last: Mutex<Option<String>> = Mutex::new(None);
        let started = Instant::now();
        let outcome = self
            .poll(deadline, || async {
                let c = self.backend_ready(ns, name).await?;
                *last.lock().expect("last") = Some(format!("Ready={} {}: {}", c.status, c.reason, c.message));
                if c.status == "True" {
                    return Some(Err(format!("marked Ready=True ({}): {}", c.reason, c.message)));
                }
                expected.contains(&c.reason.as_str()).then_some(Ok(c))
            })
            .await;
        let what = format!("ReportBackend {name}");
        match outcome {
            Some(Ok(c)) => {
                note(
                    case,
                    format!("{what}: Ready=False {} after {:?}", c.reason, started.elapsed()),
                );
                self.check_message(case, &what, &c.message);
            }
            Some(Err(e)) => self.findings.fail(
                case,
                format!("{what} {e} (expected Ready=False with {expected:?})"),
            ),
            None => self.findings.fail(
                case,
                format!(
                    "{what}: no Ready=False with {expected:?} {}; last seen: {:?}",
                    self.ended(deadline),
                    last.lock().expect("last")
                ),
            ),
        }
        self.finals
            .lock()
            .expect("finals")
            .push(FinalCheck::NeverAuthenticated {
                case: case.to_string(),
                ns: ns.to_string(),
                name: name.to_string(),
            });
    }

    /// A condition message says something, briefly, and holds no credential.
    pub fn check_message(&self, case: &str, what: &str, message: &str) {
        self.findings.check(case, !message.trim().is_empty(), || {
            format!("{what}: empty condition message")
        });
        self.findings.check(case, !message.contains(&self.marker), || {
            format!("{what}: the condition message holds a credential")
        });
        self.findings
            .check(case, message.chars().count() <= MAX_MESSAGE_CHARS, || {
                format!(
                    "{what}: condition message of {} chars copies too much of the answer",
                    message.chars().count()
                )
            });
    }
}

/// The credentials Secret and ReportBackend of a backend at any URL.
pub fn backend_yaml(name: &str, t: BackendType, url: &str, credentials: &[(&str, &str)]) -> String {
    let data: String = credentials
        .iter()
        .map(|(k, v)| format!("  {k}: {v:?}\n"))
        .collect();
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: {name}-credentials\nstringData:\n{data}---\n\
apiVersion: reporting.report-operator.io/v1alpha1\nkind: ReportBackend\nmetadata:\n  name: {name}\nspec:\n  type: {}\n  url: {url:?}\n  credentialsSecretRef:\n    name: {name}-credentials\n",
        t.as_str()
    )
}

pub fn connect_credentials(marker: &str) -> Vec<(&'static str, String)> {
    vec![("apiKey", format!("SU-666-666-666:{marker}"))]
}

/// A simulator backend of `t` named after its type, with the simulator's credentials.
pub fn sim_backend(s: &Suite, t: BackendType) -> String {
    fixtures::backend(&s.sim, t, &lower(t), &fixtures::good_credentials(t), "")
}

/// Samples the operator's memory; kills it above [`WATCHDOG_KILL_MIB`].
pub struct Watchdog {
    pub peak_kib: Arc<AtomicU64>,
    pub killed_at_kib: Arc<AtomicU64>,
    pub task: tokio::task::JoinHandle<()>,
}

impl Watchdog {
    pub fn start(pid: u32, gone: Arc<AtomicBool>) -> Watchdog {
        let peak_kib = Arc::new(AtomicU64::new(0));
        let killed_at_kib = Arc::new(AtomicU64::new(0));
        let (peak, killed) = (peak_kib.clone(), killed_at_kib.clone());
        let task = tokio::spawn(async move {
            loop {
                let Some((hwm, rss)) = memory_kib(pid) else {
                    gone.store(true, Ordering::Relaxed);
                    return;
                };
                peak.fetch_max(hwm, Ordering::Relaxed);
                if rss > WATCHDOG_KILL_MIB * 1024 {
                    eprintln!(
                        "[hostile] watchdog: the operator uses {} MiB; killing it (pid {pid})",
                        rss / 1024
                    );
                    killed.store(rss, Ordering::Relaxed);
                    let _ = std::process::Command::new("kill")
                        .args(["-KILL", &pid.to_string()])
                        .status();
                    gone.store(true, Ordering::Relaxed);
                    return;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        });
        Watchdog {
            peak_kib,
            killed_at_kib,
            task,
        }
    }
}

/// The last `n` lines of the operator's log.
pub fn log_tail(operator: &Operator, n: usize) -> String {
    let log = operator.logs();
    let mut tail: Vec<&str> = log.lines().rev().take(n).collect();
    tail.reverse();
    tail.join("\n")
}

/// Whether the operator binary has the outbound policy, which the metadata case needs.
pub fn has_outbound_policy() -> bool {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_report-operator"))
        .args(["run", "--help"])
        .output();
    out.is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("--outbound-allow-cidr"))
}

/// Creates the Secrets `make(0)`, `make(1)`, … `make(n - 1)` through `api`, 8 at a time;
/// how many were created.
pub async fn create_secrets(api: &Api<Secret>, n: usize, make: impl Fn(usize) -> Secret) -> usize {
    use futures::StreamExt;
    futures::stream::iter(0..n)
        .map(|i| {
            let (api, secret) = (api.clone(), make(i));
            async move { api.create(&Default::default(), &secret).await.is_ok() }
        })
        .buffer_unordered(8)
        .filter(|ok| std::future::ready(*ok))
        .count()
        .await
}

/// KiB in MiB, for messages.
pub fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// How much a process's memory grew between two readings of [`memory_kib`] (`(VmHWM, VmRSS)`):
/// the larger growth of the two in KiB, and the readings in words.
pub fn memory_growth(before: (u64, u64), after: (u64, u64)) -> (u64, String) {
    let growth = after
        .0
        .saturating_sub(before.0)
        .max(after.1.saturating_sub(before.1));
    let words = format!(
        "VmHWM {:.1} -> {:.1} MiB, VmRSS {:.1} -> {:.1} MiB",
        mib(before.0),
        mib(after.0),
        mib(before.1),
        mib(after.1)
    );
    (growth, words)
}
