//! Who may start a copy into a ReportStore next, pure: at most `total` copies run at once,
//! at most `per_namespace` of one namespace, and a copy that must wait is queued with its
//! namespace's others; when a slot frees, the namespaces with copies waiting take turns
//! (round robin), so one namespace's backlog never stands in front of another's copy.
//!
//! A waiter is not started here: it is woken (its ReportFile is reconciled again), and the
//! slot is kept for it until it comes back for it, or [`KEEP_FOR`] has passed (its
//! ReportFile was deleted meanwhile, say). Nothing here runs a copy or knows the time: the
//! pool ([`super::delivery_pool`]) passes `now`, and tells which objects still exist.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

/// How long a slot is kept for a woken waiter before it goes to the next one.
pub const KEEP_FOR: Duration = Duration::from_secs(60);

/// How many copies may run at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub total: usize,
    pub per_namespace: usize,
}

/// The defaults of `--delivery-concurrency` and `--delivery-per-namespace`: a copy holds up
/// to about 15 MiB (two 5 MiB parts in flight and the one being filled), so 8 at once stay
/// well within the chart's 256 MiB.
pub const DEFAULT_TOTAL: usize = 8;
pub const DEFAULT_PER_NAMESPACE: usize = 2;

impl Default for Limits {
    fn default() -> Self {
        Limits {
            total: DEFAULT_TOTAL,
            per_namespace: DEFAULT_PER_NAMESPACE,
        }
    }
}

/// One ReportFile's copy: by namespace, name and uid (a ReportFile made again under the same
/// name is another copy).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Key {
    pub namespace: String,
    pub name: String,
    pub uid: String,
}

/// What [`Slots::admit`] says of a copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Start it now: it holds a slot until [`Slots::finish`].
    Start,
    /// It is running.
    Running,
    /// It waits its turn, queued; it is woken when a slot is kept for it.
    Wait,
}

/// The slots of the copies and the queues of those waiting.
#[derive(Debug)]
pub struct Slots {
    limits: Limits,
    running: HashSet<Key>,
    /// Slots kept for woken waiters, since when.
    kept: HashMap<Key, Instant>,
    /// Per namespace: its copies running and the slots kept for it.
    taken: HashMap<String, usize>,
    /// Per namespace, its waiters in order.
    waiting: HashMap<String, VecDeque<Key>>,
    /// The namespaces with waiters, in the order they take turns.
    turns: VecDeque<String>,
}

impl Slots {
    pub fn new(limits: Limits) -> Self {
        Slots {
            limits: Limits {
                total: limits.total.max(1),
                per_namespace: limits.per_namespace.max(1),
            },
            running: HashSet::new(),
            kept: HashMap::new(),
            taken: HashMap::new(),
            waiting: HashMap::new(),
            turns: VecDeque::new(),
        }
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Whether the copy `key` may start now; also returns the waiters woken meanwhile (slots
    /// kept too long pass on). `alive` says whether a waiter's ReportFile still exists.
    pub fn admit(&mut self, key: &Key, now: Instant, alive: impl Fn(&Key) -> bool) -> (Admission, Vec<Key>) {
        let mut woken = self.expire(now, &alive);
        let admission = if self.running.contains(key) {
            Admission::Running
        } else if self.kept.remove(key).is_some() {
            self.running.insert(key.clone());
            Admission::Start
        } else if self.free() > 0 && self.taken_in(&key.namespace) < self.limits.per_namespace {
            // Nobody who may start is waiting: a free slot would have been kept for them.
            self.unqueue(key);
            self.take(key);
            Admission::Start
        } else {
            self.queue(key);
            Admission::Wait
        };
        woken.extend(self.promote(now, &alive));
        (admission, woken)
    }

    /// The copy `key` ended: its slot goes to the next waiter, who is returned to be woken.
    pub fn finish(&mut self, key: &Key, now: Instant, alive: impl Fn(&Key) -> bool) -> Vec<Key> {
        if self.running.remove(key) {
            self.release(&key.namespace);
        }
        let mut woken = self.expire(now, &alive);
        woken.extend(self.promote(now, &alive));
        woken
    }

    /// The ReportFile of `key` no longer needs a copy (it is being deleted): its place in the
    /// queue and a slot kept for it go. A running copy ends with [`Slots::finish`].
    pub fn forget(&mut self, key: &Key, now: Instant, alive: impl Fn(&Key) -> bool) -> Vec<Key> {
        if self.kept.remove(key).is_some() {
            self.release(&key.namespace);
        }
        self.unqueue(key);
        self.promote(now, &alive)
    }

    fn free(&self) -> usize {
        self.limits
            .total
            .saturating_sub(self.running.len() + self.kept.len())
    }

    fn taken_in(&self, namespace: &str) -> usize {
        self.taken.get(namespace).copied().unwrap_or(0)
    }

    fn take(&mut self, key: &Key) {
        *self.taken.entry(key.namespace.clone()).or_insert(0) += 1;
        self.running.insert(key.clone());
    }

    fn release(&mut self, namespace: &str) {
        if let Some(n) = self.taken.get_mut(namespace) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.taken.remove(namespace);
            }
        }
    }

    fn queue(&mut self, key: &Key) {
        let queue = self.waiting.entry(key.namespace.clone()).or_default();
        if queue.contains(key) {
            return;
        }
        if queue.is_empty() {
            self.turns.push_back(key.namespace.clone());
        }
        queue.push_back(key.clone());
    }

    fn unqueue(&mut self, key: &Key) {
        if let Some(queue) = self.waiting.get_mut(&key.namespace) {
            queue.retain(|k| k != key);
            if queue.is_empty() {
                self.waiting.remove(&key.namespace);
                self.turns.retain(|n| n != &key.namespace);
            }
        }
    }

    /// Slots kept longer than [`KEEP_FOR`] are released.
    fn expire(&mut self, now: Instant, alive: &impl Fn(&Key) -> bool) -> Vec<Key> {
        let stale: Vec<Key> = self
            .kept
            .iter()
            .filter(|(_, since)| now.saturating_duration_since(**since) >= KEEP_FOR)
            .map(|(k, _)| k.clone())
            .collect();
        if stale.is_empty() {
            return Vec::new();
        }
        for key in &stale {
            self.kept.remove(key);
            self.release(&key.namespace);
        }
        self.promote(now, alive)
    }

    /// Keeps free slots for waiters, a namespace at a time, each namespace below its limit:
    /// the keys to wake. Waiters whose ReportFile is gone are dropped on the way.
    fn promote(&mut self, now: Instant, alive: &impl Fn(&Key) -> bool) -> Vec<Key> {
        let mut woken = Vec::new();
        let mut idle_turns = 0;
        while self.free() > 0 && idle_turns < self.turns.len() {
            let Some(namespace) = self.turns.pop_front() else {
                break;
            };
            let next = if self.taken_in(&namespace) < self.limits.per_namespace {
                self.next_alive(&namespace, alive)
            } else {
                None
            };
            if self.waiting.contains_key(&namespace) {
                self.turns.push_back(namespace.clone());
            }
            match next {
                Some(key) => {
                    idle_turns = 0;
                    *self.taken.entry(namespace).or_insert(0) += 1;
                    self.kept.insert(key.clone(), now);
                    woken.push(key);
                }
                None => idle_turns += 1,
            }
        }
        woken
    }

    /// The first waiter of `namespace` whose ReportFile exists, taken off its queue.
    fn next_alive(&mut self, namespace: &str, alive: &impl Fn(&Key) -> bool) -> Option<Key> {
        let queue = self.waiting.get_mut(namespace)?;
        let mut found = None;
        while let Some(key) = queue.pop_front() {
            if alive(&key) {
                found = Some(key);
                break;
            }
        }
        if queue.is_empty() {
            self.waiting.remove(namespace);
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(namespace: &str, name: &str) -> Key {
        Key {
            namespace: namespace.into(),
            name: name.into(),
            uid: format!("uid-{namespace}-{name}"),
        }
    }

    fn names(keys: &[Key]) -> Vec<String> {
        keys.iter()
            .map(|k| format!("{}/{}", k.namespace, k.name))
            .collect()
    }

    const LIMITS: Limits = Limits {
        total: 3,
        per_namespace: 2,
    };

    fn anyone(_: &Key) -> bool {
        true
    }

    #[test]
    fn one_namespace_never_holds_more_than_its_share() {
        let mut slots = Slots::new(LIMITS);
        let now = Instant::now();
        // (ReportFile, what admit says, who is woken meanwhile)
        let rows: [(&str, &str, Admission); 6] = [
            ("a", "1", Admission::Start),
            ("a", "2", Admission::Start),
            ("a", "3", Admission::Wait),
            ("a", "1", Admission::Running),
            ("b", "1", Admission::Start),
            ("c", "1", Admission::Wait),
        ];
        for (namespace, name, want) in rows {
            let (got, woken) = slots.admit(&key(namespace, name), now, anyone);
            assert_eq!(got, want, "{namespace}/{name}");
            assert!(woken.is_empty(), "{namespace}/{name}: {woken:?}");
        }
        assert_eq!((slots.running.len(), slots.taken.get("a")), (3, Some(&2)));
    }

    #[test]
    fn a_freed_slot_goes_to_the_next_namespace_in_turn_and_is_kept_for_it() {
        let mut slots = Slots::new(LIMITS);
        let now = Instant::now();
        for (namespace, name) in [
            ("a", "1"),
            ("a", "2"),
            ("b", "1"),
            ("a", "3"),
            ("a", "4"),
            ("c", "1"),
        ] {
            slots.admit(&key(namespace, name), now, anyone);
        }
        // a/1 ends: a has one running, below its limit, and waited first; c comes next.
        assert_eq!(names(&slots.finish(&key("a", "1"), now, anyone)), ["a/3"]);
        assert_eq!(names(&slots.finish(&key("b", "1"), now, anyone)), ["c/1"]);
        // A kept slot is not taken by a newcomer, even of a namespace below its limit.
        assert_eq!(slots.admit(&key("d", "1"), now, anyone).0, Admission::Wait);
        assert_eq!(slots.admit(&key("a", "3"), now, anyone).0, Admission::Start);
        assert_eq!(slots.admit(&key("c", "1"), now, anyone).0, Admission::Start);
        // a is at its limit: d goes first, although a/4 waited longer.
        assert_eq!(names(&slots.finish(&key("c", "1"), now, anyone)), ["d/1"]);
    }

    #[test]
    fn a_slot_kept_for_a_waiter_that_never_comes_passes_on() {
        let mut slots = Slots::new(Limits {
            total: 1,
            per_namespace: 1,
        });
        let now = Instant::now();
        for name in ["1", "2", "3"] {
            slots.admit(&key("a", name), now, anyone);
        }
        assert_eq!(names(&slots.finish(&key("a", "1"), now, anyone)), ["a/2"]);
        let later = now + KEEP_FOR;
        let (admission, woken) = slots.admit(&key("b", "1"), later, anyone);
        assert_eq!(admission, Admission::Wait);
        assert_eq!(names(&woken), ["a/3"], "a/2's slot went on");
        // a/2 comes late: it waits again.
        assert_eq!(slots.admit(&key("a", "2"), later, anyone).0, Admission::Wait);
    }

    #[test]
    fn waiters_whose_report_file_is_gone_are_skipped_and_forgotten_ones_leave_the_queue() {
        let mut slots = Slots::new(Limits {
            total: 1,
            per_namespace: 1,
        });
        let now = Instant::now();
        for name in ["1", "2", "3", "4"] {
            slots.admit(&key("a", name), now, anyone);
        }
        assert!(slots.forget(&key("a", "3"), now, anyone).is_empty());
        let alive = |k: &Key| k.name != "2";
        assert_eq!(names(&slots.finish(&key("a", "1"), now, alive)), ["a/4"]);
        assert!(slots.waiting.is_empty() && slots.turns.is_empty(), "{slots:?}");
        // A forgotten waiter's kept slot goes to the next.
        slots.admit(&key("b", "1"), now, anyone);
        assert_eq!(names(&slots.forget(&key("a", "4"), now, anyone)), ["b/1"]);
        assert!(!slots.taken.contains_key("a"), "{slots:?}");
    }
}
