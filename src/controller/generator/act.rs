//! The ReportGenerator's calls: create the ReportFiles [`super::decide`] planned, list the
//! reports a backend made, delete reports beyond the history limits. Each step returns the
//! [`Outcome`] `decide` gives for what happened.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::StreamExt;
use kube::ResourceExt;
use kube::api::{Api, ListParams};
use kube::runtime::events::EventType;
use tracing::info;

use super::dates::Coverage;
use super::decide::{self, MIRROR_INTERVAL, PeriodicPass};
use super::files::{Ensured, FileConflict, PlannedFile, ensure_file};
use super::pacing;
use crate::api::reasons::EventReason;
use crate::api::{
    BackendType, EventType as ReportEventType, LABEL_GENERATOR, ReportBackend, ReportFile, ReportGenerator,
    ReportGeneratorStatus, label_value,
};
use crate::backend::{ListQuery, RemoteReport, ReportingBackend};
use crate::controller::conditions::from_k8s_time;
use crate::controller::context::Context;
use crate::controller::error::Error;
use crate::controller::outcome::Outcome;

/// Files of one window created at once: a SUPPLIER window has one per organization (up to
/// 100), and one create and one Event after the other made a 20-organization fan-out wait
/// seconds for its last files (each create and Event took 50 to 500 ms on a busy API server).
const CREATE_CONCURRENCY: usize = 32;

/// Creates `files`, [`CREATE_CONCURRENCY`] at a time. The first conflict in plan order, if
/// any, is the outcome, with the index of its file; an error ends the pass, and the next pass
/// finds the files made.
pub async fn create(
    ctx: &Context,
    g: &ReportGenerator,
    files: Vec<PlannedFile>,
    status: &mut ReportGeneratorStatus,
    now: DateTime<Utc>,
) -> Result<Option<(usize, FileConflict)>, Error> {
    let results: Vec<_> = futures::stream::iter(files.into_iter().map(|file| async move {
        // Each create writes only `lastScheduleTime` (to `now`): a copy per file, merged below.
        let mut own = ReportGeneratorStatus::default();
        let ensured = ensure_file(ctx, g, file, &mut own, now).await;
        (ensured, own.last_schedule_time)
    }))
    .buffered(CREATE_CONCURRENCY)
    .collect()
    .await;
    let mut conflict = None;
    for (i, (ensured, scheduled)) in results.into_iter().enumerate() {
        if scheduled.is_some() {
            status.last_schedule_time = scheduled;
        }
        if let Ensured::Conflict(c) = ensured? {
            conflict.get_or_insert((i, c));
        }
    }
    Ok(conflict)
}

/// ONETIME: creates the report's ReportFiles.
pub async fn onetime(
    ctx: &Context,
    g: &ReportGenerator,
    files: Vec<PlannedFile>,
    status: &mut ReportGeneratorStatus,
    now: DateTime<Utc>,
) -> Result<Outcome, Error> {
    Ok(create(ctx, g, files, status, now)
        .await?
        .map_or(Outcome::working(None), |(_, c)| decide::file_conflict(c)))
}

/// PERIODIC on a backend the operator schedules: creates the ReportFiles of the windows that
/// are due, records the missed ones, and comes back at the next run time.
pub async fn periodic(
    ctx: &Context,
    g: &ReportGenerator,
    owned: &[Arc<ReportFile>],
    status: &mut ReportGeneratorStatus,
    now: DateTime<Utc>,
    coverage: Coverage,
) -> Result<Outcome, Error> {
    let schedulable = match decide::periodic(g, status, now, coverage) {
        Ok(s) => s,
        Err(outcome) => return Ok(outcome),
    };
    let cached = decide::in_progress(owned);
    let active = if decide::needs_live_count(g, cached) {
        running_files(ctx, g).await?
    } else {
        cached
    };
    let pass = schedulable.pass(g, status, active, now);
    // The files of all the windows due are made at once (a backfill or a fan-out does not
    // wait window by window). The start of the first window whose file name is taken by
    // another's file is where the pass stops: it and the windows after it are recorded by a
    // later pass, which finds the later windows' files made already.
    let (starts, files): (Vec<_>, Vec<_>) = pass
        .plan
        .create
        .iter()
        .flat_map(|window| pass.files(g, window).into_iter().map(|file| (window.start, file)))
        .unzip();
    let stop = create(ctx, g, files, status, now)
        .await?
        .and_then(|(i, c)| Some((*starts.get(i)?, c)));
    record_missed(ctx, g, &pass, stop.as_ref().map(|(s, _)| *s)).await;
    let outcome = decide::finish_periodic(&pass, stop, status, now);
    prune(ctx, g, owned).await?;
    Ok(outcome)
}

async fn record_missed(ctx: &Context, g: &ReportGenerator, pass: &PeriodicPass, stop: Option<DateTime<Utc>>) {
    for (window, why) in decide::missed_before(pass, stop) {
        ctx.metrics.missed_windows.inc();
        ctx.event(
            g,
            EventType::Warning,
            EventReason::Missed,
            decide::missed_message(&window, why, pass.coverage),
        )
        .await;
    }
}

/// Reports of this generator in progress, read from the API server.
async fn running_files(ctx: &Context, g: &ReportGenerator) -> Result<usize, Error> {
    let api: Api<ReportFile> = Api::namespaced(ctx.client.clone(), &g.namespace().unwrap_or_default());
    let selector = format!("{LABEL_GENERATOR}={}", label_value(&g.name_any()));
    let list = api.list(&ListParams::default().labels(&selector)).await?;
    let mine: Vec<Arc<ReportFile>> = list
        .items
        .into_iter()
        .filter(|rf| {
            rf.owner_references()
                .iter()
                .any(|o| Some(&o.uid) == g.uid().as_ref())
        })
        .map(Arc::new)
        .collect();
    Ok(decide::in_progress(&mine))
}

/// Deletes the oldest finished ReportFiles beyond the history limits; their Secrets go with
/// them (owner references).
pub async fn prune(ctx: &Context, g: &ReportGenerator, owned: &[Arc<ReportFile>]) -> Result<(), Error> {
    let api: Api<ReportFile> = Api::namespaced(ctx.client.clone(), &g.namespace().unwrap_or_default());
    for name in decide::to_prune(g, owned) {
        match api.delete(&name, &Default::default()).await {
            Ok(_) => {
                info!(generator = %g.name_any(), file = %name, "deleted ReportFile beyond the history limit")
            }
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// A generator that mirrors the reports its backend made (RDE report files, CMP invoice
/// reports), with what mirroring needs.
pub struct Mirror<'a> {
    pub ctx: &'a Context,
    pub g: &'a ReportGenerator,
    pub rb: &'a ReportBackend,
    pub backend: &'a dyn ReportingBackend,
    pub owned: &'a [Arc<ReportFile>],
    /// ReportFiles created earlier in this pass (RDE: from a replaced template), which the
    /// cache may not hold yet.
    pub mirrored_now: &'a [PlannedFile],
}

impl Mirror<'_> {
    /// Mirrors each report `query` lists into a ReportFile named after its id, exactly once.
    pub async fn once(
        &self,
        query: &ListQuery,
        status: &mut ReportGeneratorStatus,
    ) -> Result<Outcome, Error> {
        let Mirror { ctx, rb, backend, .. } = *self;
        let type_ = rb.spec.type_.as_str();
        let remote = match ctx.metrics.call(type_, "list", backend.list(query)).await {
            Ok(r) => r,
            Err(e) => return Ok(decide::backend_failed(type_, "list", &e)),
        };
        let (outcome, _) = self.listed(&remote, query.template_id.as_deref(), status).await?;
        Ok(outcome)
    }

    /// Mirrors the reports `remote` that (RDE) `template` made; also returns the ReportFiles
    /// created.
    pub async fn listed(
        &self,
        remote: &[RemoteReport],
        template: Option<&str>,
        status: &mut ReportGeneratorStatus,
    ) -> Result<(Outcome, Vec<PlannedFile>), Error> {
        let Mirror {
            ctx,
            g,
            owned,
            mirrored_now,
            ..
        } = *self;
        let (mut mirrored, mut blocked, mut conflict) = (Vec::new(), Vec::new(), None);
        let mut created = Vec::new();
        for (report, file) in decide::to_mirror(
            g,
            remote,
            owned,
            status.last_mirrored_time,
            template,
            mirrored_now,
        ) {
            match ensure_file(ctx, g, file.clone(), status, ctx.now()).await? {
                Ensured::Done => {
                    created.push(file);
                    mirrored.extend(report.generate_date);
                }
                Ensured::Conflict(c) => {
                    blocked.extend(report.generate_date);
                    conflict.get_or_insert(c);
                }
            }
        }
        status.last_mirrored_time = decide::mirror_mark(status.last_mirrored_time, &mirrored, &blocked);
        if let Some(c) = conflict {
            return Ok((decide::file_conflict(c), created));
        }
        Ok((
            Outcome::working(if remote.is_empty() {
                Some(self.waits(status, ctx.now()).0)
            } else {
                None
            }),
            created,
        ))
    }

    /// Mirrors, prunes the history, and lists again after the steady interval at the latest.
    pub async fn and_prune(
        &self,
        query: &ListQuery,
        status: &mut ReportGeneratorStatus,
    ) -> Result<Outcome, Error> {
        let outcome = self.once(query, status).await?;
        prune(self.ctx, self.g, self.owned).await?;
        Ok(outcome.or_requeue(self.waits(status, self.ctx.now()).1))
    }

    /// How long to wait before listing again: while no report comes, from 2 s doubling up to
    /// [`MIRROR_INTERVAL`] (first), else [`MIRROR_INTERVAL`] (second); both at least this
    /// generator's share of the backend's most restrictive budget.
    fn waits(&self, status: &ReportGeneratorStatus, now: DateTime<Utc>) -> (Duration, Duration) {
        let Mirror { ctx, g, rb, .. } = *self;
        let created = g.metadata.creation_timestamp.as_ref().map(from_k8s_time);
        let since = status.last_schedule_time.max(created).unwrap_or(now);
        let waited = (now - since).to_std().unwrap_or_default();
        let budgets: Vec<(u32, Duration)> = ctx
            .registry
            .limiter(rb)
            .map(|l| {
                l.config()
                    .budgets
                    .iter()
                    .map(|b| (b.requests, b.window))
                    .collect()
            })
            .unwrap_or_default();
        // Generators that list this backend for reports to mirror.
        let pollers = ctx
            .index
            .generators_of_backend(&rb.namespace().unwrap_or_default(), &rb.name_any())
            .iter()
            .filter(|o| rb.spec.type_ == BackendType::Rde || o.spec.event_type == ReportEventType::OnInvoice)
            .count();
        (
            pacing::mirror_interval(waited, MIRROR_INTERVAL, pollers, &budgets),
            pacing::mirror_interval(MIRROR_INTERVAL, MIRROR_INTERVAL, pollers, &budgets),
        )
    }
}
