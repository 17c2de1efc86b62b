//! What every reconcile goes through, whatever its kind: a panic stays inside the one object
//! that caused it, a failing object backs off on its own, and a Kubernetes API error that
//! retrying cannot fix is written into the object's Ready condition and an Event.
//!
//! One operator serves every namespace: without this, one object that trips a bug would end
//! the process (and every namespace's reports) at each restart, and one object the API server
//! refuses would be retried every few seconds for ever without a word to its owner.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use futures::FutureExt;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::{Api, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tracing::{Instrument, error, info_span, warn};

use super::conditions::{Cond, set_condition};
use super::context::Context;
use super::error::Error;
use super::seats;
use crate::api::reasons::Trouble;
use crate::api::{
    ReportBackend, ReportBackendStatus, ReportFile, ReportFileStatus, ReportGenerator, ReportGeneratorStatus,
    ReportStore, ReportStoreStatus,
};

/// A kind whose status carries a Ready condition.
pub trait HasReady:
    Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>
    + Clone
    + DeserializeOwned
    + std::fmt::Debug
    + Send
    + Sync
    + 'static
{
    type Status: Serialize + Clone + Default + PartialEq + Send;
    /// The kind's name in logs and metrics.
    const KIND: &'static str;
    fn status(&self) -> Option<&Self::Status>;
    fn conditions(status: &mut Self::Status) -> &mut Vec<Condition>;
}

/// The four kinds keep their conditions in `status.conditions`.
macro_rules! has_ready {
    ($($kind:ident => $status:ident),* $(,)?) => {$(
        impl HasReady for $kind {
            type Status = $status;
            const KIND: &'static str = stringify!($kind);
            fn status(&self) -> Option<&Self::Status> {
                self.status.as_ref()
            }
            fn conditions(status: &mut Self::Status) -> &mut Vec<Condition> {
                &mut status.conditions
            }
        }
    )*};
}

has_ready!(ReportBackend => ReportBackendStatus, ReportGenerator => ReportGeneratorStatus, ReportFile => ReportFileStatus, ReportStore => ReportStoreStatus);

/// Runs one reconcile of `obj`: times and counts it, turns a panic into [`Error::Panicked`],
/// forgets the object's backoff when it succeeds and reports a permanent failure on the
/// object itself. With sharding, only while this replica holds the object's shard: otherwise
/// it returns at once, and is dropped where it stands when the shard goes (then the
/// replica that takes the shard over queues the object again).
pub async fn reconcile<K, Fut>(obj: &K, ctx: &Context, fut: Fut) -> Result<Action, Error>
where
    K: HasReady,
    Fut: Future<Output = Result<Action, Error>>,
{
    reconcile_within(obj, ctx, RECONCILE_TIMEOUT, fut).await
}

/// [`reconcile`] with another limit than [`RECONCILE_TIMEOUT`] (a copy into a ReportStore).
pub async fn reconcile_within<K, Fut>(
    obj: &K,
    ctx: &Context,
    limit: Duration,
    fut: Fut,
) -> Result<Action, Error>
where
    K: HasReady,
    Fut: Future<Output = Result<Action, Error>>,
{
    let namespace = obj.namespace().unwrap_or_default();
    let Some(claim) = ctx.shards.claim(&namespace) else {
        return Ok(Action::await_change());
    };
    // Not more than the namespace's share of this kind's workers: the object comes back soon.
    let Some(_seat) = ctx.seats.take(K::KIND, &namespace) else {
        ctx.metrics.deferred(K::KIND);
        return Ok(Action::requeue(seats::RETRY));
    };
    let held = claim.while_held(async {
        let start = Instant::now();
        // Every line logged while this object is reconciled names it.
        let span = info_span!("reconcile", kind = K::KIND, namespace = obj.namespace().as_deref().unwrap_or_default(), name = %obj.name_any());
        let result = catch(fut, limit).instrument(span).await;
        ctx.metrics.reconciled(K::KIND, result.is_ok(), start.elapsed());
        match &result {
            Ok(_) => ctx.backoff.succeeded(obj),
            Err(e) => {
                if let Error::Panicked(message) = e {
                    error!(kind = K::KIND, namespace = ?obj.namespace(), name = %obj.name_any(), panic = %message, "reconcile panicked");
                }
                if let Some((reason, message)) = e.condition() {
                    report(obj, ctx, reason, message).await;
                }
            }
        }
        result
    });
    held.await.unwrap_or(Ok(Action::await_change()))
}

/// The longest one reconcile may take. Reconciles of a kind share a fixed number of slots, so
/// an object whose backend drips its answers must not hold one for long; stopping a reconcile
/// half-way is as safe as a crash there (the create-once marks are made for that).
pub const RECONCILE_TIMEOUT: Duration = Duration::from_secs(120);

/// The reconcile's result, with a panic turned into [`Error::Panicked`] and an overrun of
/// `limit` into [`Error::TimedOut`].
async fn catch<Fut: Future<Output = Result<Action, Error>>>(
    fut: Fut,
    limit: Duration,
) -> Result<Action, Error> {
    match tokio::time::timeout(limit, AssertUnwindSafe(fut).catch_unwind()).await {
        Ok(Ok(result)) => result,
        Ok(Err(payload)) => Err(Error::Panicked(panic_message(payload.as_ref()))),
        Err(_) => Err(Error::TimedOut(limit)),
    }
}

/// Writes Ready=False with `reason` into `obj`'s status and publishes a Warning Event, once
/// per change of reason or message. Best effort: the failure may be the API server refusing
/// status writes too, and the error is logged and retried with backoff anyway.
async fn report<K: HasReady>(obj: &K, ctx: &Context, reason: Trouble, message: String) {
    let Some(namespace) = obj.namespace() else { return };
    let api: Api<K> = Api::namespaced(ctx.client.clone(), &namespace);
    // The status as the API server has it now, not as the reconcile started from: the
    // reconcile may have recorded a backend id before it failed, and writing the older status
    // back would make the next one ask the backend again.
    let current = match api.get_status(&obj.name_any()).await {
        Ok(current) => current,
        Err(e) => {
            warn!(kind = K::KIND, namespace = %namespace, name = %obj.name_any(), error = %e, "could not read the status to record a failure");
            return;
        }
    };
    let old = current.status().cloned().unwrap_or_default();
    let mut status = old.clone();
    set_condition(
        K::conditions(&mut status),
        Cond::ready(false, reason, message.clone()),
        current.meta().generation,
        Utc::now(),
    );
    if status == old {
        return;
    }
    if let Err(e) = ctx.apply_status(&api, &current, &status).await {
        warn!(kind = K::KIND, namespace = %namespace, name = %obj.name_any(), error = %e, "could not record the failure in status");
    }
    ctx.event(obj, EventType::Warning, reason, message).await;
}

/// The text of a panic, for a condition message: panics carry a `&str` or a `String`.
fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    let text = payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "no message".into());
    text.chars().take(300).collect()
}

/// The requeue of a failed reconcile, from the object's [`super::backoff::Backoff`].
pub fn error_policy<K: HasReady>(obj: Arc<K>, err: &Error, ctx: Arc<Context>) -> Action {
    let delay = ctx.backoff.failed(obj.as_ref());
    warn!(
        kind = K::KIND,
        namespace = ?obj.namespace(),
        name = %obj.name_any(),
        error = %err,
        retry_in_s = delay.as_secs_f64(),
        "reconcile failed"
    );
    Action::requeue(delay)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panic_is_an_error_of_the_object_not_the_end_of_the_process() {
        let deadline: i64 = std::hint::black_box(i64::MAX);
        let result = catch(
            async move {
                let _ = chrono::Duration::seconds(deadline);
                Ok(Action::await_change())
            },
            RECONCILE_TIMEOUT,
        )
        .await;
        match result {
            Err(Error::Panicked(message)) => assert!(message.contains("out of bounds"), "{message}"),
            other => panic!("expected Panicked, got {other:?}"),
        }
        let fine = catch(async { Ok(Action::await_change()) }, RECONCILE_TIMEOUT).await;
        assert_eq!(fine.ok(), Some(Action::await_change()));
    }

    #[tokio::test(start_paused = true)]
    async fn a_reconcile_that_hangs_is_stopped() {
        let hung = catch(futures::future::pending(), Duration::from_secs(120)).await;
        assert!(matches!(hung, Err(Error::TimedOut(_))), "{hung:?}");
    }
}
