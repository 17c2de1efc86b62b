//! RDE: CloudBlue Commerce Reporting and Data Export over APS REST (seed 000).
//!
//! A generator is an `RDEReportTemplate` resource that the platform schedules itself; its
//! `reportFiles` collection holds the reports. `submit` creates the template and returns its
//! APS id, `find` looks it up with RQL by commonName and parameters (APS has no idempotency key),
//! `list` reads a template's reportFiles and `get` reads one report file by its APS id. Every
//! call is signed with two-legged OAuth 1.0a (HMAC-SHA1).

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Deserialize;
use serde_json::json;
use std::collections::HashSet;

use super::auth::{Credentials, OAuth1, rfc3986};
use super::http::{Call, HttpClient};
use super::{
    BackendError, Capabilities, DefaultLimits, Download, ListQuery, RemoteReport, ReportRequest, ReportState,
    ReportingBackend, de_time, known_download, seg, url_expiry,
};
use crate::api::{BackendType, EventType, Period, ReportBackendSpec, ReportFormat};

/// The template type of the seed's platform release (21.0 uses `/1.5`).
pub const DEFAULT_TEMPLATE_TYPE: &str = "http://www.odin.com/rde/report-template/1.1";

pub(super) const CAPABILITIES: Capabilities = Capabilities {
    formats: &[
        ReportFormat::Json,
        ReportFormat::Xml,
        ReportFormat::Csv,
        ReportFormat::Xlsx,
    ],
    event_types: &[EventType::Onetime, EventType::Periodic, EventType::OnInvoice],
    periods: &[Period::P1D, Period::P1M],
    platform_scheduled: true,
    polls_by_organization: false,
    file_in_answer: false,
    limits: DefaultLimits::NONE,
};

use super::capabilities::{Refusal, Setting};

/// The settings an RDE platform cannot honour (seed 000 documents no suspend flag, no update
/// of a template's schedule and no call that runs a template now): see
/// [`super::unsupported_setting`].
pub(super) const REFUSED: &[Refusal] = &[
    Refusal {
        settings: &[Setting::Suspend],
        event_types: super::capabilities::ALL_EVENT_TYPES,
        why: "an RDEReportTemplate has no suspend flag, so the platform would go on making reports; remove schedule.suspend, \
or delete the generator to stop its reports (its template is deleted with it)",
    },
    Refusal {
        settings: &[Setting::RunNow],
        event_types: super::capabilities::ALL_EVENT_TYPES,
        why: "the platform has no call that runs a template now (its periodic task runs on its own); remove the annotation",
    },
    Refusal {
        settings: &[
            Setting::Cron,
            Setting::TimeZone,
            Setting::StartingDeadline,
            Setting::ConcurrencyPolicy,
            Setting::CatchUpPolicy,
        ],
        event_types: super::capabilities::ALL_EVENT_TYPES,
        why: "the platform runs a template's reports on its own schedule (PERIODIC: once a day or month, each on the UTC day or \
month before) and takes no schedule settings; remove the setting",
    },
    Refusal {
        settings: &[Setting::StartDate, Setting::EndDate],
        event_types: &[EventType::Periodic, EventType::OnInvoice],
        why: "a template reports on the periods after it is made and cannot backfill; remove the date, and make a ONETIME \
generator for earlier dates",
    },
    Refusal {
        settings: &[Setting::Period],
        event_types: &[EventType::Onetime, EventType::OnInvoice],
        why: "only a PERIODIC template has a period; remove it",
    },
    Refusal {
        settings: &[
            Setting::CustomizationName,
            Setting::Template,
            Setting::Values,
            Setting::ReportType,
            Setting::Filters,
            Setting::Organizations,
            Setting::Scope,
            Setting::Dataset,
            Setting::DateParameter,
        ],
        event_types: super::capabilities::ALL_EVENT_TYPES,
        why: "an RDEReportTemplate has no such parameter (it belongs to another backend type); remove it",
    },
];

pub struct RdeBackend {
    http: HttpClient,
    auth: OAuth1,
    template_type: String,
}

/// The `aps` header of every APS resource.
#[derive(Debug, Deserialize)]
struct ApsMeta {
    id: String,
    #[serde(default)]
    status: Option<String>,
}

/// An RDEReportTemplate or one of its report files: they share most fields.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ApsResource {
    aps: ApsMeta,
    #[serde(default)]
    common_name: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    event_type: Option<String>,
    #[serde(default)]
    format: Option<String>,
    #[serde(default)]
    parameters: Option<RdeParameters>,
    #[serde(default, deserialize_with = "de_time")]
    generate_date: Option<DateTime<Utc>>,
    /// Report files only: PENDING, IN_PROGRESS, READY, FAILED.
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    file_path: Option<String>,
    /// Not documented; read if the platform says why a report failed.
    #[serde(default)]
    failed_reason: Option<String>,
    /// Templates only (PERIODIC): when the platform makes the next report.
    #[serde(default, deserialize_with = "de_time")]
    next_report_date: Option<DateTime<Utc>>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct RdeParameters {
    #[serde(default, deserialize_with = "de_time")]
    start_date: Option<DateTime<Utc>>,
    #[serde(default, deserialize_with = "de_time")]
    end_date: Option<DateTime<Utc>>,
    #[serde(default)]
    period: Option<String>,
}

fn event_type(s: &str) -> Option<EventType> {
    match s {
        "ONETIME" => Some(EventType::Onetime),
        // 21.0 adds DAILY and MONTHLY: periodic reports by another name.
        "PERIODIC" | "DAILY" | "MONTHLY" => Some(EventType::Periodic),
        "ON_INVOICE" => Some(EventType::OnInvoice),
        _ => None,
    }
}

fn period_name(p: Period) -> &'static str {
    match p {
        Period::P1D => "P1D",
        Period::P1W => "P1W",
        Period::P1M => "P1M",
    }
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// The template `req` makes, as sent to the platform (without its APS type).
fn template_body(req: &ReportRequest) -> Result<serde_json::Value, BackendError> {
    Ok(json!({
        "commonName": req.name,
        "eventType": req.event_type.as_str(),
        "format": req.format.upper(),
        "notifyByEmail": req.notify_by_email,
        "parameters": RdeBackend::parameters(req)?,
    }))
}

/// The settings of the template `req` makes, as one string to keep in the generator's status:
/// the platform documents no update of a template (seed 000 has only POST and DELETE), so a
/// generator whose settings changed gets a new template. Everything sent is in it, so that no
/// edit of the template's fields goes unseen.
pub fn template_settings(req: &ReportRequest) -> Result<String, BackendError> {
    Ok(template_body(req)?.to_string())
}

impl RdeBackend {
    pub(crate) fn new(
        http: HttpClient,
        spec: &ReportBackendSpec,
        creds: &Credentials<'_>,
    ) -> Result<Self, BackendError> {
        let auth = OAuth1::new(creds.required("consumerKey")?, creds.required("consumerSecret")?);
        let template_type = spec
            .rde
            .as_ref()
            .and_then(|r| r.template_type.clone())
            .filter(|t| !t.is_empty())
            .unwrap_or_else(|| DEFAULT_TEMPLATE_TYPE.to_string());
        Ok(RdeBackend {
            http,
            auth,
            template_type,
        })
    }

    /// `GET /aps/2/resources?<rql>`.
    fn rql_url(&self, rql: &str) -> url::Url {
        let mut url = self.http.url("/aps/2/resources");
        url.set_query(Some(rql));
        url
    }

    async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        url: url::Url,
        op: &'static str,
    ) -> Result<T, BackendError> {
        self.http.send(&Call::get(url, op), &self.auth).await?.json(op)
    }

    /// The template parameters we send, and compare against in `find`.
    fn parameters(req: &ReportRequest) -> Result<serde_json::Value, BackendError> {
        let p = &req.parameters;
        Ok(match req.event_type {
            EventType::Onetime => {
                let (start, end) = req.window()?;
                json!({"startDate": rfc3339(start), "endDate": rfc3339(end)})
            }
            EventType::Periodic => {
                let period = p
                    .period
                    .ok_or_else(|| BackendError::unsupported("PERIODIC without parameters.period"))?;
                json!({"period": period_name(period)})
            }
            EventType::OnInvoice => json!({}),
        })
    }

    fn matches(template: &ApsResource, req: &ReportRequest) -> bool {
        let params = template.parameters.as_ref();
        let same_window = match req.event_type {
            EventType::Onetime => {
                params.and_then(|p| p.start_date) == req.parameters.start_date
                    && params.and_then(|p| p.end_date) == req.parameters.end_date
            }
            EventType::Periodic => {
                params.and_then(|p| p.period.as_deref()) == req.parameters.period.map(period_name)
            }
            EventType::OnInvoice => true,
        };
        template.common_name.as_deref() == Some(req.name.as_str())
            && template.event_type.as_deref().and_then(event_type) == Some(req.event_type)
            && template
                .format
                .as_deref()
                .is_some_and(|f| f.eq_ignore_ascii_case(req.format.upper()))
            && same_window
    }

    fn remote(&self, r: ApsResource) -> RemoteReport {
        // Report files have a status; templates only their APS provisioning state.
        let state = match (r.status.as_deref(), r.aps.status.as_deref()) {
            (Some("READY"), _) => ReportState::Ready,
            (Some("FAILED"), _) => ReportState::Failed {
                reason: r.failed_reason.clone().unwrap_or_else(|| "FAILED".into()),
            },
            (Some(_), _) => ReportState::InProgress,
            (None, Some("aps:ready")) => ReportState::Ready,
            (None, _) => ReportState::InProgress,
        };
        let download = match (&state, r.file_path.as_deref()) {
            (ReportState::Ready, Some(path)) if !path.is_empty() => {
                // A path without a host is on the platform itself.
                let url = url::Url::parse(path).or_else(|_| self.http.url("/").join(path));
                url.ok().map(|u| Download::Url {
                    expires_at: url_expiry(u.as_str()),
                    url: u.to_string(),
                })
            }
            _ => None,
        };
        let params = r.parameters.unwrap_or_default();
        RemoteReport {
            id: r.aps.id,
            state,
            name: r.name.or(r.common_name),
            event_type: r.event_type.as_deref().and_then(event_type),
            start_date: params.start_date,
            end_date: params.end_date,
            generate_date: r.generate_date,
            format: r.format.as_deref().and_then(ReportFormat::parse),
            file_name: r
                .file_path
                .as_deref()
                .and_then(|p| p.rsplit('/').next())
                .filter(|n| !n.is_empty())
                .map(|n| n.split('?').next().unwrap_or(n).to_string()),
            download,
            next_report_date: r.next_report_date,
        }
    }
}

#[async_trait::async_trait]
impl ReportingBackend for RdeBackend {
    fn backend_type(&self) -> BackendType {
        BackendType::Rde
    }

    fn capabilities(&self) -> Capabilities {
        CAPABILITIES
    }

    async fn probe(&self) -> Result<(), BackendError> {
        let url = self.rql_url(&format!("implementing({}),limit(0,1)", self.template_type));
        let _: serde_json::Value = self.get_json(url, "probe").await?;
        Ok(())
    }

    async fn submit(&self, req: &ReportRequest) -> Result<RemoteReport, BackendError> {
        CAPABILITIES.check(BackendType::Rde, req)?;
        let mut body = template_body(req)?;
        body["aps"] = json!({"type": self.template_type});
        let response = self
            .http
            .send(
                &Call::create(self.http.url("/aps/2/resources"), "create", body),
                &self.auth,
            )
            .await?;
        let template: ApsResource = response.json("created template")?;
        Ok(self.remote(template))
    }

    async fn find(
        &self,
        req: &ReportRequest,
        taken: &HashSet<String>,
    ) -> Result<Option<RemoteReport>, BackendError> {
        let rql = format!(
            "implementing({}),eq(commonName,{})",
            self.template_type,
            rfc3986(&req.name)
        );
        let templates: Vec<ApsResource> = self.get_json(self.rql_url(&rql), "find").await?;
        Ok(templates
            .into_iter()
            .find(|t| Self::matches(t, req) && !taken.contains(&t.aps.id))
            .map(|t| self.remote(t)))
    }

    async fn get(&self, id: &str, _req: &ReportRequest) -> Result<RemoteReport, BackendError> {
        let file: ApsResource = self
            .get_json(self.http.url(&format!("/aps/2/resources/{}", seg(id)?)), "get")
            .await?;
        Ok(self.remote(file))
    }

    async fn download(&self, report: &RemoteReport, req: &ReportRequest) -> Result<Download, BackendError> {
        known_download(self, report, req).await
    }

    async fn list(&self, query: &ListQuery) -> Result<Vec<RemoteReport>, BackendError> {
        let template = query
            .template_id
            .as_deref()
            .ok_or_else(|| BackendError::unsupported("listing RDE reports without a template id"))?;
        let url = self
            .http
            .url(&format!("/aps/2/resources/{}/reportFiles", seg(template)?));
        let files: Vec<ApsResource> = self.get_json(url, "list").await?;
        Ok(files.into_iter().map(|f| self.remote(f)).collect())
    }

    async fn delete_template(&self, id: &str) -> Result<(), BackendError> {
        let url = self.http.url(&format!("/aps/2/resources/{}", seg(id)?));
        match self.http.send(&Call::delete(url, "delete"), &self.auth).await {
            // 204 done, 202 the platform finishes on its own; gone already is just as good.
            Ok(_) | Err(BackendError::NotFound { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }
}
