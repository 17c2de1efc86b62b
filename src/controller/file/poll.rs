//! How often a report in progress is polled, pure: quick at first, slower as the report
//! takes longer, and within the backend's rate budget shared by all its running reports.

use std::time::Duration;

/// The earliest first poll after a submit: [`poll_interval`]'s quickest.
pub const FIRST_POLL: Duration = Duration::from_secs(1);

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
