//! Period windows and run times of PERIODIC report generators.
//!
//! Pure calendar and cron math: no Kubernetes client, no I/O and no clock reads (every
//! function takes the instant it works from), so the controller's scheduling is testable.
//!
//! - A window is a whole calendar day, ISO week (Monday to Sunday) or calendar month in the
//!   schedule's IANA time zone, so a day lasts 23 or 25 hours across a DST change.
//! - Runs fall at each window boundary, or at the fire times of `schedule.cron` (parsed and
//!   evaluated by the `croner` crate in the schedule's time zone).
//! - Each run reports on the latest complete window as of the run time.

use chrono::{
    DateTime, Datelike, Days, LocalResult, Months, NaiveDate, NaiveDateTime, NaiveTime, TimeDelta, TimeZone,
    Utc,
};
use chrono_tz::Tz;
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};

use crate::api::Period;

/// Why a schedule cannot be built; the message names the bad value so a person can fix it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    /// `schedule.timeZone` is not in the IANA database bundled with the operator.
    #[error("unknown time zone {0:?}: use an IANA name such as \"Europe/Berlin\" or \"UTC\"")]
    UnknownTimeZone(String),
    /// `schedule.cron` does not parse as a 5-field cron expression or macro, or never fires.
    #[error("invalid cron {cron:?}: {reason}")]
    InvalidCron { cron: String, reason: String },
}

/// One report window: `start` is its first instant and `end` its last second, as in RDE's
/// `startDate`/`endDate` (`2018-10-08T00:00:00Z` to `2018-10-08T23:59:59Z`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Window {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

impl Window {
    /// The exclusive end: the start of the next window, one second after `end`.
    pub fn next_start(&self) -> DateTime<Utc> {
        add_seconds(self.end, 1)
    }

    fn between(start: DateTime<Utc>, next_start: DateTime<Utc>) -> Self {
        Window {
            start,
            end: add_seconds(next_start, -1),
        }
    }
}

/// A window that became due, with the run time that made it due.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DueWindow {
    pub window: Window,
    /// The first run time at which this window was the latest complete one.
    pub run_time: DateTime<Utc>,
}

/// The parsed period, time zone and optional cron of a PERIODIC generator.
#[derive(Clone, Debug)]
pub struct ReportSchedule {
    period: Period,
    tz: Tz,
    cron: Option<Cron>,
}

impl ReportSchedule {
    /// Parses `schedule.timeZone` (default UTC) and `schedule.cron` (default: run at each
    /// window boundary). An empty or blank string counts as unset, since `cron: ""` is how
    /// API.md shows the default. `cron` takes 5 fields or `@yearly`, `@annually`, `@monthly`,
    /// `@weekly`, `@daily`, `@midnight`, `@hourly`.
    pub fn new(period: Period, time_zone: Option<&str>, cron: Option<&str>) -> Result<Self, ScheduleError> {
        let tz = match time_zone.map(str::trim).filter(|s| !s.is_empty()) {
            None => Tz::UTC,
            Some(name) => name
                .parse::<Tz>()
                .map_err(|_| ScheduleError::UnknownTimeZone(name.to_string()))?,
        };
        let cron = match cron.map(str::trim).filter(|s| !s.is_empty()) {
            None => None,
            Some(pattern) => Some(parse_cron(pattern, tz)?),
        };
        Ok(ReportSchedule { period, tz, cron })
    }

    pub fn period(&self) -> Period {
        self.period
    }

    pub fn time_zone(&self) -> Tz {
        self.tz
    }

    /// The window that holds instant `t`.
    pub fn window_containing(&self, t: DateTime<Utc>) -> Window {
        let mut key = self.window_key(t.with_timezone(&self.tz).date_naive());
        // The local date decides the window except next to a fall-back across midnight, which
        // repeats the previous day's last hour after the new day has begun (St. John's until
        // 2011); a step settles it. A skipped day (Pacific/Apia 2011-12-30) is an empty window
        // that no instant falls in, so it is never returned.
        let mut steps = 0;
        loop {
            let start = self.local_midnight(key);
            let following = self.step_key(key, true);
            let next_start = self.local_midnight(following);
            steps += 1;
            if steps > 4 || (start <= t && t < next_start) {
                return Window::between(start, next_start);
            }
            key = if t < start {
                self.step_key(key, false)
            } else {
                following
            };
        }
    }

    /// The window right after `w`.
    pub fn window_after(&self, w: &Window) -> Window {
        self.window_containing(w.next_start())
    }

    /// The window right before `w`.
    pub fn window_before(&self, w: &Window) -> Window {
        self.window_containing(add_seconds(w.start, -1))
    }

    /// The newest window whose exclusive end is at or before `at`: what a run at `at`, or a
    /// `run-now` request at `at`, reports on.
    pub fn latest_complete_window(&self, at: DateTime<Utc>) -> Window {
        self.window_before(&self.window_containing(at))
    }

    /// The first run time strictly after `t`: the next window boundary, or the cron's next
    /// fire time. `None` only when the cron fires no more (past year 5000).
    pub fn next_run_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match &self.cron {
            None => Some(self.window_containing(t).next_start()),
            Some(cron) => {
                // croner drops `t`'s fraction of a second and starts at the next whole one.
                cron.find_next_occurrence(&t.with_timezone(&self.tz), false)
                    .ok()
                    .map(|r| r.with_timezone(&Utc))
            }
        }
    }

    /// Windows due in `(after, now]`: for each run time R with `after < R <= now`, the latest
    /// complete window at R, deduplicated, oldest first, each with the first such R.
    ///
    /// Lazy, and the work is per window, not per run: after a window it jumps to the first run
    /// at or after the next window's end, so a `* * * * *` cron over a month-long outage costs
    /// one cron search per window. Take at most N per pass with `.take(n)`.
    ///
    /// A window stays the latest complete one for every run until the next window completes,
    /// so calls over consecutive ranges can yield the same window again: skip windows that
    /// already have a ReportFile (`end <= status.lastWindowEnd`).
    pub fn due_windows(
        &self,
        after: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> impl Iterator<Item = DueWindow> + '_ {
        let mut next_run = self.next_run_after(after);
        std::iter::from_fn(move || {
            let run_time = next_run.filter(|r| *r <= now)?;
            let window = self.latest_complete_window(run_time);
            // Every run before the following window completes reports on `window` again.
            next_run = self.next_run_after(self.window_after(&window).end);
            Some(DueWindow { window, run_time })
        })
    }

    /// Backfill for `parameters.startDate`: every window from the one holding `start_date`
    /// (so a start in mid-window includes that window) up to the latest complete window at
    /// `now`, oldest first, whether or not a run time has passed yet. Lazy.
    pub fn backfill_windows(
        &self,
        start_date: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> impl Iterator<Item = Window> + '_ {
        let last = self.latest_complete_window(now);
        let mut next = Some(self.window_containing(start_date)).filter(|w| w.start <= last.start);
        std::iter::from_fn(move || {
            let window = next?;
            next = Some(self.window_after(&window)).filter(|w| w.start <= last.start);
            Some(window)
        })
    }

    /// A short, stable, DNS-label-safe name part for a window, for ReportFile names:
    /// `20181008` (day), `2018w41` (ISO week, with the ISO week-numbering year), `201810` (month).
    pub fn window_suffix(&self, w: &Window) -> String {
        let day = w.start.with_timezone(&self.tz).date_naive();
        match self.period {
            Period::P1D => day.format("%Y%m%d").to_string(),
            Period::P1W => {
                let week = day.iso_week();
                format!("{:04}w{:02}", week.year(), week.week())
            }
            Period::P1M => day.format("%Y%m").to_string(),
        }
    }

    /// The local date that names the window holding local date `day`: the day itself, the
    /// Monday of its ISO week, or the first of its month.
    fn window_key(&self, day: NaiveDate) -> NaiveDate {
        match self.period {
            Period::P1D => day,
            Period::P1W => day
                .checked_sub_days(Days::new(u64::from(day.weekday().num_days_from_monday())))
                .unwrap_or(day),
            Period::P1M => day.with_day(1).unwrap_or(day),
        }
    }

    /// The key of the window after (`forward`) or before the one keyed `key`.
    fn step_key(&self, key: NaiveDate, forward: bool) -> NaiveDate {
        let moved = match (self.period, forward) {
            (Period::P1D, true) => key.checked_add_days(Days::new(1)),
            (Period::P1D, false) => key.checked_sub_days(Days::new(1)),
            (Period::P1W, true) => key.checked_add_days(Days::new(7)),
            (Period::P1W, false) => key.checked_sub_days(Days::new(7)),
            (Period::P1M, true) => key.checked_add_months(Months::new(1)),
            (Period::P1M, false) => key.checked_sub_months(Months::new(1)),
        };
        moved.unwrap_or(if forward { NaiveDate::MAX } else { NaiveDate::MIN })
    }

    /// The first instant of local date `day`: midnight, its earlier occurrence if the clock
    /// repeats it, or the end of the DST gap if the clock skips it (America/Santiago).
    fn local_midnight(&self, day: NaiveDate) -> DateTime<Utc> {
        let midnight = day.and_time(NaiveTime::MIN);
        match self.tz.from_local_datetime(&midnight) {
            LocalResult::Single(t) | LocalResult::Ambiguous(t, _) => t.with_timezone(&Utc),
            LocalResult::None => self.end_of_gap(midnight),
        }
    }

    /// The first instant whose wall clock reads `local` or later, for a `local` the clock
    /// skips: the instant of the jump, found by bisection over whole seconds.
    fn end_of_gap(&self, local: NaiveDateTime) -> DateTime<Utc> {
        // UTC offsets stay within ±26 h, so `local` read as UTC ± 26 h brackets the jump.
        const BRACKET: i64 = 26 * 3600;
        let reads_at_least_local = |secs: i64| {
            DateTime::from_timestamp(secs, 0).is_none_or(|t| t.with_timezone(&self.tz).naive_local() >= local)
        };
        let centre = local.and_utc().timestamp();
        let (mut before, mut after) = (centre - BRACKET, centre + BRACKET);
        while after - before > 1 {
            let mid = before + (after - before) / 2;
            if reads_at_least_local(mid) {
                after = mid;
            } else {
                before = mid;
            }
        }
        DateTime::from_timestamp(after, 0).unwrap_or(DateTime::<Utc>::MAX_UTC)
    }
}

/// Parses a 5-field cron or macro with croner; seconds and year fields are refused so the
/// syntax is the one CronJob users know.
fn parse_cron(pattern: &str, tz: Tz) -> Result<Cron, ScheduleError> {
    let invalid = |reason: String| ScheduleError::InvalidCron {
        cron: pattern.to_string(),
        reason,
    };
    // croner knows every standard macro but `@midnight`.
    let normalized = if pattern.eq_ignore_ascii_case("@midnight") {
        "@daily"
    } else {
        pattern
    };
    let cron = CronParser::builder()
        .seconds(Seconds::Disallowed)
        .year(Year::Disallowed)
        .build()
        .parse(normalized)
        .map_err(|e| invalid(e.to_string()))?;
    // A pattern such as `0 0 30 2 *` parses but never fires; say so now rather than schedule
    // nothing forever.
    let from = DateTime::<Utc>::UNIX_EPOCH.with_timezone(&tz);
    cron.find_next_occurrence(&from, false)
        .map_err(|_| invalid("it never fires (no such date)".to_string()))?;
    Ok(cron)
}

/// `t` moved by `secs` seconds, clamped to chrono's range instead of panicking.
fn add_seconds(t: DateTime<Utc>, secs: i64) -> DateTime<Utc> {
    TimeDelta::try_seconds(secs)
        .and_then(|d| t.checked_add_signed(d))
        .unwrap_or(if secs < 0 {
            DateTime::<Utc>::MIN_UTC
        } else {
            DateTime::<Utc>::MAX_UTC
        })
}

#[cfg(test)]
mod tests;
