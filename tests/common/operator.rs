//! The operator as a separate process, as it runs in a cluster, scoped to one test namespace
//! so that tests running at once never share an operator.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use super::ControlPlane;

pub struct Operator {
    child: Option<Child>,
    pub log: PathBuf,
    pub metrics_addr: String,
    namespace: String,
    kubeconfig: PathBuf,
    extra_args: Vec<String>,
}

/// The outbound-policy flags that let the operator reach simulators on 127.0.0.1 over HTTP.
pub const LOOPBACK_SIMULATORS: &[&str] = &["--outbound-allow-cidr=127.0.0.1/32", "--outbound-allow-http"];

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("free port")
}

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
            metrics_addr: String::new(),
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
            metrics_addr: String::new(),
            namespace: namespace.to_string(),
            kubeconfig: kubeconfig.to_path_buf(),
            extra_args: extra_args.iter().map(|s| s.to_string()).collect(),
        };
        op.restart();
        op
    }

    /// Whether the process has exited (and how), without waiting.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.as_mut().and_then(|c| c.try_wait().expect("poll report-operator"))
    }

    /// Starts the process again (after [`Operator::kill`]), with a new log file.
    pub fn restart(&mut self) {
        let dir = super::repo_root().join("target/test-logs");
        std::fs::create_dir_all(&dir).expect("log dir");
        self.log = dir.join(format!("{}-operator-{:08x}.log", self.namespace, rand::random::<u32>()));
        self.metrics_addr = format!("127.0.0.1:{}", free_port());
        let log = std::fs::File::create(&self.log).expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_report-operator"))
            .args(["run", "--namespace", &self.namespace, "--metrics-addr", &self.metrics_addr])
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

    /// Everything the operator logged so far.
    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The operator's Prometheus metrics.
    pub async fn metrics(&self) -> String {
        let url = format!("http://{}/metrics", self.metrics_addr);
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
