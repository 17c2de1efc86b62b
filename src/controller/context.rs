//! What every reconcile shares: the Kubernetes client, the informer stores, the backend
//! clients, the event recorder and the metrics.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use k8s_openapi::api::core::v1::{ObjectReference, Secret};
use kube::core::PartialObjectMeta;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::{ObjectRef, Store};
use chrono::{DateTime, Utc};
use kube::{Client, Resource};
use tracing::warn;

use super::metrics::Metrics;
use super::registry::{BackendRegistry, NotReady};
use crate::api::{ReportBackend, ReportFile, ReportGenerator, find_condition, CONDITION_READY};
use crate::backend::ReportingBackend;

/// Shared state of the three controllers.
pub struct Context {
    pub client: Client,
    pub metrics: Arc<Metrics>,
    pub backends: Store<ReportBackend>,
    pub generators: Store<ReportGenerator>,
    pub files: Store<ReportFile>,
    /// Metadata of every Secret in scope: its resourceVersion tells when a credentials
    /// Secret changed without keeping Secret data in memory.
    pub secrets: Store<PartialObjectMeta<Secret>>,
    pub registry: BackendRegistry,
    /// The `lastWindowEnd` this process last wrote for each generator: until the watch
    /// brings the write back, the cached status is older than it.
    pub window_marks: WindowMarks,
    recorder: Recorder,
    ready: AtomicBool,
}

impl Context {
    pub fn new(
        client: Client,
        metrics: Arc<Metrics>,
        backends: Store<ReportBackend>,
        generators: Store<ReportGenerator>,
        files: Store<ReportFile>,
        secrets: Store<PartialObjectMeta<Secret>>,
    ) -> Self {
        let reporter = Reporter {
            controller: "report-operator".into(),
            instance: std::env::var("POD_NAME").ok(),
        };
        Context {
            recorder: Recorder::new(client.clone(), reporter),
            registry: BackendRegistry::default(),
            window_marks: WindowMarks::default(),
            client,
            metrics,
            backends,
            generators,
            files,
            secrets,
            ready: AtomicBool::new(false),
        }
    }

    /// Publishes an Event about `obj`. A failure to publish is logged, never fatal: Events
    /// are for people, status is the record.
    pub async fn event<K: Resource<DynamicType = ()>>(&self, obj: &K, type_: EventType, reason: &str, note: String) {
        let reference: ObjectReference = obj.object_ref(&());
        let event = Event {
            type_,
            reason: reason.into(),
            note: Some(truncate(note, 1000)),
            action: reason.into(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&event, &reference).await {
            warn!(error = %e, reason, "could not publish event");
        }
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
            .ok_or_else(|| NotReady::new("BackendNotFound", format!("ReportBackend {name:?} does not exist in namespace {namespace:?}")))?;
        let ready = rb
            .status
            .as_ref()
            .and_then(|s| find_condition(&s.conditions, CONDITION_READY))
            .filter(|c| c.observed_generation == rb.metadata.generation);
        match ready {
            Some(c) if c.status == "True" => {}
            Some(c) => {
                return Err(NotReady::new(
                    "BackendNotReady",
                    format!("ReportBackend {name:?} is not Ready ({}): {}", c.reason, c.message),
                ));
            }
            None => return Err(NotReady::new("BackendNotReady", format!("ReportBackend {name:?} has not been checked yet"))),
        }
        let client = self.registry.client(self, &rb).await?;
        Ok((rb, client))
    }

    /// Marks the operator ready (caches synced) for `/readyz`.
    pub fn set_ready(&self) {
        self.ready.store(true, Ordering::Relaxed);
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }
}

/// Per generator (by uid), the newest `lastWindowEnd` this process wrote.
#[derive(Default)]
pub struct WindowMarks(std::sync::Mutex<std::collections::HashMap<String, DateTime<Utc>>>);

impl WindowMarks {
    pub fn get(&self, g: &ReportGenerator) -> Option<DateTime<Utc>> {
        let uid = g.metadata.uid.as_deref()?;
        self.0.lock().unwrap_or_else(|p| p.into_inner()).get(uid).copied()
    }

    pub fn set(&self, g: &ReportGenerator, mark: Option<DateTime<Utc>>) {
        if let (Some(uid), Some(mark)) = (g.metadata.uid.clone(), mark) {
            let mut marks = self.0.lock().unwrap_or_else(|p| p.into_inner());
            let slot = marks.entry(uid).or_insert(mark);
            *slot = (*slot).max(mark);
        }
    }
}

fn truncate(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut cut = max;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
    s
}
