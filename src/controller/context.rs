//! What every reconcile shares: the Kubernetes client, the informer stores, the backend
//! clients, the event recorder and the metrics.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use k8s_openapi::api::core::v1::{ObjectReference, Secret};
use kube::core::PartialObjectMeta;
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::store::WriterDropped;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::backoff::Backoff;
use super::bucket::OpenBucket;
use super::conditions::apply_status;
use super::delivery_pool::Deliveries;
use super::events::Events;
use super::fair_share::Limits;
use super::index::Index;
use super::metrics::Metrics;
use super::registry::{BackendRegistry, NotReady, Unusable};
use super::seats::Seats;
use super::shards::Shards;
use super::store::StoreClients;
use crate::api::reasons::Reason;
use crate::api::{CONDITION_READY, ReportBackend, ReportFile, ReportGenerator, ReportStore, find_condition};
use crate::backend::{OutboundPolicy, ReportingBackend};
use crate::delivery::StoreError;

/// Shared state of the four controllers.
pub struct Context {
    pub client: Client,
    pub metrics: Arc<Metrics>,
    pub backends: Store<ReportBackend>,
    pub generators: Store<ReportGenerator>,
    pub files: Store<ReportFile>,
    /// The ReportStores (the store controller's cache), which every copy and re-mint reads.
    pub stores: Store<ReportStore>,
    /// Metadata of every Secret in scope: its resourceVersion tells when a credentials
    /// Secret changed without keeping Secret data in memory.
    pub secrets: Store<PartialObjectMeta<Secret>>,
    /// Answers the questions across objects of the stores above without scanning them.
    pub index: Arc<Index>,
    pub registry: BackendRegistry,
    /// One client per ReportStore and when each is probed next.
    pub store_clients: StoreClients,
    /// Failures in a row per object, for the retry delay of a failing reconcile.
    pub backoff: Backoff,
    /// Where calls to backends and stores may go (the `--outbound-*` flags).
    pub outbound: Arc<OutboundPolicy>,
    /// The namespaces this replica reconciles now (all of them without `--sharding`).
    pub shards: Shards,
    /// Opens ReportStores' buckets for the copies of READY reports.
    pub buckets: Arc<dyn Buckets>,
    /// Runs the copies of READY reports into their stores, apart from the reconciles, a few
    /// per namespace at a time.
    pub deliveries: Arc<Deliveries>,
    /// How long a deleted object's cleanup may keep its finalizer when it cannot be done.
    pub deletion_grace: std::time::Duration,
    /// Each namespace's share of each kind's reconcile workers.
    pub seats: Arc<Seats>,
    /// The resourceVersion of this process's last status write to each object.
    own_writes: OwnWrites,
    events: Events,
    /// Caches synced (or a standby replica), for `/readyz` (see [`super::metrics::serve`]).
    ready: Arc<AtomicBool>,
    /// Turns true once every cache has listed once (see [`Context::fill_caches`]).
    caches_synced: tokio::sync::watch::Sender<bool>,
    /// The drivers' fast tests: the time of [`Context::now`], fixed.
    #[cfg(test)]
    fixed_now: std::sync::Mutex<Option<chrono::DateTime<chrono::Utc>>>,
}

impl Context {
    pub fn new(
        client: Client,
        metrics: Arc<Metrics>,
        index: Arc<Index>,
        secrets: Store<PartialObjectMeta<Secret>>,
        stores: Store<ReportStore>,
        outbound: Arc<OutboundPolicy>,
        buckets: Arc<dyn Buckets>,
    ) -> Self {
        let reporter = Reporter {
            controller: "report-operator".into(),
            instance: std::env::var("POD_NAME").ok(),
        };
        Context {
            events: Events::start(Recorder::new(client.clone(), reporter)),
            registry: BackendRegistry::new(client.clone(), secrets.clone(), outbound.clone()),
            store_clients: StoreClients::default(),
            outbound,
            shards: Shards::everything(),
            buckets,
            deliveries: Deliveries::new(Limits::default(), index.files.clone()),
            deletion_grace: super::finalizers::DEFAULT_DELETION_GRACE,
            seats: Seats::new(super::cli::DEFAULT_CONCURRENCY),
            backoff: Default::default(),
            own_writes: OwnWrites::default(),
            client,
            metrics,
            backends: index.backends.clone(),
            generators: index.generators.clone(),
            files: index.files.clone(),
            stores,
            secrets,
            index,
            ready: Arc::default(),
            caches_synced: tokio::sync::watch::Sender::new(false),
            #[cfg(test)]
            fixed_now: Default::default(),
        }
    }

    /// This context reconciling only the namespaces of the shards `shards` holds (`--sharding`).
    pub fn with_shards(mut self, shards: Shards) -> Self {
        self.shards = shards;
        self
    }

    /// This context with a delivery pool of `limits`.
    pub fn with_delivery_limits(mut self, limits: Limits) -> Self {
        self.deliveries = Deliveries::new(limits, self.files.clone());
        self
    }

    /// This context with `workers` reconciles of each kind at once (`--concurrency`), shared
    /// fairly between namespaces.
    pub fn with_workers(mut self, workers: u16) -> Self {
        self.seats = Seats::new(workers);
        self
    }

    /// This context with a deleted object's cleanup giving up after `grace`.
    pub fn with_deletion_grace(mut self, grace: std::time::Duration) -> Self {
        self.deletion_grace = grace;
        self
    }

    /// The time decisions are made at: the system's (in the drivers' fast tests, one a test
    /// sets).
    pub fn now(&self) -> chrono::DateTime<chrono::Utc> {
        #[cfg(test)]
        if let Some(now) = *self.fixed_now.lock().unwrap_or_else(|p| p.into_inner()) {
            return now;
        }
        chrono::Utc::now()
    }

    /// Publishes an Event about `obj` without waiting for the API server (see [`Events`]). A
    /// failure to publish is logged, never fatal: Events are for people, status is the record.
    pub async fn event<K: Resource<DynamicType = ()>>(
        &self,
        obj: &K,
        type_: EventType,
        reason: impl Reason,
        note: String,
    ) {
        let reference: ObjectReference = obj.object_ref(&());
        let event = Event {
            type_,
            reason: reason.as_str().into(),
            note: Some(super::conditions::cut_to(note, MAX_NOTE_BYTES)),
            action: reason.as_str().into(),
            secondary: None,
        };
        self.events.send(event, reference).await;
    }

    /// The ReportBackend `name` in `namespace` and its client, if it is Ready for its current
    /// spec; otherwise why not, in words for a condition message.
    pub async fn ready_backend(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<(Arc<ReportBackend>, Arc<dyn ReportingBackend>), NotReady> {
        let rb = self
            .backends
            .get(&ObjectRef::new(name).within(namespace))
            .ok_or_else(|| {
                NotReady::new(
                    Unusable::NotFound,
                    format!("ReportBackend {name:?} does not exist in namespace {namespace:?}"),
                )
            })?;
        let ready = rb
            .status
            .as_ref()
            .and_then(|s| find_condition(&s.conditions, CONDITION_READY))
            .filter(|c| c.observed_generation == rb.metadata.generation);
        match ready {
            Some(c) if c.status == "True" => {}
            Some(c) => {
                return Err(NotReady::new(
                    Unusable::NotReady,
                    format!(
                        "ReportBackend {name:?} is not Ready ({}): {}",
                        c.reason, c.message
                    ),
                ));
            }
            None => {
                return Err(NotReady::new(
                    Unusable::NotReady,
                    format!("ReportBackend {name:?} has not been checked yet"),
                ));
            }
        }
        let client = self.registry.client(&rb).await?;
        Ok((rb, client))
    }

    /// Writes the status of `obj` by server-side apply and remembers the version written, so
    /// that the next reconcile does not act on an older cached copy (see [`OwnWrites`]).
    pub async fn apply_status<K, S>(&self, api: &Api<K>, obj: &K, status: &S) -> Result<(), kube::Error>
    where
        K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
        S: Serialize,
    {
        let written = apply_status(api, &obj.name_any(), status).await?;
        self.own_writes.record(&written);
        Ok(())
    }

    /// Whether a reconcile of `obj` must hold back before it reads the caches.
    ///
    /// It first waits until every cache has listed once. Each controller runs its own watch,
    /// so right after a start or a leader takeover a ReportFile can be reconciled while the
    /// ReportBackend cache is still empty: the report would wait 30 s for a backend it calls
    /// missing, and a generator would count as free the report ids that others hold.
    ///
    /// Then a short requeue when the cached `obj` is older than this process's own last status
    /// write to it: acting on it would repeat what that write recorded. The watch brings the
    /// write soon (and wakes the object then).
    pub async fn hold_back<K: Resource>(&self, obj: &K) -> Option<Action> {
        self.caches_filled().await;
        self.own_writes
            .cache_is_behind(obj)
            .then(|| Action::requeue(CACHE_CATCH_UP))
    }

    /// Waits until every cache has listed once and then lets [`Context::hold_back`] go on.
    /// Exactly one task may call this: a store's `wait_until_ready` wakes only its latest
    /// waiter. Fails only when a watch was dropped (the process is shutting down).
    pub async fn fill_caches(&self) -> Result<(), WriterDropped> {
        futures::try_join!(
            self.backends.wait_until_ready(),
            self.generators.wait_until_ready(),
            self.files.wait_until_ready(),
            self.secrets.wait_until_ready(),
            self.stores.wait_until_ready(),
        )?;
        self.caches_synced.send_replace(true);
        Ok(())
    }

    /// Resolves once every cache has listed once (see [`Context::fill_caches`]).
    pub async fn caches_filled(&self) {
        // The sender lives in `self`, so waiting ends only with `true`.
        let _ = self.caches_synced.subscribe().wait_for(|synced| *synced).await;
    }

    /// Marks the operator ready (caches synced) for `/readyz`.
    pub fn set_ready(&self) {
        self.ready.store(true, Ordering::Relaxed);
    }

    /// The flag [`Context::set_ready`] sets, for the `/readyz` server.
    pub fn readiness(&self) -> Arc<AtomicBool> {
        self.ready.clone()
    }
}

/// Opens a ReportStore's bucket: object_store's S3 client in the operator
/// (`file::S3Buckets`), a fake in the drivers' fast tests.
#[async_trait::async_trait]
pub trait Buckets: Send + Sync {
    async fn open(&self, ctx: &Context, namespace: &str, rs: &ReportStore) -> Result<OpenBucket, StoreError>;
}

#[cfg(test)]
impl Context {
    /// This context with `events` instead of a publisher, and its caches taken as filled:
    /// the drivers' fast tests fill them by hand.
    pub fn for_test(mut self, events: Events) -> Self {
        self.events = events;
        self.caches_synced.send_replace(true);
        self
    }

    /// [`Context::now`] says `now` from here on.
    pub fn set_now(&self, now: chrono::DateTime<chrono::Utc>) {
        *self.fixed_now.lock().unwrap_or_else(|p| p.into_inner()) = Some(now);
    }
}

/// How long a reconcile waits for the cache to bring back this process's own write.
const CACHE_CATCH_UP: std::time::Duration = std::time::Duration::from_millis(500);

/// Per object (by uid), the resourceVersion of the newest status this process wrote.
///
/// The informer cache can lag behind a write: the watch event of the first of two status
/// writes in one reconcile may wake the next reconcile before the second one arrives. Acting on
/// that older status repeats work: a FUSION report generated twice, a window planned twice.
/// Resource versions of one resource are comparable integers since Kubernetes 1.35
/// (KEP-5504); a version that does not parse is never called stale.
#[derive(Default)]
struct OwnWrites(std::sync::Mutex<std::collections::HashMap<String, u64>>);

impl OwnWrites {
    /// Remembers the version `written` (the object the API server returned).
    fn record<K: Resource>(&self, written: &K) {
        let meta = written.meta();
        if let (Some(uid), Some(version)) = (meta.uid.clone(), resource_version(meta)) {
            let mut writes = self.0.lock().unwrap_or_else(|p| p.into_inner());
            let slot = writes.entry(uid).or_insert(version);
            *slot = (*slot).max(version);
        }
    }

    /// Whether `cached` is older than this process's last write to it. Once the cache has
    /// caught up the entry is dropped, so the map holds only writes still in flight.
    fn cache_is_behind<K: Resource>(&self, cached: &K) -> bool {
        let meta = cached.meta();
        let (Some(uid), Some(version)) = (meta.uid.as_deref(), resource_version(meta)) else {
            return false;
        };
        let mut writes = self.0.lock().unwrap_or_else(|p| p.into_inner());
        match writes.get(uid) {
            Some(&written) if written > version => true,
            Some(_) => {
                writes.remove(uid);
                false
            }
            None => false,
        }
    }
}

fn resource_version(meta: &kube::api::ObjectMeta) -> Option<u64> {
    meta.resource_version.as_deref()?.parse().ok()
}

/// The longest Event note kept (the API allows 1 KiB).
const MAX_NOTE_BYTES: usize = 1000;

#[cfg(test)]
mod tests {
    use super::*;

    fn object(uid: &str, version: &str) -> k8s_openapi::api::core::v1::ConfigMap {
        let mut object = k8s_openapi::api::core::v1::ConfigMap::default();
        object.metadata.uid = Some(uid.into());
        object.metadata.resource_version = Some(version.into());
        object
    }

    #[test]
    fn a_cache_older_than_our_write_is_behind_until_it_catches_up() {
        let writes = OwnWrites::default();
        writes.record(&object("a", "120"));
        writes.record(&object("a", "110"));
        assert!(writes.cache_is_behind(&object("a", "100")));
        assert!(writes.cache_is_behind(&object("a", "119")));
        assert!(!writes.cache_is_behind(&object("b", "1")), "another object");
        assert!(!writes.cache_is_behind(&object("a", "120")));
        assert!(writes.0.lock().expect("lock").is_empty(), "caught up: forgotten");
        assert!(
            !writes.cache_is_behind(&object("a", "100")),
            "nothing recorded any more"
        );
    }

    #[test]
    fn versions_that_are_not_integers_are_never_behind() {
        let writes = OwnWrites::default();
        writes.record(&object("a", "x7"));
        assert!(!writes.cache_is_behind(&object("a", "1")));
    }
}
