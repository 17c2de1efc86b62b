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
    DateTime, Datelike, Days, LocalResult, Months, NaiveDate, NaiveDateTime, NaiveTime, TimeDelta,
    TimeZone, Utc,
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
    pub fn new(
        period: Period,
        time_zone: Option<&str>,
        cron: Option<&str>,
    ) -> Result<Self, ScheduleError> {
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
        moved.unwrap_or(if forward {
            NaiveDate::MAX
        } else {
            NaiveDate::MIN
        })
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
            DateTime::from_timestamp(secs, 0)
                .is_none_or(|t| t.with_timezone(&self.tz).naive_local() >= local)
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
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn schedule(period: Period, tz: Option<&str>, cron: Option<&str>) -> ReportSchedule {
        ReportSchedule::new(period, tz, cron).unwrap()
    }

    fn window(start: &str, end: &str) -> Window {
        Window {
            start: utc(start),
            end: utc(end),
        }
    }

    /// Asserts which window holds `at`, and returns it.
    fn assert_window(s: &ReportSchedule, at: &str, start: &str, end: &str) -> Window {
        let w = s.window_containing(utc(at));
        assert_eq!(w, window(start, end), "window holding {at}");
        w
    }

    fn assert_next_run(s: &ReportSchedule, after: &str, expected: &str) {
        assert_eq!(
            s.next_run_after(utc(after)),
            Some(utc(expected)),
            "run after {after}"
        );
    }

    fn due(s: &ReportSchedule, after: &str, now: &str) -> Vec<DueWindow> {
        s.due_windows(utc(after), utc(now)).collect()
    }

    fn due_window(start: &str, end: &str, run_time: &str) -> DueWindow {
        DueWindow {
            window: window(start, end),
            run_time: utc(run_time),
        }
    }

    fn hours(w: &Window) -> i64 {
        (w.next_start() - w.start).num_hours()
    }

    #[test]
    fn day_window_matches_rde_seed_and_ends_on_its_last_second() {
        let s = schedule(Period::P1D, None, None);
        let w = s.window_containing(utc("2018-10-08T13:45:10Z"));
        assert_eq!(w.start, utc("2018-10-08T00:00:00Z"));
        assert_eq!(w.end, utc("2018-10-08T23:59:59Z"));
        assert_eq!(s.window_containing(w.start), w);
        assert_eq!(w.next_start(), utc("2018-10-09T00:00:00Z"));
        assert_eq!(s.window_containing(w.end), w);
        assert_eq!(s.window_containing(utc("2018-10-08T23:59:59.999Z")), w);
        assert_ne!(s.window_containing(w.next_start()), w);
    }

    #[test]
    fn month_ends_leap_years_and_year_rollover() {
        // (period, instant, window start, window end, start of the window after)
        let cases = [
            // January 31 is followed by February.
            (
                Period::P1M,
                "2025-01-31T18:00:00Z",
                "2025-01-01T00:00:00Z",
                "2025-01-31T23:59:59Z",
                "2025-02-01T00:00:00Z",
            ),
            // 2024 is a leap year: February has 29 days, and the leap day is a day window.
            (
                Period::P1M,
                "2024-02-10T00:00:00Z",
                "2024-02-01T00:00:00Z",
                "2024-02-29T23:59:59Z",
                "2024-03-01T00:00:00Z",
            ),
            (
                Period::P1D,
                "2024-02-29T12:00:00Z",
                "2024-02-29T00:00:00Z",
                "2024-02-29T23:59:59Z",
                "2024-03-01T00:00:00Z",
            ),
            // 2025 is not.
            (
                Period::P1M,
                "2025-02-28T23:00:00Z",
                "2025-02-01T00:00:00Z",
                "2025-02-28T23:59:59Z",
                "2025-03-01T00:00:00Z",
            ),
            (
                Period::P1D,
                "2025-02-28T12:00:00Z",
                "2025-02-28T00:00:00Z",
                "2025-02-28T23:59:59Z",
                "2025-03-01T00:00:00Z",
            ),
            // December rolls over to January of the next year.
            (
                Period::P1M,
                "2025-12-31T23:59:59Z",
                "2025-12-01T00:00:00Z",
                "2025-12-31T23:59:59Z",
                "2026-01-01T00:00:00Z",
            ),
            (
                Period::P1D,
                "2025-12-31T08:00:00Z",
                "2025-12-31T00:00:00Z",
                "2025-12-31T23:59:59Z",
                "2026-01-01T00:00:00Z",
            ),
        ];
        for (period, at, start, end, following) in cases {
            let s = schedule(period, None, None);
            let w = s.window_containing(utc(at));
            assert_eq!(w, window(start, end), "{period:?} {at}");
            let next = s.window_after(&w);
            assert_eq!(next.start, utc(following), "{period:?} {at}");
            assert_eq!(s.window_before(&next), w, "{period:?} {at}");
        }
    }

    #[test]
    fn iso_weeks_run_monday_to_sunday_and_week_53_spans_new_year() {
        let s = schedule(Period::P1W, None, None);
        let w53 = assert_window(
            &s,
            "2021-01-01T12:00:00Z",
            "2020-12-28T00:00:00Z",
            "2021-01-03T23:59:59Z",
        );
        assert_eq!(s.window_suffix(&w53), "2020w53");
        let w1 = s.window_after(&w53);
        assert_eq!(w1, window("2021-01-04T00:00:00Z", "2021-01-10T23:59:59Z"));
        assert_eq!(s.window_suffix(&w1), "2021w01");
        // A Sunday late in the day still belongs to the week that began on Monday.
        assert_window(
            &s,
            "2018-10-14T23:00:00Z",
            "2018-10-08T00:00:00Z",
            "2018-10-14T23:59:59Z",
        );
    }

    #[test]
    fn dst_days_last_23_and_25_hours_in_berlin_and_new_york() {
        // (zone, instant on the day, window start, window end, hours)
        let cases = [
            (
                "Europe/Berlin",
                "2026-03-29T12:00:00Z",
                "2026-03-28T23:00:00Z",
                "2026-03-29T21:59:59Z",
                23,
            ),
            (
                "Europe/Berlin",
                "2026-10-25T12:00:00Z",
                "2026-10-24T22:00:00Z",
                "2026-10-25T22:59:59Z",
                25,
            ),
            (
                "America/New_York",
                "2026-03-08T12:00:00Z",
                "2026-03-08T05:00:00Z",
                "2026-03-09T03:59:59Z",
                23,
            ),
            (
                "America/New_York",
                "2026-11-01T12:00:00Z",
                "2026-11-01T04:00:00Z",
                "2026-11-02T04:59:59Z",
                25,
            ),
        ];
        for (zone, at, start, end, length) in cases {
            let s = schedule(Period::P1D, Some(zone), None);
            let w = s.window_containing(utc(at));
            assert_eq!(w, window(start, end), "{zone} {at}");
            assert_eq!(hours(&w), length, "{zone} {at}");
        }
    }

    #[test]
    fn day_starts_after_a_dst_gap_at_midnight() {
        // America/Santiago jumps from 00:00 (-04) to 01:00 (-03) on 2026-09-06.
        let s = schedule(Period::P1D, Some("America/Santiago"), None);
        let w = assert_window(
            &s,
            "2026-09-06T12:00:00Z",
            "2026-09-06T04:00:00Z",
            "2026-09-07T02:59:59Z",
        );
        assert_eq!(hours(&w), 23);
        assert_eq!(s.window_suffix(&w), "20260906");
        let before = s.window_before(&w);
        assert_eq!(
            before,
            window("2026-09-05T04:00:00Z", "2026-09-06T03:59:59Z")
        );
    }

    #[test]
    fn windows_in_time_zones_east_and_west_of_utc() {
        // (period, zone, instant, window start, window end, suffix)
        let cases = [
            // 20:00 UTC on May 10 is already May 11 in Tokyo (+09).
            (
                Period::P1D,
                "Asia/Tokyo",
                "2026-05-10T20:00:00Z",
                "2026-05-10T15:00:00Z",
                "2026-05-11T14:59:59Z",
                "20260511",
            ),
            // A half-hour offset (+05:30).
            (
                Period::P1D,
                "Asia/Kolkata",
                "2026-06-01T10:00:00Z",
                "2026-05-31T18:30:00Z",
                "2026-06-01T18:29:59Z",
                "20260601",
            ),
            // Sydney leaves DST (+11 to +10) on 2026-04-05, inside April.
            (
                Period::P1M,
                "Australia/Sydney",
                "2026-04-15T00:00:00Z",
                "2026-03-31T13:00:00Z",
                "2026-04-30T13:59:59Z",
                "202604",
            ),
            // 03:00 UTC on July 1 is still June 30 in Los Angeles (PDT, -07).
            (
                Period::P1D,
                "America/Los_Angeles",
                "2026-07-01T03:00:00Z",
                "2026-06-30T07:00:00Z",
                "2026-07-01T06:59:59Z",
                "20260630",
            ),
        ];
        for (period, zone, at, start, end, suffix) in cases {
            let s = schedule(period, Some(zone), None);
            let w = assert_window(&s, at, start, end);
            assert_eq!(s.window_suffix(&w), suffix, "{zone}");
        }
    }

    #[test]
    fn windows_tile_time_without_gaps_or_overlaps_through_dst_years() {
        // Zones with clock changes at 02:00, at midnight (Santiago, Havana, Beirut), across
        // midnight (St. John's until 2011) and a skipped day (Apia, 2011-12-30).
        let zones = [
            "UTC",
            "Europe/Berlin",
            "America/New_York",
            "America/Santiago",
            "America/Havana",
            "Asia/Beirut",
            "America/St_Johns",
            "Australia/Sydney",
            "Asia/Kolkata",
            "Pacific/Apia",
        ];
        let ranges = [
            ("2005-01-01T00:00:00Z", "2013-01-01T00:00:00Z"),
            ("2025-01-01T00:00:00Z", "2027-01-01T00:00:00Z"),
        ];
        for zone in zones {
            for period in [Period::P1D, Period::P1W, Period::P1M] {
                let s = schedule(period, Some(zone), None);
                for (from, until) in ranges {
                    let mut w = s.window_containing(utc(from));
                    while w.start < utc(until) {
                        let next = s.window_after(&w);
                        let at = format!("{zone} {period:?} after {w:?}");
                        assert_eq!(next.start, w.next_start(), "{at}");
                        assert!(next.start < next.next_start(), "{at}");
                        assert_eq!(s.window_containing(next.end), next, "{at}");
                        assert_eq!(s.window_before(&next), w, "{at}");
                        w = next;
                    }
                }
            }
        }
    }

    #[test]
    fn fall_back_across_midnight_keeps_the_later_day() {
        // St. John's fell back from 00:01 (-02:30) to 23:01 (-03:30) on 2006-10-29, so
        // Saturday's last hour came again after Sunday had begun; those instants stay in
        // Sunday's window, which starts at the first 00:00.
        let s = schedule(Period::P1D, Some("America/St_Johns"), None);
        let sunday = s.window_containing(utc("2006-10-29T03:00:00Z"));
        assert_eq!(sunday.start, utc("2006-10-29T02:30:00Z"));
        assert_eq!(s.window_suffix(&sunday), "20061029");
        assert_eq!(s.window_before(&sunday).next_start(), sunday.start);
    }

    #[test]
    fn default_runs_fall_on_window_boundaries() {
        let s = schedule(Period::P1D, None, None);
        assert_next_run(&s, "2018-10-08T13:00:00Z", "2018-10-09T00:00:00Z");
        assert_next_run(&s, "2018-10-09T00:00:00Z", "2018-10-10T00:00:00Z");
        let due = due(&s, "2018-10-08T13:00:00Z", "2018-10-10T00:00:00Z");
        assert_eq!(
            due,
            vec![
                due_window(
                    "2018-10-08T00:00:00Z",
                    "2018-10-08T23:59:59Z",
                    "2018-10-09T00:00:00Z"
                ),
                due_window(
                    "2018-10-09T00:00:00Z",
                    "2018-10-09T23:59:59Z",
                    "2018-10-10T00:00:00Z"
                ),
            ]
        );
    }

    #[test]
    fn default_monthly_runs_at_local_month_boundary() {
        let s = schedule(Period::P1M, Some("Europe/Berlin"), None);
        assert_next_run(&s, "2026-03-15T00:00:00Z", "2026-03-31T22:00:00Z");
    }

    #[test]
    fn due_windows_excludes_after_and_includes_now() {
        let s = schedule(Period::P1D, None, None);
        let boundary = utc("2018-10-09T00:00:00Z");
        assert_eq!(s.due_windows(boundary, boundary).count(), 0);
        assert_eq!(
            s.due_windows(utc("2018-10-08T23:59:59Z"), boundary).count(),
            1
        );
        assert_eq!(
            s.due_windows(utc("2018-10-08T23:59:59Z"), utc("2018-10-08T23:59:59.9Z"))
                .count(),
            0
        );
    }

    #[test]
    fn every_minute_cron_with_daily_period_reports_each_day_once() {
        let s = schedule(Period::P1D, None, Some("* * * * *"));
        let due = due(&s, "2025-12-31T23:59:30Z", "2026-01-04T12:00:00Z");
        let starts: Vec<_> = due.iter().map(|d| d.window.start).collect();
        assert_eq!(
            starts,
            vec![
                utc("2025-12-31T00:00:00Z"),
                utc("2026-01-01T00:00:00Z"),
                utc("2026-01-02T00:00:00Z"),
                utc("2026-01-03T00:00:00Z"),
            ]
        );
        assert_eq!(due[0].run_time, utc("2026-01-01T00:00:00Z"));
        assert_eq!(due[3].run_time, utc("2026-01-04T00:00:00Z"));
    }

    #[test]
    fn first_cron_run_after_creation_reports_the_latest_complete_window() {
        // Created mid-day: the first minute run reports yesterday, not waiting for midnight.
        let s = schedule(Period::P1D, None, Some("* * * * *"));
        let due = due(&s, "2026-01-02T10:00:30Z", "2026-01-02T10:05:00Z");
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].window.start, utc("2026-01-01T00:00:00Z"));
        assert_eq!(due[0].run_time, utc("2026-01-02T10:01:00Z"));
    }

    #[test]
    fn long_outage_is_caught_up_oldest_first_with_a_cap() {
        let s = schedule(Period::P1D, None, Some("* * * * *"));
        let (after, now) = (utc("2026-01-01T00:00:30Z"), utc("2026-02-01T00:00:30Z"));
        let first: Vec<_> = s.due_windows(after, now).take(5).collect();
        assert_eq!(first.len(), 5);
        // The 00:01 run on Jan 1 still reports Dec 31, the latest complete day then.
        assert_eq!(first[0].window.start, utc("2025-12-31T00:00:00Z"));
        assert_eq!(first[0].run_time, utc("2026-01-01T00:01:00Z"));
        assert_eq!(first[1].run_time, utc("2026-01-02T00:00:00Z"));
        assert_eq!(first[4].window.start, utc("2026-01-04T00:00:00Z"));
        let all: Vec<_> = s.due_windows(after, now).collect();
        assert_eq!(all.len(), 32);
        assert_eq!(all[31].window.start, utc("2026-01-31T00:00:00Z"));
        assert!(
            all.windows(2)
                .all(|p| p[0].window.next_start() == p[1].window.start)
        );
    }

    #[test]
    fn daily_and_midnight_macros_run_at_local_midnight() {
        for macro_ in ["@daily", "@midnight", "@DAILY"] {
            let s = schedule(Period::P1D, Some("Asia/Tokyo"), Some(macro_));
            assert_next_run(&s, "2026-05-10T20:00:00Z", "2026-05-11T15:00:00Z");
        }
    }

    #[test]
    fn other_macros_are_accepted() {
        for macro_ in ["@yearly", "@annually", "@monthly", "@weekly", "@hourly"] {
            assert!(
                ReportSchedule::new(Period::P1D, None, Some(macro_)).is_ok(),
                "{macro_}"
            );
        }
        let hourly = schedule(Period::P1D, None, Some("@hourly"));
        assert_next_run(&hourly, "2026-01-01T10:20:00Z", "2026-01-01T11:00:00Z");
    }

    #[test]
    fn cron_six_am_in_berlin_follows_local_time() {
        let s = schedule(Period::P1D, Some("Europe/Berlin"), Some("0 6 * * *"));
        // Winter (+01) and, after the 2026-03-29 change, summer (+02).
        assert_next_run(&s, "2026-01-10T00:00:00Z", "2026-01-10T05:00:00Z");
        let run = s.next_run_after(utc("2026-03-28T12:00:00Z"));
        assert_eq!(run, Some(utc("2026-03-29T04:00:00Z")));
        let due = due(&s, "2026-03-28T12:00:00Z", "2026-03-29T04:00:00Z");
        assert_eq!(due.len(), 1);
        assert_eq!(
            due[0].window,
            window("2026-03-27T23:00:00Z", "2026-03-28T22:59:59Z")
        );
    }

    #[test]
    fn weekly_cron_on_monday_reports_the_previous_iso_week() {
        let s = schedule(Period::P1W, None, Some("0 2 * * 1"));
        let due = due(&s, "2026-01-05T03:00:00Z", "2026-01-19T02:00:00Z");
        assert_eq!(
            due,
            vec![
                due_window(
                    "2026-01-05T00:00:00Z",
                    "2026-01-11T23:59:59Z",
                    "2026-01-12T02:00:00Z"
                ),
                due_window(
                    "2026-01-12T00:00:00Z",
                    "2026-01-18T23:59:59Z",
                    "2026-01-19T02:00:00Z"
                ),
            ]
        );
    }

    #[test]
    fn cron_time_in_dst_gap_runs_when_the_gap_ends() {
        // 02:30 does not exist in Berlin on 2026-03-29: croner runs at 03:00 CEST instead.
        let s = schedule(Period::P1D, Some("Europe/Berlin"), Some("30 2 * * *"));
        assert_next_run(&s, "2026-03-28T12:00:00Z", "2026-03-29T01:00:00Z");
    }

    #[test]
    fn cron_time_repeated_at_fall_back_runs_once() {
        // 02:30 happens twice in Berlin on 2026-10-25: a fixed-time cron runs at the first.
        let s = schedule(Period::P1D, Some("Europe/Berlin"), Some("30 2 * * *"));
        let first = s.next_run_after(utc("2026-10-24T12:00:00Z"));
        assert_eq!(first, Some(utc("2026-10-25T00:30:00Z")));
        let second = first.and_then(|t| s.next_run_after(t));
        assert_eq!(second, Some(utc("2026-10-26T01:30:00Z")));
    }

    #[test]
    fn next_run_after_ignores_fractions_of_a_second() {
        let s = schedule(Period::P1D, None, Some("* * * * *"));
        assert_next_run(&s, "2026-01-01T10:00:00.5Z", "2026-01-01T10:01:00Z");
        assert_next_run(&s, "2026-01-01T10:00:59.9Z", "2026-01-01T10:01:00Z");
    }

    #[test]
    fn invalid_cron_is_rejected_with_the_pattern_in_the_message() {
        for bad in [
            "61 * * * *",
            "0 0 0 * * *",
            "@every 5m",
            "0 0 * *",
            "0 0 30 2 *",
        ] {
            let err = ReportSchedule::new(Period::P1D, None, Some(bad)).unwrap_err();
            assert!(matches!(err, ScheduleError::InvalidCron { .. }), "{bad}");
            let message = err.to_string();
            assert!(
                message.starts_with(&format!("invalid cron \"{bad}\": ")),
                "{message}"
            );
        }
        // A leap day fires, if rarely.
        assert!(ReportSchedule::new(Period::P1D, None, Some("0 0 29 2 *")).is_ok());
    }

    #[test]
    fn unknown_time_zone_is_rejected_with_its_name() {
        let err = ReportSchedule::new(Period::P1D, Some("Europe/Berln"), None).unwrap_err();
        assert_eq!(
            err,
            ScheduleError::UnknownTimeZone("Europe/Berln".to_string())
        );
        assert!(
            err.to_string()
                .starts_with("unknown time zone \"Europe/Berln\"")
        );
    }

    #[test]
    fn empty_cron_and_time_zone_mean_the_defaults() {
        let s = schedule(Period::P1D, Some(""), Some("  "));
        assert_eq!(s.time_zone(), Tz::UTC);
        assert_next_run(&s, "2026-01-01T10:00:00Z", "2026-01-02T00:00:00Z");
    }

    #[test]
    fn latest_complete_window_for_run_now() {
        let day = schedule(Period::P1D, None, None);
        let oct8 = window("2018-10-08T00:00:00Z", "2018-10-08T23:59:59Z");
        assert_eq!(
            day.latest_complete_window(utc("2018-10-09T09:23:52Z")),
            oct8
        );
        assert_eq!(
            day.latest_complete_window(utc("2018-10-09T00:00:00Z")),
            oct8
        );
        let month = schedule(Period::P1M, Some("America/Los_Angeles"), None);
        let feb = month.latest_complete_window(utc("2026-03-15T00:00:00Z"));
        assert_eq!(feb, window("2026-02-01T08:00:00Z", "2026-03-01T07:59:59Z"));
    }

    #[test]
    fn backfill_from_start_date_mid_window_includes_that_window() {
        let s = schedule(Period::P1D, None, None);
        let got: Vec<_> = s
            .backfill_windows(utc("2018-10-08T15:00:00Z"), utc("2018-10-11T10:00:00Z"))
            .collect();
        assert_eq!(
            got,
            vec![
                window("2018-10-08T00:00:00Z", "2018-10-08T23:59:59Z"),
                window("2018-10-09T00:00:00Z", "2018-10-09T23:59:59Z"),
                window("2018-10-10T00:00:00Z", "2018-10-10T23:59:59Z"),
            ]
        );
        let weekly = schedule(Period::P1W, None, None);
        let weeks: Vec<_> = weekly
            .backfill_windows(utc("2018-10-10T00:00:00Z"), utc("2018-10-23T00:00:00Z"))
            .collect();
        assert_eq!(weeks.len(), 2);
        assert_eq!(weeks[0].start, utc("2018-10-08T00:00:00Z"));
    }

    #[test]
    fn backfill_ignores_a_cron_that_has_not_run_yet() {
        // Monthly runs would skip most days; backfill still covers every day.
        let s = schedule(Period::P1D, None, Some("@monthly"));
        let got = s.backfill_windows(utc("2026-01-03T00:00:00Z"), utc("2026-01-10T12:00:00Z"));
        assert_eq!(got.count(), 7);
    }

    #[test]
    fn backfill_of_the_current_window_is_empty() {
        let s = schedule(Period::P1M, None, None);
        let got = s.backfill_windows(utc("2026-03-02T00:00:00Z"), utc("2026-03-20T00:00:00Z"));
        assert_eq!(got.count(), 0);
    }

    #[test]
    fn window_suffix_names_are_short_and_dns_safe() {
        let t = utc("2018-10-08T12:00:00Z");
        let cases = [
            (Period::P1D, "20181008"),
            (Period::P1W, "2018w41"),
            (Period::P1M, "201810"),
        ];
        for (period, expected) in cases {
            let s = schedule(period, None, None);
            let name = s.window_suffix(&s.window_containing(t));
            assert_eq!(name, expected);
            assert!(
                name.chars()
                    .all(|c| c.is_ascii_digit() || c.is_ascii_lowercase())
            );
        }
    }

    #[test]
    fn years_0001_and_9999_in_any_zone_give_windows_without_panicking() {
        for zone in ["UTC", "Pacific/Kiritimati", "Pacific/Pago_Pago", "America/St_Johns", "Asia/Kolkata"] {
            for period in [Period::P1D, Period::P1W, Period::P1M] {
                for cron in [None, Some("* * * * *"), Some("@yearly")] {
                    let s = schedule(period, Some(zone), cron);
                    for at in ["0000-01-01T00:00:00Z", "0001-01-01T00:00:00Z", "9999-12-31T23:59:59Z"] {
                        let w = s.window_containing(utc(at));
                        assert!(w.start <= utc(at) && utc(at) <= w.end, "{zone} {period:?} {at}");
                        let _ = s.latest_complete_window(utc(at));
                        let _ = s.window_suffix(&w);
                        let _ = s.next_run_after(utc(at));
                        assert!(s.due_windows(utc(at), utc(at)).next().is_none());
                    }
                    let _ = s.backfill_windows(utc("0001-01-01T00:00:00Z"), utc("0001-03-01T00:00:00Z")).count();
                    assert_eq!(s.backfill_windows(utc("9999-12-31T23:59:59Z"), utc("2026-01-01T00:00:00Z")).count(), 0);
                }
            }
        }
    }
}
