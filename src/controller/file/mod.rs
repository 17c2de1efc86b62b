//! ReportFile: submit one report (or follow one the backend made), poll it to READY or FAILED,
//! and publish its download URL (or, for FUSION, the file) in a Secret it owns.
//!
//! Nothing is generated twice: before the backend is asked, `status.createPendingSince` is
//! written; the backend's id is written as soon as it is known. A reconcile that finds the mark
//! without an id (a crash, or a lost answer) looks the report up on the backend before it asks
//! again.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use futures::StreamExt;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ObjectMeta};
use kube::core::PartialObjectMeta;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::EventType;
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};
use tracing::{debug, info};

use super::conditions::{Cond, from_k8s_time, set_condition};
use super::context::Context;
use super::guard::{self, error_policy};
use super::secret::{CONFLICT_RETRY, Observed, ReportSecrets, Written, conflict_message};
use super::{Error, ids_taken, users_of_backend};
use crate::api::{
    ANNOTATION_REFRESH_URL, CONDITION_READY, FileState, LABEL_GENERATOR, LABEL_REPORT_FILE, LocalObjectReference, ReportBackend,
    ReportFile, ReportFileStatus, find_condition, label_value,
};
use crate::backend::{BackendError, Capabilities, Download, ErrorAction, RemoteReport, ReportRequest, ReportState, ReportingBackend};

/// Default `activeDeadlineSeconds`: 6 hours.
const DEFAULT_ACTIVE_DEADLINE: i64 = 6 * 3600;
use crate::backend::MAX_INLINE_BYTES;
/// How long before a short-lived URL expires the operator re-mints it.
const URL_RENEW_MARGIN: chrono::Duration = chrono::Duration::seconds(10);
/// For how long after READY short-lived URLs are kept fresh without being asked; later they
/// are re-minted on the refresh annotation only, so old reports cost the backend nothing.
const URL_KEEP_FRESH: chrono::Duration = chrono::Duration::minutes(15);
/// Longest requeue: a URL a backend says expires in year 9999 (or a Retry-After that far
/// out) is looked at again tomorrow rather than left alone for years.
const MAX_REQUEUE: Duration = Duration::from_secs(24 * 3600);
/// Ready reason of a report whose Secret name is taken by someone else's Secret.
const SECRET_CONFLICT: &str = "SecretConflict";

pub async fn controller(
    ctl: Controller<ReportFile>,
    backends: Api<ReportBackend>,
    secrets: Api<PartialObjectMeta<Secret>>,
    ctx: Arc<Context>,
    concurrency: u16,
) {
    let store = ctl.store();
    ctl.with_config(kube::runtime::controller::Config::default().concurrency(concurrency))
        // A deleted or edited report Secret is written again.
        .owns(secrets, watcher::Config::default().labels(LABEL_REPORT_FILE))
        // A backend that becomes Ready wakes the reports waiting for it.
        .watches(backends, watcher::Config::default(), move |rb| {
            users_of_backend(&store, &rb, |rf: &ReportFile| (&rf.spec.backend_ref.name, !is_finished(rf)))
        })
        .shutdown_on_signal()
        .run(reconcile, error_policy, ctx)
        .for_each(|_| async {})
        .await;
}

fn is_finished(rf: &ReportFile) -> bool {
    rf.status.as_ref().and_then(|s| s.status).is_some_and(FileState::is_finished)
}

async fn reconcile(rf: Arc<ReportFile>, ctx: Arc<Context>) -> Result<Action, Error> {
    guard::reconcile(rf.as_ref(), &ctx, async {
        // Not before the caches are filled; and an older copy would repeat what our last write
        // recorded (a FUSION report, which `get` generates again).
        if let Some(wait) = ctx.hold_back(rf.as_ref()).await {
            return Ok(wait);
        }
        Reconciler::new(&rf, &ctx)?.run().await
    })
    .await
}

/// One reconcile of one ReportFile; `status` is the status being built, written with
/// [`Reconciler::save`].
struct Reconciler<'a> {
    rf: &'a ReportFile,
    ctx: &'a Context,
    api: Api<ReportFile>,
    namespace: String,
    name: String,
    status: ReportFileStatus,
    now: DateTime<Utc>,
}

/// What the backend said about the report, or why we could not ask.
enum Step<T> {
    Done(T),
    Stop(Action),
}

impl<T> From<Action> for Step<T> {
    fn from(action: Action) -> Self {
        Step::Stop(action)
    }
}

/// Unwraps a [`Step`], returning its action from the enclosing function when it stops.
macro_rules! step {
    ($e:expr) => {
        match $e {
            Step::Done(v) => v,
            Step::Stop(action) => return Ok(action.into()),
        }
    };
}

impl<'a> Reconciler<'a> {
    fn new(rf: &'a ReportFile, ctx: &'a Context) -> Result<Self, Error> {
        let namespace = rf.namespace().ok_or_else(|| Error::Invalid("ReportFile without namespace".into()))?;
        let mut status = rf.status.clone().unwrap_or_default();
        status.observed_generation = rf.metadata.generation;
        Ok(Reconciler {
            api: Api::namespaced(ctx.client.clone(), &namespace),
            name: rf.name_any(),
            namespace,
            rf,
            ctx,
            status,
            now: Utc::now(),
        })
    }

    async fn run(mut self) -> Result<Action, Error> {
        match self.status.status {
            Some(FileState::Failed) => return Ok(Action::await_change()),
            Some(FileState::Ready) => return self.maintain_ready().await,
            Some(FileState::InProgress) | None => {}
        }
        if let Some(msg) = self.deadline_exceeded() {
            return self.fail("DeadlineExceeded", msg).await;
        }
        // While the Secret name is taken the backend is not asked again (a FUSION `get`
        // generates the report again).
        if self.ready_reason() == Some(SECRET_CONFLICT)
            && let Observed::Foreign { why } = self.report_secrets().observe(&self.name).await?
        {
            return self.secret_conflict(&why).await;
        }
        let (rb, backend) = match self.ctx.ready_backend(&self.namespace, &self.rf.spec.backend_ref.name).await {
            Ok(found) => found,
            Err(not_ready) => {
                self.status.status = Some(FileState::InProgress);
                self.set_ready(false, "Pending", format!("waiting for the backend: {}", not_ready.message));
                self.save().await?;
                return Ok(Action::requeue(Duration::from_secs(30)));
            }
        };
        let req = ReportRequest::for_report_file(&self.namespace, &self.name, &self.rf.spec);
        let type_ = rb.spec.type_.as_str();
        // A report the backend made itself has its id in the spec; status says it too.
        if self.status.external_id.is_none() {
            self.status.external_id = self.rf.spec.external_id.clone();
        }
        let report = match self.known_id() {
            Some(id) => step!(self.call(type_, "get", backend.get(&id, &req)).await?),
            None => step!(self.find_or_submit(&rb, backend.as_ref(), &req).await?),
        };
        match report.state.clone() {
            ReportState::InProgress => {
                let first = self.status.status != Some(FileState::InProgress) || self.status.submit_time.is_none();
                self.status.status = Some(FileState::InProgress);
                self.status.submit_time.get_or_insert(self.now);
                self.set_ready(false, "InProgress", format!("{type_} is generating the report"));
                self.save().await?;
                if first {
                    debug!(report = %self.name, "report in progress");
                }
                Ok(Action::requeue(self.poll_interval(&rb, &backend.capabilities())))
            }
            ReportState::Ready => self.complete(&rb, backend.as_ref(), &req, report).await,
            ReportState::Failed { reason } => {
                let msg = format!("{type_} failed the report: {reason}");
                self.status.failed_reason = Some(reason);
                self.fail("Failed", msg).await
            }
        }
    }

    /// The backend's id of this report, if known: recorded by us, or given in the spec for a
    /// report the backend made itself (RDE report files, CMP invoice reports).
    fn known_id(&self) -> Option<String> {
        self.status.external_id.clone().or_else(|| self.rf.spec.external_id.clone())
    }

    /// Looks the report up if an earlier ask may have reached the backend; asks otherwise.
    async fn find_or_submit(
        &mut self,
        rb: &ReportBackend,
        backend: &dyn ReportingBackend,
        req: &ReportRequest,
    ) -> Result<Step<RemoteReport>, Error> {
        let type_ = rb.spec.type_.as_str();
        if self.status.create_pending_since.is_some()
            && let Some(found) = step!(self.call(type_, "find", backend.find(req, &self.ids_taken(rb))).await?)
        {
            info!(report = %self.name, id = %found.id, "found the report an earlier request created");
            self.record_submitted(&found).await?;
            return Ok(Step::Done(found));
        }
        self.seed_in_flight(rb);
        // The mark goes to the API server before the backend hears of the request.
        self.status.create_pending_since = Some(self.now);
        self.status.attempts = Some(self.status.attempts.unwrap_or(0).saturating_add(1));
        self.status.status = Some(FileState::InProgress);
        self.set_ready(false, "Pending", format!("asking {type_} for the report"));
        self.save().await?;
        let report = step!(self.call(type_, "submit", backend.submit(req)).await?);
        self.record_submitted(&report).await?;
        self.ctx
            .event(self.rf, EventType::Normal, "Submitted", format!("{type_} accepted the report request (id {})", report.id))
            .await;
        Ok(Step::Done(report))
    }

    /// Writes the backend's id before anything else can go wrong.
    async fn record_submitted(&mut self, report: &RemoteReport) -> Result<(), Error> {
        self.status.external_id = Some(report.id.clone());
        self.status.create_pending_since = None;
        self.status.submit_time.get_or_insert(self.now);
        self.status.status = Some(FileState::InProgress);
        self.set_ready(false, "InProgress", "the backend is generating the report".to_string());
        self.save().await
    }

    /// The ids other ReportFiles hold on this report's API, which `find` must not adopt.
    fn ids_taken(&self, rb: &ReportBackend) -> HashSet<String> {
        ids_taken(self.ctx, &self.ctx.files, self.rf, rb, |rf| {
            let id = rf.status.as_ref().and_then(|s| s.external_id.as_deref()).or(rf.spec.external_id.as_deref());
            (&rf.spec.backend_ref.name, id)
        })
    }

    /// After a restart the limiter does not know which reports are running: tell it, from
    /// the ReportFiles, before asking for one more (SUPPLIER's cap per organization).
    fn seed_in_flight(&self, rb: &ReportBackend) {
        let Some(limiter) = self.ctx.registry.limiter(rb) else { return };
        if limiter.config().max_in_flight.is_none() {
            return;
        }
        let default_org = rb.spec.supplier.as_ref().and_then(|s| s.organization_id.clone()).unwrap_or_default();
        for rf in self.ctx.files.state() {
            let running = rf.status.as_ref().filter(|s| s.status == Some(FileState::InProgress));
            if let Some(id) = running.and_then(|s| s.external_id.as_deref())
                && rf.namespace().as_deref() == Some(self.namespace.as_str())
                && rf.spec.backend_ref.name == rb.name_any()
            {
                limiter.note_in_flight(rf.spec.organization.as_deref().unwrap_or(&default_org), id);
            }
        }
    }

    /// The report is READY on the backend: get its file or URL, write the Secret, then status.
    async fn complete(
        &mut self,
        rb: &ReportBackend,
        backend: &dyn ReportingBackend,
        req: &ReportRequest,
        report: RemoteReport,
    ) -> Result<Action, Error> {
        let type_ = rb.spec.type_.as_str();
        let secrets = self.report_secrets();
        let seen = secrets.observe(&self.name).await?;
        if let Observed::Foreign { why } = seen {
            return self.secret_conflict(&why).await;
        }
        let download = match report.download.clone() {
            Some(d) => d,
            None => step!(self.call(type_, "download", backend.download(&report, req)).await?),
        };
        let generate_date = report.generate_date.unwrap_or(self.now);
        let file_name = report.file_name.clone().or_else(|| match &download {
            Download::Inline { file_name, .. } => Some(file_name.clone()),
            Download::Url { url, .. } => file_name_of(url),
        });
        let secret = match build_secret(self.rf, &download, generate_date, file_name.as_deref()) {
            Ok(s) => s,
            Err(msg) => return self.fail("TooLarge", msg).await,
        };
        if let Written::Foreign { why } = secrets.write(&secret, seen).await? {
            return self.secret_conflict(&why).await;
        }
        self.status.status = Some(FileState::Ready);
        self.status.generate_date = Some(generate_date);
        self.status.file_name = file_name;
        self.status.completion_time = Some(self.now);
        self.status.download_secret_ref = Some(LocalObjectReference { name: self.name.clone() });
        self.status.url_expires_at = url_expiry(&download);
        self.status.last_url_refresh = self.rf.annotations().get(ANNOTATION_REFRESH_URL).cloned();
        self.set_ready(true, "Ready", format!("the report is ready; Secret {:?} holds its download", self.name));
        self.save().await?;
        let created = self.rf.metadata.creation_timestamp.as_ref().map(from_k8s_time).unwrap_or(self.now);
        self.ctx
            .metrics
            .time_to_ready
            .get_or_create(&super::metrics::BackendLabels { r#type: type_ })
            .observe(self.now.signed_duration_since(created).num_milliseconds().max(0) as f64 / 1000.0);
        info!(report = %self.name, namespace = %self.namespace, backend = type_, "report ready");
        self.ctx
            .event(self.rf, EventType::Normal, "Ready", format!("the report is ready in Secret {:?}", self.name))
            .await;
        Ok(self.ready_requeue())
    }

    /// A READY report: keep its Secret in place, re-mint its URL on request, and say when it
    /// expired.
    async fn maintain_ready(mut self) -> Result<Action, Error> {
        let refresh = self.rf.annotations().get(ANNOTATION_REFRESH_URL).cloned();
        let wants_refresh = refresh.is_some() && refresh != self.status.last_url_refresh;
        let secrets = self.report_secrets();
        let seen = secrets.observe(&self.name).await?;
        if let Observed::Foreign { why } = seen {
            return self.secret_conflict(&why).await;
        }
        let secret_missing = seen == Observed::Missing;
        // A Secret that is ours again after a conflict may still hold someone else's data.
        let after_conflict = self.ready_reason() == Some(SECRET_CONFLICT);
        let renew = self.status.url_expires_at.is_some_and(|e| {
            let fresh_window = self.status.completion_time.is_some_and(|c| self.now.signed_duration_since(c) < URL_KEEP_FRESH);
            fresh_window && self.now < e && e.signed_duration_since(self.now) <= URL_RENEW_MARGIN
        });
        if wants_refresh || secret_missing || after_conflict || renew {
            let (rb, backend) = match self.ctx.ready_backend(&self.namespace, &self.rf.spec.backend_ref.name).await {
                Ok(found) => found,
                Err(not_ready) => {
                    self.set_ready(false, "UrlExpired", format!("cannot re-mint the download URL: {}", not_ready.message));
                    self.save().await?;
                    return Ok(Action::requeue(Duration::from_secs(30)));
                }
            };
            let Some(id) = self.known_id() else {
                return Err(Error::Invalid("READY ReportFile without externalId".into()));
            };
            let req = ReportRequest::for_report_file(&self.namespace, &self.name, &self.rf.spec);
            let type_ = rb.spec.type_.as_str();
            let report = step!(self.call(type_, "get", backend.get(&id, &req)).await?);
            let download = step!(self.call(type_, "download", backend.download(&report, &req)).await?);
            let generate_date = self.status.generate_date.unwrap_or(self.now);
            let file_name = self.status.file_name.clone();
            let secret = match build_secret(self.rf, &download, generate_date, file_name.as_deref()) {
                Ok(secret) => secret,
                Err(msg) => return self.fail("TooLarge", msg).await,
            };
            if let Written::Foreign { why } = secrets.write(&secret, seen).await? {
                return self.secret_conflict(&why).await;
            }
            self.status.url_expires_at = url_expiry(&download);
            self.status.last_url_refresh = refresh;
            self.set_ready(true, "Ready", format!("the report is ready; Secret {:?} holds a fresh download URL", self.name));
            self.save().await?;
            let why = if wants_refresh {
                "on the refresh-url annotation"
            } else if secret_missing {
                "because the Secret was missing"
            } else if after_conflict {
                "after the Secret conflict was resolved"
            } else {
                "before the URL expired"
            };
            self.ctx.event(self.rf, EventType::Normal, "UrlRefreshed", format!("wrote the download again {why}")).await;
            return Ok(self.ready_requeue());
        }
        if let Some(expires) = self.status.url_expires_at
            && self.now >= expires
        {
            self.set_ready(
                false,
                "UrlExpired",
                format!(
                    "the download URL expired at {}; set the annotation {ANNOTATION_REFRESH_URL} to a new value for a fresh one",
                    expires.to_rfc3339()
                ),
            );
            self.save().await?;
        }
        Ok(self.ready_requeue())
    }

    /// A READY report is looked at again shortly before its URL expires (to renew it while
    /// it is kept fresh) and when it expires.
    fn ready_requeue(&self) -> Action {
        ready_requeue_after(self.status.url_expires_at, self.now).map_or_else(Action::await_change, Action::requeue)
    }

    fn deadline_exceeded(&self) -> Option<String> {
        let created = self.rf.metadata.creation_timestamp.as_ref().map(from_k8s_time)?;
        let deadline = self.rf.spec.active_deadline_seconds.unwrap_or(DEFAULT_ACTIVE_DEADLINE);
        deadline_passed(created, deadline, self.now)
            .then(|| format!("the report was not READY within activeDeadlineSeconds ({deadline} s)"))
    }

    /// How long until the next poll: quick at first, slower as the report takes longer, and
    /// never faster than the backend's budget allows for all its running reports together
    /// (one request each, or one per organization where the backend polls by organization).
    fn poll_interval(&self, rb: &ReportBackend, caps: &Capabilities) -> Duration {
        let elapsed = self.status.submit_time.map(|t| (self.now - t).to_std().unwrap_or_default()).unwrap_or_default();
        let running = self.ctx.files.state().into_iter().filter(|rf| {
            rf.namespace() == rb.namespace()
                && rf.spec.backend_ref.name == rb.name_any()
                && rf.status.as_ref().and_then(|s| s.status) == Some(FileState::InProgress)
        });
        let polls_per_round = if caps.polls_by_organization {
            running.map(|rf| rf.spec.organization.clone()).collect::<HashSet<_>>().len()
        } else {
            running.count()
        };
        let budget = self.ctx.registry.limiter(rb).and_then(|l| l.config().budgets.first().copied());
        poll_interval(elapsed, polls_per_round, budget.map(|b| (b.requests, b.window)))
    }

    /// Runs one backend call, counting it, and turns its error into the report's next step.
    async fn call<T>(
        &mut self,
        type_: &'static str,
        operation: &'static str,
        fut: impl std::future::Future<Output = Result<T, BackendError>>,
    ) -> Result<Step<T>, Error> {
        match fut.await {
            Ok(v) => {
                self.ctx.metrics.backend_call(type_, operation, "ok");
                Ok(Step::Done(v))
            }
            Err(e) => {
                self.ctx.metrics.backend_call(type_, operation, error_code(&e));
                self.on_backend_error(type_, operation, e).await.map(Step::Stop)
            }
        }
    }

    async fn on_backend_error(&mut self, type_: &'static str, operation: &str, e: BackendError) -> Result<Action, Error> {
        match e.action() {
            ErrorAction::FailReport { reason } => {
                self.status.failed_reason = Some(reason.clone());
                let cond = if matches!(e, BackendError::TooLarge { .. }) { "TooLarge" } else { "Failed" };
                self.fail(cond, format!("{type_} refused the report: {reason}")).await
            }
            ErrorAction::BackendNotReady { message, .. } => {
                self.status.status = Some(FileState::InProgress);
                self.set_ready(false, "Pending", format!("waiting for the backend: {message}"));
                self.save().await?;
                Ok(Action::requeue(Duration::from_secs(30)))
            }
            ErrorAction::Retry { after } => {
                let after = after.unwrap_or(Duration::from_secs(5)).clamp(Duration::from_millis(500), MAX_REQUEUE);
                let (reason, queued) = match &e {
                    BackendError::InFlightLimit { .. } => ("Queued", true),
                    BackendError::RateLimited { .. } => ("RateLimited", false),
                    _ => ("BackendError", false),
                };
                if matches!(e, BackendError::RateLimited { .. } | BackendError::InFlightLimit { .. }) {
                    self.ctx.metrics.rate_limit_waits.get_or_create(&super::metrics::BackendLabels { r#type: type_ }).inc();
                }
                let message = format!("{operation} on {type_}: {e}; retrying in {}s", after.as_secs_f64().ceil());
                self.status.status = Some(FileState::InProgress);
                let cond_reason = if self.known_id().is_some() { "InProgress" } else { "Pending" };
                self.set_ready(false, cond_reason, message.clone());
                self.save().await?;
                if !queued {
                    self.ctx.event(self.rf, EventType::Warning, reason, message).await;
                }
                Ok(Action::requeue(after))
            }
        }
    }

    async fn fail(&mut self, reason: &str, message: String) -> Result<Action, Error> {
        self.status.status = Some(FileState::Failed);
        self.status.completion_time = Some(self.now);
        self.status.create_pending_since = None;
        if self.status.failed_reason.is_none() {
            self.status.failed_reason = Some(reason.to_string());
        }
        self.set_ready(false, if reason == "DeadlineExceeded" || reason == "TooLarge" { reason } else { "Failed" }, message.clone());
        self.save().await?;
        info!(report = %self.name, namespace = %self.namespace, reason, "report failed");
        self.ctx.event(self.rf, EventType::Warning, "Failed", message).await;
        Ok(Action::await_change())
    }

    fn set_ready(&mut self, status: bool, reason: &str, message: String) {
        set_condition(&mut self.status.conditions, Cond::ready(status, reason, message), self.rf.metadata.generation, self.now);
    }

    async fn save(&mut self) -> Result<(), Error> {
        if self.rf.status.as_ref() != Some(&self.status) {
            self.ctx.apply_status(&self.api, self.rf, &self.status).await?;
        }
        Ok(())
    }

    fn ready_reason(&self) -> Option<&str> {
        find_condition(&self.status.conditions, CONDITION_READY).map(|c| c.reason.as_str())
    }

    fn report_secrets(&self) -> ReportSecrets<'a> {
        let uid = self.rf.metadata.uid.as_deref().unwrap_or_default();
        ReportSecrets { api: Api::namespaced(self.ctx.client.clone(), &self.namespace), uid }
    }

    /// The report's Secret name is someone else's Secret: say so and look again later. The
    /// report itself is fine (IN_PROGRESS until the Secret is written; a READY one stays READY).
    async fn secret_conflict(&mut self, why: &str) -> Result<Action, Error> {
        let message = conflict_message(&self.name, why);
        let first = self.ready_reason() != Some(SECRET_CONFLICT);
        self.status.status.get_or_insert(FileState::InProgress);
        self.set_ready(false, SECRET_CONFLICT, message.clone());
        self.save().await?;
        if first {
            info!(report = %self.name, namespace = %self.namespace, "the report's Secret name is taken; not writing it");
            self.ctx.event(self.rf, EventType::Warning, SECRET_CONFLICT, message).await;
        }
        Ok(Action::requeue(CONFLICT_RETRY))
    }
}

/// A metric label for a backend error: a small fixed set, never the message.
fn error_code(e: &BackendError) -> &'static str {
    match e {
        BackendError::Transient { .. } => "transient",
        BackendError::RateLimited { .. } => "rate_limited",
        BackendError::InFlightLimit { .. } => "in_flight_limit",
        BackendError::Unauthorized { .. } => "unauthorized",
        BackendError::TwoFactorRequired => "two_factor_required",
        BackendError::CredentialsMissing { .. } => "credentials_missing",
        BackendError::InvalidSpec { .. } => "invalid_spec",
        BackendError::Rejected { .. } => "rejected",
        BackendError::NotFound { .. } => "not_found",
        BackendError::Unsupported { .. } => "unsupported",
        BackendError::Ambiguous { .. } => "ambiguous",
        BackendError::Protocol { .. } => "protocol",
        BackendError::TooLarge { .. } => "too_large",
        BackendError::DestinationDenied { .. } => "destination_denied",
    }
}

/// The last path segment of a download URL, when the API names the file only there.
fn file_name_of(url: &str) -> Option<String> {
    let path = url::Url::parse(url).ok()?.path_segments()?.next_back()?.to_string();
    let decoded = percent_encoding::percent_decode_str(&path).decode_utf8().ok()?.into_owned();
    (!decoded.is_empty()).then_some(decoded)
}

fn url_expiry(download: &Download) -> Option<DateTime<Utc>> {
    match download {
        Download::Url { expires_at, .. } => *expires_at,
        Download::Inline { .. } => None,
    }
}

/// When a READY report with a URL expiring at `expires` is looked at again: shortly before it
/// expires (to renew it) and just after; never later than [`MAX_REQUEUE`]. Dates come from
/// the backend, so nothing here may overflow.
fn ready_requeue_after(expires: Option<DateTime<Utc>>, now: DateTime<Utc>) -> Option<Duration> {
    let expires = expires.filter(|e| *e > now)?;
    let at = match expires.checked_sub_signed(URL_RENEW_MARGIN) {
        Some(renew_at) if renew_at > now => renew_at,
        _ => expires.checked_add_signed(TimeDelta::milliseconds(200)).unwrap_or(expires),
    };
    Some(at.signed_duration_since(now).to_std().unwrap_or(Duration::from_secs(1)).min(MAX_REQUEUE))
}

/// Whether a report created at `created` has run past `deadline_secs` at `now`. The user
/// sets the deadline, up to `i64::MAX` seconds: one beyond the last representable date is
/// never reached.
fn deadline_passed(created: DateTime<Utc>, deadline_secs: i64, now: DateTime<Utc>) -> bool {
    TimeDelta::try_seconds(deadline_secs).and_then(|d| created.checked_add_signed(d)).is_some_and(|end| now > end)
}

/// Poll interval for a report running for `elapsed`, when a round of polls of all running
/// reports costs `polls_per_round` requests of a budget of `requests` per `window`: 1 s at
/// first, backing off to 30 s, and spread so that polling uses at most 80% of the budget (the
/// rest is for creates and downloads).
pub fn poll_interval(elapsed: Duration, polls_per_round: usize, budget: Option<(u32, Duration)>) -> Duration {
    let base = match elapsed.as_secs() {
        0..10 => Duration::from_secs(1),
        10..60 => Duration::from_secs(3),
        60..300 => Duration::from_secs(10),
        _ => Duration::from_secs(30),
    };
    let budget_floor = match budget {
        Some((requests, window)) if requests > 0 => {
            let secs = window.as_secs_f64() * 1.25 * polls_per_round.max(1) as f64 / f64::from(requests);
            Duration::try_from_secs_f64(secs).unwrap_or(Duration::MAX)
        }
        _ => Duration::ZERO,
    };
    base.max(budget_floor).min(Duration::from_secs(600))
}

/// The Secret of a READY report: owned by the ReportFile, labelled for both, with
/// `secretTemplate`'s labels and annotations, and the keys of API.md.
pub fn build_secret(
    rf: &ReportFile,
    download: &Download,
    generate_date: DateTime<Utc>,
    file_name: Option<&str>,
) -> Result<Secret, String> {
    let name = rf.name_any();
    let template = rf.spec.secret_template.clone().unwrap_or_default();
    let mut labels = template.labels.unwrap_or_default();
    labels.insert(LABEL_REPORT_FILE.to_string(), label_value(&name));
    if let Some(generator) = &rf.spec.generator_ref {
        labels.insert(LABEL_GENERATOR.to_string(), label_value(&generator.name));
    }
    let mut data: BTreeMap<String, ByteString> = BTreeMap::new();
    let mut put = |k: &str, v: &str| {
        data.insert(k.to_string(), ByteString(v.as_bytes().to_vec()));
    };
    put("format", rf.spec.format.upper());
    put("generateDate", &generate_date.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
    if let Some(f) = file_name {
        put("fileName", f);
    }
    match download {
        Download::Url { url, expires_at } => {
            put("url", url);
            if let Some(e) = expires_at {
                put("expiresAt", &e.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
            }
        }
        Download::Inline { file_name, content } => {
            if content.len() > MAX_INLINE_BYTES {
                return Err(format!(
                    "the report file {file_name:?} has {} bytes, more than a Secret can hold ({MAX_INLINE_BYTES}); it was not truncated",
                    content.len()
                ));
            }
            put("fileName", file_name);
            data.insert("content".into(), ByteString(content.clone()));
        }
    }
    Ok(Secret {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: rf.namespace(),
            labels: Some(labels),
            annotations: template.annotations.filter(|a| !a.is_empty()),
            owner_references: rf.controller_owner_ref(&()).map(|o| vec![o]),
            ..Default::default()
        },
        type_: Some("Opaque".into()),
        data: Some(data),
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{EventType as ReportEventType, ReportFileSpec, ReportFormat, SecretTemplate};

    fn report_file() -> ReportFile {
        let mut rf = ReportFile::new(
            "nw-finance-20181008",
            ReportFileSpec {
                generator_ref: Some(LocalObjectReference { name: "nw-finance".into() }),
                backend_ref: LocalObjectReference { name: "commerce".into() },
                name: "NW Finance".into(),
                event_type: ReportEventType::Periodic,
                format: ReportFormat::Json,
                notify_by_email: None,
                parameters: None,
                organization: None,
                external_id: None,
                template_id: None,
                secret_template: Some(SecretTemplate {
                    labels: Some([("team".to_string(), "finance".to_string())].into()),
                    annotations: Some([("note".to_string(), "x".to_string())].into()),
                }),
                active_deadline_seconds: None,
            },
        );
        rf.metadata.namespace = Some("billing".into());
        rf.metadata.uid = Some("uid-1".into());
        rf
    }

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).expect("time").with_timezone(&Utc)
    }

    #[test]
    fn secret_has_the_contract_keys_labels_and_owner() {
        let d = Download::Url { url: "https://s/f.json?sig=abc".into(), expires_at: Some(t("2026-01-01T00:01:00Z")) };
        let s = build_secret(&report_file(), &d, t("2026-01-01T00:00:00Z"), Some("f.json")).expect("secret");
        let data = s.data.expect("data");
        let get = |k: &str| String::from_utf8(data.get(k).expect(k).0.clone()).expect("utf8");
        assert_eq!(get("url"), "https://s/f.json?sig=abc");
        assert_eq!(get("fileName"), "f.json");
        assert_eq!(get("format"), "JSON");
        assert_eq!(get("generateDate"), "2026-01-01T00:00:00Z");
        assert_eq!(get("expiresAt"), "2026-01-01T00:01:00Z");
        let labels = s.metadata.labels.expect("labels");
        assert_eq!(labels[LABEL_GENERATOR], "nw-finance");
        assert_eq!(labels[LABEL_REPORT_FILE], "nw-finance-20181008");
        assert_eq!(labels["team"], "finance");
        assert_eq!(s.metadata.annotations.expect("annotations")["note"], "x");
        let owner = &s.metadata.owner_references.expect("owner")[0];
        assert_eq!((owner.kind.as_str(), owner.controller), ("ReportFile", Some(true)));
    }

    #[test]
    fn inline_files_go_under_content_and_too_large_ones_are_refused() {
        let small = Download::Inline { file_name: "l.csv".into(), content: b"a,b\n".to_vec() };
        let s = build_secret(&report_file(), &small, t("2026-01-01T00:00:00Z"), None).expect("secret");
        let data = s.data.expect("data");
        assert_eq!(data["content"].0, b"a,b\n");
        assert_eq!(data["fileName"].0, b"l.csv");
        assert!(!data.contains_key("url"));
        let big = Download::Inline { file_name: "l.csv".into(), content: vec![b'x'; MAX_INLINE_BYTES + 1] };
        let err = build_secret(&report_file(), &big, t("2026-01-01T00:00:00Z"), None).expect_err("too large");
        assert!(err.contains("not truncated"), "{err}");
    }

    #[test]
    fn file_names_come_from_the_url_path_without_the_signature() {
        assert_eq!(file_name_of("https://s/c/report%201.zip?sig=x").as_deref(), Some("report 1.zip"));
        assert_eq!(file_name_of("https://s/"), None);
    }

    #[test]
    fn polling_starts_fast_backs_off_and_respects_the_budget() {
        assert_eq!(poll_interval(Duration::from_secs(0), 1, None), Duration::from_secs(1));
        assert_eq!(poll_interval(Duration::from_secs(30), 1, None), Duration::from_secs(3));
        assert_eq!(poll_interval(Duration::from_secs(3600), 1, None), Duration::from_secs(30));
        // 120 reports on 600 requests per 10 minutes: each polled at most every 150 s.
        let spread = poll_interval(Duration::from_secs(0), 120, Some((600, Duration::from_secs(600))));
        assert_eq!(spread, Duration::from_secs(150));
    }

    #[test]
    fn deadlines_from_the_user_never_overflow() {
        let created = t("2026-01-01T00:00:00Z");
        let rows: [(&str, i64, &str, bool); 7] = [
            ("within", 3600, "2026-01-01T00:59:59Z", false),
            ("just past", 3600, "2026-01-01T01:00:01Z", true),
            ("default", DEFAULT_ACTIVE_DEADLINE, "2026-01-01T06:00:01Z", true),
            ("i64::MAX seconds: not a date", i64::MAX, "2026-01-01T06:00:01Z", false),
            ("past the last date", i64::MAX / 1000, "9999-12-31T23:59:59Z", false),
            ("i64::MIN seconds", i64::MIN, "2026-01-01T00:00:01Z", false),
            ("before the first date", -(i64::MAX / 1000), "2026-01-01T00:00:01Z", false),
        ];
        for (what, deadline, now, passed) in rows {
            assert_eq!(deadline_passed(created, deadline, t(now)), passed, "{what}");
        }
    }

    #[test]
    fn ready_requeues_stay_in_range_for_any_expiry_a_backend_sends() {
        let now = t("2026-01-01T00:00:00Z");
        let rows = [
            ("no expiry", None, None),
            ("expired", Some(t("2025-12-31T23:59:00Z")), None),
            ("year 0001", Some(t("0001-01-01T00:00:00Z")), None),
            ("renew before expiry", Some(t("2026-01-01T00:01:00Z")), Some(Duration::from_secs(50))),
            ("too close to renew: just after", Some(t("2026-01-01T00:00:05Z")), Some(Duration::from_millis(5200))),
            ("year 9999: tomorrow", Some(t("9999-12-31T23:59:59Z")), Some(MAX_REQUEUE)),
            ("the last date", Some(DateTime::<Utc>::MAX_UTC), Some(MAX_REQUEUE)),
        ];
        for (what, expires, want) in rows {
            assert_eq!(ready_requeue_after(expires, now), want, "{what}");
        }
        assert_eq!(ready_requeue_after(Some(t("2026-01-01T00:00:01Z")), DateTime::<Utc>::MIN_UTC), Some(MAX_REQUEUE));
    }

    #[test]
    fn huge_rate_budgets_do_not_overflow_the_poll_interval() {
        assert_eq!(poll_interval(Duration::ZERO, usize::MAX, Some((1, Duration::MAX))), Duration::from_secs(600));
        assert_eq!(poll_interval(Duration::MAX, 1, Some((u32::MAX, Duration::from_secs(1)))), Duration::from_secs(30));
    }
}
