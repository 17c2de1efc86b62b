//! CONNECT: CloudBlue Connect Reports (seed 002), `Authorization: ApiKey SU-…:…`.
//!
//! A report is made from a template (`parameters.template`, `RT-…`) with the template's
//! parameters (`parameters.values`); the operator adds the window as the template's date-range
//! parameter (`parameters.dateParameter`, default `date`; `{"after", "before"}`, Connect's
//! date-range form) unless the values give it already. The public create body is not
//! documented: it is built in [`create_body`] only. The report name is what the user wrote;
//! `find` recognizes a report after an ambiguous create by its name, template, renderer and
//! parameters together, never adopting one another request holds.
//!
//! The download answers with a redirect to a ZIP in storage (`report.<ext>` and
//! `summary.json`, see [`ARCHIVE`]); it is not followed, and its `Location` is the report's
//! URL. A backend that answers with the ZIP itself gets it inline. A READY report can be
//! removed (seed 002), which `delete_report` does; a failed one is terminal and cannot.

use chrono::{DateTime, SecondsFormat, Utc};
use reqwest::header::{AUTHORIZATION, CONTENT_DISPOSITION, LOCATION};
use serde::Deserialize;
use serde_json::json;
use std::collections::HashSet;

use super::auth::{Credentials, StaticHeaders, rfc3986};
use super::body::MAX_INLINE_BYTES;
use super::capabilities::{Refusal, Setting};
use super::http::{Call, HttpClient, secret_header};
use super::{
    BackendError, Capabilities, DefaultLimits, Download, ListQuery, RemoteReport, ReportRequest, ReportState,
    ReportingBackend, create_in_slot, de_time, seg, settle_find, track, url_expiry,
};
use crate::api::{BackendType, EventType, Period, ReportFormat, ReportParameters};

pub(super) const CAPABILITIES: Capabilities = Capabilities {
    formats: &[ReportFormat::Json, ReportFormat::Csv, ReportFormat::Xlsx],
    event_types: &[EventType::Onetime, EventType::Periodic],
    periods: &[Period::P1D, Period::P1W, Period::P1M],
    platform_scheduled: false,
    polls_by_organization: false,
    file_in_answer: false,
    limits: DefaultLimits::NONE,
};

/// What a CONNECT generator cannot ask for (see [`super::capabilities::unsupported_setting`]).
pub(super) const REFUSED: &[Refusal] = &super::capabilities::requested_by_operator(
    &[
        Setting::CustomizationName,
        Setting::ReportType,
        Setting::Filters,
        Setting::Organizations,
        Setting::Scope,
        Setting::Dataset,
    ],
    "a Connect report request has no such parameter (it belongs to another backend type); remove it",
    "Connect cannot e-mail a report (only RDE can); remove notifyByEmail",
);

/// What a Connect download is: a ZIP holding the report as `report.<ext>` and its
/// `summary.json` (the report's name, template, renderer and parameters).
pub const ARCHIVE: (&str, &str) = ("zip", "summary.json");

/// The date-range parameter when `parameters.dateParameter` does not name one.
pub const DEFAULT_DATE_PARAMETER: &str = "date";

/// The in-flight cap (if `spec.limits.maxInFlight` sets one) counts the whole account.
const ORG: &str = "";
/// Page size of report listings.
const PAGE: usize = 100;
/// Pages read at most by one listing.
const MAX_PAGES: usize = 20;

pub struct ConnectBackend {
    http: HttpClient,
    auth: StaticHeaders,
}

#[derive(Debug, Deserialize)]
struct ConnectReport {
    id: String,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    template: Option<TemplateRef>,
    #[serde(default)]
    renderer: Option<String>,
    #[serde(default)]
    parameters: Option<serde_json::Value>,
    #[serde(default)]
    stats: Option<Stats>,
    /// Not documented; read if Connect says why a report failed.
    #[serde(default, alias = "error", alias = "failedReason")]
    reason: Option<String>,
}

#[derive(Debug, Deserialize)]
struct TemplateRef {
    #[serde(default)]
    id: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
struct Stats {
    #[serde(default, deserialize_with = "de_time")]
    terminated: Option<DateTime<Utc>>,
}

/// The id of the template parameter that gets the window.
pub fn date_parameter(params: &ReportParameters) -> &str {
    params
        .date_parameter
        .as_deref()
        .filter(|d| !d.is_empty())
        .unwrap_or(DEFAULT_DATE_PARAMETER)
}

/// The template a report is made from, or (unset or empty) how
/// [`missing_parameter`](super::missing_parameter) names it.
pub(super) fn template(params: &ReportParameters) -> Result<&str, &'static str> {
    params
        .template
        .as_deref()
        .filter(|t| !t.is_empty())
        .ok_or("parameters.template (the RT-… id)")
}

/// The create body: the one place that knows its shape.
fn create_body(req: &ReportRequest) -> Result<serde_json::Value, BackendError> {
    let template = template(&req.parameters)
        .map_err(|_| BackendError::unsupported("a CONNECT report without parameters.template"))?;
    let mut values = serde_json::Map::new();
    if let Some(v) = &req.parameters.values {
        values.extend(v.iter().map(|(k, v)| (k.clone(), v.clone())));
    }
    if let (Some(start), Some(end)) = (req.parameters.start_date, req.parameters.end_date) {
        values.entry(date_parameter(&req.parameters)).or_insert_with(|| {
            json!({
                "after": start.to_rfc3339_opts(SecondsFormat::Secs, true),
                "before": end.to_rfc3339_opts(SecondsFormat::Secs, true),
            })
        });
    }
    Ok(json!({
        "template": {"id": template},
        "renderer": req.format.lower(),
        "parameters": values,
        "name": req.name,
    }))
}

/// `Content-Range: items 0-99/250` → (first, last, total).
pub(crate) fn parse_content_range(value: &str) -> Option<(usize, usize, usize)> {
    let rest = value.trim().strip_prefix("items")?.trim();
    let (range, total) = rest.split_once('/')?;
    let total = total.trim().parse().ok()?;
    if range.trim() == "*" {
        return Some((0, 0, total));
    }
    let (first, last) = range.split_once('-')?;
    Some((first.trim().parse().ok()?, last.trim().parse().ok()?, total))
}

impl ConnectReport {
    /// Whether this is the report `body` (a [`create_body`]) asks for.
    fn answers(&self, body: &serde_json::Value) -> bool {
        self.name.as_deref() == body["name"].as_str()
            && self.template.as_ref().and_then(|t| t.id.as_deref()) == body["template"]["id"].as_str()
            && self
                .renderer
                .as_deref()
                .is_none_or(|r| Some(r) == body["renderer"].as_str())
            && self.parameters.as_ref().unwrap_or(&serde_json::Value::Null) == &body["parameters"]
    }

    /// The report as the controller sees it; its window is read from `date_param`.
    fn into_remote(self, date_param: &str) -> RemoteReport {
        let state = match self.status.as_deref().map(str::to_ascii_lowercase).as_deref() {
            Some("ready" | "succeeded") => ReportState::Ready,
            Some("failed") => ReportState::Failed {
                reason: self
                    .reason
                    .clone()
                    .filter(|r| !r.is_empty())
                    .unwrap_or_else(|| "failed".into()),
            },
            // pending, deploying, processing
            _ => ReportState::InProgress,
        };
        let date = self.parameters.as_ref().and_then(|p| p.get(date_param));
        let time_of = |key: &str| {
            date.and_then(|d| d.get(key))
                .and_then(|v| v.as_str())
                .and_then(super::parse_time)
        };
        RemoteReport {
            start_date: time_of("after"),
            end_date: time_of("before"),
            generate_date: self.stats.and_then(|s| s.terminated),
            name: self.name,
            ..RemoteReport::new(self.id, state)
        }
    }
}

impl ConnectBackend {
    pub(crate) fn new(http: HttpClient, creds: &Credentials<'_>) -> Result<Self, BackendError> {
        let key = creds.required("apiKey")?;
        let auth = StaticHeaders(vec![(
            AUTHORIZATION,
            secret_header(&format!("ApiKey {}", key.expose()))?,
        )]);
        Ok(ConnectBackend { http, auth })
    }

    fn report_url(&self, id: &str, tail: &str) -> Result<url::Url, BackendError> {
        Ok(self.http.url(&format!("/reporting/reports/{}{tail}", seg(id)?)))
    }

    /// `GET /reporting/reports?<rql>`, every page.
    async fn reports(&self, rql: Option<&str>, op: &'static str) -> Result<Vec<ConnectReport>, BackendError> {
        let mut all = Vec::new();
        for page in 0..MAX_PAGES {
            let offset = page * PAGE;
            let mut url = self.http.url("/reporting/reports");
            let paging = format!("limit={PAGE}&offset={offset}");
            url.set_query(Some(&match rql {
                Some(rql) => format!("{rql}&{paging}"),
                None => paging,
            }));
            let response = self.http.send(&Call::get(url, op), &self.auth).await?;
            let items: Vec<ConnectReport> = response.json("report list")?;
            let count = items.len();
            all.extend(items);
            let total = response
                .header("content-range")
                .and_then(parse_content_range)
                .map(|(_, _, t)| t);
            let more = match total {
                Some(total) => offset + count < total,
                None => count == PAGE,
            };
            if !more || count == 0 {
                break;
            }
        }
        Ok(all)
    }
}

#[async_trait::async_trait]
impl ReportingBackend for ConnectBackend {
    fn backend_type(&self) -> BackendType {
        BackendType::Connect
    }

    fn capabilities(&self) -> Capabilities {
        CAPABILITIES
    }

    async fn probe(&self) -> Result<(), BackendError> {
        let mut url = self.http.url("/reporting/reports");
        url.set_query(Some("limit=1"));
        // An answer is only a yes when it is the API's: a report list.
        self.http
            .send(&Call::get(url, "probe"), &self.auth)
            .await?
            .json::<Vec<serde_json::Value>>("report list")
            .map(drop)
    }

    async fn submit(&self, req: &ReportRequest) -> Result<RemoteReport, BackendError> {
        CAPABILITIES.check(BackendType::Connect, req)?;
        let call = Call::create(self.http.url("/reporting/reports"), "create", create_body(req)?);
        create_in_slot(self.http.limiter(), ORG, &req.key, async {
            let report: ConnectReport = self.http.send(&call, &self.auth).await?.json("created report")?;
            Ok(report.into_remote(date_parameter(&req.parameters)))
        })
        .await
    }

    async fn find(
        &self,
        req: &ReportRequest,
        taken: &HashSet<String>,
    ) -> Result<Option<RemoteReport>, BackendError> {
        let body = create_body(req)?;
        let reports = self
            .reports(Some(&format!("eq(name,{})", rfc3986(&req.name))), "find")
            .await?;
        let found = reports
            .into_iter()
            .find(|r| r.answers(&body) && !taken.contains(&r.id))
            .map(|r| r.into_remote(date_parameter(&req.parameters)));
        settle_find(self.http.limiter(), ORG, &req.key, &found);
        Ok(found)
    }

    async fn get(&self, id: &str, req: &ReportRequest) -> Result<RemoteReport, BackendError> {
        let report: ConnectReport = self
            .http
            .send(&Call::get(self.report_url(id, "")?, "get"), &self.auth)
            .await?
            .json("report")?;
        let report = report.into_remote(date_parameter(&req.parameters));
        track(self.http.limiter(), ORG, &report);
        Ok(report)
    }

    async fn download(&self, report: &RemoteReport, _req: &ReportRequest) -> Result<Download, BackendError> {
        let url = self.report_url(&report.id, "/download")?;
        // A redirect is the answer (its Location is the file); a ZIP answered directly is
        // kept inline, so it is read up to what a Secret holds.
        let call = Call::get(url.clone(), "download")
            .limit(MAX_INLINE_BYTES)
            .redirect_ok();
        let response = self.http.send(&call, &self.auth).await?;
        if response.status.is_redirection() {
            let location = response
                .header(LOCATION.as_str())
                .ok_or_else(|| BackendError::protocol("the download redirect has no Location"))?;
            let target = url
                .join(location)
                .map_err(|_| BackendError::protocol("the download redirect's Location is not a URL"))?;
            return Ok(Download::Url {
                expires_at: url_expiry(target.as_str()),
                url: target.to_string(),
            });
        }
        let file_name = response
            .header(CONTENT_DISPOSITION.as_str())
            .and_then(|d| d.split("filename=").nth(1))
            .map(|n| n.trim_matches(|c| c == '"' || c == ';' || c == ' ').to_string())
            .filter(|n| !n.is_empty() && !n.contains(['/', '\\']))
            .unwrap_or_else(|| format!("{}.zip", report.id));
        Ok(Download::Inline {
            file_name,
            content: response.body,
        })
    }

    async fn list(&self, query: &ListQuery) -> Result<Vec<RemoteReport>, BackendError> {
        let rql = query.name.as_deref().map(|n| format!("eq(name,{})", rfc3986(n)));
        let reports = self.reports(rql.as_deref(), "list").await?;
        Ok(reports
            .into_iter()
            .filter(|r| query.name.as_deref().is_none_or(|n| r.name.as_deref() == Some(n)))
            .map(|r| r.into_remote(DEFAULT_DATE_PARAMETER))
            .collect())
    }

    /// `DELETE /reporting/reports/{id}`; a report already gone is as good as deleted.
    async fn delete_report(&self, id: &str) -> Result<(), BackendError> {
        match self
            .http
            .send(&Call::delete(self.report_url(id, "")?, "delete"), &self.auth)
            .await
        {
            Ok(_) | Err(BackendError::NotFound { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_ranges() {
        assert_eq!(parse_content_range("items 0-99/250"), Some((0, 99, 250)));
        assert_eq!(parse_content_range("items 200-249/250"), Some((200, 249, 250)));
        assert_eq!(parse_content_range(" items */0 "), Some((0, 0, 0)));
        assert_eq!(parse_content_range("bytes 0-99/250"), None);
        assert_eq!(parse_content_range("items 0-x/1"), None);
    }

    #[test]
    fn statuses_map_to_states() {
        let r = |status: &str| {
            serde_json::from_value::<ConnectReport>(json!({"id": "RP-1", "status": status}))
                .expect("report")
                .into_remote("date")
                .state
        };
        assert_eq!(r("pending"), ReportState::InProgress);
        assert_eq!(r("deploying"), ReportState::InProgress);
        assert_eq!(r("succeeded"), ReportState::Ready);
        assert_eq!(r("ready"), ReportState::Ready);
        assert_eq!(
            r("failed"),
            ReportState::Failed {
                reason: "failed".into()
            }
        );
    }
}

#[cfg(test)]
mod body_tests {
    use super::*;
    use crate::api::ReportFormat;

    fn request(date_parameter: Option<&str>, values: serde_json::Value) -> ReportRequest {
        let params: ReportParameters = serde_json::from_value(json!({
            "template": "RT-1", "startDate": "2026-11-01T00:00:00Z", "endDate": "2026-11-01T23:59:59Z",
            "dateParameter": date_parameter, "values": values,
        }))
        .expect("parameters");
        ReportRequest {
            key: "ns/file".into(),
            name: "Sales".into(),
            event_type: EventType::Onetime,
            format: ReportFormat::Csv,
            notify_by_email: false,
            parameters: params,
            organization: None,
            stored: false,
        }
    }

    #[test]
    fn the_window_goes_to_the_named_date_parameter_and_the_name_is_as_written() {
        let window = json!({"after": "2026-11-01T00:00:00Z", "before": "2026-11-01T23:59:59Z"});
        let rows = [
            ("default", None, json!({}), json!({"date": window})),
            ("named", Some("period"), json!({}), json!({"period": window})),
            (
                "named, values keep theirs",
                Some("period"),
                json!({"period": "x", "date": 1}),
                json!({"period": "x", "date": 1}),
            ),
            (
                "default, another parameter is left alone",
                None,
                json!({"period": 1}),
                json!({"period": 1, "date": window}),
            ),
        ];
        for (what, param, values, want) in rows {
            let body = create_body(&request(param, values)).expect("body");
            assert_eq!(body["parameters"], want, "{what}");
            assert_eq!(body["name"], "Sales", "{what}: the name is the user's");
        }
    }

    #[test]
    fn find_matches_name_template_renderer_and_parameters() {
        let req = request(Some("period"), json!({}));
        let body = create_body(&req).expect("body");
        let report = |patch: serde_json::Value| {
            let mut doc = json!({"id": "RP-1", "name": "Sales", "template": {"id": "RT-1"}, "renderer": "csv",
                "parameters": body["parameters"].clone(), "status": "succeeded"});
            if let (Some(d), Some(p)) = (doc.as_object_mut(), patch.as_object()) {
                d.extend(p.clone());
            }
            serde_json::from_value::<ConnectReport>(doc).expect("report")
        };
        assert!(report(json!({})).answers(&body));
        assert!(!report(json!({"name": "Sales [ns/file]"})).answers(&body));
        assert!(!report(json!({"template": {"id": "RT-2"}})).answers(&body));
        assert!(!report(json!({"renderer": "json"})).answers(&body));
        assert!(
            !report(json!({"parameters": {"date": body["parameters"]["period"].clone()}})).answers(&body)
        );
        let remote = report(json!({})).into_remote(date_parameter(&req.parameters));
        assert_eq!(
            remote.start_date, req.parameters.start_date,
            "the window is read from the named parameter"
        );
    }
}
