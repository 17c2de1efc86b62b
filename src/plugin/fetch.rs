//! Reading, annotating and watching the objects the commands work on.

use std::time::Duration;

use futures::TryStreamExt;
use k8s_openapi::api::core::v1::Event;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Resource, ResourceExt};
use serde::de::DeserializeOwned;

use super::{Ctx, PluginError};

/// How many Events `status` shows.
pub const EVENTS_SHOWN: usize = 5;

/// The object `name` of kind `K`, or NotFound.
pub async fn get<K>(ctx: &Ctx, kind: &'static str, name: &str) -> Result<K, PluginError>
where
    K: Resource<Scope = kube::core::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug,
{
    let api: Api<K> = Api::namespaced(ctx.client.clone(), &ctx.namespace);
    api.get_opt(name)
        .await
        .map_err(PluginError::kube(format!("reading {kind} {name}")))?
        .ok_or_else(|| PluginError::NotFound {
            kind,
            name: name.to_string(),
            namespace: ctx.namespace.clone(),
        })
}

/// Sets `annotation` to `value` with a merge patch, which touches nothing else (GitOps tools
/// that own the object's spec do not see a conflict).
pub async fn annotate<K>(
    ctx: &Ctx,
    kind: &'static str,
    name: &str,
    annotation: &str,
    value: &str,
) -> Result<(), PluginError>
where
    K: Resource<Scope = kube::core::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug,
{
    let api: Api<K> = Api::namespaced(ctx.client.clone(), &ctx.namespace);
    let patch = serde_json::json!({"metadata": {"annotations": {annotation: value}}});
    match api
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Err(PluginError::NotFound {
            kind,
            name: name.to_string(),
            namespace: ctx.namespace.clone(),
        }),
        Err(e) => Err(PluginError::Kube {
            what: format!("annotating {kind} {name}"),
            source: e,
        }),
    }
}

/// Watches `name` until `done` returns `Some` or `deadline` passes; `waiting` names what is
/// awaited for the timeout message, and `why_not` adds the object's own explanation to it.
pub async fn wait_until<K, T>(
    ctx: &Ctx,
    name: &str,
    deadline: Duration,
    waiting: &str,
    mut done: impl FnMut(&K) -> Option<T>,
    why_not: impl Fn(&K) -> Option<String>,
) -> Result<T, PluginError>
where
    K: Resource<Scope = kube::core::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug
        + Send
        + 'static,
{
    let api: Api<K> = Api::namespaced(ctx.client.clone(), &ctx.namespace);
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let mut last: Option<K> = None;
    let watch = async {
        let mut objects = std::pin::pin!(watcher(api, config).applied_objects());
        loop {
            match objects.try_next().await {
                Ok(Some(obj)) => {
                    if let Some(v) = done(&obj) {
                        return Ok(v);
                    }
                    last = Some(obj);
                }
                Ok(None) => {
                    return Err(PluginError::Timeout(format!(
                        "the watch of {name} ended while waiting for {waiting}"
                    )));
                }
                // The watcher re-lists after an error; a persistent one (RBAC) shows as a timeout
                // with the error named.
                Err(e) => tracing::debug!(error = %e, "watch error"),
            }
        }
    };
    match tokio::time::timeout(deadline, watch).await {
        Ok(result) => result,
        Err(_) => {
            let why = last
                .as_ref()
                .and_then(&why_not)
                .map(|w| format!(" ({w})"))
                .unwrap_or_default();
            Err(PluginError::Timeout(format!(
                "timed out after {}s waiting for {waiting}{why}",
                deadline.as_secs()
            )))
        }
    }
}

/// The newest Events about `obj`, oldest first, at most [`EVENTS_SHOWN`].
pub async fn events_of<K: Resource<DynamicType = ()>>(ctx: &Ctx, obj: &K) -> Result<Vec<Event>, PluginError> {
    let api: Api<Event> = Api::namespaced(ctx.client.clone(), &ctx.namespace);
    let mut fields = format!(
        "involvedObject.kind={},involvedObject.name={}",
        K::kind(&()),
        obj.name_any()
    );
    if let Some(uid) = obj.uid() {
        fields.push_str(&format!(",involvedObject.uid={uid}"));
    }
    let mut events = api
        .list(&ListParams::default().fields(&fields))
        .await
        .map_err(PluginError::kube("listing Events"))?
        .items;
    events.sort_by_key(event_time);
    let skip = events.len().saturating_sub(EVENTS_SHOWN);
    Ok(events.split_off(skip))
}

/// When an Event last happened: events.k8s.io writers (the operator's recorder) set
/// `eventTime` and `series`; core/v1 writers set `lastTimestamp`.
pub fn event_time(e: &Event) -> Option<chrono::DateTime<chrono::Utc>> {
    e.series
        .as_ref()
        .and_then(|s| s.last_observed_time.as_ref().map(|t| t.0))
        .or_else(|| e.last_timestamp.as_ref().map(|t| t.0))
        .or_else(|| e.event_time.as_ref().map(|t| t.0))
        .or_else(|| e.metadata.creation_timestamp.as_ref().map(|t| t.0))
        .map(|t| {
            chrono::DateTime::<chrono::Utc>::from_timestamp(
                t.as_second(),
                t.subsec_nanosecond().unsigned_abs(),
            )
            .unwrap_or_default()
        })
}
