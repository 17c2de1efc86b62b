//! ReportStore: object storage that READY reports are copied into, so that a report stays
//! reachable after the backend's own URL has died (SUPPLIER links live 60 seconds).
//!
//! A kind of its own rather than a block on each generator: one bucket and its credentials
//! serve many generators, the platform team owns it (and its RBAC) apart from the report
//! definitions, and its Ready condition says once whether the bucket can be written.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::LocalObjectReference;

/// Where READY reports are copied to: an S3 bucket (AWS or any S3-compatible server).
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "reporting.report-operator.io",
    version = "v1alpha1",
    kind = "ReportStore",
    plural = "reportstores",
    shortname = "rst",
    category = "reporting",
    namespaced,
    doc = "Object storage (an S3 bucket) that READY reports are copied into; the report Secret then holds a presigned URL of the copy.",
    status = "ReportStoreStatus",
    printcolumn = r#"{"name":"URL","type":"string","jsonPath":".spec.url"}"#,
    printcolumn = r#"{"name":"Retention","type":"string","jsonPath":".spec.retention"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].reason"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.url.startsWith('s3://')").message("url must be s3://<bucket>[/<prefix>] (gs:// and az:// are not supported yet)"))]
pub struct ReportStoreSpec {
    /// `s3://<bucket>[/<prefix>]`: the bucket, and a key prefix every object gets.
    #[schemars(length(min = 6, max = 1024))]
    pub url: String,
    /// The S3 API endpoint of an S3-compatible server (`https://minio.example.com:9000`);
    /// unset: AWS S3 in `region`. Requests use path-style addressing when it is set. The
    /// operator's outbound policy applies to it as to backend URLs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 2048))]
    pub endpoint: Option<String>,
    /// The bucket's region; default `us-east-1`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64), pattern(REGION_PATTERN))]
    pub region: Option<String>,
    /// Secret in the same namespace with keys `accessKeyId` and `secretAccessKey` (and
    /// optionally `sessionToken`).
    pub credentials_secret_ref: LocalObjectReference,
    /// The object key below the prefix, with placeholders `{namespace}`, `{generator}` (the
    /// ReportFile's name when it has no generator), `{reportFile}`, `{window}`
    /// (`YYYYMMDD-YYYYMMDD`, or `once` without one), `{organization}` (`default` unless a
    /// SUPPLIER organization is set), `{format}` (`csv`, `json`, …) and `{ext}` (the file's
    /// extension: `zip` for CONNECT archives, `gz` for gzipped RDE files, else the format).
    /// Default `{namespace}/{generator}/{window}/{reportFile}.{ext}`. Every placeholder comes
    /// from the ReportFile's immutable spec, so a retry writes the same key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 512))]
    pub path_template: Option<String>,
    /// How long each presigned URL in a report Secret works, in seconds: it is re-minted
    /// (without calling the reporting backend) before it expires. Default 86400 (a day);
    /// 60 to 604800 (7 days, the longest S3 signs for).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 60, max = 604800))]
    pub presigned_url_lifetime_seconds: Option<i64>,
    /// What happens to an object when its ReportFile is deleted (by hand, or pruned by a
    /// generator's history limits): `Keep` (default) or `Delete`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention: Option<Retention>,
    /// CONNECT reports come as a ZIP (the report and a summary.json): `Store` (default) keeps
    /// the ZIP as one object; `Extract` stores each file of it under the report's key
    /// without `.zip` (`…/<reportFile>/report.json`), and the Secret's URL is the report's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connect_archive: Option<ConnectArchive>,
}

/// What a `region` may hold: it becomes part of a host name when there is no `endpoint`.
pub const REGION_PATTERN: &str = "^[a-z0-9-]+$";

/// What happens to a CONNECT ZIP on its way into the store.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ConnectArchive {
    /// The ZIP as it is.
    #[default]
    Store,
    /// Each file of the ZIP as its own object.
    Extract,
}

/// What happens to a delivered object when its ReportFile goes.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Retention {
    /// The object stays: the bucket's own lifecycle rules decide.
    #[default]
    Keep,
    /// The object is deleted with its ReportFile.
    Delete,
}

/// Observed state of a ReportStore.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ReportStoreStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready` says whether the bucket answers with these credentials; reasons Reachable,
    /// InvalidSpec, CredentialsMissing, Unauthorized, BucketNotFound, Unreachable,
    /// InvalidResponse (an answer larger than the operator reads), DestinationDenied (the
    /// operator's outbound policy forbids the endpoint); and KubernetesApiError, InternalError,
    /// ReconcileTimeout (the operator could not handle the object; retried with backoff).
    #[serde(default)]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
}

impl ReportStoreSpec {
    /// The default path template.
    pub const DEFAULT_PATH_TEMPLATE: &'static str = "{namespace}/{generator}/{window}/{reportFile}.{ext}";
    /// The default lifetime of a presigned URL.
    pub const DEFAULT_PRESIGNED_SECONDS: i64 = 86_400;

    pub fn path_template(&self) -> &str {
        self.path_template
            .as_deref()
            .unwrap_or(Self::DEFAULT_PATH_TEMPLATE)
    }

    /// How long a presigned URL works: 60 s to S3's 7 days.
    pub fn presigned_lifetime(&self) -> std::time::Duration {
        let seconds = self
            .presigned_url_lifetime_seconds
            .unwrap_or(Self::DEFAULT_PRESIGNED_SECONDS)
            .clamp(60, 604_800);
        std::time::Duration::from_secs(seconds.unsigned_abs())
    }

    pub fn retention(&self) -> Retention {
        self.retention.unwrap_or_default()
    }

    pub fn connect_archive(&self) -> ConnectArchive {
        self.connect_archive.unwrap_or_default()
    }
}
