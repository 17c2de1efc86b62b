//! PERIODIC on a backend the operator schedules: check the bounds a generator must keep, plan
//! with [`crate::controller::periodic`], create the windows' ReportFiles and record the rest.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use kube::api::{Api, ListParams};
use kube::runtime::events::EventType;
use kube::ResourceExt;

use super::files::{self, Ensured, ensure_file, fan_out, files_per_window};
use super::{Invalid, MAX_WINDOWS_PER_PASS, Outcome, THROTTLED_RETRY, prune_history};
use crate::api::{ANNOTATION_RUN_NOW, ConcurrencyPolicy, LABEL_GENERATOR, ReportFile, ReportGenerator, ReportGeneratorStatus, ReportParameters, label_value};
use crate::controller::conditions::from_k8s_time;
use crate::controller::context::Context;
use crate::controller::periodic::{self, MAX_BACKFILL_WINDOWS, MAX_IN_PROGRESS_PER_GENERATOR, Missed, PlanInput};
use crate::controller::Error;
use crate::schedule::ReportSchedule;

/// Creates the ReportFiles of the windows that are due, records the missed ones, and comes
/// back at the next run time.
pub(super) async fn periodic(
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
    let starting_deadline = match starting_deadline(sched.starting_deadline_seconds) {
        Ok(d) => d,
        Err(invalid) => return Ok(Outcome::Invalid(invalid)),
    };
    let created = g.metadata.creation_timestamp.as_ref().map(from_k8s_time).unwrap_or(now);
    if let Some(from) = params.start_date
        && let Some(earliest) = periodic::backfill_too_long(&schedule, from, status.last_window_end, created.min(now), MAX_BACKFILL_WINDOWS)
    {
        return Ok(Outcome::Invalid(backfill_too_long(from, period, earliest)));
    }
    let forbid = sched.concurrency_policy == Some(ConcurrencyPolicy::Forbid);
    let per_window = files_per_window(g);
    // Under Forbid, or near the in-progress cap, the API server, not the cache, says what is
    // running: a file created a moment ago may not be in the cache yet.
    let cached = files::in_progress(owned);
    let near_cap = cached.saturating_add(MAX_WINDOWS_PER_PASS.saturating_mul(per_window)) > MAX_IN_PROGRESS_PER_GENERATOR;
    let active = if forbid || near_cap { running_files(ctx, g).await? } else { cached };
    let run_now_value = g.annotations().get(ANNOTATION_RUN_NOW).cloned();
    let run_now = run_now_value.is_some() && run_now_value != status.last_run_now;
    let input = PlanInput {
        schedule: &schedule,
        now,
        created,
        backfill_from: params.start_date,
        last_window_end: status.last_window_end,
        last_check: status.last_schedule_check_time,
        suspended: sched.suspend.unwrap_or(false),
        starting_deadline,
        catch_up: sched.catch_up_policy.unwrap_or_default(),
        forbid,
        active,
        max_in_progress: MAX_IN_PROGRESS_PER_GENERATOR,
        files_per_window: per_window,
        max_per_pass: MAX_WINDOWS_PER_PASS,
        run_now,
    };
    let plan = periodic::plan(&input);
    let name = g.name_any();
    // The start of the first window whose file name is taken by another's file: it and the
    // windows after it are not dealt with in this pass.
    let mut conflict = None;
    for window in &plan.create {
        let window_params = ReportParameters { start_date: Some(window.start), end_date: Some(window.end), ..params.clone() };
        let suffix = schedule.window_suffix(window);
        for file in fan_out(g, &[&name, &suffix], window_params) {
            if let Ensured::Conflict(c) = ensure_file(ctx, g, file, status, now).await? {
                conflict.get_or_insert((window.start, c));
            }
        }
        if conflict.is_some() {
            break;
        }
    }
    let stop = conflict.as_ref().map(|(start, _)| *start);
    for (window, why) in plan.missed.iter().filter(|(w, _)| stop.is_none_or(|s| w.end < s)) {
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
    status.last_window_end = match stop {
        Some(start) => plan.mark_before(start, status.last_window_end),
        None => plan.last_window_end,
    };
    status.next_report_date = plan.next_run;
    if run_now && stop.is_none() {
        status.last_run_now = run_now_value;
    }
    // The check time is only a marker of the operator running: refreshing it at most once a
    // minute keeps the generator's own status writes from waking it again and again.
    if status.last_schedule_check_time.is_none_or(|t| now - t >= TimeDelta::minutes(1)) || !plan.create.is_empty() {
        status.last_schedule_check_time = Some(now);
    }
    prune_history(ctx, g, owned).await?;
    if let Some((_, c)) = conflict {
        return Ok(Outcome::Conflict(c));
    }
    let until_next_run = plan.next_run.map(|r| (r - now).to_std().unwrap_or_default() + Duration::from_millis(100));
    if plan.throttled {
        // The same words each time, so that repeated Events fold into one series.
        let message = format!(
            "at most {MAX_IN_PROGRESS_PER_GENERATOR} reports of one generator run at once: the next windows start, oldest first, as reports finish"
        );
        return Ok(Outcome::Throttled(message, until_next_run.map_or(THROTTLED_RETRY, |d| d.min(THROTTLED_RETRY))));
    }
    let requeue = if plan.more_pending && !(forbid && active > 0) { Some(Duration::from_secs(1)) } else { until_next_run };
    Ok(Outcome::Ok(requeue))
}

/// `schedule.startingDeadlineSeconds` as a duration; a value no duration can hold (the schema
/// allows up to 30 days, but objects written before it may hold anything) is refused rather
/// than crashing the operator.
fn starting_deadline(seconds: Option<i64>) -> Result<Option<TimeDelta>, Invalid> {
    let Some(s) = seconds else { return Ok(None) };
    TimeDelta::try_seconds(s).filter(|_| s >= 0).map(Some).ok_or_else(|| {
        Invalid::new(
            "InvalidSchedule",
            format!("schedule.startingDeadlineSeconds {s} is out of range: use 0 to {} (30 days)", crate::api::MAX_DEADLINE_SECONDS),
        )
    })
}

/// Why a backfill is refused, and what to change.
fn backfill_too_long(from: DateTime<Utc>, period: crate::api::Period, earliest: DateTime<Utc>) -> Invalid {
    Invalid::new(
        "BackfillTooLong",
        format!(
            "parameters.startDate {} is more than {MAX_BACKFILL_WINDOWS} {period:?} windows back, and a generator backfills at most {MAX_BACKFILL_WINDOWS}: set parameters.startDate to {} or later, or use a longer period; nothing was created",
            from.to_rfc3339(),
            earliest.to_rfc3339()
        ),
    )
}

/// Reports of this generator in progress, read from the API server.
async fn running_files(ctx: &Context, g: &ReportGenerator) -> Result<usize, Error> {
    let api: Api<ReportFile> = Api::namespaced(ctx.client.clone(), &g.namespace().unwrap_or_default());
    let selector = format!("{LABEL_GENERATOR}={}", label_value(&g.name_any()));
    let list = api.list(&ListParams::default().labels(&selector)).await?;
    let mine: Vec<Arc<ReportFile>> =
        list.items.into_iter().filter(|rf| rf.owner_references().iter().any(|o| Some(&o.uid) == g.uid().as_ref())).map(Arc::new).collect();
    Ok(files::in_progress(&mine))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starting_deadlines_no_duration_holds_are_refused_not_a_panic() {
        assert_eq!(starting_deadline(None), Ok(None));
        assert_eq!(starting_deadline(Some(0)), Ok(Some(TimeDelta::zero())));
        assert_eq!(starting_deadline(Some(2_592_000)), Ok(Some(TimeDelta::days(30))));
        for bad in [i64::MAX, i64::MIN, -1, i64::MAX / 1000 + 1] {
            let err = starting_deadline(Some(bad)).unwrap_err();
            assert_eq!(err.reason, "InvalidSchedule", "{bad}");
            assert!(err.message.contains(&bad.to_string()), "{}", err.message);
        }
    }

    #[test]
    fn backfill_message_names_the_limit_and_what_to_change() {
        let t = |s: &str| DateTime::parse_from_rfc3339(s).expect("time").with_timezone(&Utc);
        let i = backfill_too_long(t("0001-01-01T00:00:00Z"), crate::api::Period::P1D, t("2024-03-01T00:00:00Z"));
        assert_eq!(i.reason, "BackfillTooLong");
        for needle in ["0001-01-01T00:00:00+00:00", "1000 P1D windows", "2024-03-01T00:00:00+00:00 or later"] {
            assert!(i.message.contains(needle), "{needle}: {}", i.message);
        }
    }
}
