//! ReportStore: read its credentials, list under its prefix, report Ready with a reason a
//! person can act on. Re-probes when the spec or its credentials Secret changes, and every
//! minute, so that a store that went down shows on the store itself, not only on reports.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::api::Api;
use kube::core::PartialObjectMeta;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::EventType;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use tracing::info;

use super::context::Context;
use super::error::Error;
use super::guard::{self, error_policy};
use super::outcome::{Outcome, conclude};
use super::registry::read_secret;
use crate::api::{CONDITION_READY, ReportStore, ReportStoreStatus, find_condition};
use crate::backend::ClientOptions;
use crate::delivery::{Store, StoreError};

/// How often a Ready store is probed again.
const REPROBE_READY: Duration = Duration::from_secs(60);
/// How often a store that is not Ready is probed again.
const REPROBE_NOT_READY: Duration = Duration::from_secs(20);
/// The longest a probe may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(30);

pub async fn controller(
    ctl: Controller<ReportStore>,
    secrets: Api<PartialObjectMeta<Secret>>,
    ctx: Arc<Context>,
    concurrency: u16,
) {
    let stores = ctl.store();
    ctl.with_config(kube::runtime::controller::Config::default().concurrency(concurrency))
        // A credentials change wakes the stores that read that Secret.
        .watches(
            secrets,
            watcher::Config::default(),
            ctx.shards.only_held(move |secret: PartialObjectMeta<Secret>| {
                let (namespace, name) = (secret.namespace(), secret.name_any());
                stores
                    .state()
                    .into_iter()
                    .filter(|s| s.namespace() == namespace && s.spec.credentials_secret_ref.name == name)
                    .map(|s| ObjectRef::from_obj(&*s))
                    .collect::<Vec<_>>()
            }),
        )
        .shutdown_on_signal()
        .run(reconcile, error_policy, ctx)
        .for_each(|_| async {})
        .await;
}

async fn reconcile(rs: Arc<ReportStore>, ctx: Arc<Context>) -> Result<Action, Error> {
    guard::reconcile(rs.as_ref(), &ctx, reconcile_inner(&rs, &ctx)).await
}

async fn reconcile_inner(rs: &ReportStore, ctx: &Context) -> Result<Action, Error> {
    let namespace = rs
        .namespace()
        .ok_or_else(|| Error::Invalid("ReportStore without namespace".into()))?;
    let probe = async {
        let store = open_store(ctx, &namespace, rs).await?;
        tokio::time::timeout(PROBE_TIMEOUT, store.probe())
            .await
            .unwrap_or_else(|_| {
                Err(StoreError::Unreachable(format!(
                    "the store did not answer within {} s",
                    PROBE_TIMEOUT.as_secs()
                )))
            })
    };
    let old = rs.status.clone().unwrap_or_default();
    let previous = find_condition(&old.conditions, CONDITION_READY);
    let outcome = match probe.await {
        Ok(()) => {
            let message = format!("bucket {} answers and accepts the credentials", rs.spec.url);
            Outcome::ready("Reachable", message.clone())
                .requeue(REPROBE_READY)
                .noting(EventType::Normal, "Ready", message)
        }
        Err(e) => Outcome::waiting(e.reason(), e.to_string(), REPROBE_NOT_READY).warned(),
    }
    .once_per_reason(previous.map(|c| c.reason.as_str()));
    if let Some(cond) = outcome.ready.as_ref().filter(|_| outcome.event.is_some()) {
        info!(store = %rs.name_any(), namespace = %namespace, ready = cond.status, reason = cond.reason, "store checked");
    }
    let status = ReportStoreStatus {
        observed_generation: rs.metadata.generation,
        ..old.clone()
    };
    conclude(ctx, rs, rs.status.as_ref(), status, outcome, Utc::now()).await
}

/// The client of `rs`, from its spec and the data of its credentials Secret (read live: it is
/// needed once per copy or re-mint, not on every reconcile).
pub async fn open_store(ctx: &Context, namespace: &str, rs: &ReportStore) -> Result<Store, StoreError> {
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), namespace);
    let data = read_secret(&secrets, &rs.spec.credentials_secret_ref.name)
        .await
        .map_err(|n| match n.reason {
            "CredentialsMissing" => StoreError::CredentialsMissing(n.message),
            _ => StoreError::Unreachable(n.message),
        })?;
    let options = ClientOptions {
        policy: ctx.outbound.clone(),
        ..Default::default()
    };
    Store::open(&rs.spec, &data, &options)
}
