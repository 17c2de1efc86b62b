//! The controller: one kube-runtime Controller per kind, sharing one client, one set of
//! backend clients and one rate budget per ReportBackend.
//!
//! Each reconcile is a pipeline (read, validate, build, apply, update status): the pure steps
//! are plain functions with unit tests; the Kubernetes and backend calls sit at the edges.

mod backend;
pub mod conditions;
mod context;
mod file;
mod generator;
mod metrics;
mod periodic;
mod registry;
mod secret;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::runtime::controller::{Action, Controller};
use futures::StreamExt;
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::{WatchStreamExt, reflector, watcher};
use kube::{Api, Client};
use tracing::{info, warn};

use crate::api::{ReportBackend, ReportFile, ReportGenerator};
pub use context::Context;
pub use metrics::Metrics;

/// Flags of `report-operator run`.
#[derive(clap::Args, Debug, Clone)]
pub struct RunArgs {
    /// Watch only this namespace (the chart's namespaced mode); default: all namespaces.
    #[arg(long, env = "REPORT_OPERATOR_NAMESPACE")]
    pub namespace: Option<String>,
    /// Address of the metrics (/metrics) and health (/healthz, /readyz) server.
    #[arg(long, env = "REPORT_OPERATOR_METRICS_ADDR", default_value = "0.0.0.0:8080")]
    pub metrics_addr: SocketAddr,
    /// Log format.
    #[arg(long, env = "REPORT_OPERATOR_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,
    /// Reconciles of each kind that may run at once.
    #[arg(long, default_value_t = 16)]
    pub concurrency: u16,
    /// Run only while holding a Lease, so that of several replicas exactly one reconciles.
    #[arg(long, env = "REPORT_OPERATOR_LEADER_ELECT")]
    pub leader_elect: bool,
    /// Namespace of the leader-election Lease (the operator's own namespace).
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    pub leader_election_namespace: String,
    /// Name of the leader-election Lease.
    #[arg(long, default_value = "report-operator")]
    pub leader_election_lease_name: String,
    /// Seconds a leader's Lease is valid without renewal: how long a new leader may wait
    /// after the old one died.
    #[arg(long, default_value_t = 15)]
    pub leader_election_lease_seconds: u64,
}

/// Why `report-operator run` stopped.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("leader election: {0}")]
    LeaderElection(#[from] kube_lease_manager::LeaseManagerError),
    /// Another replica took over; this one exits so that it never reconciles as a follower.
    #[error("lost the leader-election Lease")]
    LostLeadership,
}

#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// Why a reconcile did not finish. Backend problems that are part of a report's life
/// (failures, rate limits) are not errors: they end up in status and Events.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The Kubernetes API failed; retrying can help.
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// The object cannot be processed as it is; only a change to it can help.
    #[error("{0}")]
    Invalid(String),
}

impl Error {
    /// Whether the same reconcile may succeed later without a change to the object.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Error::Kube(_))
    }
}

/// Requeue policy on errors: Kubernetes API errors are retried soon; invalid objects wait for
/// a change.
fn error_policy<K>(_obj: Arc<K>, err: &Error, _ctx: Arc<Context>) -> Action {
    if err.is_retryable() {
        warn!(error = %err, "reconcile failed; retrying");
        Action::requeue(Duration::from_secs(5))
    } else {
        Action::await_change()
    }
}

/// The objects in `store` that use ReportBackend `rb`, to wake when it changes (for example
/// when it becomes Ready). `uses` gives an object's backend name and whether it still cares.
fn users_of_backend<K>(store: &Store<K>, rb: &ReportBackend, uses: impl Fn(&K) -> (&String, bool)) -> Vec<ObjectRef<K>>
where
    K: kube::Resource<DynamicType = ()> + Clone + 'static,
{
    let ns = rb.metadata.namespace.as_deref();
    let name = rb.metadata.name.as_deref().unwrap_or_default();
    store
        .state()
        .into_iter()
        .filter(|obj| {
            let (backend, cares) = uses(obj);
            obj.meta().namespace.as_deref() == ns && backend == name && cares
        })
        .map(|obj| ObjectRef::from_obj(&*obj))
        .collect()
}

/// The backend ids that objects in `store` other than `me` already hold on the same API as
/// `rb` (same type and URL, whichever ReportBackend names it). `find` must not adopt them:
/// two requests that look the same would end up sharing one report. `holds` gives an
/// object's backend name and the id it holds.
fn ids_taken<K>(
    ctx: &Context,
    store: &Store<K>,
    me: &K,
    rb: &ReportBackend,
    holds: impl Fn(&K) -> (&str, Option<&str>),
) -> HashSet<String>
where
    K: kube::Resource<DynamicType = ()> + Clone + 'static,
{
    let same_api = |namespace: Option<&str>, backend: &str| {
        let Some(namespace) = namespace else { return false };
        ctx.backends
            .get(&ObjectRef::new(backend).within(namespace))
            .is_some_and(|b| b.spec.type_ == rb.spec.type_ && b.spec.url == rb.spec.url)
    };
    store
        .state()
        .into_iter()
        .filter(|obj| obj.meta().uid != me.meta().uid)
        .filter_map(|obj| {
            let (backend, id) = holds(&obj);
            let id = id?.to_string();
            same_api(obj.meta().namespace.as_deref(), backend).then_some(id)
        })
        .collect()
}

/// Installs the tracing subscriber for `run` and `sim`.
pub fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,kube=warn,tower=warn,hyper=warn"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

/// ReportFile events a slow subscriber may fall behind by before the watch waits for it.
const FILE_EVENT_BUFFER: usize = 1024;

/// Runs the three controllers and the metrics server until SIGTERM or Ctrl-C; with
/// `--leader-elect`, only while this process holds the Lease.
pub async fn run(args: RunArgs) -> Result<(), RunError> {
    let client = Client::try_default().await?;
    let scope = match &args.namespace {
        Some(ns) => Scope::Namespace(client.clone(), ns.clone()),
        None => Scope::All(client.clone()),
    };
    let backends: Api<ReportBackend> = scope.api();
    let generators: Api<ReportGenerator> = scope.api();
    let files: Api<ReportFile> = scope.api();
    let secrets: Api<PartialObjectMeta<Secret>> = scope.api();

    // Secrets are watched as metadata only, so their data stays out of memory: the store
    // gives the resourceVersion of each credentials Secret (a change rebuilds that backend's
    // client), and the controllers watch for changed credentials and deleted report Secrets.
    let (secret_store, secret_writer) = reflector::store();
    let secret_reflector = reflector(secret_writer, watcher(secrets.clone(), watcher::Config::default()))
        .default_backoff()
        .for_each(|_| async {});

    // One watch of ReportFiles fills `ctx.files`, drives their controller and wakes their
    // generators. Subscribers hear of a change only once the store holds it, so a generator
    // woken by its report turning READY sees it READY when it rolls its reports up (a watch
    // of its own could run ahead of the store and leave the counts behind).
    let (file_store, file_writer) = reflector::store_shared(FILE_EVENT_BUFFER);
    let file_events = file_writer.subscribe().expect("a shared store takes subscribers");
    let owned_file_events = file_writer.subscribe().expect("a shared store takes subscribers");
    let file_reflector = watcher(files, watcher::Config::default())
        .default_backoff()
        .reflect_shared(file_writer)
        .for_each(|_| async {});

    let backend_controller = Controller::new(backends.clone(), watcher::Config::default());
    let generator_controller = Controller::new(generators, watcher::Config::default());
    let file_controller = Controller::for_shared_stream(file_events, file_store);

    let ctx = Arc::new(Context::new(
        client.clone(),
        Arc::new(Metrics::new()),
        backend_controller.store(),
        generator_controller.store(),
        file_controller.store(),
        secret_store,
    ));
    info!(addr = %args.metrics_addr, namespace = ?args.namespace, version = env!("CARGO_PKG_VERSION"), "report-operator starting");

    let readiness = {
        let ctx = ctx.clone();
        async move {
            if ctx.fill_caches().await.is_ok() {
                ctx.set_ready();
                info!("caches synced");
            }
            futures::future::pending::<()>().await
        }
    };
    let concurrency = args.concurrency;
    let controllers = async {
        tokio::select! {
            _ = backend::controller(backend_controller, secrets.clone(), ctx.clone(), concurrency) => info!("ReportBackend controller stopped"),
            _ = generator::controller(generator_controller, owned_file_events, backends.clone(), ctx.clone(), concurrency) => info!("ReportGenerator controller stopped"),
            _ = file::controller(file_controller, backends, secrets, ctx.clone(), concurrency) => info!("ReportFile controller stopped"),
            _ = readiness => {}
            _ = secret_reflector => warn!("Secret watch ended"),
            _ = file_reflector => warn!("ReportFile watch ended"),
        }
    };
    let work = async {
        if !args.leader_elect {
            controllers.await;
            return Ok(());
        }
        // A standby replica is healthy and ready; it only does not reconcile.
        ctx.set_ready();
        let mut leader = acquire_leadership(&client, &args).await?;
        tokio::select! {
            _ = controllers => Ok(()),
            _ = async {
                while *leader.borrow_and_update() {
                    if leader.changed().await.is_err() {
                        break;
                    }
                }
            } => Err(RunError::LostLeadership),
        }
    };
    tokio::select! {
        r = work => r,
        r = metrics::serve(args.metrics_addr, ctx.clone()) => {
            if let Err(e) = r {
                warn!(error = %e, "metrics server failed");
            }
            Ok(())
        }
    }
}

/// Waits until this process holds the leader-election Lease; the receiver turns false when
/// the Lease is lost.
async fn acquire_leadership(client: &Client, args: &RunArgs) -> Result<tokio::sync::watch::Receiver<bool>, RunError> {
    let identity = std::env::var("POD_NAME").unwrap_or_else(|_| format!("report-operator-{}", uuid::Uuid::new_v4()));
    let manager = kube_lease_manager::LeaseManagerBuilder::new(client.clone(), &args.leader_election_lease_name)
        .with_namespace(&args.leader_election_namespace)
        .with_identity(&identity)
        .with_duration(args.leader_election_lease_seconds)
        .with_grace(args.leader_election_lease_seconds.div_ceil(3).max(1))
        .build()
        .await?;
    let (mut leader, _task) = manager.watch().await;
    info!(identity = %identity, lease = %args.leader_election_lease_name, "waiting for the leader-election Lease");
    while !*leader.borrow_and_update() {
        leader.changed().await.map_err(|_| RunError::LostLeadership)?;
    }
    info!(identity = %identity, "acquired the leader-election Lease");
    Ok(leader)
}

/// Where the operator looks: one namespace or all of them.
enum Scope {
    Namespace(Client, String),
    All(Client),
}

impl Scope {
    fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>,
    {
        match self {
            Scope::Namespace(c, ns) => Api::namespaced(c.clone(), ns),
            Scope::All(c) => Api::all(c.clone()),
        }
    }
}
