//! SUPPLIER: the asynchronous offline reporting API of seed 004, under `/supplier`, with its
//! OAuth2 token endpoint at `/supplier-auth/oauth/v2/token`.
//!
//! Endpoints (names for faults and statistics):
//! - `token`: `POST` form `grant_type=client_credentials&client_id&client_secret&scope` (or the
//!   client in `Authorization: Basic`) → `{access_token, expires_in, token_type}`; at most
//!   `tokenRequestsPerWindow` (100) per client in any `tokenWindowSecs` (an hour).
//! - `generate`: `POST /v1/vehicle-suppliers/suppliers/{org}/reports`
//!   `{"reportType":"REPORT_TYPE_…","filters":[{"field":"dateRange","operator":"OPERATOR_IN_RANGE","value":["<ms>","<ms>"]}]}`
//!   → `{"report":{…,"status":"REPORT_STATUS_IN_PROGRESS"}}`.
//! - `get`: `GET …/reports/{id}` → `{"report":{id,fileName,orgId,reportType,startTime,endTime,status,failedReason,createdAt,updatedAt,completedAt}}`.
//! - `list`: `GET …/reports?page_size=N[&page_token=…]` → `{"report":[…],"paginationResult":{"nextPageToken":""}}`, newest first.
//! - `link`: `POST …/reports/{id}/link` → `{"data":{"signedUrl":{"value":"…"}}}`, a URL that
//!   works for `urlLifetimeSecs` (60) and then answers 403 Access Denied.
//!
//! Limits, enforced exactly: at most `maxInProgress` (6) reports IN_PROGRESS per organization
//! (one more → 429), and `requestsPerWindow` (600) requests per client on each endpoint in any
//! `windowSecs` (600) — sliding windows. Every 429 is
//! `{"message":"Exceeded rate limit","code":"rate_limited"}` with `Retry-After`.
//!
//! Not documented, chosen here: other errors are `{"message","code"}` with gRPC-style codes
//! (`unauthenticated`, `invalid_argument`, `not_found`, `failed_precondition`); times are
//! RFC 3339; `page_size` defaults to 10 and is at most 100; a report fails with
//! `REPORT_GENERATION_FAILED_REASON_INTERNAL_ERROR` when its reportType or a filter value
//! contains `FAIL` (the request carries no name).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration as StdDuration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::Deserialize;
use serde_json::{Value, json};

use super::config::SupplierConfig;
use super::content::{Packaging, ReportContent};
use super::http::{basic, bearer_token, endpoint, json, parse_body, same_secret, with_retry_after};
use super::job::{Job, Phase};
use super::signing::TokenError;
use super::storage::{StoredObject, expiry_after};
use super::window::{Limits, retry_after_secs};
use super::{Sim, lock};
use crate::ReportingApi;
use crate::content::Format;

pub(crate) const PREFIX: &str = "/supplier";
pub(crate) const TOKEN_PATH: &str = "/supplier-auth/oauth/v2/token";
const SUPPLIER: ReportingApi = ReportingApi::Supplier;
const TOKEN_KIND: &str = "supplier";
const DEFAULT_PAGE_SIZE: usize = 10;
const MAX_PAGE_SIZE: usize = 100;

pub(crate) struct Records {
    reports: Vec<Report>,
    /// Per (client, endpoint).
    endpoints: Limits<(String, &'static str)>,
    /// Per client.
    tokens: Limits<String>,
}

impl Records {
    pub fn new(config: &SupplierConfig) -> Self {
        Records {
            reports: Vec::new(),
            endpoints: Limits::new(vec![(
                config.requests_per_window,
                StdDuration::from_secs(config.window_secs),
            )]),
            tokens: Limits::new(vec![(
                config.token_requests_per_window,
                StdDuration::from_secs(config.token_window_secs),
            )]),
        }
    }
}

struct Report {
    id: String,
    org: String,
    report_type: String,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    file_name: String,
    job: Job,
    path: String,
}

/// SUPPLIER errors: `{"message","code"}`.
pub(crate) fn error(status: StatusCode, code: &str, message: &str) -> Response {
    json(status, json!({"message": message, "code": code}))
}

fn rate_limited(wait: StdDuration) -> Response {
    with_retry_after(
        error(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            "Exceeded rate limit",
        ),
        retry_after_secs(wait),
    )
}

fn invalid(message: &str) -> Response {
    error(StatusCode::BAD_REQUEST, "invalid_argument", message)
}

fn time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

pub(crate) fn routes(sim: &Arc<Sim>) -> Router<Arc<Sim>> {
    let ep = |name, route| endpoint(sim, Some(SUPPLIER), name, route);
    let reports = format!("{PREFIX}/v1/vehicle-suppliers/suppliers/{{org}}/reports");
    Router::new()
        .route(TOKEN_PATH, ep("token", post(token)))
        .route(
            &reports,
            ep("generate", post(generate)).merge(ep("list", get(list))),
        )
        .route(&format!("{reports}/{{id}}"), ep("get", get(get_report)))
        .route(&format!("{reports}/{{id}}/link"), ep("link", post(link)))
}

/// OAuth2 token errors (RFC 6749 section 5.2).
fn oauth_error(status: StatusCode, code: &str, description: &str) -> Response {
    json(status, json!({"error": code, "error_description": description}))
}

async fn token(State(sim): State<Arc<Sim>>, headers: HeaderMap, body: Bytes) -> Response {
    let form: HashMap<String, String> = url::form_urlencoded::parse(&body).into_owned().collect();
    let (client_id, client_secret) = match basic(&headers) {
        Some(pair) => pair,
        None => (
            form.get("client_id").cloned().unwrap_or_default(),
            form.get("client_secret").cloned().unwrap_or_default(),
        ),
    };
    if let Err(wait) = lock(&sim.supplier)
        .tokens
        .acquire(client_id.clone(), Instant::now())
    {
        return rate_limited(wait);
    }
    let config = &sim.config.supplier;
    if form.get("grant_type").map(String::as_str) != Some("client_credentials") {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "grant_type must be client_credentials",
        );
    }
    if !(same_secret(&client_id, &config.client_id) && same_secret(&client_secret, &config.client_secret)) {
        return oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "Client authentication failed",
        );
    }
    let scope = form.get("scope").cloned().unwrap_or_default();
    if scope
        .split_whitespace()
        .any(|s| !config.scopes.iter().any(|allowed| allowed == s))
    {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_scope",
            "The requested scope is not allowed",
        );
    }
    let access = sim
        .signer
        .mint(TOKEN_KIND, &client_id, config.token_lifetime_secs, Utc::now());
    json(
        StatusCode::OK,
        json!({"access_token": access, "expires_in": config.token_lifetime_secs, "token_type": "Bearer", "scope": scope}),
    )
}

/// A valid token's client, counted against its window on `endpoint`.
fn authorize(
    sim: &Sim,
    state: &mut Records,
    headers: &HeaderMap,
    endpoint: &'static str,
) -> Result<String, Response> {
    let unauthenticated = |m: &str| error(StatusCode::UNAUTHORIZED, "unauthenticated", m);
    let token = bearer_token(headers).ok_or_else(|| unauthenticated("Missing bearer token"))?;
    let client = match sim.signer.check(TOKEN_KIND, token, Utc::now()) {
        Ok(claims) => claims.sub,
        Err(TokenError::Expired) => return Err(unauthenticated("Token expired")),
        Err(TokenError::Invalid) => return Err(unauthenticated("Invalid token")),
    };
    state
        .endpoints
        .acquire((client.clone(), endpoint), Instant::now())
        .map_err(rate_limited)?;
    Ok(client)
}

impl Report {
    fn to_json(&self, now: DateTime<Utc>) -> Value {
        let phase = self.job.phase(now);
        let (status, reason) = match phase {
            Phase::Queued | Phase::Running => (
                "REPORT_STATUS_IN_PROGRESS",
                "REPORT_GENERATION_FAILED_REASON_NONE",
            ),
            Phase::Succeeded => ("REPORT_STATUS_COMPLETED", "REPORT_GENERATION_FAILED_REASON_NONE"),
            Phase::Failed => (
                "REPORT_STATUS_FAILED",
                "REPORT_GENERATION_FAILED_REASON_INTERNAL_ERROR",
            ),
        };
        let mut doc = json!({
            "id": self.id,
            "fileName": self.file_name,
            "orgId": self.org,
            "reportType": self.report_type,
            "startTime": time(self.start),
            "endTime": time(self.end),
            "status": status,
            "failedReason": reason,
            "createdAt": time(self.job.created),
            "updatedAt": time(self.job.modified(now)),
        });
        if phase == Phase::Succeeded {
            doc["completedAt"] = json!(time(self.job.done_at));
        }
        doc
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct GenerateRequest {
    #[serde(default)]
    report_type: Option<String>,
    #[serde(default)]
    filters: Vec<Filter>,
}

#[derive(Deserialize)]
struct Filter {
    #[serde(default)]
    field: String,
    #[serde(default)]
    operator: String,
    #[serde(default)]
    value: Vec<String>,
}

/// The `dateRange` filter's window.
fn date_range(filters: &[Filter]) -> Result<(DateTime<Utc>, DateTime<Utc>), Response> {
    let range = filters
        .iter()
        .find(|f| f.field == "dateRange")
        .ok_or_else(|| invalid("a dateRange filter is required"))?;
    if range.operator != "OPERATOR_IN_RANGE" {
        return Err(invalid("dateRange takes the operator OPERATOR_IN_RANGE"));
    }
    let ms = |s: &str| s.parse::<i64>().ok().and_then(DateTime::from_timestamp_millis);
    match range.value.as_slice() {
        [start, end] => match (ms(start), ms(end)) {
            (Some(s), Some(e)) if e > s => Ok((s, e)),
            (Some(_), Some(_)) => Err(invalid("dateRange: the end must be after the start")),
            _ => Err(invalid("dateRange values are epoch milliseconds as strings")),
        },
        _ => Err(invalid("dateRange takes two values: start and end")),
    }
}

async fn generate(
    State(sim): State<Arc<Sim>>,
    Path(org): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut state = lock(&sim.supplier);
    if let Err(r) = authorize(&sim, &mut state, &headers, "generate") {
        return r;
    }
    let req: GenerateRequest = match parse_body(&body) {
        Ok(r) => r,
        Err(e) => return invalid(&e),
    };
    let Some(report_type) = req
        .report_type
        .filter(|t| t.starts_with("REPORT_TYPE_") && t != "REPORT_TYPE_UNSPECIFIED")
    else {
        return invalid("reportType must be a REPORT_TYPE_… value");
    };
    let (start, end) = match date_range(&req.filters) {
        Ok(w) => w,
        Err(r) => return r,
    };
    let now = Utc::now();
    let running: Vec<&Report> = state
        .reports
        .iter()
        .filter(|r| r.org == org && r.job.is_active(now))
        .collect();
    if running.len() >= sim.config.supplier.max_in_progress as usize {
        let first_done = running.iter().map(|r| r.job.done_at).min().unwrap_or(now);
        return rate_limited((first_done - now).to_std().unwrap_or_default());
    }
    let names = std::iter::once(report_type.as_str()).chain(
        req.filters
            .iter()
            .flat_map(|f| f.value.iter().map(String::as_str)),
    );
    let job = sim.new_job(SUPPLIER, names, now);
    let id = uuid::Uuid::new_v4().to_string();
    let file_name = format!(
        "{}_{}_{}.csv",
        report_type.to_ascii_lowercase(),
        start.format("%Y%m%d"),
        end.format("%Y%m%d")
    );
    let content = ReportContent {
        backend: SUPPLIER,
        name: report_type.clone(),
        organization: org.clone(),
        format: Format::Csv,
        start: Some(start),
        end: Some(end),
    };
    let path = sim.storage.put(
        &org,
        &format!("{id}/{file_name}"),
        StoredObject {
            content,
            packaging: Packaging::Plain,
        },
    );
    let extra: Vec<String> = req
        .filters
        .iter()
        .filter(|f| f.field != "dateRange")
        .map(|f| format!("{}:{}:{}", f.field, f.operator, f.value.join("+")))
        .collect();
    let key = format!(
        "{org}|{report_type}|{}..{}|{}",
        time(start),
        time(end),
        extra.join(",")
    );
    let report = Report {
        id,
        org: org.clone(),
        report_type,
        start,
        end,
        file_name,
        job,
        path,
    };
    let doc = report.to_json(now);
    state.reports.push(report);
    let running = state
        .reports
        .iter()
        .filter(|r| r.org == org && r.job.is_active(now))
        .count();
    sim.stats.generation(SUPPLIER, key, &org, running);
    json(StatusCode::OK, json!({"report": doc}))
}

async fn get_report(
    State(sim): State<Arc<Sim>>,
    Path((org, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let mut state = lock(&sim.supplier);
    if let Err(r) = authorize(&sim, &mut state, &headers, "get") {
        return r;
    }
    match state.reports.iter().find(|r| r.id == id && r.org == org) {
        Some(r) => json(StatusCode::OK, json!({"report": r.to_json(Utc::now())})),
        None => error(
            StatusCode::NOT_FOUND,
            "not_found",
            &format!("report {id} not found"),
        ),
    }
}

#[derive(Deserialize)]
struct Page {
    #[serde(default)]
    page_size: Option<String>,
    #[serde(default)]
    page_token: Option<String>,
}

async fn list(
    State(sim): State<Arc<Sim>>,
    Path(org): Path<String>,
    headers: HeaderMap,
    Query(page): Query<Page>,
) -> Response {
    let mut state = lock(&sim.supplier);
    if let Err(r) = authorize(&sim, &mut state, &headers, "list") {
        return r;
    }
    let size = match page.page_size.as_deref().map(str::parse::<usize>) {
        None => DEFAULT_PAGE_SIZE,
        Some(Ok(0)) => DEFAULT_PAGE_SIZE,
        Some(Ok(n)) => n.min(MAX_PAGE_SIZE),
        Some(Err(_)) => return invalid("page_size must be a number"),
    };
    // The token is opaque to clients: the offset, base64url.
    let offset = match page.page_token.as_deref().filter(|t| !t.is_empty()) {
        None => 0,
        Some(t) => match URL_SAFE_NO_PAD
            .decode(t)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .and_then(|s| s.parse::<usize>().ok())
        {
            Some(o) => o,
            None => return invalid("page_token is not valid"),
        },
    };
    let now = Utc::now();
    let mine: Vec<&Report> = state.reports.iter().rev().filter(|r| r.org == org).collect();
    let items: Vec<Value> = mine
        .iter()
        .skip(offset)
        .take(size)
        .map(|r| r.to_json(now))
        .collect();
    let next = offset + items.len();
    let next_token = if next < mine.len() {
        URL_SAFE_NO_PAD.encode(next.to_string())
    } else {
        String::new()
    };
    json(
        StatusCode::OK,
        json!({"report": items, "paginationResult": {"nextPageToken": next_token}}),
    )
}

async fn link(
    State(sim): State<Arc<Sim>>,
    Path((org, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let mut state = lock(&sim.supplier);
    if let Err(r) = authorize(&sim, &mut state, &headers, "link") {
        return r;
    }
    let now = Utc::now();
    let Some(report) = state.reports.iter().find(|r| r.id == id && r.org == org) else {
        return error(
            StatusCode::NOT_FOUND,
            "not_found",
            &format!("report {id} not found"),
        );
    };
    if report.job.phase(now) != Phase::Succeeded {
        return error(
            StatusCode::BAD_REQUEST,
            "failed_precondition",
            "the report is not REPORT_STATUS_COMPLETED",
        );
    }
    let url = sim.signed_url(
        &report.path,
        expiry_after(now, sim.config.supplier.url_lifetime_secs),
    );
    json(StatusCode::OK, json!({"data": {"signedUrl": {"value": url}}}))
}
