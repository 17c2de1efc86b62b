//! The cap on reports in progress per organization: the ids counted against it, the slot a
//! create reserves, and how `get`, `find` and the controller keep the count true.

use std::collections::HashMap;

use tokio::time::Instant;

use super::{Limiter, lock};
use crate::backend::error::BackendError;

#[derive(Debug, Default)]
pub(super) struct InFlight {
    /// organization → report id (or pending key) → when a pending reservation lapses.
    by_org: HashMap<String, HashMap<String, Option<Instant>>>,
    /// report id → organization.
    org_of: HashMap<String, String>,
}

impl InFlight {
    fn count(&mut self, org: &str, now: Instant) -> usize {
        let Some(slots) = self.by_org.get_mut(org) else {
            return 0;
        };
        let lapsed: Vec<String> = slots
            .iter()
            .filter(|(_, exp)| exp.is_some_and(|e| e <= now))
            .map(|(k, _)| k.clone())
            .collect();
        for id in lapsed {
            slots.remove(&id);
            self.org_of.remove(&id);
        }
        slots.len()
    }

    fn insert(&mut self, org: &str, id: &str, lapse: Option<Instant>) {
        if let Some(previous) = self.org_of.insert(id.to_string(), org.to_string())
            && previous != org
            && let Some(slots) = self.by_org.get_mut(&previous)
        {
            slots.remove(id);
        }
        self.by_org
            .entry(org.to_string())
            .or_default()
            .insert(id.to_string(), lapse);
    }

    fn remove(&mut self, id: &str) {
        if let Some(org) = self.org_of.remove(id)
            && let Some(slots) = self.by_org.get_mut(&org)
        {
            slots.remove(id);
            if slots.is_empty() {
                self.by_org.remove(&org);
            }
        }
    }
}

impl Limiter {
    /// Tells the limiter that `report_id` of `organization` is in progress on the backend (the
    /// controller calls this for every IN_PROGRESS report it knows of, e.g. after a restart).
    /// It counts until [`Limiter::release`] or until a `get` sees the report finished.
    pub fn note_in_flight(&self, organization: &str, report_id: &str) {
        lock(&self.in_flight).insert(organization, report_id, None);
    }

    /// The report is finished (or abandoned): it no longer counts against its organization.
    pub fn release(&self, report_id: &str) {
        lock(&self.in_flight).remove(report_id);
    }

    /// Reports counted as in progress for `organization`.
    pub fn in_flight(&self, organization: &str) -> usize {
        lock(&self.in_flight).count(organization, Instant::now())
    }

    /// Takes an in-flight slot for a create of request `key`, or fails with
    /// [`BackendError::InFlightLimit`] when the organization is at its cap. The slot is given
    /// back when the reservation is dropped, unless it was committed to a report id.
    pub(crate) fn reserve(&self, organization: &str, key: &str) -> Result<Reservation<'_>, BackendError> {
        let slot = pending_slot(key);
        if let Some(max) = self.config.max_in_flight {
            let mut in_flight = lock(&self.in_flight);
            let now = Instant::now();
            // A retried create of the same request reuses its own pending slot.
            in_flight.remove(&slot);
            if in_flight.count(organization, now) >= max as usize {
                return Err(BackendError::InFlightLimit {
                    organization: organization.to_string(),
                    max,
                    retry_after: self.config.in_flight_retry,
                });
            }
            in_flight.insert(organization, &slot, Some(now + self.config.pending_ttl));
        }
        Ok(Reservation {
            limiter: self,
            organization: organization.to_string(),
            slot,
            done: false,
        })
    }

    /// A report found by `find` after an ambiguous create: it takes over the create's
    /// pending slot (if any) and counts while it runs.
    pub(crate) fn adopt(&self, organization: &str, key: &str, report_id: Option<&str>) {
        let mut in_flight = lock(&self.in_flight);
        in_flight.remove(&pending_slot(key));
        if let Some(id) = report_id.filter(|_| self.config.max_in_flight.is_some()) {
            in_flight.insert(organization, id, None);
        }
    }
}

fn pending_slot(key: &str) -> String {
    format!("pending:{key}")
}

/// An in-flight slot taken for one create.
pub(crate) struct Reservation<'a> {
    limiter: &'a Limiter,
    organization: String,
    slot: String,
    done: bool,
}

impl Reservation<'_> {
    /// The create succeeded: the slot now belongs to `report_id` (only while it runs).
    pub(crate) fn commit(mut self, report_id: &str, running: bool) {
        self.done = true;
        let mut in_flight = lock(&self.limiter.in_flight);
        in_flight.remove(&self.slot);
        if running && self.limiter.config.max_in_flight.is_some() {
            in_flight.insert(&self.organization, report_id, None);
        }
    }

    /// The create may have happened: keep the slot until `find` settles it or it lapses.
    pub(crate) fn keep_pending(mut self) {
        self.done = true;
    }
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        if !self.done {
            lock(&self.limiter.in_flight).remove(&self.slot);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::ratelimit::LimiterConfig;

    #[test]
    fn in_flight_slots_follow_reports() {
        let mut cfg = LimiterConfig::unlimited();
        cfg.max_in_flight = Some(2);
        let limiter = Limiter::new(cfg);
        limiter.note_in_flight("org", "r1");
        let r = limiter.reserve("org", "ns/a").expect("one slot left");
        assert!(matches!(
            limiter.reserve("org", "ns/b"),
            Err(BackendError::InFlightLimit { max: 2, .. })
        ));
        assert_eq!(limiter.reserve("other", "ns/c").map(|_| ()), Ok(()));
        r.commit("r2", true);
        assert_eq!(limiter.in_flight("org"), 2);
        limiter.release("r1");
        assert_eq!(limiter.in_flight("org"), 1);
        // A dropped reservation gives its slot back; a pending one keeps it until adopted.
        drop(limiter.reserve("org", "ns/d").expect("slot"));
        assert_eq!(limiter.in_flight("org"), 1);
        limiter.reserve("org", "ns/e").expect("slot").keep_pending();
        assert_eq!(limiter.in_flight("org"), 2);
        limiter.adopt("org", "ns/e", Some("r3"));
        assert_eq!(limiter.in_flight("org"), 2);
        limiter.adopt("org", "ns/f", None);
        limiter.release("r3");
        limiter.release("r2");
        assert_eq!(limiter.in_flight("org"), 0);
    }
}
