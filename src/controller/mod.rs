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
//! `registry` (backend clients), `metrics` (and its HTTP server) and `backoff` import no
//! other controller module: they get the client, stores and flags they need as arguments.
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

use std::sync::Arc;

use futures::StreamExt;
use futures::stream::BoxStream;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
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

/// A watch of `api` that feeds each event to `index` and then to [`fan_out_watch`]. The
/// index hears first, so that a reconcile woken by the store finds what woke it in the index
/// too (see [`index`]).
fn indexed_watch<K>(
    api: Api<K>,
    writer: reflector::store::Writer<K>,
    subscribers: FanOut<K>,
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
    let events = watcher(api, watch_config())
        .default_backoff()
        .modify(slim)
        .inspect(move |event| {
            if let Ok(event) = event {
                index(event);
            }
        });
    fan_out_watch(events, writer, subscribers)
}

/// Applies each event of a watch to `writer`'s store, and only then hands its object to
/// `subscribers`, so that a controller woken by a change finds it in the store. kube's
/// shared reflector is not used: its subscriber, handed a reference to an object deleted
/// from the store before it read it, waits without asking to be woken, then stops reading;
/// its buffer fills and the whole watch stops (the store and every controller of the kind
/// with it). A namespace deleted with its ReportFiles did that.
fn fan_out_watch<K>(
    events: impl futures::Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send + 'static,
    writer: reflector::store::Writer<K>,
    subscribers: FanOut<K>,
) -> impl std::future::Future<Output = ()> + Send
where
    K: kube::Resource<DynamicType = ()> + Clone + Send + Sync + 'static,
{
    events.reflect(writer).for_each(move |event| {
        let subscribers = subscribers.clone();
        async move {
            if let Ok(event) = event {
                subscribers.send(event).await;
            }
        }
    })
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
/// of a small object's cached bytes (docs/src/benchmarks.md).
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

/// The operator's own labels and owner references begin with its API group.
const OWN_PREFIX: &str = "reporting.report-operator.io/";

/// Keeps of a Secret's metadata only what the operator reads: name, namespace, uid,
/// resourceVersion, its own labels and its owner references to its own kinds. The operator
/// watches every Secret in scope, and others' can each carry 256 KiB of labels and
/// annotations; kept, 400 such Secrets in an unrelated namespace cost 80 MiB.
fn slim_secret(secret: &mut PartialObjectMeta<Secret>) {
    let meta = &mut secret.metadata;
    let labels: std::collections::BTreeMap<String, String> = meta
        .labels
        .take()
        .unwrap_or_default()
        .into_iter()
        .filter(|(k, _)| k.starts_with(OWN_PREFIX))
        .collect();
    let owners: Vec<_> = meta
        .owner_references
        .take()
        .unwrap_or_default()
        .into_iter()
        .filter(|o| o.api_version.starts_with(OWN_PREFIX))
        .collect();
    *meta = ObjectMeta {
        name: meta.name.take(),
        namespace: meta.namespace.take(),
        uid: meta.uid.take(),
        resource_version: meta.resource_version.take(),
        labels: (!labels.is_empty()).then_some(labels),
        owner_references: (!owners.is_empty()).then_some(owners),
        ..ObjectMeta::default()
    };
}

/// What a controller hears of Secrets: each one applied, listed or deleted, as
/// [`slim_secret`] left it.
type SecretEvents = BoxStream<'static, Arc<PartialObjectMeta<Secret>>>;

/// One watch's objects, each handed to every subscriber once its store holds the change: a
/// subscriber that falls `buffer` objects behind holds the watch back rather than miss one.
/// Objects applied and deleted are handed on (a deleted report Secret or ReportFile must be
/// heard of too); a relist hands on every object once it is complete, as the store takes it.
struct FanOut<K: kube::Resource<DynamicType = ()> + Clone + 'static> {
    subscribers: Arc<Vec<tokio::sync::mpsc::Sender<Arc<K>>>>,
    store: reflector::Store<K>,
}

impl<K: kube::Resource<DynamicType = ()> + Clone + 'static> Clone for FanOut<K> {
    fn clone(&self) -> Self {
        FanOut {
            subscribers: self.subscribers.clone(),
            store: self.store.clone(),
        }
    }
}

impl<K> FanOut<K>
where
    K: kube::Resource<DynamicType = ()> + Clone + Send + Sync + 'static,
{
    /// A fan-out to `N` streams of the objects of `store`.
    fn new<const N: usize>(
        store: reflector::Store<K>,
        buffer: usize,
    ) -> (Self, [BoxStream<'static, Arc<K>>; N]) {
        let mut senders = Vec::with_capacity(N);
        let streams = std::array::from_fn(|_| {
            let (tx, rx) = tokio::sync::mpsc::channel(buffer);
            senders.push(tx);
            futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|o| (o, rx)) }).boxed()
        });
        let fan_out = FanOut {
            subscribers: Arc::new(senders),
            store,
        };
        (fan_out, streams)
    }

    /// Hands what `event` changed to every subscriber: the store's own copy of an applied
    /// object (no second one is held while it waits), a deleted object, or after a relist
    /// every object the store now holds.
    async fn send(&self, event: watcher::Event<K>) {
        match event {
            watcher::Event::Apply(o) => {
                let stored = self.store.get(&reflector::ObjectRef::from_obj(&o));
                self.send_each(stored.unwrap_or_else(|| Arc::new(o))).await;
            }
            watcher::Event::Delete(o) => self.send_each(Arc::new(o)).await,
            watcher::Event::InitDone => {
                for o in self.store.state() {
                    self.send_each(o).await;
                }
            }
            // The store takes a relist's objects only when it is complete.
            watcher::Event::Init | watcher::Event::InitApply(_) => {}
        }
    }

    async fn send_each(&self, obj: Arc<K>) {
        for subscriber in self.subscribers.iter() {
            // Fails only when the subscriber is gone, as the process shuts down.
            let _ = subscriber.send(obj.clone()).await;
        }
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

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

    use super::*;

    fn secret(meta: ObjectMeta) -> PartialObjectMeta<Secret> {
        PartialObjectMeta {
            types: None,
            metadata: meta,
            _phantom: std::marker::PhantomData,
        }
    }

    fn owner(api_version: &str, kind: &str) -> OwnerReference {
        OwnerReference {
            api_version: api_version.into(),
            kind: kind.into(),
            name: "o".into(),
            uid: "u".into(),
            ..OwnerReference::default()
        }
    }

    #[test]
    fn a_cached_secret_keeps_only_what_the_operator_reads() {
        let mut s = secret(ObjectMeta {
            name: Some("creds".into()),
            namespace: Some("team".into()),
            uid: Some("uid-1".into()),
            resource_version: Some("42".into()),
            labels: Some(
                [
                    (
                        "reporting.report-operator.io/report-file".to_string(),
                        "r".to_string(),
                    ),
                    ("team".to_string(), "x".repeat(63)),
                ]
                .into(),
            ),
            annotations: Some([("blob".to_string(), "x".repeat(200 << 10))].into()),
            owner_references: Some(vec![
                owner("reporting.report-operator.io/v1alpha1", "ReportFile"),
                owner("apps/v1", "Deployment"),
            ]),
            finalizers: Some(vec!["example.com/keep".into()]),
            generate_name: Some("creds-".into()),
            ..ObjectMeta::default()
        });
        slim_secret(&mut s);
        assert_eq!(
            s.metadata,
            ObjectMeta {
                name: Some("creds".into()),
                namespace: Some("team".into()),
                uid: Some("uid-1".into()),
                resource_version: Some("42".into()),
                labels: Some(
                    [(
                        "reporting.report-operator.io/report-file".to_string(),
                        "r".to_string()
                    )]
                    .into()
                ),
                owner_references: Some(vec![owner("reporting.report-operator.io/v1alpha1", "ReportFile")]),
                ..ObjectMeta::default()
            }
        );
        // Nothing of its own: no empty maps left behind.
        let mut unrelated = secret(ObjectMeta {
            name: Some("other".into()),
            labels: Some([("team".to_string(), "x".to_string())].into()),
            owner_references: Some(vec![owner("v1", "ServiceAccount")]),
            ..ObjectMeta::default()
        });
        slim_secret(&mut unrelated);
        assert_eq!(unrelated.metadata.labels, None);
        assert_eq!(unrelated.metadata.owner_references, None);
    }

    fn config_map(name: &str) -> k8s_openapi::api::core::v1::ConfigMap {
        k8s_openapi::api::core::v1::ConfigMap {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("team".into()),
                ..ObjectMeta::default()
            },
            ..Default::default()
        }
    }

    type Events = futures::channel::mpsc::UnboundedSender<
        Result<watcher::Event<k8s_openapi::api::core::v1::ConfigMap>, watcher::Error>,
    >;

    /// A watch fed by hand through [`fan_out_watch`], and the store it fills.
    fn fanned_out_watch<const N: usize>() -> (
        Events,
        reflector::Store<k8s_openapi::api::core::v1::ConfigMap>,
        impl std::future::Future<Output = ()>,
        [BoxStream<'static, Arc<k8s_openapi::api::core::v1::ConfigMap>>; N],
    ) {
        let (events, watch) = futures::channel::mpsc::unbounded();
        let (store, writer) = reflector::store();
        let (fan_out, streams) = FanOut::new(store.clone(), 2);
        (events, store, fan_out_watch(watch, writer, fan_out), streams)
    }

    fn name(o: &k8s_openapi::api::core::v1::ConfigMap) -> String {
        o.metadata.name.clone().unwrap_or_default()
    }

    #[tokio::test]
    async fn every_subscriber_hears_of_applied_listed_and_deleted_objects_once_the_store_holds_them() {
        let (events, store, watch, mut streams) = fanned_out_watch::<2>();
        // Each event, and what each subscriber then hears: a name, and whether the store holds
        // that object as it is heard of (the deleted one is gone).
        let steps = [
            (watcher::Event::Init, None),
            (watcher::Event::InitApply(config_map("listed")), None),
            (watcher::Event::InitDone, Some(("listed", true))),
            (
                watcher::Event::Apply(config_map("applied")),
                Some(("applied", true)),
            ),
            (
                watcher::Event::Delete(config_map("listed")),
                Some(("listed", false)),
            ),
        ];
        let heard = async {
            let mut heard = Vec::new();
            for (event, _) in &steps {
                events.unbounded_send(Ok(event.clone())).unwrap();
                if !matches!(event, watcher::Event::Init | watcher::Event::InitApply(_)) {
                    for stream in streams.iter_mut() {
                        let o = stream.next().await.unwrap();
                        let held = store.get(&reflector::ObjectRef::from_obj(&*o)).is_some();
                        heard.push(Some((name(&o), held)));
                    }
                }
            }
            heard
        };
        let heard = tokio::select! {
            heard = heard => heard,
            () = watch => Vec::new(),
        };
        let expected: Vec<_> = steps
            .iter()
            .filter_map(|(_, h)| h.map(|(n, held)| Some((n.to_string(), held))))
            .flat_map(|h| [h.clone(), h])
            .collect();
        assert_eq!(heard, expected);
    }

    /// kube's shared reflector failed this: its subscriber, polled as a Controller polls its
    /// triggers (each stream in a `SelectAll`), found `a` gone from the store, waited without
    /// asking to be woken, and never heard of `b`; the watch stopped once its buffer filled.
    #[tokio::test]
    async fn a_subscriber_behind_an_object_deleted_before_it_read_it_hears_what_follows() {
        let (events, _store, watch, [stream]) = fanned_out_watch::<1>();
        let mut triggers = futures::stream::SelectAll::new();
        triggers.push(stream);
        events
            .unbounded_send(Ok(watcher::Event::Apply(config_map("a"))))
            .unwrap();
        events
            .unbounded_send(Ok(watcher::Event::Delete(config_map("a"))))
            .unwrap();
        let heard = async {
            let mut heard = vec![name(&triggers.next().await.unwrap())];
            // Only once the subscriber has read does `b` arrive.
            events
                .unbounded_send(Ok(watcher::Event::Apply(config_map("b"))))
                .unwrap();
            while heard.len() < 3 {
                heard.push(name(&triggers.next().await.unwrap()));
            }
            heard
        };
        let heard = tokio::time::timeout(std::time::Duration::from_secs(10), async {
            tokio::select! {
                heard = heard => heard,
                () = watch => Vec::new(),
            }
        })
        .await;
        assert_eq!(
            heard.ok(),
            Some(vec!["a".to_string(), "a".to_string(), "b".to_string()])
        );
    }
}
