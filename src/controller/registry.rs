//! Backend clients, one per ReportBackend, rebuilt when its spec or its Secrets change, with
//! one rate limiter per ReportBackend that outlives those rebuilds.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Client, ResourceExt};

use crate::api::ReportBackend;
use crate::api::reasons::{BackendReady, GeneratorReady, Reason};
use crate::backend::{self, BackendError, Limiter, LimiterConfig, OutboundPolicy, ReportingBackend};

/// Why a backend cannot be used, as a condition reason and a message a person can act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotReady {
    pub reason: Unusable,
    pub message: String,
}

/// The reason a backend cannot be used: as the object that uses it says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unusable {
    /// No ReportBackend of that name.
    NotFound,
    /// The ReportBackend is not Ready (for its current spec).
    NotReady,
    /// Its client cannot be built, or its API refused a call: the backend's own reason.
    Broken(BackendReady),
}

impl Reason for Unusable {
    fn as_str(self) -> &'static str {
        match self {
            Unusable::NotFound => GeneratorReady::BackendNotFound.as_str(),
            Unusable::NotReady => GeneratorReady::BackendNotReady.as_str(),
            Unusable::Broken(r) => r.as_str(),
        }
    }
}

impl NotReady {
    pub fn new(reason: Unusable, message: impl Into<String>) -> Self {
        NotReady {
            reason,
            message: message.into(),
        }
    }

    /// The backend's own reason, as its probe or a call gave it.
    pub fn broken(reason: BackendReady, message: impl Into<String>) -> Self {
        NotReady::new(Unusable::Broken(reason), message)
    }
}

impl From<BackendError> for NotReady {
    fn from(e: BackendError) -> Self {
        NotReady::broken(e.ready_reason(), e.to_string())
    }
}

struct Entry {
    /// What the client was built from: generation and the Secrets' resourceVersions.
    fingerprint: String,
    client: Arc<dyn ReportingBackend>,
    limiter: Arc<Limiter>,
}

/// The backend clients of all ReportBackends.
pub struct BackendRegistry {
    /// Reads the credentials and CA Secrets.
    client: Client,
    /// Metadata of every Secret in scope: a changed resourceVersion rebuilds the client.
    secrets: Store<PartialObjectMeta<Secret>>,
    /// Where backend calls may go (the `--outbound-*` flags).
    outbound: Arc<OutboundPolicy>,
    entries: Mutex<HashMap<ObjectRef<ReportBackend>, Entry>>,
    /// Limiters of backends taken over from another replica before their client is built.
    handed_over: Mutex<HashMap<ObjectRef<ReportBackend>, Arc<Limiter>>>,
    /// When each backend was last probed, and for which fingerprint.
    probes: Mutex<HashMap<ObjectRef<ReportBackend>, (String, std::time::Instant)>>,
}

/// A probe younger than this, for the same spec and Secrets, is not repeated: the backend's
/// own status write comes back through the watch and would otherwise probe it twice.
const PROBE_FRESH: std::time::Duration = std::time::Duration::from_secs(10);

impl BackendRegistry {
    pub fn new(
        client: Client,
        secrets: Store<PartialObjectMeta<Secret>>,
        outbound: Arc<OutboundPolicy>,
    ) -> Self {
        BackendRegistry {
            client,
            secrets,
            outbound,
            entries: Mutex::default(),
            handed_over: Mutex::default(),
            probes: Mutex::default(),
        }
    }

    /// This replica takes `backends` over from another one, whose calls to them may have
    /// been answered until `until` (wall clock, as its Lease says): each budget starts as if
    /// that replica had spent it then ([`Limiter::assume_spent`]).
    pub fn hand_over<'a>(&self, backends: impl IntoIterator<Item = &'a ReportBackend>, until: SystemTime) {
        let ago = SystemTime::now().duration_since(until).unwrap_or_default();
        let at = tokio::time::Instant::now()
            .checked_sub(ago)
            .unwrap_or_else(tokio::time::Instant::now);
        let entries = lock(&self.entries);
        let mut handed_over = lock(&self.handed_over);
        for rb in backends {
            let key = ObjectRef::from_obj(rb);
            let limiter = match entries.get(&key) {
                Some(e) => e.limiter.clone(),
                None => handed_over
                    .entry(key)
                    .or_insert_with(|| Limiter::for_backend(&rb.spec))
                    .clone(),
            };
            limiter.assume_spent(at);
        }
    }

    /// The client of `rb`, built afresh if its spec or Secrets changed since the last call.
    pub async fn client(&self, rb: &ReportBackend) -> Result<Arc<dyn ReportingBackend>, NotReady> {
        let key = ObjectRef::from_obj(rb);
        let namespace = rb.namespace().unwrap_or_default();
        let fingerprint = self.fingerprint(rb, &namespace);
        let old_limiter = {
            let entries = lock(&self.entries);
            match entries.get(&key) {
                Some(e) if e.fingerprint == fingerprint => return Ok(e.client.clone()),
                Some(e) => Some(e.limiter.clone()),
                None => lock(&self.handed_over).get(&key).cloned(),
            }
        };
        let secrets: Api<Secret> = Api::namespaced(self.client.clone(), &namespace);
        let cred_name = &rb.spec.credentials_secret_ref.name;
        let credentials = read_secret(&secrets, cred_name).await?;
        let ca = match rb.spec.tls.as_ref().and_then(|t| t.ca_secret_ref.as_ref()) {
            Some(sel) => {
                let data = read_secret(&secrets, &sel.name).await?;
                let pem = data.get(&sel.key).cloned().ok_or_else(|| {
                    NotReady::broken(
                        BackendReady::InvalidSpec,
                        format!("CA Secret {:?} has no key {:?}", sel.name, sel.key),
                    )
                })?;
                Some(pem)
            }
            None => None,
        };
        // Budgets and in-flight counts survive a rebuild unless the limits themselves changed.
        let limiter = match old_limiter {
            Some(l) if *l.config() == LimiterConfig::for_backend(&rb.spec) => l,
            _ => Limiter::for_backend(&rb.spec),
        };
        let options = backend::ClientOptions {
            policy: self.outbound.clone(),
            ..Default::default()
        };
        let client =
            backend::connect_with_options(&rb.spec, &credentials, ca.as_deref(), limiter.clone(), &options)?;
        lock(&self.handed_over).remove(&key);
        lock(&self.entries).insert(
            key,
            Entry {
                fingerprint,
                client: client.clone(),
                limiter,
            },
        );
        Ok(client)
    }

    /// Puts `client` in as `rb`'s, as if built from its spec and Secrets now: the drivers'
    /// fast tests give each backend a fake.
    #[cfg(test)]
    pub fn insert(&self, rb: &ReportBackend, client: Arc<dyn ReportingBackend>) {
        let fingerprint = self.fingerprint(rb, &rb.namespace().unwrap_or_default());
        let entry = Entry {
            fingerprint,
            client,
            limiter: Limiter::for_backend(&rb.spec),
        };
        lock(&self.entries).insert(ObjectRef::from_obj(rb), entry);
    }

    /// Whether `rb` was probed within [`PROBE_FRESH`] with its current spec and Secrets.
    pub fn probed_recently(&self, rb: &ReportBackend) -> bool {
        let fp = self.fingerprint(rb, &rb.namespace().unwrap_or_default());
        lock(&self.probes)
            .get(&ObjectRef::from_obj(rb))
            .is_some_and(|(f, at)| *f == fp && at.elapsed() < PROBE_FRESH)
    }

    /// Records a probe of `rb` with its current spec and Secrets.
    pub fn probed(&self, rb: &ReportBackend) {
        let fp = self.fingerprint(rb, &rb.namespace().unwrap_or_default());
        lock(&self.probes).insert(ObjectRef::from_obj(rb), (fp, std::time::Instant::now()));
    }

    /// The limiter of a backend whose client was built, for scheduling decisions.
    pub fn limiter(&self, rb: &ReportBackend) -> Option<Arc<Limiter>> {
        lock(&self.entries)
            .get(&ObjectRef::from_obj(rb))
            .map(|e| e.limiter.clone())
    }

    /// Forgets the clients and probes of ReportBackends that no longer exist.
    pub fn forget_deleted(&self, backends: &Store<ReportBackend>) {
        lock(&self.entries).retain(|key, _| backends.get(key).is_some());
        lock(&self.handed_over).retain(|key, _| backends.get(key).is_some());
        lock(&self.probes).retain(|key, _| backends.get(key).is_some());
    }

    /// What `rb`'s client is built from: its generation and its Secrets' resourceVersions.
    fn fingerprint(&self, rb: &ReportBackend, namespace: &str) -> String {
        let rv = |name: &str| {
            self.secrets
                .get(&ObjectRef::new(name).within(namespace))
                .and_then(|s| s.metadata.resource_version.clone())
                .unwrap_or_default()
        };
        let ca = rb
            .spec
            .tls
            .as_ref()
            .and_then(|t| t.ca_secret_ref.as_ref())
            .map(|s| rv(&s.name))
            .unwrap_or_default();
        format!(
            "{}/{}/{}",
            rb.metadata.generation.unwrap_or_default(),
            rv(&rb.spec.credentials_secret_ref.name),
            ca
        )
    }
}

pub(super) async fn read_secret(
    api: &Api<Secret>,
    name: &str,
) -> Result<BTreeMap<String, Vec<u8>>, NotReady> {
    match api.get_opt(name).await {
        Ok(Some(secret)) => {
            let mut data: BTreeMap<String, Vec<u8>> = secret
                .data
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k, v.0))
                .collect();
            // stringData is write-only in the API, but a client may still send it.
            for (k, v) in secret.string_data.unwrap_or_default() {
                data.entry(k).or_insert_with(|| v.into_bytes());
            }
            Ok(data)
        }
        Ok(None) => Err(NotReady::broken(
            BackendReady::CredentialsMissing,
            format!("Secret {name:?} does not exist"),
        )),
        Err(e) => Err(NotReady::broken(
            BackendReady::Unreachable,
            format!("reading Secret {name:?}: {e}"),
        )),
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
