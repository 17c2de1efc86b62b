//! One index over the informer stores, for the questions that span objects: which
//! ReportFiles a generator owns, which reports and generators use a ReportBackend, which
//! reports are in flight on it, which backends and stores read a Secret, which backends share
//! an API.
//!
//! A reconcile that scanned every store for these costs time in proportion to all objects in
//! scope, on every pass: quadratic as reports grow. The index answers in time proportional to
//! the answer.
//!
//! It holds object keys only ([`ObjectRef`]s and the few strings they are filed under); the
//! objects come from the stores. It hears each watch event just *before* its store applies it
//! (see [`super::run`]): the store tells the controllers after it applied an event, so a
//! reconcile woken by a new object finds it here too. In the instant between the two, an
//! object read from the store may not match the key it is filed under yet: each lookup checks
//! the objects it returns against the key, so an answer never holds an object that does not
//! belong in it.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher::Event;
use kube::{Resource, ResourceExt};

use super::metrics::ReportsByStatus;
use crate::api::{BackendType, FileState, ReportBackend, ReportFile, ReportGenerator, ReportStore};

/// What an object is filed under.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Key {
    /// The UID of a ReportFile's controller owner (its generator).
    Owner(String),
    /// The namespace and name of the ReportBackend a ReportFile or ReportGenerator names.
    Backend(String, String),
    /// The same, for a ReportFile that is IN_PROGRESS: a report the backend is working on.
    InFlight(String, String),
    /// A ReportFile's status as the reports gauge counts it (no status yet: IN_PROGRESS).
    Status(FileState),
    /// A ReportBackend's type and URL: the API it talks to.
    Api(BackendType, String),
    /// The namespace and name of a Secret a ReportBackend (credentials or CA) or a
    /// ReportStore (credentials) reads.
    Secret(String, String),
}

/// The keys of each object and the objects under each key.
struct Table<K: Resource<DynamicType = ()>> {
    keys_of: HashMap<Arc<ObjectRef<K>>, Vec<Key>>,
    under: HashMap<Key, HashSet<Arc<ObjectRef<K>>>>,
}

impl<K: Resource<DynamicType = ()>> Default for Table<K> {
    fn default() -> Self {
        Table {
            keys_of: HashMap::new(),
            under: HashMap::new(),
        }
    }
}

impl<K: Resource<DynamicType = ()>> Table<K> {
    /// Files `obj` under `keys` only, whatever it was filed under before.
    fn insert(&mut self, obj: &K, keys: Vec<Key>) {
        let Some(r) = object_ref(obj) else { return };
        if self.keys_of.get(&r) == Some(&keys) {
            return;
        }
        self.remove(&r);
        let r = Arc::new(r);
        for key in &keys {
            self.under.entry(key.clone()).or_default().insert(r.clone());
        }
        self.keys_of.insert(r, keys);
    }

    fn remove(&mut self, r: &ObjectRef<K>) {
        let Some((r, keys)) = self.keys_of.remove_entry(r) else {
            return;
        };
        for key in keys {
            if let Some(set) = self.under.get_mut(&key) {
                set.remove(&r);
                if set.is_empty() {
                    self.under.remove(&key);
                }
            }
        }
    }

    fn under(&self, key: &Key) -> Vec<Arc<ObjectRef<K>>> {
        self.under
            .get(key)
            .map(|set| set.iter().cloned().collect())
            .unwrap_or_default()
    }

    fn count(&self, key: &Key) -> usize {
        self.under.get(key).map_or(0, HashSet::len)
    }
}

/// A [`Table`] kept as its store keeps its objects: a re-list is gathered aside and replaces
/// the table when it is complete, so objects gone meanwhile leave the index.
struct Indexed<K: Resource<DynamicType = ()>> {
    live: Table<K>,
    relist: Option<Table<K>>,
    keys: fn(&K) -> Vec<Key>,
}

impl<K: Resource<DynamicType = ()>> Indexed<K> {
    fn new(keys: fn(&K) -> Vec<Key>) -> Self {
        Indexed {
            live: Table::default(),
            relist: None,
            keys,
        }
    }

    fn apply(&mut self, event: &Event<K>) {
        match event {
            Event::Apply(obj) => self.live.insert(obj, (self.keys)(obj)),
            Event::Delete(obj) => {
                if let Some(r) = object_ref(obj) {
                    self.live.remove(&r);
                }
            }
            Event::Init => self.relist = Some(Table::default()),
            Event::InitApply(obj) => self.relist.get_or_insert_default().insert(obj, (self.keys)(obj)),
            Event::InitDone => self.live = self.relist.take().unwrap_or_default(),
        }
    }
}

/// The index (see the module documentation).
pub struct Index {
    pub(super) files: Store<ReportFile>,
    pub(super) generators: Store<ReportGenerator>,
    pub(super) backends: Store<ReportBackend>,
    pub(super) stores: Store<ReportStore>,
    file_keys: RwLock<Indexed<ReportFile>>,
    generator_keys: RwLock<Indexed<ReportGenerator>>,
    backend_keys: RwLock<Indexed<ReportBackend>>,
    store_keys: RwLock<Indexed<ReportStore>>,
}

impl Index {
    /// An empty index over these stores; the watches that fill them feed it with
    /// [`Index::apply_file`], [`Index::apply_generator`], [`Index::apply_backend`] and
    /// [`Index::apply_store`].
    pub fn new(
        files: Store<ReportFile>,
        generators: Store<ReportGenerator>,
        backends: Store<ReportBackend>,
        stores: Store<ReportStore>,
    ) -> Self {
        Index {
            files,
            generators,
            backends,
            stores,
            file_keys: RwLock::new(Indexed::new(file_keys)),
            generator_keys: RwLock::new(Indexed::new(generator_keys)),
            backend_keys: RwLock::new(Indexed::new(backend_keys)),
            store_keys: RwLock::new(Indexed::new(store_keys)),
        }
    }

    pub fn apply_file(&self, event: &Event<ReportFile>) {
        write(&self.file_keys).apply(event);
    }

    pub fn apply_generator(&self, event: &Event<ReportGenerator>) {
        write(&self.generator_keys).apply(event);
    }

    pub fn apply_backend(&self, event: &Event<ReportBackend>) {
        write(&self.backend_keys).apply(event);
    }

    pub fn apply_store(&self, event: &Event<ReportStore>) {
        write(&self.store_keys).apply(event);
    }

    /// The ReportFiles whose controller owner reference has this UID.
    pub fn files_of_owner(&self, uid: &str) -> Vec<Arc<ReportFile>> {
        lookup(&self.file_keys, &self.files, &Key::Owner(uid.into()))
    }

    /// The ReportFiles that name ReportBackend `backend` in `namespace`.
    pub fn files_of_backend(&self, namespace: &str, backend: &str) -> Vec<Arc<ReportFile>> {
        lookup(
            &self.file_keys,
            &self.files,
            &Key::Backend(namespace.into(), backend.into()),
        )
    }

    /// The ReportFiles IN_PROGRESS on ReportBackend `backend` in `namespace`.
    pub fn files_in_flight(&self, namespace: &str, backend: &str) -> Vec<Arc<ReportFile>> {
        lookup(
            &self.file_keys,
            &self.files,
            &Key::InFlight(namespace.into(), backend.into()),
        )
    }

    /// The ReportGenerators that name ReportBackend `backend` in `namespace`.
    pub fn generators_of_backend(&self, namespace: &str, backend: &str) -> Vec<Arc<ReportGenerator>> {
        lookup(
            &self.generator_keys,
            &self.generators,
            &Key::Backend(namespace.into(), backend.into()),
        )
    }

    /// The ReportBackends in `namespace` that read Secret `secret` (credentials or CA).
    pub fn backends_reading(&self, namespace: &str, secret: &str) -> Vec<Arc<ReportBackend>> {
        lookup(
            &self.backend_keys,
            &self.backends,
            &Key::Secret(namespace.into(), secret.into()),
        )
    }

    /// The ReportStores in `namespace` whose credentials are Secret `secret`.
    pub fn stores_reading(&self, namespace: &str, secret: &str) -> Vec<Arc<ReportStore>> {
        lookup(
            &self.store_keys,
            &self.stores,
            &Key::Secret(namespace.into(), secret.into()),
        )
    }

    /// The ReportBackends, in any namespace, of the same type and URL as `rb` (`rb` too):
    /// one API, whose report ids they all share.
    fn backends_on_api_of(&self, rb: &ReportBackend) -> Vec<Arc<ReportBackend>> {
        lookup(
            &self.backend_keys,
            &self.backends,
            &Key::Api(rb.spec.type_, rb.spec.url.clone()),
        )
    }

    /// The backend ids that ReportFiles other than `me_uid` hold on the API of `rb` (same
    /// type and URL, whichever ReportBackend in whichever namespace names it): the id in
    /// status, else the one in spec. `find` must not adopt them: two requests that look the
    /// same would end up sharing one report.
    pub fn ids_taken_by_files(&self, rb: &ReportBackend, me_uid: Option<&str>) -> HashSet<String> {
        self.others_on_api(rb, me_uid, |b| self.files_of_backend(b.0, b.1))
            .iter()
            .filter_map(|rf| file_holds(rf))
            .collect()
    }

    /// The ReportFiles other than `me_uid` that hold report `id` on the API of `rb`, as
    /// [`Index::ids_taken_by_files`] counts them: a report one of them holds is not another's
    /// to remove.
    pub fn files_holding(&self, rb: &ReportBackend, me_uid: Option<&str>, id: &str) -> Vec<Arc<ReportFile>> {
        let mut holding = self.others_on_api(rb, me_uid, |b| self.files_of_backend(b.0, b.1));
        holding.retain(|rf| file_holds(rf).as_deref() == Some(id));
        holding
    }

    /// The same for ReportGenerators (RDE templates): the id in status, and the replaced
    /// templates not deleted yet (deleted by their generator soon: never to be adopted).
    pub fn ids_taken_by_generators(&self, rb: &ReportBackend, me_uid: Option<&str>) -> HashSet<String> {
        self.others_on_api(rb, me_uid, |b| self.generators_of_backend(b.0, b.1))
            .iter()
            .filter_map(|g| g.status.as_ref())
            .flat_map(|s| s.external_id.iter().chain(&s.retired_templates).cloned())
            .collect()
    }

    /// The objects other than `me_uid` that `users` gives for each ReportBackend on the API
    /// of `rb`: whose report ids are shared with `rb`'s.
    fn others_on_api<K: Resource>(
        &self,
        rb: &ReportBackend,
        me_uid: Option<&str>,
        users: impl Fn((&str, &str)) -> Vec<Arc<K>>,
    ) -> Vec<Arc<K>> {
        let mut others = Vec::new();
        for backend in self.backends_on_api_of(rb) {
            let (Some(namespace), Some(name)) = (
                backend.meta().namespace.as_deref(),
                backend.meta().name.as_deref(),
            ) else {
                continue;
            };
            others.extend(
                users((namespace, name))
                    .into_iter()
                    .filter(|o| o.meta().uid.as_deref() != me_uid),
            );
        }
        others
    }

    /// ReportFiles by status, as the reports gauge shows them.
    pub fn reports_by_status(&self) -> ReportsByStatus {
        let keys = read(&self.file_keys);
        let count = |state| i64::try_from(keys.live.count(&Key::Status(state))).unwrap_or(i64::MAX);
        ReportsByStatus {
            in_progress: count(FileState::InProgress),
            ready: count(FileState::Ready),
            failed: count(FileState::Failed),
        }
    }
}

/// The report id a ReportFile holds: the one in status, else the one in spec.
fn file_holds(rf: &ReportFile) -> Option<String> {
    rf.status
        .as_ref()
        .and_then(|s| s.external_id.clone())
        .or_else(|| rf.spec.external_id.clone())
}

fn file_keys(rf: &ReportFile) -> Vec<Key> {
    let namespace = rf.namespace().unwrap_or_default();
    let backend = &rf.spec.backend_ref.name;
    let state = rf.status.as_ref().and_then(|s| s.status);
    let mut keys = vec![
        Key::Backend(namespace.clone(), backend.clone()),
        Key::Status(state.unwrap_or(FileState::InProgress)),
    ];
    if let Some(owner) = rf.owner_references().iter().find(|o| o.controller == Some(true)) {
        keys.push(Key::Owner(owner.uid.clone()));
    }
    if state == Some(FileState::InProgress) {
        keys.push(Key::InFlight(namespace, backend.clone()));
    }
    keys
}

fn generator_keys(g: &ReportGenerator) -> Vec<Key> {
    vec![Key::Backend(
        g.namespace().unwrap_or_default(),
        g.spec.backend_ref.name.clone(),
    )]
}

fn backend_keys(rb: &ReportBackend) -> Vec<Key> {
    let namespace = rb.namespace().unwrap_or_default();
    let mut keys = vec![
        Key::Api(rb.spec.type_, rb.spec.url.clone()),
        Key::Secret(namespace.clone(), rb.spec.credentials_secret_ref.name.clone()),
    ];
    if let Some(ca) = rb.spec.tls.as_ref().and_then(|t| t.ca_secret_ref.as_ref()) {
        keys.push(Key::Secret(namespace, ca.name.clone()));
    }
    keys
}

fn store_keys(rs: &ReportStore) -> Vec<Key> {
    vec![Key::Secret(
        rs.namespace().unwrap_or_default(),
        rs.spec.credentials_secret_ref.name.clone(),
    )]
}

/// The objects of `store` filed under `key` that match it as the store holds them.
fn lookup<K>(index: &RwLock<Indexed<K>>, store: &Store<K>, key: &Key) -> Vec<Arc<K>>
where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    let (refs, keys) = {
        let index = read(index);
        (index.live.under(key), index.keys)
    };
    refs.iter()
        .filter_map(|r| store.get(r))
        .filter(|obj| keys(obj).contains(key))
        .collect()
}

/// The key of `obj` in its store: namespace and name.
fn object_ref<K: Resource<DynamicType = ()>>(obj: &K) -> Option<ObjectRef<K>> {
    let meta = obj.meta();
    let r = ObjectRef::new(meta.name.as_deref()?);
    Some(match meta.namespace.as_deref() {
        Some(namespace) => r.within(namespace),
        None => r,
    })
}

// The index is only written under these locks by code that does not panic (bar running out
// of memory): a poisoned lock holds a usable index.
fn read<T>(lock: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(|p| p.into_inner())
}

fn write<T>(lock: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
#[path = "index_tests.rs"]
mod tests;
