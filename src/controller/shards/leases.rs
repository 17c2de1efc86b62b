//! The shard manager: reads the Leases, asks [`plan`] what to take and give back, writes it,
//! and keeps [`Shards`] up to date. All the deciding is in `plan`; this is the I/O around it.
//!
//! - Every [`leader::poll_interval`] (at most every [`ROUND`]) one LIST (by label) reads this
//!   release's Leases, and the plan's takes and releases are written at once, each over the resourceVersion last seen,
//!   so that of two replicas reaching for one Lease only one succeeds.
//! - Each held Lease has a task of its own that renews it every third of its duration, so
//!   that a slow LIST or another Lease's slow write never holds a renewal back. A try may take
//!   until the watchdog's deadline (as client-go's renew deadline): a renewal answered late
//!   still counts from when it was sent. A failed try is repeated.
//! - Each held shard has a watchdog ([`leader::watchdog`]) that counts from the last renewal
//!   that reached the API server and stops the shard at `duration − margin`, whatever the
//!   requests are doing.
//!
//! Lease names: `<prefix>-shard-<i>` and `<prefix>-member-<i>` for `i` below the shard count,
//! labelled with the prefix and annotated with the shard count of their writer.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant, SystemTime};

use futures::future::join_all;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{ListParams, ObjectMeta, PostParams};
use kube::{Api, Client};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use super::held::Shards;
use super::plan::{self, Act, Holding, Observed, Seen, Step};
use crate::controller::leader;

/// The longest pause between two rounds (LIST and plan).
const ROUND: Duration = Duration::from_millis(750);

/// The label that selects one release's shard and member Leases; its value is the prefix.
const LABEL_LEASE_SET: &str = "reporting.report-operator.io/shard-leases";
/// The shard count of the Lease's writer.
const ANNOTATION_SHARDS: &str = "reporting.report-operator.io/shards";

/// Where the Leases are and who we are.
#[derive(Debug, Clone)]
pub struct Config {
    /// The release namespace.
    pub namespace: String,
    /// Lease names start with it (the leader-election Lease name).
    pub prefix: String,
    pub identity: String,
    pub shards: u16,
    pub duration: Duration,
}

/// Called with a shard just taken from another holder, before any of its objects is
/// reconciled here, and the time until which that holder may have called backends.
pub type OnTakeover = Box<dyn Fn(u16, SystemTime) + Send + Sync>;

/// Runs the shard manager: once `ready` (caches synced) it joins, takes its share and keeps
/// it; when `stop` resolves it releases everything and returns.
pub async fn run(
    client: Client,
    config: Config,
    shards: Shards,
    on_takeover: OnTakeover,
    ready: impl Future<Output = ()>,
    stop: impl Future<Output = ()>,
) {
    tokio::pin!(stop);
    tokio::select! {
        _ = &mut stop => return,
        _ = ready => {}
    }
    let mut manager = Manager {
        api: Api::namespaced(client, &config.namespace),
        config,
        shards,
        on_takeover,
        known: HashMap::new(),
        since: HashMap::new(),
        held: HashMap::new(),
        ever_held: BTreeSet::new(),
    };
    info!(
        identity = %manager.config.identity,
        shards = manager.config.shards,
        namespace = %manager.config.namespace,
        "sharing the work: taking shard Leases"
    );
    // A lapsed Lease is seen at most a round after it lapses and taken at the next: at most
    // every ROUND, so that a dead replica's shards are taken within the duration plus 2 s.
    let tick = leader::poll_interval(manager.config.duration).min(ROUND);
    loop {
        // A round cut short leaves at most a Lease we wrote but do not know we hold: it
        // lapses. What we know we hold is released below.
        tokio::select! {
            _ = &mut stop => break,
            _ = manager.round() => {}
        }
        tokio::select! {
            _ = &mut stop => break,
            _ = tokio::time::sleep(tick) => {}
        }
    }
    manager.stop().await;
}

struct Manager {
    api: Api<Lease>,
    config: Config,
    shards: Shards,
    on_takeover: OnTakeover,
    /// The newest version of each Lease known here, by name, from the last LIST.
    known: HashMap<String, Lease>,
    /// Since when each Lease has been seen at its resourceVersion.
    since: HashMap<String, (String, Instant)>,
    /// The Leases we hold.
    held: HashMap<plan::Lease, Held>,
    /// Shards this process has held: their budgets here are exact.
    ever_held: BTreeSet<u16>,
}

/// A Lease we hold: the task that renews it, the version it wrote last, and for a shard, the
/// term it is held under and its watchdog.
struct Held {
    renewer: JoinHandle<()>,
    latest: watch::Receiver<Lease>,
    shard: Option<(u64, JoinHandle<()>)>,
}

impl Drop for Held {
    fn drop(&mut self) {
        self.renewer.abort();
        if let Some((_, watchdog)) = &self.shard {
            watchdog.abort();
        }
    }
}

impl Manager {
    async fn round(&mut self) {
        // Shards whose watchdog stopped them, and Leases whose renewer gave up, are not ours.
        let shards = &self.shards;
        self.held.retain(|lease, held| match (lease, &held.shard) {
            (plan::Lease::Shard(s), Some((term, _))) => shards.term(*s) == Some(*term),
            _ => !held.renewer.is_finished(),
        });
        // A slow API server makes rounds slower, not blind.
        let timeout = 2 * leader::margin(self.config.duration);
        let selector = ListParams::default().labels(&format!("{LABEL_LEASE_SET}={}", self.config.prefix));
        // Nothing is decided on an old view: the renewers keep what is held meanwhile.
        match tokio::time::timeout(timeout, self.api.list(&selector)).await {
            Ok(Ok(list)) => self.observe(list.items, Instant::now()),
            Ok(Err(e)) => return debug!(error = %e, "listing the shard Leases failed"),
            Err(_) => return debug!(?timeout, "listing the shard Leases timed out"),
        }
        let now = Instant::now();
        let (shard_leases, member_leases) = (self.seen(Kind::Shard, now), self.seen(Kind::Member, now));
        let steps = plan::plan(
            &Observed {
                me: &self.config.identity,
                now,
                shards: self.config.shards,
                shard_leases: &shard_leases,
                member_leases: &member_leases,
            },
            &self.holding(),
        );
        self.execute(steps).await;
    }

    async fn stop(&mut self) {
        let steps = plan::stop(&self.holding());
        self.execute(steps).await;
        info!("released the shard Leases");
    }

    fn holding(&self) -> Holding {
        let mut holding = Holding::default();
        for lease in self.held.keys() {
            match *lease {
                plan::Lease::Shard(s) => {
                    holding.shards.insert(s);
                }
                plan::Lease::Member(slot) => holding.member = Some(slot),
            }
        }
        holding
    }

    /// Notes each listed Lease and since when it has looked like this.
    fn observe(&mut self, leases: Vec<Lease>, now: Instant) {
        self.known.clear();
        for lease in leases {
            let Some(name) = lease.metadata.name.clone() else {
                continue;
            };
            let version = lease.metadata.resource_version.clone().unwrap_or_default();
            match self.since.get(&name) {
                Some((seen, _)) if *seen == version => {}
                _ => {
                    self.since.insert(name.clone(), (version, now));
                }
            }
            self.known.insert(name, lease);
        }
        let known = &self.known;
        self.since.retain(|name, _| known.contains_key(name));
    }

    /// The Leases of `kind` by index, as the plan takes them.
    fn seen(&self, kind: Kind, now: Instant) -> Vec<Option<Seen>> {
        (0..self.config.shards)
            .map(|i| {
                let name = self.name(kind, i);
                let lease = self.known.get(&name)?;
                let spec = lease.spec.as_ref();
                let seconds = spec.and_then(|s| s.lease_duration_seconds).unwrap_or_default();
                Some(Seen {
                    holder: spec
                        .and_then(|s| s.holder_identity.clone())
                        .filter(|h| !h.is_empty()),
                    unchanged_since: self.since.get(&name).map_or(now, |(_, at)| *at),
                    duration: lease_duration(seconds, self.config.duration),
                    shards: annotation(lease, ANNOTATION_SHARDS).and_then(|v| v.parse().ok()),
                })
            })
            .collect()
    }

    /// Takes the steps: first stops what is given back or lost (at once, before any write),
    /// then writes the takes and releases, all at the same time.
    async fn execute(&mut self, steps: Vec<Step>) {
        let mut writes = Vec::new();
        for step in steps {
            let name = self.name(Kind::of(step.lease), index(step.lease));
            let base = match step.act {
                Act::Take => self.known.get(&name).cloned(),
                Act::Release | Act::Forget => {
                    let held = self.let_go(step.lease);
                    if step.act == Act::Forget {
                        warn!(lease = %name, "another replica changed this Lease; stopped using it");
                        continue;
                    }
                    // The version our renewer wrote last is newer than the listed one.
                    held.map(|h| h.latest.borrow().clone())
                }
            };
            let at = SystemTime::now();
            let lease = written(&self.config, step.act, &name, base.as_ref(), at);
            let api = self.api.clone();
            let timeout = leader::margin(self.config.duration);
            let identity = self.config.identity.clone();
            writes.push(async move {
                let sent = Instant::now();
                let result = match (step.act, &base) {
                    (Act::Take, None) => bounded(timeout, api.create(&PostParams::default(), &lease)).await,
                    (Act::Take, Some(_)) => {
                        bounded(timeout, api.replace(&name, &PostParams::default(), &lease)).await
                    }
                    // Over our own latest version: read it back once if a renewal in flight
                    // when we stopped the renewer moved it on.
                    _ => {
                        write_over_own(&api, &name, lease, &identity, timeout, |l| {
                            if let Some(spec) = l.spec.as_mut() {
                                spec.holder_identity = None;
                                spec.renew_time = Some(micro_time(at));
                            }
                        })
                        .await
                    }
                };
                (step, base, result, at, sent)
            });
        }
        for (step, base, result, at, sent) in join_all(writes).await {
            match (step.act, result) {
                (Act::Take, Ok(written)) => self.took(step.lease, base.as_ref(), written, at, sent),
                (Act::Release, Ok(_)) => info!(lease = ?step.lease, "released"),
                // Someone else took it first, or the API server is slow: the next round sees.
                (act, Err(error)) => {
                    debug!(lease = ?step.lease, ?act, %error, "writing a shard Lease failed")
                }
                (Act::Forget, Ok(_)) => {}
            }
        }
    }

    /// A Lease became ours: for a shard, budgets of a previous holder count as spent, then
    /// its reconciles start, under a watchdog counting from this take; then its renewer.
    fn took(
        &mut self,
        lease: plan::Lease,
        base: Option<&Lease>,
        written: Lease,
        at: SystemTime,
        sent: Instant,
    ) {
        let (renewals, seen) = watch::channel(at);
        let shard = match lease {
            plan::Lease::Member(_) => None,
            plan::Lease::Shard(shard) => self.start_shard(shard, base, seen),
        };
        if matches!(lease, plan::Lease::Shard(_)) && shard.is_none() {
            return;
        }
        // Our own view of it until the next LIST.
        if let Some(name) = written.metadata.name.clone() {
            self.known.insert(name, written.clone());
        }
        let (latest_tx, latest) = watch::channel(written.clone());
        let renewer = tokio::spawn(renew(
            self.api.clone(),
            written,
            self.config.identity.clone(),
            self.config.duration,
            sent,
            renewals,
            latest_tx,
        ));
        self.held.insert(
            lease,
            Held {
                renewer,
                latest,
                shard,
            },
        );
    }

    /// Marks `shard` held, after counting a previous holder's budgets as spent, with a
    /// watchdog on `renewals`; its term and watchdog.
    fn start_shard(
        &mut self,
        shard: u16,
        base: Option<&Lease>,
        renewals: watch::Receiver<SystemTime>,
    ) -> Option<(u64, JoinHandle<()>)> {
        let previous = base.and_then(|lease| lease.spec.as_ref());
        let holder = previous
            .and_then(|s| s.holder_identity.clone())
            .filter(|h| !h.is_empty());
        // Until when the previous holder may have called backends: until now if it held the
        // Lease (it lapsed, or was ours in an earlier process), until it released it
        // otherwise. Our own earlier holding in this process is in our own limiters already.
        let ours =
            holder.as_deref() == Some(self.config.identity.as_str()) && self.ever_held.contains(&shard);
        let active_until = match (&holder, previous.and_then(|s| s.renew_time.as_ref())) {
            _ if ours => None,
            (Some(_), _) => Some(SystemTime::now()),
            (None, Some(released)) => Some(SystemTime::from(released.0)),
            (None, None) => None,
        };
        if let Some(until) = active_until {
            (self.on_takeover)(shard, until);
        }
        let term = self.shards.hold(shard)?;
        self.ever_held.insert(shard);
        let duration = self.config.duration;
        let shards = self.shards.clone();
        let watchdog = tokio::spawn(async move {
            let age = leader::watchdog(duration, renewals).await;
            warn!(
                shard,
                last_renewal_age = ?age,
                lease_duration = ?duration,
                "could not renew the shard's Lease in time; stopped reconciling it before another replica may take it"
            );
            shards.let_go(shard, term);
        });
        info!(
            shard,
            previous_holder = holder.as_deref().unwrap_or("none"),
            "took shard"
        );
        Some((term, watchdog))
    }

    /// Stops using `lease` now: a shard's reconciles are dropped, its renewer stopped.
    fn let_go(&mut self, lease: plan::Lease) -> Option<Held> {
        let held = self.held.remove(&lease)?;
        held.renewer.abort();
        if let (plan::Lease::Shard(shard), Some((term, _))) = (lease, &held.shard) {
            self.shards.let_go(shard, *term);
            info!(shard, "stopped reconciling shard");
        }
        Some(held)
    }

    fn name(&self, kind: Kind, i: u16) -> String {
        let kind = match kind {
            Kind::Shard => "shard",
            Kind::Member => "member",
        };
        format!("{}-{kind}-{i}", self.config.prefix)
    }
}

/// Renews `lease` every third of `duration` from `renewed` until aborted or the Lease is no
/// longer ours, telling the watchdog (`renewals`) and the manager (`latest`) of each renewal.
async fn renew(
    api: Api<Lease>,
    mut lease: Lease,
    identity: String,
    duration: Duration,
    mut renewed: Instant,
    renewals: watch::Sender<SystemTime>,
    latest: watch::Sender<Lease>,
) {
    let name = lease.metadata.name.clone().unwrap_or_default();
    let limit = duration.saturating_sub(leader::margin(duration));
    loop {
        tokio::time::sleep_until((renewed + duration / 3).into()).await;
        loop {
            let at = SystemTime::now();
            let sent = Instant::now();
            // Past the deadline the watchdog has stopped the shard; a renewal that gets
            // through still saves the manager a round to take it back.
            let timeout = (renewed + limit)
                .saturating_duration_since(sent)
                .max(leader::margin(duration));
            let result = write_over_own(&api, &name, lease.clone(), &identity, timeout, |l| {
                if let Some(spec) = l.spec.as_mut() {
                    spec.renew_time = Some(micro_time(at));
                }
            })
            .await;
            match result {
                Ok(written) => {
                    renewals.send_replace(at);
                    latest.send_replace(written.clone());
                    lease = written;
                    renewed = sent;
                    break;
                }
                Err(WriteError::NotOurs) => {
                    warn!(lease = %name, "the Lease is no longer ours; stopped renewing it");
                    return;
                }
                Err(e) => {
                    debug!(lease = %name, error = %e, "renewing a Lease failed; trying again");
                    tokio::time::sleep(leader::poll_interval(duration)).await;
                }
            }
        }
    }
}

/// Why a write of a Lease failed.
#[derive(Debug, thiserror::Error)]
enum WriteError {
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("{0}")]
    Api(#[from] kube::Error),
    /// It names another holder, or none, or is gone.
    #[error("the Lease is not ours")]
    NotOurs,
}

async fn bounded<T>(
    timeout: Duration,
    request: impl Future<Output = Result<T, kube::Error>>,
) -> Result<T, WriteError> {
    match tokio::time::timeout(timeout, request).await {
        Ok(result) => Ok(result?),
        Err(_) => Err(WriteError::Timeout(timeout)),
    }
}

/// Writes `lease` (ours) changed by `change`; when the version we had is no longer the
/// latest (an earlier write's answer was lost), reads it back and, if it still names us,
/// writes over the new one.
async fn write_over_own(
    api: &Api<Lease>,
    name: &str,
    mut lease: Lease,
    identity: &str,
    timeout: Duration,
    change: impl Fn(&mut Lease),
) -> Result<Lease, WriteError> {
    change(&mut lease);
    match bounded(timeout, api.replace(name, &PostParams::default(), &lease)).await {
        Err(WriteError::Api(kube::Error::Api(e))) if e.code == 409 => {
            let mut current = bounded(timeout, api.get(name)).await?;
            let holder = current.spec.as_ref().and_then(|s| s.holder_identity.as_deref());
            if holder != Some(identity) {
                return Err(WriteError::NotOurs);
            }
            change(&mut current);
            bounded(timeout, api.replace(name, &PostParams::default(), &current)).await
        }
        Err(WriteError::Api(kube::Error::Api(e))) if e.code == 404 => Err(WriteError::NotOurs),
        other => other,
    }
}

/// What a take or a release writes over `base` (or a new Lease named `name`) at `at`.
fn written(config: &Config, act: Act, name: &str, base: Option<&Lease>, at: SystemTime) -> Lease {
    let mut lease = base.cloned().unwrap_or_else(|| Lease {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            namespace: Some(config.namespace.clone()),
            ..Default::default()
        },
        spec: None,
    });
    lease.metadata.managed_fields = None;
    lease
        .metadata
        .labels
        .get_or_insert_default()
        .insert(LABEL_LEASE_SET.into(), config.prefix.clone());
    lease
        .metadata
        .annotations
        .get_or_insert_default()
        .insert(ANNOTATION_SHARDS.into(), config.shards.to_string());
    let now = micro_time(at);
    let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
    spec.lease_duration_seconds = i32::try_from(config.duration.as_secs()).ok();
    spec.renew_time = Some(now.clone());
    if act == Act::Take {
        spec.holder_identity = Some(config.identity.clone());
        spec.acquire_time = Some(now);
        spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0).saturating_add(1));
    } else {
        // The renewal time says when the holder stopped: its last backend call was before.
        spec.holder_identity = None;
    }
    lease
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Shard,
    Member,
}

impl Kind {
    fn of(lease: plan::Lease) -> Kind {
        match lease {
            plan::Lease::Shard(_) => Kind::Shard,
            plan::Lease::Member(_) => Kind::Member,
        }
    }
}

fn index(lease: plan::Lease) -> u16 {
    match lease {
        plan::Lease::Shard(i) | plan::Lease::Member(i) => i,
    }
}

/// A Lease's duration as written, within 1 s and an hour; ours when it says nothing usable.
fn lease_duration(seconds: i32, ours: Duration) -> Duration {
    match u64::try_from(seconds) {
        Ok(s) if s > 0 => Duration::from_secs(s.min(3600)),
        _ => ours,
    }
}

fn annotation<'a>(lease: &'a Lease, key: &str) -> Option<&'a str> {
    lease.metadata.annotations.as_ref()?.get(key).map(String::as_str)
}

fn micro_time(at: SystemTime) -> MicroTime {
    MicroTime(k8s_openapi::jiff::Timestamp::try_from(at).unwrap_or(k8s_openapi::jiff::Timestamp::UNIX_EPOCH))
}

/// Checks that `prefix` makes valid Lease names and label values.
pub fn check_prefix(prefix: &str) -> Result<(), String> {
    let valid = !prefix.is_empty()
        && prefix.len() <= 63
        && prefix
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && prefix.starts_with(|c: char| c.is_ascii_alphanumeric())
        && prefix.ends_with(|c: char| c.is_ascii_alphanumeric());
    if valid {
        Ok(())
    } else {
        Err(format!(
            "the Lease name {prefix:?} cannot prefix shard Leases: at most 63 lower-case letters, digits and '-', starting and ending with a letter or digit"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lease_durations_are_bounded() {
        let ours = Duration::from_secs(15);
        for (seconds, expected) in [(6, 6), (0, 15), (-3, 15), (i32::MAX, 3600)] {
            assert_eq!(
                lease_duration(seconds, ours),
                Duration::from_secs(expected),
                "{seconds}"
            );
        }
    }

    #[test]
    fn the_prefix_must_make_names_and_label_values() {
        assert!(check_prefix("report-operator").is_ok());
        for bad in ["", "-x", "x-", "Report", "a.b", &"x".repeat(64)] {
            assert!(check_prefix(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_take_names_us_and_a_release_nobody_with_the_time_of_the_stop() {
        let config = Config {
            namespace: "ops".into(),
            prefix: "report-operator".into(),
            identity: "pod-a".into(),
            shards: 16,
            duration: Duration::from_secs(15),
        };
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let taken = written(&config, Act::Take, "report-operator-shard-3", None, at);
        assert_eq!(taken.metadata.name.as_deref(), Some("report-operator-shard-3"));
        assert_eq!(
            taken
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(LABEL_LEASE_SET))
                .map(String::as_str),
            Some("report-operator")
        );
        assert_eq!(annotation(&taken, ANNOTATION_SHARDS), Some("16"));
        let spec = taken.spec.clone().expect("spec");
        assert_eq!(spec.holder_identity.as_deref(), Some("pod-a"));
        assert_eq!(spec.lease_duration_seconds, Some(15));
        assert_eq!(spec.lease_transitions, Some(1));
        assert_eq!(spec.renew_time.map(|t| SystemTime::from(t.0)), Some(at));
        let later = at + Duration::from_secs(60);
        let released = written(
            &config,
            Act::Release,
            "report-operator-shard-3",
            Some(&taken),
            later,
        );
        let spec = released.spec.expect("spec");
        assert_eq!(spec.holder_identity, None);
        assert_eq!(spec.lease_transitions, Some(1));
        assert_eq!(spec.renew_time.map(|t| SystemTime::from(t.0)), Some(later));
    }
}
