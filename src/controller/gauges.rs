//! The gauges a scrape reads from the caches ([`metrics::Snapshot`]): reports by status,
//! each generator's last success and expected interval, each backend's readiness. Pure
//! functions of the cached objects, so that a deleted object's series goes with it and the
//! values are what `kubectl get` shows.

use std::sync::Arc;

use kube::ResourceExt;
use kube::api::ObjectMeta;

use super::context::Context;
use super::metrics::{self, BackendReadiness, BackendReadyLabels, GeneratorGauges, GeneratorLabels};
use crate::api::{
    CONDITION_READY, EventType, FileState, Period, ReportBackend, ReportFile, ReportGenerator, find_condition,
};

/// Reads the index and the stores of `ctx` at each scrape: with sharding, the objects of the
/// shards this replica holds only, so that the replicas' series add up to the whole.
pub fn snapshot(ctx: &Arc<Context>) -> metrics::TakeSnapshot {
    let ctx = ctx.clone();
    Arc::new(move || {
        let held = |meta: &ObjectMeta| ctx.shards.holds(meta.namespace.as_deref().unwrap_or_default());
        metrics::Snapshot {
            reports: match ctx.shards.count() {
                None => ctx.index.reports_by_status(),
                Some(_) => reports_by_status(ctx.files.state().iter().filter(|rf| held(&rf.metadata))),
            },
            generators: ctx
                .generators
                .state()
                .iter()
                .filter(|g| held(&g.metadata))
                .map(|g| generator(g))
                .collect(),
            backends: ctx
                .backends
                .state()
                .iter()
                .filter(|rb| held(&rb.metadata))
                .map(|rb| backend(rb))
                .collect(),
        }
    })
}

/// ReportFiles by status, counted from `files` (no status yet counts as IN_PROGRESS).
fn reports_by_status<'a>(files: impl Iterator<Item = &'a Arc<ReportFile>>) -> metrics::ReportsByStatus {
    let mut counts = metrics::ReportsByStatus::default();
    for rf in files {
        match rf.status.as_ref().and_then(|s| s.status) {
            Some(FileState::Ready) => counts.ready += 1,
            Some(FileState::Failed) => counts.failed += 1,
            Some(FileState::InProgress) | None => counts.in_progress += 1,
        }
    }
    counts
}

/// A generator's gauges: its last success, and how often a report is due when one is due at
/// a known rhythm (PERIODIC, not suspended). ONETIME and ON_INVOICE have no such rhythm.
fn generator(g: &ReportGenerator) -> GeneratorGauges {
    let status = g.status.as_ref();
    let suspended = g.spec.schedule.as_ref().and_then(|s| s.suspend).unwrap_or(false);
    let period = g.spec.parameters.as_ref().and_then(|p| p.period);
    let expected_interval = match (g.spec.event_type, period) {
        (EventType::Periodic, Some(period)) if !suspended => Some(period_seconds(period)),
        _ => None,
    };
    GeneratorGauges {
        labels: GeneratorLabels {
            namespace: g.namespace().unwrap_or_default(),
            generator: g.name_any(),
        },
        last_success: status
            .and_then(|s| s.last_successful_time)
            .map(|t| t.timestamp_millis() as f64 / 1000.0),
        expected_interval,
    }
}

/// The longest a window of `period` lasts: a month counts as 31 days.
fn period_seconds(period: Period) -> f64 {
    match period {
        Period::P1D => 86_400.0,
        Period::P1W => 604_800.0,
        Period::P1M => 2_678_400.0,
    }
}

/// Ready=True for the backend's current spec (as [`Context::ready_backend`] requires).
fn backend(rb: &ReportBackend) -> BackendReadiness {
    let ready = rb
        .status
        .as_ref()
        .and_then(|s| find_condition(&s.conditions, CONDITION_READY))
        .is_some_and(|c| c.status == "True" && c.observed_generation == rb.metadata.generation);
    BackendReadiness {
        labels: BackendReadyLabels {
            namespace: rb.namespace().unwrap_or_default(),
            backend: rb.name_any(),
            r#type: rb.spec.type_.as_str(),
        },
        ready,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn generator_from(spec: serde_json::Value, status: serde_json::Value) -> ReportGenerator {
        serde_json::from_value(json!({
            "apiVersion": "reporting.report-operator.io/v1alpha1",
            "kind": "ReportGenerator",
            "metadata": {"name": "g", "namespace": "ns"},
            "spec": spec,
            "status": status,
        }))
        .expect("a valid ReportGenerator")
    }

    #[test]
    fn a_generator_is_expected_to_succeed_once_per_period_unless_suspended_or_not_periodic() {
        let base = |event: &str, extra: serde_json::Value| {
            let mut spec = json!({"backendRef": {"name": "b"}, "commonName": "c", "eventType": event, "format": "CSV",
                "parameters": {"period": "P1W", "startDate": "2026-01-01T00:00:00Z", "endDate": "2026-02-01T00:00:00Z"}});
            if let (Some(s), Some(e)) = (spec.as_object_mut(), extra.as_object()) {
                s.extend(e.clone());
            }
            spec
        };
        let done = json!({"lastSuccessfulTime": "2026-01-02T03:04:05Z"});
        // (spec, status, last success, expected interval)
        let table = [
            (
                base("PERIODIC", json!({})),
                done.clone(),
                Some(1_767_323_045.0),
                Some(604_800.0),
            ),
            (
                base("PERIODIC", json!({"schedule": {"suspend": true}})),
                done.clone(),
                Some(1_767_323_045.0),
                None,
            ),
            (
                base("PERIODIC", json!({"schedule": {"suspend": false}})),
                json!({}),
                None,
                Some(604_800.0),
            ),
            (
                base("ONETIME", json!({})),
                done.clone(),
                Some(1_767_323_045.0),
                None,
            ),
            (base("ON_INVOICE", json!({})), done, Some(1_767_323_045.0), None),
        ];
        for (i, (spec, status, last, every)) in table.into_iter().enumerate() {
            let got = generator(&generator_from(spec, status));
            assert_eq!(
                got.labels,
                GeneratorLabels {
                    namespace: "ns".into(),
                    generator: "g".into()
                },
                "row {i}"
            );
            assert_eq!(
                (got.last_success, got.expected_interval),
                (last, every),
                "row {i}"
            );
        }
        assert_eq!(period_seconds(Period::P1D), 86_400.0);
        assert_eq!(period_seconds(Period::P1M), 31.0 * 86_400.0);
    }

    #[test]
    fn a_backend_is_ready_only_when_checked_true_for_its_current_spec() {
        let backend_with = |generation: i64, ready: Option<(&str, i64)>| -> ReportBackend {
            let conditions: Vec<serde_json::Value> = ready
                .map(|(status, observed)| {
                    json!({"type": "Ready", "status": status, "reason": "R", "message": "m", "observedGeneration": observed,
                        "lastTransitionTime": "2026-01-01T00:00:00Z"})
                })
                .into_iter()
                .collect();
            serde_json::from_value(json!({
                "apiVersion": "reporting.report-operator.io/v1alpha1",
                "kind": "ReportBackend",
                "metadata": {"name": "b", "namespace": "ns", "generation": generation},
                "spec": {"type": "CONNECT", "url": "https://example.invalid", "credentialsSecretRef": {"name": "s"}},
                "status": {"conditions": conditions},
            }))
            .expect("a valid ReportBackend")
        };
        let table = [
            (2, Some(("True", 2)), true),
            (2, Some(("True", 1)), false),
            (2, Some(("False", 2)), false),
            (2, None, false),
        ];
        for (i, (generation, ready, want)) in table.into_iter().enumerate() {
            let got = backend(&backend_with(generation, ready));
            assert_eq!(got.ready, want, "row {i}");
            assert_eq!(
                got.labels,
                BackendReadyLabels {
                    namespace: "ns".into(),
                    backend: "b".into(),
                    r#type: "CONNECT"
                },
                "row {i}"
            );
        }
    }
}
