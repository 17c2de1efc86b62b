//! ReportFile: submit one report (or follow one the backend made), poll it to READY or FAILED,
//! and publish its download URL (or, for FUSION, the file) in a Secret it owns; with a
//! `storeRef`, copy it into the ReportStore (in the delivery pool, apart from the reconcile)
//! and publish the copy's URL instead.
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
mod deleting;
mod driver;
mod end;
mod poll;
mod ready;
mod renewal;
mod retention;
mod secret;

pub use copy::S3Buckets;

use std::sync::Arc;

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

pub async fn controller(
    ctl: Controller<ReportFile>,
    backends: Api<ReportBackend>,
    secrets: super::SecretEvents,
    ctx: Arc<Context>,
    concurrency: u16,
) {
    let index = ctx.index.clone();
    let ctl = ctl.with_config(kube::runtime::controller::Config::default().concurrency(concurrency));
    // A copy that ended, or a slot kept for a copy that waited, wakes its ReportFile.
    let ctl = match ctx.deliveries.wakes() {
        Some(wakes) => ctl.reconcile_on(wakes),
        None => ctl,
    };
    // A deleted or edited report Secret is written again.
    ctl.owns_shared_stream(secrets)
        // A backend that becomes Ready wakes the reports waiting for it.
        .watches(
            backends,
            watcher::Config::default(),
            ctx.shards.only_held(move |rb: ReportBackend| {
                let namespace = rb.namespace().unwrap_or_default();
                let waiting = index
                    .files_of_backend(&namespace, &rb.name_any())
                    .into_iter()
                    .filter(|rf| !is_finished(rf));
                waiting.map(|rf| ObjectRef::from_obj(&*rf)).collect::<Vec<_>>()
            }),
        )
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

async fn reconcile(rf: Arc<ReportFile>, ctx: Arc<Context>) -> Result<Action, Error> {
    guard::reconcile(rf.as_ref(), &ctx, async {
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
#[path = "driver_tests.rs"]
mod driver_tests;
