//! Queries across objects of the informer stores: which objects a ReportBackend wakes, and
//! which backend ids other objects already hold.
//!
//! These scan a whole store; only the ReportGenerator controller still uses them. The
//! [`Index`](super::index::Index) answers the same questions (`generators_of_backend`,
//! `ids_taken_by_generators`) without a scan: this module goes once the generator moved over.

use std::collections::HashSet;

use kube::runtime::reflector::{ObjectRef, Store};

use super::context::Context;
use crate::api::ReportBackend;

/// The objects in `store` that use ReportBackend `rb`, to wake when it changes (for example
/// when it becomes Ready). `uses` gives an object's backend name and whether it still cares.
pub fn users_of_backend<K>(store: &Store<K>, rb: &ReportBackend, uses: impl Fn(&K) -> (&String, bool)) -> Vec<ObjectRef<K>>
where
    K: kube::Resource<DynamicType = ()> + Clone + 'static,
{
    let ns = rb.metadata.namespace.as_deref();
    let name = rb.metadata.name.as_deref().unwrap_or_default();
    store
        .state()
        .into_iter()
        .filter(|obj| {
            let (backend, cares) = uses(obj);
            obj.meta().namespace.as_deref() == ns && backend == name && cares
        })
        .map(|obj| ObjectRef::from_obj(&*obj))
        .collect()
}

/// The backend ids that objects in `store` other than `me` already hold on the same API as
/// `rb` (same type and URL, whichever ReportBackend names it). `find` must not adopt them:
/// two requests that look the same would end up sharing one report. `holds` gives an
/// object's backend name and the id it holds.
pub fn ids_taken<K>(
    ctx: &Context,
    store: &Store<K>,
    me: &K,
    rb: &ReportBackend,
    holds: impl Fn(&K) -> (&str, Option<&str>),
) -> HashSet<String>
where
    K: kube::Resource<DynamicType = ()> + Clone + 'static,
{
    let same_api = |namespace: Option<&str>, backend: &str| {
        let Some(namespace) = namespace else { return false };
        ctx.backends
            .get(&ObjectRef::new(backend).within(namespace))
            .is_some_and(|b| b.spec.type_ == rb.spec.type_ && b.spec.url == rb.spec.url)
    };
    store
        .state()
        .into_iter()
        .filter(|obj| obj.meta().uid != me.meta().uid)
        .filter_map(|obj| {
            let (backend, id) = holds(&obj);
            let id = id?.to_string();
            same_api(obj.meta().namespace.as_deref(), backend).then_some(id)
        })
        .collect()
}
