//! The ReportGenerator's decisions, pure: from the generator, its status, its backend's
//! answer, its reports and `now` to what to do ([`start`], [`periodic`]) and to how the pass
//! ended ([`finish_periodic`], [`conclude`]). No client, no Context: every situation is a
//! row of the tables in `decide_tests.rs`.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use kube::ResourceExt;

use super::dates::{Coverage, validate_dates};
use super::files::{FileConflict, PlannedFile, fan_out, files_per_window, onetime_days};
pub use super::mirror::{TemplateStep, mirror_mark, retired_template_done, template_step, to_mirror};
use super::periodic::{
    self, Backlog, MAX_BACKFILL_WINDOWS, MAX_IN_PROGRESS_PER_GENERATOR, Missed, Plan, PlanInput,
};
use crate::api::reasons::GeneratorReady;
use crate::api::{
    ANNOTATION_RUN_NOW, CONDITION_READY, CatchUpPolicy, ConcurrencyPolicy, EventType, FileState,
    LocalObjectReference, ReportBackend, ReportCounts, ReportFile, ReportGenerator, ReportGeneratorStatus,
    ReportParameters, find_condition,
};
use crate::backend::{BackendError, Capabilities, ErrorAction, ListQuery};
use crate::controller::conditions::{Cond, from_k8s_time};
use crate::controller::outcome::Outcome;
use crate::schedule::{ReportSchedule, Window};

/// How often the backend is asked for new reports to mirror (RDE report files, CMP invoice
/// reports).
pub const MIRROR_INTERVAL: Duration = Duration::from_secs(30);
/// Windows created at most per pass; a longer backlog continues in the next pass, so that an
/// outage or a long backfill cannot flood the backend at once.
pub const MAX_WINDOWS_PER_PASS: usize = 10;
/// How soon a generator looks again at a ReportFile name taken by a file that is not its own:
/// an old generator's file is usually gone within seconds of garbage collection.
pub const FILE_NAME_CONFLICT_RETRY: Duration = Duration::from_secs(5);
/// The longest a throttled generator waits before it looks again; a finished report wakes it
/// sooner.
pub const THROTTLED_RETRY: Duration = Duration::from_secs(60);
/// A backend error without Retry-After is retried after this long.
const BACKEND_RETRY: Duration = Duration::from_secs(5);
/// The history limits' defaults, as CronJob's.
const DEFAULT_SUCCESSFUL_HISTORY: i32 = 3;
const DEFAULT_FAILED_HISTORY: i32 = 1;

/// What a valid generator does in this pass.
#[derive(Debug, Clone, PartialEq)]
pub enum Start {
    /// RDE: the platform schedules; make sure its template exists and mirror its files.
    PlatformScheduled,
    /// ONETIME: create the report's ReportFiles (one per SUPPLIER organization); none once
    /// the report finished ([`onetime_finished`]).
    Onetime(Vec<PlannedFile>),
    /// PERIODIC on a backend the operator schedules: see [`periodic`]; what each run shows.
    Periodic(Coverage),
    /// ON_INVOICE (CMP): list the invoice reports the backend made, to mirror.
    Mirror(ListQuery),
}

/// The first decision: what the CRD schema cannot check (the backend's formats, event types
/// and periods, the parameters each type needs), then what to do.
pub fn start(
    g: &ReportGenerator,
    rb: &ReportBackend,
    caps: &Capabilities,
    status: &ReportGeneratorStatus,
    now: DateTime<Utc>,
) -> Result<Start, Outcome> {
    validate(g, rb, caps)?;
    // A setting the backend type cannot honour is refused rather than ignored.
    let run_now = g.annotations().get(ANNOTATION_RUN_NOW).map(String::as_str);
    if let Some(message) =
        crate::backend::unsupported_setting(rb.spec.type_, &g.spec, run_now, status.last_run_now.as_deref())
    {
        return Err(Outcome::invalid(GeneratorReady::UnsupportedSetting, message));
    }
    if caps.platform_scheduled {
        return Ok(Start::PlatformScheduled);
    }
    Ok(match g.spec.event_type {
        // Made once: a ReportFile deleted after its report finished is not made again.
        EventType::Onetime if onetime_finished(g, status).is_some() => Start::Onetime(Vec::new()),
        EventType::Onetime => {
            let params = g.spec.parameters.clone().unwrap_or_default();
            let [from, to] = onetime_days(&params);
            let name = g.name_any();
            // A FUSION snapshot without dates is named as one; with dates, they name it only
            // (its file carries none: the data is as it is when taken).
            let parts: Vec<&str> = if params.start_date.is_none() {
                vec![&name, "snapshot"]
            } else {
                vec![&name, &from, &to]
            };
            let params = if Coverage::of(rb.spec.type_) == Coverage::Snapshot {
                ReportParameters {
                    start_date: None,
                    end_date: None,
                    ..params
                }
            } else {
                params
            };
            Start::Onetime(fan_out(g, &parts, params))
        }
        EventType::Periodic => Start::Periodic(Coverage::of(rb.spec.type_)),
        // CMP makes invoice reports itself; validate() refused the other backends.
        EventType::OnInvoice => {
            let created = g
                .metadata
                .creation_timestamp
                .as_ref()
                .map(from_k8s_time)
                .unwrap_or(now);
            Start::Mirror(ListQuery {
                name: Some(g.spec.common_name.clone()),
                event_type: Some(EventType::OnInvoice),
                format: Some(g.spec.format),
                from: Some(status.last_mirrored_time.unwrap_or(created)),
                to: Some(now),
                ..Default::default()
            })
        }
    })
}

/// What CEL cannot check: the backend's formats, event types and periods, and the
/// parameters each backend type needs.
pub fn validate(g: &ReportGenerator, rb: &ReportBackend, caps: &Capabilities) -> Result<(), Outcome> {
    let spec = &g.spec;
    let type_ = rb.spec.type_;
    if !caps.event_types.contains(&spec.event_type) {
        return Err(Outcome::invalid(
            GeneratorReady::UnsupportedEventType,
            format!(
                "{} backends do not support eventType {}",
                type_.as_str(),
                spec.event_type.as_str()
            ),
        ));
    }
    if !caps.formats.contains(&spec.format) {
        let supported: Vec<&str> = caps.formats.iter().map(|f| f.upper()).collect();
        return Err(Outcome::invalid(
            GeneratorReady::UnsupportedFormat,
            format!(
                "{} backends support format {}, not {}",
                type_.as_str(),
                supported.join(", "),
                spec.format.upper()
            ),
        ));
    }
    let params = spec.parameters.clone().unwrap_or_default();
    if spec.event_type == EventType::Periodic
        && let Some(period) = params.period
        && !caps.periods.contains(&period)
    {
        return Err(Outcome::invalid(
            GeneratorReady::UnsupportedPeriod,
            format!("{} backends do not support period {period:?}", type_.as_str()),
        ));
    }
    if let Some(field) = crate::backend::missing_parameter(type_, &params) {
        return Err(Outcome::invalid(
            GeneratorReady::InvalidParameters,
            format!("{} reports need {field}", type_.as_str()),
        ));
    }
    validate_dates(g, type_)?;
    // The schema bounds it, but an object written before it may hold any number, and the
    // ReportFile's deadline arithmetic must not overflow.
    if let Some(s) = spec.active_deadline_seconds
        && (s < 1 || TimeDelta::try_seconds(s).is_none())
    {
        return Err(Outcome::invalid(
            GeneratorReady::InvalidParameters,
            format!(
                "activeDeadlineSeconds {s} is out of range: use 1 to {} (30 days)",
                crate::api::MAX_DEADLINE_SECONDS
            ),
        ));
    }
    Ok(())
}

/// A PERIODIC pass: the windows to create and to record as missed.
#[derive(Debug, Clone)]
pub struct PeriodicPass {
    pub schedule: ReportSchedule,
    pub plan: Plan,
    pub forbid: bool,
    pub active: usize,
    /// A new run-now annotation value, to record once its window is made.
    pub run_now: Option<String>,
    /// What each run shows (FUSION: a snapshot, which covers no window).
    pub coverage: Coverage,
}

impl PeriodicPass {
    /// The ReportFiles of `window`: one, or one per SUPPLIER organization. A snapshot's file
    /// is named after the run's window but carries no dates: it shows the data when taken.
    pub fn files(&self, g: &ReportGenerator, window: &Window) -> Vec<PlannedFile> {
        let params = g.spec.parameters.clone().unwrap_or_default();
        let window_params = if self.coverage == Coverage::Snapshot {
            ReportParameters {
                start_date: None,
                end_date: None,
                ..params
            }
        } else {
            ReportParameters {
                start_date: Some(window.start),
                end_date: Some(window.end),
                ..params
            }
        };
        fan_out(
            g,
            &[&g.name_any(), &self.schedule.window_suffix(window)],
            window_params,
        )
    }
}

/// Whether the in-progress count must come from the API server rather than the cache: under
/// Forbid, or near the cap, a file created a moment ago may not be in the cache yet.
pub fn needs_live_count(g: &ReportGenerator, cached_in_progress: usize) -> bool {
    let forbid =
        g.spec.schedule.as_ref().and_then(|s| s.concurrency_policy) == Some(ConcurrencyPolicy::Forbid);
    let per_pass = MAX_WINDOWS_PER_PASS.saturating_mul(files_per_window(g));
    forbid || cached_in_progress.saturating_add(per_pass) > MAX_IN_PROGRESS_PER_GENERATOR
}

/// Checks a PERIODIC generator's schedule, or says why it cannot be scheduled as written.
/// `coverage`: see [`Start::Periodic`].
pub fn periodic(
    g: &ReportGenerator,
    status: &ReportGeneratorStatus,
    now: DateTime<Utc>,
    coverage: Coverage,
) -> Result<Schedulable, Outcome> {
    let params = g.spec.parameters.clone().unwrap_or_default();
    let sched = g.spec.schedule.clone().unwrap_or_default();
    let Some(period) = params.period else {
        return Err(Outcome::invalid(
            GeneratorReady::InvalidParameters,
            "PERIODIC reports need parameters.period",
        ));
    };
    let schedule = ReportSchedule::new(period, sched.time_zone.as_deref(), sched.cron.as_deref())
        .map_err(|e| Outcome::invalid(GeneratorReady::InvalidSchedule, e.to_string()))?;
    let starting_deadline = starting_deadline(sched.starting_deadline_seconds)?;
    let created = g
        .metadata
        .creation_timestamp
        .as_ref()
        .map(from_k8s_time)
        .unwrap_or(now);
    if let Some(from) = params.start_date
        && let Some(earliest) = periodic::backfill_too_long(
            &schedule,
            from,
            status.last_window_end,
            created.min(now),
            MAX_BACKFILL_WINDOWS,
        )
    {
        return Err(backfill_too_long(from, period, earliest));
    }
    Ok(Schedulable {
        schedule,
        starting_deadline,
        created,
        coverage,
    })
}

/// A PERIODIC generator whose schedule is valid, ready to plan a pass.
#[derive(Debug, Clone)]
pub struct Schedulable {
    schedule: ReportSchedule,
    starting_deadline: Option<TimeDelta>,
    created: DateTime<Utc>,
    coverage: Coverage,
}

impl Schedulable {
    /// Plans the pass with `active` reports in progress.
    pub fn pass(
        self,
        g: &ReportGenerator,
        status: &ReportGeneratorStatus,
        active: usize,
        now: DateTime<Utc>,
    ) -> PeriodicPass {
        let Schedulable {
            schedule,
            starting_deadline,
            created,
            coverage,
        } = self;
        let params = g.spec.parameters.clone().unwrap_or_default();
        let sched = g.spec.schedule.clone().unwrap_or_default();
        let forbid = sched.concurrency_policy == Some(ConcurrencyPolicy::Forbid);
        let run_now = g
            .annotations()
            .get(ANNOTATION_RUN_NOW)
            .filter(|v| Some(*v) != status.last_run_now.as_ref())
            .cloned();
        let plan = periodic::plan(&PlanInput {
            schedule: &schedule,
            now,
            created,
            backfill_from: params.start_date,
            last_window_end: status.last_window_end,
            last_check: status.last_schedule_check_time,
            suspended: sched.suspend.unwrap_or(false),
            starting_deadline,
            // A snapshot taken late would show today's data under a past window's name: only
            // the latest missed run is taken (validate refused an explicit All).
            catch_up: if coverage == Coverage::Snapshot {
                sched.catch_up_policy.unwrap_or(CatchUpPolicy::Latest)
            } else {
                sched.catch_up_policy.unwrap_or_default()
            },
            forbid,
            active,
            max_in_progress: MAX_IN_PROGRESS_PER_GENERATOR,
            files_per_window: files_per_window(g),
            max_per_pass: MAX_WINDOWS_PER_PASS,
            run_now: run_now.is_some(),
        });
        PeriodicPass {
            schedule,
            plan,
            forbid,
            active,
            run_now,
            coverage,
        }
    }
}

/// `schedule.startingDeadlineSeconds` as a duration; a value no duration can hold (the schema
/// allows up to 30 days, but objects written before it may hold anything) is refused rather
/// than crashing the operator.
pub fn starting_deadline(seconds: Option<i64>) -> Result<Option<TimeDelta>, Outcome> {
    let Some(s) = seconds else { return Ok(None) };
    TimeDelta::try_seconds(s)
        .filter(|_| s >= 0)
        .map(Some)
        .ok_or_else(|| {
            Outcome::invalid(
                GeneratorReady::InvalidSchedule,
                format!(
                    "schedule.startingDeadlineSeconds {s} is out of range: use 0 to {} (30 days)",
                    crate::api::MAX_DEADLINE_SECONDS
                ),
            )
        })
}

/// Why a backfill is refused, and what to change.
pub fn backfill_too_long(
    from: DateTime<Utc>,
    period: crate::api::Period,
    earliest: DateTime<Utc>,
) -> Outcome {
    Outcome::invalid(
        GeneratorReady::BackfillTooLong,
        format!(
            "parameters.startDate {} is more than {MAX_BACKFILL_WINDOWS} {period:?} windows back, and a generator backfills at most {MAX_BACKFILL_WINDOWS}: set parameters.startDate to {} or later, or use a longer period; nothing was created",
            from.to_rfc3339(),
            earliest.to_rfc3339()
        ),
    )
}

/// The Warning Event message of a missed window of a generator whose runs show `coverage`.
pub fn missed_message(window: &Window, why: Missed, coverage: Coverage) -> String {
    let why = match why {
        Missed::Suspended => "the generator was suspended",
        Missed::DeadlineExceeded => "its run time is older than startingDeadlineSeconds",
        Missed::CatchUpPolicy if coverage == Coverage::Snapshot => {
            "it fell due while the operator was down, and a FUSION snapshot taken now would show today's data, not that window's (only the latest missed run is taken)"
        }
        Missed::CatchUpPolicy => "it fell due while the operator was down and catchUpPolicy skips it",
    };
    format!(
        "no report for {} to {}: {why}",
        window.start.to_rfc3339(),
        window.end.to_rfc3339()
    )
}

/// The missed windows to record: those before `stop`, the start of the first window whose
/// file name was taken (it and the windows after it wait for the next pass).
pub fn missed_before(pass: &PeriodicPass, stop: Option<DateTime<Utc>>) -> Vec<(Window, Missed)> {
    pass.plan
        .missed
        .iter()
        .filter(|(w, _)| stop.is_none_or(|s| w.end < s))
        .cloned()
        .collect()
}

/// After the windows' files were created (up to a conflict at the window starting at
/// `stop`): records the pass in `status` and says how it ended.
pub fn finish_periodic(
    pass: &PeriodicPass,
    stop: Option<(DateTime<Utc>, FileConflict)>,
    status: &mut ReportGeneratorStatus,
    now: DateTime<Utc>,
) -> Outcome {
    let plan = &pass.plan;
    if !missed_before(pass, stop.as_ref().map(|(s, _)| *s)).is_empty() {
        status.last_missed_time = Some(now);
    }
    status.last_window_end = match &stop {
        Some((start, _)) => plan.mark_before(*start, status.last_window_end),
        None => plan.last_window_end,
    };
    status.next_report_date = plan.next_run;
    if pass.run_now.is_some() && stop.is_none() {
        status.last_run_now = pass.run_now.clone();
    }
    // The check time marks the operator running while runs were due: a later pass counts the
    // runs after it as missed while the operator was down. A pass with nothing due leaves it
    // as it is (the next run is after it either way), so that a restart over thousands of
    // generators idle between their runs writes nothing; with runs waiting, it is refreshed at
    // most once a minute, which keeps the generator's own status writes from waking it again
    // and again.
    let waiting = !plan.missed.is_empty() || plan.backlog != Backlog::None;
    let refresh = match status.last_schedule_check_time {
        None => true,
        Some(_) if !plan.create.is_empty() => true,
        Some(t) => waiting && now - t >= TimeDelta::minutes(1),
    };
    if refresh {
        status.last_schedule_check_time = Some(now);
    }
    if let Some((_, c)) = stop {
        return file_conflict(c);
    }
    let until_next_run = plan
        .next_run
        .map(|r| (r - now).to_std().unwrap_or_default() + Duration::from_millis(100));
    if plan.backlog == Backlog::Throttled {
        // The same words each time, so that repeated Events fold into one series.
        let message = format!(
            "at most {MAX_IN_PROGRESS_PER_GENERATOR} reports of one generator run at once: the next windows start, oldest first, as reports finish"
        );
        return Outcome::ready(GeneratorReady::Throttled, message)
            .requeue(until_next_run.map_or(THROTTLED_RETRY, |d| d.min(THROTTLED_RETRY)))
            .warned();
    }
    let requeue = if plan.backlog == Backlog::Waiting && !(pass.forbid && pass.active > 0) {
        Some(Duration::from_secs(1))
    } else {
        until_next_run
    };
    Outcome::working(requeue)
}

/// A ReportFile name is taken by a file that is not this generator's: its report is not
/// counted as made, and the generator looks again after [`FILE_NAME_CONFLICT_RETRY`]. One being
/// deleted goes by itself, without a word.
pub fn file_conflict(c: FileConflict) -> Outcome {
    if c.deleting {
        return Outcome::working(Some(FILE_NAME_CONFLICT_RETRY));
    }
    Outcome::invalid(
        GeneratorReady::FileConflict,
        format!(
            "ReportFile {:?} exists but is not this generator's (left by an earlier generator of the same name, or made by someone else): delete it, or rename the generator",
            c.name
        ),
    )
    .requeue(FILE_NAME_CONFLICT_RETRY)
}

/// The outcome of a failed backend call on the generator's own behalf (RDE templates,
/// listing reports to mirror).
pub fn backend_failed(type_: &str, operation: &str, e: &BackendError) -> Outcome {
    match e.action() {
        ErrorAction::Retry { after } => Outcome::waiting(
            GeneratorReady::BackendError,
            format!("{operation} on {type_}: {e}"),
            after.unwrap_or(BACKEND_RETRY),
        ),
        ErrorAction::BackendNotReady { reason, message } => {
            crate::controller::registry::NotReady::broken(reason, message).into()
        }
        ErrorAction::FailReport { reason } => Outcome::invalid(
            GeneratorReady::Rejected,
            format!("{type_} refused the report template: {reason}"),
        ),
    }
}

/// The last step: a working generator's Ready comes from its reports (`latest` is the newest
/// finished one); a problem is told in an Event once per change of reason (`previous`).
pub fn conclude(
    g: &ReportGenerator,
    status: &ReportGeneratorStatus,
    latest: Option<&Latest>,
    outcome: Outcome,
    previous: Option<&str>,
) -> Outcome {
    let mut outcome = outcome.once_per_reason(previous);
    if outcome.ready.is_none() {
        outcome.ready = Some(ready_condition(g, status, latest));
    }
    outcome
}

/// The newest finished ReportFile of a generator (see [`recency`]): its Ready follows it, as
/// Argo CD's health of a CronJob follows its last Job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Latest {
    pub name: String,
    pub state: FileState,
    /// Why it FAILED: the file's Ready message.
    pub why: Option<String>,
}

/// How the ONETIME report of `g`'s current spec ended, if it did: its Ready said READY or
/// FAILED for this generation. As a finished Job's pods are not replaced, its ReportFile is
/// then not made again (a backend would generate the same report twice).
pub fn onetime_finished(g: &ReportGenerator, status: &ReportGeneratorStatus) -> Option<GeneratorReady> {
    let ready = find_condition(&status.conditions, CONDITION_READY)?;
    if ready.observed_generation != g.metadata.generation {
        return None;
    }
    [GeneratorReady::ReportReady, GeneratorReady::ReportFailed]
        .into_iter()
        .find(|r| r.as_str() == ready.reason)
}

/// Ready of a valid generator: for ONETIME, whether its report is READY; for the others,
/// that it is scheduling reports and that the newest finished report did not FAIL (so that
/// a generator whose reports fail is not shown healthy).
pub fn ready_condition(g: &ReportGenerator, status: &ReportGeneratorStatus, latest: Option<&Latest>) -> Cond {
    let r = &status.reports;
    match g.spec.event_type {
        EventType::Onetime if r.ready > 0 => {
            Cond::ready(true, GeneratorReady::ReportReady, "the report is READY")
        }
        EventType::Onetime if r.failed > 0 => Cond::ready(
            false,
            GeneratorReady::ReportFailed,
            "the report FAILED; see its ReportFile",
        ),
        EventType::Onetime if r.in_progress == 0 && onetime_finished(g, status).is_some() => {
            let ready = onetime_finished(g, status) == Some(GeneratorReady::ReportReady);
            let (reason, state) = match ready {
                true => (GeneratorReady::ReportReady, "READY"),
                false => (GeneratorReady::ReportFailed, "FAILED"),
            };
            Cond::ready(
                ready,
                reason,
                format!(
                    "the report was {state}; its ReportFile was deleted, and a ONETIME report is made once (change the spec to make another)"
                ),
            )
        }
        EventType::Onetime => Cond::ready(
            false,
            GeneratorReady::ReportInProgress,
            "the report is being generated",
        ),
        _ => match latest {
            Some(Latest {
                name,
                state: FileState::Failed,
                why,
            }) => Cond::ready(
                false,
                GeneratorReady::LastReportFailed,
                format!(
                    "the latest report, ReportFile {name:?}, FAILED: {}; Ready again when a newer report is READY ({} READY, {} in progress, {} FAILED)",
                    why.as_deref().unwrap_or("see the ReportFile"),
                    r.ready,
                    r.in_progress,
                    r.failed
                ),
            ),
            _ => Cond::ready(
                true,
                GeneratorReady::Scheduled,
                format!(
                    "{} READY, {} in progress, {} FAILED",
                    r.ready, r.in_progress, r.failed
                ),
            ),
        },
    }
}

/// Which of two finished reports is the more recent: the later window end, then the later
/// completion (then the name, so that the order is total).
fn recency(rf: &ReportFile) -> (Option<DateTime<Utc>>, Option<DateTime<Utc>>, String) {
    let end = rf.spec.parameters.as_ref().and_then(|p| p.end_date);
    let done = rf.status.as_ref().and_then(|s| s.completion_time);
    (end, done, rf.name_any())
}

/// Counts and times of a generator's ReportFiles; returns the newest finished one.
pub fn roll_up(files: &[Arc<ReportFile>], status: &mut ReportGeneratorStatus) -> Option<Latest> {
    let latest = files
        .iter()
        .filter(|rf| {
            rf.status
                .as_ref()
                .and_then(|s| s.status)
                .is_some_and(FileState::is_finished)
        })
        .max_by_key(|rf| recency(rf))
        .and_then(|rf| {
            let st = rf.status.as_ref()?;
            let why = find_condition(&st.conditions, CONDITION_READY).map(|c| c.message.clone());
            Some(Latest {
                name: rf.name_any(),
                state: st.status?,
                why,
            })
        });
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
    latest
}

/// Files of `files` that are not finished.
pub fn in_progress(files: &[Arc<ReportFile>]) -> usize {
    files
        .iter()
        .filter(|rf| {
            !rf.status
                .as_ref()
                .and_then(|s| s.status)
                .is_some_and(FileState::is_finished)
        })
        .count()
}

/// The finished ReportFiles to delete: beyond the generator's history limits.
pub fn to_prune(g: &ReportGenerator, owned: &[Arc<ReportFile>]) -> Vec<String> {
    let sched = g.spec.schedule.clone().unwrap_or_default();
    let keep_ready = sched
        .successful_reports_history_limit
        .unwrap_or(DEFAULT_SUCCESSFUL_HISTORY)
        .max(0) as usize;
    let keep_failed = sched
        .failed_reports_history_limit
        .unwrap_or(DEFAULT_FAILED_HISTORY)
        .max(0) as usize;
    beyond_history(owned, keep_ready, keep_failed)
}

/// Names of finished ReportFiles beyond the limits: the oldest by window end (then
/// completion), keeping the newest `keep_ready` READY and `keep_failed` FAILED.
pub fn beyond_history(files: &[Arc<ReportFile>], keep_ready: usize, keep_failed: usize) -> Vec<String> {
    let mut out = Vec::new();
    for (state, keep) in [(FileState::Ready, keep_ready), (FileState::Failed, keep_failed)] {
        let mut of_state: Vec<&Arc<ReportFile>> = files
            .iter()
            .filter(|rf| rf.status.as_ref().and_then(|s| s.status) == Some(state))
            .collect();
        of_state.sort_by_key(|rf| std::cmp::Reverse(recency(rf)));
        out.extend(of_state.into_iter().skip(keep).map(|rf| rf.name_any()));
    }
    out
}

#[cfg(test)]
#[path = "decide_tests.rs"]
mod tests;
