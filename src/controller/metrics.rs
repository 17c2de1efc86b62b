//! Prometheus metrics (`report_operator_*`) and the `/metrics`, `/healthz`, `/readyz` server.
//!
//! Labels never carry object names, URLs or anything a credential could hide in: only kinds,
//! backend types, operations, outcomes and statuses, so cardinality stays bounded.

use std::sync::Arc;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::{Family, MetricConstructor};
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::backend::BackendError;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReconcileLabels {
    pub kind: &'static str,
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    pub kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CallLabels {
    #[prometheus(flatten)]
    pub backend: BackendLabels,
    pub operation: &'static str,
    pub code: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OperationLabels {
    #[prometheus(flatten)]
    pub backend: BackendLabels,
    pub operation: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BackendLabels {
    pub r#type: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StatusLabels {
    pub status: &'static str,
}

/// Builds a histogram with fixed buckets for a [`Family`].
#[derive(Clone)]
pub struct Buckets(fn() -> Histogram);

impl MetricConstructor<Histogram> for Buckets {
    fn new_metric(&self) -> Histogram {
        (self.0)()
    }
}

/// All metrics of the operator.
pub struct Metrics {
    registry: Registry,
    pub reconciles: Family<ReconcileLabels, Counter>,
    pub reconcile_duration: Family<KindLabels, Histogram, Buckets>,
    pub backend_calls: Family<CallLabels, Counter>,
    pub backend_call_duration: Family<OperationLabels, Histogram, Buckets>,
    pub reports: Family<StatusLabels, Gauge>,
    pub time_to_ready: Family<BackendLabels, Histogram, Buckets>,
    pub rate_limit_waits: Family<BackendLabels, Counter>,
    pub missed_windows: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("report_operator");
        let reconciles = Family::<ReconcileLabels, Counter>::default();
        let reconcile_duration =
            Family::new_with_constructor(Buckets(|| Histogram::new(exponential_buckets(0.001, 2.0, 16))));
        let backend_calls = Family::<CallLabels, Counter>::default();
        let backend_call_duration =
            Family::new_with_constructor(Buckets(|| Histogram::new(exponential_buckets(0.005, 2.0, 14))));
        let reports = Family::<StatusLabels, Gauge>::default();
        let time_to_ready = Family::new_with_constructor(Buckets(|| Histogram::new(exponential_buckets(1.0, 2.0, 16))));
        let rate_limit_waits = Family::<BackendLabels, Counter>::default();
        let missed_windows = Counter::default();
        registry.register("reconciles", "Reconciles by kind and result", reconciles.clone());
        registry.register("reconcile_duration_seconds", "Time a reconcile took", reconcile_duration.clone());
        registry.register(
            "backend_calls",
            "Calls to reporting APIs by backend type, operation and outcome code",
            backend_calls.clone(),
        );
        registry.register(
            "backend_call_duration_seconds",
            "Time a call to a reporting API took, by backend type and operation",
            backend_call_duration.clone(),
        );
        registry.register("reports", "ReportFiles by status", reports.clone());
        registry.register(
            "time_to_ready_seconds",
            "Time from a ReportFile's creation to READY",
            time_to_ready.clone(),
        );
        registry.register(
            "rate_limit_waits",
            "Times a call was held back or refused by a backend's rate limit",
            rate_limit_waits.clone(),
        );
        registry.register("missed_windows", "Report windows recorded as missed", missed_windows.clone());
        Metrics {
            registry,
            reconciles,
            reconcile_duration,
            backend_calls,
            backend_call_duration,
            reports,
            time_to_ready,
            rate_limit_waits,
            missed_windows,
        }
    }

    /// Counts one reconcile.
    pub fn reconciled(&self, kind: &'static str, ok: bool, took: Duration) {
        let result = if ok { "ok" } else { "error" };
        self.reconciles.get_or_create(&ReconcileLabels { kind, result }).inc();
        self.reconcile_duration.get_or_create(&KindLabels { kind }).observe(took.as_secs_f64());
    }

    /// Runs one backend call: the only place calls are timed and counted, so that every
    /// operation (`probe`, `submit`, `find`, `get`, `download`, `list`, `delete`) has one label
    /// set and its error codes are [`BackendError::metric_code`]'s.
    pub async fn call<T>(
        &self,
        type_: &'static str,
        operation: &'static str,
        fut: impl Future<Output = Result<T, BackendError>>,
    ) -> Result<T, BackendError> {
        let start = Instant::now();
        let result = fut.await;
        let backend = BackendLabels { r#type: type_ };
        self.backend_call_duration
            .get_or_create(&OperationLabels { backend: backend.clone(), operation })
            .observe(start.elapsed().as_secs_f64());
        let code = result.as_ref().err().map_or("ok", BackendError::metric_code);
        self.backend_calls.get_or_create(&CallLabels { backend, operation, code }).inc();
        result
    }

    fn render(&self, reports: ReportsByStatus) -> Result<String, std::fmt::Error> {
        self.reports.get_or_create(&StatusLabels { status: "IN_PROGRESS" }).set(reports.in_progress);
        self.reports.get_or_create(&StatusLabels { status: "READY" }).set(reports.ready);
        self.reports.get_or_create(&StatusLabels { status: "FAILED" }).set(reports.failed);
        let mut out = String::new();
        encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

/// ReportFiles by status (no status yet counts as IN_PROGRESS), for the reports gauge.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReportsByStatus {
    pub in_progress: i64,
    pub ready: i64,
    pub failed: i64,
}

/// Counts the ReportFiles by status at each scrape.
pub type CountReports = Arc<dyn Fn() -> ReportsByStatus + Send + Sync>;

/// What the server reads: the metrics, the report counts and the readiness flag.
#[derive(Clone)]
struct Served {
    metrics: Arc<Metrics>,
    reports: CountReports,
    ready: Arc<AtomicBool>,
}

/// Serves `/metrics`, `/healthz` (the process answers) and `/readyz` (`ready` is set: caches
/// synced).
/// The listener is bound at start, so that a port in use stops the operator at once rather
/// than leaving it running without probes.
pub async fn serve(listener: tokio::net::TcpListener, metrics: Arc<Metrics>, reports: CountReports, ready: Arc<AtomicBool>) -> std::io::Result<()> {
    let app = Router::new()
        .route("/metrics", get(metrics_handler))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .with_state(Served { metrics, reports, ready });
    axum::serve(listener, app).await
}

async fn metrics_handler(State(served): State<Served>) -> impl IntoResponse {
    match served.metrics.render((served.reports)()) {
        Ok(body) => (
            StatusCode::OK,
            [("content-type", "application/openmetrics-text; version=1.0.0; charset=utf-8")],
            body,
        )
            .into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

async fn readyz(State(served): State<Served>) -> impl IntoResponse {
    if served.ready.load(Ordering::Relaxed) { (StatusCode::OK, "ok") } else { (StatusCode::SERVICE_UNAVAILABLE, "caches not synced") }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_backend_call_is_timed_once_and_counted_once_with_its_error_code() {
        let m = Metrics::new();
        let ok = m.call("RDE", "submit", async { Ok::<_, BackendError>(1) }).await;
        assert_eq!(ok, Ok(1));
        let refused = m.call("RDE", "probe", async { Err::<(), _>(BackendError::Unauthorized { message: "no".into() }) }).await;
        assert!(refused.is_err());
        let mut out = String::new();
        encode(&mut out, &m.registry).expect("encode");
        for line in [
            r#"report_operator_backend_calls_total{type="RDE",operation="submit",code="ok"} 1"#,
            r#"report_operator_backend_calls_total{type="RDE",operation="probe",code="unauthorized"} 1"#,
            r#"report_operator_backend_call_duration_seconds_count{type="RDE",operation="submit"} 1"#,
            r#"report_operator_backend_call_duration_seconds_count{type="RDE",operation="probe"} 1"#,
        ] {
            assert!(out.lines().any(|l| l == line), "{line} missing from\n{out}");
        }
    }
}
