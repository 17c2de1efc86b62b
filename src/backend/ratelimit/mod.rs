//! Client-side limits for one ReportBackend: a request budget per endpoint and a cap on the
//! reports in progress per organization.
//!
//! The budget is an exact sliding window, not a token bucket: a token bucket lets through up to
//! twice its rate in one window after an idle period, and the backends count requests in
//! sliding windows, so a bucket would earn 429s. What is logged is not when a request was sent
//! but when its answer came: the backend counted the request at some instant before that, so
//! "no more than N requests whose answers came within W before this send" holds on the
//! backend's clock too, however late a request left or slowly it travelled. A request still
//! waiting for its answer counts as if the backend saw it just now. A small margin on top of
//! the window covers clock-rate differences.
//!
//! The in-flight cap is kept as the set of report ids we believe are running, so that the
//! controller can rebuild it after a restart ([`Limiter::note_in_flight`]) and a lost `get`
//! never leaks a slot for longer than it takes to see the report again.

mod in_flight;

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use super::Capabilities;
use super::error::BackendError;
use crate::api::ReportBackendSpec;

/// One budget: at most `requests` sends in any `window`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    pub requests: u32,
    pub window: Duration,
}

impl Budget {
    pub const fn new(requests: u32, window: Duration) -> Self {
        Budget { requests, window }
    }

    /// The window plus a margin for clock and network skew between us and the backend.
    fn guarded_window(&self) -> Duration {
        self.window + (self.window / 20).min(Duration::from_secs(2))
    }
}

/// The limits of one backend, from `spec.limits` or the type's documented defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimiterConfig {
    /// Budgets every endpoint shares or (with `per_endpoint`) each endpoint has on its own.
    pub budgets: Vec<Budget>,
    /// SUPPLIER counts each endpoint separately; CMP counts all calls of a subscription together.
    pub per_endpoint: bool,
    /// Budgets of named endpoints that differ from `budgets` (SUPPLIER's token endpoint).
    pub endpoint_budgets: Vec<(&'static str, Vec<Budget>)>,
    /// Reports in progress at once per organization (SUPPLIER 6); `None`: no cap.
    pub max_in_flight: Option<u32>,
    /// The longest a call waits for its budget; beyond that it fails with
    /// [`BackendError::RateLimited`] so that no reconcile is held for long.
    pub max_wait: Duration,
    /// The retry hint of [`BackendError::InFlightLimit`].
    pub in_flight_retry: Duration,
    /// How long a slot reserved by a create whose answer was lost counts before it lapses,
    /// unless `find` turns it into a known report first.
    pub pending_ttl: Duration,
}

/// A backend type's documented limits (in its [`Capabilities`]), for what `spec.limits`
/// leaves unset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DefaultLimits {
    /// The first is the budget `spec.limits` replaces; any others always apply.
    pub budgets: &'static [Budget],
    /// See [`LimiterConfig::per_endpoint`].
    pub per_endpoint: bool,
    /// See [`LimiterConfig::endpoint_budgets`].
    pub endpoint_budgets: &'static [(&'static str, &'static [Budget])],
    pub max_in_flight: Option<u32>,
}

impl DefaultLimits {
    /// No budget and no in-flight cap.
    pub const NONE: DefaultLimits = DefaultLimits {
        budgets: &[],
        per_endpoint: false,
        endpoint_budgets: &[],
        max_in_flight: None,
    };
}

impl LimiterConfig {
    /// The limits for a backend: `spec.limits` where set, else its type's [`DefaultLimits`].
    pub fn for_backend(spec: &ReportBackendSpec) -> Self {
        let defaults = Capabilities::of(spec.type_).limits;
        let limits = spec.limits.clone().unwrap_or_default();
        // The schema says at least 1; anything else is treated as unset.
        let positive = |v: Option<i32>| v.and_then(|v| u32::try_from(v).ok()).filter(|v| *v > 0);
        let (max_in_flight, requests_per_window, window_seconds) = (
            positive(limits.max_in_flight),
            positive(limits.requests_per_window),
            positive(limits.window_seconds),
        );
        let (default_primary, secondary) = match defaults.budgets.split_first() {
            Some((primary, rest)) => (Some(*primary), rest),
            None => (None, &[][..]),
        };
        let primary = match (requests_per_window, window_seconds) {
            (None, None) => default_primary,
            (requests, window) => Some(Budget::new(
                requests.or(default_primary.map(|b| b.requests)).unwrap_or(60),
                window
                    .map(|s| Duration::from_secs(u64::from(s)))
                    .or(default_primary.map(|b| b.window))
                    .unwrap_or(Duration::from_secs(60)),
            )),
        };
        LimiterConfig {
            budgets: primary.into_iter().chain(secondary.iter().copied()).collect(),
            per_endpoint: defaults.per_endpoint,
            endpoint_budgets: defaults
                .endpoint_budgets
                .iter()
                .map(|(name, budgets)| (*name, budgets.to_vec()))
                .collect(),
            max_in_flight: max_in_flight.or(defaults.max_in_flight),
            ..LimiterConfig::unlimited()
        }
    }

    /// No budget and no in-flight cap.
    pub fn unlimited() -> Self {
        LimiterConfig {
            budgets: Vec::new(),
            per_endpoint: false,
            endpoint_budgets: Vec::new(),
            max_in_flight: None,
            max_wait: Duration::from_secs(30),
            in_flight_retry: Duration::from_secs(15),
            pending_ttl: Duration::from_secs(600),
        }
    }
}

/// The limits of one backend, shared by every client built for it (the controller keeps it
/// across client rebuilds so that a credentials change does not reset the counts).
#[derive(Debug)]
pub struct Limiter {
    config: LimiterConfig,
    logs: Mutex<HashMap<&'static str, SendLog>>,
    in_flight: Mutex<in_flight::InFlight>,
    /// Answers of another process may have come until then ([`Limiter::assume_spent`]).
    spent: Mutex<Option<Instant>>,
}

/// The longest window [`Limiter::assume_spent`] counts as spent. Longer ones (CMP's day,
/// SUPPLIER's hourly token budget) would stop a backend for that long after every handover;
/// they start fresh, as after a restart.
pub const MAX_SPENT_WINDOW: Duration = Duration::from_secs(600);

/// The requests of one budget key.
#[derive(Debug, Default)]
struct SendLog {
    /// When the answers of the most recent finished requests came, oldest first.
    answered: VecDeque<Instant>,
    /// Requests sent whose answer has not come yet.
    open: usize,
    /// Nothing is sent before this (set from a 429's Retry-After).
    blocked_until: Option<Instant>,
    /// Woken when a request finishes.
    finished: Arc<Notify>,
}

impl SendLog {
    /// `None` if a request may go now; else when it may at the earliest (`None` inside: when
    /// an open request finishes). Budgets are full until `spent` (see [`Limiter::assume_spent`]).
    fn next_slot(&self, budgets: &[Budget], now: Instant, spent: Option<Instant>) -> Option<Option<Instant>> {
        let mut at = self.blocked_until.filter(|b| *b > now);
        for budget in budgets {
            if let Some(free) = spent_until(budget, spent)
                && free > now
            {
                at = Some(at.map_or(free, |a| a.max(free)));
                continue;
            }
            let n = budget.requests as usize;
            if self.open >= n {
                return Some(at);
            }
            // Fewer than n in the window: the (n - open)-th latest answer must have left it.
            let need = n - self.open;
            if self.answered.len() >= need {
                let leaves = self.answered[self.answered.len() - need] + budget.guarded_window();
                if leaves > now {
                    at = Some(at.map_or(leaves, |a| a.max(leaves)));
                }
            }
        }
        at.map(Some)
    }
}

/// When `budget` is whole again if its window was spent by answers that came at `spent`.
fn spent_until(budget: &Budget, spent: Option<Instant>) -> Option<Instant> {
    spent
        .filter(|_| budget.window <= MAX_SPENT_WINDOW)
        .map(|at| at + budget.guarded_window())
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding the lock leaves consistent data here: every update is one step.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

const SHARED_KEY: &str = "*";

impl Limiter {
    pub fn new(config: LimiterConfig) -> Self {
        Limiter {
            config,
            logs: Mutex::default(),
            in_flight: Mutex::default(),
            spent: Mutex::default(),
        }
    }

    /// Another process may have spent every budget of this backend with answers that came
    /// until `at` (it held the backend's shard until then): no request goes before each
    /// window since `at` has passed, for windows up to [`MAX_SPENT_WINDOW`].
    pub fn assume_spent(&self, at: Instant) {
        let mut spent = lock(&self.spent);
        *spent = Some(spent.map_or(at, |s| s.max(at)));
    }

    /// The limiter for a backend, with [`LimiterConfig::for_backend`].
    pub fn for_backend(spec: &ReportBackendSpec) -> std::sync::Arc<Self> {
        std::sync::Arc::new(Limiter::new(LimiterConfig::for_backend(spec)))
    }

    /// The limits in force; compare with [`LimiterConfig::for_backend`] of a changed spec to
    /// decide whether a new limiter is needed.
    pub fn config(&self) -> &LimiterConfig {
        &self.config
    }

    fn budgets_of(&self, endpoint: &'static str) -> (&'static str, &[Budget]) {
        if let Some((name, budgets)) = self
            .config
            .endpoint_budgets
            .iter()
            .find(|(name, _)| *name == endpoint)
        {
            return (name, budgets);
        }
        let key = if self.config.per_endpoint {
            endpoint
        } else {
            SHARED_KEY
        };
        (key, &self.config.budgets)
    }

    /// Waits until a request on `endpoint` fits its budget, and counts it until the returned
    /// permit is dropped (when the answer has come). Fails with [`BackendError::RateLimited`]
    /// when that would take longer than `max_wait`.
    pub async fn acquire(&self, endpoint: &'static str) -> Result<Permit<'_>, BackendError> {
        let (key, budgets) = self.budgets_of(endpoint);
        let deadline = Instant::now() + self.config.max_wait;
        let spent = *lock(&self.spent);
        loop {
            let finished = lock(&self.logs).entry(key).or_default().finished.clone();
            let notified = finished.notified();
            tokio::pin!(notified);
            // Enabled before the check, so a request finishing after it wakes us.
            notified.as_mut().enable();
            let wait = {
                let mut logs = lock(&self.logs);
                let log = logs.entry(key).or_default();
                let now = Instant::now();
                match log.next_slot(budgets, now, spent) {
                    None => {
                        log.open += 1;
                        return Ok(Permit { limiter: self, key });
                    }
                    Some(Some(at)) if at > deadline => {
                        return Err(BackendError::RateLimited {
                            retry_after: Some(at - now),
                        });
                    }
                    Some(at) if now >= deadline => {
                        let window = budgets.iter().map(|b| b.window).max().unwrap_or_default();
                        return Err(BackendError::RateLimited {
                            retry_after: Some(at.map_or(window, |a| a - now)),
                        });
                    }
                    Some(at) => at.unwrap_or(deadline),
                }
            };
            tracing::debug!(
                endpoint,
                wait_ms = wait.saturating_duration_since(Instant::now()).as_millis() as u64,
                "waiting for request budget"
            );
            tokio::select! {
                _ = &mut notified => {}
                _ = tokio::time::sleep_until(wait) => {}
            }
        }
    }

    /// Requests `endpoint` may still send now under its tightest budget: what a caller that
    /// spreads its requests over time (the ReportFile polls) may spend without waiting.
    pub fn spare(&self, endpoint: &'static str) -> u32 {
        let (key, budgets) = self.budgets_of(endpoint);
        let spent = *lock(&self.spent);
        let logs = lock(&self.logs);
        let log = logs.get(key);
        let now = Instant::now();
        budgets
            .iter()
            .map(|b| {
                if spent_until(b, spent).is_some_and(|free| free > now) {
                    return 0;
                }
                let window = b.guarded_window();
                let used = log.map_or(0, |l| {
                    l.open
                        + l.answered
                            .iter()
                            .rev()
                            .take_while(|t| now.duration_since(**t) < window)
                            .count()
                });
                u32::try_from((b.requests as usize).saturating_sub(used)).unwrap_or(u32::MAX)
            })
            .min()
            .unwrap_or(u32::MAX)
    }

    fn finished(&self, key: &'static str) {
        let mut logs = lock(&self.logs);
        let Some(log) = logs.get_mut(key) else { return };
        log.open = log.open.saturating_sub(1);
        log.answered.push_back(Instant::now());
        let (_, budgets) = self.budgets_of(key);
        let keep = budgets.iter().map(|b| b.requests as usize).max().unwrap_or(0);
        while log.answered.len() > keep {
            log.answered.pop_front();
        }
        log.finished.notify_waiters();
    }

    /// The backend answered 429: send nothing more on this endpoint's budget until `after`
    /// has passed.
    pub fn back_off(&self, endpoint: &'static str, after: Duration) {
        let (key, _) = self.budgets_of(endpoint);
        let until = Instant::now() + after;
        let mut logs = lock(&self.logs);
        let log = logs.entry(key).or_default();
        log.blocked_until = Some(log.blocked_until.map_or(until, |b| b.max(until)));
    }
}

/// One request's place in its budget, held while it is on its way; dropping it records when
/// its answer came.
#[derive(Debug)]
pub struct Permit<'a> {
    limiter: &'a Limiter,
    key: &'static str,
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        self.limiter.finished(self.key);
    }
}
#[cfg(test)]
mod tests {
    use super::*;

    fn config(budgets: Vec<Budget>) -> LimiterConfig {
        LimiterConfig {
            budgets,
            per_endpoint: true,
            ..LimiterConfig::unlimited()
        }
    }

    #[tokio::test(start_paused = true)]
    async fn never_more_than_the_budget_in_any_window() {
        let limiter = Limiter::new(config(vec![Budget::new(5, Duration::from_secs(10))]));
        let start = Instant::now();
        let mut sends = Vec::new();
        for _ in 0..12 {
            drop(limiter.acquire("get").await.expect("within max_wait"));
            sends.push(Instant::now() - start);
        }
        for (i, t) in sends.iter().enumerate().skip(5) {
            assert!(
                *t >= sends[i - 5] + Duration::from_secs(10),
                "send {i} at {t:?}: {sends:?}"
            );
        }
        // Another endpoint has its own budget.
        let before = Instant::now();
        drop(limiter.acquire("list").await.expect("free budget"));
        assert_eq!(Instant::now(), before);
    }

    #[tokio::test(start_paused = true)]
    async fn the_window_starts_when_the_answer_comes() {
        let mut cfg = config(vec![Budget::new(1, Duration::from_secs(10))]);
        cfg.max_wait = Duration::from_secs(60);
        let limiter = Arc::new(Limiter::new(cfg));
        let start = Instant::now();
        let slow = limiter.acquire("get").await.expect("first");
        let l = limiter.clone();
        let second = tokio::spawn(async move {
            drop(l.acquire("get").await.expect("second"));
            Instant::now() - start
        });
        // The first request's answer takes 3 s; until then the budget is full.
        tokio::time::sleep(Duration::from_secs(3)).await;
        drop(slow);
        // The second goes a window (and the margin) after that answer, not after the send.
        let went = second.await.expect("task");
        assert_eq!(went, Duration::from_millis(13_500));
    }

    #[tokio::test(start_paused = true)]
    async fn too_long_a_wait_is_rate_limited() {
        let mut cfg = config(vec![Budget::new(1, Duration::from_secs(600))]);
        cfg.max_wait = Duration::from_secs(5);
        let limiter = Limiter::new(cfg);
        drop(limiter.acquire("generate").await.expect("first is free"));
        let err = limiter.acquire("generate").await.expect_err("budget spent");
        assert!(
            matches!(err, BackendError::RateLimited { retry_after: Some(d) } if d > Duration::from_secs(590))
        );
        // A request still open fills the budget until its answer comes.
        let held = limiter.acquire("other").await.expect("free");
        let err = limiter.acquire("other").await.expect_err("open request");
        assert!(matches!(err, BackendError::RateLimited { .. }));
        drop(held);
    }

    #[tokio::test(start_paused = true)]
    async fn back_off_blocks_the_endpoint() {
        let limiter = Limiter::new(config(vec![Budget::new(100, Duration::from_secs(60))]));
        limiter.back_off("get", Duration::from_secs(3));
        let before = Instant::now();
        drop(limiter.acquire("get").await.expect("within max_wait"));
        assert!(Instant::now() - before >= Duration::from_secs(3));
    }

    #[tokio::test(start_paused = true)]
    async fn a_window_assumed_spent_holds_requests_until_it_has_passed() {
        // A 10-request budget per 60 s (guarded: 62 s), and a day's budget that is too long
        // to wait for.
        let mut cfg = config(vec![
            Budget::new(10, Duration::from_secs(60)),
            Budget::new(5000, Duration::from_secs(86_400)),
        ]);
        cfg.max_wait = Duration::from_secs(120);
        let limiter = Limiter::new(cfg);
        let start = Instant::now();
        limiter.assume_spent(start - Duration::from_secs(20));
        assert_eq!(limiter.spare("get"), 0);
        drop(limiter.acquire("get").await.expect("within max_wait"));
        assert_eq!(Instant::now() - start, Duration::from_secs(42));
        // Whole again afterwards: the day's budget did not hold it, and the rest flows.
        assert_eq!(limiter.spare("get"), 9);
        drop(limiter.acquire("get").await.expect("free"));
        assert_eq!(Instant::now() - start, Duration::from_secs(42));
        // An older handover does not undo a newer one.
        limiter.assume_spent(Instant::now());
        limiter.assume_spent(start);
        assert_eq!(limiter.spare("get"), 0);
    }

    #[test]
    fn defaults_per_type() {
        let spec: ReportBackendSpec = serde_json::from_value(serde_json::json!({
            "type": "SUPPLIER", "url": "http://x", "credentialsSecretRef": {"name": "c"}
        }))
        .expect("spec");
        let cfg = LimiterConfig::for_backend(&spec);
        assert_eq!(cfg.budgets, vec![Budget::new(600, Duration::from_secs(600))]);
        assert_eq!(cfg.max_in_flight, Some(6));
        assert!(cfg.per_endpoint);
        let spec: ReportBackendSpec = serde_json::from_value(serde_json::json!({
            "type": "CMP", "url": "http://x", "credentialsSecretRef": {"name": "c"},
            "limits": {"requestsPerWindow": 10}
        }))
        .expect("spec");
        let cfg = LimiterConfig::for_backend(&spec);
        assert_eq!(cfg.budgets[0], Budget::new(10, Duration::from_secs(60)));
        assert_eq!(cfg.max_in_flight, None);
    }
}
