//! ReportGenerator: a report definition; mirrors CloudBlue RDE's `RDEReportTemplate`.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{EventType, LocalObjectReference, Period, ReportFormat, SecretTemplate};

/// The most `activeDeadlineSeconds` and `startingDeadlineSeconds` may be: 30 days. More is no
/// use for a report, and an unbounded number overflows time arithmetic.
pub const MAX_DEADLINE_SECONDS: i64 = 2_592_000;
/// The most ReportFiles of one state a history limit may keep: room for several windows of a
/// SUPPLIER fan-out over [`MAX_ORGANIZATIONS`], with a bound on what one generator leaves behind.
pub const MAX_HISTORY_LIMIT: i32 = 1000;
/// The most SUPPLIER organizations one generator fans out to: each window makes one report per
/// organization.
pub const MAX_ORGANIZATIONS: usize = 100;

/// A report definition: what to report on, in which format, from which backend, and when.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "reporting.report-operator.io",
    version = "v1alpha1",
    kind = "ReportGenerator",
    plural = "reportgenerators",
    shortname = "rg",
    // Not "reports": any resource of that name (Kyverno's OpenReports) shadows the category.
    category = "reporting",
    namespaced,
    doc = "A report definition that mirrors CloudBlue RDE RDEReportTemplate: one-time, periodic or on-invoice reports from a ReportBackend.",
    status = "ReportGeneratorStatus",
    printcolumn = r#"{"name":"Type","type":"string","jsonPath":".spec.eventType"}"#,
    printcolumn = r#"{"name":"Backend","type":"string","jsonPath":".spec.backendRef.name"}"#,
    printcolumn = r#"{"name":"Format","type":"string","jsonPath":".spec.format"}"#,
    printcolumn = r#"{"name":"Suspend","type":"boolean","jsonPath":".spec.schedule.suspend"}"#,
    // A column cannot count the `status.active` list; this is the same number.
    printcolumn = r#"{"name":"Active","type":"integer","jsonPath":".status.reports.inProgress"}"#,
    printcolumn = r#"{"name":"Next Report","type":"date","jsonPath":".status.nextReportDate"}"#,
    printcolumn = r#"{"name":"Last Success","type":"date","jsonPath":".status.lastSuccessfulTime"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].reason"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
// ONETIME dates are required on every backend but FUSION (whose reports are snapshots), and the
// backend type is not known at admission: the operator refuses a ONETIME report without dates
// on the others. Here only the half-given window is refused.
#[x_kube(validation = Rule::new("self.eventType != 'ONETIME' || !has(self.parameters) || has(self.parameters.startDate) == has(self.parameters.endDate)").message("eventType ONETIME needs parameters.startDate and parameters.endDate together (FUSION snapshots take neither)"))]
#[x_kube(validation = Rule::new("self.eventType != 'PERIODIC' || (has(self.parameters) && has(self.parameters.period))").message("eventType PERIODIC needs parameters.period (P1D, P1W or P1M)"))]
pub struct ReportGeneratorSpec {
    /// The ReportBackend, in the same namespace, that generates the reports.
    pub backend_ref: LocalObjectReference,
    /// Report name. RDE: the template's commonName; CMP: a report name preconfigured on the
    /// platform; CONNECT, FUSION, SUPPLIER: a label for the generated reports.
    #[schemars(length(min = 1, max = 256))]
    pub common_name: String,
    /// ONETIME (one report for startDate..endDate), PERIODIC (one per period window) or
    /// ON_INVOICE (one per platform invoice; RDE and CMP only).
    pub event_type: EventType,
    /// File format; the backend's own list of formats is checked at reconcile time.
    pub format: ReportFormat,
    /// Ask the platform to e-mail the report (RDE). Default false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify_by_email: Option<bool>,
    /// What to report on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<ReportParameters>,
    /// When PERIODIC reports run: CronJob-style knobs. A knob the backend type cannot honour
    /// is refused with Ready=False reason UnsupportedSetting (RDE: all but the history limits;
    /// CMP: the same on ON_INVOICE and ONETIME generators).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<Schedule>,
    /// Labels and annotations for each report's Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_template: Option<SecretTemplate>,
    /// Seconds a report may stay IN_PROGRESS before it fails with reason DeadlineExceeded.
    /// Default 21600 (6 hours); at most 2592000 (30 days).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = MAX_DEADLINE_SECONDS))]
    pub active_deadline_seconds: Option<i64>,
    /// A ReportStore, in the same namespace, that each READY report is copied into; the
    /// report Secret then also holds the copy's presigned URL. Copied onto each ReportFile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store_ref: Option<LocalObjectReference>,
}

/// What a report covers. Which fields apply depends on the backend type.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.startDate) || !has(self.endDate) || timestamp(self.endDate) > timestamp(self.startDate)").message("parameters.endDate must be after parameters.startDate"))]
#[x_kube(validation = Rule::new("!has(self.startDate) || timestamp(self.startDate) >= timestamp('1970-01-01T00:00:00Z')").message("parameters.startDate must be in 1970 or later"))]
#[x_kube(validation = Rule::new("!has(self.endDate) || timestamp(self.endDate) >= timestamp('1970-01-01T00:00:00Z')").message("parameters.endDate must be in 1970 or later"))]
pub struct ReportParameters {
    /// ONETIME: first instant covered (RFC 3339); required except on FUSION, whose reports are
    /// snapshots of the data when they are taken. PERIODIC: optional backfill start; every
    /// window from this date on gets a report (not on FUSION, which cannot report on the past,
    /// nor on RDE: a template cannot backfill).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_date: Option<DateTime<Utc>>,
    /// ONETIME: last instant covered (RFC 3339), e.g. `2018-10-10T23:59:59Z`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_date: Option<DateTime<Utc>>,
    /// PERIODIC: window length, P1D (calendar day), P1W (ISO week) or P1M (calendar month).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub period: Option<Period>,
    /// CMP: customization name sent with the report request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256))]
    pub customization_name: Option<String>,
    /// CONNECT: report template id (`RT-…`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256))]
    pub template: Option<String>,
    /// CONNECT: the id of the template's date-range parameter, which gets the report's window
    /// as `{"after", "before"}` (Connect's date-range form). Default `date`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 128))]
    pub date_parameter: Option<String>,
    /// CONNECT: template parameters, passed through as given; at most 100.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("x-kubernetes-preserve-unknown-fields" = true, "maxProperties" = 100))]
    pub values: Option<BTreeMap<String, serde_json::Value>>,
    /// SUPPLIER: report type, e.g. REPORT_TYPE_TRIP_ACTIVITY.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256))]
    pub report_type: Option<String>,
    /// SUPPLIER: extra filters; the date range filter is added by the operator. At most 50.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 50))]
    pub filters: Option<Vec<SupplierFilter>>,
    /// SUPPLIER: child organization ids; one report per organization and window. At most 100.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = MAX_ORGANIZATIONS), inner(length(min = 1, max = 253)))]
    pub organizations: Option<Vec<String>>,
    /// FUSION: which group, distributor, reseller, tenant or subscription the report is about.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<FusionScope>,
    /// FUSION: licenses (a license download), phoneUsage or productUsage (SDRs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataset: Option<FusionDataset>,
}

/// A SUPPLIER report filter.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct SupplierFilter {
    /// Field to filter on.
    #[schemars(length(max = 256))]
    pub field: String,
    /// Operator, e.g. OPERATOR_IN or OPERATOR_IN_RANGE.
    #[schemars(length(max = 256))]
    pub operator: String,
    /// Values the operator applies to; at most 100.
    #[serde(default)]
    #[schemars(length(max = 100), inner(length(max = 1024)))]
    pub value: Vec<String>,
}

/// The FUSION object a report is about.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.level != 'subscription' || has(self.subscriptionId)").message("scope.level subscription needs scope.subscriptionId"))]
pub struct FusionScope {
    /// group, distributor, reseller, tenant or subscription (of a tenant).
    pub level: FusionLevel,
    /// UUID of the group, distributor, reseller or tenant.
    #[schemars(length(min = 1, max = 64))]
    pub uuid: String,
    /// Subscription index within the tenant, for level subscription.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub subscription_id: Option<i64>,
}

/// Level of a FUSION scope.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "camelCase")]
pub enum FusionLevel {
    Group,
    Distributor,
    Reseller,
    Tenant,
    Subscription,
}

/// FUSION report data set.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "camelCase")]
pub enum FusionDataset {
    Licenses,
    PhoneUsage,
    ProductUsage,
}

/// CronJob-style schedule for PERIODIC generators.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Schedule {
    /// Run times as a 5-field cron expression or a macro such as `@daily`. Each run reports on
    /// the latest complete window. Default: at each window boundary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 100))]
    pub cron: Option<String>,
    /// IANA time zone in which windows and cron times are computed. Default UTC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    pub time_zone: Option<String>,
    /// Stop creating new reports; reports already running continue. Default false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suspend: Option<bool>,
    /// A window whose run time is older than this many seconds is recorded as missed instead
    /// of run. Default: no deadline; at most 2592000 (30 days).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = MAX_DEADLINE_SECONDS))]
    pub starting_deadline_seconds: Option<i64>,
    /// Allow (windows may run at once) or Forbid (one at a time, the rest queued; none is
    /// skipped). Default Allow.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency_policy: Option<ConcurrencyPolicy>,
    /// For windows missed while the operator was down: All (default, oldest first), Latest
    /// (only the newest) or None.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub catch_up_policy: Option<CatchUpPolicy>,
    /// READY ReportFiles to keep; older ones are deleted with their Secrets. Default 3, at
    /// most 1000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = MAX_HISTORY_LIMIT))]
    pub successful_reports_history_limit: Option<i32>,
    /// FAILED ReportFiles to keep. Default 1, at most 1000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = MAX_HISTORY_LIMIT))]
    pub failed_reports_history_limit: Option<i32>,
}

/// Whether report windows may run at the same time.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum ConcurrencyPolicy {
    #[default]
    Allow,
    Forbid,
}

/// Which windows missed while the operator was down are caught up.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum CatchUpPolicy {
    #[default]
    All,
    Latest,
    None,
}

/// Counts of a generator's ReportFiles by status.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ReportCounts {
    /// ReportFiles still IN_PROGRESS.
    pub in_progress: i32,
    /// ReportFiles READY.
    pub ready: i32,
    /// ReportFiles FAILED.
    pub failed: i32,
}

/// Observed state of a ReportGenerator.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ReportGeneratorStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`: whether the generator is valid and producing reports. Reasons: ReportReady,
    /// ReportInProgress, ReportFailed (ONETIME), Scheduled, Throttled (PERIODIC;
    /// Throttled: the reports in progress are at the per-generator cap), LastReportFailed
    /// (PERIODIC and ON_INVOICE: the newest finished report, by window end then completion
    /// time, FAILED; Ready again once a newer one is READY), BackendNotFound, BackendNotReady,
    /// BackendError, UnsupportedEventType, UnsupportedFormat, UnsupportedPeriod,
    /// InvalidParameters, InvalidSchedule, BackfillTooLong, UnsupportedSetting (a setting the
    /// backend type cannot honour: the message names the field, the type and what to do, e.g.
    /// `parameters.startDate on FUSION`), FileConflict, Rejected, and
    /// the backend's own reasons when the operator cannot use it for the generator's calls (RDE
    /// templates, listing reports to mirror): Unauthorized, TwoFactorRequired,
    /// CredentialsMissing, InvalidSpec, DestinationDenied, Unreachable, InvalidResponse (see
    /// the ReportBackend); and KubernetesApiError, InternalError, ReconcileTimeout (the
    /// operator could not handle the object; retried with backoff).
    #[serde(default)]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// RDE: APS id of the RDEReportTemplate created on the platform.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_id: Option<String>,
    /// RDE: set just before the template is created on the platform and cleared once its id
    /// is recorded; if found set, the template is looked up before it is created again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub create_pending_since: Option<DateTime<Utc>>,
    /// RDE: the settings the template in `externalId` was made with, as sent to the platform
    /// (commonName, eventType, format, notifyByEmail, parameters). The platform cannot update
    /// a template, so when the spec no longer matches them a new template replaces it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template_settings: Option<String>,
    /// RDE: templates replaced by a newer one after an edit. Their reports are still mirrored;
    /// each is deleted on the platform once none of its reports is in progress.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub retired_templates: Vec<String>,
    /// When the next report is due.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_report_date: Option<DateTime<Utc>>,
    /// When a report was last created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_schedule_time: Option<DateTime<Utc>>,
    /// When a report last became READY.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_successful_time: Option<DateTime<Utc>>,
    /// When a report last FAILED.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_failure_time: Option<DateTime<Utc>>,
    /// When a window was last missed or skipped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_missed_time: Option<DateTime<Utc>>,
    /// End of the newest window that has a ReportFile: windows up to here are never created
    /// again, even after their ReportFiles are pruned by the history limits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_window_end: Option<DateTime<Utc>>,
    /// When the schedule was last evaluated with a run due (written at each run time, not
    /// between runs, so an idle generator costs no write): windows whose run time fell after
    /// it, while the operator was down, are caught up per `catchUpPolicy`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_schedule_check_time: Option<DateTime<Utc>>,
    /// RDE and CMP ON_INVOICE: generation time of the newest backend report mirrored; older
    /// ones are not mirrored again after the history limits delete their ReportFiles.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_mirrored_time: Option<DateTime<Utc>>,
    /// The last `run-now` annotation value acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_run_now: Option<String>,
    /// ReportFiles still IN_PROGRESS.
    #[serde(default)]
    pub active: Vec<LocalObjectReference>,
    /// ReportFiles by status.
    #[serde(default)]
    pub reports: ReportCounts,
}
