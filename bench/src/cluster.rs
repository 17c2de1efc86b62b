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
use report_sim::{ReportingApi, SimConfig, SimServer};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::BenchError;
use crate::operator::Operator;
use crate::operator::OperatorCommand;

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
    pub async fn connect() -> Result<Cluster, BenchError> {
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
    pub async fn delete_namespace(&self, cmd: &OperatorCommand, name: &str, operator: Operator) {
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
        let released = std::process::Command::new(&cmd.binary)
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
        self.backend_named(ns, "b", sim, t, spec_extra).await
    }

    /// A credentials Secret `<name>-credentials` and a ReportBackend `name` of type `t` at
    /// `sim`, with the simulator's own credentials and `spec_extra` merged into its spec.
    pub async fn backend_named(
        &self,
        ns: &str,
        name: &str,
        sim: &SimServer,
        t: ReportingApi,
        spec_extra: Value,
    ) -> Result<(), BenchError> {
        let secret_name = format!("{name}-credentials");
        let secret: Secret = from_json(
            json!({"metadata": {"name": secret_name}, "stringData": credentials(sim.config(), t)}),
        )?;
        Api::<Secret>::namespaced(self.client.clone(), ns)
            .create(&PostParams::default(), &secret)
            .await?;
        let mut spec = json!({"type": t.as_str(), "url": sim.backend_url(t), "credentialsSecretRef": {"name": secret_name}});
        if t == ReportingApi::Supplier {
            spec["supplier"] = json!({"organizationId": "6f1c2d3e-0000-4000-8000-000000000001", "tokenUrl": sim.supplier_token_url()});
        }
        merge(&mut spec, &spec_extra);
        let backend: ReportBackend = from_json(json!({
            "apiVersion": "reporting.report-operator.io/v1alpha1", "kind": "ReportBackend",
            "metadata": {"name": name}, "spec": spec,
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
        let mut seen = HashSet::new();
        watch_each(
            Api::<ReportFile>::namespaced(self.client.clone(), ns),
            move |file| {
                let ready = file.status.as_ref().and_then(|s| s.status) == Some(FileState::Ready);
                let Some(name) = file.metadata.name.clone() else {
                    return true;
                };
                if !(ready && seen.insert(name)) {
                    return true;
                }
                let generator = file
                    .metadata
                    .labels
                    .as_ref()
                    .and_then(|l| l.get(LABEL_GENERATOR))
                    .cloned()
                    .unwrap_or_default();
                tx.send(Ready {
                    generator,
                    at: Instant::now(),
                })
                .is_ok()
            },
        );
        rx
    }

    /// A watch of the namespace's generators that sends the count of those whose status
    /// has caught up with their spec (observedGeneration), each time it grows.
    pub fn watch_settled(&self, ns: &str) -> mpsc::UnboundedReceiver<usize> {
        let (tx, rx) = mpsc::unbounded_channel();
        let mut settled = HashSet::new();
        watch_each(
            Api::<ReportGenerator>::namespaced(self.client.clone(), ns),
            move |g| {
                let observed = g.status.as_ref().and_then(|s| s.observed_generation);
                !(observed.is_some()
                    && observed == g.metadata.generation
                    && settled.insert(g.metadata.name.clone().unwrap_or_default())
                    && tx.send(settled.len()).is_err())
            },
        );
        rx
    }
}

/// Watches `api` in a task of its own (again after errors, with the watcher's backoff) and
/// calls `each` with every object applied, until it returns false.
pub fn watch_each<K>(
    api: Api<K>,
    mut each: impl FnMut(K) -> bool + Send + 'static,
) -> tokio::task::JoinHandle<()>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + 'static,
    K::DynamicType: Default,
{
    tokio::spawn(async move {
        let mut events = std::pin::pin!(
            watcher(api, watcher::Config::default())
                .default_backoff()
                .applied_objects()
        );
        while let Some(event) = events.next().await {
            if let Ok(object) = event
                && !each(object)
            {
                return;
            }
        }
    })
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

/// The simulator's credentials for `t`, as a ReportBackend's Secret holds them.
pub fn credentials(config: &SimConfig, t: ReportingApi) -> Value {
    match t {
        ReportingApi::Rde => {
            json!({"consumerKey": config.rde.consumer_key, "consumerSecret": config.rde.consumer_secret})
        }
        ReportingApi::Cmp => json!({
            "subscriptionKey": config.cmp.subscription_key, "username": config.cmp.username, "password": config.cmp.password,
        }),
        ReportingApi::Connect => json!({"apiKey": config.connect.api_key}),
        ReportingApi::Fusion => {
            json!({"username": config.fusion.username, "password": config.fusion.password})
        }
        ReportingApi::Supplier => {
            json!({"clientId": config.supplier.client_id, "clientSecret": config.supplier.client_secret})
        }
    }
}

/// Merges the object `extra` into the object `into` (top-level keys; an object under the
/// same key is merged one level down).
fn merge(into: &mut Value, extra: &Value) {
    let (Some(into), Some(extra)) = (into.as_object_mut(), extra.as_object()) else {
        return;
    };
    for (k, v) in extra {
        match (into.get_mut(k), v) {
            (Some(Value::Object(old)), Value::Object(new)) => old.extend(new.clone()),
            _ => {
                into.insert(k.clone(), v.clone());
            }
        }
    }
}

pub fn from_json<T: serde::de::DeserializeOwned>(v: Value) -> Result<T, BenchError> {
    serde_json::from_value(v).map_err(|e| BenchError::Other(format!("object: {e}")))
}
