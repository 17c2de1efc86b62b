//! Events go out from a task of their own, so that no reconcile waits for one: they are for
//! people and best effort, while a reconcile that waited for each one made a 20-organization
//! SUPPLIER window wait seconds for its `Created` Events on a busy API server before the next
//! window's files were made.

use futures::StreamExt;
use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::events::{Event, Recorder};
use tokio::sync::mpsc;
use tracing::warn;

/// Events waiting to be published; a reconcile waits only when this many are queued, so
/// memory stays bounded when the API server is slow.
const QUEUE: usize = 1024;

/// Events published at once: a few, so that the queue drains while the API server is busy
/// and a burst of Events does not crowd out status writes.
const CONCURRENCY: usize = 2;

/// What a test does with each Event.
#[cfg(test)]
pub type Capture = Box<dyn Fn(&Event, &ObjectReference) + Send + Sync>;

/// The sending end; the publishing task ends when the last `Events` is dropped.
pub enum Events {
    Publish(mpsc::Sender<(Event, ObjectReference)>),
    /// The drivers' fast tests: each Event is handed to the test at once, in order with the
    /// calls around it.
    #[cfg(test)]
    Capture(Capture),
}

impl Events {
    /// Starts the publishing task on the current runtime.
    pub fn start(recorder: Recorder) -> Self {
        let (tx, rx) = mpsc::channel::<(Event, ObjectReference)>(QUEUE);
        let queued =
            futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) });
        tokio::spawn(
            queued.for_each_concurrent(CONCURRENCY, move |(event, reference)| {
                let recorder = recorder.clone();
                async move {
                    // With what it says: a namespace being deleted refuses new Events, and a
                    // Warning about what a deletion left behind would otherwise be lost.
                    if let Err(e) = recorder.publish(&event, &reference).await {
                        warn!(
                            error = %e,
                            reason = %event.reason,
                            namespace = reference.namespace.as_deref().unwrap_or_default(),
                            object = reference.name.as_deref().unwrap_or_default(),
                            note = event.note.as_deref().unwrap_or_default(),
                            "could not publish event"
                        );
                    }
                }
            }),
        );
        Events::Publish(tx)
    }

    /// Queues `event` about `reference`; waits only while the queue is full.
    pub async fn send(&self, event: Event, reference: ObjectReference) {
        match self {
            Events::Publish(tx) => {
                if tx.send((event, reference)).await.is_err() {
                    warn!("the event publisher has stopped; an event was dropped");
                }
            }
            #[cfg(test)]
            Events::Capture(capture) => capture(&event, &reference),
        }
    }
}
