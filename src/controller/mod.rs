//! The controller: one kube-runtime Controller per kind (four: ReportBackend, ReportGenerator,
//! ReportFile, ReportStore), sharing one client, one set of backend clients and one rate
//! budget per ReportBackend.
//!
//! Each reconcile is a pipeline: read, a pure decision (`decide` in `file/` and `generator/`,
//! `renewal` in `file/`, with table tests that need no cluster), the Kubernetes, backend and
//! bucket calls it asks for, and the [`outcome::Outcome`] written down once (Ready
//! condition, Event, requeue). The drivers' order of calls is tested fast too: their
//! `driver_tests.rs` run the real reconciles against an API server in memory and fake
//! backends and buckets ([`fixtures`], tests only).
//!
//! This file only wires the parts together ([`run`]). The modules depend on each other in one
//! direction (`a → b`: `a` uses `b`), so each can be read and tested from the bottom up:
//!
//! ```text
//! backend, generator, file, store  (one controller per kind; file → store for the S3 client)
//!   → create_once, finalizers   (nothing made twice on a backend; cleanups through kube's helper)
//!   → outcome                   (how a reconcile ended, written down in one place)
//!   → guard                     (what every reconcile goes through: panics, timeouts, API errors)
//!   → context                   (what reconciles share; its Buckets open ReportStores)
//!   → index, registry, events, bucket   (who belongs to whom; backend clients; Events; the
//!                                        bucket trait a copy uses)
//!   → metrics, backoff, conditions, error
//! gauges → context, metrics            (what a scrape reads from the caches)
//! context, guard → shards             (which namespaces this replica reconciles now)
//! shards → leader, metrics            (shard Leases: plan, I/O, what is held)
//! leader, outbound → cli, error (start-up)
//! fixtures (tests only) → context, index, metrics, events, bucket
//! ```
//!
//! `registry` (backend clients), `metrics` (and its HTTP server), `backoff` and `watches` (the
//! caches' watches, and how each controller hears of changes) import no other controller
//! module: they get the client, stores and flags they need as arguments.
//! Every reason a condition or Event carries comes from [`crate::api::reasons`].

mod backend;
mod backoff;
mod bucket;
mod cli;
pub mod conditions;
mod context;
mod create_once;
mod delivery_metrics;
mod delivery_pool;
mod error;
mod events;
mod fair_share;
mod file;
mod finalizers;
#[cfg(test)]
mod fixtures;
mod gauges;
mod generator;
mod guard;
mod index;
mod leader;
mod metrics;
mod outbound;
mod outcome;
mod registry;
mod seats;
mod shards;
mod store;
mod watches;

use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use kube::core::PartialObjectMeta;
use kube::runtime::controller::Controller;
use kube::runtime::{WatchStreamExt, reflector, watcher};
use kube::{Api, Client, ResourceExt};
use tracing::{info, warn};

use crate::api::{ReportBackend, ReportFile, ReportGenerator, ReportStore};
pub use cli::{LogFormat, RunArgs};
pub use context::Context;
pub use error::{Error, RunError};
use index::Index;
pub use metrics::Metrics;
use shards::Shards;
/// The shard of a namespace, for tools that watch a sharded operator (the benchmark).
pub use shards::shard_of;
use watches::{FanOut, SecretEvents, fan_out_watch, indexed_watch, slim_secret, watch_config};

/// ReportFile events a slow subscriber may fall behind by before the watch waits for it.
const FILE_EVENT_BUFFER: usize = 1024;
/// The same for ReportGenerators and ReportBackends, of which there are fewer.
const EVENT_BUFFER: usize = 256;
/// Secrets a controller may fall behind by before the Secret watch waits for it.
const SECRET_EVENT_BUFFER: usize = 256;

/// Runs the four controllers and the metrics server until SIGTERM or Ctrl-C; with
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

    // Secrets are watched once, as metadata only, and each is cut down to what the operator
    // reads as it arrives ([`slim_secret`]): the cache gives the resourceVersion of each
    // credentials Secret (a change rebuilds that backend's or store's client), and the three
    // controllers that care hear of every Secret applied or deleted (changed credentials,
    // deleted report Secrets) from this one watch.
    let (secret_store, secret_writer) = reflector::store();
    let (secret_fan_out, [backend_secrets, file_secrets, store_secrets]) =
        FanOut::new(secret_store.clone(), SECRET_EVENT_BUFFER);
    let secret_watch = fan_out_watch(
        watcher(secrets, watch_config())
            .default_backoff()
            .modify(slim_secret),
        secret_writer,
        secret_fan_out,
    );

    // One watch per kind fills its store and `ctx.index`, and drives its controller; the
    // ReportFile watch also wakes their generators. Subscribers hear of a change only once the
    // store holds it, so a generator woken by its report turning READY sees it READY when it
    // rolls its reports up (a watch of its own could run ahead of the store and leave the
    // counts behind).
    let (file_store, file_writer) = reflector::store();
    let (generator_store, generator_writer) = reflector::store();
    let (backend_store, backend_writer) = reflector::store();
    let (store_store, store_writer) = reflector::store();
    let index = Arc::new(Index::new(
        file_store.clone(),
        generator_store.clone(),
        backend_store.clone(),
        store_store.clone(),
    ));
    let (file_fan_out, [file_events, owned_file_events]) = FanOut::new(file_store.clone(), FILE_EVENT_BUFFER);
    let (generator_fan_out, [generator_events]) = FanOut::new(generator_store.clone(), EVENT_BUFFER);
    let (backend_fan_out, [backend_events]) = FanOut::new(backend_store.clone(), EVENT_BUFFER);
    let (store_fan_out, [store_events]) = FanOut::new(store_store.clone(), EVENT_BUFFER);
    let file_reflector = indexed_watch(files, file_writer, file_fan_out, {
        let index = index.clone();
        move |e| index.apply_file(e)
    });
    let generator_reflector = indexed_watch(generators, generator_writer, generator_fan_out, {
        let index = index.clone();
        move |e| index.apply_generator(e)
    });
    let backend_reflector = indexed_watch(backends.clone(), backend_writer, backend_fan_out, {
        let index = index.clone();
        move |e| index.apply_backend(e)
    });
    let store_reflector = indexed_watch(stores, store_writer, store_fan_out, {
        let index = index.clone();
        move |e| index.apply_store(e)
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
    let store_controller = Controller::for_shared_stream(shards.held_only(store_events), store_store.clone())
        .reconcile_on(shards.taken(store_store.clone()));
    let owned_file_events = shards.held_only(owned_file_events);
    let [backend_secrets, file_secrets, store_secrets] =
        [backend_secrets, file_secrets, store_secrets].map(|secrets| shards.held_only(secrets).boxed());

    let ctx = Arc::new(
        Context::new(
            client.clone(),
            metrics,
            index,
            secret_store,
            store_store,
            policy,
            Arc::new(file::S3Buckets),
        )
        .with_shards(shards)
        .with_workers(args.concurrency)
        .with_delivery_limits(args.delivery_limits())
        .with_deletion_grace(std::time::Duration::from_secs(args.deletion_grace_seconds)),
    );
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
            _ = backend::controller(backend_controller, backend_secrets, ctx.clone(), concurrency) => info!("ReportBackend controller stopped"),
            _ = generator::controller(generator_controller, owned_file_events, backends.clone(), ctx.clone(), concurrency) => info!("ReportGenerator controller stopped"),
            _ = file::controller(file_controller, backends, file_secrets, ctx.clone(), concurrency) => info!("ReportFile controller stopped"),
            _ = store::controller(store_controller, store_secrets, ctx.clone(), concurrency) => info!("ReportStore controller stopped"),
            _ = readiness => {}
            _ = secret_watch => warn!("Secret watch ended"),
            _ = file_reflector => warn!("ReportFile watch ended"),
            _ = generator_reflector => warn!("ReportGenerator watch ended"),
            _ = backend_reflector => warn!("ReportBackend watch ended"),
            _ = store_reflector => warn!("ReportStore watch ended"),
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
