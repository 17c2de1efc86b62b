//! ReportGenerator: create the ReportFiles (ONETIME: one; PERIODIC: one per window; RDE and
//! CMP on-invoice: one per report the backend made) and roll their states up into status.
//!
//! A reconcile reads (the generator, its backend, its reports), asks [`decide`] what to do,
//! does it ([`act`], [`rde`]) and writes the [`Outcome`] down: decisions are in `decide`
//! alone, with table tests that need no cluster.

mod act;
mod dates;
mod decide;
mod files;
mod mirror;
mod names;
mod pacing;
mod periodic;
mod rde;
#[cfg(test)]
mod testing;

use std::sync::Arc;

use futures::StreamExt;
use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;

use super::context::Context;
use super::error::Error;
use super::guard::{self, error_policy};
use super::outcome::{Outcome, conclude};
use crate::api::{
    CONDITION_READY, ReportBackend, ReportFile, ReportGenerator, ReportGeneratorStatus, find_condition,
};
use decide::Start;

pub async fn controller(
    ctl: Controller<ReportGenerator>,
    files: impl futures::Stream<Item = Arc<ReportFile>> + Send + 'static,
    backends: Api<ReportBackend>,
    ctx: Arc<Context>,
    concurrency: u16,
) {
    let index = ctx.index.clone();
    ctl.with_config(kube::runtime::controller::Config::default().concurrency(concurrency))
        .owns_shared_stream(files)
        // A backend that changes (becomes Ready, say) wakes its generators.
        .watches(
            backends,
            watcher::Config::default(),
            ctx.shards.only_held(move |rb: ReportBackend| {
                let users = index.generators_of_backend(&rb.namespace().unwrap_or_default(), &rb.name_any());
                users
                    .iter()
                    .map(|g| ObjectRef::from_obj(&**g))
                    .collect::<Vec<_>>()
            }),
        )
        .shutdown_on_signal()
        .run(reconcile, error_policy, ctx)
        .for_each(|_| async {})
        .await;
}

async fn reconcile(g: Arc<ReportGenerator>, ctx: Arc<Context>) -> Result<Action, Error> {
    guard::reconcile(g.as_ref(), &ctx, reconcile_inner(g.clone(), &ctx)).await
}

async fn reconcile_inner(g: Arc<ReportGenerator>, ctx: &Context) -> Result<Action, Error> {
    // Not before the caches are filled; and an older status would plan its windows again (and
    // write older fields back).
    if let Some(wait) = ctx.hold_back(g.as_ref()).await {
        return Ok(wait);
    }
    if g.metadata.deletion_timestamp.is_some() {
        return rde::finalize(g, ctx).await;
    }
    let now = ctx.now();
    let old = g.status.as_ref();
    let mut status = ReportGeneratorStatus {
        observed_generation: g.metadata.generation,
        ..old.cloned().unwrap_or_default()
    };
    let owned = owned_files(ctx, &g);

    let outcome = match ctx
        .ready_backend(&g.namespace().unwrap_or_default(), &g.spec.backend_ref.name)
        .await
    {
        Err(not_ready) => Outcome::from(not_ready),
        Ok((rb, backend)) => match decide::start(&g, &rb, &backend.capabilities(), &status, now) {
            Err(outcome) => outcome,
            Ok(Start::PlatformScheduled) => {
                rde::run(ctx, &g, &rb, backend.as_ref(), &mut status, &owned).await?
            }
            Ok(Start::Onetime(files)) => act::onetime(ctx, &g, files, &mut status, now).await?,
            Ok(Start::Periodic(coverage)) => {
                act::periodic(ctx, &g, &owned, &mut status, now, coverage).await?
            }
            Ok(Start::Mirror(query)) => {
                let mirror = act::Mirror {
                    ctx,
                    g: &g,
                    rb: &rb,
                    backend: backend.as_ref(),
                    owned: &owned,
                    mirrored_now: &[],
                };
                mirror.and_prune(&query, &mut status).await?
            }
        },
    };

    // Files created in this pass are in the store only after the watch sees them.
    let latest = decide::roll_up(&owned_files(ctx, &g), &mut status);
    let previous = old
        .and_then(|s| find_condition(&s.conditions, CONDITION_READY))
        .map(|c| c.reason.as_str());
    let outcome = decide::conclude(&g, &status, latest.as_ref(), outcome, previous);
    conclude(ctx, g.as_ref(), old, status, outcome, now).await
}

/// The ReportFiles this generator controls.
fn owned_files(ctx: &Context, g: &ReportGenerator) -> Vec<Arc<ReportFile>> {
    g.uid()
        .map(|uid| ctx.index.files_of_owner(&uid))
        .unwrap_or_default()
}

#[cfg(test)]
#[path = "driver_tests.rs"]
mod driver_tests;
