//! Metrics of report copies into ReportStores (`report_operator_delivery_*`). Labelled by
//! backend type and, for failures, by a fixed reason: never by bucket, key or URL.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use super::metrics::{BackendLabels, Buckets};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FailureLabels {
    pub reason: &'static str,
}

pub struct DeliveryMetrics {
    pub bytes: Family<BackendLabels, Counter>,
    pub objects: Family<BackendLabels, Counter>,
    pub failures: Family<FailureLabels, Counter>,
    pub duration: Family<BackendLabels, Histogram, Buckets>,
}

impl DeliveryMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let m = DeliveryMetrics {
            bytes: Family::default(),
            objects: Family::default(),
            failures: Family::default(),
            duration: Family::new_with_constructor(Buckets(|| {
                Histogram::new(exponential_buckets(0.05, 2.0, 14))
            })),
        };
        registry.register(
            "delivered_bytes",
            "Bytes of reports copied into ReportStores, by backend type",
            m.bytes.clone(),
        );
        registry.register(
            "delivered_objects",
            "Reports copied into ReportStores, by backend type",
            m.objects.clone(),
        );
        registry.register(
            "delivery_failures",
            "Copies into ReportStores (and object deletions) that failed, by reason",
            m.failures.clone(),
        );
        registry.register(
            "delivery_duration_seconds",
            "Time a copy into a ReportStore took, download included",
            m.duration.clone(),
        );
        m
    }

    /// One copy of `bytes` bytes that took `seconds`.
    pub fn delivered(&self, type_: &'static str, bytes: u64, seconds: f64) {
        let labels = BackendLabels { r#type: type_ };
        self.bytes.get_or_create(&labels).inc_by(bytes);
        self.objects.get_or_create(&labels).inc();
        self.duration.get_or_create(&labels).observe(seconds);
    }

    pub fn failed(&self, reason: &'static str) {
        self.failures.get_or_create(&FailureLabels { reason }).inc();
    }
}
