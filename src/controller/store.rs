//! ReportStore: read its credentials, list under its prefix, report Ready with a reason a
//! person can act on. Probes again when the spec or its credentials Secret changes, every
//! minute while Ready (so that a store that went down shows on the store itself, not only on
//! reports), and with a growing wait while not Ready.
//!
//! Each store keeps one client ([`StoreClients`]) for as long as what it is built from (the
//! spec and the credentials Secret's resourceVersion) stays the same: probes and copies reuse
//! it, and a broken store is probed 20 s after its first failure, then 40 s, 80 s, … up to
//! 10 minutes. 10,000 broken stores aimed at one host then cost about 17 probes a second,
//! where a probe every 20 s with a new client each time cost 500.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::api::Api;
use kube::core::PartialObjectMeta;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::EventType;
use kube::runtime::reflector::{ObjectRef, Store as Cache};
use tracing::info;

use super::SecretEvents;
use super::context::Context;
use super::error::Error;
use super::guard::{self, error_policy};
use super::outcome::{Outcome, conclude};
use super::registry::{Unusable, read_secret};
use crate::api::reasons::{BackendReady, EventReason, StoreReady};
use crate::api::{CONDITION_READY, ReportStore, ReportStoreStatus, find_condition};
use crate::backend::ClientOptions;
use crate::delivery::{Store, StoreError};

/// How often a Ready store is probed again.
const REPROBE_READY: Duration = Duration::from_secs(60);
/// The wait after a store's first failed probe; doubled for each further failure in a row.
const REPROBE_NOT_READY: Duration = Duration::from_secs(20);
/// The longest wait between two probes of a store that is not Ready.
const REPROBE_NOT_READY_MAX: Duration = Duration::from_secs(600);
/// The longest a probe may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(30);
/// How often the clients of deleted stores are forgotten.
const SWEEP_EVERY: Duration = Duration::from_secs(60);

pub async fn controller(
    ctl: Controller<ReportStore>,
    secrets: SecretEvents,
    ctx: Arc<Context>,
    concurrency: u16,
) {
    let index = ctx.index.clone();
    ctl.with_config(kube::runtime::controller::Config::default().concurrency(concurrency))
        // A credentials change wakes the stores that read that Secret.
        .watches_shared_stream(secrets, move |secret| {
            let readers = index.stores_reading(&secret.namespace().unwrap_or_default(), &secret.name_any());
            readers
                .iter()
                .map(|rs| ObjectRef::from_obj(&**rs))
                .collect::<Vec<_>>()
        })
        .shutdown_on_signal()
        .run(reconcile, error_policy, ctx)
        .for_each(|_| async {})
        .await;
}

async fn reconcile(rs: Arc<ReportStore>, ctx: Arc<Context>) -> Result<Action, Error> {
    guard::reconcile(rs.as_ref(), &ctx, reconcile_inner(&rs, &ctx)).await
}

async fn reconcile_inner(rs: &ReportStore, ctx: &Context) -> Result<Action, Error> {
    let namespace = rs
        .namespace()
        .ok_or_else(|| Error::Internal("ReportStore without namespace".into()))?;
    let clients = &ctx.store_clients;
    clients.forget_deleted(&ctx.stores);
    let key = ObjectRef::from_obj(rs);
    let fingerprint = fingerprint(&ctx.secrets, rs);
    // Woken before the store is due (by its own status write, say): nothing has changed.
    if let Some(wait) = clients.wait(&key, &fingerprint, Instant::now()) {
        return Ok(Action::requeue(wait));
    }
    let probe = async {
        let store = clients.client(ctx, &namespace, rs).await?;
        tokio::time::timeout(PROBE_TIMEOUT, store.probe())
            .await
            .unwrap_or_else(|_| {
                Err(StoreError::Unreachable(format!(
                    "the store did not answer within {} s",
                    PROBE_TIMEOUT.as_secs()
                )))
            })
    };
    let probed = probe.await;
    let next = clients.probed(&key, &fingerprint, probed.is_ok(), Instant::now());
    let old = rs.status.clone().unwrap_or_default();
    let previous = find_condition(&old.conditions, CONDITION_READY);
    let outcome = match probed {
        Ok(()) => {
            let message = format!("bucket {} answers and accepts the credentials", rs.spec.url);
            Outcome::ready(StoreReady::Reachable, message.clone())
                .requeue(next)
                .noting(EventType::Normal, EventReason::Ready, message)
        }
        Err(e) => Outcome::waiting(e.reason(), e.to_string(), next).warned(),
    }
    .once_per_reason(previous.map(|c| c.reason.as_str()));
    if let Some(cond) = outcome.ready.as_ref().filter(|_| outcome.event.is_some()) {
        info!(store = %rs.name_any(), namespace = %namespace, ready = cond.status, reason = %cond.reason, "store checked");
    }
    let status = ReportStoreStatus {
        observed_generation: rs.metadata.generation,
        ..old.clone()
    };
    conclude(ctx, rs, rs.status.as_ref(), status, outcome, Utc::now()).await
}

/// The client of `rs` (see [`StoreClients::client`]), for copies and re-mints.
pub async fn open_store(ctx: &Context, namespace: &str, rs: &ReportStore) -> Result<Arc<Store>, StoreError> {
    ctx.store_clients.client(ctx, namespace, rs).await
}

/// What a store's client is built from: the object (uid: a store deleted and made again
/// under its name is another), its spec (generation) and its credentials Secret
/// (resourceVersion, from the Secret metadata cache).
fn fingerprint(secrets: &Cache<PartialObjectMeta<Secret>>, rs: &ReportStore) -> String {
    let secret =
        ObjectRef::new(&rs.spec.credentials_secret_ref.name).within(&rs.namespace().unwrap_or_default());
    let rv = secrets
        .get(&secret)
        .and_then(|s| s.metadata.resource_version.clone())
        .unwrap_or_default();
    format!(
        "{}/{}/{rv}",
        rs.metadata.uid.as_deref().unwrap_or_default(),
        rs.metadata.generation.unwrap_or_default()
    )
}

/// The client and the probe schedule of every ReportStore.
#[derive(Default)]
pub struct StoreClients {
    entries: Mutex<HashMap<ObjectRef<ReportStore>, Entry>>,
    swept: Mutex<Option<Instant>>,
}

/// One store's client and schedule, for one fingerprint: a new one starts afresh.
#[derive(Default)]
struct Entry {
    fingerprint: String,
    client: Option<Arc<Store>>,
    /// Probes in a row that failed.
    failures: u32,
    /// Not probed again before this (unless the fingerprint changes).
    next_probe: Option<Instant>,
}

impl StoreClients {
    /// The client of `rs`, built (with its credentials read live) only when there is none
    /// for its current fingerprint.
    async fn client(
        &self,
        ctx: &Context,
        namespace: &str,
        rs: &ReportStore,
    ) -> Result<Arc<Store>, StoreError> {
        let key = ObjectRef::from_obj(rs);
        let fingerprint = fingerprint(&ctx.secrets, rs);
        if let Some(client) = lock(&self.entries)
            .get(&key)
            .filter(|e| e.fingerprint == fingerprint)
            .and_then(|e| e.client.clone())
        {
            return Ok(client);
        }
        let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), namespace);
        let data = read_secret(&secrets, &rs.spec.credentials_secret_ref.name)
            .await
            .map_err(|n| match n.reason {
                Unusable::Broken(BackendReady::CredentialsMissing) => {
                    StoreError::CredentialsMissing(n.message)
                }
                _ => StoreError::Unreachable(n.message),
            })?;
        let options = ClientOptions {
            policy: ctx.outbound.clone(),
            ..Default::default()
        };
        let client = Arc::new(Store::open(&rs.spec, &data, &options)?);
        let mut entries = lock(&self.entries);
        let entry = entries.entry(key).or_default();
        if entry.fingerprint != fingerprint {
            *entry = Entry {
                fingerprint,
                ..Entry::default()
            };
        }
        entry.client = Some(client.clone());
        Ok(client)
    }

    /// How long until the store under `key` is due to be probed, or `None` if it is now.
    fn wait(&self, key: &ObjectRef<ReportStore>, fingerprint: &str, now: Instant) -> Option<Duration> {
        let entries = lock(&self.entries);
        let next = entries
            .get(key)
            .filter(|e| e.fingerprint == fingerprint)
            .and_then(|e| e.next_probe);
        not_due(next, now)
    }

    /// Records a probe of the store under `key` and returns the wait until its next one.
    fn probed(&self, key: &ObjectRef<ReportStore>, fingerprint: &str, ok: bool, now: Instant) -> Duration {
        let mut entries = lock(&self.entries);
        let entry = entries.entry(key.clone()).or_default();
        if entry.fingerprint != fingerprint {
            *entry = Entry {
                fingerprint: fingerprint.to_string(),
                ..Entry::default()
            };
        }
        entry.failures = if ok { 0 } else { entry.failures.saturating_add(1) };
        let wait = reprobe_after(entry.failures, 0.8 + 0.4 * fastrand::f64());
        entry.next_probe = now.checked_add(wait);
        wait
    }

    /// Forgets the stores that no longer exist, at most every [`SWEEP_EVERY`].
    fn forget_deleted(&self, stores: &Cache<ReportStore>) {
        {
            let mut swept = lock(&self.swept);
            if swept.is_some_and(|at| at.elapsed() < SWEEP_EVERY) {
                return;
            }
            *swept = Some(Instant::now());
        }
        lock(&self.entries).retain(|key, _| stores.get(key).is_some());
    }
}

/// The wait until `next_probe`, or `None` when there is none or it has come.
fn not_due(next_probe: Option<Instant>, now: Instant) -> Option<Duration> {
    next_probe
        .and_then(|next| next.checked_duration_since(now))
        .filter(|wait| !wait.is_zero())
}

/// The wait before the next probe of a store whose last `failures` probes in a row failed (0:
/// it is Ready), times `jitter`, so that stores that failed together do not retry together.
fn reprobe_after(failures: u32, jitter: f64) -> Duration {
    if failures == 0 {
        return REPROBE_READY.mul_f64(jitter);
    }
    let doublings = (failures - 1).min(16);
    REPROBE_NOT_READY
        .saturating_mul(1 << doublings)
        .mul_f64(jitter)
        .min(REPROBE_NOT_READY_MAX)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_store_left_broken_is_probed_less_and_less_often() {
        let table = [
            (0, 60),
            (1, 20),
            (2, 40),
            (3, 80),
            (5, 320),
            (6, 600),
            (u32::MAX, 600),
        ];
        for (failures, want_s) in table {
            assert_eq!(
                reprobe_after(failures, 1.0),
                Duration::from_secs(want_s),
                "after {failures} failures"
            );
        }
        assert!(
            reprobe_after(2, 0.8) < reprobe_after(2, 1.2),
            "jitter spreads probes"
        );
        assert_eq!(reprobe_after(9, 1.2), REPROBE_NOT_READY_MAX, "never past the cap");
    }

    #[test]
    fn a_store_is_probed_when_due_or_changed() {
        let clients = StoreClients::default();
        let key = ObjectRef::new("s").within("ns");
        let start = Instant::now();
        assert_eq!(clients.wait(&key, "uid/1/100", start), None, "never probed: now");
        let first = clients.probed(&key, "uid/1/100", false, start);
        assert_eq!(clients.wait(&key, "uid/1/100", start), Some(first), "not due");
        assert!(
            first >= Duration::from_secs(16) && first <= Duration::from_secs(24),
            "{first:?}"
        );
        // The second failure in a row waits about twice as long.
        let second = clients.probed(&key, "uid/1/100", false, start);
        assert!(second >= Duration::from_secs(32), "{second:?}");
        // Due once the wait has passed.
        assert_eq!(clients.wait(&key, "uid/1/100", start + second), None);
        // A change of spec or credentials: now, and the backoff starts again.
        assert_eq!(clients.wait(&key, "uid/2/100", start), None);
        assert_eq!(clients.wait(&key, "uid/1/101", start), None);
        let after_change = clients.probed(&key, "uid/1/101", false, start);
        assert!(after_change <= Duration::from_secs(24), "{after_change:?}");
        // Ready: a minute.
        let ready = clients.probed(&key, "uid/1/101", true, start);
        assert!(ready >= Duration::from_secs(48), "{ready:?}");
    }
}
