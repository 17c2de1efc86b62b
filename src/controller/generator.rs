//! ReportGenerator: validate what the CRD schema cannot, create the ReportFiles (ONETIME: one;
//! RDE: one per report file the platform makes), and roll their states up into status.
//!
//! For RDE the generator is an RDEReportTemplate on the platform: it is created once (with the
//! same create-pending mark as ReportFiles, so a lost answer never makes a second template),
//! its report files are mirrored, and a finalizer deletes it when the generator goes.

mod files;
mod names;
mod pacing;
mod scheduled;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use futures::StreamExt;
use kube::api::Api;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::EventType;
use kube::runtime::finalizer::{self, Event as Finalizing, finalizer};
use kube::runtime::watcher;
use kube::ResourceExt;
use tracing::info;

use super::conditions::{Cond, from_k8s_time, set_condition};
use super::context::Context;
use super::registry::NotReady;
use super::guard::{self, error_policy};
use super::error::Error;
use super::queries::{ids_taken, users_of_backend};
use crate::api::{
    BackendType, EventType as ReportEventType, FileState, LocalObjectReference, ReportBackend, ReportCounts, ReportFile, ReportGenerator,
    ReportGeneratorStatus, ReportParameters,
};
use files::{Ensured, FileConflict, PlannedFile, ensure_file, fan_out, mirrored_file_name, onetime_days};
use crate::backend::{BackendError, Capabilities, ListQuery, RemoteReport, ReportRequest, ReportingBackend};

/// Finalizer that deletes the RDEReportTemplate on the platform.
pub const RDE_FINALIZER: &str = "reporting.report-operator.io/rde-template";
/// How often the backend is asked for new reports to mirror (RDE report files, CMP invoice
/// reports).
const MIRROR_INTERVAL: Duration = Duration::from_secs(30);
/// Windows created at most per pass; a longer backlog continues in the next pass, so that an
/// outage or a long backfill cannot flood the backend at once.
const MAX_WINDOWS_PER_PASS: usize = 10;
/// How soon a generator looks again at a ReportFile name taken by a file that is not its own:
/// an old generator's file is usually gone within seconds of garbage collection.
const CONFLICT_RETRY: Duration = Duration::from_secs(5);
/// The longest a throttled generator waits before it looks again; a finished report wakes it
/// sooner.
const THROTTLED_RETRY: Duration = Duration::from_secs(60);
/// The history limits' defaults, as CronJob's.
const DEFAULT_SUCCESSFUL_HISTORY: i32 = 3;
const DEFAULT_FAILED_HISTORY: i32 = 1;

pub async fn controller(
    ctl: Controller<ReportGenerator>,
    files: impl futures::Stream<Item = Arc<ReportFile>> + Send + 'static,
    backends: Api<ReportBackend>,
    ctx: Arc<Context>,
    concurrency: u16,
) {
    let store = ctl.store();
    ctl.with_config(kube::runtime::controller::Config::default().concurrency(concurrency))
        .owns_shared_stream(files)
        .watches(backends, watcher::Config::default(), move |rb| {
            users_of_backend(&store, &rb, |g: &ReportGenerator| (&g.spec.backend_ref.name, true))
        })
        .shutdown_on_signal()
        .run(reconcile, error_policy, ctx)
        .for_each(|_| async {})
        .await;
}

async fn reconcile(g: Arc<ReportGenerator>, ctx: Arc<Context>) -> Result<Action, Error> {
    guard::reconcile(g.as_ref(), &ctx, reconcile_inner(&g, &ctx)).await
}

/// Why the generator cannot make reports as written; a condition reason and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    pub reason: &'static str,
    pub message: String,
}

impl Invalid {
    fn new(reason: &'static str, message: impl Into<String>) -> Self {
        Invalid { reason, message: message.into() }
    }
}

/// What CEL cannot check: the backend's formats, event types and periods, and the
/// parameters each backend type needs.
pub fn validate(g: &ReportGenerator, rb: &ReportBackend, caps: &Capabilities) -> Result<(), Invalid> {
    use crate::api::BackendType::*;
    let spec = &g.spec;
    let type_ = rb.spec.type_;
    if !caps.event_types.contains(&spec.event_type) {
        return Err(Invalid::new(
            "UnsupportedEventType",
            format!("{} backends do not support eventType {}", type_.as_str(), event_type_name(spec.event_type)),
        ));
    }
    if !caps.formats.contains(&spec.format) {
        let supported: Vec<&str> = caps.formats.iter().map(|f| f.upper()).collect();
        return Err(Invalid::new(
            "UnsupportedFormat",
            format!("{} backends support format {}, not {}", type_.as_str(), supported.join(", "), spec.format.upper()),
        ));
    }
    let params = spec.parameters.clone().unwrap_or_default();
    if spec.event_type == ReportEventType::Periodic
        && let Some(period) = params.period
        && !caps.periods.contains(&period)
    {
        return Err(Invalid::new(
            "UnsupportedPeriod",
            format!("{} backends do not support period {period:?}", type_.as_str()),
        ));
    }
    let missing = match type_ {
        Connect if params.template.as_deref().unwrap_or_default().is_empty() => Some("parameters.template (the RT-… id)"),
        Supplier if params.report_type.as_deref().unwrap_or_default().is_empty() => {
            Some("parameters.reportType (e.g. REPORT_TYPE_TRIP_ACTIVITY)")
        }
        Fusion if params.scope.is_none() => Some("parameters.scope (level and uuid)"),
        _ => None,
    };
    if let Some(field) = missing {
        return Err(Invalid::new("InvalidParameters", format!("{} reports need {field}", type_.as_str())));
    }
    // The schema bounds it, but an object written before it may hold any number, and the
    // ReportFile's deadline arithmetic must not overflow.
    if let Some(s) = spec.active_deadline_seconds
        && (s < 1 || TimeDelta::try_seconds(s).is_none())
    {
        return Err(Invalid::new(
            "InvalidParameters",
            format!("activeDeadlineSeconds {s} is out of range: use 1 to {} (30 days)", crate::api::MAX_DEADLINE_SECONDS),
        ));
    }
    Ok(())
}

fn event_type_name(e: ReportEventType) -> &'static str {
    match e {
        ReportEventType::Onetime => "ONETIME",
        ReportEventType::Periodic => "PERIODIC",
        ReportEventType::OnInvoice => "ON_INVOICE",
    }
}

/// Counts and times of a generator's ReportFiles.
pub fn roll_up(files: &[Arc<ReportFile>], status: &mut ReportGeneratorStatus) {
    let mut counts = ReportCounts::default();
    let mut active = Vec::new();
    for rf in files {
        let st = rf.status.as_ref();
        match st.and_then(|s| s.status) {
            Some(FileState::Ready) => {
                counts.ready += 1;
                let t = st.and_then(|s| s.completion_time);
                status.last_successful_time = status.last_successful_time.max(t);
            }
            Some(FileState::Failed) => {
                counts.failed += 1;
                let t = st.and_then(|s| s.completion_time);
                status.last_failure_time = status.last_failure_time.max(t);
            }
            Some(FileState::InProgress) | None => {
                counts.in_progress += 1;
                active.push(LocalObjectReference { name: rf.name_any() });
            }
        }
    }
    active.sort_by(|a, b| a.name.cmp(&b.name));
    status.reports = counts;
    status.active = active;
}

async fn reconcile_inner(g: &ReportGenerator, ctx: &Context) -> Result<Action, Error> {
    let namespace = g.namespace().ok_or_else(|| Error::Invalid("ReportGenerator without namespace".into()))?;
    let name = g.name_any();
    let api: Api<ReportGenerator> = Api::namespaced(ctx.client.clone(), &namespace);
    let now = Utc::now();
    let old = g.status.clone().unwrap_or_default();
    let mut status = ReportGeneratorStatus { observed_generation: g.metadata.generation, ..old.clone() };

    // Not before the caches are filled; and an older status would plan its windows again (and
    // write older fields back).
    if let Some(wait) = ctx.hold_back(g).await {
        return Ok(wait);
    }
    if g.metadata.deletion_timestamp.is_some() {
        return finalize(Arc::new(g.clone()), ctx, &api).await;
    }

    let owned = owned_files(ctx, g);

    let outcome = match ctx.ready_backend(&namespace, &g.spec.backend_ref.name).await {
        Err(not_ready) => Outcome::NotReady(not_ready),
        Ok((rb, backend)) => {
            let caps = backend.capabilities();
            match validate(g, &rb, &caps) {
                Err(invalid) => Outcome::Invalid(invalid),
                Ok(()) if caps.platform_scheduled => {
                    rde(g, ctx, &api, &rb, backend.as_ref(), &mut status, &owned).await?
                }
                Ok(()) => match g.spec.event_type {
                    ReportEventType::Onetime => {
                        let params = g.spec.parameters.clone().unwrap_or_default();
                        let [from, to] = onetime_days(&params);
                        let mut conflict = None;
                        for file in fan_out(g, &[&name, &from, &to], params) {
                            if let Ensured::Conflict(c) = ensure_file(ctx, g, file, &mut status, now).await? {
                                conflict.get_or_insert(c);
                            }
                        }
                        conflict.map_or(Outcome::Ok(None), Outcome::Conflict)
                    }
                    ReportEventType::Periodic => scheduled::periodic(g, ctx, &owned, &mut status, now).await?,
                    // CMP makes invoice reports itself; validate() refused the other backends.
                    ReportEventType::OnInvoice => {
                        let created = g.metadata.creation_timestamp.as_ref().map(from_k8s_time).unwrap_or(now);
                        let query = ListQuery {
                            name: Some(g.spec.common_name.clone()),
                            event_type: Some(ReportEventType::OnInvoice),
                            from: Some(status.last_mirrored_time.unwrap_or(created)),
                            to: Some(now),
                            ..Default::default()
                        };
                        let outcome = mirror(g, ctx, &rb, backend.as_ref(), &query, &owned, &mut status).await?;
                        prune_history(ctx, g, &owned).await?;
                        outcome.or_requeue(mirror_waits(ctx, g, &rb, &status, now).1)
                    }
                },
            }
        }
    };

    // Files created in this pass are in the store only after the watch sees them.
    roll_up(&owned_files(ctx, g), &mut status);
    let (cond, requeue) = match &outcome {
        Outcome::NotReady(n) => (Cond::ready(false, n.reason, n.message.clone()), Some(Duration::from_secs(30))),
        Outcome::Invalid(i) => (Cond::ready(false, i.reason, i.message.clone()), None),
        Outcome::Retry(msg, after) => (Cond::ready(false, "BackendError", msg.clone()), Some(*after)),
        Outcome::Ok(requeue) => (ready_condition(g, &status), *requeue),
        Outcome::Throttled(message, requeue) => (Cond::ready(true, "Throttled", message.clone()), Some(*requeue)),
        Outcome::Conflict(c) if c.deleting => (ready_condition(g, &status), Some(CONFLICT_RETRY)),
        Outcome::Conflict(c) => (
            Cond::ready(
                false,
                "FileConflict",
                format!(
                    "ReportFile {:?} exists but is not this generator's (left by an earlier generator of the same name, or made by someone else): delete it, or rename the generator",
                    c.name
                ),
            ),
            Some(CONFLICT_RETRY),
        ),
    };
    let changed_reason = g
        .status
        .as_ref()
        .and_then(|s| crate::api::find_condition(&s.conditions, crate::api::CONDITION_READY))
        .map(|c| c.reason.clone());
    set_condition(&mut status.conditions, cond.clone(), g.metadata.generation, now);
    if status != old {
        ctx.apply_status(&api, g, &status).await?;
    }
    // A backend that is not Ready publishes its own Event; a generator only adds its own
    // problems (and a missing backend, which has no one else to tell).
    let own_problem = matches!(&outcome, Outcome::Invalid(_) | Outcome::Throttled(..))
        || matches!(&outcome, Outcome::Conflict(c) if !c.deleting)
        || matches!(&outcome, Outcome::NotReady(n) if n.reason == "BackendNotFound");
    if changed_reason.as_deref() != Some(cond.reason) && own_problem {
        ctx.event(g, EventType::Warning, cond.reason, cond.message.clone()).await;
    }
    Ok(requeue.map(Action::requeue).unwrap_or_else(Action::await_change))
}

impl Outcome {
    /// A working generator is looked at again after `interval` at the latest.
    fn or_requeue(self, interval: Duration) -> Outcome {
        match self {
            Outcome::Ok(None) => Outcome::Ok(Some(interval)),
            other => other,
        }
    }
}

enum Outcome {
    /// Valid and working; requeue after the given time, if any.
    Ok(Option<Duration>),
    NotReady(NotReady),
    Invalid(Invalid),
    /// Valid, but windows wait because the generator has
    /// [`MAX_IN_PROGRESS_PER_GENERATOR`](super::periodic::MAX_IN_PROGRESS_PER_GENERATOR)
    /// reports in progress: Ready stays True (the generator works, only slower) with reason
    /// `Throttled`; a finished report wakes it, else it looks again after the duration.
    Throttled(String, Duration),
    /// A ReportFile name is taken by a file that is not this generator's: its report is not
    /// counted as made, and the generator looks again after [`CONFLICT_RETRY`].
    Conflict(FileConflict),
    /// A transient backend problem.
    Retry(String, Duration),
}

/// Ready of a valid generator: for ONETIME, whether its report is READY; for the others,
/// that it is scheduling reports.
fn ready_condition(g: &ReportGenerator, status: &ReportGeneratorStatus) -> Cond<'static> {
    let r = &status.reports;
    match g.spec.event_type {
        ReportEventType::Onetime if r.ready > 0 => Cond::ready(true, "ReportReady", "the report is READY"),
        ReportEventType::Onetime if r.failed > 0 => Cond::ready(false, "ReportFailed", "the report FAILED; see its ReportFile"),
        ReportEventType::Onetime => Cond::ready(false, "ReportInProgress", "the report is being generated"),
        _ => Cond::ready(true, "Scheduled", format!("{} READY, {} in progress, {} FAILED", r.ready, r.in_progress, r.failed)),
    }
}

fn owned_files(ctx: &Context, g: &ReportGenerator) -> Vec<Arc<ReportFile>> {
    let uid = g.uid();
    ctx.files
        .state()
        .into_iter()
        .filter(|rf| rf.namespace() == g.namespace() && rf.owner_references().iter().any(|o| Some(&o.uid) == uid.as_ref()))
        .collect()
}

/// Deletes the oldest finished ReportFiles beyond the history limits; their Secrets go with
/// them (owner references).
async fn prune_history(ctx: &Context, g: &ReportGenerator, owned: &[Arc<ReportFile>]) -> Result<(), Error> {
    let sched = g.spec.schedule.clone().unwrap_or_default();
    let keep_ready = sched.successful_reports_history_limit.unwrap_or(DEFAULT_SUCCESSFUL_HISTORY).max(0) as usize;
    let keep_failed = sched.failed_reports_history_limit.unwrap_or(DEFAULT_FAILED_HISTORY).max(0) as usize;
    let api: Api<ReportFile> = Api::namespaced(ctx.client.clone(), &g.namespace().unwrap_or_default());
    for name in beyond_history(owned, keep_ready, keep_failed) {
        match api.delete(&name, &Default::default()).await {
            Ok(_) => info!(generator = %g.name_any(), file = %name, "deleted ReportFile beyond the history limit"),
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Names of finished ReportFiles beyond the limits: the oldest by window end (then
/// completion), keeping the newest `keep_ready` READY and `keep_failed` FAILED.
pub fn beyond_history(files: &[Arc<ReportFile>], keep_ready: usize, keep_failed: usize) -> Vec<String> {
    let mut out = Vec::new();
    for (state, keep) in [(FileState::Ready, keep_ready), (FileState::Failed, keep_failed)] {
        let mut of_state: Vec<&Arc<ReportFile>> =
            files.iter().filter(|rf| rf.status.as_ref().and_then(|s| s.status) == Some(state)).collect();
        let key = |rf: &Arc<ReportFile>| {
            let end = rf.spec.parameters.as_ref().and_then(|p| p.end_date);
            let done = rf.status.as_ref().and_then(|s| s.completion_time);
            (end, done, rf.name_any())
        };
        of_state.sort_by_key(|rf| std::cmp::Reverse(key(rf)));
        out.extend(of_state.into_iter().skip(keep).map(|rf| rf.name_any()));
    }
    out
}

/// Mirrors each report the backend made (RDE report files, CMP invoice reports) into a
/// ReportFile named after its id, exactly once.
async fn mirror(
    g: &ReportGenerator,
    ctx: &Context,
    rb: &ReportBackend,
    backend: &dyn ReportingBackend,
    query: &ListQuery,
    owned: &[Arc<ReportFile>],
    status: &mut ReportGeneratorStatus,
) -> Result<Outcome, Error> {
    let type_ = rb.spec.type_.as_str();
    let remote = match ctx.metrics.call(type_, "list", backend.list(query)).await {
        Ok(r) => r,
        Err(e) => return Ok(retry(type_, "list", e)),
    };
    let (mut mirrored, mut blocked, mut conflict) = (Vec::new(), Vec::new(), None);
    for report in &remote {
        if owned.iter().any(|rf| rf.spec.external_id.as_deref() == Some(report.id.as_str())) {
            continue;
        }
        // Older than the newest mirrored one: mirrored before and since pruned.
        if let (Some(t), Some(mark)) = (report.generate_date, status.last_mirrored_time)
            && t < mark
        {
            continue;
        }
        let file = PlannedFile {
            name: mirrored_file_name(&g.name_any(), &report.id),
            parameters: mirrored_parameters(g, report),
            organization: None,
            external_id: Some(report.id.clone()),
        };
        match ensure_file(ctx, g, file, status, Utc::now()).await? {
            Ensured::Done => mirrored.extend(report.generate_date),
            Ensured::Conflict(c) => {
                blocked.extend(report.generate_date);
                conflict.get_or_insert(c);
            }
        }
    }
    status.last_mirrored_time = mirror_mark(status.last_mirrored_time, &mirrored, &blocked);
    if let Some(c) = conflict {
        return Ok(Outcome::Conflict(c));
    }
    Ok(Outcome::Ok(if remote.is_empty() { Some(mirror_waits(ctx, g, rb, status, Utc::now()).0) } else { None }))
}

/// The new `status.lastMirroredTime`: the newest generation time of the reports mirrored, but
/// not at or past one whose file name is taken (`blocked`): that report is not mirrored yet,
/// and a mark past it would skip it for good.
fn mirror_mark(old: Option<DateTime<Utc>>, mirrored: &[DateTime<Utc>], blocked: &[DateTime<Utc>]) -> Option<DateTime<Utc>> {
    let limit = blocked.iter().min();
    mirrored.iter().filter(|t| limit.is_none_or(|l| *t < l)).copied().chain(old).max()
}

/// How long a mirroring generator waits before it lists again: while no report comes, from
/// 2 s doubling up to [`MIRROR_INTERVAL`] (first), else [`MIRROR_INTERVAL`] (second); both at
/// least this generator's share of the backend's most restrictive budget.
fn mirror_waits(ctx: &Context, g: &ReportGenerator, rb: &ReportBackend, status: &ReportGeneratorStatus, now: DateTime<Utc>) -> (Duration, Duration) {
    let created = g.metadata.creation_timestamp.as_ref().map(from_k8s_time);
    let since = status.last_schedule_time.max(created).unwrap_or(now);
    let waited = (now - since).to_std().unwrap_or_default();
    let budgets: Vec<(u32, Duration)> = ctx
        .registry
        .limiter(rb)
        .map(|l| l.config().budgets.iter().map(|b| (b.requests, b.window)).collect())
        .unwrap_or_default();
    // Generators that list this backend for reports to mirror.
    let pollers = ctx
        .generators
        .state()
        .iter()
        .filter(|o| o.namespace() == rb.namespace() && o.spec.backend_ref.name == rb.name_any())
        .filter(|o| rb.spec.type_ == BackendType::Rde || o.spec.event_type == ReportEventType::OnInvoice)
        .count();
    (
        pacing::mirror_interval(waited, MIRROR_INTERVAL, pollers, &budgets),
        pacing::mirror_interval(MIRROR_INTERVAL, MIRROR_INTERVAL, pollers, &budgets),
    )
}

/// RDE: the platform schedules; make sure the template exists and mirror its report files.
async fn rde(
    g: &ReportGenerator,
    ctx: &Context,
    api: &Api<ReportGenerator>,
    rb: &ReportBackend,
    backend: &dyn ReportingBackend,
    status: &mut ReportGeneratorStatus,
    owned: &[Arc<ReportFile>],
) -> Result<Outcome, Error> {
    ensure_finalizer(g, api).await?;
    let req = template_request(g);
    let type_ = rb.spec.type_.as_str();
    let template_id = match status.external_id.clone() {
        Some(id) => id,
        None => {
            let found = if status.create_pending_since.is_some() {
                let taken = ids_taken(ctx, &ctx.generators, g, rb, |other: &ReportGenerator| {
                    (&other.spec.backend_ref.name, other.status.as_ref().and_then(|s| s.external_id.as_deref()))
                });
                match ctx.metrics.call(type_, "find", backend.find(&req, &taken)).await {
                    Ok(found) => found,
                    Err(e) => return Ok(retry(type_, "find", e)),
                }
            } else {
                None
            };
            let template = match found {
                Some(t) => t,
                None => {
                    // The mark goes to the API server before the platform hears of the template.
                    status.create_pending_since = Some(Utc::now());
                    ctx.apply_status(api, g, &*status).await?;
                    match ctx.metrics.call(type_, "submit", backend.submit(&req)).await {
                        Ok(t) => t,
                        Err(e) => return Ok(retry(type_, "submit", e)),
                    }
                }
            };
            status.external_id = Some(template.id.clone());
            status.create_pending_since = None;
            ctx.apply_status(api, g, &*status).await?;
            ctx.event(g, EventType::Normal, "Submitted", format!("created RDEReportTemplate {}", template.id)).await;
            template.id
        }
    };
    if g.spec.event_type == ReportEventType::Periodic {
        // The platform schedules: its next report date is the generator's.
        match ctx.metrics.call(type_, "get", backend.get(&template_id, &req)).await {
            Ok(template) => status.next_report_date = template.next_report_date,
            Err(e) => return Ok(retry(type_, "get", e)),
        }
    }
    let query = ListQuery { template_id: Some(template_id), ..Default::default() };
    let outcome = mirror(g, ctx, rb, backend, &query, owned, status).await?;
    if g.spec.event_type == ReportEventType::Onetime {
        // A ONETIME template has one report file; once it is mirrored there is nothing to list.
        let mirrored = !owned.is_empty() || matches!(outcome, Outcome::Ok(None));
        return Ok(if mirrored { Outcome::Ok(None) } else { outcome });
    }
    prune_history(ctx, g, owned).await?;
    Ok(outcome.or_requeue(mirror_waits(ctx, g, rb, status, Utc::now()).1))
}

/// The parameters of a mirrored report: the backend's period where it says, else the
/// generator's.
fn mirrored_parameters(g: &ReportGenerator, remote: &RemoteReport) -> ReportParameters {
    let mut params = g.spec.parameters.clone().unwrap_or_default();
    if remote.start_date.is_some() {
        params.start_date = remote.start_date;
    }
    if remote.end_date.is_some() {
        params.end_date = remote.end_date;
    }
    params
}

fn template_request(g: &ReportGenerator) -> ReportRequest {
    ReportRequest {
        key: format!("{}/{}", g.namespace().unwrap_or_default(), g.name_any()),
        name: g.spec.common_name.clone(),
        event_type: g.spec.event_type,
        format: g.spec.format,
        notify_by_email: g.spec.notify_by_email.unwrap_or(false),
        parameters: g.spec.parameters.clone().unwrap_or_default(),
        organization: None,
    }
}

fn retry(type_: &'static str, operation: &'static str, e: BackendError) -> Outcome {
    match e.action() {
        crate::backend::ErrorAction::Retry { after } => {
            Outcome::Retry(format!("{operation} on {type_}: {e}"), after.unwrap_or(Duration::from_secs(5)))
        }
        crate::backend::ErrorAction::BackendNotReady { reason, message } => Outcome::NotReady(NotReady::new(reason, message)),
        crate::backend::ErrorAction::FailReport { reason } => {
            Outcome::Invalid(Invalid::new("Rejected", format!("{type_} refused the report template: {reason}")))
        }
    }
}

/// Adds the RDE finalizer: only RDE generators get one, since only they leave something
/// outside the cluster (the template). kube's [`finalizer()`] is called here, in the RDE branch,
/// and not around the whole reconcile, which would put the finalizer on every generator. Its
/// `Apply` does nothing: the helper returns right after adding the finalizer, and the RDE step
/// goes on in the same pass (the template is created without waiting for another reconcile).
async fn ensure_finalizer(g: &ReportGenerator, api: &Api<ReportGenerator>) -> Result<(), Error> {
    if g.finalizers().iter().any(|f| f == RDE_FINALIZER) {
        return Ok(());
    }
    let nothing_to_apply = |_: Finalizing<ReportGenerator>| async { Ok::<_, NotYet>(Action::await_change()) };
    finalizer(api, RDE_FINALIZER, Arc::new(g.clone()), nothing_to_apply).await.or_else(finalizer_outcome)?;
    Ok(())
}

/// The generator `g` is being deleted: kube's [`finalizer()`] runs [`delete_template`] if `g`
/// still has the RDE finalizer and removes the finalizer once that succeeded.
async fn finalize(g: Arc<ReportGenerator>, ctx: &Context, api: &Api<ReportGenerator>) -> Result<Action, Error> {
    let cleanup = |event| async move {
        match event {
            Finalizing::Cleanup(g) => delete_template(&g, ctx).await,
            // Not reached: `finalize` is only called for a generator being deleted.
            Finalizing::Apply(_) => Ok(Action::await_change()),
        }
    };
    finalizer(api, RDE_FINALIZER, g, cleanup).await.or_else(finalizer_outcome)
}

/// The template cannot be deleted yet: the finalizer stays and the generator is looked at
/// again after the duration (not an error: the backend tells its own story in Events).
#[derive(Debug, thiserror::Error)]
#[error("the RDE template cannot be deleted yet")]
struct NotYet(Duration);

/// A [`finalizer()`] failure as a reconcile result: [`NotYet`] is a plain requeue.
fn finalizer_outcome(e: finalizer::Error<NotYet>) -> Result<Action, Error> {
    match e {
        finalizer::Error::ApplyFailed(NotYet(after)) | finalizer::Error::CleanupFailed(NotYet(after)) => Ok(Action::requeue(after)),
        finalizer::Error::AddFinalizer(e) | finalizer::Error::RemoveFinalizer(e) => Err(Error::Kube(e)),
        other => Err(Error::Invalid(other.to_string())),
    }
}

/// Deletes the RDE template, so that the finalizer can go. A backend that no longer exists
/// cannot be cleaned up: the finalizer is removed with a Warning rather than blocking forever.
async fn delete_template(g: &ReportGenerator, ctx: &Context) -> Result<Action, NotYet> {
    let namespace = g.namespace().unwrap_or_default();
    if let Some(template_id) = g.status.as_ref().and_then(|s| s.external_id.clone()) {
        match ctx.ready_backend(&namespace, &g.spec.backend_ref.name).await {
            Ok((rb, backend)) => match ctx.metrics.call(rb.spec.type_.as_str(), "delete", backend.delete_template(&template_id)).await {
                Ok(()) => {
                    ctx.event(g, EventType::Normal, "Deleted", format!("deleted RDEReportTemplate {template_id}")).await;
                }
                Err(e) => {
                    ctx.event(g, EventType::Warning, "BackendError", format!("deleting RDEReportTemplate {template_id}: {e}")).await;
                    return Err(NotYet(Duration::from_secs(10)));
                }
            },
            Err(n) if n.reason == "BackendNotFound" => {
                ctx.event(g, EventType::Warning, "TemplateLeft", format!("RDEReportTemplate {template_id} was not deleted: {}", n.message)).await;
            }
            Err(n) => {
                ctx.event(g, EventType::Warning, "BackendError", format!("cannot delete RDEReportTemplate {template_id} yet: {}", n.message)).await;
                return Err(NotYet(Duration::from_secs(30)));
            }
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

    #[test]
    fn the_mirror_mark_never_passes_a_report_whose_file_name_is_taken() {
        let (d1, d2, d3) = (t("2026-11-01T00:00:00Z"), t("2026-11-02T00:00:00Z"), t("2026-11-03T00:00:00Z"));
        // (old mark, mirrored, blocked, new mark)
        let cases = [
            (None, vec![], vec![], None),
            (Some(d1), vec![], vec![], Some(d1)),
            (None, vec![d1, d3, d2], vec![], Some(d3)),
            (None, vec![d1, d3], vec![d2], Some(d1)),
            (Some(d1), vec![d3], vec![d2], Some(d1)),
            (None, vec![d2], vec![d2], None),
        ];
        for (old, mirrored, blocked, expected) in cases {
            assert_eq!(mirror_mark(old, &mirrored, &blocked), expected, "{old:?} {mirrored:?} {blocked:?}");
        }
    }
}
