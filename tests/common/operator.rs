//! The operator as a separate process, as it runs in a cluster, scoped to one test namespace
//! so that tests running at once never share an operator.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use super::ControlPlane;

pub struct Operator {
    child: Option<Child>,
    pub log: PathBuf,
    namespace: String,
    kubeconfig: PathBuf,
    extra_args: Vec<String>,
}

/// The outbound-policy flags that let the operator reach simulators on 127.0.0.1 over HTTP.
pub const LOOPBACK_SIMULATORS: &[&str] = &["--outbound-allow-cidr=127.0.0.1/32", "--outbound-allow-http"];

impl Operator {
    /// Starts `report-operator run --namespace <namespace>`; its log goes to
    /// `target/test-logs/<namespace>-operator-<n>.log`.
    pub fn start(cp: &ControlPlane, namespace: &str) -> Operator {
        Operator::start_with(cp, namespace, &[])
    }

    /// [`Operator::start`] with more flags for `run`.
    pub fn start_with(cp: &ControlPlane, namespace: &str, extra_args: &[&str]) -> Operator {
        let mut op = Operator {
            child: None,
            log: PathBuf::new(),
            namespace: namespace.to_string(),
            kubeconfig: cp.kubeconfig.clone(),
            extra_args: extra_args.iter().map(|s| s.to_string()).collect(),
        };
        op.restart();
        op
    }

    /// [`Operator::start_with`] talking to the API server as `kubeconfig` says (for example
    /// through a [`super::proxy::Proxy`]).
    pub fn start_with_kubeconfig(kubeconfig: &Path, namespace: &str, extra_args: &[&str]) -> Operator {
        let mut op = Operator {
            child: None,
            log: PathBuf::new(),
            namespace: namespace.to_string(),
            kubeconfig: kubeconfig.to_path_buf(),
            extra_args: extra_args.iter().map(|s| s.to_string()).collect(),
        };
        op.restart();
        op
    }

    /// Whether the process has exited (and how), without waiting.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().expect("poll report-operator"))
    }

    /// Starts the process again (after [`Operator::kill`]), with a new log file.
    pub fn restart(&mut self) {
        let dir = super::repo_root().join("target/test-logs");
        std::fs::create_dir_all(&dir).expect("log dir");
        self.log = dir.join(format!(
            "{}-operator-{:08x}.log",
            self.namespace,
            rand::random::<u32>()
        ));
        let log = std::fs::File::create(&self.log).expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_report-operator"))
            // Port 0: the operator picks a free port and logs it, so that tests running at once
            // never race for one ([`Operator::metrics`] reads it from the log).
            .args([
                "run",
                "--namespace",
                &self.namespace,
                "--metrics-addr",
                "127.0.0.1:0",
            ])
            // The simulators listen on loopback over plain HTTP, which the outbound policy
            // denies unless told otherwise.
            .args(LOOPBACK_SIMULATORS)
            .args(&self.extra_args)
            .env("KUBECONFIG", &self.kubeconfig)
            .env("RUST_LOG", "info,report_operator=debug,kube=warn")
            .stdout(Stdio::from(log.try_clone().expect("log file")))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("start report-operator");
        self.child = Some(child);
    }

    /// SIGKILL: no chance to clean up, as in a node failure or OOM kill.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, as Kubernetes stops a pod, and waits up to `deadline` for the process to end.
    pub async fn terminate(&mut self, deadline: std::time::Duration) -> std::process::ExitStatus {
        let pid = self.pid().expect("a running operator");
        let sent = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .expect("run kill");
        assert!(sent.success(), "kill -TERM {pid}");
        let status = super::wait_for("the operator to end after SIGTERM", deadline, || {
            let status = self.exited();
            async move { status }
        })
        .await;
        self.child = None;
        status
    }

    /// Everything the operator logged so far.
    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The operator's Prometheus metrics.
    pub async fn metrics(&self) -> String {
        let addr = super::wait_for(
            "the operator's metrics address in its log",
            std::time::Duration::from_secs(30),
            || async {
                self.logs()
                    .lines()
                    .find(|l| l.contains("metrics server listening"))
                    .and_then(listening_addr)
            },
        )
        .await;
        let url = format!("http://{addr}/metrics");
        match reqwest::get(&url).await {
            Ok(r) => r.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        }
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A log line without its terminal colour codes (`ESC [ … m`).
pub fn without_colours(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            chars.by_ref().find(|c| *c == 'm');
        } else {
            out.push(c);
        }
    }
    out
}

/// The address in a `metrics server listening` log line: `addr=…` in the text format (with or
/// without colours), `"addr":"…"` in JSON.
pub fn listening_addr(line: &str) -> Option<String> {
    let plain = without_colours(line);
    if let Some(json) = plain.split("\"addr\":\"").nth(1) {
        return Some(json.split('"').next()?.to_string());
    }
    Some(
        plain
            .split("addr=")
            .nth(1)?
            .split_whitespace()
            .next()?
            .to_string(),
    )
}

/// The command line of `report-operator run` with `args` and the environment `envs`, its
/// output to `log`.
fn spawn_run(
    kubeconfig: &std::path::Path,
    log: &std::path::Path,
    args: &[String],
    envs: &[(&str, &str)],
) -> Child {
    let out = std::fs::File::create(log).expect("log file");
    Command::new(env!("CARGO_BIN_EXE_report-operator"))
        .arg("run")
        .args(args)
        .envs(envs.iter().copied())
        .env("KUBECONFIG", kubeconfig)
        .env("RUST_LOG", "info,report_operator=debug,kube=warn")
        .stdout(Stdio::from(out.try_clone().expect("log file")))
        .stderr(Stdio::from(out))
        .spawn()
        .expect("start report-operator")
}

/// One line of `/proc/<pid>/status` in KiB (`VmHWM`, `VmRSS`), while the process lives.
fn proc_status_kib(pid: u32, key: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status
        .lines()
        .find(|l| l.starts_with(key) && l[key.len()..].starts_with(':'))?;
    line[key.len() + 1..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

impl Operator {
    /// Starts `report-operator run` without `--namespace`: it watches every namespace, as the
    /// chart's cluster-wide mode does. `label` names its log file
    /// (`target/test-logs/<label>-operator-<n>.log`). Not for [`Operator::restart`], which
    /// scopes the process to a namespace.
    pub fn start_all_namespaces(cp: &ControlPlane, label: &str, extra_args: &[&str]) -> Operator {
        Operator::start_all_namespaces_with_env(&cp.kubeconfig, label, extra_args, &[])
    }

    /// [`Operator::start_all_namespaces`] as the replica `identity` of a Deployment: its pod
    /// name (`POD_NAME`) names it in Leases and Events. It talks to the API server as
    /// `kubeconfig` says (for example through a [`super::proxy::Proxy`]).
    pub fn start_replica(kubeconfig: &Path, identity: &str, extra_args: &[&str]) -> Operator {
        Operator::start_all_namespaces_with_env(kubeconfig, identity, extra_args, &[("POD_NAME", identity)])
    }

    fn start_all_namespaces_with_env(
        kubeconfig: &Path,
        label: &str,
        extra_args: &[&str],
        envs: &[(&str, &str)],
    ) -> Operator {
        let dir = super::repo_root().join("target/test-logs");
        std::fs::create_dir_all(&dir).expect("log dir");
        let log = dir.join(format!("{label}-operator-{:08x}.log", rand::random::<u32>()));
        let extra_args: Vec<String> = extra_args.iter().map(|s| s.to_string()).collect();
        let mut args = vec!["--metrics-addr".to_string(), "127.0.0.1:0".to_string()];
        args.extend(extra_args.iter().cloned());
        let child = spawn_run(kubeconfig, &log, &args, envs);
        Operator {
            child: Some(child),
            log,
            namespace: label.to_string(),
            kubeconfig: kubeconfig.to_path_buf(),
            extra_args,
        }
    }

    /// The process id, while a process was started and not killed.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The process's peak resident memory so far (`VmHWM`), in KiB.
    pub fn vm_hwm_kib(&self) -> Option<u64> {
        proc_status_kib(self.pid()?, "VmHWM")
    }

    /// The process's resident memory now (`VmRSS`), in KiB.
    pub fn vm_rss_kib(&self) -> Option<u64> {
        proc_status_kib(self.pid()?, "VmRSS")
    }
}

/// `VmHWM` and `VmRSS` of any process, for a watcher that holds only the pid.
pub fn memory_kib(pid: u32) -> Option<(u64, u64)> {
    Some((proc_status_kib(pid, "VmHWM")?, proc_status_kib(pid, "VmRSS")?))
}
