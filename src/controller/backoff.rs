//! The retry delay of a failing reconcile: exponential per object, so that one object the API
//! server keeps refusing costs a request every few minutes, not every few seconds.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use kube::Resource;

/// First retry after a failed reconcile; doubled for each further failure in a row.
const FIRST_RETRY: Duration = Duration::from_secs(2);
/// The longest wait between two tries of a failing object.
const MAX_RETRY: Duration = Duration::from_secs(300);
/// A failure streak older than this is forgotten: the object has stopped failing (or is gone)
/// without a success being seen, for example because it was deleted.
const FORGET_AFTER: Duration = Duration::from_secs(3600);

/// Failures in a row per object (by uid), for `guard::error_policy`.
#[derive(Default)]
pub struct Backoff(Mutex<HashMap<String, (u32, Instant)>>);

impl Backoff {
    /// Records one more failure of `obj` and returns how long to wait before the next try.
    pub fn failed<K: Resource>(&self, obj: &K) -> Duration {
        let key = key(obj);
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        map.retain(|_, (_, at)| now.duration_since(*at) < FORGET_AFTER);
        let entry = map.entry(key).or_insert((0, now));
        entry.0 = entry.0.saturating_add(1);
        entry.1 = now;
        retry_delay(entry.0, 0.8 + 0.4 * fastrand::f64())
    }

    pub fn succeeded<K: Resource>(&self, obj: &K) {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if !map.is_empty() {
            map.remove(&key(obj));
        }
    }
}

fn key<K: Resource>(obj: &K) -> String {
    let meta = obj.meta();
    meta.uid
        .clone()
        .unwrap_or_else(|| format!("{:?}/{:?}", meta.namespace, meta.name))
}

/// The wait after the `failures`-th failure in a row, times `jitter` (so that many objects
/// failing together do not retry together), within [`FIRST_RETRY`]..=[`MAX_RETRY`].
fn retry_delay(failures: u32, jitter: f64) -> Duration {
    let doublings = failures.saturating_sub(1).min(16);
    FIRST_RETRY
        .saturating_mul(1 << doublings)
        .min(MAX_RETRY)
        .mul_f64(jitter)
        .clamp(FIRST_RETRY, MAX_RETRY)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_double_per_failure_and_stay_capped() {
        let table = [
            (1, FIRST_RETRY),
            (2, Duration::from_secs(4)),
            (3, Duration::from_secs(8)),
            (8, Duration::from_secs(256)),
            (9, MAX_RETRY),
            (u32::MAX, MAX_RETRY),
        ];
        for (failures, want) in table {
            assert_eq!(retry_delay(failures, 1.0), want, "after {failures} failures");
        }
        assert!(
            retry_delay(3, 0.8) < retry_delay(3, 1.2),
            "jitter spreads retries"
        );
        assert_eq!(retry_delay(u32::MAX, 1.2), MAX_RETRY);
    }

    fn config_map(uid: &str) -> k8s_openapi::api::core::v1::ConfigMap {
        let mut object = k8s_openapi::api::core::v1::ConfigMap::default();
        object.metadata.uid = Some(uid.into());
        object
    }

    #[test]
    fn backoff_is_per_object_and_a_success_resets_it() {
        let backoff = Backoff::default();
        let (a, b) = (config_map("a"), config_map("b"));
        let first = backoff.failed(&a);
        let second = backoff.failed(&a);
        assert!(second > first, "{first:?} then {second:?}");
        assert!(
            backoff.failed(&b) <= FIRST_RETRY.mul_f64(1.2),
            "another object starts afresh"
        );
        backoff.succeeded(&a);
        assert!(
            backoff.failed(&a) <= FIRST_RETRY.mul_f64(1.2),
            "a success forgets the streak"
        );
    }
}
