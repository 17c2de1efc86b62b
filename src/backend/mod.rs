//! Clients of the five reporting APIs behind one trait, [`ReportingBackend`].
//!
//! [`connect`] builds the client of a ReportBackend from its spec, the data of its credentials
//! Secret, an optional CA bundle and the backend's [`Limiter`] (which the controller keeps
//! across client rebuilds, so that budgets and in-flight counts survive a credentials change).
//!
//! What each backend does for each operation is in `shared/BACKENDS.md`; the per-type notes are
//! in the module docs of [`rde`], [`cmp`], [`connect`](mod@connect), [`fusion`] and [`supplier`].
//! Every error is a [`BackendError`]; [`BackendError::action`] says what the controller does
//! about it. No message or log line holds a credential, a token or a signed URL's query.
//!
//! Every call goes through the operator's [`OutboundPolicy`] (in [`ClientOptions`]) and reads
//! at most a capped number of bytes of its answer ([`body`]).

mod auth;
pub mod body;
pub(crate) mod bridge;
mod capabilities;
pub mod cmp;
pub mod connect;
mod error;
pub mod fusion;
mod http;
pub mod policy;
pub mod ratelimit;
pub mod rde;
pub mod supplier;
pub mod transfer;

use std::collections::BTreeMap;
use std::collections::HashSet;
use std::fmt;
use std::future::Future;
use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::api::{self, BackendType, EventType, ReportFormat};

pub(crate) use auth::Credentials;
pub use body::{MAX_ERROR_BODY_BYTES, MAX_INLINE_BYTES, MAX_JSON_BYTES};
pub use capabilities::{Capabilities, Refusal, Setting, missing_parameter, unsupported_setting};
pub(crate) use error::redact_text;
pub use error::{BackendError, ErrorAction, redact_url};
pub use http::{ClientOptions, RetryPolicy};
pub use policy::{Denial, IpNet, OutboundPolicy};
pub use ratelimit::{Budget, DefaultLimits, Limiter, LimiterConfig};
pub use supplier::organization_of;

/// What the controller asks a backend for: one report, or (RDE) one report template.
#[derive(Debug, Clone, PartialEq)]
pub struct ReportRequest {
    /// Stable id of our request: `<namespace>/<ReportFile name>`, which holds its in-flight
    /// slot while an ambiguous create is settled.
    pub key: String,
    /// The commonName.
    pub name: String,
    pub event_type: EventType,
    pub format: ReportFormat,
    pub notify_by_email: bool,
    /// startDate/endDate/period and the backend-specific fields.
    pub parameters: api::ReportParameters,
    /// SUPPLIER: the organization to generate for (default: the backend's organizationId).
    pub organization: Option<String>,
    /// The report is copied into a ReportStore (`storeRef`): a file too large for a Secret is
    /// not a failure but left for the copy to stream (FUSION, [`Download::Streamed`]).
    pub stored: bool,
}

impl ReportRequest {
    /// The request a ReportFile stands for.
    pub fn for_report_file(namespace: &str, name: &str, spec: &api::ReportFileSpec) -> Self {
        ReportRequest {
            key: format!("{namespace}/{name}"),
            name: spec.name.clone(),
            event_type: spec.event_type,
            format: spec.format,
            notify_by_email: spec.notify_by_email.unwrap_or(false),
            parameters: spec.parameters.clone().unwrap_or_default(),
            organization: spec.organization.clone(),
            stored: spec.store_ref.is_some(),
        }
    }

    /// The report's window, which ONETIME and PERIODIC reports must have.
    pub(crate) fn window(&self) -> Result<(DateTime<Utc>, DateTime<Utc>), BackendError> {
        match (self.parameters.start_date, self.parameters.end_date) {
            (Some(start), Some(end)) => Ok((start, end)),
            _ => Err(BackendError::unsupported(
                "a report without parameters.startDate and parameters.endDate",
            )),
        }
    }
}

/// Where a report is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReportState {
    InProgress,
    Ready,
    /// Terminal, with the backend's reason.
    Failed {
        reason: String,
    },
}

impl ReportState {
    pub fn is_finished(&self) -> bool {
        !matches!(self, ReportState::InProgress)
    }
}

/// A report (RDE `submit`/`find`: a report template) as the backend describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct RemoteReport {
    pub id: String,
    pub state: ReportState,
    pub name: Option<String>,
    pub event_type: Option<EventType>,
    pub start_date: Option<DateTime<Utc>>,
    pub end_date: Option<DateTime<Utc>>,
    pub generate_date: Option<DateTime<Utc>>,
    pub file_name: Option<String>,
    /// The format the backend made the report in, where it says (RDE, CMP): a mirrored
    /// ReportFile describes the report, not the generator.
    pub format: Option<ReportFormat>,
    /// Set when READY and the API gave it already (CMP downloadUrl, RDE filePath, FUSION file).
    pub download: Option<Download>,
    /// RDE templates: when the platform makes the next report.
    pub next_report_date: Option<DateTime<Utc>>,
}

impl RemoteReport {
    pub(crate) fn new(id: impl Into<String>, state: ReportState) -> Self {
        RemoteReport {
            id: id.into(),
            state,
            name: None,
            event_type: None,
            start_date: None,
            end_date: None,
            generate_date: None,
            file_name: None,
            format: None,
            download: None,
            next_report_date: None,
        }
    }
}

/// Where the report's file is.
#[derive(Clone, PartialEq, Eq)]
pub enum Download {
    /// A URL, possibly signed (its query is the signature: never log it).
    Url {
        url: String,
        expires_at: Option<DateTime<Utc>>,
    },
    /// The file itself (FUSION).
    Inline { file_name: String, content: Vec<u8> },
    /// A file too large to hold (FUSION, with a ReportStore): only the copy into the store
    /// reads it, streamed ([`ReportingBackend::stream`]).
    Streamed { file_name: String },
}

/// A report's file as it arrives, for the copy into a ReportStore.
pub type FileStream = futures::stream::BoxStream<'static, Result<bytes::Bytes, BackendError>>;

impl fmt::Debug for Download {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Download::Url { url, expires_at } => f
                .debug_struct("Url")
                .field("url", &redact_url(url))
                .field("expires_at", expires_at)
                .finish(),
            Download::Inline { file_name, content } => f
                .debug_struct("Inline")
                .field("file_name", file_name)
                .field("bytes", &content.len())
                .finish(),
            Download::Streamed { file_name } => {
                f.debug_struct("Streamed").field("file_name", file_name).finish()
            }
        }
    }
}

/// Which reports `list` returns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListQuery {
    /// RDE: the template whose reportFiles to list (required).
    pub template_id: Option<String>,
    /// CMP, CONNECT: the report name.
    pub name: Option<String>,
    /// CMP: the report type (ON_INVOICE for invoice reports).
    pub event_type: Option<EventType>,
    /// CMP: only reports in this format (the generator's: its `format` is honoured, not
    /// ignored).
    pub format: Option<ReportFormat>,
    /// CMP (required): the first and last day of the period asked about.
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    /// SUPPLIER: the organization (default: the backend's).
    pub organization: Option<String>,
}

/// One client of one reporting API.
#[async_trait::async_trait]
pub trait ReportingBackend: Send + Sync {
    fn backend_type(&self) -> BackendType;
    fn capabilities(&self) -> Capabilities;
    /// Checks the credentials (and that the API answers) for the ReportBackend's Ready.
    async fn probe(&self) -> Result<(), BackendError>;
    /// Asks for one report (RDE: creates the RDEReportTemplate and returns its id as the
    /// report id). On [`BackendError::Ambiguous`] call `find` before submitting again.
    async fn submit(&self, req: &ReportRequest) -> Result<RemoteReport, BackendError>;
    /// Looks the request up after an ambiguous create (RDE: the template by commonName and
    /// parameters). Reports whose id is in `taken` belong to other requests of this operator
    /// that look the same: they are never returned, so that twins cannot adopt each other's.
    async fn find(
        &self,
        req: &ReportRequest,
        taken: &HashSet<String>,
    ) -> Result<Option<RemoteReport>, BackendError>;
    /// The state of one report (RDE: a report file by its APS id). A finished report no longer
    /// counts against its organization's in-flight cap.
    async fn get(&self, id: &str, req: &ReportRequest) -> Result<RemoteReport, BackendError>;
    /// The report's file: a URL (minted afresh where the API can: SUPPLIER) or the file itself.
    async fn download(&self, report: &RemoteReport, req: &ReportRequest) -> Result<Download, BackendError>;
    /// The report's file as a stream, for the copy into a ReportStore, where the answer to
    /// the request is the file itself ([`Capabilities::file_in_answer`]), which is then asked
    /// for again; others give their file behind the [`download`](Self::download).
    async fn stream(&self, _req: &ReportRequest) -> Result<FileStream, BackendError> {
        Err(BackendError::unsupported(format!(
            "{} files are downloaded, not streamed from the answer",
            self.backend_type().as_str()
        )))
    }
    /// RDE: a template's reportFiles; CMP: reports by name/type/from/to (ON_INVOICE mirroring);
    /// CONNECT: reports by name; SUPPLIER: an organization's reports.
    async fn list(&self, query: &ListQuery) -> Result<Vec<RemoteReport>, BackendError>;
    /// RDE: deletes a report template (already gone is success); others: Unsupported.
    async fn delete_template(&self, _id: &str) -> Result<(), BackendError> {
        Err(BackendError::unsupported(format!(
            "{} has no report templates",
            self.backend_type().as_str()
        )))
    }
    /// CONNECT: removes a report (already gone is success); others keep no reports the
    /// operator may remove: Unsupported.
    async fn delete_report(&self, _id: &str) -> Result<(), BackendError> {
        Err(BackendError::unsupported(format!(
            "removing reports on {}",
            self.backend_type().as_str()
        )))
    }
}

/// The download the report came with, or the one a fresh `get` gives (RDE filePath, CMP
/// downloadUrl, FUSION file).
pub(crate) async fn known_download(
    backend: &dyn ReportingBackend,
    report: &RemoteReport,
    req: &ReportRequest,
) -> Result<Download, BackendError> {
    if let Some(d) = &report.download {
        return Ok(d.clone());
    }
    let fresh = backend.get(&report.id, req).await?;
    match (fresh.state, fresh.download) {
        (_, Some(d)) => Ok(d),
        (ReportState::Ready, None) => Err(BackendError::protocol(
            "the report is READY but has no download location",
        )),
        (state, None) => Err(BackendError::protocol(format!(
            "the report is not READY but {state:?}"
        ))),
    }
}

/// Builds the client of a ReportBackend with default timeouts and retries and the strict
/// default [`OutboundPolicy`]; [`connect_with_options`] takes the operator's policy.
pub fn connect(
    spec: &api::ReportBackendSpec,
    credentials: &BTreeMap<String, Vec<u8>>,
    ca_pem: Option<&[u8]>,
    limiter: Arc<Limiter>,
) -> Result<Arc<dyn ReportingBackend>, BackendError> {
    connect_with_options(spec, credentials, ca_pem, limiter, &ClientOptions::default())
}

/// [`connect`] with explicit timeouts, retries and outbound policy (`options.policy`): the
/// policy refuses http:// URLs and `spec.tls.insecureSkipVerify` here, unless it allows
/// them, and denied destinations on every call.
pub fn connect_with_options(
    spec: &api::ReportBackendSpec,
    credentials: &BTreeMap<String, Vec<u8>>,
    ca_pem: Option<&[u8]>,
    limiter: Arc<Limiter>,
    options: &ClientOptions,
) -> Result<Arc<dyn ReportingBackend>, BackendError> {
    let creds = auth::Credentials(credentials);
    let http = http::HttpClient::for_spec(spec, ca_pem, limiter, options, creds.all_values())?;
    Ok(match spec.type_ {
        BackendType::Rde => Arc::new(rde::RdeBackend::new(http, spec, &creds)?),
        BackendType::Cmp => Arc::new(cmp::CmpBackend::new(http, spec, &creds)?),
        BackendType::Connect => Arc::new(connect::ConnectBackend::new(http, &creds)?),
        BackendType::Fusion => Arc::new(fusion::FusionBackend::new(http, spec, &creds)?),
        BackendType::Supplier => Arc::new(supplier::SupplierBackend::new(http, spec, &creds)?),
    })
}

/// Runs a create under an in-flight slot of `organization`: the slot goes to the new report
/// while it runs, stays reserved when the create is ambiguous (until `find` settles it), and
/// is given back on any other failure.
pub(crate) async fn create_in_slot<F>(
    limiter: &Limiter,
    organization: &str,
    key: &str,
    create: F,
) -> Result<RemoteReport, BackendError>
where
    F: Future<Output = Result<RemoteReport, BackendError>>,
{
    let reservation = limiter.reserve(organization, key)?;
    match create.await {
        Ok(report) => {
            reservation.commit(&report.id, !report.state.is_finished());
            Ok(report)
        }
        Err(e @ BackendError::Ambiguous { .. }) => {
            reservation.keep_pending();
            Err(e)
        }
        Err(e) => Err(e),
    }
}

/// Keeps the in-flight count in step with what `get` or `find` saw.
pub(crate) fn track(limiter: &Limiter, organization: &str, report: &RemoteReport) {
    if report.state.is_finished() {
        limiter.release(&report.id);
    } else if limiter.config().max_in_flight.is_some() {
        limiter.note_in_flight(organization, &report.id);
    }
}

/// After `find`: a found running report takes over the ambiguous create's slot.
pub(crate) fn settle_find(limiter: &Limiter, organization: &str, key: &str, found: &Option<RemoteReport>) {
    let running = found
        .as_ref()
        .filter(|r| !r.state.is_finished())
        .map(|r| r.id.as_str());
    limiter.adopt(organization, key, running);
}

/// One path segment, percent-encoded (ids come from the backend or a spec). An empty id, "."
/// or ".." would not name one object: the URL would be resolved to another path, and "%2E"
/// is no way out (the URL standard reads it as a dot too), so they are refused. A literal
/// "%2e" is safe: its "%" is encoded.
pub(crate) fn seg(s: &str) -> Result<String, BackendError> {
    if matches!(s, "" | "." | "..") {
        return Err(BackendError::unsupported(format!(
            "the id {s:?} as a URL path segment"
        )));
    }
    Ok(auth::rfc3986(s))
}

/// Parses the timestamps the APIs write (RFC 3339, with or without fraction or zone).
pub(crate) fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Utc));
    }
    chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f")
        .ok()
        .map(|t| t.and_utc())
}

/// The expiry a signed storage URL carries in its query: `se` (Azure SAS, as CMP's and
/// RDE's storage) or `expires` / `Expires` (epoch seconds).
pub(crate) fn url_expiry(url: &str) -> Option<DateTime<Utc>> {
    let parsed = url::Url::parse(url).ok()?;
    parsed.query_pairs().find_map(|(k, v)| match k.as_ref() {
        "se" => parse_time(&v).or_else(|| {
            chrono::NaiveDate::parse_from_str(&v, "%Y-%m-%d")
                .ok()
                .and_then(|d| d.and_hms_opt(0, 0, 0))
                .map(|t| t.and_utc())
        }),
        "expires" | "Expires" => v.parse::<i64>().ok().and_then(|s| DateTime::from_timestamp(s, 0)),
        _ => None,
    })
}

/// Serde helper: an optional timestamp in whatever form the API writes it.
pub(crate) fn de_time<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<DateTime<Utc>>, D::Error> {
    let raw: Option<String> = serde::Deserialize::deserialize(d)?;
    Ok(raw.as_deref().filter(|s| !s.is_empty()).and_then(parse_time))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn download_debug_hides_the_signature() {
        let d = Download::Url {
            url: "https://s/f.csv?sig=SECRET".into(),
            expires_at: None,
        };
        let text = format!("{d:?}");
        assert!(!text.contains("SECRET"), "{text}");
        let d = Download::Inline {
            file_name: "f.json".into(),
            content: b"{\"secret\":1}".to_vec(),
        };
        assert!(!format!("{d:?}").contains("secret\""));
    }

    #[test]
    fn path_segments_stay_one_segment() {
        assert_eq!(seg("RP-1").expect("plain"), "RP-1");
        assert_eq!(seg("a/b?c#d").expect("encoded"), "a%2Fb%3Fc%23d");
        assert_eq!(seg("...").expect("three dots are a name"), "...");
        assert_eq!(seg("%2e").expect("a literal percent is encoded"), "%252e");
        for bad in ["", ".", ".."] {
            assert!(
                matches!(seg(bad), Err(BackendError::Unsupported { .. })),
                "{bad:?}"
            );
        }
        // What the refusal prevents: set_path resolves the segment away.
        let mut url = url::Url::parse("https://h/api").expect("url");
        url.set_path(&format!("/api/reports/{}/download", auth::rfc3986("..")));
        assert_eq!(url.path(), "/api/download");
    }

    #[test]
    fn times_in_api_forms() {
        let want = DateTime::parse_from_rfc3339("2019-11-07T17:02:59Z")
            .expect("time")
            .with_timezone(&Utc);
        assert_eq!(parse_time("2019-11-07T17:02:59.000Z"), Some(want));
        assert_eq!(parse_time("2019-11-07T17:02:59Z"), Some(want));
        assert_eq!(parse_time("2019-11-07T18:02:59+01:00"), Some(want));
        assert_eq!(parse_time("2019-11-07T17:02:59"), Some(want));
        assert_eq!(parse_time("yesterday"), None);
    }

    #[test]
    fn signed_urls_say_when_they_expire() {
        let want = parse_time("2020-02-19T12:52:20Z");
        assert_eq!(
            url_expiry("https://s/c/f.json?sig=x&se=2020-02-19T12%3A52%3A20Z&sp=r"),
            want
        );
        assert_eq!(
            url_expiry("https://s/c/f.json?Expires=1582116740&Signature=x"),
            want
        );
        assert_eq!(url_expiry("https://s/c/f.json?sig=x"), None);
    }
}
