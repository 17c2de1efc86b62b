//! One reconcile of one ReportFile that is not being deleted: read, ask [`decide`] at each
//! point, make the call it asks for, and write the [`End`] down once. Up to READY or FAILED
//! here; a READY report's download is kept in place by [`super::ready`].

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::reflector::ObjectRef;
use tracing::{debug, info};

use super::decide::{self, Ask, Begin, End, Facts, News, Wait};
use super::poll;
use super::renewal;
use super::secret::{FileFacts, Observed, ReportSecrets, Written, build_secret};
use super::{cached_backend_type, cleanup};
use crate::api::reasons::EventReason;
use crate::api::{
    ANNOTATION_REFRESH_URL, DEFAULT_KEEP_URL_FRESH_SECONDS, ReportBackend, ReportFile, ReportFileStatus,
};
use crate::backend::{BackendError, Capabilities, RemoteReport, ReportRequest, ReportingBackend};
use crate::controller::conditions::from_k8s_time;
use crate::controller::context::Context;
use crate::controller::create_once::{CreateOnce, Created, create_once};
use crate::controller::error::Error;
use crate::controller::metrics::BackendLabels;
use crate::controller::outcome::conclude;
use crate::controller::registry::NotReady;

/// Why a step stopped the reconcile before its end: with the [`End`] a decision gave (a
/// backend said no, the Secret is taken), or with an error for the error policy.
#[derive(Debug)]
pub enum Halt {
    End(End),
    Error(Error),
}

impl From<End> for Halt {
    fn from(end: End) -> Self {
        Halt::End(end)
    }
}

impl From<Error> for Halt {
    fn from(e: Error) -> Self {
        Halt::Error(e)
    }
}

impl From<kube::Error> for Halt {
    fn from(e: kube::Error) -> Self {
        Halt::Error(e.into())
    }
}

/// One reconcile: `status` is the status being built, written with [`Reconciler::save`] (the
/// create-once marks) and once at the end.
pub struct Reconciler<'a> {
    pub rf: &'a ReportFile,
    pub ctx: &'a Context,
    pub api: Api<ReportFile>,
    pub namespace: String,
    pub name: String,
    pub status: ReportFileStatus,
    /// The status as last written (or read), so that nothing is written twice.
    written: Option<ReportFileStatus>,
    pub facts: Facts<'a>,
    pub now: DateTime<Utc>,
}

impl<'a> Reconciler<'a> {
    pub fn new(rf: &'a ReportFile, ctx: &'a Context) -> Result<Self, Error> {
        let namespace = rf
            .namespace()
            .ok_or_else(|| Error::Internal("ReportFile without namespace".into()))?;
        let mut status = rf.status.clone().unwrap_or_default();
        status.observed_generation = rf.metadata.generation;
        let now = ctx.now();
        let backend = ctx
            .backends
            .get(&ObjectRef::new(&rf.spec.backend_ref.name).within(&namespace));
        let keep_fresh_secs = backend
            .as_ref()
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
            store: rf.spec.store_ref.as_ref().map(|s| s.name.as_str()),
            poll_grid: backend
                .as_ref()
                .is_some_and(|rb| Capabilities::of(rb.spec.type_).polls_by_organization),
            now,
        };
        Ok(Reconciler {
            api: Api::namespaced(ctx.client.clone(), &namespace),
            name: rf.name_any(),
            namespace,
            rf,
            ctx,
            written: rf.status.clone(),
            status,
            facts,
            now,
        })
    }

    /// Runs the reconcile to its [`End`] and writes that down.
    pub async fn run(mut self) -> Result<Action, Error> {
        let end = match self.steps().await {
            Ok(end) | Err(Halt::End(end)) => end,
            Err(Halt::Error(e)) => return Err(e),
        };
        self.tell(&end);
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
            end.outcome(),
            self.now,
        )
        .await?;
        // Counted once the status that says so is written.
        self.ctx.metrics.report_changed(type_, before, after);
        Ok(action)
    }

    /// Logs and counts what an ending is news of.
    fn tell(&self, end: &End) {
        let (report, namespace) = (&self.name, &self.namespace);
        match end {
            End::Fail { reason, .. } => {
                info!(report = %report, namespace = %namespace, reason = %reason.ready(), "report failed")
            }
            End::SecretConflict {
                news: News::First, ..
            } => {
                info!(report = %report, namespace = %namespace, "the report's Secret name is taken; not writing it")
            }
            End::Retry {
                wait: Wait::Queued | Wait::RateLimited,
                ..
            } => {
                let labels = BackendLabels {
                    r#type: self.backend_type(),
                };
                self.ctx.metrics.rate_limit_waits.get_or_create(&labels).inc();
            }
            End::Completed { .. } => {
                let type_ = self.backend_type();
                let created = self.facts.created.unwrap_or(self.now);
                let took = self.now.signed_duration_since(created).num_milliseconds().max(0) as f64 / 1000.0;
                self.ctx
                    .metrics
                    .time_to_ready
                    .get_or_create(&BackendLabels { r#type: type_ })
                    .observe(took);
                info!(report = %report, namespace = %namespace, backend = type_, "report ready");
            }
            _ => {}
        }
    }

    /// The `type` label of this report's backend; `unknown` once the backend is gone.
    pub fn backend_type(&self) -> &'static str {
        cached_backend_type(self.ctx, self.rf).map_or("unknown", |t| t.as_str())
    }

    async fn steps(&mut self) -> Result<End, Halt> {
        // A report made before its finalizer existed (CONNECT ReportFiles of earlier releases)
        // gets it now, so that deleting the ReportFile removes the report as for new ones.
        let made = self.status.external_id.is_some();
        if made && cached_backend_type(self.ctx, self.rf).is_some_and(cleanup::needs_finalizer) {
            cleanup::ensure_finalizer(self.rf, &self.api).await?;
        }
        match decide::start(&mut self.status, &self.facts)? {
            Begin::Ready => {
                let cached = self
                    .ctx
                    .secrets
                    .get(&ObjectRef::new(&self.name).within(&self.namespace));
                let seen = self
                    .secrets()
                    .observe_cached(cached.as_deref(), &self.name)
                    .await?;
                return self.keep(seen).await;
            }
            Begin::SecretFirst => {
                let seen = self.secrets().observe(&self.name).await?;
                decide::secret_seen(&mut self.status, &self.facts, &seen)?;
            }
            Begin::AskBackend => {}
        }
        let (rb, backend) = match self.backend().await {
            Ok(found) => found,
            Err(n) => {
                return Ok(decide::backend_not_ready(
                    &mut self.status,
                    &self.facts,
                    &n.message,
                ));
            }
        };
        let req = ReportRequest::for_report_file(&self.namespace, &self.name, &self.rf.spec);
        let type_ = rb.spec.type_.as_str();
        let report = match decide::with_backend(&mut self.status, &self.facts)? {
            Ask::Get(id) => self.call(type_, "get", backend.get(&id, &req)).await?,
            Ask::Create => self.create(&rb, backend.as_ref(), &req).await?,
        };
        let poll = self.poll_interval(&rb, &backend.capabilities());
        decide::answer(&mut self.status, &self.facts, type_, &report.state, poll)?;
        self.complete(&rb, backend.as_ref(), &req, report).await
    }

    /// Makes the report with the [create-once protocol](create_once). Exactly with the
    /// backend this create uses, the CONNECT finalizer first, so no report is made that a
    /// deletion could miss.
    async fn create(
        &mut self,
        rb: &ReportBackend,
        backend: &dyn ReportingBackend,
        req: &ReportRequest,
    ) -> Result<RemoteReport, Halt> {
        if cleanup::needs_finalizer(rb.spec.type_) {
            cleanup::ensure_finalizer(self.rf, &self.api).await?;
        }
        let mut making = Making {
            r: self,
            rb,
            backend,
            req,
        };
        match create_once(&mut making).await? {
            Created::Found(report) => {
                info!(report = %self.name, id = %report.id, "found the report an earlier request created");
                Ok(report)
            }
            Created::Submitted(report) => {
                let message = format!(
                    "{} accepted the report request (id {})",
                    rb.spec.type_.as_str(),
                    report.id
                );
                self.ctx
                    .event(self.rf, EventType::Normal, EventReason::Submitted, message)
                    .await;
                debug!(report = %self.name, "report in progress");
                Ok(report)
            }
        }
    }

    /// The report's ReportBackend and its client, if it is Ready.
    pub async fn backend(&self) -> Result<(Arc<ReportBackend>, Arc<dyn ReportingBackend>), NotReady> {
        self.ctx
            .ready_backend(&self.namespace, &self.rf.spec.backend_ref.name)
            .await
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
    ) -> Result<End, Halt> {
        let seen = self.secrets().observe(&self.name).await?;
        decide::secret_seen(&mut self.status, &self.facts, &seen)?;
        let download = match report.download.clone() {
            Some(d) => d,
            None => {
                self.call(rb.spec.type_.as_str(), "download", backend.download(&report, req))
                    .await?
            }
        };
        let (generate_date, file_name) = decide::file_of(&report, &download, self.now);
        let facts = FileFacts::of(rb.spec.type_, self.rf.spec.format, generate_date);
        let secret = build_secret(self.rf, &download, generate_date, file_name.as_deref(), &facts)
            .map_err(|msg| decide::fail(&mut self.status, &self.facts, decide::Failure::TooLarge, msg))?;
        self.write_secret(&secret, seen).await?;
        Ok(renewal::completed(
            &mut self.status,
            &self.facts,
            generate_date,
            file_name,
            &download,
        ))
    }

    /// Writes the report Secret, starting from what `seen` observed; someone else's Secret
    /// ends the reconcile with a conflict.
    pub async fn write_secret(
        &mut self,
        secret: &k8s_openapi::api::core::v1::Secret,
        seen: Observed,
    ) -> Result<(), Halt> {
        match self.secrets().write(secret, seen).await? {
            Written::Done => Ok(()),
            Written::Foreign { why } => {
                Err(decide::secret_conflict(&mut self.status, &self.facts, &why).into())
            }
        }
    }

    /// How long until the next poll: quick at first, slower as the report takes longer, and
    /// never faster than the backend's spare budget allows for all its running reports
    /// together (one request each, or one per organization where the backend polls by
    /// organization, on the grid of [`poll::next_tick`]).
    fn poll_interval(&self, rb: &ReportBackend, caps: &Capabilities) -> Duration {
        let interval = self.poll_interval_within_budget(rb, caps);
        poll::until_next_poll(self.ctx.now(), interval, caps.polls_by_organization)
    }

    fn poll_interval_within_budget(&self, rb: &ReportBackend, caps: &Capabilities) -> Duration {
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
            return poll::poll_interval(elapsed, polls_per_round, None);
        };
        let budget = limiter.config().budgets.first().map(|b| (b.requests, b.window));
        // Polls go out as one listing per organization where the backend polls by organization.
        let spare = limiter.spare(if caps.polls_by_organization { "list" } else { "get" });
        poll::poll_interval_spending(elapsed, polls_per_round, budget, spare)
    }

    /// Runs one backend call through [`crate::controller::metrics::Metrics::call`]; an error
    /// ends the reconcile as [`decide::backend_error`] says.
    pub async fn call<T>(
        &mut self,
        type_: &'static str,
        operation: &'static str,
        fut: impl std::future::Future<Output = Result<T, BackendError>>,
    ) -> Result<T, Halt> {
        self.ctx
            .metrics
            .call(type_, operation, fut)
            .await
            .map_err(|e| decide::backend_error(&mut self.status, &self.facts, type_, operation, &e).into())
    }

    async fn save(&mut self) -> Result<(), Error> {
        if self.written.as_ref() != Some(&self.status) {
            self.ctx.apply_status(&self.api, self.rf, &self.status).await?;
            self.written = Some(self.status.clone());
        }
        Ok(())
    }

    /// The Secrets of the report's namespace, seen from this ReportFile.
    pub fn secrets(&self) -> ReportSecrets<'a> {
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
            self.r.ctx.now(),
        );
    }

    async fn save(&mut self) -> Result<(), Halt> {
        Ok(self.r.save().await?)
    }

    async fn find(&mut self) -> Result<Option<RemoteReport>, Halt> {
        let taken = self.r.ids_taken(self.rb);
        let type_ = self.rb.spec.type_.as_str();
        self.r
            .call(type_, "find", self.backend.find(self.req, &taken))
            .await
    }

    async fn submit(&mut self) -> Result<RemoteReport, Halt> {
        self.r.seed_in_flight(self.rb);
        let type_ = self.rb.spec.type_.as_str();
        self.r.call(type_, "submit", self.backend.submit(self.req)).await
    }
}
