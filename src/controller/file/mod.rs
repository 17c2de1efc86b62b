//! ReportFile: submit one report (or follow one the backend made), poll it to READY or FAILED,
//! and publish its download URL (or, for FUSION, the file) in a Secret it owns.
//!
//! Nothing is generated twice: before the backend is asked, `status.createPendingSince` is
//! written; the backend's id is written as soon as it is known. A reconcile that finds the mark
//! without an id (a crash, or a lost answer) looks the report up on the backend before it asks
//! again.

mod cleanup;
mod decide;
mod deliver;
mod secret;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::StreamExt;
use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::EventType;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use tracing::{debug, info};

use self::decide::{Facts, Next};
use self::secret::{FileFacts, Observed, ReportSecrets, Written, build_secret};
use super::conditions::from_k8s_time;
use super::context::Context;
use super::create_once::{CreateOnce, Created, create_once};
use super::error::Error;
use super::guard::{self, error_policy};
use super::outcome::{Halt, Outcome, conclude};
use crate::api::{
    ANNOTATION_REFRESH_URL, BackendType, DEFAULT_KEEP_URL_FRESH_SECONDS, FileState, ReportBackend,
    ReportFile, ReportFileStatus,
};
use crate::backend::transfer::MAX_COPY_TIME;
use crate::backend::{BackendError, Capabilities, RemoteReport, ReportRequest, ReportingBackend};

pub async fn controller(
    ctl: Controller<ReportFile>,
    backends: Api<ReportBackend>,
    secrets: super::SecretEvents,
    ctx: Arc<Context>,
    concurrency: u16,
) {
    let index = ctx.index.clone();
    ctl.with_config(kube::runtime::controller::Config::default().concurrency(concurrency))
        // A deleted or edited report Secret is written again.
        .owns_shared_stream(secrets)
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

/// How long a reconcile of `rf` may take: a READY report not yet copied into its store gets
/// the copy's own limit on top (a large file's download and upload take their time).
fn reconcile_limit(rf: &ReportFile) -> Duration {
    let status = rf.status.as_ref();
    let ready = status.and_then(|s| s.status) == Some(FileState::Ready);
    let copying = rf.spec.store_ref.is_some()
        && ready
        && !deliver::is_delivered(status.and_then(|s| s.delivery.as_ref()));
    if copying {
        guard::RECONCILE_TIMEOUT + MAX_COPY_TIME
    } else {
        guard::RECONCILE_TIMEOUT
    }
}

async fn reconcile(rf: Arc<ReportFile>, ctx: Arc<Context>) -> Result<Action, Error> {
    guard::reconcile_within(rf.as_ref(), &ctx, reconcile_limit(&rf), async {
        // Not before the caches are filled; and an older copy would repeat what our last write
        // recorded (a FUSION report, which `get` generates again).
        if let Some(wait) = ctx.hold_back(rf.as_ref()).await {
            return Ok(wait);
        }
        if rf.metadata.deletion_timestamp.is_some() {
            // Each finalizer is removed by its own step; removing one changes the object and
            // wakes the reconcile that does the next.
            if rf.finalizers().iter().any(|f| f == deliver::FINALIZER) {
                return deliver::finalize(&rf, &ctx).await;
            }
            return cleanup::finalize(&rf, &ctx).await;
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
    /// The status as last written (or read), so that nothing is written twice.
    written: Option<ReportFileStatus>,
    facts: Facts<'a>,
    now: DateTime<Utc>,
}

impl<'a> Reconciler<'a> {
    fn new(rf: &'a ReportFile, ctx: &'a Context) -> Result<Self, Error> {
        let namespace = rf
            .namespace()
            .ok_or_else(|| Error::Invalid("ReportFile without namespace".into()))?;
        let mut status = rf.status.clone().unwrap_or_default();
        status.observed_generation = rf.metadata.generation;
        let now = Utc::now();
        let backend = ctx
            .backends
            .get(&ObjectRef::new(&rf.spec.backend_ref.name).within(&namespace));
        let keep_fresh_secs = backend
            .and_then(|rb| rb.spec.supplier.as_ref().and_then(|s| s.keep_url_fresh_seconds))
            .unwrap_or(DEFAULT_KEEP_URL_FRESH_SECONDS);
        let facts = Facts {
            name: rf.metadata.name.as_deref().unwrap_or_default(),
            generation: rf.metadata.generation,
            created: rf.metadata.creation_timestamp.as_ref().map(from_k8s_time),
            active_deadline_seconds: rf.spec.active_deadline_seconds,
            spec_external_id: rf.spec.external_id.as_deref(),
            refresh: rf.annotations().get(ANNOTATION_REFRESH_URL).map(String::as_str),
            // The schema bounds it to 30 days; an older object's value is clamped, not trusted.
            keep_url_fresh: chrono::TimeDelta::try_seconds(
                keep_fresh_secs.clamp(0, crate::api::MAX_KEEP_URL_FRESH_SECONDS),
            )
            .unwrap_or_default(),
            now,
        };
        let written = rf.status.clone();
        Ok(Reconciler {
            api: Api::namespaced(ctx.client.clone(), &namespace),
            name: rf.name_any(),
            namespace,
            rf,
            ctx,
            status,
            written,
            facts,
            now,
        })
    }

    /// Runs the reconcile to its [`Outcome`] and writes that down.
    async fn run(mut self) -> Result<Action, Error> {
        let outcome = match self.steps().await {
            Ok(outcome) | Err(Halt::Outcome(outcome)) => outcome,
            Err(Halt::Error(e)) => return Err(e),
        };
        let (before, after, type_) = (
            self.rf.status.as_ref().and_then(|s| s.status),
            self.status.status,
            self.backend_type(),
        );
        let action = conclude(
            self.ctx,
            self.rf,
            self.written.as_ref(),
            self.status,
            outcome,
            self.now,
        )
        .await?;
        // Counted once the status that says so is written.
        self.ctx.metrics.report_changed(type_, before, after);
        Ok(action)
    }

    /// The `type` label of this report's backend; `unknown` once the backend is gone.
    fn backend_type(&self) -> &'static str {
        cached_backend_type(self.ctx, self.rf).map_or("unknown", |t| t.as_str())
    }

    async fn steps(&mut self) -> Result<Outcome, Halt> {
        // A report made before its finalizer existed (CONNECT ReportFiles of earlier releases)
        // gets it now, so that deleting the ReportFile removes the report as for new ones.
        let made = self.status.external_id.is_some();
        if made && cached_backend_type(self.ctx, self.rf).is_some_and(cleanup::needs_finalizer) {
            cleanup::ensure_finalizer(self.rf, &self.api).await?;
        }
        let mut next = decide::start(&mut self.status, &self.facts);
        if next == Next::CheckSecret {
            let seen = self.report_secrets().observe(&self.name).await?;
            if self.status.status == Some(FileState::Ready) {
                return self.maintain_ready(seen).await;
            }
            next = decide::secret_seen(&mut self.status, &self.facts, &seen, Next::AskBackend);
        }
        if next != Next::AskBackend {
            return self.end(next);
        }
        let (rb, backend) = match self
            .ctx
            .ready_backend(&self.namespace, &self.rf.spec.backend_ref.name)
            .await
        {
            Ok(found) => found,
            Err(not_ready) => {
                let next = decide::backend_not_ready(&mut self.status, &self.facts, &not_ready.message);
                return self.end(next);
            }
        };
        let req = ReportRequest::for_report_file(&self.namespace, &self.name, &self.rf.spec);
        let type_ = rb.spec.type_.as_str();
        let report = match decide::with_backend(&mut self.status, &self.facts) {
            Next::Get { id } => self.call(type_, "get", backend.get(&id, &req)).await?,
            Next::Create => {
                // Exactly with the backend this create uses, so no report is made that a
                // deletion could miss.
                if cleanup::needs_finalizer(rb.spec.type_) {
                    cleanup::ensure_finalizer(self.rf, &self.api).await?;
                }
                let mut making = Making {
                    r: self,
                    rb: &rb,
                    backend: backend.as_ref(),
                    req: &req,
                };
                match create_once(&mut making).await? {
                    Created::Found(report) => {
                        info!(report = %self.name, id = %report.id, "found the report an earlier request created");
                        report
                    }
                    Created::Submitted(report) => {
                        let message = format!("{type_} accepted the report request (id {})", report.id);
                        self.ctx
                            .event(self.rf, EventType::Normal, "Submitted", message)
                            .await;
                        report
                    }
                }
            }
            other => return self.end(other),
        };
        match decide::answer(&mut self.status, &self.facts, type_, &report.state) {
            Next::Poll { first } => {
                if first {
                    debug!(report = %self.name, "report in progress");
                }
                Ok(Outcome::working(Some(
                    self.poll_interval(&rb, &backend.capabilities()),
                )))
            }
            Next::Download => self.complete(&rb, backend.as_ref(), &req, report).await,
            other => self.end(other),
        }
    }

    /// The ids other ReportFiles hold on this report's API, which `find` must not adopt.
    fn ids_taken(&self, rb: &ReportBackend) -> HashSet<String> {
        self.ctx
            .index
            .ids_taken_by_files(rb, self.rf.metadata.uid.as_deref())
    }

    /// After a restart the limiter does not know which reports are running: tell it, from
    /// the ReportFiles, before asking for one more (SUPPLIER's cap per organization).
    fn seed_in_flight(&self, rb: &ReportBackend) {
        let Some(limiter) = self.ctx.registry.limiter(rb) else {
            return;
        };
        if limiter.config().max_in_flight.is_none() {
            return;
        }
        for rf in self.ctx.index.files_in_flight(&self.namespace, &rb.name_any()) {
            if let Some(id) = rf.status.as_ref().and_then(|s| s.external_id.as_deref()) {
                limiter.note_in_flight(
                    crate::backend::organization_of(&rb.spec, rf.spec.organization.as_deref()),
                    id,
                );
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
    ) -> Result<Outcome, Halt> {
        let type_ = rb.spec.type_.as_str();
        let secrets = self.report_secrets();
        let seen = secrets.observe(&self.name).await?;
        let next = decide::secret_seen(&mut self.status, &self.facts, &seen, Next::Download);
        if next != Next::Download {
            return self.end(next);
        }
        let download = match report.download.clone() {
            Some(d) => d,
            None => {
                self.call(type_, "download", backend.download(&report, req))
                    .await?
            }
        };
        let (generate_date, file_name) = decide::delivered(&report, &download, self.now);
        let facts = FileFacts::of(rb.spec.type_, self.rf.spec.format, generate_date);
        let secret = match build_secret(self.rf, &download, generate_date, file_name.as_deref(), &facts) {
            Ok(s) => s,
            Err(msg) => {
                let next = decide::fail(&mut self.status, &self.facts, "TooLarge", msg);
                return self.end(next);
            }
        };
        if let Written::Foreign { why } = secrets.write(&secret, seen).await? {
            let next = decide::secret_conflict(&mut self.status, &self.facts, &why);
            return self.end(next);
        }
        let done = decide::completed(&mut self.status, &self.facts, generate_date, file_name, &download);
        let created = self.facts.created.unwrap_or(self.now);
        self.ctx
            .metrics
            .time_to_ready
            .get_or_create(&super::metrics::BackendLabels { r#type: type_ })
            .observe(self.now.signed_duration_since(created).num_milliseconds().max(0) as f64 / 1000.0);
        info!(report = %self.name, namespace = %self.namespace, backend = type_, "report ready");
        let mut outcome = self.end(done)?.noting(
            EventType::Normal,
            "Ready",
            format!("the report is ready in Secret {:?}", self.name),
        );
        if self.rf.spec.store_ref.is_some() {
            // The copy is the next reconcile's, which sees the Secret just written.
            outcome.requeue = Some(Duration::from_millis(500));
        }
        Ok(outcome)
    }

    /// A READY report whose Secret was `seen`: keep the Secret in place, re-mint its URL on
    /// request, and say when it expired.
    async fn maintain_ready(&mut self, seen: Observed) -> Result<Outcome, Halt> {
        // With a store: its copy replaces the backend's download once made; until then the
        // backend's download is kept up as without one, and the copy retried.
        let mut retry_copy = None;
        if let Some(store) = self
            .rf
            .spec
            .store_ref
            .as_ref()
            .filter(|_| !matches!(seen, Observed::Foreign { .. }))
        {
            match self.deliver(&seen, &store.name.clone()).await? {
                Ok(outcome) => return Ok(outcome),
                // A copy's URL is never replaced by the backend's: the re-mint is retried.
                Err(retry) if deliver::is_delivered(self.status.delivery.as_ref()) => {
                    return Ok(Outcome::working(Some(retry)));
                }
                Err(retry) => retry_copy = Some(retry),
            }
        }
        let mut outcome = self.maintain_backend_download(seen).await?;
        if let Some(retry) = retry_copy {
            outcome.requeue = Some(outcome.requeue.map_or(retry, |r| r.min(retry)));
        }
        Ok(outcome)
    }

    /// A READY report's backend download: kept in the Secret, renewed on request or before
    /// it expires.
    async fn maintain_backend_download(&mut self, seen: Observed) -> Result<Outcome, Halt> {
        match decide::ready(&mut self.status, &self.facts, &seen) {
            Next::RenewUrl { why } => self.renew(seen, why).await,
            other => self.end(other),
        }
    }

    /// Gets the report and its download again and writes the Secret.
    async fn renew(&mut self, seen: Observed, why: &'static str) -> Result<Outcome, Halt> {
        let (rb, backend) = match self
            .ctx
            .ready_backend(&self.namespace, &self.rf.spec.backend_ref.name)
            .await
        {
            Ok(found) => found,
            Err(not_ready) => {
                let next = decide::renewal_not_ready(&mut self.status, &self.facts, &not_ready.message);
                return self.end(next);
            }
        };
        let Some(id) = decide::known_id(&self.status, &self.facts) else {
            return Err(Error::Invalid("READY ReportFile without externalId".into()).into());
        };
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
        let secret = match build_secret(
            self.rf,
            &download,
            generate_date,
            self.status.file_name.as_deref(),
            &facts,
        ) {
            Ok(secret) => secret,
            Err(msg) => {
                let next = decide::fail(&mut self.status, &self.facts, "TooLarge", msg);
                return self.end(next);
            }
        };
        if let Written::Foreign { why } = self.report_secrets().write(&secret, seen).await? {
            let next = decide::secret_conflict(&mut self.status, &self.facts, &why);
            return self.end(next);
        }
        let done = decide::renewed(&mut self.status, &self.facts, &download);
        self.end(done).map(|o| {
            o.noting(
                EventType::Normal,
                "UrlRefreshed",
                format!("wrote the download again {why}"),
            )
        })
    }

    /// How long until the next poll: quick at first, slower as the report takes longer, and
    /// never faster than the backend's spare budget allows for all its running reports
    /// together (one request each, or one per organization where the backend polls by
    /// organization).
    fn poll_interval(&self, rb: &ReportBackend, caps: &Capabilities) -> Duration {
        let elapsed = self
            .status
            .submit_time
            .map(|t| (self.now - t).to_std().unwrap_or_default())
            .unwrap_or_default();
        let running = self
            .ctx
            .index
            .files_in_flight(&rb.namespace().unwrap_or_default(), &rb.name_any());
        let polls_per_round = if caps.polls_by_organization {
            running
                .iter()
                .map(|rf| rf.spec.organization.as_deref())
                .collect::<HashSet<_>>()
                .len()
        } else {
            running.len()
        };
        let Some(limiter) = self.ctx.registry.limiter(rb) else {
            return decide::poll_interval(elapsed, polls_per_round, None);
        };
        let budget = limiter.config().budgets.first().map(|b| (b.requests, b.window));
        // Polls go out as one listing per organization where the backend polls by organization.
        let spare = limiter.spare(if caps.polls_by_organization { "list" } else { "get" });
        decide::poll_interval_spending(elapsed, polls_per_round, budget, spare)
    }

    /// Runs one backend call through [`super::metrics::Metrics::call`]; an error ends the
    /// reconcile with the report's next step.
    async fn call<T>(
        &mut self,
        type_: &'static str,
        operation: &'static str,
        fut: impl std::future::Future<Output = Result<T, BackendError>>,
    ) -> Result<T, Halt> {
        match self.ctx.metrics.call(type_, operation, fut).await {
            Ok(v) => Ok(v),
            Err(e) => {
                let next = decide::backend_error(&mut self.status, &self.facts, type_, operation, &e);
                if let Next::Retry {
                    rate_limited: true, ..
                } = next
                {
                    self.ctx
                        .metrics
                        .rate_limit_waits
                        .get_or_create(&super::metrics::BackendLabels { r#type: type_ })
                        .inc();
                }
                Err(Halt::Outcome(self.end(next)?))
            }
        }
    }

    /// The outcome of a step that ends the reconcile, logged where it is news.
    fn end(&self, next: Next) -> Result<Outcome, Halt> {
        match &next {
            Next::Fail { reason, .. } => {
                info!(report = %self.name, namespace = %self.namespace, reason, "report failed")
            }
            Next::SecretConflict { first: true, .. } => {
                info!(report = %self.name, namespace = %self.namespace, "the report's Secret name is taken; not writing it")
            }
            _ => {}
        }
        decide::outcome(next.clone()).ok_or_else(|| {
            Error::Invalid(format!("the ReportFile step {next:?} does not end a reconcile")).into()
        })
    }

    async fn save(&mut self) -> Result<(), Error> {
        if self.written.as_ref() != Some(&self.status) {
            self.ctx.apply_status(&self.api, self.rf, &self.status).await?;
            self.written = Some(self.status.clone());
        }
        Ok(())
    }

    fn report_secrets(&self) -> ReportSecrets<'a> {
        let uid = self.rf.metadata.uid.as_deref().unwrap_or_default();
        ReportSecrets {
            api: Api::namespaced(self.ctx.client.clone(), &self.namespace),
            uid,
        }
    }
}

/// A report being made with the [create-once protocol](create_once).
struct Making<'r, 'a> {
    r: &'r mut Reconciler<'a>,
    rb: &'r ReportBackend,
    backend: &'r dyn ReportingBackend,
    req: &'r ReportRequest,
}

impl CreateOnce for Making<'_, '_> {
    type Made = RemoteReport;
    type Stop = Halt;

    fn pending(&self) -> bool {
        self.r.status.create_pending_since.is_some()
    }

    fn mark_pending(&mut self) {
        decide::mark_pending(&mut self.r.status, &self.r.facts, self.rb.spec.type_.as_str());
    }

    fn record(&mut self, made: &RemoteReport) {
        decide::record_id(
            &mut self.r.status,
            &self.r.facts,
            self.rb.spec.type_.as_str(),
            &made.id,
            Utc::now(),
        );
    }

    async fn save(&mut self) -> Result<(), Halt> {
        Ok(self.r.save().await?)
    }

    async fn find(&mut self) -> Result<Option<RemoteReport>, Halt> {
        let taken = self.r.ids_taken(self.rb);
        self.r
            .call(
                self.rb.spec.type_.as_str(),
                "find",
                self.backend.find(self.req, &taken),
            )
            .await
    }

    async fn submit(&mut self) -> Result<RemoteReport, Halt> {
        self.r.seed_in_flight(self.rb);
        self.r
            .call(
                self.rb.spec.type_.as_str(),
                "submit",
                self.backend.submit(self.req),
            )
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_ready_report_waiting_for_its_copy_may_take_the_copys_time() {
        let file = |store: bool, status: serde_json::Value| -> ReportFile {
            let mut doc = serde_json::json!({"apiVersion": "reporting.report-operator.io/v1alpha1", "kind": "ReportFile",
                "metadata": {"name": "r", "namespace": "n"},
                "spec": {"backendRef": {"name": "b"}, "name": "x", "eventType": "ONETIME", "format": "CSV"}, "status": status});
            if store {
                doc["spec"]["storeRef"] = serde_json::json!({"name": "bucket"});
            }
            serde_json::from_value(doc).expect("ReportFile")
        };
        let ready = serde_json::json!({"status": "READY"});
        let copied = serde_json::json!({"status": "READY", "delivery": {"sha256": "ab", "deliveredTime": "2026-01-01T00:00:00Z"}});
        let long = guard::RECONCILE_TIMEOUT + MAX_COPY_TIME;
        assert_eq!(reconcile_limit(&file(true, ready.clone())), long);
        assert_eq!(reconcile_limit(&file(true, copied)), guard::RECONCILE_TIMEOUT);
        assert_eq!(
            reconcile_limit(&file(true, serde_json::json!({"status": "IN_PROGRESS"}))),
            guard::RECONCILE_TIMEOUT
        );
        assert_eq!(reconcile_limit(&file(false, ready)), guard::RECONCILE_TIMEOUT);
    }
}
