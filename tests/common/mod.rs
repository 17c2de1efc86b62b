//! Test harness: one real control plane per test run (started by `hack/control-plane.sh`,
//! or reused when `REPORT_OPERATOR_KUBECONFIG` names a running one), the CRDs installed
//! once, and a fresh namespace per test.
#![allow(dead_code)] // each test binary uses a different part of the harness

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::wait::{await_condition, conditions};
use kube::{Client, Config};
use tokio::sync::OnceCell;

pub mod e2e;
pub mod fixtures;
pub mod hostile;
pub mod hostile_s3;
pub mod hostile_suite;
pub mod operator;
pub mod proxy;
pub mod s3;

/// Everything a test needs to reach the control plane.
#[derive(Clone)]
pub struct ControlPlane {
    pub kubeconfig: PathBuf,
    /// Directory holding the kubectl built with the control plane.
    pub bin_dir: PathBuf,
}

static CONTROL_PLANE: OnceCell<ControlPlane> = OnceCell::const_new();

pub fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn script_output(arg: &str) -> String {
    let out = Command::new("bash")
        .arg(repo_root().join("hack/control-plane.sh"))
        .arg(arg)
        .output()
        .expect("run hack/control-plane.sh");
    assert!(
        out.status.success(),
        "hack/control-plane.sh {arg} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The shared control plane, started on first use, with the CRDs installed.
pub async fn control_plane() -> &'static ControlPlane {
    CONTROL_PLANE
        .get_or_init(|| async {
            let _ = rustls::crypto::ring::default_provider().install_default();
            let kubeconfig = match std::env::var_os("REPORT_OPERATOR_KUBECONFIG") {
                Some(path) => PathBuf::from(path),
                None => {
                    // `up` is idempotent: it reuses a control plane that is already running.
                    let status = Command::new("bash")
                        .arg(repo_root().join("hack/control-plane.sh"))
                        .arg("up")
                        .status()
                        .expect("run hack/control-plane.sh up");
                    assert!(status.success(), "hack/control-plane.sh up failed");
                    repo_root().join("target/control-plane/kubeconfig")
                }
            };
            let cp = ControlPlane {
                kubeconfig,
                bin_dir: PathBuf::from(script_output("bin-dir")),
            };
            install_crds(&cp.client().await).await;
            cp
        })
        .await
}

impl ControlPlane {
    pub async fn client(&self) -> Client {
        let kubeconfig = Kubeconfig::read_from(&self.kubeconfig).expect("read kubeconfig");
        let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
            .await
            .expect("kubeconfig");
        Client::try_from(config).expect("client")
    }

    /// Runs the control plane's kubectl with the test kubeconfig.
    pub fn kubectl(&self, args: &[&str]) -> Output {
        self.kubectl_with_stdin(args, None)
    }

    pub fn kubectl_with_stdin(&self, args: &[&str], stdin: Option<&str>) -> Output {
        use std::io::Write;
        let mut cmd = Command::new(self.bin_dir.join("kubectl"));
        cmd.arg("--kubeconfig").arg(&self.kubeconfig).args(args);
        cmd.stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = cmd.spawn().expect("spawn kubectl");
        if let Some(input) = stdin {
            child
                .stdin
                .take()
                .expect("stdin")
                .write_all(input.as_bytes())
                .expect("write stdin");
        }
        drop(child.stdin.take());
        child.wait_with_output().expect("kubectl output")
    }
}

/// Installs the CRDs the way a user does (server-side apply of the generated manifests)
/// and waits until the API server serves them. Tests of new fields call it again at their
/// start: test runs of other branches on a shared control plane install their own CRDs.
pub async fn install_crds(client: &Client) {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let params = PatchParams::apply("report-operator-tests").force();
    for crd in report_operator::api::crds() {
        let name = crd.metadata.name.clone().expect("crd name");
        api.patch(&name, &params, &Patch::Apply(&crd))
            .await
            .expect("apply CRD");
        tokio::time::timeout(
            Duration::from_secs(30),
            await_condition(api.clone(), &name, conditions::is_crd_established()),
        )
        .await
        .expect("CRD established in time")
        .expect("watch CRD");
    }
}

/// A namespace of its own for one test; deleted when dropped.
pub struct TestNamespace {
    pub name: String,
    cp: ControlPlane,
}

impl TestNamespace {
    pub async fn new(prefix: &str) -> TestNamespace {
        let cp = control_plane().await.clone();
        let name = format!("{prefix}-{:08x}", rand::random::<u32>());
        let api: Api<Namespace> = Api::all(cp.client().await);
        let ns = Namespace {
            metadata: kube::api::ObjectMeta {
                name: Some(name.clone()),
                ..Default::default()
            },
            ..Default::default()
        };
        api.create(&PostParams::default(), &ns)
            .await
            .expect("create namespace");
        TestNamespace { name, cp }
    }

    pub fn cp(&self) -> &ControlPlane {
        &self.cp
    }

    /// kubectl in this namespace.
    pub fn kubectl(&self, args: &[&str]) -> Output {
        let mut all = vec!["-n", self.name.as_str()];
        all.extend_from_slice(args);
        self.cp.kubectl(&all)
    }

    pub fn kubectl_stdin(&self, args: &[&str], stdin: &str) -> Output {
        let mut all = vec!["-n", self.name.as_str()];
        all.extend_from_slice(args);
        self.cp.kubectl_with_stdin(&all, Some(stdin))
    }

    /// `kubectl apply` of `yaml` in this namespace, which must succeed.
    pub fn apply(&self, yaml: &str) {
        let out = self.kubectl_stdin(&["apply", "-f", "-"], yaml);
        assert!(
            out.status.success(),
            "kubectl apply in {} failed: {}\n{yaml}",
            self.name,
            stderr(&out)
        );
    }
}

impl Drop for TestNamespace {
    fn drop(&mut self) {
        // Deletion is asynchronous in the API server; the garbage collector and namespace
        // controller of kube-controller-manager finish it.
        let _ = self
            .cp
            .kubectl(&["delete", "namespace", &self.name, "--wait=false"]);
        // The test's operator has stopped (a World drops it first), so nobody would remove
        // the finalizers of its ReportFiles and generators: the namespace would stay
        // Terminating and its objects would load the tests that come after.
        let (cp, ns) = (self.cp.clone(), self.name.clone());
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else {
                return;
            };
            rt.block_on(async {
                let client = cp.client().await;
                futures::join!(
                    release::<report_operator::api::ReportFile>(&client, &ns),
                    release::<report_operator::api::ReportGenerator>(&client, &ns),
                );
            })
        })
        .join();
    }
}

/// Removes the finalizers of every `K` in `ns`.
async fn release<K>(client: &Client, ns: &str)
where
    K: kube::Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned,
{
    let api: Api<K> = Api::namespaced(client.clone(), ns);
    let Ok(list) = api.list_metadata(&Default::default()).await else {
        return;
    };
    let held = list
        .items
        .into_iter()
        .filter(|o| o.metadata.finalizers.as_ref().is_some_and(|f| !f.is_empty()));
    let patch = Patch::Merge(serde_json::json!({"metadata": {"finalizers": null}}));
    futures::future::join_all(held.filter_map(|o| o.metadata.name).map(|name| {
        let (api, patch) = (api.clone(), &patch);
        async move { api.patch_metadata(&name, &PatchParams::default(), patch).await }
    }))
    .await;
}

/// Polls `check` until it returns `Some`, failing the test with `what` after `deadline`.
pub async fn wait_for<T, F, Fut>(what: &str, deadline: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = tokio::time::Instant::now();
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            start.elapsed() < deadline,
            "timed out after {deadline:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// How long a test that counts days from "now" may run without a UTC day boundary changing
/// which days it expects.
pub const DATED_TEST_SPAN: Duration = Duration::from_secs(6 * 60);

/// For tests whose expected report days are computed from today's date: when UTC midnight is
/// less than [`DATED_TEST_SPAN`] away, waits until it has passed, so that "yesterday" means
/// the same day to the test and to the operator from start to end.
pub async fn clear_of_midnight() {
    let now = chrono::Utc::now();
    let since_midnight =
        now.signed_duration_since(now.date_naive().and_time(chrono::NaiveTime::MIN).and_utc());
    let until_midnight = chrono::Duration::days(1) - since_midnight;
    let span = chrono::Duration::from_std(DATED_TEST_SPAN).unwrap_or(chrono::Duration::MAX);
    if until_midnight < span {
        let wait = (until_midnight + chrono::Duration::seconds(5))
            .to_std()
            .unwrap_or_default();
        eprintln!(
            "UTC midnight is {}s away: waiting until it has passed",
            until_midnight.num_seconds()
        );
        tokio::time::sleep(wait).await;
    }
}

/// Deletes an object and ignores NotFound.
pub async fn delete_ignore_missing<K>(api: &Api<K>, name: &str)
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let _ = api.delete(name, &DeleteParams::default()).await;
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}
