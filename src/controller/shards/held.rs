//! What this replica holds, as the event filters, the reconciles and the metrics see it.
//!
//! The shard manager ([`super::leases`]) writes it: a shard is held under a term (a number
//! new at each take) from the moment its Lease is ours until the manager releases it or its
//! watchdog stops it. Everything else reads it:
//! - [`Shards::held_only`] and [`Shards::only_held`] drop the events of other shards before
//!   they reach a controller's queue;
//! - [`Shards::claim`] is the re-check at the start of every reconcile (`guard`), and
//!   [`Claim::while_held`] drops the reconcile's future when its shard goes, which to the
//!   reconcile is the same as a crash there;
//! - [`Shards::taken`] queues every object of a shard just taken: its events went by while
//!   another replica held it, but the caches here have them all.
//!
//! Without sharding ([`Shards::everything`]) every namespace is held, always.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use futures::{Stream, StreamExt};
use kube::Resource;
use kube::runtime::reflector::{ObjectRef, Store};
use tokio::sync::{broadcast, watch};

use super::hash::shard_of;
use crate::controller::metrics::Metrics;

/// What this replica holds; cheap to clone.
#[derive(Clone)]
pub struct Shards(Option<Arc<Inner>>);

struct Inner {
    count: u16,
    /// By shard: the term it is held under, `None` while not held.
    terms: Vec<watch::Sender<Option<u64>>>,
    last_term: AtomicU64,
    /// Each shard just taken, for [`Shards::taken`].
    taken: broadcast::Sender<u16>,
    metrics: Arc<Metrics>,
}

impl Shards {
    /// Not sharded: every namespace is ours.
    pub fn everything() -> Shards {
        Shards(None)
    }

    /// `count` shards, none held yet.
    pub fn new(count: u16, metrics: Arc<Metrics>) -> Shards {
        let count = count.max(1);
        for shard in 0..count {
            metrics.shard_held(shard, false);
        }
        metrics.set_leader(false);
        Shards(Some(Arc::new(Inner {
            count,
            terms: (0..count).map(|_| watch::Sender::new(None)).collect(),
            last_term: AtomicU64::new(0),
            taken: broadcast::Sender::new(usize::from(count) + 16),
            metrics,
        })))
    }

    /// The number of shards; `None` without sharding.
    pub fn count(&self) -> Option<u16> {
        self.0.as_ref().map(|i| i.count)
    }

    /// Whether this replica holds `namespace` now.
    pub fn holds(&self, namespace: &str) -> bool {
        match &self.0 {
            None => true,
            Some(inner) => inner.term(shard_of(namespace, inner.count)).is_some(),
        }
    }

    /// The right to reconcile an object of `namespace` for as long as its shard stays held;
    /// `None` when it is not held now. Counts the reconcile in its shard's metric.
    pub fn claim(&self, namespace: &str) -> Option<Claim> {
        let Some(inner) = &self.0 else {
            return Some(Claim(None));
        };
        let shard = shard_of(namespace, inner.count);
        let held = inner.terms[usize::from(shard)].subscribe();
        let term = (*held.borrow())?;
        inner.metrics.shard_reconciled(shard);
        Some(Claim(Some((held, term))))
    }

    /// `events` without the objects of shards not held.
    pub fn held_only<K: Resource + Send + Sync + 'static>(
        &self,
        events: impl Stream<Item = Arc<K>> + Send + 'static,
    ) -> impl Stream<Item = Arc<K>> + Send + 'static {
        let shards = self.clone();
        events.filter(move |obj| std::future::ready(shards.holds(namespace_of(&**obj))))
    }

    /// A `.watches(…)` mapper that maps only the objects of held shards (what it wakes is in
    /// the same namespace).
    pub fn only_held<Other, I>(
        &self,
        mapper: impl Fn(Other) -> I + Send + Sync + 'static,
    ) -> impl Fn(Other) -> std::iter::Flatten<std::option::IntoIter<I>> + Send + Sync + 'static
    where
        Other: Resource,
        I: IntoIterator,
    {
        let shards = self.clone();
        move |obj| {
            shards
                .holds(namespace_of(&obj))
                .then(|| mapper(obj))
                .into_iter()
                .flatten()
        }
    }

    /// Every object of `store` in each shard as it is taken, for `Controller::reconcile_on`.
    /// Never ends; yields nothing without sharding.
    pub fn taken<K>(&self, store: Store<K>) -> impl Stream<Item = ObjectRef<K>> + Send + 'static
    where
        K: Resource<DynamicType = ()> + Clone + Send + Sync + 'static,
    {
        let inner = self.0.clone();
        let taken = inner.as_ref().map(|i| i.taken.subscribe());
        futures::stream::unfold((inner, taken), |(inner, mut taken)| async move {
            let (Some(i), Some(rx)) = (&inner, taken.as_mut()) else {
                return futures::future::pending().await;
            };
            let shards = match rx.recv().await {
                Ok(shard) => vec![shard],
                // Fell behind: queue every shard held, which covers the ones missed.
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    (0..i.count).filter(|s| i.term(*s).is_some()).collect()
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            };
            let count = i.count;
            Some(((shards, count), (inner, taken)))
        })
        .flat_map(move |(shards, count)| {
            let refs: Vec<ObjectRef<K>> = store
                .state()
                .iter()
                .filter(|obj| shards.contains(&shard_of(namespace_of(&***obj), count)))
                .map(|obj| ObjectRef::from_obj(&**obj))
                .collect();
            futures::stream::iter(refs)
        })
    }

    /// Marks `shard` held under a new term, and queues its objects ([`Shards::taken`]).
    pub(super) fn hold(&self, shard: u16) -> Option<u64> {
        let inner = self.0.as_ref()?;
        let term = inner.last_term.fetch_add(1, Ordering::Relaxed) + 1;
        inner.terms.get(usize::from(shard))?.send_replace(Some(term));
        inner.metrics.shard_held(shard, true);
        inner.metrics.shard_taken(shard);
        inner.metrics.set_leader(true);
        // No receiver yet only before the controllers are built, when no shard is taken.
        let _ = inner.taken.send(shard);
        Some(term)
    }

    /// Stops `shard` (if still held under `term`): every reconcile of it is dropped.
    pub(super) fn let_go(&self, shard: u16, term: u64) {
        let Some(inner) = &self.0 else { return };
        let Some(held) = inner.terms.get(usize::from(shard)) else {
            return;
        };
        let changed = held.send_if_modified(|t| {
            let ours = *t == Some(term);
            if ours {
                *t = None;
            }
            ours
        });
        if changed {
            inner.metrics.shard_held(shard, false);
            inner
                .metrics
                .set_leader((0..inner.count).any(|s| inner.term(s).is_some()));
        }
    }

    /// The term `shard` is held under now.
    pub(super) fn term(&self, shard: u16) -> Option<u64> {
        self.0.as_ref().and_then(|i| i.term(shard))
    }
}

impl Inner {
    fn term(&self, shard: u16) -> Option<u64> {
        self.terms.get(usize::from(shard)).and_then(|t| *t.borrow())
    }
}

fn namespace_of<K: Resource>(obj: &K) -> &str {
    obj.meta().namespace.as_deref().unwrap_or_default()
}

/// A reconcile's right to act on its object, for as long as the shard stays held.
pub struct Claim(Option<(watch::Receiver<Option<u64>>, u64)>);

impl Claim {
    /// Runs `fut` until it ends or the shard is no longer held under the claimed term, in which
    /// case `fut` is dropped where it stands and the answer is `None`.
    pub async fn while_held<F: Future>(self, fut: F) -> Option<F::Output> {
        let Some((mut held, term)) = self.0 else {
            return Some(fut.await);
        };
        tokio::select! {
            biased;
            _ = held.wait_for(|t| *t != Some(term)) => None,
            out = fut => Some(out),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::runtime::reflector;
    use kube::runtime::watcher::Event;

    use super::*;

    fn config_map(namespace: &str, name: &str) -> ConfigMap {
        let mut cm = ConfigMap::default();
        cm.metadata.namespace = Some(namespace.into());
        cm.metadata.name = Some(name.into());
        cm
    }

    /// Two namespaces in different shards of 16: "billing" in 12, "default" in 14.
    const BILLING: u16 = 12;

    #[tokio::test]
    async fn a_reconcile_runs_only_while_its_shard_is_held_and_stops_when_it_goes() {
        let shards = Shards::new(16, Arc::new(Metrics::new()));
        assert!(shards.claim("billing").is_none(), "not held yet");
        let term = shards.hold(BILLING).expect("term");
        assert!(shards.holds("billing") && !shards.holds("default"));
        let claim = shards.claim("billing").expect("held");
        assert_eq!(claim.while_held(async { 7 }).await, Some(7));

        // Let go while a reconcile runs: its future is dropped there.
        let claim = shards.claim("billing").expect("held");
        let (reached, mut seen) = watch::channel(false);
        let running = tokio::spawn(claim.while_held(async move {
            reached.send_replace(true);
            futures::future::pending::<()>().await
        }));
        seen.wait_for(|r| *r).await.expect("started");
        shards.let_go(BILLING, term);
        assert_eq!(running.await.expect("task"), None);
        assert!(shards.claim("billing").is_none());

        // A claim of an earlier term ends even if the shard came back in between.
        let term = shards.hold(BILLING).expect("term");
        let old = shards.claim("billing").expect("held");
        shards.let_go(BILLING, term);
        shards.hold(BILLING).expect("again");
        assert_eq!(old.while_held(futures::future::pending::<()>()).await, None);
        // Letting go of an old term leaves the new one alone.
        shards.let_go(BILLING, term);
        assert!(shards.holds("billing"));
    }

    #[tokio::test]
    async fn without_sharding_everything_is_held_for_ever() {
        let shards = Shards::everything();
        assert!(shards.holds("anything"));
        let claim = shards.claim("anything").expect("held");
        assert_eq!(claim.while_held(async { 1 }).await, Some(1));
        let (store, mut writer) = reflector::store::<ConfigMap>();
        writer.apply_watcher_event(&Event::Apply(config_map("a", "x")));
        let mut taken = Box::pin(shards.taken(store));
        let next = tokio::time::timeout(Duration::from_millis(50), taken.next()).await;
        assert!(next.is_err(), "nothing is ever taken");
    }

    #[tokio::test]
    async fn events_and_mapped_objects_of_other_shards_are_dropped() {
        let shards = Shards::new(16, Arc::new(Metrics::new()));
        shards.hold(BILLING);
        let events = futures::stream::iter(
            [
                config_map("billing", "a"),
                config_map("default", "b"),
                config_map("billing", "c"),
            ]
            .map(Arc::new),
        );
        let names: Vec<String> = shards
            .held_only(events)
            .map(|cm| cm.metadata.name.clone().unwrap_or_default())
            .collect()
            .await;
        assert_eq!(names, ["a", "c"]);

        let mapper = shards.only_held(|cm: ConfigMap| vec![ObjectRef::<ConfigMap>::from_obj(&cm)]);
        assert_eq!(mapper(config_map("billing", "a")).count(), 1);
        assert_eq!(mapper(config_map("default", "b")).count(), 0);
    }

    #[tokio::test]
    async fn a_shard_taken_queues_every_object_of_its_namespaces() {
        let shards = Shards::new(16, Arc::new(Metrics::new()));
        let (store, mut writer) = reflector::store::<ConfigMap>();
        for (ns, name) in [("billing", "a"), ("default", "b"), ("billing", "c")] {
            writer.apply_watcher_event(&Event::Apply(config_map(ns, name)));
        }
        let mut taken = Box::pin(shards.taken(store));
        shards.hold(BILLING);
        let mut names = Vec::new();
        for _ in 0..2 {
            let r = tokio::time::timeout(Duration::from_secs(5), taken.next())
                .await
                .expect("queued")
                .expect("a ref");
            names.push(r.name);
        }
        names.sort();
        assert_eq!(names, ["a", "c"]);
        let more = tokio::time::timeout(Duration::from_millis(50), taken.next()).await;
        assert!(more.is_err(), "nothing of another shard: {more:?}");
    }
}
