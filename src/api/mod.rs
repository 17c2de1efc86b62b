//! The custom resources of `reporting.report-operator.io/v1alpha1`.
//!
//! The field names, enum values, labels and annotations here are the public
//! contract (`API.md`): tools such as Argo CD health checks depend on them.
//! Optional fields carry no schema defaults (they would make GitOps tools report
//! drift); defaults are applied in code by the accessors on each type.

mod backend;
mod common;
mod file;
mod generator;
pub mod reasons;
mod schema;
mod store;

pub use backend::*;
pub use common::*;
pub use file::*;
pub use generator::*;
pub use store::*;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

/// The API group of every kind this operator serves.
pub const GROUP: &str = "reporting.report-operator.io";

/// Label on ReportFiles and Secrets naming the ReportGenerator they come from.
pub const LABEL_GENERATOR: &str = "reporting.report-operator.io/generator";
/// Label on Secrets naming the ReportFile they belong to.
pub const LABEL_REPORT_FILE: &str = "reporting.report-operator.io/report-file";
/// Annotation on a ReportGenerator: a new value asks for a run now.
pub const ANNOTATION_RUN_NOW: &str = "reporting.report-operator.io/run-now";
/// Annotation on a ReportFile: a new value asks for a fresh download URL.
pub const ANNOTATION_REFRESH_URL: &str = "reporting.report-operator.io/refresh-url";

/// Finalizer on a CONNECT ReportFile: its report on Connect is removed before it goes.
pub const FINALIZER_CONNECT_REPORT: &str = "reporting.report-operator.io/connect-report";
/// Finalizer on a ReportFile copied into a ReportStore with retention Delete: the copy is
/// deleted before it goes.
pub const FINALIZER_DELIVERY: &str = "reporting.report-operator.io/delivery";
/// Finalizer on an RDE ReportGenerator: its report template is deleted on the platform before
/// it goes.
pub const FINALIZER_RDE_TEMPLATE: &str = "reporting.report-operator.io/rde-template";
/// Every finalizer the operator sets: `kubectl report release-finalizers` removes these and
/// no other.
pub const FINALIZERS: [&str; 3] = [
    FINALIZER_CONNECT_REPORT,
    FINALIZER_DELIVERY,
    FINALIZER_RDE_TEMPLATE,
];

/// All CRDs, in the order they are printed and installed, their schemas tidied for
/// `kubectl explain` ([`schema::tidy`]).
pub fn crds() -> Vec<CustomResourceDefinition> {
    [
        ReportBackend::crd(),
        ReportGenerator::crd(),
        ReportFile::crd(),
        ReportStore::crd(),
    ]
    .into_iter()
    .map(schema::tidy)
    .collect()
}

/// The CRDs as one multi-document YAML stream, as `crds/` and the chart hold them.
pub fn crds_yaml() -> Result<String, serde_yaml::Error> {
    let mut out = String::new();
    for crd in crds() {
        out.push_str("---\n");
        out.push_str(&serde_yaml::to_string(&crd)?);
    }
    Ok(out)
}
