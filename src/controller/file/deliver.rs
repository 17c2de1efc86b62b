//! READY reports with a `storeRef`: the one copy into the ReportStore, the copy's presigned
//! URL in the Secret (re-minted before it expires, without calling the backend), and, where
//! the store's retention says Delete, the object's removal with the ReportFile (finalizer).
//!
//! The Secret keeps the backend's download until the copy is made, so a store that is down
//! costs nothing but the `Delivered` condition: the copy is retried with backoff, and the
//! object key comes from the immutable spec, so every attempt writes the same object.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use futures::StreamExt;
use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::reflector::ObjectRef;
use tracing::{debug, info, warn};

use super::decide;
use super::secret::{FileFacts, Observed, Written, add_delivery, build_secret};
use super::{Reconciler, cached_backend_type};
use crate::api::{
    CONDITION_DELIVERED, ConnectArchive, Delivery, ReportFile, ReportStore, Retention, find_condition,
};
use crate::backend::{Download, FileStream, ReportRequest};
use crate::controller::conditions::{Cond, set_condition};
use crate::controller::context::Context;
use crate::controller::error::Error;
use crate::controller::finalizers::{self, NotYet};
use crate::controller::outcome::{Halt, Outcome};
use crate::controller::store::open_store;
use crate::delivery::{KeyInputs, Store, StoreError, object_key};

/// On a ReportFile whose object is deleted with it (retention Delete).
pub const FINALIZER: &str = crate::api::FINALIZER_DELIVERY;
/// First retry of a failed copy; doubled per failure up to [`RETRY_MAX`].
const RETRY_FIRST: Duration = Duration::from_secs(5);
const RETRY_MAX: Duration = Duration::from_secs(300);
/// A presigned URL is re-minted when less than this part of its lifetime is left (at most an
/// hour before it expires).
const REMINT_FRACTION: u32 = 4;
const REMINT_MAX_MARGIN: Duration = Duration::from_secs(3600);

/// What a READY report's copy needs now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Not copied yet.
    Copy,
    /// Copied; the Secret needs a fresh presigned URL.
    Remint { why: &'static str },
    /// Copied and the URL is fresh: look again after this long.
    Keep { requeue: Duration },
}

/// Where a copy reads the report from.
enum Source {
    /// The backend's download URL, fetched by the store's client.
    Url(String),
    /// The file as the backend sends it.
    Stream(FileStream),
}

/// Whether the report's copy was made (a copy without checksum is no copy).
pub fn is_delivered(delivery: Option<&Delivery>) -> bool {
    delivery.is_some_and(|d| d.sha256.is_some() && d.delivered_time.is_some())
}

/// Decides what the copy of a READY report needs, from its `delivery` status: a copy
/// without checksum is no copy; a URL is re-minted on request, when the Secret must be
/// written again (missing, or ours again after a conflict), and before it expires.
pub fn plan(
    delivery: Option<&Delivery>,
    refresh_wanted: bool,
    rewrite_secret: bool,
    lifetime: Duration,
    now: DateTime<Utc>,
) -> Step {
    let Some(d) = delivery.filter(|d| is_delivered(Some(d))) else {
        return Step::Copy;
    };
    if refresh_wanted {
        return Step::Remint {
            why: "on the refresh-url annotation",
        };
    }
    if rewrite_secret {
        return Step::Remint {
            why: "because the Secret had to be written again",
        };
    }
    let margin = (lifetime / REMINT_FRACTION).min(REMINT_MAX_MARGIN);
    let left = d
        .url_expires_at
        .and_then(|e| e.signed_duration_since(now).to_std().ok())
        .unwrap_or_default();
    if left <= margin {
        return Step::Remint {
            why: "before the presigned URL expired",
        };
    }
    Step::Keep {
        requeue: left - margin,
    }
}

/// The wait before the next copy after `failures` failures in a row.
pub fn retry_after(failures: i32) -> Duration {
    let doublings = u32::try_from(failures.saturating_sub(1)).unwrap_or(0).min(16);
    RETRY_FIRST.saturating_mul(1 << doublings).min(RETRY_MAX)
}

/// The ReportStore `name` in `namespace`, from the cache.
fn report_store(ctx: &Context, namespace: &str, name: &str) -> Option<Arc<ReportStore>> {
    ctx.stores.get(&ObjectRef::new(name).within(namespace))
}

/// Whether a report of backend `type_` is unpacked into the store `rs` (CONNECT, Extract).
fn extracts(rs: &ReportStore, type_: &str) -> bool {
    rs.spec.connect_archive() == ConnectArchive::Extract && type_ == "CONNECT"
}

/// The object key of `rf` in `store` (`rs`'s template).
fn key_of(
    rf: &ReportFile,
    rs: &ReportStore,
    store: &Store,
    file_name: Option<&str>,
) -> Result<String, StoreError> {
    let parameters = rf.spec.parameters.as_ref();
    let name = rf.name_any();
    let inputs = KeyInputs {
        namespace: rf.metadata.namespace.as_deref().unwrap_or_default(),
        report_file: &name,
        generator: rf.spec.generator_ref.as_ref().map(|g| g.name.as_str()),
        start: parameters.and_then(|p| p.start_date),
        end: parameters.and_then(|p| p.end_date),
        organization: rf.spec.organization.as_deref(),
        format: rf.spec.format,
        file_name,
    };
    object_key(store.prefix(), rs.spec.path_template(), &inputs).map_err(StoreError::InvalidSpec)
}

impl Reconciler<'_> {
    /// A READY report with a `storeRef`, its Secret `seen` (not someone else's): copies it or
    /// keeps the copy's URL fresh. `Err(retry)` when that failed (the `Delivered` condition
    /// says why): the caller keeps the backend's download in shape meanwhile.
    pub(super) async fn deliver(
        &mut self,
        seen: &Observed,
        store_name: &str,
    ) -> Result<Result<Outcome, Duration>, Halt> {
        let refresh_wanted =
            self.facts.refresh.is_some() && self.facts.refresh != self.status.last_url_refresh.as_deref();
        let after_conflict = find_condition(&self.status.conditions, crate::api::CONDITION_READY)
            .is_some_and(|c| c.reason == "SecretConflict");
        let rewrite = *seen == Observed::Missing || after_conflict;
        let rs = match report_store(self.ctx, &self.namespace, store_name) {
            Some(rs) => rs,
            None => {
                let e = StoreError::InvalidSpec(format!(
                    "ReportStore {store_name:?} does not exist in namespace {:?}",
                    self.namespace
                ));
                return Ok(Err(self.delivery_failed("StoreNotFound", &e).await));
            }
        };
        let lifetime = rs.spec.presigned_lifetime();
        let step = plan(
            self.status.delivery.as_ref(),
            refresh_wanted,
            rewrite,
            lifetime,
            self.now,
        );
        debug!(report = %self.name, ?step, "the copy in the store");
        if let Step::Keep { requeue } = step {
            return Ok(Ok(Outcome::working(Some(requeue))));
        }
        let store = match open_store(self.ctx, &self.namespace, &rs).await {
            Ok(store) => store,
            Err(e) => return Ok(Err(self.delivery_failed(e.reason(), &e).await)),
        };
        let result = match step {
            Step::Remint { why } => self.remint(&store, seen, why).await?,
            _ => self.copy(&rs, &store, seen).await?,
        };
        Ok(match result {
            Ok(outcome) => Ok(outcome),
            Err(e) => Err(self.delivery_failed(e.reason(), &e).await),
        })
    }

    /// Copies the report into `store` and writes the Secret with the copy's URL.
    async fn copy(
        &mut self,
        rs: &ReportStore,
        store: &Store,
        seen: &Observed,
    ) -> Result<Result<Outcome, StoreError>, Halt> {
        let key = match key_of(self.rf, rs, store, self.status.file_name.as_deref()) {
            Ok(key) => key,
            Err(e) => return Ok(Err(e)),
        };
        if rs.spec.retention() == Retention::Delete {
            // Before the object exists, so that no copy outlives a ReportFile deleted meanwhile.
            finalizers::ensure(self.rf, &self.api, FINALIZER).await?;
        }
        let location = store.location(&key);
        let delivery = self.status.delivery.get_or_insert_with(Delivery::default);
        delivery.location = Some(location.clone());
        delivery.attempts = Some(delivery.attempts.unwrap_or(0).saturating_add(1));
        let started = Instant::now();
        let source = match self.source().await {
            Ok(source) => source,
            Err(e) => return Ok(Err(e)),
        };
        let type_ = self.backend_type();
        let copied = if extracts(rs, type_) {
            let stem = key.strip_suffix(".zip").unwrap_or(&key).to_string();
            let extracted = match source {
                Source::Url(url) => store.extract_from_url(&url, &stem).await,
                Source::Stream(body) => store.extract_stream(body, &stem).await,
            };
            extracted.and_then(|files| {
                let total = files
                    .iter()
                    .map(|f| f.uploaded.size)
                    .fold(0u64, u64::saturating_add);
                let report = files
                    .iter()
                    .find(|f| f.key.rsplit('/').next().is_some_and(|n| n.starts_with("report")));
                let main = report
                    .or(files.first())
                    .ok_or_else(|| StoreError::InvalidArchive("the archive holds no file".into()))?;
                Ok((main.key.clone(), main.uploaded.clone(), total))
            })
        } else {
            let uploaded = match source {
                Source::Url(url) => store.copy_from_url(&url, &key).await,
                Source::Stream(body) => store.copy_stream(body, &key).await,
            };
            uploaded.map(|u| (key.clone(), u.clone(), u.size))
        };
        let (key, uploaded, total) = match copied {
            Ok(c) => c,
            Err(e) => return Ok(Err(e)),
        };
        let location = store.location(&key);
        let size = i64::try_from(uploaded.size).unwrap_or(i64::MAX);
        self.ctx
            .metrics
            .delivery
            .delivered(type_, total, started.elapsed().as_secs_f64());
        info!(report = %self.name, namespace = %self.namespace, location = %location, size, "report copied into the store");
        let delivery = self.status.delivery.get_or_insert_with(Delivery::default);
        delivery.location = Some(location.clone());
        delivery.size = Some(size);
        delivery.sha256 = Some(uploaded.sha256.clone());
        delivery.delivered_time = Some(self.now);
        let (outcome, written) = match self.write_store_url(store, &key, seen).await? {
            Ok(done) => done,
            Err(e) => return Ok(Err(e)),
        };
        if !written {
            return Ok(Ok(outcome));
        }
        let message = format!("copied {size} bytes (sha256 {}) to {location}", uploaded.sha256);
        self.set_delivered(true, "Delivered", message.clone());
        Ok(Ok(outcome.noting(EventType::Normal, "Delivered", message)))
    }

    /// Writes a fresh presigned URL into the Secret.
    async fn remint(
        &mut self,
        store: &Store,
        seen: &Observed,
        why: &'static str,
    ) -> Result<Result<Outcome, StoreError>, Halt> {
        let Some(key) = self.delivered_key(store) else {
            return Ok(Err(StoreError::InvalidSpec(
                "the copy's location is not in the store's bucket".into(),
            )));
        };
        Ok(match self.write_store_url(store, &key, seen).await? {
            Ok((outcome, true)) => Ok(outcome.noting(
                EventType::Normal,
                "UrlRefreshed",
                format!("wrote a fresh presigned URL {why}"),
            )),
            Ok((outcome, false)) => Ok(outcome),
            Err(e) => Err(e),
        })
    }

    /// Presigns `key` and writes the Secret with it; `false` when the Secret name is someone
    /// else's (the outcome then says so).
    async fn write_store_url(
        &mut self,
        store: &Store,
        key: &str,
        seen: &Observed,
    ) -> Result<Result<(Outcome, bool), StoreError>, Halt> {
        let (url, expires) = match store.presign(key, self.now).await {
            Ok(signed) => signed,
            Err(e) => return Ok(Err(e)),
        };
        let d = self.status.delivery.clone().unwrap_or_default();
        let generate_date = self.status.generate_date.unwrap_or(self.now);
        let download = Download::Url {
            url,
            expires_at: Some(expires),
        };
        let mut facts = cached_backend_type(self.ctx, self.rf)
            .map(|t| FileFacts::of(t, self.rf.spec.format, generate_date))
            .unwrap_or_default();
        // An unpacked CONNECT archive's object is the report itself, not the ZIP.
        if !key.ends_with(".zip") {
            facts.archive = None;
        }
        let mut secret = build_secret(
            self.rf,
            &download,
            generate_date,
            self.status.file_name.as_deref(),
            &facts,
        )
        .map_err(Error::Invalid)?;
        let location = store.location(key);
        add_delivery(
            &mut secret,
            &location,
            d.size.unwrap_or_default(),
            d.sha256.as_deref().unwrap_or_default(),
        );
        if let Written::Foreign { why } = self.report_secrets().write(&secret, seen.clone()).await? {
            let next = decide::secret_conflict(&mut self.status, &self.facts, &why);
            return Ok(Ok((self.end(next)?, false)));
        }
        if let Some(d) = self.status.delivery.as_mut() {
            d.url_expires_at = Some(expires);
        }
        decide::store_url_written(&mut self.status, &self.facts, &location, expires);
        let lifetime = store.lifetime();
        let requeue = match plan(self.status.delivery.as_ref(), false, false, lifetime, self.now) {
            Step::Keep { requeue } => requeue,
            _ => lifetime / REMINT_FRACTION,
        };
        Ok(Ok((Outcome::working(Some(requeue)), true)))
    }

    /// The key of the recorded copy, if it is in `store`'s bucket.
    fn delivered_key(&self, store: &Store) -> Option<String> {
        let location = self.status.delivery.as_ref()?.location.as_deref()?;
        let bucket_root = store.location("");
        location
            .strip_prefix(&bucket_root)
            .filter(|k| !k.is_empty())
            .map(str::to_string)
    }

    /// Where the copy reads the report from, asked of the backend now: a URL it gave
    /// earlier may have expired (SUPPLIER: after 60 seconds), and a file that is the answer
    /// itself (FUSION) is asked for again and streamed.
    async fn source(&self) -> Result<Source, StoreError> {
        let (rb, backend) = self
            .ctx
            .ready_backend(&self.namespace, &self.rf.spec.backend_ref.name)
            .await
            .map_err(|n| StoreError::Source(n.message))?;
        let req = ReportRequest::for_report_file(&self.namespace, &self.name, &self.rf.spec);
        let type_ = rb.spec.type_.as_str();
        if backend.capabilities().file_in_answer {
            return self
                .ctx
                .metrics
                .call(type_, "download", backend.stream(&req))
                .await
                .map(Source::Stream)
                .map_err(StoreError::source);
        }
        let id = decide::known_id(&self.status, &self.facts)
            .ok_or_else(|| StoreError::Source("the report has no backend id".into()))?;
        let report = self
            .ctx
            .metrics
            .call(type_, "get", backend.get(&id, &req))
            .await
            .map_err(StoreError::source)?;
        match self
            .ctx
            .metrics
            .call(type_, "download", backend.download(&report, &req))
            .await
            .map_err(StoreError::source)?
        {
            Download::Url { url, .. } => Ok(Source::Url(url)),
            Download::Inline { content, .. } => Ok(Source::Stream(
                futures::stream::iter([Ok(content.into())]).boxed(),
            )),
            Download::Streamed { .. } => Err(StoreError::Source(format!(
                "{type_} gave no stream of a file too large to hold"
            ))),
        }
    }

    /// Records a failed copy (or re-mint): the `Delivered` condition, a Warning Event once
    /// per reason, the metric; returns the wait before the next try.
    async fn delivery_failed(&mut self, reason: &'static str, e: &StoreError) -> Duration {
        self.ctx.metrics.delivery.failed(e.label());
        let previous = find_condition(&self.status.conditions, CONDITION_DELIVERED)
            .map(|c| (c.status.clone(), c.reason.clone()));
        let delivery = self.status.delivery.get_or_insert_with(Delivery::default);
        let failures = delivery.attempts.unwrap_or(1).max(1);
        let message = format!("{e}; retried with backoff, the Secret keeps the backend's download meanwhile");
        self.set_delivered(false, reason, message.clone());
        if previous != Some(("False".into(), reason.into())) {
            warn!(report = %self.name, namespace = %self.namespace, reason, error = %e, "copy into the store failed");
            self.ctx
                .event(self.rf, EventType::Warning, "DeliveryFailed", message)
                .await;
        }
        retry_after(failures)
    }

    fn set_delivered(&mut self, ok: bool, reason: &str, message: String) {
        set_condition(
            &mut self.status.conditions,
            Cond::new(CONDITION_DELIVERED, ok, reason, message),
            self.facts.generation,
            self.now,
        );
    }
}

/// A ReportFile being deleted that carries [`FINALIZER`]: deletes its object (retention
/// Delete), then lets it go. A store that is gone or lost its credentials cannot be cleaned
/// and would hold the ReportFile (and its namespace) for ever: the object is left, with a
/// Warning. An unreachable store is retried.
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
    let outcome = match report_store(ctx, &namespace, &store_ref.name) {
        None => Err(StoreError::InvalidSpec(format!(
            "ReportStore {:?} no longer exists",
            store_ref.name
        ))),
        Some(rs) => match open_store(ctx, &namespace, &rs).await {
            Err(e) => Err(e),
            Ok(store) => match location.strip_prefix(&store.location("")) {
                // An unpacked archive: its files are alone under the report's key.
                Some(key) if extracts(&rs, cached_backend_type(ctx, rf).map_or("", |t| t.as_str())) => {
                    match key.rsplit_once('/') {
                        Some((stem, _)) => store.delete_under(stem).await,
                        None => store.delete(key).await,
                    }
                }
                Some(key) if !key.is_empty() => store.delete(key).await,
                _ => Err(StoreError::InvalidSpec(format!(
                    "{location} is not in the store's bucket"
                ))),
            },
        },
    };
    match outcome {
        Ok(()) => {
            info!(report = %rf.name_any(), namespace = %namespace, location = %location, "deleted the report's copy with it")
        }
        Err(e @ StoreError::Unreachable(_)) => {
            ctx.metrics.delivery.failed(e.label());
            warn!(report = %rf.name_any(), error = %e, "cannot delete the report's copy yet");
            return Err(NotYet(RETRY_FIRST));
        }
        Err(e) => {
            ctx.metrics.delivery.failed(e.label());
            let message = format!("the copy {location} was not deleted: {e}");
            ctx.event(rf, EventType::Warning, "DeliveryCleanupSkipped", message)
                .await;
        }
    }
    Ok(Action::await_change())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).expect("time").with_timezone(&Utc)
    }

    fn delivered(expires: &str) -> Delivery {
        Delivery {
            location: Some("s3://b/k".into()),
            size: Some(3),
            sha256: Some("ab".into()),
            delivered_time: Some(t("2026-01-01T00:00:00Z")),
            attempts: Some(1),
            url_expires_at: Some(t(expires)),
        }
    }

    #[test]
    fn what_a_ready_reports_copy_needs() {
        let now = t("2026-01-01T12:00:00Z");
        let day = Duration::from_secs(86_400);
        let started = Delivery {
            location: Some("s3://b/k".into()),
            attempts: Some(2),
            ..Default::default()
        };
        // (what, delivery status, refresh asked, Secret to rewrite, lifetime, step)
        type Row = (&'static str, Option<Delivery>, bool, bool, Duration, Step);
        let rows: Vec<Row> = vec![
            ("never tried", None, false, false, day, Step::Copy),
            ("tried, not finished", Some(started), true, false, day, Step::Copy),
            (
                "fresh",
                Some(delivered("2026-01-02T11:00:00Z")),
                false,
                false,
                day,
                Step::Keep {
                    requeue: Duration::from_secs(22 * 3600),
                },
            ),
            (
                "asked for",
                Some(delivered("2026-01-02T11:00:00Z")),
                true,
                false,
                day,
                Step::Remint {
                    why: "on the refresh-url annotation",
                },
            ),
            (
                "Secret gone",
                Some(delivered("2026-01-02T11:00:00Z")),
                false,
                true,
                day,
                Step::Remint {
                    why: "because the Secret had to be written again",
                },
            ),
            (
                "within the margin",
                Some(delivered("2026-01-01T12:30:00Z")),
                false,
                false,
                day,
                Step::Remint {
                    why: "before the presigned URL expired",
                },
            ),
            (
                "expired",
                Some(delivered("2026-01-01T11:00:00Z")),
                false,
                false,
                day,
                Step::Remint {
                    why: "before the presigned URL expired",
                },
            ),
            // A short lifetime: re-minted in its last quarter.
            (
                "short, fresh",
                Some(delivered("2026-01-01T12:01:00Z")),
                false,
                false,
                Duration::from_secs(80),
                Step::Keep {
                    requeue: Duration::from_secs(40),
                },
            ),
        ];
        for (what, d, refresh, rewrite, lifetime, want) in rows {
            assert_eq!(plan(d.as_ref(), refresh, rewrite, lifetime, now), want, "{what}");
        }
    }

    #[test]
    fn failed_copies_back_off() {
        let secs = |n| Duration::from_secs(n);
        assert_eq!(
            [0, 1, 2, 3, 7, 100, i32::MAX].map(retry_after),
            [
                secs(5),
                secs(5),
                secs(10),
                secs(20),
                secs(300),
                secs(300),
                secs(300)
            ]
        );
    }
}
