//! Which windows a PERIODIC generator creates now: pure planning on top of the period and cron
//! math of [`crate::schedule`], so every CronJob-style knob is testable without a server.
//!
//! The generator keeps a high-water mark, `status.lastWindowEnd`: windows ending at or before
//! it have been dealt with (created or recorded as missed) and are never created again, even
//! after the history limits delete their ReportFiles. Windows are dealt with oldest first, and
//! the mark only moves over a window once it is dealt with, so a window queued behind
//! `concurrencyPolicy: Forbid` or the per-pass cap is never skipped.

use chrono::{DateTime, Duration, Utc};

use crate::api::CatchUpPolicy;
use crate::schedule::{ReportSchedule, Window};

/// A window whose run time is this much in the past when it is first looked at counts as
/// missed while the operator was down (unless it became due while the operator was running).
pub const LATE_GRACE: Duration = Duration::minutes(2);
/// At most this many windows are looked at in one pass; a longer backlog continues at once in
/// the next pass.
const MAX_CANDIDATES: usize = 1000;

/// What the planner needs to know about a generator.
#[derive(Debug, Clone)]
pub struct PlanInput<'a> {
    pub schedule: &'a ReportSchedule,
    pub now: DateTime<Utc>,
    /// When the generator was created: runs before it are not the generator's.
    pub created: DateTime<Utc>,
    /// `parameters.startDate`: windows from it up to creation are backfilled, whatever the
    /// catch-up policy.
    pub backfill_from: Option<DateTime<Utc>>,
    /// `status.lastWindowEnd`.
    pub last_window_end: Option<DateTime<Utc>>,
    /// `status.lastScheduleCheckTime`: the last pass while the operator was running.
    pub last_check: Option<DateTime<Utc>>,
    pub suspended: bool,
    pub starting_deadline: Option<Duration>,
    pub catch_up: CatchUpPolicy,
    /// Forbid: no new window while a report is in progress.
    pub forbid: bool,
    pub active: usize,
    /// Windows created at most per pass.
    pub max_per_pass: usize,
    /// A new `run-now` annotation value asks for the latest complete window now.
    pub run_now: bool,
}

/// Why a window was not run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Missed {
    /// Its run time passed while the generator was suspended.
    Suspended,
    /// Its run time is older than `startingDeadlineSeconds`.
    DeadlineExceeded,
    /// It fell due while the operator was down and `catchUpPolicy` skips it.
    CatchUpPolicy,
}

/// What to do in this pass.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Windows to create ReportFiles for, oldest first.
    pub create: Vec<Window>,
    /// Windows recorded as missed, oldest first.
    pub missed: Vec<(Window, Missed)>,
    /// The new `status.lastWindowEnd`.
    pub last_window_end: Option<DateTime<Utc>>,
    /// Windows are still waiting (cap or Forbid): look again soon, or when the active report
    /// finishes.
    pub more_pending: bool,
    /// The next run time, for `status.nextReportDate` and the requeue.
    pub next_run: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    Backfill,
    OnTime,
    Late,
}

/// Plans one pass of a PERIODIC generator.
pub fn plan(input: &PlanInput<'_>) -> Plan {
    let s = input.schedule;
    let mark = input.last_window_end;
    let is_new = |w: &Window| mark.is_none_or(|m| w.end > m);
    let mut candidates: Vec<(Window, DateTime<Utc>, Class)> = Vec::new();

    if let Some(from) = input.backfill_from {
        let until = input.created.min(input.now);
        for w in s.backfill_windows(from, until).filter(is_new).take(MAX_CANDIDATES) {
            candidates.push((w, w.next_start(), Class::Backfill));
        }
    }
    // Runs after the newest window dealt with (or, before any, after creation) are due.
    let after = mark.unwrap_or(input.created);
    // Runs that fell after the last pass and well before now were missed while the operator
    // was down; runs before the last pass were due while it ran (queued, not missed).
    let running_since = input.last_check.unwrap_or(input.created);
    for due in s.due_windows(after, input.now).filter(|d| is_new(&d.window)).take(MAX_CANDIDATES) {
        if candidates.iter().any(|(w, _, _)| *w == due.window) {
            continue;
        }
        let late = due.run_time > running_since && input.now - due.run_time > LATE_GRACE;
        candidates.push((due.window, due.run_time, if late { Class::Late } else { Class::OnTime }));
    }
    candidates.sort_by_key(|(w, _, _)| w.start);
    let newest_late = candidates.iter().rev().find(|(_, _, c)| *c == Class::Late).map(|(w, _, _)| *w);

    let mut plan = Plan { last_window_end: mark, ..Plan::default() };
    let mut room = if input.forbid { usize::from(input.active == 0) } else { input.max_per_pass };
    for (w, run_time, class) in candidates {
        let missed = if class == Class::Backfill {
            None
        } else if input.suspended {
            Some(Missed::Suspended)
        } else if input.starting_deadline.is_some_and(|d| input.now - run_time > d) {
            Some(Missed::DeadlineExceeded)
        } else if class == Class::Late
            && match input.catch_up {
                CatchUpPolicy::All => false,
                CatchUpPolicy::Latest => Some(w) != newest_late,
                CatchUpPolicy::None => true,
            }
        {
            Some(Missed::CatchUpPolicy)
        } else {
            None
        };
        match missed {
            Some(why) => plan.missed.push((w, why)),
            None if room > 0 => {
                room -= 1;
                plan.create.push(w);
            }
            None => {
                plan.more_pending = true;
                break;
            }
        }
        plan.last_window_end = Some(plan.last_window_end.map_or(w.end, |m| m.max(w.end)));
    }

    // run-now: the latest complete window, unless it has been dealt with or is planned.
    if input.run_now {
        let w = s.latest_complete_window(input.now);
        if is_new(&w) && !plan.create.contains(&w) {
            plan.create.push(w);
        }
    }
    plan.next_run = if input.suspended { None } else { s.next_run_after(input.now) };
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::Period;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).expect("time").with_timezone(&Utc)
    }

    fn daily() -> ReportSchedule {
        ReportSchedule::new(Period::P1D, None, None).expect("schedule")
    }

    fn input<'a>(s: &'a ReportSchedule, now: &str, created: &str) -> PlanInput<'a> {
        PlanInput {
            schedule: s,
            now: t(now),
            created: t(created),
            backfill_from: None,
            last_window_end: None,
            last_check: None,
            suspended: false,
            starting_deadline: None,
            catch_up: CatchUpPolicy::All,
            forbid: false,
            active: 0,
            max_per_pass: 10,
            run_now: false,
        }
    }

    fn days(plan_windows: &[Window]) -> Vec<String> {
        plan_windows.iter().map(|w| w.start.format("%m-%d").to_string()).collect()
    }

    #[test]
    fn first_run_falls_at_the_next_boundary_and_reports_the_day_before() {
        let s = daily();
        let p = plan(&input(&s, "2026-11-10T15:00:00Z", "2026-11-10T14:00:00Z"));
        assert!(p.create.is_empty());
        assert_eq!(p.next_run, Some(t("2026-11-11T00:00:00Z")));
        let p = plan(&input(&s, "2026-11-11T00:00:01Z", "2026-11-10T14:00:00Z"));
        assert_eq!(days(&p.create), vec!["11-10"]);
        assert_eq!(p.create[0].end, t("2026-11-10T23:59:59Z"));
        assert_eq!(p.last_window_end, Some(t("2026-11-10T23:59:59Z")));
    }

    #[test]
    fn backfill_creates_every_day_from_start_date_oldest_first_within_the_cap() {
        let s = daily();
        let mut i = input(&s, "2026-11-15T10:00:00Z", "2026-11-15T09:00:00Z");
        i.backfill_from = Some(t("2026-11-01T00:00:00Z"));
        let p = plan(&i);
        assert_eq!(days(&p.create), (1..=10).map(|d| format!("11-{d:02}")).collect::<Vec<_>>());
        assert!(p.more_pending);
        i.last_window_end = p.last_window_end;
        let p = plan(&i);
        assert_eq!(days(&p.create), vec!["11-11", "11-12", "11-13", "11-14"]);
        assert!(!p.more_pending);
    }

    #[test]
    fn a_window_already_dealt_with_is_never_planned_again() {
        let s = daily();
        let mut i = input(&s, "2026-11-11T00:00:05Z", "2026-11-10T14:00:00Z");
        i.last_window_end = Some(t("2026-11-10T23:59:59Z"));
        assert_eq!(plan(&i).create, vec![]);
    }

    #[test]
    fn minute_cron_with_daily_period_creates_the_latest_window_once() {
        let s = ReportSchedule::new(Period::P1D, None, Some("* * * * *")).expect("schedule");
        let mut i = input(&s, "2026-11-10T14:05:30Z", "2026-11-10T14:00:00Z");
        let p = plan(&i);
        assert_eq!(days(&p.create), vec!["11-09"]);
        i.last_window_end = p.last_window_end;
        i.now = t("2026-11-10T18:00:00Z");
        i.last_check = Some(t("2026-11-10T14:05:30Z"));
        assert_eq!(plan(&i).create, vec![]);
        assert_eq!(plan(&i).next_run, Some(t("2026-11-10T18:01:00Z")));
    }

    #[test]
    fn outage_is_caught_up_per_policy() {
        let s = daily();
        let mut i = input(&s, "2026-11-14T12:00:00Z", "2026-11-01T12:00:00Z");
        i.last_window_end = Some(t("2026-11-09T23:59:59Z"));
        i.last_check = Some(t("2026-11-10T00:00:05Z"));
        // Runs at 11-11, 11-12, 11-13, 11-14 00:00 were missed while down.
        let all = plan(&i);
        assert_eq!(days(&all.create), vec!["11-10", "11-11", "11-12", "11-13"]);
        i.catch_up = CatchUpPolicy::Latest;
        let latest = plan(&i);
        assert_eq!(days(&latest.create), vec!["11-13"]);
        assert_eq!(latest.missed.len(), 3);
        assert_eq!(latest.last_window_end, Some(t("2026-11-13T23:59:59Z")));
        i.catch_up = CatchUpPolicy::None;
        let none = plan(&i);
        assert!(none.create.is_empty());
        assert!(none.missed.iter().all(|(_, why)| *why == Missed::CatchUpPolicy));
    }

    #[test]
    fn a_window_due_while_running_is_queued_not_missed() {
        let s = daily();
        let mut i = input(&s, "2026-11-14T12:00:00Z", "2026-11-01T12:00:00Z");
        i.last_window_end = Some(t("2026-11-12T23:59:59Z"));
        // The run at 11-14 00:00 came while the operator ran, behind a Forbid queue.
        i.last_check = Some(t("2026-11-14T11:00:00Z"));
        i.catch_up = CatchUpPolicy::None;
        assert_eq!(days(&plan(&i).create), vec!["11-13"]);
    }

    #[test]
    fn forbid_runs_one_window_at_a_time_and_skips_none() {
        let s = daily();
        let mut i = input(&s, "2026-11-05T10:00:00Z", "2026-11-05T09:00:00Z");
        i.backfill_from = Some(t("2026-11-01T00:00:00Z"));
        i.forbid = true;
        i.active = 1;
        let p = plan(&i);
        assert!(p.create.is_empty() && p.more_pending);
        assert_eq!(p.last_window_end, None);
        i.active = 0;
        let p = plan(&i);
        assert_eq!(days(&p.create), vec!["11-01"]);
        assert_eq!(p.last_window_end, Some(t("2026-11-01T23:59:59Z")));
    }

    #[test]
    fn starting_deadline_records_old_runs_as_missed() {
        let s = daily();
        let mut i = input(&s, "2026-11-11T03:00:00Z", "2026-11-10T14:00:00Z");
        i.last_check = Some(t("2026-11-10T23:00:00Z"));
        i.starting_deadline = Some(Duration::hours(1));
        let p = plan(&i);
        assert!(p.create.is_empty());
        assert_eq!(p.missed, vec![(s.window_containing(t("2026-11-10T12:00:00Z")), Missed::DeadlineExceeded)]);
        assert_eq!(p.last_window_end, Some(t("2026-11-10T23:59:59Z")));
    }

    #[test]
    fn suspended_generators_create_nothing_and_record_the_windows() {
        let s = daily();
        let mut i = input(&s, "2026-11-11T00:00:01Z", "2026-11-10T14:00:00Z");
        i.suspended = true;
        let p = plan(&i);
        assert!(p.create.is_empty());
        assert_eq!(p.missed.len(), 1);
        assert_eq!(p.next_run, None);
    }

    #[test]
    fn run_now_creates_the_latest_complete_window_even_when_suspended() {
        let s = daily();
        let mut i = input(&s, "2026-11-10T15:00:00Z", "2026-11-10T14:00:00Z");
        i.suspended = true;
        i.run_now = true;
        assert_eq!(days(&plan(&i).create), vec!["11-09"]);
        i.last_window_end = Some(t("2026-11-09T23:59:59Z"));
        assert!(plan(&i).create.is_empty());
    }
}
