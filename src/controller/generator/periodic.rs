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
/// The longest backfill a generator works through: a PERIODIC `parameters.startDate` more
/// windows back than this (at P1D, about 2.7 years) is refused with reason `BackfillTooLong`
/// and nothing is created. `startDate: 0001-01-01` with P1D would otherwise mean about
/// 740,000 reports, created ten a second, for days.
pub const MAX_BACKFILL_WINDOWS: usize = 1000;
/// Reports (ReportFiles, counting each organization of a SUPPLIER fan-out) one generator may
/// have in progress at once. Beyond it no new window starts (the condition says `Throttled`)
/// and the queued windows start oldest first as reports finish; none is skipped. It keeps one
/// generator from filling the cluster and the backend with work.
pub const MAX_IN_PROGRESS_PER_GENERATOR: usize = 200;

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
    /// This generator's reports in progress.
    pub active: usize,
    /// Reports in progress at most ([`MAX_IN_PROGRESS_PER_GENERATOR`]); a window starts only if all its files fit.
    pub max_in_progress: usize,
    /// ReportFiles per window: one, or one per SUPPLIER organization.
    pub files_per_window: usize,
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
    /// Whether windows due wait for a later pass, and why.
    pub backlog: Backlog,
    /// The next run time, for `status.nextReportDate` and the requeue.
    pub next_run: Option<DateTime<Utc>>,
}

/// Windows due that this pass does not create.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Backlog {
    /// None: every window due is created or recorded as missed.
    #[default]
    None,
    /// Some wait for the per-pass cap or for Forbid's report in progress: look again soon, or
    /// when that report finishes.
    Waiting,
    /// Some wait because the generator has `max_in_progress` reports in progress: they start,
    /// oldest first, as reports finish.
    Throttled,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    Backfill,
    OnTime,
    Late,
}

impl Plan {
    /// The high-water mark when the windows from the one starting at `start` on could not be
    /// created after all (their ReportFile name is taken): the newest window created or missed
    /// that ends before `start`, or the old mark.
    pub fn mark_before(
        &self,
        start: DateTime<Utc>,
        old_mark: Option<DateTime<Utc>>,
    ) -> Option<DateTime<Utc>> {
        self.create
            .iter()
            .chain(self.missed.iter().map(|(w, _)| w))
            .map(|w| w.end)
            .filter(|end| *end < start)
            .chain(old_mark)
            .max()
    }
}

/// The backfill still to do for `parameters.startDate` `from` (the windows after `mark` up to
/// `until`), if it is more than `max` windows: then the earliest start date that is allowed,
/// for the message. Counting stops after `max + 1` windows, so a start date in year 1 costs no
/// more than one within the limit.
pub fn backfill_too_long(
    s: &ReportSchedule,
    from: DateTime<Utc>,
    mark: Option<DateTime<Utc>>,
    until: DateTime<Utc>,
    max: usize,
) -> Option<DateTime<Utc>> {
    let from = match mark.and_then(|m| m.checked_add_signed(Duration::seconds(1))) {
        Some(after_mark) => from.max(after_mark),
        None => from,
    };
    s.backfill_windows(from, until).nth(max)?;
    let newest = s.latest_complete_window(until);
    let oldest = (1..max).fold(newest, |w, _| s.window_before(&w));
    Some(oldest.start)
}

/// A window not dealt with yet, with its run time and class.
type Candidate = (Window, DateTime<Utc>, Class);

/// Whether `w` is after the high-water mark `mark` (not dealt with yet).
fn is_new(mark: Option<DateTime<Utc>>, w: &Window) -> bool {
    mark.is_none_or(|m| w.end > m)
}

/// The windows this pass looks at, oldest first: the backfill from `startDate` and the runs
/// due since the mark, each classed as backfill, on time, or late (missed while the
/// operator was down).
fn candidates(input: &PlanInput<'_>) -> Vec<Candidate> {
    let s = input.schedule;
    let mark = input.last_window_end;
    let is_new = |w: &Window| is_new(mark, w);
    let mut candidates: Vec<Candidate> = Vec::new();

    if let Some(from) = input.backfill_from {
        let until = input.created.min(input.now);
        for w in s
            .backfill_windows(from, until)
            .filter(is_new)
            .take(MAX_CANDIDATES)
        {
            candidates.push((w, w.next_start(), Class::Backfill));
        }
    }
    // Runs after the newest window dealt with (or, before any, after creation) are due.
    let after = mark.unwrap_or(input.created);
    // Runs that fell after the last pass and well before now were missed while the operator
    // was down; runs before the last pass were due while it ran (queued, not missed).
    let running_since = input.last_check.unwrap_or(input.created);
    for due in s
        .due_windows(after, input.now)
        .filter(|d| is_new(&d.window))
        .take(MAX_CANDIDATES)
    {
        if candidates.iter().any(|(w, _, _)| *w == due.window) {
            continue;
        }
        let late = due.run_time > running_since && input.now - due.run_time > LATE_GRACE;
        candidates.push((
            due.window,
            due.run_time,
            if late { Class::Late } else { Class::OnTime },
        ));
    }
    candidates.sort_by_key(|(w, _, _)| w.start);
    candidates
}

/// Plans one pass of a PERIODIC generator.
pub fn plan(input: &PlanInput<'_>) -> Plan {
    let s = input.schedule;
    let mark = input.last_window_end;
    let candidates = candidates(input);
    let newest_late = candidates
        .iter()
        .rev()
        .find(|(_, _, c)| *c == Class::Late)
        .map(|(w, _, _)| *w);

    let mut plan = Plan {
        last_window_end: mark,
        ..Plan::default()
    };
    // Windows whose files all fit under the in-progress cap; with none in progress one window
    // always fits, so that a fan-out wider than the cap still moves.
    let mut fits = input.max_in_progress.saturating_sub(input.active) / input.files_per_window.max(1);
    if input.active == 0 {
        fits = fits.max(1);
    }
    let mut room = if input.forbid {
        usize::from(input.active == 0)
    } else {
        input.max_per_pass.min(fits)
    };
    let throttled_room = !input.forbid && fits < input.max_per_pass;
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
                plan.backlog = if throttled_room {
                    Backlog::Throttled
                } else {
                    Backlog::Waiting
                };
                break;
            }
        }
        plan.last_window_end = Some(plan.last_window_end.map_or(w.end, |m| m.max(w.end)));
    }

    // run-now: the latest complete window, unless it has been dealt with or is planned.
    if input.run_now {
        let w = s.latest_complete_window(input.now);
        if is_new(mark, &w) && !plan.create.contains(&w) {
            plan.create.push(w);
        }
    }
    plan.next_run = if input.suspended {
        None
    } else {
        s.next_run_after(input.now)
    };
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
            max_in_progress: 200,
            files_per_window: 1,
            max_per_pass: 10,
            run_now: false,
        }
    }

    fn days(plan_windows: &[Window]) -> Vec<String> {
        plan_windows
            .iter()
            .map(|w| w.start.format("%m-%d").to_string())
            .collect()
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
        assert_eq!(
            days(&p.create),
            (1..=10).map(|d| format!("11-{d:02}")).collect::<Vec<_>>()
        );
        assert_eq!(p.backlog, Backlog::Waiting);
        i.last_window_end = p.last_window_end;
        let p = plan(&i);
        assert_eq!(days(&p.create), vec!["11-11", "11-12", "11-13", "11-14"]);
        assert_eq!(p.backlog, Backlog::None);
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
        assert!(p.create.is_empty() && p.backlog == Backlog::Waiting);
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
        assert_eq!(
            p.missed,
            vec![(
                s.window_containing(t("2026-11-10T12:00:00Z")),
                Missed::DeadlineExceeded
            )]
        );
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

    #[test]
    fn the_in_progress_cap_holds_windows_back_oldest_first_without_skipping() {
        let s = daily();
        let mut i = input(&s, "2026-11-15T10:00:00Z", "2026-11-15T09:00:00Z");
        i.backfill_from = Some(t("2026-11-01T00:00:00Z"));
        i.max_in_progress = 5;
        // (reports in progress, files per window, windows created, backlog)
        let cases = [
            (0, 1, 5, Backlog::Throttled),
            (3, 1, 2, Backlog::Throttled),
            (5, 1, 0, Backlog::Throttled),
            (9, 1, 0, Backlog::Throttled),
            // Three organizations per window: one window fits in 5 - 1.
            (1, 3, 1, Backlog::Throttled),
            // A fan-out wider than the cap still moves one window at a time when idle.
            (0, 7, 1, Backlog::Throttled),
            (4, 7, 0, Backlog::Throttled),
        ];
        for (active, per_window, created, backlog) in cases {
            i.active = active;
            i.files_per_window = per_window;
            let p = plan(&i);
            let at = format!("active {active}, {per_window} per window");
            assert_eq!(p.create.len(), created, "{at}");
            assert_eq!(p.backlog, backlog, "{at}");
            // The mark covers exactly the windows created: the held ones come next.
            assert_eq!(p.last_window_end, p.create.last().map(|w| w.end), "{at}");
            if let Some(first) = p.create.first() {
                assert_eq!(first.start, t("2026-11-01T00:00:00Z"), "{at}");
            }
        }
        // Under the cap only the per-pass cap holds windows back, which is not throttling.
        i.max_in_progress = 200;
        i.active = 0;
        i.files_per_window = 1;
        let p = plan(&i);
        assert_eq!((p.create.len(), p.backlog), (10, Backlog::Waiting));
    }

    #[test]
    fn the_mark_stops_before_a_window_that_could_not_be_created() {
        let s = daily();
        let mut i = input(&s, "2026-11-15T10:00:00Z", "2026-11-15T09:00:00Z");
        i.backfill_from = Some(t("2026-11-01T00:00:00Z"));
        let p = plan(&i);
        let third = p.create[2];
        assert_eq!(p.mark_before(third.start, None), Some(p.create[1].end));
        assert_eq!(p.mark_before(p.create[0].start, None), None);
        assert_eq!(
            p.mark_before(p.create[0].start, Some(t("2026-10-31T23:59:59Z"))),
            Some(t("2026-10-31T23:59:59Z"))
        );
        // Missed windows before it count as dealt with too.
        let mut missed = Plan::default();
        missed
            .missed
            .push((s.window_containing(t("2026-11-01T12:00:00Z")), Missed::Suspended));
        missed.create.push(s.window_containing(t("2026-11-02T12:00:00Z")));
        assert_eq!(
            missed.mark_before(t("2026-11-02T00:00:00Z"), None),
            Some(t("2026-11-01T23:59:59Z"))
        );
    }

    #[test]
    fn a_backfill_longer_than_the_limit_is_refused_with_the_earliest_start_allowed() {
        let daily = daily();
        let until = t("2026-11-15T09:00:00Z");
        // (start date, mark, too long)
        let cases = [
            ("0001-01-01T00:00:00Z", None, true),
            ("1970-01-01T00:00:00Z", None, true),
            ("2024-06-01T00:00:00Z", None, false),
            ("9999-12-31T23:59:59Z", None, false),
            // Most of it done already (a generator from before the limit): what is left counts.
            ("1970-01-01T00:00:00Z", Some("2026-01-01T23:59:59Z"), false),
        ];
        for (from, mark, too_long) in cases {
            let got = backfill_too_long(&daily, t(from), mark.map(t), until, MAX_BACKFILL_WINDOWS);
            assert_eq!(got.is_some(), too_long, "{from} {mark:?}");
        }
        // The earliest start allowed makes exactly the limit.
        let earliest = backfill_too_long(
            &daily,
            t("1970-01-01T00:00:00Z"),
            None,
            until,
            MAX_BACKFILL_WINDOWS,
        )
        .expect("too long");
        assert_eq!(
            daily.backfill_windows(earliest, until).count(),
            MAX_BACKFILL_WINDOWS
        );
        assert!(backfill_too_long(&daily, earliest, None, until, MAX_BACKFILL_WINDOWS).is_none());
        let monthly = ReportSchedule::new(Period::P1M, Some("Pacific/Kiritimati"), None).expect("schedule");
        assert!(
            backfill_too_long(
                &monthly,
                t("1970-01-01T00:00:00Z"),
                None,
                until,
                MAX_BACKFILL_WINDOWS
            )
            .is_none()
        );
    }

    #[test]
    fn extreme_dates_and_deadlines_plan_without_panicking() {
        for (period, zone, cron) in [
            (Period::P1D, None, None),
            (Period::P1W, Some("Pacific/Kiritimati"), Some("* * * * *")),
            (Period::P1M, Some("Pacific/Pago_Pago"), Some("@yearly")),
            (Period::P1M, Some("America/St_Johns"), None),
        ] {
            let s = ReportSchedule::new(period, zone, cron).expect("schedule");
            for from in [
                "0000-01-01T00:00:00Z",
                "0001-01-01T00:00:00Z",
                "9999-12-31T23:59:59Z",
            ] {
                let mut i = input(&s, "2026-11-15T10:00:00Z", "2026-11-15T09:00:00Z");
                i.backfill_from = Some(t(from));
                i.last_window_end = Some(t(from));
                i.last_check = Some(t(from));
                i.starting_deadline = Some(Duration::MAX);
                i.run_now = true;
                let p = plan(&i);
                assert!(p.create.len() <= 11, "{from}");
                i.starting_deadline = Some(Duration::MIN);
                i.now = t("9999-12-31T23:59:59Z");
                i.created = t("9999-12-30T00:00:00Z");
                let _ = plan(&i);
            }
        }
    }
}
