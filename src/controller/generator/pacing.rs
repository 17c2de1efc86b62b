//! How often a generator asks its backend for reports to mirror (RDE report files, CMP
//! invoice reports): pure, so that the arithmetic is tested without a backend.
//!
//! A generator whose platform has no report yet used to list every 2 s: about 43,000 calls
//! a day against CMP's 5,000. Now the wait doubles while nothing comes, and no generator
//! lists faster than its share of the backend's most restrictive budget.

use std::time::Duration;

/// The first wait after an empty list: a report the platform is about to make shows up soon.
pub const FIRST_MIRROR_POLL: Duration = Duration::from_secs(2);
/// Lists of all mirroring generators together use at most 1/MARGIN (80%) of each budget; the
/// rest is for the reports' own calls (get, download).
const BUDGET_MARGIN: f64 = 1.25;
/// The longest wait the budget can impose, so that a tiny budget still polls once a day.
const MAX_BUDGET_WAIT: Duration = Duration::from_secs(86_400);

/// The wait before the next list: `waited` (how long the generator has been waiting for a
/// report, from its status times) clamped between [`FIRST_MIRROR_POLL`] and `steady` (so
/// the waits double: 2, 4, 8, 16 s, … up to `steady`), and never less than
/// [`budget_floor`].
pub fn mirror_interval(
    waited: Duration,
    steady: Duration,
    pollers: usize,
    budgets: &[(u32, Duration)],
) -> Duration {
    waited
        .max(FIRST_MIRROR_POLL)
        .min(steady.max(FIRST_MIRROR_POLL))
        .max(budget_floor(pollers, budgets))
}

/// The shortest wait between lists of one of `pollers` generators that list the same backend,
/// so that all of them together stay within every budget (`requests` per `window`) with the
/// margin: the most restrictive budget decides.
pub fn budget_floor(pollers: usize, budgets: &[(u32, Duration)]) -> Duration {
    budgets
        .iter()
        .filter(|(requests, _)| *requests > 0)
        .map(|(requests, window)| {
            let secs = window.as_secs_f64() * BUDGET_MARGIN * pollers.max(1) as f64 / f64::from(*requests);
            Duration::try_from_secs_f64(secs)
                .unwrap_or(MAX_BUDGET_WAIT)
                .min(MAX_BUDGET_WAIT)
        })
        .max()
        .unwrap_or(Duration::ZERO)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CMP: [(u32, Duration); 2] = [(60, Duration::from_secs(60)), (5000, Duration::from_secs(86_400))];
    const STEADY: Duration = Duration::from_secs(30);

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn waits_double_up_to_the_steady_interval_on_an_unlimited_backend() {
        // (waited so far, next wait)
        for (waited, next) in [
            (0, 2),
            (1, 2),
            (2, 2),
            (4, 4),
            (8, 8),
            (16, 16),
            (29, 29),
            (32, 30),
            (86_400, 30),
        ] {
            assert_eq!(
                mirror_interval(secs(waited), STEADY, 1, &[]),
                secs(next),
                "after {waited} s"
            );
        }
    }

    #[test]
    fn the_most_restrictive_budget_decides() {
        // CMP: 60/min allows one list per 1.25 s, 5,000/day one per 21.6 s.
        assert_eq!(budget_floor(1, &CMP), Duration::from_millis(21_600));
        assert_eq!(
            mirror_interval(secs(0), STEADY, 1, &CMP),
            Duration::from_millis(21_600)
        );
        assert_eq!(mirror_interval(secs(60), STEADY, 1, &CMP), STEADY);
        // Three generators mirror from the same backend: each lists a third as often.
        assert_eq!(
            mirror_interval(secs(60), STEADY, 3, &CMP),
            Duration::from_millis(64_800)
        );
        // A day of lists at the floor stays within the daily budget with the margin.
        let per_day = 86_400.0 / budget_floor(1, &CMP).as_secs_f64();
        assert!(per_day <= 5000.0 / BUDGET_MARGIN, "{per_day}");
    }

    #[test]
    fn odd_budgets_neither_panic_nor_stop_polling() {
        assert_eq!(budget_floor(1, &[(0, secs(60))]), Duration::ZERO);
        assert_eq!(budget_floor(0, &[(1, secs(60))]), secs(75));
        assert_eq!(budget_floor(usize::MAX, &[(1, Duration::MAX)]), MAX_BUDGET_WAIT);
        assert_eq!(
            mirror_interval(Duration::MAX, Duration::ZERO, 1, &[]),
            FIRST_MIRROR_POLL
        );
    }
}
