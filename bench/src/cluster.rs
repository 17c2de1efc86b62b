//! The control plane: namespaces, objects applied through the API, and a watch that reports
//! each ReportFile the first time it is seen READY.

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::{DeleteParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use report_operator::api::{FileState, LABEL_GENERATOR, ReportBackend, ReportFile, ReportGenerator};
use report_sim::{ReportingApi, SimServer};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::operator::Operator;
use crate::{Args, BenchError};

/// How long a namespace's deletion is waited for with the operator running.
const DELETION_WAIT: Duration = Duration::from_secs(300);
/// How long after its finalizers were released.
const RELEASED_WAIT: Duration = Duration::from_secs(120);

/// Whether namespace `name` (of `uid`) is gone within `within`.
async fn gone(api: &Api<Namespace>, name: &str, uid: &str, within: Duration) -> bool {
    let deleted = kube::runtime::wait::await_condition(
        api.clone(),
        name,
        kube::runtime::wait::conditions::is_deleted(uid),
    );
    tokio::time::timeout(within, deleted).await.is_ok()
}

pub struct Cluster {
    pub client: Client,
    pub kubeconfig: PathBuf,
}

/// A ReportFile seen READY: its generator and when.
pub struct Ready {
    pub generator: String,
    pub at: Instant,
}

impl Cluster {
    pub async fn connect(_args: &Args) -> Result<Cluster, BenchError> {
        let kubeconfig = std::env::var_os("KUBECONFIG")
            .map(PathBuf::from)
            .ok_or_else(|| BenchError::Config("KUBECONFIG is not set".into()))?;
        let config = kube::Config::infer()
            .await
            .map_err(|e| BenchError::Config(e.to_string()))?;
        let client = Client::try_from(config)?;
        Ok(Cluster { client, kubeconfig })
    }

    /// A fresh namespace `bench-<scenario>-<random>`.
    pub async fn namespace(&self, scenario: &str) -> Result<String, BenchError> {
        let name = format!("bench-{scenario}-{:06x}", rand::random::<u32>() & 0xff_ffff);
        let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": name}}))
            .map_err(|e| BenchError::Other(e.to_string()))?;
        Api::<Namespace>::all(self.client.clone())
            .create(&PostParams::default(), &ns)
            .await?;
        Ok(name)
    }

    /// Deletes a namespace while `operator` (which watches it) still runs, so that it
    /// removes its finalizers, and waits until the namespace is gone, so that the control
    /// plane's clean-up of one scenario's objects (10,000 generators in (c)) does not load the
    /// next scenario. Never for ever: the operator's cleanups give up after its deletion grace
    /// (2 minutes); a namespace still there after [`DELETION_WAIT`] has the operator stopped
    /// and its remaining finalizers released with `kubectl report release-finalizers`.
    pub async fn delete_namespace(&self, args: &Args, name: &str, operator: Operator) {
        let api = Api::<Namespace>::all(self.client.clone());
        let started = Instant::now();
        let Ok(deleted) = api.delete(name, &DeleteParams::background()).await else {
            return;
        };
        let Some(uid) = deleted.left().and_then(|ns| ns.metadata.uid) else {
            return;
        };
        if gone(&api, name, &uid, DELETION_WAIT).await {
            eprintln!(
                "[bench] namespace {name} gone {:.1} s after its deletion, the operator running",
                started.elapsed().as_secs_f64()
            );
            return;
        }
        drop(operator);
        eprintln!(
            "[bench] namespace {name} still there after {} s; operator stopped, releasing its finalizers",
            DELETION_WAIT.as_secs()
        );
        let released = std::process::Command::new(&args.operator)
            .args(["report", "release-finalizers", "--all", "--namespace", name])
            .env("KUBECONFIG", &self.kubeconfig)
            .stdout(std::process::Stdio::null())
            .status();
        if !released.as_ref().is_ok_and(|s| s.success()) {
            eprintln!("[bench] release-finalizers in {name} failed: {released:?}");
        }
        if !gone(&api, name, &uid, RELEASED_WAIT).await {
            eprintln!(
                "[bench] namespace {name} still exists {} s after its finalizers were released; going on",
                RELEASED_WAIT.as_secs()
            );
        }
    }

    /// A credentials Secret and a ReportBackend `b` of type `t` at `sim`, with `spec_extra`
    /// merged into its spec.
    pub async fn backend(
        &self,
        ns: &str,
        sim: &SimServer,
        t: ReportingApi,
        spec_extra: Value,
    ) -> Result<(), BenchError> {
        let data = match t {
            ReportingApi::Connect => json!({"apiKey": "SU-000-000-000:connect-secret-key"}),
            ReportingApi::Supplier => {
                json!({"clientId": "supplier-client", "clientSecret": "supplier-secret"})
            }
            other => {
                return Err(BenchError::Other(format!(
                    "no bench backend of type {}",
                    other.as_str()
                )));
            }
        };
        let secret: Secret = from_json(json!({"metadata": {"name": "b-credentials"}, "stringData": data}))?;
        Api::<Secret>::namespaced(self.client.clone(), ns)
            .create(&PostParams::default(), &secret)
            .await?;
        let mut spec = json!({"type": t.as_str(), "url": sim.backend_url(t), "credentialsSecretRef": {"name": "b-credentials"}});
        if t == ReportingApi::Supplier {
            spec["supplier"] = json!({"organizationId": "6f1c2d3e-0000-4000-8000-000000000001", "tokenUrl": sim.supplier_token_url()});
        }
        if let (Some(s), Some(extra)) = (spec.as_object_mut(), spec_extra.as_object()) {
            s.extend(extra.clone());
        }
        let backend: ReportBackend = from_json(json!({
            "apiVersion": "reporting.report-operator.io/v1alpha1", "kind": "ReportBackend",
            "metadata": {"name": "b"}, "spec": spec,
        }))?;
        Api::<ReportBackend>::namespaced(self.client.clone(), ns)
            .create(&PostParams::default(), &backend)
            .await?;
        Ok(())
    }

    /// Creates the generator `name` with `spec` (backend `b`).
    pub async fn generator(&self, ns: &str, name: &str, spec: Value) -> Result<(), BenchError> {
        create_generator(&Api::namespaced(self.client.clone(), ns), name, spec).await
    }

    /// Creates many generators, `concurrency` requests at a time; returns when the last was created.
    pub async fn generators(
        &self,
        ns: &str,
        items: Vec<(String, Value)>,
        concurrency: usize,
    ) -> Result<(), BenchError> {
        let api: Api<ReportGenerator> = Api::namespaced(self.client.clone(), ns);
        futures::stream::iter(items.into_iter().map(|(name, spec)| {
            let api = api.clone();
            async move { create_generator(&api, &name, spec).await }
        }))
        .buffer_unordered(concurrency)
        .try_collect::<Vec<()>>()
        .await?;
        Ok(())
    }

    /// A watch of the namespace's ReportFiles that sends each one the first time it is READY.
    pub fn watch_ready(&self, ns: &str) -> mpsc::UnboundedReceiver<Ready> {
        let (tx, rx) = mpsc::unbounded_channel();
        let api: Api<ReportFile> = Api::namespaced(self.client.clone(), ns);
        tokio::spawn(async move {
            let mut seen = HashSet::new();
            let mut events = std::pin::pin!(
                watcher(api, watcher::Config::default())
                    .default_backoff()
                    .applied_objects()
            );
            while let Some(event) = events.next().await {
                let Ok(file) = event else { continue };
                let ready = file.status.as_ref().and_then(|s| s.status) == Some(FileState::Ready);
                let Some(name) = file.metadata.name.clone() else {
                    continue;
                };
                if ready && seen.insert(name) {
                    let generator = file
                        .metadata
                        .labels
                        .as_ref()
                        .and_then(|l| l.get(LABEL_GENERATOR))
                        .cloned()
                        .unwrap_or_default();
                    if tx
                        .send(Ready {
                            generator,
                            at: Instant::now(),
                        })
                        .is_err()
                    {
                        return;
                    }
                }
            }
        });
        rx
    }

    /// A watch of the namespace's generators that sends the count of those whose status
    /// has caught up with their spec (observedGeneration), each time it grows.
    pub fn watch_settled(&self, ns: &str) -> mpsc::UnboundedReceiver<usize> {
        let (tx, rx) = mpsc::unbounded_channel();
        let api: Api<ReportGenerator> = Api::namespaced(self.client.clone(), ns);
        tokio::spawn(async move {
            let mut settled = HashSet::new();
            let mut events = std::pin::pin!(
                watcher(api, watcher::Config::default())
                    .default_backoff()
                    .applied_objects()
            );
            while let Some(event) = events.next().await {
                let Ok(g) = event else { continue };
                let observed = g.status.as_ref().and_then(|s| s.observed_generation);
                if observed.is_some()
                    && observed == g.metadata.generation
                    && settled.insert(g.metadata.name.clone().unwrap_or_default())
                    && tx.send(settled.len()).is_err()
                {
                    return;
                }
            }
        });
        rx
    }
}

async fn create_generator(api: &Api<ReportGenerator>, name: &str, mut spec: Value) -> Result<(), BenchError> {
    spec["backendRef"] = json!({"name": "b"});
    let g: ReportGenerator = from_json(json!({
        "apiVersion": "reporting.report-operator.io/v1alpha1", "kind": "ReportGenerator",
        "metadata": {"name": name}, "spec": spec,
    }))?;
    api.create(&PostParams::default(), &g).await?;
    Ok(())
}

fn from_json<T: serde::de::DeserializeOwned>(v: Value) -> Result<T, BenchError> {
    serde_json::from_value(v).map_err(|e| BenchError::Other(format!("object: {e}")))
}
