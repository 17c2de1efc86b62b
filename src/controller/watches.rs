//! The watches behind the caches: each kind's events applied to its store (and the index),
//! then handed to the controllers that subscribe to them ([`FanOut`]); what a cached object
//! keeps ([`slim`], [`slim_secret`]); and how every watch lists.

use std::sync::Arc;

use futures::StreamExt;
use futures::stream::BoxStream;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Api;
use kube::core::PartialObjectMeta;
use kube::runtime::{WatchStreamExt, reflector, watcher};

/// A watch of `api` that feeds each event to `index` and then to [`fan_out_watch`]. The
/// index hears first, so that a reconcile woken by the store finds what woke it in the index
/// too (see [`super::index`]).
pub fn indexed_watch<K>(
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
pub fn fan_out_watch<K>(
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
pub fn watch_config() -> watcher::Config {
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
pub fn slim_secret(secret: &mut PartialObjectMeta<Secret>) {
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
pub type SecretEvents = BoxStream<'static, Arc<PartialObjectMeta<Secret>>>;

/// One watch's objects, each handed to every subscriber once its store holds the change: a
/// subscriber that falls `buffer` objects behind holds the watch back rather than miss one.
/// Objects applied and deleted are handed on (a deleted report Secret is written again; a
/// generator whose ONETIME ReportFile was deleted before its report finished makes it again);
/// a relist hands on every object once it is complete, as the store takes it.
pub struct FanOut<K: kube::Resource<DynamicType = ()> + Clone + 'static> {
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
    pub fn new<const N: usize>(
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
    pub async fn send(&self, event: watcher::Event<K>) {
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
