//! What a replica does next with the Leases: a pure function of the Leases as it last saw
//! them, what it holds and the time, so that every rule has a table test.
//!
//! The rules:
//! - **Membership.** Each replica holds one member Lease (a slot among `N`), renewed like a
//!   shard's, so that the others can count the live replicas `R`. Its share is `⌈N / R⌉`.
//! - **Taking.** Below its share, a replica takes free shard Leases, in its own order of
//!   preference (rendezvous hashing, [`super::hash::preference`]). A Lease is free when
//!   nobody holds it (released, never held) or when it has not changed for its whole duration
//!   as this replica saw it: a live holder renews it well before. Time is measured on this
//!   replica's clock from the moment it saw the change, as client-go's leader election does,
//!   so clocks that disagree between nodes do not matter.
//! - **Above the share.** A shard free for one more duration is taken even above the share,
//!   so that shards are never left alone when the member count is off.
//! - **Giving back.** A replica above its share releases its least preferred shards. Another
//!   live replica is then below its share (the shares add up to at least `N`) and takes them.
//! - **Renewing** is not decided here: each held Lease has a task of its own that renews it
//!   every third of its duration (`leases`), and a watchdog that stops the shard at
//!   `duration − margin` after the last renewal that reached the API server.
//! - **Forgetting.** A held Lease that names another holder, or none, or is gone, was changed
//!   by someone else: the replica stops that shard at once and writes nothing.
//! - **Another shard count.** While a live shard Lease was written by a replica with another
//!   shard count, the namespaces map to other shards there: the replica takes nothing new
//!   (changing `--shards` thus waits until the old replicas are gone).
//! - **Stopping** (SIGTERM): release everything, so that the others take over at once.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use super::hash::preference;

/// One Lease as this replica last saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    /// Who holds it; `None` when released or never held.
    pub holder: Option<String>,
    /// Since when this replica has seen it unchanged (the same resourceVersion).
    pub unchanged_since: Instant,
    /// The Lease's duration, as its holder wrote it.
    pub duration: Duration,
    /// The shard count its writer runs with (`None`: not written by a shard manager).
    pub shards: Option<u16>,
}

impl Seen {
    /// Held by someone who renews it, as far as this replica can tell.
    fn live(&self, now: Instant) -> bool {
        self.holder.is_some() && !self.lapsed(now, Duration::ZERO)
    }

    /// Unchanged for its duration and `extra` on top.
    fn lapsed(&self, now: Instant, extra: Duration) -> bool {
        now.checked_duration_since(self.unchanged_since)
            .is_some_and(|age| age >= self.duration.saturating_add(extra))
    }

    /// Free for this long already: released (or never held) for one duration, or lapsed for
    /// two, which makes it worth taking even above the share.
    fn long_free(&self, now: Instant) -> bool {
        match self.holder {
            None => self.lapsed(now, Duration::ZERO),
            Some(_) => self.lapsed(now, self.duration),
        }
    }
}

/// Which Lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Lease {
    Shard(u16),
    Member(u16),
}

/// What to do with a Lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Act {
    /// Write us as its holder (a new transition).
    Take,
    /// Stop reconciling it, then write it without a holder.
    Release,
    /// Stop reconciling it at once, and write nothing: someone else changed it.
    Forget,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step {
    pub act: Act,
    pub lease: Lease,
}

/// The Leases as last seen, and who and when we are.
#[derive(Debug, Clone)]
pub struct Observed<'a> {
    pub me: &'a str,
    pub now: Instant,
    /// The shard count this replica runs with; also the number of member slots.
    pub shards: u16,
    /// By shard; `None`: no such Lease yet.
    pub shard_leases: &'a [Option<Seen>],
    /// By member slot.
    pub member_leases: &'a [Option<Seen>],
}

/// What this replica holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Holding {
    pub shards: BTreeSet<u16>,
    pub member: Option<u16>,
}

/// The steps of one round, in the order to take them.
pub fn plan(o: &Observed, held: &Holding) -> Vec<Step> {
    let mut steps = Vec::new();
    let mut step = |act, lease| steps.push(Step { act, lease });

    match held.member {
        Some(slot) => {
            if o.member(slot).and_then(|seen| seen.holder.as_deref()) != Some(o.me) {
                step(Act::Forget, Lease::Member(slot));
            }
        }
        None => {
            let free = (0..o.shards).filter(|slot| o.free(o.member(*slot)));
            if let Some(slot) = free.max_by_key(|slot| preference(o.me, *slot)) {
                step(Act::Take, Lease::Member(slot));
            }
        }
    }

    let mut kept: Vec<u16> = Vec::new();
    for &shard in &held.shards {
        match o.shard(shard).and_then(|seen| seen.holder.as_deref()) {
            Some(holder) if holder == o.me => kept.push(shard),
            _ => step(Act::Forget, Lease::Shard(shard)),
        }
    }

    let share = o.share();
    if kept.len() > share {
        kept.sort_by_key(|shard| preference(o.me, *shard));
        for &shard in &kept[..kept.len() - share] {
            step(Act::Release, Lease::Shard(shard));
        }
        return steps;
    }
    if o.other_shard_count() {
        return steps;
    }
    let mut free: Vec<u16> = (0..o.shards)
        .filter(|shard| !held.shards.contains(shard) && o.free(o.shard(*shard)))
        .collect();
    free.sort_by_key(|shard| std::cmp::Reverse(preference(o.me, *shard)));
    let room = share - kept.len();
    for (i, &shard) in free.iter().enumerate() {
        let long_free = o.shard(shard).is_some_and(|seen| seen.long_free(o.now));
        if i < room || long_free {
            step(Act::Take, Lease::Shard(shard));
        }
    }
    steps
}

/// The steps of a replica that stops: release everything it holds.
pub fn stop(held: &Holding) -> Vec<Step> {
    let member = held.member.map(Lease::Member);
    member
        .into_iter()
        .chain(held.shards.iter().map(|s| Lease::Shard(*s)))
        .map(|lease| Step {
            act: Act::Release,
            lease,
        })
        .collect()
}

impl Observed<'_> {
    fn shard(&self, shard: u16) -> Option<&Seen> {
        self.shard_leases.get(usize::from(shard)).and_then(Option::as_ref)
    }

    fn member(&self, slot: u16) -> Option<&Seen> {
        self.member_leases.get(usize::from(slot)).and_then(Option::as_ref)
    }

    /// Free for us to take: no Lease yet, nobody renewing it, or ours from an earlier run of
    /// this identity (a restarted container keeps its pod's name).
    fn free(&self, seen: Option<&Seen>) -> bool {
        seen.is_none_or(|s| !s.live(self.now) || s.holder.as_deref() == Some(self.me))
    }

    /// The live replicas other than us, by the member Leases.
    fn others(&self) -> BTreeSet<&str> {
        self.member_leases
            .iter()
            .flatten()
            .filter(|s| s.live(self.now))
            .filter_map(|s| s.holder.as_deref())
            .filter(|h| *h != self.me)
            .collect()
    }

    /// `⌈N / R⌉`, counting us whether or not our member Lease is written yet.
    fn share(&self) -> usize {
        let replicas = self.others().len() + 1;
        usize::from(self.shards).div_ceil(replicas)
    }

    /// Whether a live shard Lease of another replica was written with another shard count.
    fn other_shard_count(&self) -> bool {
        self.shard_leases
            .iter()
            .flatten()
            .filter(|s| s.live(self.now) && s.holder.as_deref() != Some(self.me))
            .any(|s| s.shards != Some(self.shards))
    }
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
