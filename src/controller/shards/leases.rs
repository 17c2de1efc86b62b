//! The shard manager: reads the Leases, asks [`plan`] what to do, writes what it says, and
//! keeps [`Shards`] and a watchdog per held shard up to date. All the deciding is in `plan`;
//! this is the I/O around it.
//!
//! Every [`leader::poll_interval`] it lists this release's Leases (one LIST, by label) and
//! writes the steps of the plan at once, each write bounded by [`leader::request_timeout`]
//! and made over the resourceVersion last seen, so that of two replicas reaching for one Lease
//! only one succeeds. A held shard is renewed every third of the Lease duration; its
//! watchdog ([`leader::watchdog`]) counts from the last renewal that reached the API server
//! and stops the shard at `duration − margin`, whatever the reads and writes are doing.
//!
//! Lease names: `<prefix>-shard-<i>` and `<prefix>-member-<i>` for `i` below the shard count,
//! labelled with the prefix and annotated with the shard count of their writer.

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime};

use futures::future::join_all;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{ListParams, ObjectMeta, PostParams};
use kube::{Api, Client};
use tokio::sync::watch;
use tracing::{debug, info, warn};

use super::held::Shards;
use super::plan::{self, Act, Holding, Observed, Seen, Step};
use crate::controller::leader;

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
        holding: Holding::default(),
        watched: HashMap::new(),
    };
    info!(
        identity = %manager.config.identity,
        shards = manager.config.shards,
        namespace = %manager.config.namespace,
        "sharing the work: taking shard Leases"
    );
    let tick = leader::poll_interval(manager.config.duration);
    loop {
        manager.round().await;
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
    /// The newest version of each Lease known here, by name: listed or written by us.
    known: HashMap<String, Lease>,
    /// Since when each Lease has been seen at its resourceVersion.
    since: HashMap<String, (String, Instant)>,
    holding: Holding,
    /// Per held shard: its term, and the renewals its watchdog counts from.
    watched: HashMap<u16, Watched>,
}

struct Watched {
    term: u64,
    renewals: watch::Sender<SystemTime>,
    watchdog: tokio::task::JoinHandle<()>,
}

impl Drop for Watched {
    fn drop(&mut self) {
        self.watchdog.abort();
    }
}

impl Manager {
    async fn round(&mut self) {
        // Shards whose watchdog stopped them are no longer ours to renew.
        let stopped: Vec<u16> = self
            .watched
            .iter()
            .filter(|(shard, w)| self.shards.term(**shard) != Some(w.term))
            .map(|(shard, _)| *shard)
            .collect();
        for shard in stopped {
            self.watched.remove(&shard);
            self.holding.shards.remove(&shard);
        }
        let timeout = leader::request_timeout(self.config.duration);
        let selector = ListParams::default().labels(&format!("{LABEL_LEASE_SET}={}", self.config.prefix));
        match tokio::time::timeout(timeout, self.api.list(&selector)).await {
            Ok(Ok(list)) => self.observe(list.items, Instant::now()),
            Ok(Err(e)) => debug!(error = %e, "listing the shard Leases failed"),
            Err(_) => debug!(?timeout, "listing the shard Leases timed out"),
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
                renew_every: self.config.duration / 3,
            },
            &self.holding,
        );
        self.execute(steps).await;
    }

    async fn stop(&mut self) {
        let steps = plan::stop(&self.holding);
        self.execute(steps).await;
        info!("released the shard Leases");
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

    /// Takes the steps: first what stops reconciling (at once, before any write), then the
    /// writes, all at the same time.
    async fn execute(&mut self, steps: Vec<Step>) {
        for step in &steps {
            if let (Act::Release | Act::Forget, plan::Lease::Shard(shard)) = (step.act, step.lease) {
                self.let_go(shard);
                if step.act == Act::Forget {
                    warn!(
                        shard,
                        "another replica changed this shard's Lease; stopped reconciling it"
                    );
                }
            }
            if let (Act::Forget, plan::Lease::Member(_)) = (step.act, step.lease) {
                self.holding.member = None;
            }
        }
        let timeout = leader::request_timeout(self.config.duration);
        let writes = steps
            .into_iter()
            .filter(|step| step.act != Act::Forget)
            .map(|step| {
                let name = self.name(Kind::of(step.lease), index(step.lease));
                let old = self.known.get(&name).cloned();
                let at = SystemTime::now();
                let lease = self.written(step.act, &name, old.as_ref(), at);
                let api = self.api.clone();
                async move {
                    let sent = Instant::now();
                    let write = async {
                        match &old {
                            None => api.create(&PostParams::default(), &lease).await,
                            Some(_) => api.replace(&name, &PostParams::default(), &lease).await,
                        }
                    };
                    let result = match tokio::time::timeout(timeout, write).await {
                        Ok(result) => result.map_err(|e| e.to_string()),
                        Err(_) => Err(format!("no answer within {timeout:?}")),
                    };
                    (step, old, result, at, sent)
                }
            });
        for (step, old, result, at, sent) in join_all(writes).await {
            self.written_back(step, old, result, at, sent);
        }
    }

    /// What a step writes over `old` (or a new Lease named `name`) at `at`.
    fn written(&self, act: Act, name: &str, old: Option<&Lease>, at: SystemTime) -> Lease {
        let mut lease = old.cloned().unwrap_or_else(|| Lease {
            metadata: ObjectMeta {
                name: Some(name.to_string()),
                namespace: Some(self.config.namespace.clone()),
                ..Default::default()
            },
            spec: None,
        });
        lease.metadata.managed_fields = None;
        lease
            .metadata
            .labels
            .get_or_insert_default()
            .insert(LABEL_LEASE_SET.into(), self.config.prefix.clone());
        lease
            .metadata
            .annotations
            .get_or_insert_default()
            .insert(ANNOTATION_SHARDS.into(), self.config.shards.to_string());
        let now = micro_time(at);
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        spec.lease_duration_seconds = i32::try_from(self.config.duration.as_secs()).ok();
        spec.renew_time = Some(now.clone());
        match act {
            Act::Take => {
                spec.holder_identity = Some(self.config.identity.clone());
                spec.acquire_time = Some(now);
                spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0).saturating_add(1));
            }
            Act::Renew => spec.holder_identity = Some(self.config.identity.clone()),
            // The renewal time says when the holder stopped: its last backend call was before.
            Act::Release | Act::Forget => spec.holder_identity = None,
        }
        lease
    }

    /// Notes the answer to one write.
    fn written_back(
        &mut self,
        step: Step,
        old: Option<Lease>,
        result: Result<Lease, String>,
        at: SystemTime,
        sent: Instant,
    ) {
        let Step { act, lease } = step;
        let written = match result {
            Ok(written) => written,
            Err(error) => {
                // A conflict: someone wrote it since we read it (we will see who next round).
                // Anything else: the next round tries again, and the watchdog keeps time.
                debug!(?lease, ?act, %error, "writing a shard Lease failed");
                return;
            }
        };
        if let Some(name) = written.metadata.name.clone() {
            self.known.insert(name, written);
        }
        match (act, lease) {
            (Act::Take | Act::Renew, plan::Lease::Member(slot)) => self.holding.member = Some((slot, sent)),
            (Act::Take, plan::Lease::Shard(shard)) => self.took(shard, old.as_ref(), at, sent),
            (Act::Renew, plan::Lease::Shard(shard)) => {
                if let (Some(w), Some(renewed)) =
                    (self.watched.get(&shard), self.holding.shards.get_mut(&shard))
                {
                    *renewed = sent;
                    w.renewals.send_replace(at);
                }
            }
            (Act::Release, plan::Lease::Shard(shard)) => info!(shard, "released shard"),
            (Act::Release | Act::Forget, plan::Lease::Member(_)) | (Act::Forget, plan::Lease::Shard(_)) => {}
        }
    }

    /// A shard became ours: budgets of a previous holder count as spent, then its
    /// reconciles start, under a watchdog counting from this take.
    fn took(&mut self, shard: u16, old: Option<&Lease>, at: SystemTime, sent: Instant) {
        let previous = old.and_then(|lease| lease.spec.as_ref());
        let holder = previous
            .and_then(|s| s.holder_identity.clone())
            .filter(|h| !h.is_empty());
        // Until when the previous holder may have called backends: until now if it held the
        // Lease (it lapsed, or was ours before a restart), until it released it otherwise.
        let active_until = match (&holder, previous.and_then(|s| s.renew_time.as_ref())) {
            (Some(_), _) => Some(SystemTime::now()),
            (None, Some(released)) => Some(SystemTime::from(released.0)),
            (None, None) => None,
        };
        if let Some(until) = active_until {
            (self.on_takeover)(shard, until);
        }
        let Some(term) = self.shards.hold(shard) else {
            return;
        };
        let (renewals, seen) = watch::channel(at);
        let duration = self.config.duration;
        let shards = self.shards.clone();
        let watchdog = tokio::spawn(async move {
            let age = leader::watchdog(duration, seen).await;
            warn!(
                shard,
                last_renewal_age = ?age,
                lease_duration = ?duration,
                "could not renew the shard's Lease in time; stopped reconciling it before another replica may take it"
            );
            shards.let_go(shard, term);
        });
        self.watched.insert(
            shard,
            Watched {
                term,
                renewals,
                watchdog,
            },
        );
        self.holding.shards.insert(shard, sent);
        info!(
            shard,
            previous_holder = holder.as_deref().unwrap_or("none"),
            "took shard"
        );
    }

    /// Stops reconciling `shard` now.
    fn let_go(&mut self, shard: u16) {
        self.holding.shards.remove(&shard);
        if let Some(w) = self.watched.remove(&shard) {
            self.shards.let_go(shard, w.term);
        }
    }

    fn name(&self, kind: Kind, i: u16) -> String {
        let kind = match kind {
            Kind::Shard => "shard",
            Kind::Member => "member",
        };
        format!("{}-{kind}-{i}", self.config.prefix)
    }
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
}
