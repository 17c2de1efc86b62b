//! The Leases this process holds, and the watchdog that makes a holder cut off from the API
//! server stop reconciling before another replica may take its place: the single
//! leader-election Lease here, and each shard's Lease (`shards`), which use the same clock
//! ([`margin`], [`verdict`]) and the same [`watchdog`].
//!
//! The leader-election Lease itself is kept by kube-lease-manager 0.13. Its watch channel alone
//! does not stop a leader in time (read in its source, `LeaseManager::watch`, `changed`,
//! `LeaseState::sync`): the channel turns false only after a successful read of the Lease
//! names another holder. When a renewal fails (an API error, a refused or reset connection)
//! `watch` logs "LeaseManager watcher error", backs off 1 to 30 s and tries again, and the
//! channel stays true for as long as the API server cannot be reached: being the holder is
//! judged from the last Lease read, never from its expiry. A hung connection is worse: kube's
//! client has no read timeout by default, so the renewal PATCH waits forever and nothing is
//! even logged. Meanwhile a standby that still reaches the API server takes the Lease once it
//! is `duration` old, and both reconcile (the e2e test shows it when the watchdog is disabled).
//!
//! So every holder keeps its own deadline: [`watchdog`] takes the renewals known to have
//! reached the API server (for the leader-election Lease, read back every [`poll_interval`]
//! by [`read_renewals`], each read bounded by [`request_timeout`]; for a shard, the renewals
//! the shard manager wrote itself). Once the newest is `duration − margin` old ([`verdict`])
//! it returns, at the deadline itself and whatever the reads or writes are doing, so the
//! holder stops before another replica may acquire at `duration`.

use std::time::{Duration, SystemTime};

use k8s_openapi::api::coordination::v1::Lease;
use kube::{Api, Client};
use tokio::sync::watch;
use tracing::{debug, info, warn};

use super::cli::RunArgs;
use super::error::RunError;

/// Shortest Lease duration we accept: the margin is at least 1 s and the renewal must be seen
/// well before `duration − margin` (see [`grace`]).
pub const MIN_LEASE_SECONDS: u64 = 5;

/// Time kept between our stop and the earliest takeover, for clock skew and process exit:
/// a fifth of the Lease duration, at least 1 s.
pub fn margin(duration: Duration) -> Duration {
    (duration / 5).max(Duration::from_secs(1))
}

/// How often the watchdog reads the Lease: half a margin, so that a renewal made at half the
/// duration is seen (read interval plus read timeout: one margin) long before the deadline.
pub fn poll_interval(duration: Duration) -> Duration {
    margin(duration) / 2
}

/// Bound on each of the watchdog's requests; shorter than the margin, so that a hung
/// connection cannot hold the stop back.
pub fn request_timeout(duration: Duration) -> Duration {
    margin(duration) / 2
}

/// The kube-lease-manager grace: it renews `grace` seconds before expiry, i.e. at half the
/// duration, leaving the watchdog time to see the renewal before its deadline.
fn grace(duration_secs: u64) -> u64 {
    duration_secs.div_ceil(2)
}

/// What the watchdog does given the last renewal it knows of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Still safe; decide again at the latest after this long.
    Keep(Duration),
    /// The renewal is this old: stop reconciling now.
    Stop(Duration),
}

/// Keep leading while the last renewal is younger than `duration − margin`. A renewal in the
/// future (clock step) counts as just made.
pub fn verdict(last_renewal: SystemTime, now: SystemTime, duration: Duration) -> Verdict {
    let age = now.duration_since(last_renewal).unwrap_or(Duration::ZERO);
    let limit = duration.saturating_sub(margin(duration));
    match limit.checked_sub(age) {
        Some(left) if !left.is_zero() => Verdict::Keep(left),
        _ => Verdict::Stop(age),
    }
}

/// Who this process is to the other replicas: its pod's name, or a random one outside a pod.
pub fn identity() -> String {
    std::env::var("POD_NAME").unwrap_or_else(|_| format!("report-operator-{}", uuid::Uuid::new_v4()))
}

/// The Lease while this process holds it.
pub struct Leadership {
    lost: watch::Receiver<bool>,
    api: Api<Lease>,
    lease: String,
    identity: String,
    duration: Duration,
    renewed: SystemTime,
}

/// Waits until this process holds the leader-election Lease and has read back the renewal
/// that made it the holder (the watchdog counts from there).
pub async fn acquire(client: &Client, args: &RunArgs) -> Result<Leadership, RunError> {
    let seconds = args.leader_election_lease_seconds;
    if seconds < MIN_LEASE_SECONDS {
        return Err(RunError::LeaseTooShort {
            min: MIN_LEASE_SECONDS,
        });
    }
    let duration = Duration::from_secs(seconds);
    // Unique per process, as client-go's `<hostname>_<uuid>`: a container restarted in its pod
    // keeps the pod's name, and kube-lease-manager takes a Lease naming its identity for its
    // own (renewing it without a precondition), so a shared name could make a new process
    // lead on a Lease another replica holds meanwhile.
    let identity = format!(
        "{}_{}",
        identity(),
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    let lease = args.leader_election_lease_name.clone();
    // A renewal is ours only if this process wrote it: a container restarted in the same pod
    // has the same identity, and the Lease may still carry its predecessor's last renewal.
    let started = SystemTime::now();
    // An API server that cannot be reached yet (restarting, say) is waited for, as a standby
    // waits for the Lease, rather than ending the process.
    let manager = loop {
        match kube_lease_manager::LeaseManagerBuilder::new(client.clone(), &lease)
            .with_namespace(&args.leader_election_namespace)
            .with_identity(&identity)
            .with_duration(seconds)
            .with_grace(grace(seconds))
            .build()
            .await
        {
            Ok(manager) => break manager,
            Err(e) => {
                warn!(error = %e, "cannot read the leader-election Lease yet; trying again");
                tokio::time::sleep(poll_interval(duration)).await;
            }
        }
    };
    let (mut leader, _task) = manager.watch().await;
    info!(identity = %identity, lease = %lease, "waiting for the leader-election Lease");
    while !*leader.borrow_and_update() {
        leader.changed().await.map_err(|_| RunError::LostLeadership)?;
    }
    let api: Api<Lease> = Api::namespaced(client.clone(), &args.leader_election_namespace);
    let renewed = loop {
        match own_renewal(&api, &lease, &identity, request_timeout(duration)).await {
            Renewal::Ours(at) if at >= started => break at,
            Renewal::NotOurs => return Err(RunError::LostLeadership),
            Renewal::Ours(_) | Renewal::Unknown => tokio::time::sleep(poll_interval(duration)).await,
        }
    };
    info!(identity = %identity, "acquired the leader-election Lease");
    Ok(Leadership {
        lost: leader,
        api,
        lease,
        identity,
        duration,
        renewed,
    })
}

impl Leadership {
    /// Resolves when this process must stop reconciling: the Lease went to another replica,
    /// or its renewal is too old for the Lease to be still ours by the time anyone checks.
    pub async fn lost(self) -> RunError {
        let Leadership {
            mut lost,
            api,
            lease,
            identity,
            duration,
            renewed,
        } = self;
        let (renewals, seen) = watch::channel(renewed);
        tokio::select! {
            _ = async {
                while *lost.borrow_and_update() {
                    if lost.changed().await.is_err() {
                        break;
                    }
                }
            } => warn!("another replica holds the leader-election Lease; stopping reconciles"),
            age = watchdog(duration, seen) => warn!(
                last_renewal_age = ?age,
                lease_duration = ?duration,
                "lost contact with the API server; stopping reconciles before the Lease can pass to another replica"
            ),
            never = read_renewals(&api, &lease, &identity, duration, renewals) => match never {},
        }
        RunError::LostLeadership
    }
}

/// Returns (with the renewal's age) once the newest renewal sent on `renewals` is
/// `duration − margin` old. The deadline runs on its own timer, so a slow read or write of the
/// Lease cannot delay it; a sender that is gone sends no more renewals.
pub async fn watchdog(duration: Duration, mut renewals: watch::Receiver<SystemTime>) -> Duration {
    loop {
        let renewed = *renewals.borrow_and_update();
        let left = match verdict(renewed, SystemTime::now(), duration) {
            Verdict::Stop(age) => return age,
            Verdict::Keep(left) => left,
        };
        tokio::select! {
            _ = tokio::time::sleep(left) => {}
            changed = renewals.changed() => if changed.is_err() {
                tokio::time::sleep(left).await;
            },
        }
    }
}

/// Reads the leader-election Lease every [`poll_interval`] and sends each renewal written
/// under our identity (kube-lease-manager writes them) to the watchdog. Never returns.
async fn read_renewals(
    api: &Api<Lease>,
    lease: &str,
    identity: &str,
    duration: Duration,
    renewals: watch::Sender<SystemTime>,
) -> std::convert::Infallible {
    let timeout = request_timeout(duration);
    loop {
        tokio::time::sleep(poll_interval(duration)).await;
        match own_renewal(api, lease, identity, timeout).await {
            Renewal::Ours(at) => {
                renewals.send_if_modified(|renewed| {
                    let newer = at > *renewed;
                    *renewed = (*renewed).max(at);
                    newer
                });
            }
            // The deadline stops us; the crate's channel reports the new holder too.
            Renewal::NotOurs => debug!("the leader-election Lease names another holder"),
            Renewal::Unknown => {}
        }
    }
}

/// What one read of the Lease says about our renewals.
enum Renewal {
    /// We hold it; renewed at this time.
    Ours(SystemTime),
    NotOurs,
    /// The read failed or timed out.
    Unknown,
}

async fn own_renewal(api: &Api<Lease>, lease: &str, identity: &str, timeout: Duration) -> Renewal {
    let spec = match tokio::time::timeout(timeout, api.get(lease)).await {
        Ok(Ok(lease)) => lease.spec.unwrap_or_default(),
        Ok(Err(e)) => {
            debug!(error = %e, "reading the leader-election Lease failed");
            return Renewal::Unknown;
        }
        Err(_) => {
            debug!(?timeout, "reading the leader-election Lease timed out");
            return Renewal::Unknown;
        }
    };
    match (spec.holder_identity.as_deref() == Some(identity), spec.renew_time) {
        (true, Some(at)) => Renewal::Ours(at.0.into()),
        _ => Renewal::NotOurs,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    #[test]
    fn margin_is_a_fifth_of_the_duration_and_at_least_a_second() {
        for (duration, margin_s) in [(5.0, 1.0), (6.0, 1.2), (15.0, 3.0), (60.0, 12.0)] {
            assert_eq!(margin(secs(duration)), secs(margin_s), "duration {duration}");
            assert!(request_timeout(secs(duration)) < margin(secs(duration)));
        }
    }

    #[test]
    fn keeps_leading_until_duration_minus_margin_after_the_last_renewal() {
        let renewed = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        // (lease duration, seconds since the renewal, verdict)
        let table = [
            (15.0, 0.0, Verdict::Keep(secs(12.0))),
            (15.0, 7.5, Verdict::Keep(secs(4.5))),
            (15.0, 11.9, Verdict::Keep(secs(12.0) - secs(11.9))),
            (15.0, 12.0, Verdict::Stop(secs(12.0))),
            (15.0, 20.0, Verdict::Stop(secs(20.0))),
            (6.0, 4.0, Verdict::Keep(secs(6.0) - secs(1.2) - secs(4.0))),
            (6.0, 4.8, Verdict::Stop(secs(4.8))),
            (5.0, 3.9, Verdict::Keep(secs(4.0) - secs(3.9))),
            (5.0, 4.0, Verdict::Stop(secs(4.0))),
            // A renewal ahead of our clock counts as just made.
            (15.0, -2.0, Verdict::Keep(secs(12.0))),
        ];
        for (duration, age, expected) in table {
            let now = if age >= 0.0 {
                renewed + secs(age)
            } else {
                renewed - secs(-age)
            };
            assert_eq!(
                verdict(renewed, now, secs(duration)),
                expected,
                "duration {duration}, age {age}"
            );
        }
    }

    #[tokio::test]
    async fn the_watchdog_stops_at_the_deadline_of_the_newest_renewal() {
        // 5 s: stop 4 s after the newest renewal. The first one is 3.8 s old (0.2 s left),
        // a newer one 3.5 s old comes at once (0.5 s left).
        let duration = Duration::from_secs(5);
        let start = std::time::Instant::now();
        let (renewals, seen) = watch::channel(SystemTime::now() - secs(3.8));
        renewals.send_replace(SystemTime::now() - secs(3.5));
        let age = watchdog(duration, seen).await;
        let took = start.elapsed();
        assert!(age >= secs(4.0), "{age:?}");
        assert!(took >= secs(0.45) && took < secs(2.0), "{took:?}");
        // With the sender gone, the last renewal still counts.
        let (renewals, seen) = watch::channel(SystemTime::now() - secs(3.9));
        drop(renewals);
        assert!(watchdog(duration, seen).await >= secs(4.0));
    }

    #[test]
    fn the_renewal_is_seen_before_the_deadline() {
        // The crate renews at duration − grace; the watchdog sees it at the latest one read
        // interval plus one read timeout later, which must be before duration − margin.
        for seconds in [MIN_LEASE_SECONDS, 6, 7, 15, 30, 137] {
            let duration = Duration::from_secs(seconds);
            let renewal = Duration::from_secs(seconds - grace(seconds));
            let seen = renewal + poll_interval(duration) + request_timeout(duration);
            assert!(
                seen < duration - margin(duration),
                "{seconds} s: renewal seen at {seen:?}"
            );
            assert!(grace(seconds) < seconds);
        }
    }
}
