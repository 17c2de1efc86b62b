//! The controller: one kube-runtime Controller per kind, sharing one client, one set of
//! backend clients and one rate budget per ReportBackend.
//!
//! Each reconcile is a pipeline: read, a pure decision (`decide` in `file/` and `generator/`,
//! with table tests that need no cluster), the Kubernetes and backend calls it asks for, and
//! the [`outcome::Outcome`] written down once (Ready condition, Event, requeue).
//!
//! This file only wires the parts together ([`run`]). The modules depend on each other in one
//! direction (`a → b`: `a` uses `b`), so each can be read and tested from the bottom up:
//!
//! ```text
//! backend, generator, file, store  (one controller per kind; file → store for copies)
//!   → create_once               (nothing is made twice on a backend: reports, RDE templates)
//!   → outcome                   (how a reconcile ended, written down in one place)
//!   → guard                     (what every reconcile goes through: panics, timeouts, API errors)
//!   → context                   (what reconciles share)
//!   → index                     (which objects belong to which: owner, backend, API, Secret)
//!   → registry, metrics, backoff, conditions, error
//! gauges → context, metrics            (what a scrape reads from the caches)
//! context, guard → shards             (which namespaces this replica reconciles now)
//! shards → leader, metrics            (shard Leases: plan, I/O, what is held)
//! leader, outbound → cli, error (start-up)
//! ```
//!
//! `registry` (backend clients), `metrics` (and its HTTP server) and `backoff` import no
//! other controller module: they get the client, stores and flags they need as arguments.

mod backend;
mod backoff;
mod cli;
pub mod conditions;
mod context;
mod create_once;
mod delivery_metrics;
mod error;
mod events;
mod file;
mod finalizers;
mod gauges;
mod generator;
mod guard;
mod index;
mod leader;
mod metrics;
mod outbound;
mod outcome;
mod registry;
mod shards;
mod store;

use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use kube::core::PartialObjectMeta;
use kube::runtime::controller::Controller;
use kube::runtime::{WatchStreamExt, reflector, watcher};
use kube::{Api, Client, ResourceExt};
use tracing::{info, warn};

use crate::api::{ReportBackend, ReportFile, ReportGenerator, ReportStore};
pub use cli::{LogFormat, RunArgs, init_logging};
pub use context::Context;
pub use error::{Error, RunError};
use index::Index;
pub use metrics::Metrics;
use shards::Shards;

/// ReportFile events a slow subscriber may fall behind by before the watch waits for it.
const FILE_EVENT_BUFFER: usize = 1024;
/// The same for ReportGenerators and ReportBackends, of which there are fewer.
const EVENT_BUFFER: usize = 256;

/// Runs the three controllers and the metrics server until SIGTERM or Ctrl-C; with
/// `--leader-elect`, only while this process holds the Lease; with `--sharding`, for the
/// namespaces of the shards whose Leases it holds.
pub async fn run(args: RunArgs) -> Result<(), RunError> {
    // First, so that a port in use is an error before anything else starts.
    let listener = tokio::net::TcpListener::bind(args.metrics_addr)
        .await
        .map_err(|e| RunError::Metrics(args.metrics_addr, e))?;
    info!(addr = %listener.local_addr().unwrap_or(args.metrics_addr), "metrics server listening");
    let config = kube::Config::infer()
        .await
        .map_err(|e| RunError::Config(e.to_string()))?;
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
    let stores: Api<ReportStore> = scope.api();

    // Secrets are watched as metadata only, so their data stays out of memory: the store
    // gives the resourceVersion of each credentials Secret (a change rebuilds that backend's
    // client), and the controllers watch for changed credentials and deleted report Secrets.
    let (secret_store, secret_writer) = reflector::store();
    let secret_reflector = reflector(
        secret_writer,
        watcher(secrets.clone(), watch_config())
            .default_backoff()
            .modify(slim),
    )
    .for_each(|_| async {});

    // One watch per kind fills its store and `ctx.index`, and drives its controller; the
    // ReportFile watch also wakes their generators. Subscribers hear of a change only once the
    // store holds it, so a generator woken by its report turning READY sees it READY when it
    // rolls its reports up (a watch of its own could run ahead of the store and leave the
    // counts behind).
    let (file_store, file_writer) = reflector::store_shared(FILE_EVENT_BUFFER);
    let (generator_store, generator_writer) = reflector::store_shared(EVENT_BUFFER);
    let (backend_store, backend_writer) = reflector::store_shared(EVENT_BUFFER);
    let index = Arc::new(Index::new(
        file_store.clone(),
        generator_store.clone(),
        backend_store.clone(),
    ));
    let file_events = file_writer.subscribe().expect("a shared store takes subscribers");
    let owned_file_events = file_writer.subscribe().expect("a shared store takes subscribers");
    let generator_events = generator_writer
        .subscribe()
        .expect("a shared store takes subscribers");
    let backend_events = backend_writer
        .subscribe()
        .expect("a shared store takes subscribers");
    let file_reflector = indexed_watch(files, file_writer, {
        let index = index.clone();
        move |e| index.apply_file(e)
    });
    let generator_reflector = indexed_watch(generators, generator_writer, {
        let index = index.clone();
        move |e| index.apply_generator(e)
    });
    let backend_reflector = indexed_watch(backends.clone(), backend_writer, {
        let index = index.clone();
        move |e| index.apply_backend(e)
    });

    // With sharding, each controller hears only of the shards held here, and is handed every
    // object of a shard when it is taken (`shards`).
    let metrics = Arc::new(Metrics::new());
    let shards = match args.sharding {
        true => Shards::new(args.shards, metrics.clone()),
        false => Shards::everything(),
    };
    let backend_controller =
        Controller::for_shared_stream(shards.held_only(backend_events), backend_store.clone())
            .reconcile_on(shards.taken(backend_store));
    let generator_controller =
        Controller::for_shared_stream(shards.held_only(generator_events), generator_store.clone())
            .reconcile_on(shards.taken(generator_store));
    let file_controller = Controller::for_shared_stream(shards.held_only(file_events), file_store.clone())
        .reconcile_on(shards.taken(file_store));
    let owned_file_events = shards.held_only(owned_file_events);
    let store_controller = Controller::new(stores, watch_config());
    let store_controller = {
        let taken = shards.taken(store_controller.store());
        store_controller.reconcile_on(taken)
    };

    let ctx = Arc::new(Context::new(
        client.clone(),
        metrics,
        index,
        secret_store,
        store_controller.store(),
        policy,
        shards,
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
            _ = file::controller(file_controller, backends, secrets.clone(), ctx.clone(), concurrency) => info!("ReportFile controller stopped"),
            _ = store::controller(store_controller, secrets, ctx.clone(), concurrency) => info!("ReportStore controller stopped"),
            _ = readiness => {}
            _ = secret_reflector => warn!("Secret watch ended"),
            _ = file_reflector => warn!("ReportFile watch ended"),
            _ = generator_reflector => warn!("ReportGenerator watch ended"),
            _ = backend_reflector => warn!("ReportBackend watch ended"),
        }
    };
    let work = async {
        if args.sharding {
            return share_work(client.clone(), &args, ctx.clone(), controllers).await;
        }
        if !args.leader_elect {
            ctx.metrics.set_leader(true);
            controllers.await;
            return Ok(());
        }
        // A standby replica is healthy and ready; it only does not reconcile.
        ctx.set_ready();
        let leadership = leader::acquire(&client, &args).await?;
        ctx.metrics.set_leader(true);
        tokio::select! {
            _ = controllers => Ok(()),
            lost = leadership.lost() => {
                ctx.metrics.set_leader(false);
                Err(lost)
            }
        }
    };
    tokio::select! {
        r = work => r,
        r = metrics::serve(listener, ctx.metrics.clone(), gauges::snapshot(&ctx), ctx.readiness()) => r.map_err(|e| RunError::Metrics(args.metrics_addr, e)),
    }
}

/// Runs the controllers, and the shard manager once the caches are filled. On SIGTERM (or
/// when the controllers stop) every shard is released before this returns, so that the
/// other replicas take them over at once.
async fn share_work(
    client: Client,
    args: &RunArgs,
    ctx: Arc<Context>,
    controllers: impl std::future::Future<Output = ()>,
) -> Result<(), RunError> {
    let seconds = args.leader_election_lease_seconds;
    if seconds < leader::MIN_LEASE_SECONDS {
        return Err(RunError::LeaseTooShort {
            min: leader::MIN_LEASE_SECONDS,
        });
    }
    shards::check_prefix(&args.leader_election_lease_name).map_err(RunError::Sharding)?;
    let config = shards::Config {
        namespace: args.leader_election_namespace.clone(),
        prefix: args.leader_election_lease_name.clone(),
        identity: leader::identity(),
        shards: args.shards,
        duration: std::time::Duration::from_secs(seconds),
    };
    // The budgets of a shard's backends count as spent by the replica that held it before.
    let on_takeover: shards::OnTakeover = {
        let (ctx, count) = (ctx.clone(), args.shards);
        Box::new(move |shard, until| {
            let backends = ctx.backends.state();
            let taken = backends
                .iter()
                .filter(|rb| shards::shard_of(&rb.namespace().unwrap_or_default(), count) == shard);
            ctx.registry.hand_over(taken.map(|rb| &**rb), until);
        })
    };
    let (stopped, stop) = tokio::sync::oneshot::channel::<()>();
    let manager = shards::run(
        client,
        config,
        ctx.shards.clone(),
        on_takeover,
        ctx.caches_filled(),
        async move {
            tokio::select! {
                _ = stop => {}
                _ = terminated() => {}
            }
        },
    );
    let controllers = async move {
        controllers.await;
        let _ = stopped.send(());
    };
    tokio::join!(controllers, manager);
    Ok(())
}

/// Resolves on SIGTERM or Ctrl-C, as the controllers' own shutdown does.
async fn terminated() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => futures::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}

/// A watch of `api` that feeds each event to `index` and then applies it to the store of
/// `writer`, which tells its subscribers. The index hears first, so that a reconcile woken by
/// the store finds what woke it in the index too (see [`index`]).
fn indexed_watch<K>(
    api: Api<K>,
    writer: reflector::store::Writer<K>,
    index: impl Fn(&watcher::Event<K>) + Send + 'static,
) -> impl std::future::Future<Output = ()> + Send
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    watcher(api, watch_config())
        .default_backoff()
        .modify(slim)
        .inspect(move |event| {
            if let Ok(event) = event {
                index(event);
            }
        })
        .reflect_shared(writer)
        .for_each(|_| async {})
}

/// How every watch lists: as a stream of events (WatchList, on by default since Kubernetes
/// 1.34) rather than one LIST response, so that a start with many objects does not hold the
/// whole list in memory at once; glibc keeps the peak of such a burst.
fn watch_config() -> watcher::Config {
    watcher::Config::default().streaming_lists()
}

/// Drops from a cached object what no reconcile reads: the server-side apply bookkeeping
/// (`managedFields`, several entries on every object the operator writes status to) and
/// kubectl's copy of the whole object in the last-applied annotation. Together they were most
/// of a small object's cached bytes (docs/benchmarks.md).
fn slim<K: kube::Resource>(obj: &mut K) {
    let meta = obj.meta_mut();
    // `None` rather than an empty list: a cleared Vec would keep its allocation.
    meta.managed_fields = None;
    if let Some(annotations) = meta.annotations.as_mut() {
        annotations.remove(LAST_APPLIED);
        if annotations.is_empty() {
            meta.annotations = None;
        }
    }
}

const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

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
