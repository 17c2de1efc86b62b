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
mod guard;
mod leader;
mod metrics;
mod outbound;
mod periodic;
mod registry;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Secret;
use kube::runtime::controller::Controller;
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
    /// Address ranges backend calls may reach although the outbound policy denies them by
    /// default (loopback, link-local and cloud metadata addresses), e.g. 127.0.0.1/32 for
    /// simulators on the same host. The Kubernetes API server stays denied.
    #[arg(long = "outbound-allow-cidr", env = "REPORT_OPERATOR_OUTBOUND_ALLOW_CIDRS", value_delimiter = ',')]
    pub outbound_allow_cidrs: Vec<ipnet::IpNet>,
    /// More address ranges backend calls may not reach (e.g. the cluster's pod and service
    /// ranges), on top of the defaults.
    #[arg(long = "outbound-deny-cidr", env = "REPORT_OPERATOR_OUTBOUND_DENY_CIDRS", value_delimiter = ',')]
    pub outbound_deny_cidrs: Vec<ipnet::IpNet>,
    /// Allow backend URLs with http:// (credentials in clear text); default: https only.
    #[arg(long, env = "REPORT_OPERATOR_OUTBOUND_ALLOW_HTTP")]
    pub outbound_allow_http: bool,
    /// Allow ReportBackends to set `tls.insecureSkipVerify`; default: refused.
    #[arg(long, env = "REPORT_OPERATOR_OUTBOUND_ALLOW_INSECURE_TLS")]
    pub outbound_allow_insecure_tls: bool,
}

/// Why `report-operator run` stopped.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The metrics and health server cannot listen (a port in use) or stopped.
    #[error("metrics server on {0}: {1}")]
    Metrics(SocketAddr, std::io::Error),
    /// No kubeconfig or in-cluster configuration to reach the API server with.
    #[error("Kubernetes client configuration: {0}")]
    Config(String),
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("leader election: {0}")]
    LeaderElection(#[from] kube_lease_manager::LeaseManagerError),
    /// Another replica took over, or the Lease could not be renewed in time; this one exits
    /// so that it never reconciles as a follower.
    #[error("lost the leader-election Lease")]
    LostLeadership,
    /// The Lease is too short for a margin between our stop and a standby's takeover.
    #[error("--leader-election-lease-seconds must be at least {min}")]
    LeaseTooShort { min: u64 },
}

#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// Why a reconcile did not finish. Backend problems that are part of a report's life
/// (failures, rate limits) are not errors: they end up in status and Events. Every error is
/// retried with a backoff per object ([`guard::error_policy`]).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The Kubernetes API failed; retrying can help unless [`Error::condition`] says otherwise.
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// The object cannot be processed as it is; only a change to it can help.
    #[error("{0}")]
    Invalid(String),
    /// The reconcile panicked: a bug, confined to the object that caused it.
    #[error("panicked: {0}")]
    Panicked(String),
    /// The reconcile took longer than it may and was stopped (a backend answering slowly).
    #[error("took longer than {0:?} and was stopped")]
    TimedOut(std::time::Duration),
}

impl Error {
    /// The Ready reason and message for an error that retrying alone will not fix, so that the
    /// object's owner hears of it; `None` for a transient one (an outage, a conflict).
    pub fn condition(&self) -> Option<(&'static str, String)> {
        match self {
            Error::Kube(kube::Error::Api(e)) if matches!(e.code, 400 | 403 | 413 | 422) => {
                let hint = if e.code == 403 { "; the operator's RBAC does not allow it" } else { "" };
                Some((
                    "KubernetesApiError",
                    format!("the Kubernetes API refused a request for this object: {} {}: {}{hint}; retried with backoff", e.code, e.reason, e.message),
                ))
            }
            Error::Kube(_) => None,
            Error::Invalid(message) => Some(("Invalid", message.clone())),
            Error::TimedOut(limit) => Some((
                "ReconcileTimeout",
                format!("handling this object took longer than {} s and was stopped (is a backend answering slowly?); retried with backoff", limit.as_secs()),
            )),
            Error::Panicked(message) => Some((
                "InternalError",
                format!("the operator failed on this object (a bug; please report it): {message}; retried with backoff"),
            )),
        }
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
    // First, so that a port in use is an error before anything else starts.
    let listener = tokio::net::TcpListener::bind(args.metrics_addr).await.map_err(|e| RunError::Metrics(args.metrics_addr, e))?;
    info!(addr = %listener.local_addr().unwrap_or(args.metrics_addr), "metrics server listening");
    let config = kube::Config::infer().await.map_err(|e| RunError::Config(e.to_string()))?;
    let policy = Arc::new(outbound::policy(&args, &config).await);
    let client = Client::try_from(config)?;
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
        policy,
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
        let leadership = leader::acquire(&client, &args).await?;
        tokio::select! {
            _ = controllers => Ok(()),
            lost = leadership.lost() => Err(lost),
        }
    };
    tokio::select! {
        r = work => r,
        r = metrics::serve(listener, ctx.clone()) => r.map_err(|e| RunError::Metrics(args.metrics_addr, e)),
    }
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
