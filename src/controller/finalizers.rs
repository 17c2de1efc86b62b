//! The operator's finalizers, through kube's [`finalizer()`] helper. The helper is called only
//! for the objects that leave something outside the cluster (an RDE generator's template, a
//! CONNECT report, a copy in a ReportStore kept with retention Delete), never around a whole
//! reconcile, which would put a finalizer on every object.

use std::fmt::Debug;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use kube::api::Api;
use kube::runtime::controller::Action;
use kube::runtime::finalizer::{self, Event as Finalizing, finalizer};
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::error::Error;

/// The cleanup cannot be done yet: the finalizer stays and the object is looked at again
/// after the duration (not an error: the cleanup tells its own story in Events).
#[derive(Debug, thiserror::Error)]
#[error("the cleanup cannot be done yet")]
pub struct NotYet(pub Duration);

/// Adds the finalizer `name` to `obj` unless it has it. The helper returns right after adding
/// it (its `Apply` does nothing), so the caller goes on in the same pass.
pub async fn ensure<K>(obj: &K, api: &Api<K>, name: &str) -> Result<(), Error>
where
    K: Resource + Clone + DeserializeOwned + Serialize + Debug,
    K::DynamicType: Default,
{
    if obj.finalizers().iter().any(|f| f == name) {
        return Ok(());
    }
    let nothing_to_apply = |_: Finalizing<K>| async { Ok::<_, NotYet>(Action::await_change()) };
    finalizer(api, name, Arc::new(obj.clone()), nothing_to_apply)
        .await
        .or_else(outcome)?;
    Ok(())
}

/// `obj` is being deleted: runs `cleanup` if it still has the finalizer `name`, and removes
/// the finalizer once that succeeded.
pub async fn run<K, F, Fut>(obj: Arc<K>, api: &Api<K>, name: &str, cleanup: F) -> Result<Action, Error>
where
    K: Resource + Clone + DeserializeOwned + Serialize + Debug,
    K::DynamicType: Default,
    F: FnOnce(Arc<K>) -> Fut,
    Fut: Future<Output = Result<Action, NotYet>>,
{
    let step = |event| async move {
        match event {
            Finalizing::Cleanup(obj) => cleanup(obj).await,
            // Not reached: `run` is only called for an object being deleted.
            Finalizing::Apply(_) => Ok(Action::await_change()),
        }
    };
    finalizer(api, name, obj, step).await.or_else(outcome)
}

/// A [`finalizer()`] failure as a reconcile result: [`NotYet`] is a plain requeue.
fn outcome(e: finalizer::Error<NotYet>) -> Result<Action, Error> {
    match e {
        finalizer::Error::ApplyFailed(NotYet(after)) | finalizer::Error::CleanupFailed(NotYet(after)) => {
            Ok(Action::requeue(after))
        }
        finalizer::Error::AddFinalizer(e) | finalizer::Error::RemoveFinalizer(e) => Err(Error::Kube(e)),
        // The helper's own complaints (an unnamed object, a malformed finalizer name) are ours.
        other => Err(Error::Internal(other.to_string())),
    }
}
