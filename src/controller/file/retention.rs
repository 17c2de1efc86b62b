//! A copy kept with retention Delete goes with its ReportFile: the finalizer, added before
//! the object exists, deletes it when the ReportFile is deleted.

use std::sync::Arc;

use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use tracing::{info, warn};

use super::cached_backend_type;
use super::copy::{extracts, report_store};
use super::deleting;
use super::renewal::COPY_RETRY_FIRST;
use crate::api::ReportFile;
use crate::api::reasons::EventReason;
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

/// Deletes the copy of `rf`, or says in an Event why it stays; an unreachable store keeps
/// the finalizer (`NotYet`).
async fn delete_copy(rf: &ReportFile, ctx: &Context) -> Result<Action, NotYet> {
    let namespace = rf.namespace().unwrap_or_default();
    let location = rf
        .status
        .as_ref()
        .and_then(|s| s.delivery.as_ref())
        .and_then(|d| d.location.clone());
    let (Some(store_ref), Some(location)) = (rf.spec.store_ref.as_ref(), location) else {
        return Ok(Action::await_change());
    };
    let deleted = match report_store(ctx, &namespace, &store_ref.name) {
        None => Err(StoreError::InvalidSpec(format!(
            "ReportStore {:?} no longer exists",
            store_ref.name
        ))),
        Some(rs) => match ctx.buckets.open(ctx, &namespace, &rs).await {
            Err(e) => Err(e),
            Ok(bucket) => match location.strip_prefix(&bucket.location("")) {
                // An unpacked archive: its files are alone under the report's key.
                Some(key) if extracts(&rs, cached_backend_type(ctx, rf)) => match key.rsplit_once('/') {
                    Some((stem, _)) => bucket.delete_under(stem).await,
                    None => bucket.delete(key).await,
                },
                Some(key) if !key.is_empty() => bucket.delete(key).await,
                _ => Err(StoreError::InvalidSpec(format!(
                    "{location} is not in the store's bucket"
                ))),
            },
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
