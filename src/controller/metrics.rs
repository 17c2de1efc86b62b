//! Prometheus metrics (`report_operator_*`) and the `/metrics`, `/healthz`, `/readyz` server.
//!
//! Labels never carry URLs or anything a credential could hide in: only kinds, backend types,
//! operations, outcomes and statuses, so cardinality stays bounded. The exceptions are the
//! per-object gauges an alert needs to name what is wrong (`generator_*`, `backend_ready`):
//! they carry `namespace` and the object's name, one series per existing object, taken from
//! the caches at each scrape (so a deleted object's series goes with it).
//!
//! Only a replica that reconciles exports gauges read from the caches (`reports`, the
//! per-object gauges): a standby's caches are empty, and its zeros would make alerts fire on
//! every failover. `leader` says which replica that is. With sharding every replica that
//! holds a shard reconciles, and exports the gauges of its shards' namespaces only
//! (`gauges`), so that the replicas' series add up to the whole; `shard` labels the
//! per-shard series (`shard_held`, `shard_takeovers`, `shard_reconciles`).

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
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

use crate::api::FileState;
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

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CompletedLabels {
    #[prometheus(flatten)]
    pub backend: BackendLabels,
    /// `ready` or `failed`.
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GeneratorLabels {
    pub namespace: String,
    pub generator: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BackendReadyLabels {
    pub namespace: String,
    pub backend: String,
    pub r#type: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ShardLabels {
    pub shard: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VersionLabels {
    pub version: &'static str,
}

/// What one scrape reads from the caches (see [`Metrics::render`]).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Snapshot {
    pub reports: ReportsByStatus,
    pub generators: Vec<GeneratorGauges>,
    pub backends: Vec<BackendReadiness>,
}

/// A ReportGenerator's gauges.
#[derive(Clone, Debug, PartialEq)]
pub struct GeneratorGauges {
    pub labels: GeneratorLabels,
    /// `status.lastSuccessfulTime` in Unix seconds, when a report has been READY.
    pub last_success: Option<f64>,
    /// How often a report is due: the period of a PERIODIC generator that is not suspended.
    pub expected_interval: Option<f64>,
}

/// A ReportBackend's readiness: Ready=True for its current spec.
#[derive(Clone, Debug, PartialEq)]
pub struct BackendReadiness {
    pub labels: BackendReadyLabels,
    pub ready: bool,
}

/// Builds a histogram with fixed buckets for a [`Family`].
#[derive(Clone)]
pub struct Buckets(pub fn() -> Histogram);

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
    pub delivery: super::delivery_metrics::DeliveryMetrics,
    reports_completed: Family<CompletedLabels, Counter>,
    generator_last_success: Family<GeneratorLabels, Gauge<f64, AtomicU64>>,
    generator_expected_interval: Family<GeneratorLabels, Gauge<f64, AtomicU64>>,
    backend_ready: Family<BackendReadyLabels, Gauge>,
    leader: Gauge,
    shard_held: Family<ShardLabels, Gauge>,
    shard_takeovers: Family<ShardLabels, Counter>,
    shard_reconciles: Family<ShardLabels, Counter>,
    /// One scrape at a time: a scrape clears and refills the gauges read from the caches.
    scrape: Mutex<()>,
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
        let time_to_ready =
            Family::new_with_constructor(Buckets(|| Histogram::new(exponential_buckets(1.0, 2.0, 16))));
        let rate_limit_waits = Family::<BackendLabels, Counter>::default();
        let missed_windows = Counter::default();
        registry.register("reconciles", "Reconciles by kind and result", reconciles.clone());
        registry.register(
            "reconcile_duration_seconds",
            "Time a reconcile took",
            reconcile_duration.clone(),
        );
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
        registry.register(
            "missed_windows",
            "Report windows recorded as missed",
            missed_windows.clone(),
        );
        let delivery = super::delivery_metrics::DeliveryMetrics::register(&mut registry);
        let reports_completed = Family::<CompletedLabels, Counter>::default();
        registry.register(
            "reports_completed",
            "ReportFiles that turned READY or FAILED, by backend type and result",
            reports_completed.clone(),
        );
        // From zero, so that `increase()` sees a type's first failure too.
        for type_ in BACKEND_TYPES {
            for result in ["ready", "failed"] {
                let _ = reports_completed.get_or_create(&CompletedLabels {
                    backend: BackendLabels { r#type: type_ },
                    result,
                });
            }
        }
        let generator_last_success = Family::<GeneratorLabels, Gauge<f64, AtomicU64>>::default();
        registry.register(
            "generator_last_success_timestamp_seconds",
            "When a report of the ReportGenerator last became READY (status.lastSuccessfulTime)",
            generator_last_success.clone(),
        );
        let generator_expected_interval = Family::<GeneratorLabels, Gauge<f64, AtomicU64>>::default();
        registry.register(
            "generator_expected_interval_seconds",
            "How often a report of the ReportGenerator is due (PERIODIC and not suspended: its period)",
            generator_expected_interval.clone(),
        );
        let backend_ready = Family::<BackendReadyLabels, Gauge>::default();
        registry.register(
            "backend_ready",
            "1 when the ReportBackend is Ready for its current spec, else 0",
            backend_ready.clone(),
        );
        let build_info = Family::<VersionLabels, Gauge>::default();
        build_info
            .get_or_create(&VersionLabels {
                version: env!("CARGO_PKG_VERSION"),
            })
            .set(1);
        registry.register("build_info", "The operator's version; always 1", build_info);
        let leader = Gauge::default();
        registry.register(
            "leader",
            "1 while this replica reconciles (holds the Lease or a shard, or runs without either)",
            leader.clone(),
        );
        let shard_held = Family::<ShardLabels, Gauge>::default();
        registry.register(
            "shard_held",
            "1 while this replica holds the shard's Lease and reconciles its namespaces",
            shard_held.clone(),
        );
        let shard_takeovers = Family::<ShardLabels, Counter>::default();
        registry.register(
            "shard_takeovers",
            "Times this replica took the shard's Lease",
            shard_takeovers.clone(),
        );
        let shard_reconciles = Family::<ShardLabels, Counter>::default();
        registry.register(
            "shard_reconciles",
            "Reconciles this replica started in the shard's namespaces",
            shard_reconciles.clone(),
        );
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
            delivery,
            reports_completed,
            generator_last_success,
            generator_expected_interval,
            backend_ready,
            leader,
            shard_held,
            shard_takeovers,
            shard_reconciles,
            scrape: Mutex::new(()),
        }
    }

    /// Marks this replica as the one that reconciles, or not.
    pub fn set_leader(&self, leading: bool) {
        self.leader.set(i64::from(leading));
    }

    /// Whether this replica holds `shard`.
    pub fn shard_held(&self, shard: u16, held: bool) {
        self.shard_held
            .get_or_create(&ShardLabels { shard })
            .set(i64::from(held));
    }

    /// Counts one take of `shard`'s Lease.
    pub fn shard_taken(&self, shard: u16) {
        self.shard_takeovers.get_or_create(&ShardLabels { shard }).inc();
    }

    /// Counts one reconcile in `shard`.
    pub fn shard_reconciled(&self, shard: u16) {
        self.shard_reconciles.get_or_create(&ShardLabels { shard }).inc();
    }

    /// Counts a ReportFile that went from `before` to `after`, once: when it turns READY or
    /// FAILED from unfinished.
    pub fn report_changed(&self, type_: &'static str, before: Option<FileState>, after: Option<FileState>) {
        if let Some(result) = completion(before, after) {
            self.reports_completed
                .get_or_create(&CompletedLabels {
                    backend: BackendLabels { r#type: type_ },
                    result,
                })
                .inc();
        }
    }

    /// Counts one reconcile.
    pub fn reconciled(&self, kind: &'static str, ok: bool, took: Duration) {
        let result = if ok { "ok" } else { "error" };
        self.reconciles
            .get_or_create(&ReconcileLabels { kind, result })
            .inc();
        self.reconcile_duration
            .get_or_create(&KindLabels { kind })
            .observe(took.as_secs_f64());
    }

    /// Counts a reconcile that did not run: its namespace held its share of the workers
    /// ([`super::seats`]); it runs again shortly.
    pub fn deferred(&self, kind: &'static str) {
        self.reconciles
            .get_or_create(&ReconcileLabels {
                kind,
                result: "deferred",
            })
            .inc();
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
            .get_or_create(&OperationLabels {
                backend: backend.clone(),
                operation,
            })
            .observe(start.elapsed().as_secs_f64());
        let code = result.as_ref().err().map_or("ok", BackendError::metric_code);
        self.backend_calls
            .get_or_create(&CallLabels {
                backend,
                operation,
                code,
            })
            .inc();
        result
    }

    /// The text of `/metrics`. The gauges read from the caches are filled from `snapshot`
    /// only while this replica leads; otherwise they are left out (see the module doc).
    fn render(&self, snapshot: impl FnOnce() -> Snapshot) -> Result<String, std::fmt::Error> {
        let _one_at_a_time = self.scrape.lock().unwrap_or_else(|p| p.into_inner());
        self.reports.clear();
        self.generator_last_success.clear();
        self.generator_expected_interval.clear();
        self.backend_ready.clear();
        if self.leader.get() == 1 {
            let Snapshot {
                reports,
                generators,
                backends,
            } = snapshot();
            self.reports
                .get_or_create(&StatusLabels {
                    status: "IN_PROGRESS",
                })
                .set(reports.in_progress);
            self.reports
                .get_or_create(&StatusLabels { status: "READY" })
                .set(reports.ready);
            self.reports
                .get_or_create(&StatusLabels { status: "FAILED" })
                .set(reports.failed);
            for g in generators {
                if let Some(t) = g.last_success {
                    self.generator_last_success.get_or_create(&g.labels).set(t);
                }
                if let Some(every) = g.expected_interval {
                    self.generator_expected_interval
                        .get_or_create(&g.labels)
                        .set(every);
                }
            }
            for b in backends {
                self.backend_ready
                    .get_or_create(&b.labels)
                    .set(i64::from(b.ready));
            }
        }
        let mut out = String::new();
        encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

/// Every backend type's `spec.type`, for counters that start at zero.
const BACKEND_TYPES: [&str; 5] = ["RDE", "CMP", "CONNECT", "FUSION", "SUPPLIER"];

/// The `result` label of a ReportFile that went from `before` to `after`: set only when an
/// unfinished report finished, so that each report is counted once.
fn completion(before: Option<FileState>, after: Option<FileState>) -> Option<&'static str> {
    if before.is_some_and(FileState::is_finished) {
        return None;
    }
    match after? {
        FileState::Ready => Some("ready"),
        FileState::Failed => Some("failed"),
        FileState::InProgress => None,
    }
}

/// ReportFiles by status (no status yet counts as IN_PROGRESS), for the reports gauge.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReportsByStatus {
    pub in_progress: i64,
    pub ready: i64,
    pub failed: i64,
}

/// Reads the caches at each scrape.
pub type TakeSnapshot = Arc<dyn Fn() -> Snapshot + Send + Sync>;

/// What the server reads: the metrics, the report counts and the readiness flag.
#[derive(Clone)]
struct Served {
    metrics: Arc<Metrics>,
    snapshot: TakeSnapshot,
    ready: Arc<AtomicBool>,
}

/// Serves `/metrics`, `/healthz` (the process answers) and `/readyz` (`ready` is set: caches
/// synced).
/// The listener is bound at start, so that a port in use stops the operator at once rather
/// than leaving it running without probes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    metrics: Arc<Metrics>,
    snapshot: TakeSnapshot,
    ready: Arc<AtomicBool>,
) -> std::io::Result<()> {
    let app = Router::new()
        .route("/metrics", get(metrics_handler))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .with_state(Served {
            metrics,
            snapshot,
            ready,
        });
    axum::serve(listener, app).await
}

async fn metrics_handler(State(served): State<Served>) -> impl IntoResponse {
    match served.metrics.render(|| (served.snapshot)()) {
        Ok(body) => (
            StatusCode::OK,
            [(
                "content-type",
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            body,
        )
            .into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

async fn readyz(State(served): State<Served>) -> impl IntoResponse {
    if served.ready.load(Ordering::Relaxed) {
        (StatusCode::OK, "ok")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "caches not synced")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_backend_call_is_timed_once_and_counted_once_with_its_error_code() {
        let m = Metrics::new();
        let ok = m.call("RDE", "submit", async { Ok::<_, BackendError>(1) }).await;
        assert_eq!(ok, Ok(1));
        let refused = m
            .call("RDE", "probe", async {
                Err::<(), _>(BackendError::Unauthorized { message: "no".into() })
            })
            .await;
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

    #[test]
    fn a_report_is_counted_once_when_it_finishes() {
        use FileState::*;
        // (before, after, counted as)
        let table = [
            (None, Some(InProgress), None),
            (None, Some(Failed), Some("failed")),
            (Some(InProgress), Some(InProgress), None),
            (Some(InProgress), Some(Ready), Some("ready")),
            (Some(InProgress), Some(Failed), Some("failed")),
            (Some(Ready), Some(Ready), None),
            (Some(Ready), Some(Failed), None),
            (Some(Failed), Some(Failed), None),
        ];
        for (before, after, want) in table {
            assert_eq!(completion(before, after), want, "{before:?} -> {after:?}");
        }
    }

    #[test]
    fn every_backend_type_has_counters_from_zero() {
        let schema = serde_json::to_value(schemars::schema_for!(crate::api::BackendType)).expect("schema");
        let types: Vec<&str> = schema["enum"]
            .as_array()
            .expect("an enum")
            .iter()
            .filter_map(|v| v.as_str())
            .collect();
        assert_eq!(types, BACKEND_TYPES);
    }

    fn snapshot() -> Snapshot {
        Snapshot {
            reports: ReportsByStatus {
                in_progress: 1,
                ready: 2,
                failed: 3,
            },
            generators: vec![GeneratorGauges {
                labels: GeneratorLabels {
                    namespace: "ns".into(),
                    generator: "daily".into(),
                },
                last_success: Some(1_767_323_045.5),
                expected_interval: Some(86_400.0),
            }],
            backends: vec![BackendReadiness {
                labels: BackendReadyLabels {
                    namespace: "ns".into(),
                    backend: "rde".into(),
                    r#type: "RDE",
                },
                ready: false,
            }],
        }
    }

    #[test]
    fn only_the_leader_exports_what_it_reads_from_its_caches() {
        let m = Metrics::new();
        m.report_changed("RDE", Some(FileState::InProgress), Some(FileState::Failed));
        let from_caches = [
            r#"report_operator_reports{status="FAILED"} 3"#,
            r#"report_operator_generator_last_success_timestamp_seconds{namespace="ns",generator="daily"} 1767323045.5"#,
            r#"report_operator_generator_expected_interval_seconds{namespace="ns",generator="daily"} 86400.0"#,
            r#"report_operator_backend_ready{namespace="ns",backend="rde",type="RDE"} 0"#,
        ];
        let always = [
            r#"report_operator_reports_completed_total{type="RDE",result="failed"} 1"#,
            r#"report_operator_reports_completed_total{type="CONNECT",result="failed"} 0"#,
            concat!(
                r#"report_operator_build_info{version=""#,
                env!("CARGO_PKG_VERSION"),
                r#""} 1"#
            ),
        ];
        let standby = m
            .render(|| panic!("a standby does not read its caches"))
            .expect("render");
        assert!(
            standby.lines().any(|l| l == "report_operator_leader 0"),
            "{standby}"
        );
        for line in from_caches {
            let name = line.split('{').next().unwrap_or_default();
            assert!(
                !standby.lines().any(|l| l.starts_with(&format!("{name}{{"))),
                "a standby exports {name}:\n{standby}"
            );
        }
        m.set_leader(true);
        let leading = m.render(snapshot).expect("render");
        for line in from_caches
            .iter()
            .chain(&always)
            .chain(&["report_operator_leader 1"])
        {
            assert!(
                leading.lines().any(|l| l == *line),
                "{line} missing from\n{leading}"
            );
        }
        for line in always {
            assert!(
                standby.lines().any(|l| l == line),
                "{line} missing from a standby's\n{standby}"
            );
        }
        // A generator gone from the caches is gone from the next scrape.
        let gone = m
            .render(|| Snapshot {
                generators: vec![],
                ..snapshot()
            })
            .expect("render");
        assert!(!gone.contains(r#"generator="daily""#), "{gone}");
    }
}
