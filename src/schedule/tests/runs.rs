//! Run times: window boundaries, cron patterns and macros, catch-up and backfill.

use super::*;

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
    assert_eq!(s.due_windows(utc("2018-10-08T23:59:59Z"), boundary).count(), 1);
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
    for bad in ["61 * * * *", "0 0 0 * * *", "@every 5m", "0 0 * *", "0 0 30 2 *"] {
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
    assert_eq!(err, ScheduleError::UnknownTimeZone("Europe/Berln".to_string()));
    assert!(err.to_string().starts_with("unknown time zone \"Europe/Berln\""));
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
    assert_eq!(day.latest_complete_window(utc("2018-10-09T09:23:52Z")), oct8);
    assert_eq!(day.latest_complete_window(utc("2018-10-09T00:00:00Z")), oct8);
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
        assert!(name.chars().all(|c| c.is_ascii_digit() || c.is_ascii_lowercase()));
    }
}

#[test]
fn years_0001_and_9999_in_any_zone_give_windows_without_panicking() {
    for zone in [
        "UTC",
        "Pacific/Kiritimati",
        "Pacific/Pago_Pago",
        "America/St_Johns",
        "Asia/Kolkata",
    ] {
        for period in [Period::P1D, Period::P1W, Period::P1M] {
            for cron in [None, Some("* * * * *"), Some("@yearly")] {
                let s = schedule(period, Some(zone), cron);
                for at in [
                    "0000-01-01T00:00:00Z",
                    "0001-01-01T00:00:00Z",
                    "9999-12-31T23:59:59Z",
                ] {
                    let w = s.window_containing(utc(at));
                    assert!(w.start <= utc(at) && utc(at) <= w.end, "{zone} {period:?} {at}");
                    let _ = s.latest_complete_window(utc(at));
                    let _ = s.window_suffix(&w);
                    let _ = s.next_run_after(utc(at));
                    assert!(s.due_windows(utc(at), utc(at)).next().is_none());
                }
                let _ = s
                    .backfill_windows(utc("0001-01-01T00:00:00Z"), utc("0001-03-01T00:00:00Z"))
                    .count();
                assert_eq!(
                    s.backfill_windows(utc("9999-12-31T23:59:59Z"), utc("2026-01-01T00:00:00Z"))
                        .count(),
                    0
                );
            }
        }
    }
}
