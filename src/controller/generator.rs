//! ReportGenerator: validate what the CRD schema cannot, create the ReportFiles (ONETIME: one;
//! RDE: one per report file the platform makes), and roll their states up into status.
//!
//! For RDE the generator is an RDEReportTemplate on the platform: it is created once (with the
//! same create-pending mark as ReportFiles, so a lost answer never makes a second template),
//! its report files are mirrored, and a finalizer deletes it when the generator goes.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::StreamExt;
use kube::api::{Api, ListParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::EventType;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};
use tracing::info;

use super::conditions::{Cond, from_k8s_time, set_condition};
use super::periodic::{self, Missed, PlanInput};
use super::context::Context;
use super::registry::NotReady;
use super::guard::{self, error_policy};
use super::{Error, ids_taken, users_of_backend};
use crate::api::{
    ANNOTATION_RUN_NOW, ConcurrencyPolicy, EventType as ReportEventType, FileState, LABEL_GENERATOR, LocalObjectReference, ReportBackend, ReportCounts,
    ReportFile, ReportFileSpec, ReportGenerator, ReportGeneratorStatus, ReportParameters, label_value,
};
use crate::backend::{BackendError, Capabilities, ListQuery, RemoteReport, ReportRequest, ReportingBackend};
use crate::schedule::ReportSchedule;

/// Finalizer that deletes the RDEReportTemplate on the platform.
pub const RDE_FINALIZER: &str = "reporting.report-operator.io/rde-template";
/// How often the backend is asked for new reports to mirror (RDE report files, CMP invoice
/// reports).
const MIRROR_INTERVAL: Duration = Duration::from_secs(30);
/// Windows created at most per pass; a longer backlog continues in the next pass, so that an
/// outage or a long backfill cannot flood the backend at once.
const MAX_WINDOWS_PER_PASS: usize = 10;
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
    Ok(())
}

fn event_type_name(e: ReportEventType) -> &'static str {
    match e {
        ReportEventType::Onetime => "ONETIME",
        ReportEventType::Periodic => "PERIODIC",
        ReportEventType::OnInvoice => "ON_INVOICE",
    }
}

/// The name of the one ReportFile of a ONETIME generator: the generator and its period, so
/// that a retry or restart finds the same object and a changed period makes a new one.
pub fn onetime_file_name(generator: &str, params: &ReportParameters) -> String {
    let day = |t: Option<DateTime<Utc>>| t.map(|t| t.format("%Y%m%d").to_string()).unwrap_or_else(|| "x".into());
    format!("{generator}-{}-{}", day(params.start_date), day(params.end_date))
}

/// The name of a ReportFile mirrored from a report the backend made: the generator and the
/// backend's id.
pub fn mirrored_file_name(generator: &str, external_id: &str) -> String {
    let id: String = external_id
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '-' })
        .collect();
    format!("{generator}-{}", id.trim_matches('-'))
}

/// The ReportFile a generator owns for one report: a snapshot of the request, which is
/// immutable from then on.
pub fn build_file(g: &ReportGenerator, planned: PlannedFile) -> ReportFile {
    let PlannedFile { name, parameters, organization, external_id } = planned;
    let spec = &g.spec;
    let mut labels = std::collections::BTreeMap::new();
    labels.insert(LABEL_GENERATOR.to_string(), label_value(&g.name_any()));
    ReportFile {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: g.namespace(),
            labels: Some(labels),
            owner_references: g.controller_owner_ref(&()).map(|o| vec![o]),
            ..Default::default()
        },
        spec: ReportFileSpec {
            generator_ref: Some(LocalObjectReference { name: g.name_any() }),
            backend_ref: spec.backend_ref.clone(),
            name: spec.common_name.clone(),
            event_type: spec.event_type,
            format: spec.format,
            notify_by_email: spec.notify_by_email,
            parameters: Some(parameters),
            organization,
            external_id,
            template_id: g.status.as_ref().and_then(|s| s.external_id.clone()),
            secret_template: spec.secret_template.clone(),
            active_deadline_seconds: spec.active_deadline_seconds,
        },
        status: None,
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
        return finalize(g, ctx, &api).await;
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
                        for file in fan_out(g, onetime_file_name(&name, &params), params) {
                            ensure_file(ctx, g, file, &mut status, now).await?;
                        }
                        Outcome::Ok(None)
                    }
                    ReportEventType::Periodic => periodic(g, ctx, &owned, &mut status, now).await?,
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
                        let outcome = mirror(g, ctx, rb.spec.type_.as_str(), backend.as_ref(), &query, &owned, &mut status).await?;
                        prune_history(ctx, g, &owned).await?;
                        outcome.or_requeue(MIRROR_INTERVAL)
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
    let own_problem = matches!(&outcome, Outcome::Invalid(_))
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

/// A ReportFile the generator is about to create.
pub struct PlannedFile {
    pub name: String,
    pub parameters: ReportParameters,
    pub organization: Option<String>,
    pub external_id: Option<String>,
}

/// The ReportFiles of one report: one, or (SUPPLIER `parameters.organizations`) one per
/// organization, each named after it.
pub fn fan_out(g: &ReportGenerator, base: String, parameters: ReportParameters) -> Vec<PlannedFile> {
    let orgs = g.spec.parameters.as_ref().and_then(|p| p.organizations.clone()).unwrap_or_default();
    if orgs.is_empty() {
        return vec![PlannedFile { name: base, parameters, organization: None, external_id: None }];
    }
    orgs.into_iter()
        .map(|org| PlannedFile {
            name: mirrored_file_name(&base, &org),
            parameters: ReportParameters { organizations: None, ..parameters.clone() },
            organization: Some(org),
            external_id: None,
        })
        .collect()
}

/// Creates a ReportFile unless it exists; AlreadyExists means a previous pass made it.
async fn ensure_file(
    ctx: &Context,
    g: &ReportGenerator,
    file: PlannedFile,
    status: &mut ReportGeneratorStatus,
    now: DateTime<Utc>,
) -> Result<(), Error> {
    let namespace = g.namespace().unwrap_or_default();
    let name = file.name.clone();
    if ctx.files.get(&ObjectRef::new(&name).within(&namespace)).is_some() {
        return Ok(());
    }
    let api: Api<ReportFile> = Api::namespaced(ctx.client.clone(), &namespace);
    let file = build_file(g, file);
    match api.create(&PostParams { field_manager: Some(super::conditions::FIELD_MANAGER.into()), ..Default::default() }, &file).await {
        Ok(_) => {
            status.last_schedule_time = Some(now);
            info!(generator = %g.name_any(), file = %name, "created ReportFile");
            ctx.event(g, EventType::Normal, "Created", format!("created ReportFile {name:?}")).await;
            Ok(())
        }
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// PERIODIC on a backend the operator schedules: create the ReportFiles of the windows that
/// are due, record the missed ones, and come back at the next run time.
async fn periodic(
    g: &ReportGenerator,
    ctx: &Context,
    owned: &[Arc<ReportFile>],
    status: &mut ReportGeneratorStatus,
    now: DateTime<Utc>,
) -> Result<Outcome, Error> {
    let params = g.spec.parameters.clone().unwrap_or_default();
    let sched = g.spec.schedule.clone().unwrap_or_default();
    let Some(period) = params.period else {
        return Ok(Outcome::Invalid(Invalid::new("InvalidParameters", "PERIODIC reports need parameters.period")));
    };
    let schedule = match ReportSchedule::new(period, sched.time_zone.as_deref(), sched.cron.as_deref()) {
        Ok(s) => s,
        Err(e) => return Ok(Outcome::Invalid(Invalid::new("InvalidSchedule", e.to_string()))),
    };
    let forbid = sched.concurrency_policy == Some(ConcurrencyPolicy::Forbid);
    // Under Forbid the API server, not the cache, says whether a report is running: a file
    // created a moment ago may not be in the cache yet.
    let active = if forbid { running_files(ctx, g).await? } else { 0 };
    let run_now_value = g.annotations().get(ANNOTATION_RUN_NOW).cloned();
    let run_now = run_now_value.is_some() && run_now_value != status.last_run_now;
    let input = PlanInput {
        schedule: &schedule,
        now,
        created: g.metadata.creation_timestamp.as_ref().map(from_k8s_time).unwrap_or(now),
        backfill_from: params.start_date,
        last_window_end: status.last_window_end,
        last_check: status.last_schedule_check_time,
        suspended: sched.suspend.unwrap_or(false),
        starting_deadline: sched.starting_deadline_seconds.map(chrono::Duration::seconds),
        catch_up: sched.catch_up_policy.unwrap_or_default(),
        forbid,
        active,
        max_per_pass: MAX_WINDOWS_PER_PASS,
        run_now,
    };
    let plan = periodic::plan(&input);
    for window in &plan.create {
        let window_params = ReportParameters {
            start_date: Some(window.start),
            end_date: Some(window.end),
            ..params.clone()
        };
        let base = format!("{}-{}", g.name_any(), schedule.window_suffix(window));
        for file in fan_out(g, base, window_params) {
            ensure_file(ctx, g, file, status, now).await?;
        }
    }
    for (window, why) in &plan.missed {
        ctx.metrics.missed_windows.inc();
        status.last_missed_time = Some(now);
        let why = match why {
            Missed::Suspended => "the generator was suspended",
            Missed::DeadlineExceeded => "its run time is older than startingDeadlineSeconds",
            Missed::CatchUpPolicy => "it fell due while the operator was down and catchUpPolicy skips it",
        };
        let msg = format!("no report for {} to {}: {why}", window.start.to_rfc3339(), window.end.to_rfc3339());
        ctx.event(g, EventType::Warning, "Missed", msg).await;
    }
    status.last_window_end = plan.last_window_end;
    status.next_report_date = plan.next_run;
    if run_now {
        status.last_run_now = run_now_value;
    }
    // The check time is only a marker of the operator running: refreshing it at most once a
    // minute keeps the generator's own status writes from waking it again and again.
    if status.last_schedule_check_time.is_none_or(|t| now - t >= chrono::Duration::minutes(1)) || !plan.create.is_empty() {
        status.last_schedule_check_time = Some(now);
    }
    prune_history(ctx, g, owned).await?;
    let requeue = if plan.more_pending && !(forbid && active > 0) {
        Some(Duration::from_secs(1))
    } else {
        plan.next_run.map(|r| (r - now).to_std().unwrap_or_default() + Duration::from_millis(100))
    };
    Ok(Outcome::Ok(requeue))
}

/// Reports of this generator in progress, read from the API server.
async fn running_files(ctx: &Context, g: &ReportGenerator) -> Result<usize, Error> {
    let api: Api<ReportFile> = Api::namespaced(ctx.client.clone(), &g.namespace().unwrap_or_default());
    let selector = format!("{LABEL_GENERATOR}={}", label_value(&g.name_any()));
    let list = api.list(&ListParams::default().labels(&selector)).await?;
    Ok(list
        .items
        .iter()
        .filter(|rf| rf.owner_references().iter().any(|o| Some(&o.uid) == g.uid().as_ref()))
        .filter(|rf| !rf.status.as_ref().and_then(|s| s.status).is_some_and(FileState::is_finished))
        .count())
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
    type_: &'static str,
    backend: &dyn ReportingBackend,
    query: &ListQuery,
    owned: &[Arc<ReportFile>],
    status: &mut ReportGeneratorStatus,
) -> Result<Outcome, Error> {
    let remote = match backend.list(query).await {
        Ok(r) => r,
        Err(e) => return Ok(retry(ctx, type_, "list", e)),
    };
    ctx.metrics.backend_call(type_, "list", "ok");
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
        ensure_file(ctx, g, file, status, Utc::now()).await?;
        if let Some(t) = report.generate_date {
            status.last_mirrored_time = Some(status.last_mirrored_time.map_or(t, |m| m.max(t)));
        }
    }
    Ok(Outcome::Ok(if remote.is_empty() { Some(Duration::from_secs(2)) } else { None }))
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
                match backend.find(&req, &taken).await {
                    Ok(found) => found,
                    Err(e) => return Ok(retry(ctx, type_, "find", e)),
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
                    match backend.submit(&req).await {
                        Ok(t) => t,
                        Err(e) => return Ok(retry(ctx, type_, "submit", e)),
                    }
                }
            };
            ctx.metrics.backend_call(type_, "submit", "ok");
            status.external_id = Some(template.id.clone());
            status.create_pending_since = None;
            ctx.apply_status(api, g, &*status).await?;
            ctx.event(g, EventType::Normal, "Submitted", format!("created RDEReportTemplate {}", template.id)).await;
            template.id
        }
    };
    if g.spec.event_type == ReportEventType::Periodic {
        // The platform schedules: its next report date is the generator's.
        match backend.get(&template_id, &req).await {
            Ok(template) => {
                ctx.metrics.backend_call(type_, "get", "ok");
                status.next_report_date = template.next_report_date;
            }
            Err(e) => return Ok(retry(ctx, type_, "get", e)),
        }
    }
    let query = ListQuery { template_id: Some(template_id), ..Default::default() };
    let outcome = mirror(g, ctx, type_, backend, &query, owned, status).await?;
    if g.spec.event_type == ReportEventType::Onetime {
        // A ONETIME template has one report file; once it is mirrored there is nothing to list.
        let mirrored = !owned.is_empty() || matches!(outcome, Outcome::Ok(None));
        return Ok(if mirrored { Outcome::Ok(None) } else { outcome });
    }
    prune_history(ctx, g, owned).await?;
    Ok(outcome.or_requeue(MIRROR_INTERVAL))
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

fn retry(ctx: &Context, type_: &'static str, operation: &'static str, e: BackendError) -> Outcome {
    ctx.metrics.backend_call(type_, operation, "error");
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

async fn ensure_finalizer(g: &ReportGenerator, api: &Api<ReportGenerator>) -> Result<(), Error> {
    if g.finalizers().iter().any(|f| f == RDE_FINALIZER) {
        return Ok(());
    }
    let patch = if g.finalizers().is_empty() {
        serde_json::json!([{"op": "add", "path": "/metadata/finalizers", "value": [RDE_FINALIZER]}])
    } else {
        serde_json::json!([{"op": "add", "path": "/metadata/finalizers/-", "value": RDE_FINALIZER}])
    };
    let patch: json_patch::Patch = serde_json::from_value(patch).map_err(|e| Error::Invalid(e.to_string()))?;
    api.patch(&g.name_any(), &PatchParams::default(), &Patch::Json::<()>(patch)).await?;
    Ok(())
}

/// Deletes the RDE template, then lets the generator go. A backend that no longer exists
/// cannot be cleaned up: the finalizer is removed with a Warning rather than blocking forever.
async fn finalize(g: &ReportGenerator, ctx: &Context, api: &Api<ReportGenerator>) -> Result<Action, Error> {
    let Some(index) = g.finalizers().iter().position(|f| f == RDE_FINALIZER) else {
        return Ok(Action::await_change());
    };
    let namespace = g.namespace().unwrap_or_default();
    if let Some(template_id) = g.status.as_ref().and_then(|s| s.external_id.clone()) {
        match ctx.ready_backend(&namespace, &g.spec.backend_ref.name).await {
            Ok((rb, backend)) => match backend.delete_template(&template_id).await {
                Ok(()) => {
                    ctx.metrics.backend_call(rb.spec.type_.as_str(), "delete", "ok");
                    ctx.event(g, EventType::Normal, "Deleted", format!("deleted RDEReportTemplate {template_id}")).await;
                }
                Err(e) => {
                    ctx.metrics.backend_call(rb.spec.type_.as_str(), "delete", "error");
                    ctx.event(g, EventType::Warning, "BackendError", format!("deleting RDEReportTemplate {template_id}: {e}")).await;
                    return Ok(Action::requeue(Duration::from_secs(10)));
                }
            },
            Err(n) if n.reason == "BackendNotFound" => {
                ctx.event(g, EventType::Warning, "TemplateLeft", format!("RDEReportTemplate {template_id} was not deleted: {}", n.message)).await;
            }
            Err(n) => {
                ctx.event(g, EventType::Warning, "BackendError", format!("cannot delete RDEReportTemplate {template_id} yet: {}", n.message)).await;
                return Ok(Action::requeue(Duration::from_secs(30)));
            }
        }
    }
    let patch = serde_json::json!([
        {"op": "test", "path": format!("/metadata/finalizers/{index}"), "value": RDE_FINALIZER},
        {"op": "remove", "path": format!("/metadata/finalizers/{index}")}
    ]);
    let patch: json_patch::Patch = serde_json::from_value(patch).map_err(|e| Error::Invalid(e.to_string()))?;
    api.patch(&g.name_any(), &PatchParams::default(), &Patch::Json::<()>(patch)).await?;
    Ok(Action::await_change())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).expect("time").with_timezone(&Utc)
    }

    #[test]
    fn file_names_are_deterministic() {
        let params = ReportParameters {
            start_date: Some(t("2018-10-09T00:00:00Z")),
            end_date: Some(t("2018-10-10T23:59:59Z")),
            ..Default::default()
        };
        assert_eq!(onetime_file_name("nw-finance", &params), "nw-finance-20181009-20181010");
        assert_eq!(
            mirrored_file_name("nw-finance", "A7F79686-f6a6-4319-bb8b-4a40ed2ecbb3"),
            "nw-finance-a7f79686-f6a6-4319-bb8b-4a40ed2ecbb3"
        );
    }
}
