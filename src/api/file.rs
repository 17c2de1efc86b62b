//! ReportFile: one generated report; mirrors RDE's report file.

use chrono::{DateTime, Utc};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{EventType, LocalObjectReference, ReportFormat, SecretTemplate};
use super::generator::ReportParameters;
use super::store::ConnectArchive;

/// One report: the request as sent to the backend (immutable) and its progress.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "reporting.report-operator.io",
    version = "v1alpha1",
    kind = "ReportFile",
    plural = "reportfiles",
    shortname = "rf",
    // Not "reports": any resource of that name (Kyverno's OpenReports) shadows the category.
    category = "reporting",
    namespaced,
    doc = "One generated report that mirrors an RDE report file; when READY it owns a Secret holding the download URL.",
    status = "ReportFileStatus",
    printcolumn = r#"{"name":"Status","type":"string","jsonPath":".status.status"}"#,
    printcolumn = r#"{"name":"Generator","type":"string","jsonPath":".spec.generatorRef.name"}"#,
    printcolumn = r#"{"name":"Start","type":"string","jsonPath":".spec.parameters.startDate"}"#,
    printcolumn = r#"{"name":"End","type":"string","jsonPath":".spec.parameters.endDate"}"#,
    printcolumn = r#"{"name":"Generated","type":"date","jsonPath":".status.generateDate"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].reason"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self == oldSelf").message("ReportFile spec is immutable: delete the ReportFile and create a new one"))]
pub struct ReportFileSpec {
    /// The ReportGenerator this report belongs to, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generator_ref: Option<LocalObjectReference>,
    /// The ReportBackend that generates the report.
    pub backend_ref: LocalObjectReference,
    /// Report name (the generator's commonName).
    #[schemars(length(min = 1, max = 256))]
    pub name: String,
    /// How the report was triggered.
    pub event_type: EventType,
    /// File format.
    pub format: ReportFormat,
    /// Ask the platform to e-mail the report (RDE).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify_by_email: Option<bool>,
    /// The period and backend-specific parameters of this one report.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<ReportParameters>,
    /// SUPPLIER: the organization this report is generated for (default: the backend's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub organization: Option<String>,
    /// Id of a report the backend already made (RDE report files, CMP on-invoice reports):
    /// the operator follows it instead of asking for a new one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = MAX_ID_LENGTH))]
    pub external_id: Option<String>,
    /// RDE: APS id of the report template this file belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = MAX_ID_LENGTH))]
    pub template_id: Option<String>,
    /// Labels and annotations for this report's Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_template: Option<SecretTemplate>,
    /// Seconds the report may stay IN_PROGRESS before it fails with DeadlineExceeded.
    /// Default 21600 (6 hours); at most 2592000 (30 days).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = super::generator::MAX_DEADLINE_SECONDS))]
    pub active_deadline_seconds: Option<i64>,
    /// The ReportStore, in the same namespace, that the READY report is copied into (copied
    /// from the generator's `storeRef`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store_ref: Option<LocalObjectReference>,
}

/// The longest id of a report or template: in `spec`, refused at admission; from a backend,
/// cut when written into status.
pub const MAX_ID_LENGTH: usize = 256;
/// The longest file name written into status (a backend's; longer ones are cut).
pub const MAX_FILE_NAME_LENGTH: usize = 255;

/// ReportFile condition type: True once the report is READY (as a Job's `Complete`).
pub const CONDITION_COMPLETE: &str = "Complete";
/// ReportFile condition type: True once the report FAILED (as a Job's `Failed`).
pub const CONDITION_FAILED: &str = "Failed";
/// ReportFile condition type, with a `storeRef` only: True once the report is in the store.
pub const CONDITION_DELIVERED: &str = "Delivered";

/// Where a report is in its life.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum FileState {
    InProgress,
    Ready,
    Failed,
}

impl FileState {
    /// READY and FAILED are final.
    pub fn is_finished(self) -> bool {
        matches!(self, FileState::Ready | FileState::Failed)
    }
}

/// Observed state of a ReportFile.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ReportFileStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// IN_PROGRESS, READY or FAILED.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<FileState>,
    /// Three conditions. `Complete` and `Failed` are the outcome, as a Job's: `Complete` is
    /// True once READY, `Failed` True once FAILED (both False, reason InProgress, before),
    /// so `kubectl wait --for=condition=Complete` (or `Failed`) waits for it. `Ready` is
    /// whether the download works now, with reasons: Pending (waiting for the backend or for
    /// the request to be accepted), InProgress (the backend is generating it), Ready (the
    /// Secret holds the download), Failed (the backend failed or refused the report),
    /// DeadlineExceeded (not READY within activeDeadlineSeconds), TooLarge (the report or
    /// its download is over the operator's size limit), UrlExpired (the download URL
    /// expired, or cannot be renewed now; the report stays Complete), SecretConflict (a
    /// Secret of the report's name that the operator does not own is in the way), Deleting
    /// (being deleted, its finalizer waits for a platform or a store; the message says which
    /// and until when at most); and
    /// KubernetesApiError, InternalError, ReconcileTimeout (the operator could not handle the
    /// object; retried with backoff). A FAILED report's `Failed` and `Complete`
    /// carry its reason: Failed, DeadlineExceeded or TooLarge. With a `storeRef`, a fourth:
    /// `Delivered`, True (reason Delivered) once the report is copied into the ReportStore,
    /// False while the copy is retried, with the reason: Unreachable, Unauthorized,
    /// BucketNotFound, CredentialsMissing, StoreNotFound, InvalidSpec, DestinationDenied,
    /// InvalidResponse (the store answered more than the operator reads), SourceUnavailable
    /// (the backend's download failed) or InvalidArchive; and, while no copy failed, Copying
    /// (the copy runs in the delivery pool) or Queued (it waits for a slot there: at most a
    /// few copies of one namespace run at once).
    #[serde(default)]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// The backend's id of this report.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_id: Option<String>,
    /// Set just before the backend is asked to generate the report and cleared once its id is
    /// recorded: if it is found set, the request may have reached the backend, so the report
    /// is looked up there before anything is generated again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub create_pending_since: Option<DateTime<Utc>>,
    /// When the backend accepted the request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub submit_time: Option<DateTime<Utc>>,
    /// When the backend generated the report.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generate_date: Option<DateTime<Utc>>,
    /// When the report became READY or FAILED.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_time: Option<DateTime<Utc>>,
    /// The report's file name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_name: Option<String>,
    /// The Secret holding the download URL (or content).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub download_secret_ref: Option<LocalObjectReference>,
    /// When the URL in the Secret stops working, if it expires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url_expires_at: Option<DateTime<Utc>>,
    /// The last `refresh-url` annotation value acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_url_refresh: Option<String>,
    /// The backend's reason for a FAILED report.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_reason: Option<String>,
    /// Requests made to the backend to generate this report (normally 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempts: Option<i32>,
    /// With a `storeRef`: the copy of the report in the ReportStore.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery: Option<Delivery>,
}

/// A report's copy in a ReportStore, recorded once its upload completed: what the copy wrote
/// is what retention `Delete` deletes, and nothing else.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Delivery {
    /// `s3://<bucket>/<key>` of the object the Secret points at (of an unpacked CONNECT
    /// archive, its report file).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    /// `s3://<bucket>/<key>` of every object the copy wrote (`location` among them; an
    /// unpacked CONNECT archive's files).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = MAX_DELIVERED_OBJECTS))]
    pub objects: Vec<String>,
    /// CONNECT: how the ZIP was stored (`Store`: as it is; `Extract`: one object per file).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connect_archive: Option<ConnectArchive>,
    /// Bytes in the object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<i64>,
    /// SHA-256 of the object's bytes, lower-case hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// When the copy completed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivered_time: Option<DateTime<Utc>>,
    /// Copies tried so far (failed ones included).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempts: Option<i32>,
    /// When the last try failed; the next waits 5 s after the first failure, doubling to
    /// 5 minutes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_failure_time: Option<DateTime<Utc>>,
    /// When the presigned URL in the Secret expires; it is re-minted before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url_expires_at: Option<DateTime<Utc>>,
}

/// The most objects one copy writes (an unpacked archive's files).
pub const MAX_DELIVERED_OBJECTS: usize = 100;
