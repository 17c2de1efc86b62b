//! A copy kept with retention Delete goes with its ReportFile: the finalizer, added before
//! the object exists, deletes it when the ReportFile is deleted.

use std::sync::Arc;

use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use tracing::{info, warn};

use super::copy::report_store;
use super::deleting;
use super::renewal::COPY_RETRY_FIRST;
use crate::api::ReportFile;
use crate::api::reasons::EventReason;
use crate::controller::bucket::Bucket;
use crate::controller::context::Context;
use crate::controller::error::Error;
use crate::controller::finalizers::{self, NotYet};
use crate::delivery::StoreError;

/// On a ReportFile whose object is deleted with it (retention Delete).
pub const FINALIZER: &str = crate::api::FINALIZER_DELIVERY;

/// A ReportFile being deleted that carries [`FINALIZER`]: deletes its object (retention
/// Delete), then lets it go. A store that is gone or lost its credentials cannot be cleaned
/// and would hold the ReportFile (and its namespace) for ever: the object is left, with a
/// Warning. An unreachable store is retried, for the deletion grace ([`deleting`]).
pub async fn finalize(rf: &ReportFile, ctx: &Context) -> Result<Action, Error> {
    let api: Api<ReportFile> = Api::namespaced(ctx.client.clone(), &rf.namespace().unwrap_or_default());
    finalizers::run(Arc::new(rf.clone()), &api, FINALIZER, |rf| async move {
        delete_copy(&rf, ctx).await
    })
    .await
}

/// What retention Delete deletes: exactly the objects the copy recorded as written once its
/// upload completed. A copy that never completed wrote nothing of this ReportFile's (its key
/// may even name another file's object), and the store's `connectArchive` today says
/// nothing about how an older copy was stored, so nothing else is ever inferred.
pub fn written(rf: &ReportFile) -> Vec<String> {
    let Some(d) = rf.status.as_ref().and_then(|s| s.delivery.as_ref()) else {
        return Vec::new();
    };
    match (&d.objects[..], &d.location, d.delivered_time) {
        ([], Some(location), Some(_)) => vec![location.clone()],
        ([], _, _) => Vec::new(),
        (objects, _, _) => objects.to_vec(),
    }
}

/// Deletes the copy of `rf`, or says in an Event why it stays; an unreachable store keeps
/// the finalizer (`NotYet`).
async fn delete_copy(rf: &ReportFile, ctx: &Context) -> Result<Action, NotYet> {
    let namespace = rf.namespace().unwrap_or_default();
    let objects = written(rf);
    let (Some(store_ref), false) = (rf.spec.store_ref.as_ref(), objects.is_empty()) else {
        return Ok(Action::await_change());
    };
    let location = objects.join(", ");
    let deleted = match report_store(ctx, &namespace, &store_ref.name) {
        None => Err(StoreError::InvalidSpec(format!(
            "ReportStore {:?} no longer exists",
            store_ref.name
        ))),
        Some(rs) => match ctx.buckets.open(ctx, &namespace, &rs).await {
            Err(e) => Err(e),
            Ok(bucket) => delete_each(bucket.as_ref(), &objects).await,
        },
    };
    match deleted {
        Ok(()) => {
            info!(report = %rf.name_any(), namespace = %namespace, location = %location, "deleted the report's copy with it")
        }
        Err(e @ StoreError::Unreachable(_)) => {
            ctx.metrics.delivery.failed(e.label());
            warn!(report = %rf.name_any(), error = %e, "cannot delete the report's copy yet");
            let why = format!("the copy {location} cannot be deleted yet: {e}");
            let left = EventReason::DeliveryCleanupSkipped;
            return deleting::wait_or_leave(rf, ctx, FINALIZER, left, why, COPY_RETRY_FIRST).await;
        }
        Err(e) => {
            ctx.metrics.delivery.failed(e.label());
            let message = format!("the copy {location} was not deleted: {e}");
            ctx.event(
                rf,
                EventType::Warning,
                EventReason::DeliveryCleanupSkipped,
                message,
            )
            .await;
        }
    }
    Ok(Action::await_change())
}

/// Deletes each of `objects` (`s3://bucket/key`) from `bucket`; one outside it is refused.
async fn delete_each(bucket: &dyn Bucket, objects: &[String]) -> Result<(), StoreError> {
    let root = bucket.location("");
    for object in objects {
        match object.strip_prefix(&root) {
            Some(key) if !key.is_empty() => bucket.delete(key).await?,
            _ => {
                return Err(StoreError::InvalidSpec(format!(
                    "{object} is not in the store's bucket"
                )));
            }
        }
    }
    Ok(())
}
