//! A READY report's download kept in place: by its copy state ([`renewal::copy_state`]),
//! the backend's URL renewed, the copy into the ReportStore handed to the delivery pool and
//! its result recorded (the backend's download kept up meanwhile, and while it fails), or
//! the copy's presigned URL signed again. Each step asks [`renewal`] what to do and ends
//! with the [`End`] it gives.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::FutureExt;
use kube::runtime::events::EventType;
use tracing::{info, warn};

use super::cached_backend_type;
use super::copy::{self, Source};
use super::decide::{self, End, News};
use super::driver::{Halt, Reconciler};
use super::renewal::{self, CopyState, RenewWhy};
use super::retention;
use super::secret::{FileFacts, Observed, add_delivery, build_secret};
use crate::api::reasons::{Delivered, EventReason};
use crate::api::{BackendType, ReportStore, Retention};
use crate::backend::{Download, ReportRequest};
use crate::controller::bucket::{Bucket, Copied};
use crate::controller::delivery_pool::Start;
use crate::controller::error::Error;
use crate::controller::finalizers;
use crate::delivery::StoreError;

/// Why a copy or a re-mint stopped: the store failed (the report goes on without its copy
/// for now), the copy goes on in the delivery pool (or waits there, or for its retry), or
/// the reconcile ends.
enum CopyStop {
    Failed {
        reason: Delivered,
        error: StoreError,
    },
    /// Look again after this long, at the latest: the pool wakes the ReportFile when its
    /// copy ends or a slot is kept for it.
    Later(Duration),
    Halt(Halt),
}

/// How long a ReportFile whose copy runs or waits in the pool goes without a look, unless
/// the pool wakes it first.
const COPY_LOOK_AGAIN: Duration = Duration::from_secs(300);

impl From<StoreError> for CopyStop {
    fn from(error: StoreError) -> Self {
        CopyStop::Failed {
            reason: error.delivered_reason(),
            error,
        }
    }
}

impl From<Halt> for CopyStop {
    fn from(h: Halt) -> Self {
        CopyStop::Halt(h)
    }
}

impl From<Error> for CopyStop {
    fn from(e: Error) -> Self {
        CopyStop::Halt(Halt::Error(e))
    }
}

impl Reconciler<'_> {
    /// A READY report whose Secret was `seen`.
    pub(super) async fn keep(&mut self, seen: Observed) -> Result<End, Halt> {
        decide::secret_seen(&mut self.status, &self.facts, &seen)?;
        match renewal::copy_state(&self.status, &self.facts) {
            CopyState::NoStore => self.keep_backend_url(seen).await,
            CopyState::Copying => self.copy_or_keep_backend_url(seen).await,
            CopyState::Delivered => self.keep_presigned_url(seen).await,
        }
    }

    /// The backend's download: kept in the Secret, renewed on request or before it expires.
    async fn keep_backend_url(&mut self, seen: Observed) -> Result<End, Halt> {
        let why = renewal::backend_url(&mut self.status, &self.facts, &seen)?;
        self.renew(seen, why).await
    }

    /// Gets the report and its download again and writes the Secret.
    async fn renew(&mut self, seen: Observed, why: RenewWhy) -> Result<End, Halt> {
        let (rb, backend) = match self.backend().await {
            Ok(found) => found,
            Err(n) => {
                return Ok(renewal::renewal_not_ready(
                    &mut self.status,
                    &self.facts,
                    &n.message,
                ));
            }
        };
        let id = decide::known_id(&self.status, &self.facts)
            .ok_or_else(|| Error::Internal("READY ReportFile without externalId".into()))?;
        let req = ReportRequest::for_report_file(&self.namespace, &self.name, &self.rf.spec);
        let type_ = rb.spec.type_.as_str();
        let report = self.call(type_, "get", backend.get(&id, &req)).await?;
        let download = self
            .call(type_, "download", backend.download(&report, &req))
            .await?;
        // A FUSION `get` takes a new snapshot: the Secret and status say when.
        let generate_date = match rb.spec.type_ {
            BackendType::Fusion => report.generate_date.unwrap_or(self.now),
            _ => self.status.generate_date.unwrap_or(self.now),
        };
        self.status.generate_date = Some(generate_date);
        let facts = FileFacts::of(rb.spec.type_, self.rf.spec.format, generate_date);
        let file_name = self.status.file_name.clone();
        let secret = build_secret(self.rf, &download, generate_date, file_name.as_deref(), &facts)
            .map_err(|msg| decide::fail(&mut self.status, &self.facts, decide::Failure::TooLarge, msg))?;
        self.write_secret(&secret, seen).await?;
        Ok(renewal::renewed(&mut self.status, &self.facts, &download, why))
    }

    /// READY → copying → delivered: the copy is made; while it fails, the backend's download
    /// stays in the Secret and the copy is retried with backoff.
    async fn copy_or_keep_backend_url(&mut self, seen: Observed) -> Result<End, Halt> {
        let retry = match self.copy(&seen).await {
            Ok(end) => return Ok(end),
            Err(CopyStop::Halt(h)) => return Err(h),
            Err(CopyStop::Later(after)) => after,
            Err(CopyStop::Failed { reason, error }) => self.copy_failed(reason, &error).await,
        };
        let end = match self.keep_backend_url(seen).await {
            Ok(end) | Err(Halt::End(end)) => end,
            Err(h) => return Err(h),
        };
        Ok(end.sooner(retry))
    }

    /// A delivered copy's presigned URL: signed again when the policy says. A failure is
    /// retried; the backend's URL never comes back.
    async fn keep_presigned_url(&mut self, seen: Observed) -> Result<End, Halt> {
        match self.remint(&seen).await {
            Ok(end) => Ok(end),
            Err(CopyStop::Halt(h)) => Err(h),
            Err(CopyStop::Later(after)) => Ok(End::Leave { requeue: Some(after) }),
            Err(CopyStop::Failed { reason, error }) => {
                let retry = self.copy_failed(reason, &error).await;
                Ok(End::Done { requeue: Some(retry) })
            }
        }
    }

    /// The ReportStore of `storeRef`, from the cache.
    fn report_store(&self) -> Result<Arc<ReportStore>, CopyStop> {
        let name = self.facts.store.unwrap_or_default();
        copy::report_store(self.ctx, &self.namespace, name).ok_or_else(|| CopyStop::Failed {
            reason: Delivered::StoreNotFound,
            error: StoreError::InvalidSpec(format!(
                "ReportStore {name:?} does not exist in namespace {:?}",
                self.namespace
            )),
        })
    }

    /// The copy into the store: the result of the one the delivery pool made is recorded
    /// (the Secret gets the copy's URL); otherwise one is handed to the pool, unless it runs
    /// there already or waits for its retry.
    async fn copy(&mut self, seen: &Observed) -> Result<End, CopyStop> {
        let pool = &self.ctx.deliveries;
        let key = copy::pool_key(self.rf);
        if let Some(result) = pool.take_result(&key) {
            return self.record(result?, seen).await;
        }
        if pool.is_running(&key) {
            return Err(CopyStop::Later(COPY_LOOK_AGAIN));
        }
        if let Some(wait) = renewal::copy_backoff(&self.status, &self.facts) {
            return Err(CopyStop::Later(wait));
        }
        let rs = self.report_store()?;
        let bucket = self.ctx.buckets.open(self.ctx, &self.namespace, &rs).await?;
        let object = copy::key_of(self.rf, &rs, bucket.as_ref(), self.status.file_name.as_deref())?;
        if rs.spec.retention() == Retention::Delete {
            // Before the object exists, so that no copy outlives a ReportFile deleted meanwhile.
            finalizers::ensure(self.rf, &self.api, retention::FINALIZER).await?;
        }
        let extract = copy::extracts(&rs, cached_backend_type(self.ctx, self.rf));
        let source = self.source().await?;
        let location = bucket.location(&object);
        let job = move || copy::copy(bucket, source, object, extract).boxed();
        match pool.start(&key, job) {
            Start::Started | Start::Running => {
                renewal::copy_started(&mut self.status, &self.facts, &location)
            }
            Start::Waiting => renewal::copy_waits(&mut self.status, &self.facts, pool.limits()),
        }
        Err(CopyStop::Later(COPY_LOOK_AGAIN))
    }

    /// Records what the pool's copy wrote, then writes the Secret with the copy's URL.
    async fn record(&mut self, copied: Copied, seen: &Observed) -> Result<End, CopyStop> {
        let size = copied.uploaded.size;
        info!(report = %self.name, namespace = %self.namespace, location = %copied.location, size, "report copied into the store");
        let connect = cached_backend_type(self.ctx, self.rf) == Some(BackendType::Connect);
        renewal::copied(&mut self.status, &self.facts, &copied, connect);
        let rs = self.report_store()?;
        let bucket = self.ctx.buckets.open(self.ctx, &self.namespace, &rs).await?;
        let (location, expires) = self.write_presigned(bucket.as_ref(), &copied.key, seen).await?;
        Ok(renewal::delivered(
            &mut self.status,
            &self.facts,
            &location,
            expires,
            bucket.lifetime(),
        ))
    }

    /// Signs the copy's URL again and writes it into the Secret, if the policy says so.
    async fn remint(&mut self, seen: &Observed) -> Result<End, CopyStop> {
        let rs = self.report_store()?;
        let lifetime = rs.spec.presigned_lifetime();
        let why = match renewal::presigned_url(&mut self.status, &self.facts, seen, lifetime) {
            Ok(why) => why,
            Err(end) => return Ok(end),
        };
        let bucket = self.ctx.buckets.open(self.ctx, &self.namespace, &rs).await?;
        let key = self.delivered_key(bucket.as_ref()).ok_or_else(|| {
            StoreError::InvalidSpec("the copy's location is not in the store's bucket".into())
        })?;
        let (location, expires) = self.write_presigned(bucket.as_ref(), &key, seen).await?;
        Ok(renewal::reminted(
            &mut self.status,
            &self.facts,
            &location,
            expires,
            bucket.lifetime(),
            why,
        ))
    }

    /// Presigns `key` and writes the Secret with it: the copy's location and URL.
    async fn write_presigned(
        &mut self,
        bucket: &dyn Bucket,
        key: &str,
        seen: &Observed,
    ) -> Result<(String, DateTime<Utc>), CopyStop> {
        let (url, expires) = bucket.presign(key, self.now).await?;
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
        let file_name = self.status.file_name.as_deref();
        // A URL always fits: only a file in the Secret can be too large.
        let mut secret =
            build_secret(self.rf, &download, generate_date, file_name, &facts).map_err(Error::Internal)?;
        let location = bucket.location(key);
        add_delivery(
            &mut secret,
            &location,
            d.size.unwrap_or_default(),
            d.sha256.as_deref().unwrap_or_default(),
        );
        self.write_secret(&secret, seen.clone()).await?;
        Ok((location, expires))
    }

    /// The key of the recorded copy, if it is in `bucket`.
    fn delivered_key(&self, bucket: &dyn Bucket) -> Option<String> {
        let location = self.status.delivery.as_ref()?.location.as_deref()?;
        let bucket_root = bucket.location("");
        location
            .strip_prefix(&bucket_root)
            .filter(|k| !k.is_empty())
            .map(str::to_string)
    }

    /// The report's backend, for the copy to read the report from.
    async fn source(&self) -> Result<Source, StoreError> {
        let (rb, backend) = self.backend().await.map_err(|n| StoreError::Source(n.message))?;
        Ok(Source {
            backend,
            type_: rb.spec.type_.as_str(),
            request: ReportRequest::for_report_file(&self.namespace, &self.name, &self.rf.spec),
            id: decide::known_id(&self.status, &self.facts),
            metrics: self.ctx.metrics.clone(),
        })
    }

    /// Records a failed copy (or re-mint): the `Delivered` condition, a Warning Event once
    /// per reason, the metric; returns the wait before the next try.
    async fn copy_failed(&mut self, reason: Delivered, error: &StoreError) -> std::time::Duration {
        self.ctx.metrics.delivery.failed(error.label());
        let failed = renewal::copy_failed(&mut self.status, &self.facts, reason, &error.to_string());
        if failed.news == News::First {
            warn!(report = %self.name, namespace = %self.namespace, reason = %reason, error = %error, "copy into the store failed");
            self.ctx
                .event(
                    self.rf,
                    EventType::Warning,
                    EventReason::DeliveryFailed,
                    failed.message,
                )
                .await;
        }
        failed.retry
    }
}
