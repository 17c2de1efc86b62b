//! Shared helpers of the schedule tests: windows, then run times.

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
mod runs;
mod windows;
