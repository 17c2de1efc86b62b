//! SUPPLIER: the asynchronous offline reporting API of seed 004.
//!
//! OAuth2 client credentials at the separate token URL (tokens cached until shortly before
//! they expire and renewed on 401: the token endpoint allows about 100 requests an hour).
//! `submit` generates a report for one organization and window (`dateRange` as epoch-ms
//! strings), `get` polls it, `download` mints a signed URL that works for 60 seconds (so the
//! controller asks again whenever it needs one). At most 6 reports per organization may be in
//! progress: `submit` takes a slot of the [`Limiter`](super::Limiter) first and fails with
//! [`BackendError::InFlightLimit`] when there is none. With no idempotency key, `find` lists the
//! organization's reports (newest first) and matches reportType and range.
//!
//! Polls share listings: `get` answers from the organization's newest listing when it is
//! under [`LISTING_FRESH`] old and lists again otherwise, one poll at a time per organization.
//! The six reports of an organization polled together cost one request, not six, which is
//! what lets a large fan-out poll often within 600 requests per 10 minutes.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer};
use serde_json::json;

use super::auth::{BearerAuth, Credentials, Secret, TokenSource, Tokens, token_refused};
use super::capabilities::{Refusal, Setting};
use super::http::{Body, Call, HttpClient, NoAuth, parse_base_url};
use super::{
    BackendError, Budget, Capabilities, DefaultLimits, Download, ListQuery, RemoteReport, ReportRequest,
    ReportState, ReportingBackend, create_in_slot, parse_time, seg, settle_find, track, url_expiry,
};
use crate::api::{BackendType, EventType, Period, ReportBackendSpec, ReportFormat, ReportParameters};

/// Endpoint name under which token requests are counted.
const TOKEN_ENDPOINT: &str = "token";
/// The token endpoint of SUPPLIER's OAuth2 server allows about 100 requests an hour.
const TOKEN_BUDGET: Budget = Budget::new(100, Duration::from_secs(3600));

/// Signed URLs work this long.
pub const URL_LIFETIME: Duration = Duration::from_secs(60);

pub(super) const CAPABILITIES: Capabilities = Capabilities {
    formats: &[ReportFormat::Csv],
    event_types: &[EventType::Onetime, EventType::Periodic],
    periods: &[Period::P1D, Period::P1W, Period::P1M],
    platform_scheduled: false,
    polls_by_organization: true,
    file_in_answer: false,
    // 600 requests per 10 minutes on each endpoint, tokens 100 an hour, and 6 reports in
    // progress per organization.
    limits: DefaultLimits {
        budgets: &[Budget::new(600, Duration::from_secs(600))],
        per_endpoint: true,
        endpoint_budgets: &[(TOKEN_ENDPOINT, &[TOKEN_BUDGET])],
        max_in_flight: Some(6),
    },
};

/// What a SUPPLIER generator cannot ask for (see [`super::capabilities::unsupported_setting`]).
pub(super) const REFUSED: &[Refusal] = &super::capabilities::requested_by_operator(
    &[
        Setting::CustomizationName,
        Setting::Template,
        Setting::DateParameter,
        Setting::Values,
        Setting::Scope,
        Setting::Dataset,
    ],
    "a supplier report request has no such parameter (it belongs to another backend type); remove it",
    "the supplier API cannot e-mail a report (only RDE can); remove notifyByEmail",
);

const DEFAULT_SCOPE: &str = "solutions.suppliers.reports";
/// Page size of report listings (the API's page_size).
const PAGE_SIZE: u32 = 100;
/// Pages `find` and `list` read at most: the newest reports come first.
const MAX_PAGES: usize = 10;
/// How old a listing may be to answer a poll: half a second, so that the polls of one tick of
/// the controller's poll grid (`controller::file::poll::next_tick`, every second at the
/// quickest) share a listing and a poll is never answered by the tick before (which would see
/// a finished report a tick late).
const LISTING_FRESH: Duration = Duration::from_millis(500);

pub struct SupplierBackend {
    http: HttpClient,
    auth: BearerAuth<ClientCredentials>,
    organization: String,
    /// Per organization, its newest listing (first page), behind a lock that makes the polls
    /// of one organization wait for one listing rather than each make their own.
    listings: std::sync::Mutex<HashMap<String, Arc<tokio::sync::Mutex<Option<Listing>>>>>,
}

/// One organization's reports as listed at `taken`.
struct Listing {
    taken: Instant,
    reports: Vec<SupplierReport>,
}

struct ClientCredentials {
    token_url: url::Url,
    client_id: Secret,
    client_secret: Secret,
    scope: String,
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
    #[serde(default)]
    expires_in: Option<u64>,
}

#[async_trait::async_trait]
impl TokenSource for ClientCredentials {
    async fn fetch(&self, http: &HttpClient, _: Option<&Tokens>) -> Result<Tokens, BackendError> {
        let form = Body::Form(vec![
            ("grant_type", "client_credentials".into()),
            ("client_id", self.client_id.expose().into()),
            ("client_secret", self.client_secret.expose().into()),
            ("scope", self.scope.clone()),
        ]);
        let call = Call::post_idempotent(self.token_url.clone(), TOKEN_ENDPOINT, form);
        let answer: TokenAnswer = http
            .send(&call, &NoAuth)
            .await
            .map_err(token_refused)?
            .json("token")?;
        Ok(Tokens::expiring(
            Secret::new(answer.access_token),
            answer.expires_in.map(Duration::from_secs),
            None,
        ))
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SupplierReport {
    id: String,
    #[serde(default)]
    file_name: Option<String>,
    #[serde(default)]
    report_type: Option<String>,
    #[serde(default, deserialize_with = "de_instant")]
    start_time: Option<DateTime<Utc>>,
    #[serde(default, deserialize_with = "de_instant")]
    end_time: Option<DateTime<Utc>>,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    failed_reason: Option<String>,
    #[serde(default, deserialize_with = "de_instant")]
    completed_at: Option<DateTime<Utc>>,
}

#[derive(Deserialize)]
struct OneReport {
    report: SupplierReport,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ReportPage {
    #[serde(default)]
    report: Vec<SupplierReport>,
    #[serde(default)]
    pagination_result: Option<Pagination>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Pagination {
    #[serde(default)]
    next_page_token: Option<String>,
}

#[derive(Deserialize)]
struct LinkAnswer {
    data: LinkData,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct LinkData {
    signed_url: SignedUrl,
}

#[derive(Deserialize)]
struct SignedUrl {
    value: String,
}

/// A time written as RFC 3339, or as epoch milliseconds in a string or a number (as the
/// dateRange filter takes them).
fn de_instant<'de, D: Deserializer<'de>>(d: D) -> Result<Option<DateTime<Utc>>, D::Error> {
    Ok(match Option::<serde_json::Value>::deserialize(d)? {
        Some(serde_json::Value::Number(n)) => n.as_i64().and_then(DateTime::from_timestamp_millis),
        Some(serde_json::Value::String(s)) => match s.parse::<i64>() {
            Ok(ms) => DateTime::from_timestamp_millis(ms),
            Err(_) => parse_time(&s),
        },
        _ => None,
    })
}

impl SupplierReport {
    fn into_remote(self) -> RemoteReport {
        let state = match self.status.as_deref() {
            Some("REPORT_STATUS_COMPLETED") => ReportState::Ready,
            Some("REPORT_STATUS_FAILED") => ReportState::Failed {
                reason: self
                    .failed_reason
                    .filter(|r| !r.is_empty() && r != "REPORT_GENERATION_FAILED_REASON_NONE")
                    .unwrap_or_else(|| "REPORT_STATUS_FAILED".into()),
            },
            _ => ReportState::InProgress,
        };
        RemoteReport {
            name: self.report_type,
            start_date: self.start_time,
            end_date: self.end_time,
            generate_date: self.completed_at,
            file_name: self.file_name.filter(|n| !n.is_empty()),
            ..RemoteReport::new(self.id, state)
        }
    }
}

/// The report type to generate, or (unset or empty) how
/// [`missing_parameter`](super::missing_parameter) names it.
pub(super) fn report_type(params: &ReportParameters) -> Result<&str, &'static str> {
    params
        .report_type
        .as_deref()
        .filter(|t| !t.is_empty())
        .ok_or("parameters.reportType (e.g. REPORT_TYPE_TRIP_ACTIVITY)")
}

fn required_report_type(req: &ReportRequest) -> Result<&str, BackendError> {
    report_type(&req.parameters)
        .map_err(|_| BackendError::unsupported("a SUPPLIER report without parameters.reportType"))
}

/// The organization a request for the SUPPLIER backend `spec` is for: `organization`, or
/// (unset or empty) the backend's `supplier.organizationId`. The in-flight cap counts per
/// organization, so whoever counts reports must pick it as the backend does.
pub fn organization_of<'a>(spec: &'a ReportBackendSpec, organization: Option<&'a str>) -> &'a str {
    let default = spec
        .supplier
        .as_ref()
        .and_then(|s| s.organization_id.as_deref())
        .unwrap_or_default();
    chosen_organization(organization, default)
}

fn chosen_organization<'a>(requested: Option<&'a str>, default: &'a str) -> &'a str {
    requested.filter(|o| !o.is_empty()).unwrap_or(default)
}

impl SupplierBackend {
    pub(crate) fn new(
        http: HttpClient,
        spec: &ReportBackendSpec,
        creds: &Credentials<'_>,
    ) -> Result<Self, BackendError> {
        let settings = spec.supplier.clone().unwrap_or_default();
        let organization = settings
            .organization_id
            .filter(|o| !o.is_empty())
            .ok_or_else(|| BackendError::InvalidSpec {
                message: "a SUPPLIER backend needs supplier.organizationId".into(),
            })?;
        let token_url = settings
            .token_url
            .as_deref()
            .filter(|u| !u.is_empty())
            .ok_or_else(|| BackendError::InvalidSpec {
                message: "a SUPPLIER backend needs supplier.tokenUrl".into(),
            })?;
        let source = ClientCredentials {
            token_url: parse_base_url(token_url, "supplier.tokenUrl", http.policy())?,
            client_id: creds.required("clientId")?,
            client_secret: creds.required("clientSecret")?,
            scope: settings
                .scope
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| DEFAULT_SCOPE.into()),
        };
        Ok(SupplierBackend {
            http,
            auth: BearerAuth::new(source, None, Vec::new()),
            organization,
            listings: Default::default(),
        })
    }

    fn org<'a>(&'a self, requested: Option<&'a str>) -> &'a str {
        chosen_organization(requested, &self.organization)
    }

    /// Report `id` of `org` from a listing under [`LISTING_FRESH`] old (listing again if there
    /// is none); `None` when the first page does not hold it.
    async fn listed_report(&self, org: &str, id: &str) -> Result<Option<SupplierReport>, BackendError> {
        let slot = {
            let mut listings = self.listings.lock().unwrap_or_else(|p| p.into_inner());
            listings.entry(org.to_string()).or_default().clone()
        };
        let mut listing = slot.lock().await;
        let fresh = listing
            .as_ref()
            .is_some_and(|l| l.taken.elapsed() < LISTING_FRESH);
        // A report submitted after the listing was taken is not in it: list again.
        let listed = listing
            .as_ref()
            .is_some_and(|l| l.reports.iter().any(|r| r.id == id));
        if !(fresh && listed) {
            let taken = Instant::now();
            let reports = self.reports(org, PAGE_SIZE, 1, "list").await?;
            *listing = Some(Listing { taken, reports });
        }
        Ok(listing
            .as_ref()
            .and_then(|l| l.reports.iter().find(|r| r.id == id).cloned()))
    }

    fn reports_url(&self, org: &str, tail: &str) -> Result<url::Url, BackendError> {
        Ok(self.http.url(&format!(
            "/v1/vehicle-suppliers/suppliers/{}/reports{tail}",
            seg(org)?
        )))
    }

    /// The organization's reports, newest first, at most `pages` pages of `page_size`.
    async fn reports(
        &self,
        org: &str,
        page_size: u32,
        pages: usize,
        op: &'static str,
    ) -> Result<Vec<SupplierReport>, BackendError> {
        let mut all = Vec::new();
        let mut token: Option<String> = None;
        for _ in 0..pages {
            let mut url = self.reports_url(org, "")?;
            {
                let mut q = url.query_pairs_mut();
                q.append_pair("page_size", &page_size.to_string());
                if let Some(t) = &token {
                    q.append_pair("page_token", t);
                }
            }
            let page: ReportPage = self
                .http
                .send(&Call::get(url, op), &self.auth)
                .await?
                .json("report list")?;
            all.extend(page.report);
            token = page
                .pagination_result
                .and_then(|p| p.next_page_token)
                .filter(|t| !t.is_empty());
            if token.is_none() {
                break;
            }
        }
        Ok(all)
    }
}

#[async_trait::async_trait]
impl ReportingBackend for SupplierBackend {
    fn backend_type(&self) -> BackendType {
        BackendType::Supplier
    }

    fn capabilities(&self) -> Capabilities {
        CAPABILITIES
    }

    async fn probe(&self) -> Result<(), BackendError> {
        self.reports(&self.organization, 1, 1, "list").await.map(drop)
    }

    async fn submit(&self, req: &ReportRequest) -> Result<RemoteReport, BackendError> {
        CAPABILITIES.check(BackendType::Supplier, req)?;
        let (start, end) = req.window()?;
        let org = self.org(req.organization.as_deref());
        let mut filters = vec![json!({
            "field": "dateRange",
            "operator": "OPERATOR_IN_RANGE",
            "value": [start.timestamp_millis().to_string(), end.timestamp_millis().to_string()],
        })];
        for f in req.parameters.filters.iter().flatten() {
            filters.push(json!({"field": f.field, "operator": f.operator, "value": f.value}));
        }
        let body = json!({"reportType": required_report_type(req)?, "filters": filters});
        let call = Call::create(self.reports_url(org, "")?, "generate", body);
        create_in_slot(self.http.limiter(), org, &req.key, async {
            let created: OneReport = self
                .http
                .send(&call, &self.auth)
                .await?
                .json("generated report")?;
            Ok(created.report.into_remote())
        })
        .await
    }

    async fn find(
        &self,
        req: &ReportRequest,
        taken: &HashSet<String>,
    ) -> Result<Option<RemoteReport>, BackendError> {
        let (start, end) = req.window()?;
        let wanted_type = required_report_type(req)?;
        let org = self.org(req.organization.as_deref());
        let ms = |t: Option<DateTime<Utc>>| t.map(|t| t.timestamp_millis());
        let found = self
            .reports(org, PAGE_SIZE, MAX_PAGES, "list")
            .await?
            .into_iter()
            .find(|r| {
                r.report_type.as_deref() == Some(wanted_type)
                    && !taken.contains(&r.id)
                    && ms(r.start_time) == Some(start.timestamp_millis())
                    && ms(r.end_time) == Some(end.timestamp_millis())
            })
            .map(SupplierReport::into_remote);
        settle_find(self.http.limiter(), org, &req.key, &found);
        Ok(found)
    }

    /// From the organization's shared listing; a report too old to be on its first page is
    /// asked for alone.
    async fn get(&self, id: &str, req: &ReportRequest) -> Result<RemoteReport, BackendError> {
        let org = self.org(req.organization.as_deref());
        let report = match self.listed_report(org, id).await? {
            Some(listed) => listed,
            None => {
                let url = self.reports_url(org, &format!("/{}", seg(id)?))?;
                let one: OneReport = self
                    .http
                    .send(&Call::get(url, "get"), &self.auth)
                    .await?
                    .json("report")?;
                one.report
            }
        };
        let report = report.into_remote();
        track(self.http.limiter(), org, &report);
        Ok(report)
    }

    /// A new signed URL each time (they last 60 seconds).
    async fn download(&self, report: &RemoteReport, req: &ReportRequest) -> Result<Download, BackendError> {
        let org = self.org(req.organization.as_deref());
        let url = self.reports_url(org, &format!("/{}/link", seg(&report.id)?))?;
        // The URL's clock starts before we ask, so the expiry is never later than the real one.
        let asked = Utc::now();
        let link: LinkAnswer = self
            .http
            .send(&Call::post_idempotent(url, "link", Body::Empty), &self.auth)
            .await?
            .json("report link")?;
        let lifetime =
            chrono::Duration::from_std(URL_LIFETIME).unwrap_or_else(|_| chrono::Duration::seconds(60));
        // The documented 60 seconds, or sooner if the signed URL itself says so.
        let documented = asked + lifetime;
        let expires_at = url_expiry(&link.data.signed_url.value).map_or(documented, |e| e.min(documented));
        Ok(Download::Url {
            url: link.data.signed_url.value,
            expires_at: Some(expires_at),
        })
    }

    async fn list(&self, query: &ListQuery) -> Result<Vec<RemoteReport>, BackendError> {
        let org = self.org(query.organization.as_deref());
        Ok(self
            .reports(org, PAGE_SIZE, MAX_PAGES, "list")
            .await?
            .into_iter()
            .map(SupplierReport::into_remote)
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_without_an_organization_are_for_the_backends() {
        let spec: ReportBackendSpec = serde_json::from_value(json!({
            "type": "SUPPLIER", "url": "https://x", "credentialsSecretRef": {"name": "c"},
            "supplier": {"organizationId": "org-default"}
        }))
        .expect("spec");
        assert_eq!(organization_of(&spec, Some("org-1")), "org-1");
        assert_eq!(organization_of(&spec, None), "org-default");
        assert_eq!(
            organization_of(&spec, Some("")),
            "org-default",
            "an empty organization is unset"
        );
    }

    #[test]
    fn reports_in_either_time_form() {
        let r: SupplierReport = serde_json::from_value(json!({
            "id": "r1", "status": "REPORT_STATUS_FAILED", "failedReason": "REPORT_GENERATION_FAILED_REASON_TIMEOUT",
            "startTime": "1539043200000", "endTime": 1539129599000u64
        }))
        .expect("report");
        let remote = r.into_remote();
        assert_eq!(
            remote.state,
            ReportState::Failed {
                reason: "REPORT_GENERATION_FAILED_REASON_TIMEOUT".into()
            }
        );
        assert_eq!(remote.start_date, parse_time("2018-10-09T00:00:00Z"));
        assert_eq!(remote.end_date, parse_time("2018-10-09T23:59:59Z"));
        let r: SupplierReport = serde_json::from_value(
            json!({"id": "r2", "status": "REPORT_STATUS_COMPLETED", "startTime": "2018-10-09T00:00:00Z"}),
        )
        .expect("report");
        let remote = r.into_remote();
        assert_eq!(remote.state, ReportState::Ready);
        assert_eq!(remote.start_date, parse_time("2018-10-09T00:00:00Z"));
    }
}
