//! CMP: CloudBlue Commerce SimpleAPI `/reports` (seed 001).
//!
//! Every call carries `X-Subscription-Key` and a bearer token from `POST /token` (cached,
//! renewed before expiry and on 401) or a static `token` from the Secret. `submit` schedules a
//! one-time report for the window (`POST /reports`); PERIODIC windows are one-time reports
//! scheduled by the operator. ON_INVOICE reports are made by the platform and only listed
//! (`type=on_invoice`). There is no idempotency key: `find` lists the reports named like the
//! request around its window and matches startDate/endDate.

use std::collections::HashSet;
use std::time::Duration;

use base64::Engine as _;
use chrono::{DateTime, SecondsFormat, Utc};
use reqwest::header::{AUTHORIZATION, HeaderName, HeaderValue};
use serde::Deserialize;
use serde_json::json;
use sha2::Digest as _;

use super::auth::{BearerAuth, Credentials, Secret, StaticHeaders, TokenSource, Tokens, token_refused};
use super::capabilities::{Refusal, Setting};
use super::http::{Auth, Body, Call, HttpClient, secret_header};
use super::{
    BackendError, Budget, Capabilities, DefaultLimits, Download, ListQuery, RemoteReport, ReportRequest,
    ReportState, ReportingBackend, create_in_slot, de_time, known_download, seg, settle_find, track,
    url_expiry,
};
use crate::api::{BackendType, EventType, Period, ReportBackendSpec, ReportFormat};

pub(super) const CAPABILITIES: Capabilities = Capabilities {
    formats: &[
        ReportFormat::Json,
        ReportFormat::Xml,
        ReportFormat::Csv,
        ReportFormat::Xlsx,
    ],
    event_types: &[EventType::Onetime, EventType::Periodic, EventType::OnInvoice],
    periods: &[Period::P1D, Period::P1W, Period::P1M],
    platform_scheduled: false,
    polls_by_organization: false,
    file_in_answer: false,
    // 60 calls a minute and 5,000 a day, counted together for the subscription.
    limits: DefaultLimits {
        budgets: &[
            Budget::new(60, Duration::from_secs(60)),
            Budget::new(5000, Duration::from_secs(86_400)),
        ],
        per_endpoint: false,
        endpoint_budgets: &[],
        max_in_flight: None,
    },
};

const SUBSCRIPTION_KEY: HeaderName = HeaderName::from_static("x-subscription-key");
/// The in-flight cap (if `spec.limits.maxInFlight` sets one) counts the whole subscription.
const ORG: &str = "";

pub struct CmpBackend {
    http: HttpClient,
    auth: Box<dyn Auth>,
}

/// `POST /token` with the user's Basic credentials.
struct CmpTokenSource {
    basic: HeaderValue,
    subscription_key: HeaderValue,
    marketplace: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TokenAnswer {
    token: String,
    #[serde(default)]
    expires_in_seconds: Option<u64>,
}

#[async_trait::async_trait]
impl TokenSource for CmpTokenSource {
    async fn fetch(&self, http: &HttpClient, _: Option<&Tokens>) -> Result<Tokens, BackendError> {
        let call = Call::post_idempotent(
            http.url("/token"),
            "token",
            Body::Json(json!({"marketplace": self.marketplace})),
        )
        .header(AUTHORIZATION, self.basic.clone())
        .header(SUBSCRIPTION_KEY, self.subscription_key.clone());
        let answer: TokenAnswer = http
            .send(&call, &super::http::NoAuth)
            .await
            .map_err(token_refused)?
            .json("token")?;
        Ok(Tokens::expiring(
            Secret::new(answer.token),
            answer.expires_in_seconds.map(Duration::from_secs),
            None,
        ))
    }
}

/// The settings CMP cannot honour: the platform makes invoice reports itself (the operator
/// only mirrors them, by name), and a ONETIME report is made once, at once. See
/// [`super::unsupported_setting`].
pub(super) const REFUSED: &[Refusal] = &[
    Refusal {
        settings: &super::capabilities::SCHEDULE_KNOBS,
        event_types: &[EventType::OnInvoice],
        why: "the platform makes a report when an invoice appears and the operator only mirrors it, so there is nothing to \
schedule; remove the setting (the history limits apply)",
    },
    Refusal {
        settings: &[
            Setting::StartDate,
            Setting::EndDate,
            Setting::Period,
            Setting::CustomizationName,
        ],
        event_types: &[EventType::OnInvoice],
        why: "invoice reports are made by the platform for each invoice and found by commonName alone; remove it",
    },
    super::capabilities::ONETIME_REFUSALS[0],
    super::capabilities::ONETIME_REFUSALS[1],
    Refusal {
        settings: &[
            Setting::Template,
            Setting::Values,
            Setting::DateParameter,
            Setting::ReportType,
            Setting::Filters,
            Setting::Organizations,
            Setting::Scope,
            Setting::Dataset,
        ],
        event_types: super::capabilities::ALL_EVENT_TYPES,
        why: "a CMP report request has no such parameter (it belongs to another backend type); remove it",
    },
    Refusal {
        settings: &[Setting::NotifyByEmail],
        event_types: super::capabilities::ALL_EVENT_TYPES,
        why: "the SimpleAPI cannot e-mail a report (only RDE can); remove notifyByEmail",
    },
];

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct CmpReport {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    status: Option<String>,
    #[serde(default, rename = "type")]
    type_: Option<String>,
    #[serde(default)]
    format: Option<String>,
    #[serde(default, deserialize_with = "de_time")]
    creation_date: Option<DateTime<Utc>>,
    #[serde(default, deserialize_with = "de_time")]
    start_date: Option<DateTime<Utc>>,
    #[serde(default, deserialize_with = "de_time")]
    end_date: Option<DateTime<Utc>>,
    #[serde(default)]
    download_url: Option<String>,
    /// Not documented; read if the platform says why a report failed.
    #[serde(default, alias = "errorMessage")]
    error: Option<String>,
}

#[derive(Deserialize)]
struct ReportList {
    #[serde(default)]
    data: Vec<CmpReport>,
}

fn report_type(e: EventType) -> &'static str {
    match e {
        EventType::Onetime | EventType::Periodic => "onetime",
        EventType::OnInvoice => "on_invoice",
    }
}

impl CmpReport {
    fn into_remote(self) -> RemoteReport {
        let state = match self.status.as_deref().map(str::to_ascii_lowercase).as_deref() {
            Some("completed") => ReportState::Ready,
            Some("error" | "failed") => ReportState::Failed {
                reason: self
                    .error
                    .clone()
                    .filter(|e| !e.is_empty())
                    .unwrap_or_else(|| "error".into()),
            },
            // The seed's list entries have no status: listed with a URL means done.
            None if self.download_url.is_some() => ReportState::Ready,
            // submitted, processing, unknown: wait (the deadline catches reports stuck in "unknown").
            _ => ReportState::InProgress,
        };
        let id = self.id.clone().unwrap_or_else(|| self.synthetic_id());
        let download = match (&state, self.download_url) {
            (ReportState::Ready, Some(url)) if !url.is_empty() => Some(Download::Url {
                expires_at: url_expiry(&url),
                url,
            }),
            _ => None,
        };
        let file_name = match &download {
            Some(Download::Url { url, .. }) => url::Url::parse(url)
                .ok()
                .and_then(|u| {
                    u.path_segments()
                        .and_then(|mut s| s.next_back().map(str::to_string))
                })
                .filter(|n| !n.is_empty()),
            _ => None,
        };
        RemoteReport {
            id,
            state,
            name: self.name,
            event_type: self
                .type_
                .as_deref()
                .and_then(|t| match t.to_ascii_lowercase().as_str() {
                    "onetime" => Some(EventType::Onetime),
                    "periodic" | "daily" | "monthly" => Some(EventType::Periodic),
                    "on_invoice" => Some(EventType::OnInvoice),
                    _ => None,
                }),
            start_date: self.start_date,
            end_date: self.end_date,
            generate_date: self.creation_date,
            file_name,
            format: self.format.as_deref().and_then(ReportFormat::parse),
            download,
            next_report_date: None,
        }
    }

    /// The seed's list entries carry no id: one stable across listings, from what they carry.
    fn synthetic_id(&self) -> String {
        let mut h = sha2::Sha256::new();
        h.update(self.name.as_deref().unwrap_or_default());
        h.update([0]);
        h.update(self.creation_date.map(|t| t.to_rfc3339()).unwrap_or_default());
        h.update([0]);
        // The URL's path names the file; its query (the signature) changes.
        h.update(
            self.download_url
                .as_deref()
                .map(|u| u.split('?').next().unwrap_or(u))
                .unwrap_or_default(),
        );
        let digest = h.finalize();
        digest.iter().take(12).map(|b| format!("{b:02x}")).collect()
    }

    fn matches(&self, req: &ReportRequest) -> bool {
        let same = |a: Option<DateTime<Utc>>, b: Option<DateTime<Utc>>| {
            a.map(|t| t.timestamp()) == b.map(|t| t.timestamp())
        };
        self.name.as_deref() == Some(req.name.as_str())
            && self
                .format
                .as_deref()
                .is_none_or(|f| f.eq_ignore_ascii_case(req.format.lower()))
            && same(self.start_date, req.parameters.start_date)
            && same(self.end_date, req.parameters.end_date)
    }
}

fn day(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d").to_string()
}

impl CmpBackend {
    pub(crate) fn new(
        http: HttpClient,
        spec: &ReportBackendSpec,
        creds: &Credentials<'_>,
    ) -> Result<Self, BackendError> {
        let subscription_key = secret_header(creds.required("subscriptionKey")?.expose())?;
        let auth: Box<dyn Auth> = match creds.optional("token")? {
            Some(token) => Box::new(StaticHeaders(vec![
                (SUBSCRIPTION_KEY, subscription_key),
                (
                    AUTHORIZATION,
                    secret_header(&format!("Bearer {}", token.expose()))?,
                ),
            ])),
            None => {
                let user = creds.required("username")?;
                let password = creds.required("password")?;
                let basic = base64::engine::general_purpose::STANDARD.encode(format!(
                    "{}:{}",
                    user.expose(),
                    password.expose()
                ));
                let source = CmpTokenSource {
                    basic: secret_header(&format!("Basic {basic}"))?,
                    subscription_key: subscription_key.clone(),
                    marketplace: spec
                        .cmp
                        .as_ref()
                        .and_then(|c| c.marketplace.clone())
                        .filter(|m| !m.is_empty())
                        .unwrap_or_else(|| "us".into()),
                };
                Box::new(BearerAuth::new(
                    source,
                    None,
                    vec![(SUBSCRIPTION_KEY, subscription_key)],
                ))
            }
        };
        Ok(CmpBackend { http, auth })
    }

    async fn report(&self, call: Call) -> Result<RemoteReport, BackendError> {
        let report: CmpReport = self.http.send(&call, self.auth.as_ref()).await?.json("report")?;
        Ok(report.into_remote())
    }

    /// `GET /reports?from&to[&name][&type]`.
    async fn reports(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        name: Option<&str>,
        type_: Option<&str>,
        format: Option<ReportFormat>,
        op: &'static str,
    ) -> Result<Vec<CmpReport>, BackendError> {
        let mut url = self.http.url("/reports");
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("from", &day(from)).append_pair("to", &day(to));
            if let Some(name) = name {
                q.append_pair("name", name);
            }
            if let Some(format) = format {
                q.append_pair("format", format.lower());
            }
            if let Some(t) = type_ {
                q.append_pair("type", t);
            }
        }
        let list: ReportList = self
            .http
            .send(&Call::get(url, op), self.auth.as_ref())
            .await?
            .json("report list")?;
        Ok(list.data)
    }
}

#[async_trait::async_trait]
impl ReportingBackend for CmpBackend {
    fn backend_type(&self) -> BackendType {
        BackendType::Cmp
    }

    fn capabilities(&self) -> Capabilities {
        CAPABILITIES
    }

    async fn probe(&self) -> Result<(), BackendError> {
        let today = Utc::now();
        self.reports(today, today, None, None, None, "probe")
            .await
            .map(drop)
    }

    async fn submit(&self, req: &ReportRequest) -> Result<RemoteReport, BackendError> {
        CAPABILITIES.check(BackendType::Cmp, req)?;
        if req.event_type == EventType::OnInvoice {
            return Err(BackendError::unsupported(
                "asking CMP for an ON_INVOICE report: the platform makes them; list them",
            ));
        }
        let (start, end) = req.window()?;
        let mut body = json!({
            "name": req.name,
            "format": req.format.lower(),
            "startDate": start.to_rfc3339_opts(SecondsFormat::Millis, true),
            "endDate": end.to_rfc3339_opts(SecondsFormat::Millis, true),
        });
        if let Some(c) = req
            .parameters
            .customization_name
            .as_deref()
            .filter(|c| !c.is_empty())
        {
            body["customizationName"] = json!(c);
        }
        let call = Call::create(self.http.url("/reports"), "create", body);
        let limiter = self.http.limiter();
        create_in_slot(limiter, ORG, &req.key, self.report(call)).await
    }

    async fn find(
        &self,
        req: &ReportRequest,
        taken: &HashSet<String>,
    ) -> Result<Option<RemoteReport>, BackendError> {
        let (start, end) = req.window()?;
        // `from`/`to` may filter on the window or on the creation day: cover both.
        let now = Utc::now();
        let from = start.min(now - chrono::Duration::days(2));
        let to = end.max(now + chrono::Duration::days(1));
        let reports = self
            .reports(from, to, Some(&req.name), None, None, "find")
            .await?;
        let found = reports
            .into_iter()
            .filter(|r| r.matches(req) && !r.id.as_ref().is_some_and(|id| taken.contains(id)))
            .max_by_key(|r| r.creation_date)
            .map(CmpReport::into_remote);
        settle_find(self.http.limiter(), ORG, &req.key, &found);
        Ok(found)
    }

    async fn get(&self, id: &str, _req: &ReportRequest) -> Result<RemoteReport, BackendError> {
        let report = self
            .report(Call::get(self.http.url(&format!("/reports/{}", seg(id)?)), "get"))
            .await?;
        track(self.http.limiter(), ORG, &report);
        Ok(report)
    }

    async fn download(&self, report: &RemoteReport, req: &ReportRequest) -> Result<Download, BackendError> {
        known_download(self, report, req).await
    }

    async fn list(&self, query: &ListQuery) -> Result<Vec<RemoteReport>, BackendError> {
        let to = query.to.unwrap_or_else(Utc::now);
        let from = query.from.unwrap_or(to - chrono::Duration::days(31));
        let reports = self
            .reports(
                from,
                to,
                query.name.as_deref(),
                query.event_type.map(report_type),
                query.format,
                "list",
            )
            .await?;
        // The filters again: a gateway that ignores a query parameter must not widen the list.
        let format_ok = |r: &CmpReport| {
            query.format.is_none_or(|f| {
                r.format
                    .as_deref()
                    .is_none_or(|rf| rf.eq_ignore_ascii_case(f.lower()))
            })
        };
        Ok(reports
            .into_iter()
            .filter(|r| query.name.as_deref().is_none_or(|n| r.name.as_deref() == Some(n)))
            .filter(format_ok)
            .map(CmpReport::into_remote)
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_map_to_states() {
        let r: CmpReport = serde_json::from_value(json!({
            "id": "f40c942d", "name": "Daily report", "status": "completed", "type": "onetime", "format": "json",
            "creationDate": "2020-11-07T17:02:59.000Z", "startDate": "2019-11-07T17:02:59.000Z",
            "endDate": "2019-12-07T17:02:59.000Z",
            "downloadUrl": "https://st.example/c/Customer1.json?sig=S1G&se=2020-02-19T12%3A52%3A20Z&sp=r"
        }))
        .expect("report");
        let remote = r.into_remote();
        assert_eq!(remote.state, ReportState::Ready);
        assert_eq!(remote.file_name.as_deref(), Some("Customer1.json"));
        match remote.download {
            Some(Download::Url { expires_at, .. }) => {
                assert_eq!(expires_at, crate::backend::parse_time("2020-02-19T12:52:20Z"))
            }
            other => panic!("expected a URL, got {other:?}"),
        }
        let failed: CmpReport =
            serde_json::from_value(json!({"id": "x", "status": "error"})).expect("report");
        assert_eq!(
            failed.into_remote().state,
            ReportState::Failed {
                reason: "error".into()
            }
        );
        let listed: CmpReport = serde_json::from_value(json!({
            "name": "daily-dr1", "format": "JSON", "creationDate": "2019-11-14T20:57:29Z",
            "downloadUrl": "https://st.example/c/daily-dr1.json.gz?sig=A"
        }))
        .expect("report");
        let again: CmpReport = serde_json::from_value(json!({
            "name": "daily-dr1", "format": "JSON", "creationDate": "2019-11-14T20:57:29Z",
            "downloadUrl": "https://st.example/c/daily-dr1.json.gz?sig=B"
        }))
        .expect("report");
        let (a, b) = (listed.into_remote(), again.into_remote());
        assert_eq!(a.state, ReportState::Ready);
        assert_eq!(
            a.id, b.id,
            "a listing's synthetic id must not depend on the signature"
        );
    }
}
