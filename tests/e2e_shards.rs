//! Sharding (`--sharding`): three operator processes share 24 namespaces through 16 shard
//! Leases. Every shard is held exactly once; a replica only ever acts on the namespaces of
//! shards it holds (checked on every Event the operators published); a replica SIGKILLed in
//! the middle of a burst has its shards reconciled by the others within the Lease duration
//! plus 2 s, their backends' budgets counted as spent; a rolling restart of all three moves
//! the shards without waiting for a Lease to lapse; and no report is lost or generated twice.
//!
//! A replica cut off from the API server stops each of its shards before the other may take
//! it over (the watchdog of `leader.rs`, one per shard). The chart's Lease Role, which names
//! each shard Lease it lets the operator write, is all two replicas need.
//!
//! `cargo test --test e2e_shards -- --nocapture` prints the failover and handoff times.

mod chart_support;
mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant, SystemTime};

use common::operator::{LOOPBACK_SIMULATORS, Operator, without_colours};
use common::proxy::{Cut, Proxy, upstream_of};
use common::{ControlPlane, TestNamespace, fixtures, repo_root, wait_for};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, ListParams};
use report_operator::api::{BackendType, FileState, LABEL_GENERATOR, ReportFile};
use report_sim::{ReportingApi, SimConfig, SimServer};

const LEASE_SECONDS: u64 = 6;
const SHARDS: u16 = 16;
const NAMESPACES: usize = 24;
/// What a replica's Event may trail its last moment holding the shard by: Events are
/// published by a background task after the reconcile that made them.
const EVENT_LAG: Duration = Duration::from_secs(2);

/// The tests here run one at a time: each starts operators that watch every namespace, which
/// would reconcile another test's namespaces too.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// An independent FNV-1a₆₄ `mod N`: the operator's shard of a namespace.
fn shard_of(namespace: &str) -> u16 {
    let h = namespace.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    u16::try_from(h % u64::from(SHARDS)).expect("below 16")
}

/// The operator processes of one test and what they share.
struct Fleet {
    cp: ControlPlane,
    client: kube::Client,
    /// Where the Leases are (the release namespace).
    leases: TestNamespace,
    prefix: String,
    live: Vec<Replica>,
    /// Every replica ever started, for their logs.
    logs: Vec<(String, std::path::PathBuf)>,
}

struct Replica {
    id: String,
    op: Operator,
}

impl Fleet {
    async fn new() -> Fleet {
        let leases = TestNamespace::new("e2e-shards-leases").await;
        let cp = leases.cp().clone();
        Fleet {
            client: cp.client().await,
            cp,
            prefix: format!("shards-{:08x}", rand::random::<u32>()),
            leases,
            live: Vec::new(),
            logs: Vec::new(),
        }
    }

    /// Starts one more replica, as a Deployment's new pod.
    fn start(&mut self) -> String {
        let kubeconfig = self.cp.kubeconfig.clone();
        self.start_through(&kubeconfig)
    }

    /// [`Fleet::start`] with the API server reached as `kubeconfig` says.
    fn start_through(&mut self, kubeconfig: &std::path::Path) -> String {
        let id = format!("{}-r{}", self.prefix, self.logs.len());
        let seconds = LEASE_SECONDS.to_string();
        let mut args = vec![
            "--sharding",
            "--leader-election-namespace",
            &self.leases.name,
            "--leader-election-lease-name",
            &self.prefix,
            "--leader-election-lease-seconds",
            &seconds,
        ];
        args.extend_from_slice(LOOPBACK_SIMULATORS);
        let op = Operator::start_replica(kubeconfig, &id, &args);
        self.logs.push((id.clone(), op.log.clone()));
        self.live.push(Replica { id: id.clone(), op });
        id
    }

    fn remove(&mut self, id: &str) -> Replica {
        let i = self.live.iter().position(|r| r.id == id).expect("a live replica");
        self.live.remove(i)
    }

    /// Holder of each shard by its Lease (shards nobody holds are missing).
    async fn lease_holders(&self) -> BTreeMap<u16, String> {
        let api: Api<Lease> = Api::namespaced(self.client.clone(), &self.leases.name);
        let leases = api.list(&ListParams::default()).await.expect("list Leases").items;
        let prefix = format!("{}-shard-", self.prefix);
        leases
            .into_iter()
            .filter_map(|l| {
                let shard = l.metadata.name.as_deref()?.strip_prefix(&prefix)?.parse().ok()?;
                let holder = l.spec?.holder_identity.filter(|h| !h.is_empty())?;
                Some((shard, holder))
            })
            .collect()
    }

    /// For each shard, the live replicas whose metrics say they hold it.
    async fn metric_holders(&self) -> BTreeMap<u16, Vec<String>> {
        let mut holders: BTreeMap<u16, Vec<String>> = BTreeMap::new();
        for r in &self.live {
            for (shard, held) in shard_series(&r.op.metrics().await, "report_operator_shard_held") {
                if held == 1.0 {
                    holders.entry(shard).or_default().push(r.id.clone());
                }
            }
        }
        holders
    }

    /// Waits until every shard is held exactly once, by a live replica, as the Leases and
    /// the replicas' own metrics both say, each replica within its share and none idle.
    async fn wait_balanced(&self, what: &str) -> BTreeMap<u16, String> {
        let live: BTreeSet<&str> = self.live.iter().map(|r| r.id.as_str()).collect();
        let share = usize::from(SHARDS).div_ceil(live.len());
        let last = std::sync::Mutex::new(String::new());
        let found = tokio::time::timeout(Duration::from_secs(60), async {
            loop {
                let leases = self.lease_holders().await;
                let metrics = self.metric_holders().await;
                let exactly_once = (0..SHARDS).all(|s| {
                    let by_lease = leases.get(&s).map(String::as_str);
                    let by_metrics: Vec<&str> = metrics
                        .get(&s)
                        .into_iter()
                        .flatten()
                        .map(String::as_str)
                        .collect();
                    by_lease.is_some_and(|h| live.contains(h)) && by_metrics == [by_lease.unwrap_or_default()]
                });
                let mut counts: BTreeMap<&str, usize> = live.iter().map(|id| (*id, 0)).collect();
                for holder in leases.values() {
                    *counts.entry(holder.as_str()).or_default() += 1;
                }
                let spread = counts.values().all(|c| (1..=share).contains(c));
                if exactly_once && spread {
                    return leases;
                }
                *last.lock().expect("last") =
                    format!("Leases {leases:?}, metrics {metrics:?}, counts {counts:?}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
        .await;
        found.unwrap_or_else(|_| panic!("timed out waiting for {what}: {}", last.lock().expect("last")))
    }
}

/// `name{shard="i"} v` samples of a scrape.
fn shard_series(metrics: &str, name: &str) -> BTreeMap<u16, f64> {
    let prefix = format!("{name}{{shard=\"");
    metrics
        .lines()
        .filter_map(|l| {
            let (shard, value) = l.strip_prefix(&prefix)?.split_once("\"} ")?;
            Some((shard.parse().ok()?, value.trim().parse().ok()?))
        })
        .collect()
}

/// The test's namespaces, with their workload.
struct Tenants {
    namespaces: Vec<TestNamespace>,
    client: kube::Client,
}

impl Tenants {
    async fn new(client: kube::Client) -> Tenants {
        let mut namespaces = Vec::new();
        for _ in 0..NAMESPACES {
            namespaces.push(TestNamespace::new("e2e-shards").await);
        }
        Tenants { namespaces, client }
    }

    fn names(&self) -> BTreeSet<String> {
        self.namespaces.iter().map(|ns| ns.name.clone()).collect()
    }

    fn apply(&self, yaml: impl Fn(&str) -> String) {
        for ns in &self.namespaces {
            ns.apply(&yaml(&ns.name));
        }
    }

    /// The ReportFiles of the test's namespaces.
    async fn files(&self) -> Vec<ReportFile> {
        let api: Api<ReportFile> = Api::all(self.client.clone());
        let names = self.names();
        api.list(&ListParams::default().labels(LABEL_GENERATOR))
            .await
            .expect("list ReportFiles")
            .items
            .into_iter()
            .filter(|rf| {
                rf.metadata
                    .namespace
                    .as_ref()
                    .is_some_and(|ns| names.contains(ns))
            })
            .collect()
    }

    /// Waits until `n` ReportFiles of `generator` (one per namespace) have a backend id.
    async fn wait_submitted(&self, generator: &str, n: usize) {
        wait_for(
            &format!("{n} reports of {generator} submitted"),
            Duration::from_secs(120),
            || async {
                let files = self.files().await;
                let submitted = files
                    .iter()
                    .filter(|rf| {
                        rf.metadata
                            .labels
                            .as_ref()
                            .and_then(|l| l.get(LABEL_GENERATOR))
                            .map(String::as_str)
                            == Some(generator)
                    })
                    .filter(|rf| rf.status.as_ref().and_then(|s| s.external_id.as_ref()).is_some())
                    .count();
                (submitted >= n).then_some(())
            },
        )
        .await;
    }

    /// Waits until every namespace has at least `per_namespace` ReportFiles, all READY.
    async fn wait_all_ready(&self, per_namespace: usize, fleet: &Fleet) -> Vec<ReportFile> {
        let what = format!(
            "{per_namespace} READY reports in each namespace (logs: {:?})",
            fleet.logs
        );
        wait_for(&what, Duration::from_secs(240), || async {
            let files = self.files().await;
            let mut per_ns: BTreeMap<&str, usize> = BTreeMap::new();
            for rf in &files {
                if rf.status.as_ref().and_then(|s| s.status) != Some(FileState::Ready) {
                    return None;
                }
                *per_ns
                    .entry(rf.metadata.namespace.as_deref().unwrap_or_default())
                    .or_default() += 1;
            }
            let all = per_ns.len() == NAMESPACES && per_ns.values().all(|n| *n >= per_namespace);
            all.then_some(files)
        })
        .await
    }
}

/// A CMP backend whose budget is 1000 calls per 8 s: only a handover makes a call wait.
fn backend(sim: &SimServer) -> String {
    let t = BackendType::Cmp;
    let limits = "  limits:\n    requestsPerWindow: 1000\n    windowSeconds: 8\n";
    fixtures::backend(sim, t, "cmp", &fixtures::good_credentials(t), limits)
}

/// A PERIODIC daily generator that backfills the last `days` days.
fn daily(namespace: &str, days: i64) -> String {
    let start = (chrono::Utc::now() - chrono::Duration::days(days)).format("%Y-%m-%dT00:00:00Z");
    format!(
        "apiVersion: reporting.report-operator.io/v1alpha1\nkind: ReportGenerator\nmetadata:\n  name: daily\nspec:\n  backendRef:\n    name: cmp\n  commonName: {namespace} daily\n  eventType: PERIODIC\n  format: JSON\n  parameters:\n    period: P1D\n    startDate: \"{start}\"\n  schedule:\n    successfulReportsHistoryLimit: 10\n"
    )
}

fn onetime(namespace: &str, name: &str) -> String {
    fixtures::onetime(BackendType::Cmp, name, "cmp", &format!("{namespace} {name}"))
}

/// When each replica held each shard, from its log: (shard, from, until) with `until`
/// `None` while it still holds it or when it was killed holding it.
fn holdings(log: &str) -> Vec<(u16, SystemTime, Option<SystemTime>)> {
    let mut open: BTreeMap<u16, SystemTime> = BTreeMap::new();
    let mut spans = Vec::new();
    for line in log.lines().map(without_colours) {
        let Some(at) = line_time(&line) else { continue };
        let Some(shard) = line
            .split("shard=")
            .nth(1)
            .and_then(|s| s.split_whitespace().next())
            .and_then(|s| s.parse::<u16>().ok())
        else {
            continue;
        };
        if line.contains("took shard") {
            open.insert(shard, at);
        } else if line.contains("stopped reconciling")
            && let Some(from) = open.remove(&shard)
        {
            spans.push((shard, from, Some(at)));
        }
    }
    spans.extend(open.into_iter().map(|(shard, from)| (shard, from, None)));
    spans
}

/// Every Event the operators published in the test's namespaces came from a replica that
/// held the namespace's shard at the time (give or take [`EVENT_LAG`]).
async fn assert_events_from_holders(fleet: &Fleet, tenants: &Tenants) {
    let spans: BTreeMap<String, Vec<(u16, SystemTime, Option<SystemTime>)>> = fleet
        .logs
        .iter()
        .map(|(id, log)| {
            (
                id.clone(),
                holdings(&std::fs::read_to_string(log).unwrap_or_default()),
            )
        })
        .collect();
    let mut checked = 0;
    let mut strays = Vec::new();
    for ns in &tenants.namespaces {
        let shard = shard_of(&ns.name);
        let api: Api<Event> = Api::namespaced(tenants.client.clone(), &ns.name);
        for event in api.list(&ListParams::default()).await.expect("list Events").items {
            let Some(by) = event.reporting_instance.clone().filter(|i| spans.contains_key(i)) else {
                continue;
            };
            let times = event.event_time.iter().map(|t| SystemTime::from(t.0)).chain(
                event
                    .series
                    .iter()
                    .map(|s| SystemTime::from(s.last_observed_time.0)),
            );
            for at in times {
                checked += 1;
                let held = spans[&by].iter().any(|(s, from, until)| {
                    *s == shard && *from <= at && until.is_none_or(|u| at <= u + EVENT_LAG)
                });
                if !held {
                    strays.push(format!(
                        "{by} published {:?} on {}/{} at {at:?} without holding shard {shard}",
                        event.reason,
                        ns.name,
                        event
                            .regarding
                            .as_ref()
                            .and_then(|r| r.name.clone())
                            .unwrap_or_default()
                    ));
                }
            }
        }
    }
    assert!(checked > 0, "no Events to check");
    assert!(
        strays.is_empty(),
        "{} of {checked} Events:\n{}",
        strays.len(),
        strays.join("\n")
    );
    eprintln!("{checked} Events, each from the replica that held its shard");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_share_the_namespaces_and_lose_nothing_to_a_kill_or_a_rolling_restart() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let mut config = SimConfig::default().for_all(|b| b.generation_ms = 4000);
    // Every namespace's backend uses the simulator's one subscription.
    config.cmp.requests_per_minute = 1_000_000;
    config.cmp.requests_per_day = 100_000_000;
    let sim = SimServer::start(config, "127.0.0.1:0".parse().expect("addr"))
        .await
        .expect("simulator");
    let mut fleet = Fleet::new().await;
    let tenants = Tenants::new(fleet.client.clone()).await;

    // One replica alone holds every shard, and a burst starts.
    fleet.start();
    fleet.wait_balanced("the first replica to hold every shard").await;
    tenants.apply(|ns| {
        format!(
            "{}---\n{}---\n{}",
            backend(&sim),
            onetime(ns, "once"),
            daily(ns, 3)
        )
    });
    tenants.wait_submitted("once", NAMESPACES / 2).await;

    // Two more join while reports run: the first gives them their shares and must not act
    // on what it gave away (its requeues of those reports find the shard gone).
    fleet.start();
    fleet.start();
    fleet.wait_balanced("three replicas to share the shards").await;

    // A second burst; the replica with the most namespaces is SIGKILLed in the middle of it.
    tenants.apply(|ns| onetime(ns, "again"));
    tenants.wait_submitted("again", NAMESPACES / 3).await;
    let holders = fleet.lease_holders().await;
    let namespaces_of = |id: &str| {
        tenants
            .names()
            .into_iter()
            .filter(|ns| holders.get(&shard_of(ns)).is_some_and(|h| h == id))
            .count()
    };
    let victim = fleet
        .live
        .iter()
        .map(|r| r.id.clone())
        .max_by_key(|id| namespaces_of(id))
        .expect("replicas");
    let orphans: BTreeSet<u16> = tenants
        .names()
        .iter()
        .map(|ns| shard_of(ns))
        .filter(|s| holders[s] == victim)
        .collect();
    let mut dead = fleet.remove(&victim);
    let survivors: Vec<&Replica> = fleet.live.iter().collect();
    let mut before = Vec::new();
    for r in &survivors {
        before.push(shard_series(
            &r.op.metrics().await,
            "report_operator_shard_reconciles_total",
        ));
    }
    let killed = Instant::now();
    let killed_at = SystemTime::now();
    dead.op.kill();
    // Kill → the first reconcile of an orphaned shard by a survivor (its shard counter).
    let failover = wait_for(
        "a survivor to reconcile an orphaned shard",
        Duration::from_secs(LEASE_SECONDS * 4),
        || async {
            for (r, before) in survivors.iter().zip(&before) {
                let now = shard_series(&r.op.metrics().await, "report_operator_shard_reconciles_total");
                if orphans.iter().any(|s| now.get(s) > before.get(s).or(Some(&0.0))) {
                    return Some(killed.elapsed());
                }
            }
            None
        },
    )
    .await;
    eprintln!(
        "failover: {failover:?} from SIGKILL to the first reconcile of an orphaned shard (Lease {LEASE_SECONDS} s, {} orphaned shards with namespaces)",
        orphans.len()
    );
    assert!(
        failover <= Duration::from_secs(LEASE_SECONDS + 2),
        "the orphaned shards were reconciled {failover:?} after the kill"
    );
    fleet.wait_balanced("the survivors to hold every shard").await;
    // The survivors counted their new backends' budgets as spent by the dead replica: a call
    // in an orphaned namespace waited for the window (nothing else fills 1000 calls per 8 s).
    let orphaned_namespaces: Vec<String> = tenants
        .names()
        .into_iter()
        .filter(|ns| orphans.contains(&shard_of(ns)))
        .collect();
    let waited = wait_for(
        "a survivor to wait for a taken-over budget",
        Duration::from_secs(30),
        || async {
            survivors.iter().find_map(|r| {
                r.op.logs().lines().map(without_colours).find(|l| {
                    l.contains("waiting for request budget")
                        && orphaned_namespaces
                            .iter()
                            .any(|ns| l.contains(&format!("namespace=\"{ns}\"")))
                        && line_time(l).is_some_and(|t| t > killed_at)
                })
            })
        },
    )
    .await;
    eprintln!("after the takeover: {waited}");
    tenants.wait_all_ready(1 + 3 + 1, &fleet).await;

    // A rolling restart of all three, one after another, during a third burst: SIGTERM
    // releases the shards, which the others take without waiting for the Leases to lapse.
    fleet.start();
    fleet.wait_balanced("the replacement to take its share").await;
    tenants.apply(|ns| onetime(ns, "third"));
    tenants.wait_submitted("third", NAMESPACES / 3).await;
    let old: Vec<String> = fleet.live.iter().map(|r| r.id.clone()).collect();
    for id in old {
        let held: BTreeSet<u16> = fleet
            .lease_holders()
            .await
            .into_iter()
            .filter(|(_, h)| *h == id)
            .map(|(s, _)| s)
            .collect();
        let mut leaving = fleet.remove(&id);
        let stopped = Instant::now();
        let status = leaving.op.terminate(Duration::from_secs(30)).await;
        assert!(
            status.success(),
            "{id} ended with {status} after SIGTERM:\n{}",
            leaving.op.logs()
        );
        let still = fleet.lease_holders().await;
        let kept: Vec<u16> = held
            .iter()
            .copied()
            .filter(|s| still.get(s) == Some(&id))
            .collect();
        assert!(
            kept.is_empty(),
            "{id} ended still named in the Leases of shards {kept:?}"
        );
        let gap = wait_for(
            "the others to take the released shards",
            Duration::from_secs(LEASE_SECONDS * 4),
            || async {
                let now = fleet.lease_holders().await;
                held.iter()
                    .all(|s| now.get(s).is_some_and(|h| *h != id))
                    .then(|| stopped.elapsed())
            },
        )
        .await;
        eprintln!(
            "rolling restart: {} shards of {id} held by others {gap:?} after SIGTERM",
            held.len()
        );
        assert!(
            gap < Duration::from_secs(LEASE_SECONDS),
            "{id}'s shards waited {gap:?}: were they released?"
        );
        fleet.start();
        fleet.wait_balanced("the new replica to take its share").await;
    }
    let files = tenants.wait_all_ready(1 + 3 + 1 + 1, &fleet).await;

    // Nothing generated twice, nothing lost, and every Event from a holder.
    let stats = sim.stats();
    assert_eq!(
        stats.max_duplicates(ReportingApi::Cmp),
        1,
        "a report was generated twice: {stats:?}"
    );
    assert_eq!(
        stats.total_generations(ReportingApi::Cmp),
        files.len() as u64,
        "generations against ReportFiles"
    );
    assert_events_from_holders(&fleet, &tenants).await;
    fleet
        .wait_balanced("every shard held exactly once at the end")
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_whose_connections_hang_stops_its_shards_before_the_other_takes_them() {
    cut_off_replica_stops_before_the_other_takes_over(Cut::Hang).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_whose_connections_are_reset_stops_its_shards_before_the_other_takes_them() {
    cut_off_replica_stops_before_the_other_takes_over(Cut::Reset).await;
}

/// One replica reaches the API server through a proxy that the test cuts, the other
/// directly: every shard of the first must stop there before the second takes it.
async fn cut_off_replica_stops_before_the_other_takes_over(cut: Cut) {
    let _alone = ONE_AT_A_TIME.lock().await;
    let mut fleet = Fleet::new().await;
    let proxy = Proxy::start(upstream_of(&fleet.cp.kubeconfig)).await;
    let kubeconfig = proxy.kubeconfig(
        &fleet.cp.kubeconfig,
        &repo_root().join(format!("target/test-logs/{}-proxy", fleet.prefix)),
    );
    let cut_off = fleet.start_through(&kubeconfig);
    let direct = fleet.start();
    let holders = fleet.wait_balanced("two replicas to share the shards").await;
    let held: BTreeSet<u16> = holders
        .iter()
        .filter(|(_, h)| **h == cut_off)
        .map(|(s, _)| *s)
        .collect();
    let cut_at = Instant::now();
    proxy.cut(cut);
    // The Leases first, then what the cut-off replica holds (its metrics server is local): a
    // shard the Lease gives to the other while the cut-off replica still holds it afterwards
    // was reconciled by both.
    let cut_off_op = &fleet
        .live
        .iter()
        .find(|r| r.id == cut_off)
        .expect("the cut-off replica")
        .op;
    let mut stopped: BTreeMap<u16, Duration> = BTreeMap::new();
    let mut taken: BTreeMap<u16, Duration> = BTreeMap::new();
    while taken.len() < held.len() {
        assert!(
            cut_at.elapsed() < Duration::from_secs(LEASE_SECONDS * 4),
            "{cut:?}: not taken over: stopped {stopped:?}, taken {taken:?}"
        );
        let leases = fleet.lease_holders().await;
        let at = cut_at.elapsed();
        let still_held = shard_series(&cut_off_op.metrics().await, "report_operator_shard_held");
        for &shard in &held {
            if still_held.get(&shard) == Some(&0.0) {
                stopped.entry(shard).or_insert(at);
            }
            if leases.get(&shard) == Some(&direct) {
                taken.entry(shard).or_insert(at);
                assert_eq!(
                    still_held.get(&shard),
                    Some(&0.0),
                    "{cut:?}: shard {shard} was taken over {at:?} after the cut while the cut-off replica still held it"
                );
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!(
        "{cut:?}: after the cut, the cut-off replica stopped its shards at {stopped:?}, the other took them at {taken:?}"
    );
}

/// Installs the chart's RBAC for two replicas (sharding) under a release name of its own, and
/// runs two processes with the Deployment's arguments as its ServiceAccount: they share the
/// shards, and when one stops the other takes them all, without a single "forbidden".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_share_the_shards_with_only_the_charts_rbac() {
    let _alone = ONE_AT_A_TIME.lock().await;
    use chart_support::{container_args_of, documents, render_release, token_kubeconfig};

    let mut fleet = Fleet::new().await;
    let release = format!("rbac-{:08x}", rand::random::<u32>());
    let manifests = render_release(
        &release,
        &fleet.leases.name,
        &[
            "replicaCount=2",
            "sharding.shards=4",
            "crds.enabled=false",
            "rbac.aggregateToDefaultRoles=false",
        ],
        &[],
    );
    let docs = documents(&manifests);
    let fullname = format!("{release}-report-operator");
    // Cluster-wide rules outlive the namespace: deleted whatever the outcome.
    let _cluster_rbac = ClusterScoped {
        cp: fleet.cp.clone(),
        objects: vec![
            format!("clusterrole/{fullname}"),
            format!("clusterrolebinding/{fullname}"),
        ],
    };
    let out = fleet
        .cp
        .kubectl_with_stdin(&["apply", "-f", "-"], Some(&manifests));
    assert!(
        out.status.success(),
        "install the chart's objects: {}",
        common::stderr(&out)
    );
    let out = fleet.cp.kubectl(&[
        "-n",
        &fleet.leases.name,
        "create",
        "token",
        &fullname,
        "--duration=1h",
    ]);
    assert!(out.status.success(), "token: {}", common::stderr(&out));
    let kubeconfig = repo_root().join(format!("target/test-logs/{release}-kubeconfig"));
    std::fs::write(
        &kubeconfig,
        token_kubeconfig(&fleet.cp, common::stdout(&out).trim()),
    )
    .expect("kubeconfig");

    // The Deployment's arguments, with a free metrics port.
    let args: Vec<String> = container_args_of(&docs, &fullname)
        .into_iter()
        .filter(|a| a != "run" && !a.starts_with("--metrics-addr="))
        .collect();
    assert!(args.contains(&"--sharding".to_string()), "{args:?}");
    fleet.prefix = fullname.clone();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    for i in 0..2 {
        let id = format!("{fullname}-{i}");
        let op = Operator::start_replica(&kubeconfig, &id, &args);
        fleet.logs.push((id.clone(), op.log.clone()));
        fleet.live.push(Replica { id, op });
    }
    let forbidden = |fleet: &Fleet| {
        for (id, log) in &fleet.logs {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            let refused = text.lines().find(|l| l.to_lowercase().contains("forbidden"));
            assert!(
                refused.is_none(),
                "{id} was refused something:\n{}",
                refused.unwrap_or_default()
            );
        }
    };
    let shards = 4;
    let holders = wait_for(
        "two replicas to share 4 shards",
        Duration::from_secs(60),
        || async {
            forbidden(&fleet);
            let holders = fleet.lease_holders().await;
            let by: BTreeSet<&String> = holders.values().collect();
            (holders.len() == shards && by.len() == 2).then_some(holders)
        },
    )
    .await;
    // Renewals go on (each Lease is rewritten by name), and a stopping replica releases
    // its shards to the other.
    let shared_at = SystemTime::now();
    wait_for(
        "every shard Lease renewed",
        Duration::from_secs(LEASE_SECONDS * 2),
        || async {
            forbidden(&fleet);
            let api: Api<Lease> = Api::namespaced(fleet.client.clone(), &fleet.leases.name);
            let leases = api.list(&ListParams::default()).await.ok()?.items;
            let renewed = leases
                .iter()
                .filter(|l| l.metadata.name.as_deref().is_some_and(|n| n.contains("-shard-")))
                .filter(|l| {
                    let at = l.spec.as_ref().and_then(|s| s.renew_time.as_ref());
                    at.is_some_and(|t| SystemTime::from(t.0) > shared_at)
                })
                .count();
            (renewed == shards).then_some(())
        },
    )
    .await;
    let leaving = fleet.live.remove(0);
    let mut leaving = leaving;
    let status = leaving.op.terminate(Duration::from_secs(30)).await;
    assert!(status.success(), "{status}: {}", leaving.op.logs());
    let stay = fleet.live[0].id.clone();
    wait_for(
        "the other replica to hold every shard",
        Duration::from_secs(LEASE_SECONDS * 4),
        || async {
            forbidden(&fleet);
            let now = fleet.lease_holders().await;
            (now.len() == shards && now.values().all(|h| *h == stay)).then_some(())
        },
    )
    .await;
    forbidden(&fleet);
    eprintln!("shards with only the chart's RBAC: {holders:?}, then all {stay}'s");
}

/// Cluster-scoped objects a test made, deleted when it ends.
struct ClusterScoped {
    cp: ControlPlane,
    objects: Vec<String>,
}

impl Drop for ClusterScoped {
    fn drop(&mut self) {
        let mut args = vec!["delete", "--ignore-not-found", "--wait=false"];
        args.extend(self.objects.iter().map(String::as_str));
        let _ = self.cp.kubectl(&args);
    }
}

/// The time at the start of a log line (without colours).
fn line_time(line: &str) -> Option<SystemTime> {
    let t = line.split_whitespace().next()?;
    chrono::DateTime::parse_from_rfc3339(t).ok().map(SystemTime::from)
}
