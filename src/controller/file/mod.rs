//! ReportFile: submit one report (or follow one the backend made), poll it to READY or FAILED,
//! and publish its download URL (or, for FUSION, the file) in a Secret it owns; with a
//! `storeRef`, copy it into the ReportStore and publish the copy's URL instead.
//!
//! Nothing is generated twice: before the backend is asked, `status.createPendingSince` is
//! written; the backend's id is written as soon as it is known. A reconcile that finds the mark
//! without an id (a crash, or a lost answer) looks the report up on the backend before it asks
//! again.
//!
//! ```text
//! mod (the controller, deletion)  → driver + ready (one Reconciler: up to READY; READY kept)
//!   → copy, retention             (the upload into a store; the copy's finalizer), cleanup
//!   → renewal                     (pure: READY, the copy states, the one URL renewal policy)
//!   → decide                      (pure: the state machine up to READY or FAILED)
//!   → end, poll, secret           (how a reconcile ends; poll intervals; the report Secret)
//! ```

mod cleanup;
mod copy;
mod decide;
mod driver;
mod end;
mod poll;
mod ready;
mod renewal;
mod retention;
mod secret;

pub use copy::S3Buckets;

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;

use self::driver::Reconciler;
use super::context::Context;
use super::error::Error;
use super::guard::{self, error_policy};
use crate::api::{FileState, ReportBackend, ReportFile};
use crate::backend::transfer::MAX_COPY_TIME;

pub async fn controller(
    ctl: Controller<ReportFile>,
    backends: Api<ReportBackend>,
    secrets: super::SecretEvents,
    ctx: Arc<Context>,
    concurrency: u16,
) {
    let index = ctx.index.clone();
    ctl.with_config(kube::runtime::controller::Config::default().concurrency(concurrency))
        // A deleted or edited report Secret is written again.
        .owns_shared_stream(secrets)
        // A backend that becomes Ready wakes the reports waiting for it.
        .watches(backends, watcher::Config::default(), move |rb| {
            let namespace = rb.namespace().unwrap_or_default();
            let waiting = index
                .files_of_backend(&namespace, &rb.name_any())
                .into_iter()
                .filter(|rf| !is_finished(rf));
            waiting.map(|rf| ObjectRef::from_obj(&*rf)).collect::<Vec<_>>()
        })
        .shutdown_on_signal()
        .run(reconcile, error_policy, ctx)
        .for_each(|_| async {})
        .await;
}

/// The type of `rf`'s backend, as the cache has it (`None` once the backend is gone).
fn cached_backend_type(ctx: &Context, rf: &ReportFile) -> Option<crate::api::BackendType> {
    let backend = ObjectRef::new(&rf.spec.backend_ref.name).within(&rf.namespace().unwrap_or_default());
    ctx.backends.get(&backend).map(|rb| rb.spec.type_)
}

fn is_finished(rf: &ReportFile) -> bool {
    rf.status
        .as_ref()
        .and_then(|s| s.status)
        .is_some_and(FileState::is_finished)
}

/// How long a reconcile of `rf` may take: a READY report not yet copied into its store gets
/// the copy's own limit on top (a large file's download and upload take their time).
fn reconcile_limit(rf: &ReportFile) -> Duration {
    let status = rf.status.as_ref();
    let ready = status.and_then(|s| s.status) == Some(FileState::Ready);
    let copying = rf.spec.store_ref.is_some()
        && ready
        && !renewal::is_delivered(status.and_then(|s| s.delivery.as_ref()));
    if copying {
        guard::RECONCILE_TIMEOUT + MAX_COPY_TIME
    } else {
        guard::RECONCILE_TIMEOUT
    }
}

async fn reconcile(rf: Arc<ReportFile>, ctx: Arc<Context>) -> Result<Action, Error> {
    guard::reconcile_within(rf.as_ref(), &ctx, reconcile_limit(&rf), async {
        // Not before the caches are filled; and an older copy would repeat what our last write
        // recorded (a FUSION report, which `get` generates again).
        if let Some(wait) = ctx.hold_back(rf.as_ref()).await {
            return Ok(wait);
        }
        if rf.metadata.deletion_timestamp.is_some() {
            // Each finalizer is removed by its own step; removing one changes the object and
            // wakes the reconcile that does the next.
            if rf.finalizers().iter().any(|f| f == retention::FINALIZER) {
                return retention::finalize(&rf, &ctx).await;
            }
            return cleanup::finalize(&rf, &ctx).await;
        }
        Reconciler::new(&rf, &ctx)?.run().await
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_ready_report_waiting_for_its_copy_may_take_the_copys_time() {
        let file = |store: bool, status: serde_json::Value| -> ReportFile {
            let mut doc = serde_json::json!({"apiVersion": "reporting.report-operator.io/v1alpha1", "kind": "ReportFile",
                "metadata": {"name": "r", "namespace": "n"},
                "spec": {"backendRef": {"name": "b"}, "name": "x", "eventType": "ONETIME", "format": "CSV"}, "status": status});
            if store {
                doc["spec"]["storeRef"] = serde_json::json!({"name": "bucket"});
            }
            serde_json::from_value(doc).expect("ReportFile")
        };
        let ready = serde_json::json!({"status": "READY"});
        let copied = serde_json::json!({"status": "READY", "delivery": {"sha256": "ab", "deliveredTime": "2026-01-01T00:00:00Z"}});
        let long = guard::RECONCILE_TIMEOUT + MAX_COPY_TIME;
        assert_eq!(reconcile_limit(&file(true, ready.clone())), long);
        assert_eq!(reconcile_limit(&file(true, copied)), guard::RECONCILE_TIMEOUT);
        assert_eq!(
            reconcile_limit(&file(true, serde_json::json!({"status": "IN_PROGRESS"}))),
            guard::RECONCILE_TIMEOUT
        );
        assert_eq!(reconcile_limit(&file(false, ready)), guard::RECONCILE_TIMEOUT);
    }
}

#[cfg(test)]
#[path = "driver_tests.rs"]
mod driver_tests;
