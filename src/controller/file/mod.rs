//! ReportFile: submit one report (or follow one the backend made), poll it to READY or FAILED,
//! and publish its download URL (or, for FUSION, the file) in a Secret it owns.
//!
//! Nothing is generated twice: before the backend is asked, `status.createPendingSince` is
//! written; the backend's id is written as soon as it is known. A reconcile that finds the mark
//! without an id (a crash, or a lost answer) looks the report up on the backend before it asks
//! again.

mod decide;
mod secret;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use kube::core::PartialObjectMeta;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::EventType;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::ResourceExt;
use tracing::{debug, info};

use self::decide::{Facts, Next};
use self::secret::{CONFLICT_RETRY, Observed, ReportSecrets, Written, build_secret};
use super::conditions::from_k8s_time;
use super::context::Context;
use super::guard::{self, error_policy};
use super::error::Error;
use crate::api::{ANNOTATION_REFRESH_URL, FileState, LABEL_REPORT_FILE, ReportBackend, ReportFile, ReportFileStatus};
use crate::backend::{BackendError, Capabilities, RemoteReport, ReportRequest, ReportingBackend};

pub async fn controller(
    ctl: Controller<ReportFile>,
    backends: Api<ReportBackend>,
    secrets: Api<PartialObjectMeta<Secret>>,
    ctx: Arc<Context>,
    concurrency: u16,
) {
    let index = ctx.index.clone();
    ctl.with_config(kube::runtime::controller::Config::default().concurrency(concurrency))
        // A deleted or edited report Secret is written again.
        .owns(secrets, watcher::Config::default().labels(LABEL_REPORT_FILE))
        // A backend that becomes Ready wakes the reports waiting for it.
        .watches(backends, watcher::Config::default(), move |rb| {
            let namespace = rb.namespace().unwrap_or_default();
            let waiting = index.files_of_backend(&namespace, &rb.name_any()).into_iter().filter(|rf| !is_finished(rf));
            waiting.map(|rf| ObjectRef::from_obj(&*rf)).collect::<Vec<_>>()
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

/// One reconcile of one ReportFile: reads, asks [`decide`] at each point, performs the step.
/// `status` is the status being built, written with [`Reconciler::save`].
struct Reconciler<'a> {
    rf: &'a ReportFile,
    ctx: &'a Context,
    api: Api<ReportFile>,
    namespace: String,
    name: String,
    status: ReportFileStatus,
    facts: Facts<'a>,
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

/// Look again after `requeue`, or on a change.
fn requeue(requeue: Option<Duration>) -> Action {
    requeue.map_or_else(Action::await_change, Action::requeue)
}

impl<'a> Reconciler<'a> {
    fn new(rf: &'a ReportFile, ctx: &'a Context) -> Result<Self, Error> {
        let namespace = rf.namespace().ok_or_else(|| Error::Invalid("ReportFile without namespace".into()))?;
        let mut status = rf.status.clone().unwrap_or_default();
        status.observed_generation = rf.metadata.generation;
        let now = Utc::now();
        let facts = Facts {
            name: rf.metadata.name.as_deref().unwrap_or_default(),
            generation: rf.metadata.generation,
            created: rf.metadata.creation_timestamp.as_ref().map(from_k8s_time),
            active_deadline_seconds: rf.spec.active_deadline_seconds,
            spec_external_id: rf.spec.external_id.as_deref(),
            refresh: rf.annotations().get(ANNOTATION_REFRESH_URL).map(String::as_str),
            now,
        };
        Ok(Reconciler { api: Api::namespaced(ctx.client.clone(), &namespace), name: rf.name_any(), namespace, rf, ctx, status, facts, now })
    }

    async fn run(mut self) -> Result<Action, Error> {
        let mut next = decide::start(&mut self.status, &self.facts);
        if next == Next::CheckSecret {
            let seen = self.report_secrets().observe(&self.name).await?;
            if self.status.status == Some(FileState::Ready) {
                return self.maintain_ready(seen).await;
            }
            next = decide::secret_seen(&mut self.status, &self.facts, &seen, Next::AskBackend);
        }
        if next != Next::AskBackend {
            return self.finish(next).await;
        }
        let (rb, backend) = match self.ctx.ready_backend(&self.namespace, &self.rf.spec.backend_ref.name).await {
            Ok(found) => found,
            Err(not_ready) => {
                let next = decide::backend_not_ready(&mut self.status, &self.facts, &not_ready.message);
                return self.finish(next).await;
            }
        };
        let req = ReportRequest::for_report_file(&self.namespace, &self.name, &self.rf.spec);
        let type_ = rb.spec.type_.as_str();
        let report = match decide::with_backend(&mut self.status, &self.facts, type_) {
            Next::Get { id } => step!(self.call(type_, "get", backend.get(&id, &req)).await?),
            first @ (Next::Find | Next::MarkPendingThenSubmit) => step!(self.find_or_submit(&rb, backend.as_ref(), &req, first).await?),
            other => return self.finish(other).await,
        };
        match decide::answer(&mut self.status, &self.facts, type_, &report.state) {
            Next::Poll { first } => {
                self.save().await?;
                if first {
                    debug!(report = %self.name, "report in progress");
                }
                Ok(Action::requeue(self.poll_interval(&rb, &backend.capabilities())))
            }
            Next::Download => self.complete(&rb, backend.as_ref(), &req, report).await,
            other => self.finish(other).await,
        }
    }

    /// Looks the report up if an earlier ask may have reached the backend (`first` is
    /// [`Next::Find`]); asks otherwise, the create-pending mark written first.
    async fn find_or_submit(
        &mut self,
        rb: &ReportBackend,
        backend: &dyn ReportingBackend,
        req: &ReportRequest,
        first: Next,
    ) -> Result<Step<RemoteReport>, Error> {
        let type_ = rb.spec.type_.as_str();
        if first == Next::Find {
            let found = step!(self.call(type_, "find", backend.find(req, &self.ids_taken(rb))).await?);
            decide::found(&mut self.status, &self.facts, type_, found.as_ref());
            if let Some(found) = found {
                info!(report = %self.name, id = %found.id, "found the report an earlier request created");
                self.save().await?;
                return Ok(Step::Done(found));
            }
        }
        self.seed_in_flight(rb);
        // The mark goes to the API server before the backend hears of the request.
        self.save().await?;
        let report = step!(self.call(type_, "submit", backend.submit(req)).await?);
        decide::record_id(&mut self.status, &self.facts, &report.id);
        self.save().await?;
        self.ctx
            .event(self.rf, EventType::Normal, "Submitted", format!("{type_} accepted the report request (id {})", report.id))
            .await;
        Ok(Step::Done(report))
    }

    /// The ids other ReportFiles hold on this report's API, which `find` must not adopt.
    fn ids_taken(&self, rb: &ReportBackend) -> HashSet<String> {
        self.ctx.index.ids_taken_by_files(rb, self.rf.metadata.uid.as_deref())
    }

    /// After a restart the limiter does not know which reports are running: tell it, from
    /// the ReportFiles, before asking for one more (SUPPLIER's cap per organization).
    fn seed_in_flight(&self, rb: &ReportBackend) {
        let Some(limiter) = self.ctx.registry.limiter(rb) else { return };
        if limiter.config().max_in_flight.is_none() {
            return;
        }
        let default_org = rb.spec.supplier.as_ref().and_then(|s| s.organization_id.clone()).unwrap_or_default();
        for rf in self.ctx.index.files_in_flight(&self.namespace, &rb.name_any()) {
            if let Some(id) = rf.status.as_ref().and_then(|s| s.external_id.as_deref()) {
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
        let next = decide::secret_seen(&mut self.status, &self.facts, &seen, Next::Download);
        if next != Next::Download {
            return self.finish(next).await;
        }
        let download = match report.download.clone() {
            Some(d) => d,
            None => step!(self.call(type_, "download", backend.download(&report, req)).await?),
        };
        let (generate_date, file_name) = decide::delivered(&report, &download, self.now);
        let secret = match build_secret(self.rf, &download, generate_date, file_name.as_deref()) {
            Ok(s) => s,
            Err(msg) => {
                let next = decide::fail(&mut self.status, &self.facts, "TooLarge", msg);
                return self.finish(next).await;
            }
        };
        if let Written::Foreign { why } = secrets.write(&secret, seen).await? {
            let next = decide::secret_conflict(&mut self.status, &self.facts, &why);
            return self.finish(next).await;
        }
        let Next::Done { requeue: after } = decide::completed(&mut self.status, &self.facts, generate_date, file_name, &download) else {
            return Err(Error::Invalid("completing a ReportFile gave no requeue".into()));
        };
        self.save().await?;
        let created = self.facts.created.unwrap_or(self.now);
        self.ctx
            .metrics
            .time_to_ready
            .get_or_create(&super::metrics::BackendLabels { r#type: type_ })
            .observe(self.now.signed_duration_since(created).num_milliseconds().max(0) as f64 / 1000.0);
        info!(report = %self.name, namespace = %self.namespace, backend = type_, "report ready");
        self.ctx
            .event(self.rf, EventType::Normal, "Ready", format!("the report is ready in Secret {:?}", self.name))
            .await;
        Ok(requeue(after))
    }

    /// A READY report whose Secret was `seen`: keep the Secret in place, re-mint its URL on
    /// request, and say when it expired.
    async fn maintain_ready(mut self, seen: Observed) -> Result<Action, Error> {
        match decide::ready(&mut self.status, &self.facts, &seen) {
            Next::RenewUrl { why } => self.renew(seen, why).await,
            other => self.finish(other).await,
        }
    }

    /// Gets the report and its download again and writes the Secret.
    async fn renew(&mut self, seen: Observed, why: &str) -> Result<Action, Error> {
        let (rb, backend) = match self.ctx.ready_backend(&self.namespace, &self.rf.spec.backend_ref.name).await {
            Ok(found) => found,
            Err(not_ready) => {
                let next = decide::renewal_not_ready(&mut self.status, &self.facts, &not_ready.message);
                return self.finish(next).await;
            }
        };
        let Some(id) = decide::known_id(&self.status, &self.facts) else {
            return Err(Error::Invalid("READY ReportFile without externalId".into()));
        };
        let req = ReportRequest::for_report_file(&self.namespace, &self.name, &self.rf.spec);
        let type_ = rb.spec.type_.as_str();
        let report = step!(self.call(type_, "get", backend.get(&id, &req)).await?);
        let download = step!(self.call(type_, "download", backend.download(&report, &req)).await?);
        let generate_date = self.status.generate_date.unwrap_or(self.now);
        let secret = match build_secret(self.rf, &download, generate_date, self.status.file_name.as_deref()) {
            Ok(secret) => secret,
            Err(msg) => {
                let next = decide::fail(&mut self.status, &self.facts, "TooLarge", msg);
                return self.finish(next).await;
            }
        };
        if let Written::Foreign { why } = self.report_secrets().write(&secret, seen).await? {
            let next = decide::secret_conflict(&mut self.status, &self.facts, &why);
            return self.finish(next).await;
        }
        let Next::Done { requeue: after } = decide::renewed(&mut self.status, &self.facts, &download) else {
            return Err(Error::Invalid("renewing a URL gave no requeue".into()));
        };
        self.save().await?;
        self.ctx.event(self.rf, EventType::Normal, "UrlRefreshed", format!("wrote the download again {why}")).await;
        Ok(requeue(after))
    }

    /// How long until the next poll: quick at first, slower as the report takes longer, and
    /// never faster than the backend's budget allows for all its running reports together
    /// (one request each, or one per organization where the backend polls by organization).
    fn poll_interval(&self, rb: &ReportBackend, caps: &Capabilities) -> Duration {
        let elapsed = self.status.submit_time.map(|t| (self.now - t).to_std().unwrap_or_default()).unwrap_or_default();
        let running = self.ctx.index.files_in_flight(&rb.namespace().unwrap_or_default(), &rb.name_any());
        let polls_per_round = if caps.polls_by_organization {
            running.iter().map(|rf| rf.spec.organization.as_deref()).collect::<HashSet<_>>().len()
        } else {
            running.len()
        };
        let budget = self.ctx.registry.limiter(rb).and_then(|l| l.config().budgets.first().copied());
        decide::poll_interval(elapsed, polls_per_round, budget.map(|b| (b.requests, b.window)))
    }

    /// Runs one backend call through [`super::metrics::Metrics::call`] and turns its error into
    /// the report's next step.
    async fn call<T>(
        &mut self,
        type_: &'static str,
        operation: &'static str,
        fut: impl std::future::Future<Output = Result<T, BackendError>>,
    ) -> Result<Step<T>, Error> {
        match self.ctx.metrics.call(type_, operation, fut).await {
            Ok(v) => Ok(Step::Done(v)),
            Err(e) => {
                let next = decide::backend_error(&mut self.status, &self.facts, type_, operation, &e);
                if let Next::Retry { rate_limited: true, .. } = next {
                    self.ctx.metrics.rate_limit_waits.get_or_create(&super::metrics::BackendLabels { r#type: type_ }).inc();
                }
                self.finish(next).await.map(Step::Stop)
            }
        }
    }

    /// Performs a step that ends the reconcile.
    async fn finish(&mut self, next: Next) -> Result<Action, Error> {
        match next {
            Next::Leave { requeue: after } => Ok(requeue(after)),
            Next::Done { requeue: after } => {
                self.save().await?;
                Ok(requeue(after))
            }
            Next::Fail { reason, message } => {
                self.save().await?;
                info!(report = %self.name, namespace = %self.namespace, reason, "report failed");
                self.ctx.event(self.rf, EventType::Warning, "Failed", message).await;
                Ok(Action::await_change())
            }
            Next::Retry { after, event, .. } => {
                self.save().await?;
                if let Some((reason, message)) = event {
                    self.ctx.event(self.rf, EventType::Warning, reason, message).await;
                }
                Ok(Action::requeue(after))
            }
            Next::SecretConflict { first, message } => {
                self.save().await?;
                if first {
                    info!(report = %self.name, namespace = %self.namespace, "the report's Secret name is taken; not writing it");
                    self.ctx.event(self.rf, EventType::Warning, decide::SECRET_CONFLICT, message).await;
                }
                Ok(Action::requeue(CONFLICT_RETRY))
            }
            other => Err(Error::Invalid(format!("the ReportFile step {other:?} does not end a reconcile"))),
        }
    }

    async fn save(&mut self) -> Result<(), Error> {
        if self.rf.status.as_ref() != Some(&self.status) {
            self.ctx.apply_status(&self.api, self.rf, &self.status).await?;
        }
        Ok(())
    }

    fn report_secrets(&self) -> ReportSecrets<'a> {
        let uid = self.rf.metadata.uid.as_deref().unwrap_or_default();
        ReportSecrets { api: Api::namespaced(self.ctx.client.clone(), &self.namespace), uid }
    }
}
