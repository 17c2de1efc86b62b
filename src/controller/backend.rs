//! ReportBackend: read the credentials, probe the API, report Ready with a reason a person
//! can act on. Re-probes when the spec or a referenced Secret changes, and periodically.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use futures::StreamExt;
use kube::ResourceExt;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::EventType;
use kube::runtime::reflector::ObjectRef;
use tracing::info;

use super::SecretEvents;
use super::context::Context;
use super::error::Error;
use super::guard::{self, error_policy};
use super::outcome::{Outcome, conclude};
use super::registry::NotReady;
use crate::api::reasons::{BackendReady, EventReason};
use crate::api::{CONDITION_READY, ReportBackend, ReportBackendStatus, find_condition};

/// How often a Ready backend is probed again, so that revoked credentials show up.
const REPROBE_READY: Duration = Duration::from_secs(300);
/// How soon a backend that is not Ready is probed again at first; the wait grows with the
/// time it has been not Ready, up to [`REPROBE_NOT_READY_MAX`], so that a backend left broken
/// costs little.
const REPROBE_NOT_READY: Duration = Duration::from_secs(30);
const REPROBE_NOT_READY_MAX: Duration = Duration::from_secs(300);
/// The longest a probe may take, retries included: probes of all namespaces share the
/// controller's reconcile slots, and a backend that drips its answer must not hold one.
const PROBE_TIMEOUT: Duration = Duration::from_secs(30);

/// The wait before probing a backend that has not been Ready for `not_ready_for`: a quarter
/// of that time, within [`REPROBE_NOT_READY`]..=[`REPROBE_NOT_READY_MAX`].
fn reprobe_not_ready(not_ready_for: Duration) -> Duration {
    (not_ready_for / 4).clamp(REPROBE_NOT_READY, REPROBE_NOT_READY_MAX)
}

pub async fn controller(
    ctl: Controller<ReportBackend>,
    secrets: SecretEvents,
    ctx: Arc<Context>,
    concurrency: u16,
) {
    let index = ctx.index.clone();
    ctl.with_config(kube::runtime::controller::Config::default().concurrency(concurrency))
        // A Secret change wakes the backends that read it (credentials or CA).
        .watches_shared_stream(secrets, move |secret| {
            let readers = index.backends_reading(&secret.namespace().unwrap_or_default(), &secret.name_any());
            readers
                .iter()
                .map(|rb| ObjectRef::from_obj(&**rb))
                .collect::<Vec<_>>()
        })
        .shutdown_on_signal()
        .run(reconcile, error_policy, ctx)
        .for_each(|_| async {})
        .await;
}

async fn reconcile(rb: Arc<ReportBackend>, ctx: Arc<Context>) -> Result<Action, Error> {
    guard::reconcile(rb.as_ref(), &ctx, reconcile_inner(&rb, &ctx)).await
}

async fn reconcile_inner(rb: &ReportBackend, ctx: &Context) -> Result<Action, Error> {
    let namespace = rb
        .namespace()
        .ok_or_else(|| Error::Internal("ReportBackend without namespace".into()))?;
    let name = rb.name_any();
    let type_ = rb.spec.type_.as_str();
    if let Some(wait) = ctx.hold_back(rb).await {
        return Ok(wait);
    }
    ctx.registry.forget_deleted(&ctx.backends);
    let old = rb.status.clone().unwrap_or_default();
    let checked = find_condition(&old.conditions, CONDITION_READY)
        .filter(|c| c.observed_generation == rb.metadata.generation);
    if let Some(c) = checked
        && ctx.registry.probed_recently(rb)
    {
        return Ok(Action::requeue(if c.status == "True" {
            REPROBE_READY
        } else {
            reprobe_not_ready(not_ready_for(c))
        }));
    }
    let outcome: Result<(), NotReady> = match ctx.registry.client(rb).await {
        Ok(client) => {
            let probe = async {
                tokio::time::timeout(PROBE_TIMEOUT, client.probe())
                    .await
                    .unwrap_or_else(|_| {
                        Err(crate::backend::BackendError::Transient {
                            message: format!(
                                "the API did not answer the check within {} s",
                                PROBE_TIMEOUT.as_secs()
                            ),
                            retry_after: None,
                        })
                    })
            };
            ctx.metrics
                .call(type_, "probe", probe)
                .await
                .map_err(NotReady::from)
        }
        Err(not_ready) => Err(not_ready),
    };
    ctx.registry.probed(rb);
    let previous = find_condition(&old.conditions, CONDITION_READY);
    let outcome = match outcome {
        Ok(()) => {
            let message = format!(
                "{type_} API at {} accepted the credentials",
                crate::backend::redact_url(&rb.spec.url)
            );
            Outcome::ready(BackendReady::Authenticated, message.clone())
                .requeue(REPROBE_READY)
                .noting(EventType::Normal, EventReason::Ready, message)
        }
        Err(n) => {
            let broken_for = previous
                .filter(|c| c.status == "False")
                .map(not_ready_for)
                .unwrap_or_default();
            Outcome::waiting(n.reason, n.message, reprobe_not_ready(broken_for)).warned()
        }
    }
    .once_per_reason(previous.map(|c| c.reason.as_str()));
    if let Some(cond) = outcome.ready.as_ref().filter(|_| outcome.event.is_some()) {
        info!(backend = %name, namespace = %namespace, ready = cond.status, reason = %cond.reason, "backend checked");
    }
    let status = ReportBackendStatus {
        observed_generation: rb.metadata.generation,
        ..old.clone()
    };
    conclude(ctx, rb, rb.status.as_ref(), status, outcome, Utc::now()).await
}

/// How long the Ready condition `c` has had its status.
fn not_ready_for(c: &k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition) -> Duration {
    (Utc::now() - super::conditions::from_k8s_time(&c.last_transition_time))
        .to_std()
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_backend_left_broken_is_probed_less_and_less_often() {
        let table = [(0, 30), (60, 30), (200, 50), (1200, 300), (86_400, 300)];
        for (broken_s, want_s) in table {
            assert_eq!(
                reprobe_not_ready(Duration::from_secs(broken_s)),
                Duration::from_secs(want_s),
                "broken {broken_s} s"
            );
        }
    }
}
