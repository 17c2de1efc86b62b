//! A fair share of each kind's reconcile workers between namespaces. Reconciles of a kind
//! share `--concurrency` workers; a reconcile waits on its backend (a slow answer, up to 30 s
//! a request; a rate limit's budget), so without a share one namespace whose backend holds
//! its answers would hold every worker, and another namespace's report would not start.
//!
//! A reconcile takes a seat of its kind for its namespace before it runs, and gives it back
//! when it ends (or is dropped). A namespace may take a seat while it holds fewer than its
//! share (a quarter of the workers, at least one), and beyond that only while the seats in
//! use leave a share free: alone, a namespace uses three quarters of the workers; however
//! many of them it holds, any other namespace still finds its share free. A reconcile refused
//! a seat does nothing and comes back after [`RETRY`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// When a reconcile refused a seat comes back.
pub const RETRY: Duration = Duration::from_secs(1);

/// Pure: whether a namespace holding `held` seats of a kind may take another, when `in_use`
/// seats of the kind are taken in all, of `workers`.
pub fn may_take(held: usize, in_use: usize, workers: usize) -> bool {
    let share = share(workers);
    held < share || in_use.saturating_add(share) < workers
}

/// A namespace's share of `workers`: a quarter, at least one.
pub fn share(workers: usize) -> usize {
    (workers / 4).max(1)
}

/// The seats of every kind's workers.
#[derive(Debug)]
pub struct Seats {
    workers: usize,
    taken: Mutex<Taken>,
}

#[derive(Debug, Default)]
struct Taken {
    /// Per kind and namespace.
    by_namespace: HashMap<(&'static str, String), usize>,
    /// Per kind.
    by_kind: HashMap<&'static str, usize>,
}

impl Seats {
    /// Seats for `workers` reconciles of each kind at once.
    pub fn new(workers: u16) -> Arc<Self> {
        Arc::new(Seats {
            workers: usize::from(workers.max(1)),
            taken: Mutex::new(Taken::default()),
        })
    }

    /// A seat of `kind` for `namespace`, if its share allows one now.
    pub fn take(self: &Arc<Self>, kind: &'static str, namespace: &str) -> Option<Seat> {
        let mut taken = self.lock();
        let key = (kind, namespace.to_string());
        let held = taken.by_namespace.get(&key).copied().unwrap_or(0);
        let in_use = taken.by_kind.get(kind).copied().unwrap_or(0);
        if !may_take(held, in_use, self.workers) {
            return None;
        }
        *taken.by_namespace.entry(key.clone()).or_insert(0) += 1;
        *taken.by_kind.entry(kind).or_insert(0) += 1;
        Some(Seat {
            seats: self.clone(),
            key,
        })
    }

    fn give_back(&self, key: &(&'static str, String)) {
        let mut taken = self.lock();
        if let Some(n) = taken.by_namespace.get_mut(key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                taken.by_namespace.remove(key);
            }
        }
        if let Some(n) = taken.by_kind.get_mut(key.0) {
            *n = n.saturating_sub(1);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Taken> {
        self.taken.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A reconcile's seat, given back when dropped.
#[derive(Debug)]
pub struct Seat {
    seats: Arc<Seats>,
    key: (&'static str, String),
}

impl Drop for Seat {
    fn drop(&mut self) {
        self.seats.give_back(&self.key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_namespace_takes_its_share_and_more_only_while_a_share_stays_free() {
        // (situation, seats the namespace holds, seats in use, workers, may it take one)
        let rows = [
            ("alone, nothing running", 0, 0, 16, true),
            ("below its share, every seat but one in use", 3, 15, 16, true),
            ("its share, others idle", 4, 4, 16, true),
            (
                "three quarters, others idle: one more would leave less than a share",
                12,
                12,
                16,
                false,
            ),
            ("eleven, others idle", 11, 11, 16, true),
            ("its share, others busy", 4, 12, 16, false),
            ("a neighbour, while another holds twelve", 0, 12, 16, true),
            ("one worker: one at a time", 0, 0, 1, true),
            ("one worker, taken", 1, 1, 1, false),
            ("two workers: another namespace still gets one", 0, 1, 2, true),
            ("two workers, one taken by the namespace itself", 1, 1, 2, false),
        ];
        for (what, held, in_use, workers, want) in rows {
            assert_eq!(may_take(held, in_use, workers), want, "{what}");
        }
    }

    #[test]
    fn seats_go_back_when_dropped_and_per_kind() {
        let seats = Seats::new(4);
        let first = seats.take("ReportFile", "a").expect("a's share");
        // Four workers: a share of one; alone, a namespace takes three.
        let second = seats.take("ReportFile", "a").expect("three quarters free");
        let third = seats
            .take("ReportFile", "a")
            .expect("one share still free after it");
        assert!(
            seats.take("ReportFile", "a").is_none(),
            "the last share stays free"
        );
        assert!(
            seats.take("ReportGenerator", "a").is_some(),
            "another kind's seats"
        );
        let neighbour = seats.take("ReportFile", "b").expect("b's share");
        assert!(seats.take("ReportFile", "b").is_none(), "every seat in use");
        drop((first, second));
        assert!(seats.take("ReportFile", "a").is_some(), "given back");
        drop((third, neighbour));
        assert_eq!(seats.lock().by_namespace.len(), 0);
    }
}
