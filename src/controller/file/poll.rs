//! How often a report in progress is polled, pure: quick at first, slower as the report
//! takes longer, and within the backend's rate budget shared by all its running reports.

use std::time::Duration;

use chrono::{DateTime, Utc};

/// The earliest first poll after a submit: [`poll_interval`]'s quickest.
pub const FIRST_POLL: Duration = Duration::from_secs(1);

/// Where a backend answers the polls of one organization's reports from one shared listing
/// (SUPPLIER), the polls fall on a grid: the multiples of the interval since the epoch. One
/// listing taken at a tick then answers every report of the organization polled at that tick
/// with news a few milliseconds old, where unaligned polls, each a little later than the one
/// before, would be answered by a listing taken up to an interval before them, and see a
/// finished report late. The next tick at least half an interval after `t`: on average one
/// interval, as without the grid, so the budget the interval was chosen for holds.
pub fn next_tick(t: DateTime<Utc>, interval: Duration) -> DateTime<Utc> {
    let step = i64::try_from(interval.as_millis()).unwrap_or(i64::MAX).max(1);
    let earliest = t.timestamp_millis().saturating_add(step / 2);
    let tick = earliest
        .div_euclid(step)
        .saturating_add(i64::from(earliest.rem_euclid(step) != 0))
        .saturating_mul(step);
    DateTime::from_timestamp_millis(tick).unwrap_or(t)
}

/// How long a report submitted at `submitted` waits yet, at `now`, before its first poll
/// (`None`: poll now): [`FIRST_POLL`] after the submit, or on the grid ([`next_tick`]) the
/// first tick at least half of it after the submit. A submit time ahead of `now` (a skewed
/// clock) waits for nothing.
pub fn first_poll_wait(submitted: DateTime<Utc>, now: DateTime<Utc>, grid: bool) -> Option<Duration> {
    if submitted > now {
        return None;
    }
    let first = if grid {
        next_tick(submitted, FIRST_POLL)
    } else {
        submitted + FIRST_POLL
    };
    (first - now).to_std().ok().filter(|w| !w.is_zero())
}

/// The requeue of a report polled at `now` that is still running: `interval`, or on the grid
/// the time until [`next_tick`].
pub fn until_next_poll(now: DateTime<Utc>, interval: Duration, grid: bool) -> Duration {
    if !grid {
        return interval;
    }
    (next_tick(now, interval) - now).to_std().unwrap_or(interval)
}

/// Poll interval for a report running for `elapsed`, when a round of polls of all running
/// reports costs `polls_per_round` requests of a budget of `requests` per `window`: 1 s at
/// first, backing off to 30 s, and spread so that polling uses at most 80% of the budget (the
/// rest is for creates and downloads).
pub fn poll_interval(elapsed: Duration, polls_per_round: usize, budget: Option<(u32, Duration)>) -> Duration {
    let base = match elapsed.as_secs() {
        0..10 => FIRST_POLL,
        10..60 => Duration::from_secs(3),
        60..300 => Duration::from_secs(10),
        _ => Duration::from_secs(30),
    };
    let budget_floor = match budget {
        Some((requests, window)) if requests > 0 => {
            let secs = window.as_secs_f64() * 1.25 * polls_per_round.max(1) as f64 / f64::from(requests);
            Duration::try_from_secs_f64(secs).unwrap_or(Duration::MAX)
        }
        _ => Duration::ZERO,
    };
    base.max(budget_floor).min(Duration::from_secs(600))
}

/// The shortest stretch a poll schedule plans its spending for: a report just submitted is
/// expected to take about this long, one that has run longer about as long again.
const SPEND_HORIZON: Duration = Duration::from_secs(10);

/// [`poll_interval`] when the budget's `spare` requests are known: polls may spend the spare
/// budget (with the same margin) over the time the reports are expected to run yet, which is
/// about as long as they have run so far, at least [`SPEND_HORIZON`]. A fan-out of reports
/// that finish in seconds is polled every second instead of at the steady-state rate that a
/// full window of polling would need; as reports run longer, or the budget runs low, the
/// interval grows back to [`poll_interval`]'s, never beyond it.
pub fn poll_interval_spending(
    elapsed: Duration,
    polls_per_round: usize,
    budget: Option<(u32, Duration)>,
    spare: u32,
) -> Duration {
    let steady = poll_interval(elapsed, polls_per_round, budget);
    let Some((_, window)) = budget else { return steady };
    if spare == 0 {
        return steady;
    }
    let horizon = elapsed.min(window).max(SPEND_HORIZON);
    let secs = horizon.as_secs_f64() * 1.25 * polls_per_round.max(1) as f64 / f64::from(spare);
    let spending = Duration::try_from_secs_f64(secs).unwrap_or(Duration::MAX);
    poll_interval(elapsed, polls_per_round, None)
        .max(spending)
        .min(steady)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn polls_on_the_grid_fall_on_shared_ticks() {
        let t = |s: &str| DateTime::parse_from_rfc3339(s).expect("time").with_timezone(&Utc);
        let ms = Duration::from_millis;
        // (at, interval, next tick)
        let rows = [
            // Reports of one organization polled at different moments meet at the same tick.
            ("2026-01-01T00:00:00.100Z", 1000, "2026-01-01T00:00:01Z"),
            ("2026-01-01T00:00:00.499Z", 1000, "2026-01-01T00:00:01Z"),
            // At least half an interval ahead: a poll late after its tick goes to the next.
            ("2026-01-01T00:00:00.600Z", 1000, "2026-01-01T00:00:02Z"),
            ("2026-01-01T00:00:01Z", 1000, "2026-01-01T00:00:02Z"),
            // Longer intervals: their own multiples.
            ("2026-01-01T00:00:01Z", 3000, "2026-01-01T00:00:03Z"),
            ("2026-01-01T00:00:02Z", 3000, "2026-01-01T00:00:06Z"),
        ];
        for (at, interval, want) in rows {
            assert_eq!(
                next_tick(t(at), ms(interval)),
                t(want),
                "{at} every {interval} ms"
            );
        }
        let now = t("2026-01-01T00:00:00.250Z");
        assert_eq!(until_next_poll(now, ms(1000), true), ms(750));
        assert_eq!(until_next_poll(now, ms(1000), false), ms(1000));
        // The first poll: a second after the submit, or on the grid the tick at least half a
        // second after it; none once that has passed.
        let submitted = t("2026-01-01T00:00:00.100Z");
        assert_eq!(first_poll_wait(submitted, now, false), Some(ms(850)));
        assert_eq!(first_poll_wait(submitted, now, true), Some(ms(750)));
        assert_eq!(first_poll_wait(submitted, t("2026-01-01T00:00:01Z"), true), None);
        assert_eq!(
            first_poll_wait(submitted, t("2026-01-01T00:00:01.300Z"), false),
            None
        );
        // Extremes do not overflow.
        let _ = next_tick(DateTime::<Utc>::MAX_UTC, Duration::MAX);
        let _ = next_tick(DateTime::<Utc>::MIN_UTC, ms(1));
    }

    #[test]
    fn polling_starts_fast_backs_off_and_respects_the_budget() {
        assert_eq!(
            poll_interval(Duration::from_secs(0), 1, None),
            Duration::from_secs(1)
        );
        assert_eq!(
            poll_interval(Duration::from_secs(30), 1, None),
            Duration::from_secs(3)
        );
        assert_eq!(
            poll_interval(Duration::from_secs(3600), 1, None),
            Duration::from_secs(30)
        );
        // 120 reports on 600 requests per 10 minutes: each polled at most every 150 s.
        let spread = poll_interval(Duration::from_secs(0), 120, Some((600, Duration::from_secs(600))));
        assert_eq!(spread, Duration::from_secs(150));
    }

    #[test]
    fn huge_rate_budgets_do_not_overflow_the_poll_interval() {
        assert_eq!(
            poll_interval(Duration::ZERO, usize::MAX, Some((1, Duration::MAX))),
            Duration::from_secs(600)
        );
        assert_eq!(
            poll_interval(Duration::MAX, 1, Some((u32::MAX, Duration::from_secs(1)))),
            Duration::from_secs(30)
        );
    }

    #[test]
    fn polls_spend_the_spare_budget_over_the_time_reports_are_expected_to_run() {
        let supplier = Some((600, Duration::from_secs(600)));
        let secs = Duration::from_secs;
        // (running for, organizations polled per round, spare requests, interval)
        let rows: [(u64, usize, u32, Duration); 8] = [
            // 20 organizations' fan-out just submitted, the window nearly unused: every second.
            (0, 20, 480, secs(1)),
            // After 30 s the base schedule (3 s) is slower than what 480 spare allow (1.56 s);
            // with 100 spare, 80% of them over 30 s more allow one round per 7.5 s.
            (30, 20, 480, secs(3)),
            (30, 20, 100, Duration::from_millis(7500)),
            // Little budget left: back to the steady rate (600 s × 1.25 × 20 / 600 = 25 s).
            (0, 20, 10, secs(25)),
            (0, 20, 0, secs(25)),
            // Long-running reports never poll faster than the steady rate allows.
            (3600, 20, 600, secs(30)),
            // One organization, plenty left: the base schedule.
            (0, 1, 600, secs(1)),
            (3600, 1, 600, secs(30)),
        ];
        for (running, orgs, spare, want) in rows {
            assert_eq!(
                poll_interval_spending(secs(running), orgs, supplier, spare),
                want,
                "running {running} s, {orgs} orgs, {spare} spare"
            );
        }
        // Without a budget, the base schedule.
        assert_eq!(poll_interval_spending(secs(0), 120, None, 0), secs(1));
    }
}
