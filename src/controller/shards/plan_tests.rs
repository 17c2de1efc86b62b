use super::*;

const ME: &str = "me";
const D: Duration = Duration::from_secs(15);

/// A Lease written `age` seconds ago (as we saw it) by `holder`, with 16 shards.
fn seen(holder: Option<&str>, age: u64, now: Instant) -> Option<Seen> {
    Some(Seen {
        holder: holder.map(str::to_string),
        unchanged_since: now - Duration::from_secs(age),
        duration: D,
        shards: Some(16),
    })
}

struct Case {
    now: Instant,
    shards: Vec<Option<Seen>>,
    members: Vec<Option<Seen>>,
    held: Holding,
}

impl Case {
    fn new() -> Case {
        Case {
            now: Instant::now() + Duration::from_secs(3600),
            shards: vec![None; 16],
            members: vec![None; 16],
            held: Holding::default(),
        }
    }

    /// `holder`'s member Lease in `slot`, renewed `age` s ago.
    fn member(mut self, slot: u16, holder: &str, age: u64) -> Case {
        self.members[usize::from(slot)] = seen(Some(holder), age, self.now);
        if holder == ME {
            self.held.member = Some(slot);
        }
        self
    }

    /// `shards` held by `holder` (`None`: released), written `age` s ago; ours are held.
    fn shards(mut self, shards: impl IntoIterator<Item = u16>, holder: Option<&str>, age: u64) -> Case {
        for s in shards {
            self.shards[usize::from(s)] = seen(holder, age, self.now);
            if holder == Some(ME) {
                self.held.shards.insert(s);
            }
        }
        self
    }

    fn plan(&self) -> Vec<Step> {
        plan(
            &Observed {
                me: ME,
                now: self.now,
                shards: 16,
                shard_leases: &self.shards,
                member_leases: &self.members,
            },
            &self.held,
        )
    }
}

/// The shards of `steps` with `act`, sorted.
fn shards(steps: &[Step], act: Act) -> Vec<u16> {
    let mut out: Vec<u16> = steps
        .iter()
        .filter(|s| s.act == act)
        .filter_map(|s| match s.lease {
            Lease::Shard(i) => Some(i),
            Lease::Member(_) => None,
        })
        .collect();
    out.sort();
    out
}

fn members(steps: &[Step], act: Act) -> Vec<u16> {
    steps
        .iter()
        .filter(|s| s.act == act)
        .filter_map(|s| match s.lease {
            Lease::Member(i) => Some(i),
            Lease::Shard(_) => None,
        })
        .collect()
}

/// The `n` of `candidates` that ME prefers most, sorted.
fn preferred(candidates: impl IntoIterator<Item = u16>, n: usize) -> Vec<u16> {
    let mut c: Vec<u16> = candidates.into_iter().collect();
    c.sort_by_key(|s| std::cmp::Reverse(preference(ME, *s)));
    c.truncate(n);
    c.sort();
    c
}

#[test]
fn alone_on_a_fresh_install_it_joins_and_takes_every_shard() {
    let steps = Case::new().plan();
    assert_eq!(members(&steps, Act::Take), preferred(0..16, 1));
    assert_eq!(shards(&steps, Act::Take), (0..16).collect::<Vec<_>>());
}

#[test]
fn with_two_live_replicas_it_takes_its_share_of_the_free_shards() {
    // ⌈16 / 3⌉ = 6, the six it prefers.
    let case = Case::new().member(0, "a", 1).member(1, "b", 3);
    let steps = case.plan();
    assert_eq!(shards(&steps, Act::Take), preferred(0..16, 6));
    assert_eq!(members(&steps, Act::Take).len(), 1);
    assert!(!members(&steps, Act::Take).contains(&0), "slot 0 is a's");
}

#[test]
fn shards_that_others_renew_are_left_alone_and_lapsed_or_released_ones_are_taken() {
    // a holds 0..5 and renews them; 5..8 have not changed for a whole duration (a dead
    // replica's); 8..10 were released; b holds 10..16.
    let case = Case::new()
        .member(0, "a", 2)
        .member(1, "b", 2)
        .member(2, ME, 1)
        .shards(0..5, Some("a"), 4)
        .shards(5..8, Some("dead"), 15)
        .shards(8..10, None, 0)
        .shards(10..16, Some("b"), 14);
    assert_eq!(shards(&case.plan(), Act::Take), vec![5, 6, 7, 8, 9]);
}

#[test]
fn it_takes_no_more_than_its_share_unless_a_shard_has_been_free_for_another_duration() {
    // Share 6 with one other replica alive: 8 (holds 16 / 2).
    let base = || {
        Case::new()
            .member(0, "a", 1)
            .member(1, ME, 1)
            .shards(0..6, Some(ME), 1)
            .shards(6..8, Some("a"), 1)
    };
    // Ten lapsed shards, two of them in our share of eight.
    let lapsed = base().shards(8..16, Some("dead"), 20).plan();
    assert_eq!(shards(&lapsed, Act::Take), preferred(8..16, 2));
    // Lapsed for two durations: taken even above the share.
    let long_lapsed = base().shards(8..16, Some("dead"), 30).plan();
    assert_eq!(shards(&long_lapsed, Act::Take), (8..16).collect::<Vec<_>>());
    // Released for one duration: the same.
    let long_released = base().shards(8..16, None, 15).plan();
    assert_eq!(shards(&long_released, Act::Take), (8..16).collect::<Vec<_>>());
}

#[test]
fn what_it_holds_and_others_renew_asks_for_nothing() {
    let case = Case::new()
        .member(3, ME, 5)
        .shards([1, 2, 4, 5], Some(ME), 5)
        .member(0, "a", 0)
        .member(1, "b", 0)
        .member(2, "c", 0)
        .shards([0, 3, 6, 7], Some("a"), 0)
        .shards(8..12, Some("b"), 0)
        .shards(12..16, Some("c"), 0);
    assert_eq!(case.plan(), vec![]);
}

#[test]
fn above_its_share_it_gives_back_its_least_preferred_shards() {
    // Alone with all 16, then b joins: share 8, release 8.
    let joined = Case::new()
        .member(0, ME, 1)
        .member(1, "b", 1)
        .shards(0..16, Some(ME), 1);
    let released = shards(&joined.plan(), Act::Release);
    let kept: Vec<u16> = (0..16).filter(|s| !released.contains(s)).collect();
    assert_eq!(kept, preferred(0..16, 8), "the least preferred go");
    // c joins too and holds 5 already, b holds 5: share 6, we hold 6. Nothing to do.
    let balanced = Case::new()
        .member(0, ME, 1)
        .member(1, "b", 1)
        .member(2, "c", 1)
        .shards(0..6, Some(ME), 1)
        .shards(6..11, Some("b"), 1)
        .shards(11..16, Some("c"), 1);
    assert!(balanced.plan().is_empty(), "{:?}", balanced.plan());
}

#[test]
fn a_held_lease_someone_else_changed_is_dropped_at_once_without_a_write() {
    let mut case = Case::new()
        .member(0, ME, 1)
        .member(1, "b", 1)
        .shards([1, 2, 3], Some(ME), 1);
    case.shards[1] = seen(Some("b"), 0, case.now);
    case.shards[2] = seen(None, 0, case.now);
    case.shards[3] = None;
    let steps = case.plan();
    assert_eq!(shards(&steps, Act::Forget), vec![1, 2, 3]);
    // Our member Lease with another holder: forget it too.
    let mut case = Case::new().member(2, ME, 1);
    case.members[2] = seen(Some("b"), 0, case.now);
    assert_eq!(members(&case.plan(), Act::Forget), vec![2]);
}

#[test]
fn leases_of_an_earlier_run_under_our_name_are_ours_to_take_at_once() {
    let case = Case::new().member(0, "a", 1).shards(0..8, Some("a"), 1);
    let mut case = case;
    for s in 8..16u16 {
        case.shards[usize::from(s)] = seen(Some(ME), 1, case.now);
    }
    case.members[5] = seen(Some(ME), 1, case.now);
    let steps = case.plan();
    assert_eq!(shards(&steps, Act::Take), (8..16).collect::<Vec<_>>());
    assert_eq!(members(&steps, Act::Take).len(), 1);
}

#[test]
fn while_another_shard_count_is_live_nothing_new_is_taken() {
    let mut case = Case::new()
        .member(0, "old", 1)
        .member(1, ME, 1)
        .shards([0], Some(ME), 5);
    let mut old = seen(Some("old"), 1, case.now).expect("seen");
    old.shards = Some(8);
    case.shards[3] = Some(old.clone());
    let steps = case.plan();
    assert!(steps.is_empty(), "{steps:?}");
    // Once the old replica is gone, its Lease lapses and is free like any other.
    old.unchanged_since = case.now - D;
    case.shards[3] = Some(old);
    case.members[0] = seen(Some("old"), 15, case.now);
    assert_eq!(shards(&case.plan(), Act::Take), (1..16).collect::<Vec<_>>());
}

#[test]
fn with_every_member_slot_live_it_joins_nothing_but_still_works() {
    let mut case = Case::new();
    for slot in 0..16 {
        case = case.member(slot, &format!("r{slot}"), 1);
    }
    let steps = case.plan();
    assert!(members(&steps, Act::Take).is_empty());
    // 17 replicas for 16 shards: a share of 1, of the free ones.
    assert_eq!(shards(&steps, Act::Take), preferred(0..16, 1));
}

#[test]
fn a_stopping_replica_releases_its_member_lease_first_then_its_shards() {
    let case = Case::new().member(4, ME, 1).shards([2, 9], Some(ME), 1);
    assert_eq!(
        stop(&case.held),
        vec![
            Step {
                act: Act::Release,
                lease: Lease::Member(4)
            },
            Step {
                act: Act::Release,
                lease: Lease::Shard(2)
            },
            Step {
                act: Act::Release,
                lease: Lease::Shard(9)
            },
        ]
    );
}

/// Replicas that follow [`plan`] against one store of Leases with optimistic concurrency,
/// in rounds of one poll interval: the rules together must never let two replicas hold a
/// shard, must spread the shards, and must pick up a dead replica's shards.
mod together {
    use std::collections::HashMap;

    use super::*;

    const TICK: Duration = Duration::from_millis(1500);

    #[derive(Default)]
    struct Replica {
        id: String,
        held: Holding,
        /// When the renewer last wrote each held Lease.
        renewed: HashMap<Lease, Instant>,
        /// Version of each Lease and since when this replica has seen it.
        seen: HashMap<Lease, (u64, Instant)>,
        alive: bool,
    }

    struct World {
        now: Instant,
        /// Holder and version of each Lease.
        leases: HashMap<Lease, (Option<String>, u64)>,
        replicas: Vec<Replica>,
    }

    impl World {
        fn new(n: usize) -> World {
            let mut w = World {
                now: Instant::now(),
                leases: HashMap::new(),
                replicas: Vec::new(),
            };
            for _ in 0..n {
                w.join();
            }
            w
        }

        fn join(&mut self) {
            let id = format!("replica-{}", self.replicas.len());
            self.replicas.push(Replica {
                id,
                alive: true,
                ..Default::default()
            });
        }

        fn round(&mut self) {
            self.now += TICK;
            let now = self.now;
            for r in self.replicas.iter_mut().filter(|r| r.alive) {
                // Each held Lease's renewer writes it every third of its duration.
                let mut held: Vec<Lease> = r.held.shards.iter().map(|s| Lease::Shard(*s)).collect();
                held.extend(r.held.member.map(Lease::Member));
                for lease in held {
                    let renewed = r.renewed.entry(lease).or_insert(now);
                    if now - *renewed >= D / 3 {
                        *renewed = now;
                        let version = self.leases.get(&lease).map_or(0, |(_, v)| *v) + 1;
                        self.leases.insert(lease, (Some(r.id.clone()), version));
                    }
                }
                let observe = |lease: Lease, r: &mut Replica| {
                    let (holder, version) = self.leases.get(&lease)?.clone();
                    let since = r.seen.entry(lease).or_insert((version, now));
                    if since.0 != version {
                        *since = (version, now);
                    }
                    Some(Seen {
                        holder,
                        unchanged_since: since.1,
                        duration: D,
                        shards: Some(16),
                    })
                };
                let shard_leases: Vec<Option<Seen>> = (0..16).map(|s| observe(Lease::Shard(s), r)).collect();
                let member_leases: Vec<Option<Seen>> =
                    (0..16).map(|s| observe(Lease::Member(s), r)).collect();
                let steps = plan(
                    &Observed {
                        me: &r.id,
                        now,
                        shards: 16,
                        shard_leases: &shard_leases,
                        member_leases: &member_leases,
                    },
                    &r.held,
                );
                for Step { act, lease } in steps {
                    let observed = r.seen.get(&lease).map(|(v, _)| *v);
                    let current = self.leases.get(&lease).map(|(_, v)| *v);
                    let mut write = |holder: Option<String>| {
                        let version = current.unwrap_or(0) + 1;
                        self.leases.insert(lease, (holder, version));
                    };
                    match act {
                        // Optimistic concurrency: only over the version we saw.
                        Act::Take if observed == current => {
                            write(Some(r.id.clone()));
                            r.renewed.insert(lease, now);
                            match lease {
                                Lease::Shard(s) => {
                                    r.held.shards.insert(s);
                                }
                                Lease::Member(s) => r.held.member = Some(s),
                            }
                        }
                        Act::Take => {}
                        Act::Release | Act::Forget => {
                            r.renewed.remove(&lease);
                            match lease {
                                Lease::Shard(s) => {
                                    r.held.shards.remove(&s);
                                }
                                Lease::Member(_) => r.held.member = None,
                            }
                            if act == Act::Release {
                                write(None);
                            }
                        }
                    }
                }
            }
            // Never two holders of one shard.
            let mut holders: HashMap<u16, &str> = HashMap::new();
            for r in self.replicas.iter().filter(|r| r.alive) {
                for s in &r.held.shards {
                    if let Some(other) = holders.insert(*s, &r.id) {
                        panic!("shard {s} held by {other} and {}", r.id);
                    }
                }
            }
        }

        /// Shards held by live replicas, and the most any one holds.
        fn spread(&self) -> (usize, usize) {
            let live = self.replicas.iter().filter(|r| r.alive);
            let counts: Vec<usize> = live.map(|r| r.held.shards.len()).collect();
            (counts.iter().sum(), counts.into_iter().max().unwrap_or(0))
        }
    }

    #[test]
    fn three_replicas_split_sixteen_shards_and_survive_a_death_and_a_join() {
        let mut w = World::new(3);
        for _ in 0..5 {
            w.round();
        }
        assert_eq!(w.spread(), (16, 6), "after start");

        // One dies: after its Leases lapse (one duration as the others see them) and one
        // more round, the other two hold everything.
        w.replicas[0].alive = false;
        let mut rounds = 0;
        while w.spread().0 < 16 {
            w.round();
            rounds += 1;
            assert!(rounds < 20, "not picked up: {:?}", w.spread());
        }
        assert!(
            TICK * rounds <= D + 2 * TICK,
            "picked up after {:?}",
            TICK * rounds
        );
        assert_eq!(w.spread(), (16, 8));

        // A new replica joins: the others give it its share.
        w.join();
        for _ in 0..5 {
            w.round();
        }
        assert_eq!(w.spread(), (16, 6));
        assert!(w.replicas[3].held.shards.len() >= 4, "the newcomer works");
    }
}
