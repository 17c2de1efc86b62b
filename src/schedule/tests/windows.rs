//! Calendar windows: days, ISO weeks and months in time zones, across DST changes.

use super::*;

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
    assert_eq!(before, window("2026-09-05T04:00:00Z", "2026-09-06T03:59:59Z"));
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
