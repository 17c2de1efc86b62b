//! ReportBackend: a connection to one reporting API.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{LocalObjectReference, SecretKeySelector};

/// A connection to one reporting API: its type, base URL, credentials and limits.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "reporting.report-operator.io",
    version = "v1alpha1",
    kind = "ReportBackend",
    plural = "reportbackends",
    shortname = "rb",
    // Not "reports": any resource of that name (Kyverno's OpenReports) shadows the category.
    category = "reporting",
    namespaced,
    doc = "A connection to one reporting API: type, base URL, credentials Secret and limits.",
    status = "ReportBackendStatus",
    printcolumn = r#"{"name":"Type","type":"string","jsonPath":".spec.type"}"#,
    printcolumn = r#"{"name":"URL","type":"string","jsonPath":".spec.url","priority":1}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].reason"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.url.startsWith('http://') || self.url.startsWith('https://')").message("url must start with http:// or https://"))]
#[x_kube(validation = Rule::new("self.type != 'SUPPLIER' || (has(self.supplier) && has(self.supplier.organizationId) && has(self.supplier.tokenUrl))").message("a SUPPLIER backend needs supplier.organizationId and supplier.tokenUrl"))]
pub struct ReportBackendSpec {
    /// Which reporting API this is: RDE (CloudBlue Commerce Reporting and Data Export over APS),
    /// CMP (CloudBlue Commerce SimpleAPI /reports), CONNECT (CloudBlue Connect Reports),
    /// FUSION (Netaxis Fusion reporting) or SUPPLIER (asynchronous supplier offline reporting).
    #[serde(rename = "type")]
    pub type_: BackendType,
    /// Base URL of the API. A path prefix is kept on every call: RDE `https://host[/prefix]`,
    /// CMP `https://host/marketplace`, CONNECT `https://host/public/v1`, FUSION and SUPPLIER `https://host`.
    #[schemars(length(min = 1, max = 2048))]
    pub url: String,
    /// Secret in the same namespace holding the credentials; its keys depend on `type`
    /// (RDE consumerKey/consumerSecret; CMP subscriptionKey with username/password or token;
    /// CONNECT apiKey; FUSION username/password or accessToken/refreshToken; SUPPLIER clientId/clientSecret).
    pub credentials_secret_ref: LocalObjectReference,
    /// Settings for RDE backends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rde: Option<RdeSettings>,
    /// Settings for CMP backends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmp: Option<CmpSettings>,
    /// Settings for FUSION backends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fusion: Option<FusionSettings>,
    /// Settings for SUPPLIER backends (required for that type).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub supplier: Option<SupplierSettings>,
    /// Our own limits on calls to this backend, shared by every generator that uses it.
    /// Unset fields take the backend type's documented limits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<BackendLimits>,
    /// TLS settings for calls to this backend.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsSettings>,
}

/// The five supported reporting APIs.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum BackendType {
    Rde,
    Cmp,
    Connect,
    Fusion,
    Supplier,
}

impl BackendType {
    /// The name as written in `spec.type`.
    pub fn as_str(self) -> &'static str {
        match self {
            BackendType::Rde => "RDE",
            BackendType::Cmp => "CMP",
            BackendType::Connect => "CONNECT",
            BackendType::Fusion => "FUSION",
            BackendType::Supplier => "SUPPLIER",
        }
    }
}

/// RDE settings.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct RdeSettings {
    /// APS type id of RDEReportTemplate on this platform release.
    /// Default `http://www.odin.com/rde/report-template/1.1`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 256))]
    pub template_type: Option<String>,
}

/// CMP settings.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct CmpSettings {
    /// Marketplace sent when requesting a token. Default `us`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 256))]
    pub marketplace: Option<String>,
}

/// FUSION settings.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct FusionSettings {
    /// The DRaaS instance in every report path. Default `draas_v1`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 256))]
    pub draas_instance: Option<String>,
}

/// SUPPLIER settings.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct SupplierSettings {
    /// UUID of the supplier organization whose reports are generated (unless a generator
    /// fans out over child `parameters.organizations`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub organization_id: Option<String>,
    /// Absolute URL of the OAuth2 token endpoint (client credentials grant).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 2048))]
    pub token_url: Option<String>,
    /// OAuth2 scope to request. Default `solutions.suppliers.reports`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 1024))]
    pub scope: Option<String>,
    /// For how many seconds after a report is READY the operator re-mints its 60-second URL
    /// before it expires, so that the Secret always holds a live one. Later (or with 0) a URL
    /// is re-minted on the `refresh-url` annotation only, at any age. Each re-mint is one
    /// request a minute against the API's budget. Default 900 (15 minutes); at most 2592000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = MAX_KEEP_URL_FRESH_SECONDS))]
    pub keep_url_fresh_seconds: Option<i64>,
}

/// The longest `supplier.keepUrlFreshSeconds`: 30 days.
pub const MAX_KEEP_URL_FRESH_SECONDS: i64 = 2_592_000;
/// The default `supplier.keepUrlFreshSeconds`: 15 minutes.
pub const DEFAULT_KEEP_URL_FRESH_SECONDS: i64 = 900;

/// Client-side limits; unset fields take the backend type's documented defaults.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct BackendLimits {
    /// Reports in progress at once (SUPPLIER: per organization; default 6).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_in_flight: Option<i32>,
    /// Requests allowed per window (SUPPLIER default 600 per endpoint, CMP 60).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub requests_per_window: Option<i32>,
    /// Window length in seconds (SUPPLIER default 600, CMP 60).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub window_seconds: Option<i32>,
}

/// TLS settings.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct TlsSettings {
    /// A PEM CA bundle in a Secret, trusted in addition to the system roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_secret_ref: Option<SecretKeySelector>,
    /// Skip certificate verification. For tests only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub insecure_skip_verify: Option<bool>,
}

/// Observed state of a ReportBackend.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ReportBackendStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready` says whether the credentials work against the API; reasons
    /// Authenticated, CredentialsMissing, Unauthorized, TwoFactorRequired, Unreachable, InvalidSpec,
    /// InvalidResponse (an answer that is not the API's: malformed, too large, a redirect),
    /// DestinationDenied (the operator's outbound policy forbids the address); and
    /// KubernetesApiError, InternalError, ReconcileTimeout (the operator could not handle the
    /// object; retried with backoff).
    #[serde(default)]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
}
