//! Exact request limits: "at most N requests in any W".
//!
//! Each limit is a sliding-window log (the send times of the accepted requests of the last W),
//! not a token bucket or a fixed window, so the count a test makes is the count enforced: the
//! (N+1)-th request inside any W is refused, whenever the window started. Refused requests do
//! not count (a client that backs off is not punished further). The answer carries how long
//! until the oldest accepted request leaves the window, for `Retry-After`.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::time::{Duration, Instant};

/// One "at most `limit` in any `window`".
#[derive(Debug)]
pub(crate) struct SlidingWindow {
    limit: usize,
    window: Duration,
    accepted: VecDeque<Instant>,
}

impl SlidingWindow {
    pub fn new(limit: u32, window: Duration) -> Self {
        SlidingWindow {
            limit: limit as usize,
            window,
            accepted: VecDeque::new(),
        }
    }

    /// Counts a request at `now`, or says how long until one would be accepted.
    #[cfg(test)]
    fn acquire(&mut self, now: Instant) -> Result<(), Duration> {
        self.check(now)?;
        self.accepted.push_back(now);
        Ok(())
    }

    /// Whether a request at `now` would be accepted, without counting it.
    fn check(&mut self, now: Instant) -> Result<(), Duration> {
        while self
            .accepted
            .front()
            .is_some_and(|t| now.duration_since(*t) >= self.window)
        {
            self.accepted.pop_front();
        }
        if self.accepted.len() < self.limit {
            return Ok(());
        }
        let oldest = self.accepted.front().copied().unwrap_or(now);
        Err(self.window.saturating_sub(now.duration_since(oldest)))
    }
}

/// Several limits per key (CMP: a minute and a day per subscription; SUPPLIER: a window per
/// client and endpoint). A request must fit all of a key's limits and counts in all of them.
#[derive(Debug)]
pub(crate) struct Limits<K> {
    shape: Vec<(u32, Duration)>,
    keys: HashMap<K, Vec<SlidingWindow>>,
}

impl<K: Eq + Hash> Limits<K> {
    pub fn new(shape: Vec<(u32, Duration)>) -> Self {
        Limits {
            shape,
            keys: HashMap::new(),
        }
    }

    /// Counts a request of `key` at `now`, or returns the longest wait among the limits it
    /// would break.
    pub fn acquire(&mut self, key: K, now: Instant) -> Result<(), Duration> {
        let shape = &self.shape;
        let windows = self
            .keys
            .entry(key)
            .or_insert_with(|| shape.iter().map(|(n, w)| SlidingWindow::new(*n, *w)).collect());
        // Check all first, so that a refused request counts in none.
        if let Some(wait) = windows.iter_mut().filter_map(|w| w.check(now).err()).max() {
            return Err(wait);
        }
        windows.iter_mut().for_each(|w| w.accepted.push_back(now));
        Ok(())
    }
}

/// `Retry-After` in whole seconds, never 0 (a client told 0 would come straight back).
pub(crate) fn retry_after_secs(wait: Duration) -> u64 {
    wait.as_secs() + u64::from(wait.subsec_nanos() > 0).max(u64::from(wait.is_zero()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limit_is_exact_and_slides() {
        let start = Instant::now();
        let mut w = SlidingWindow::new(3, Duration::from_secs(10));
        for i in 0..3 {
            assert!(w.acquire(start + Duration::from_secs(i)).is_ok());
        }
        assert_eq!(
            w.acquire(start + Duration::from_secs(4)),
            Err(Duration::from_secs(6))
        );
        // The first request leaves the window at 10 s.
        assert!(w.acquire(start + Duration::from_secs(10)).is_ok());
        assert!(w.acquire(start + Duration::from_secs(10)).is_err());
    }

    #[test]
    fn a_refused_request_counts_nowhere() {
        let start = Instant::now();
        let mut l = Limits::new(vec![(2, Duration::from_secs(60)), (3, Duration::from_secs(3600))]);
        assert!(l.acquire("k", start).is_ok());
        assert!(l.acquire("k", start).is_ok());
        assert!(l.acquire("k", start).is_err());
        // After a minute the hourly limit still has room for exactly one.
        let later = start + Duration::from_secs(61);
        assert!(l.acquire("k", later).is_ok());
        assert_eq!(l.acquire("k", later).map_err(|d| d.as_secs()), Err(3600 - 61));
        assert!(l.acquire("other", later).is_ok());
    }

    #[test]
    fn retry_after_rounds_up() {
        assert_eq!(retry_after_secs(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_secs(6)), 6);
        assert_eq!(retry_after_secs(Duration::from_millis(6001)), 7);
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
    }
}
