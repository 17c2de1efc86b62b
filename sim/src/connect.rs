//! CONNECT: CloudBlue Connect Reports (seed 002), under `/connect/public/v1`.
//!
//! Endpoints (names for faults and statistics):
//! - `list`: `GET /reporting/reports?<RQL>&limit=&offset=` → array, newest first, with
//!   `Content-Range: items a-b/total` (`limit=0`: no items, `items 0-0/total`; see [`page`]).
//! - `create`: `POST /reporting/reports` `{"template":{"id":"RT-…"},"renderer","parameters","name"}`
//!   → 201 with the report (`status` pending → processing → succeeded | failed).
//! - `get`: `GET /reporting/reports/{id}` (`progress {value,max}`, `stats {created,started,terminated}`).
//! - `delete`: `DELETE /reporting/reports/{id}` → 204 for a ready report (seed 002: "reports in
//!   this state can be removed"), 400 `REP_003` for a failed one ("no further actions with this
//!   report are available") or one still being made; afterwards its storage URL answers 404.
//! - `download`: `GET /reporting/reports/{id}/download` → 302 to a signed storage URL of a ZIP
//!   holding `report.<ext>` and `summary.json`.
//! - `schedules`: `GET /reporting/schedules[/{id}]`.
//!
//! Auth: `Authorization: ApiKey SU-…:…`. Errors: `{"error_code","errors":[…]}`.
//!
//! Not documented, chosen here (BACKENDS.md: the create body is the simulator's choice):
//! the report's window is read from the template's date-range parameter (`{"after","before"}`,
//! Connect's date-range form), which is `date` unless `dateParameters` names another for the
//! template (custom templates may call their parameters anything, seed 002); a failed report
//! has `reason`; listings are newest first; a download of
//! a report that is not ready is 400 `REP_002`; two fixed schedules exist; a page holds 100
//! reports unless `limit` says otherwise, and at most 1000.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{Value, json};

use super::content::{Packaging, ReportContent, time};
use super::http::{authorization, endpoint, json, parse_body, same_secret};
use super::job::{Job, Phase};
use super::rql;
use super::storage::{StoredObject, expiry_after};
use super::{Sim, lock};
use crate::ReportingApi;
use crate::content::Format;

pub(crate) const PREFIX: &str = "/connect/public/v1";
const CONNECT: ReportingApi = ReportingApi::Connect;
const DEFAULT_LIMIT: usize = 100;
const MAX_LIMIT: usize = 1000;

#[derive(Default)]
pub(crate) struct Records {
    reports: Vec<Report>,
    created: u64,
}

struct Report {
    id: String,
    name: String,
    template: String,
    renderer: Format,
    parameters: Value,
    job: Job,
    path: String,
    account: String,
}

/// Connect's errors: `{"error_code","errors":[…]}`.
pub(crate) fn error(status: StatusCode, code: &str, message: &str) -> Response {
    json(status, json!({"error_code": code, "errors": [message]}))
}

fn bad_request(message: &str) -> Response {
    error(StatusCode::BAD_REQUEST, "VAL_001", message)
}

fn not_found(what: &str) -> Response {
    error(StatusCode::NOT_FOUND, "NTF_001", &format!("{what} not found."))
}

/// The account of a valid API key (its `SU-…` id).
fn authorize(sim: &Sim, headers: &HeaderMap) -> Result<String, Response> {
    let Some(key) = authorization(headers, "ApiKey") else {
        return Err(error(
            StatusCode::UNAUTHORIZED,
            "AUTH_001",
            "Authentication credentials were not provided.",
        ));
    };
    if !same_secret(key, &sim.config.connect.api_key) {
        return Err(error(
            StatusCode::UNAUTHORIZED,
            "AUTH_001",
            "API token is not valid.",
        ));
    }
    Ok(key.split(':').next().unwrap_or(key).to_string())
}

pub(crate) fn routes(sim: &Arc<Sim>) -> Router<Arc<Sim>> {
    let ep = |name, route| endpoint(sim, Some(CONNECT), name, route);
    Router::new()
        .route(
            &format!("{PREFIX}/reporting/reports"),
            ep("list", get(list)).merge(ep("create", post(create))),
        )
        .route(
            &format!("{PREFIX}/reporting/reports/{{id}}"),
            ep("get", get(get_report)).merge(ep("delete", delete(delete_report))),
        )
        .route(
            &format!("{PREFIX}/reporting/reports/{{id}}/download"),
            ep("download", get(download)),
        )
        .route(
            &format!("{PREFIX}/reporting/schedules"),
            ep("schedules", get(list_schedules)),
        )
        .route(
            &format!("{PREFIX}/reporting/schedules/{{id}}"),
            ep("schedules", get(get_schedule)),
        )
}

fn parse_renderer(s: &str) -> Option<Format> {
    match s {
        "json" => Some(Format::Json),
        "csv" => Some(Format::Csv),
        "xlsx" => Some(Format::Xlsx),
        _ => None,
    }
}

/// The window in the date-range parameter `name`.
fn window(parameters: &Value, name: &str) -> (Option<DateTime<Utc>>, Option<DateTime<Utc>>) {
    let at = |key: &str| {
        parameters
            .get(name)
            .and_then(|d| d.get(key))
            .and_then(Value::as_str)
            .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
            .map(|t| t.with_timezone(&Utc))
    };
    (at("after"), at("before"))
}

impl Report {
    fn to_json(&self, now: DateTime<Utc>) -> Value {
        let phase = self.job.phase(now);
        let status = match phase {
            Phase::Queued => "pending",
            Phase::Running => "processing",
            Phase::Succeeded => "succeeded",
            Phase::Failed => "failed",
        };
        let mut stats = json!({"created": time(self.job.created)});
        if phase != Phase::Queued {
            stats["started"] = json!(time(self.job.started_at()));
        }
        if phase.is_finished() {
            stats["terminated"] = json!(time(self.job.done_at));
        }
        let mut doc = json!({
            "id": self.id,
            "name": self.name,
            "template": {"id": self.template},
            "renderer": self.renderer.lower(),
            "parameters": self.parameters,
            "status": status,
            "progress": {"value": self.job.progress(now), "max": 100},
            "stats": stats,
            "owner": {"id": self.account},
        });
        if phase == Phase::Failed {
            doc["reason"] = json!(format!("Template {} failed to render the report", self.template));
        }
        doc
    }
}

#[derive(Deserialize)]
struct CreateReport {
    #[serde(default)]
    template: Option<TemplateRef>,
    #[serde(default)]
    renderer: Option<String>,
    #[serde(default)]
    parameters: Option<Value>,
    #[serde(default)]
    name: Option<String>,
}

#[derive(Deserialize)]
struct TemplateRef {
    #[serde(default)]
    id: Option<String>,
}

async fn create(State(sim): State<Arc<Sim>>, headers: HeaderMap, body: Bytes) -> Response {
    let account = match authorize(&sim, &headers) {
        Ok(a) => a,
        Err(r) => return r,
    };
    let req: CreateReport = match parse_body(&body) {
        Ok(r) => r,
        Err(e) => return bad_request(&e),
    };
    let Some(template) = req.template.and_then(|t| t.id).filter(|t| t.starts_with("RT-")) else {
        return bad_request("template.id: a report template id (RT-…) is required.");
    };
    let Some(renderer) = req.renderer.as_deref().and_then(parse_renderer) else {
        return bad_request("renderer: must be one of json, csv, xlsx.");
    };
    let parameters = req.parameters.unwrap_or_else(|| json!({}));
    if !parameters.is_object() {
        return bad_request("parameters: must be an object.");
    }
    let name = req
        .name
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| template.clone());
    let now = Utc::now();
    let job = sim.new_job(CONNECT, [name.as_str(), template.as_str()], now);
    let mut state = lock(&sim.connect);
    state.created += 1;
    let n = state.created;
    let id = format!(
        "RP-{:04}-{:04}-{:04}",
        n / 100_000_000 % 10_000,
        n / 10_000 % 10_000,
        n % 10_000
    );
    let date_parameter = sim
        .config
        .connect
        .date_parameters
        .get(&template)
        .map_or("date", String::as_str);
    let (start, end) = window(&parameters, date_parameter);
    let content = ReportContent {
        backend: CONNECT,
        name: name.clone(),
        organization: account.clone(),
        format: renderer,
        start,
        end,
    };
    let summary = json!({"name": name, "template": {"id": template}, "renderer": renderer.lower(), "parameters": parameters});
    let path = sim.storage.put(
        "reports",
        &id,
        StoredObject {
            content,
            packaging: Packaging::ConnectZip { summary },
        },
    );
    let report = Report {
        id,
        name,
        template,
        renderer,
        parameters,
        job,
        path,
        account: account.clone(),
    };
    let key = format!(
        "{account}|{}|{}|{}",
        report.template,
        renderer.lower(),
        report.parameters
    );
    let doc = report.to_json(now);
    state.reports.push(report);
    let running = state
        .reports
        .iter()
        .filter(|r| r.account == account && r.job.is_active(now))
        .count();
    sim.stats.generation(CONNECT, key, &account, running);
    json(StatusCode::CREATED, doc)
}

/// One page of `items` (newest first unless `ordering(…)` says otherwise), with its
/// `Content-Range`, paged the way Connect pages:
/// with CloudBlue's django-rql (`RQLContentRangeLimitOffsetPagination`, the class Connect's
/// OpenAPI document names for `limit` and `offset`). `limit=0` asks for the total alone and
/// gets no items; the range always reads `items <first>-<last>/<total>`, an empty page
/// `items <offset>-<offset>/<total>` (`0-0/0`): Connect's own client cannot read `*/<total>`.
fn page(items: Vec<Value>, uri: &Uri) -> Response {
    let query = match rql::parse(uri.query().unwrap_or_default()) {
        Ok(q) => q,
        Err(e) => return bad_request(&e.to_string()),
    };
    let Some((limit, offset)) = paging(&query) else {
        return bad_request("Limit and offset are set incorrectly.");
    };
    let mut matching: Vec<Value> = items
        .into_iter()
        .filter(|d| query.matches(d, &["limit", "offset", "ordering", "select"]))
        .collect();
    query.sort(&mut matching);
    let total = matching.len();
    let page: Vec<Value> = matching.into_iter().skip(offset).take(limit).collect();
    let last = offset + page.len().saturating_sub(1);
    let mut response = json(StatusCode::OK, Value::Array(page));
    if let Ok(v) = HeaderValue::from_str(&format!("items {offset}-{last}/{total}")) {
        response.headers_mut().insert(header::CONTENT_RANGE, v);
    }
    response
}

/// `limit` and `offset` as django-rql reads them: a limit that is not a number is the default,
/// one over the maximum is the maximum; an offset that is not a number is 0, and so is every
/// offset of `limit=0`. Either given twice is refused (`None`).
fn paging(query: &rql::Query) -> Option<(usize, usize)> {
    let value = |key: &str| {
        let mut given = query.params.iter().filter(|(k, _)| k == key).map(|(_, v)| v);
        let first = given.next();
        given
            .next()
            .is_none()
            .then(|| first.and_then(|v| v.parse::<usize>().ok()))
    };
    let limit = value("limit")?.map_or(DEFAULT_LIMIT, |l| l.min(MAX_LIMIT));
    let offset = value("offset")?.filter(|_| limit > 0).unwrap_or(0);
    Some((limit, offset))
}

async fn list(State(sim): State<Arc<Sim>>, headers: HeaderMap, uri: Uri) -> Response {
    if let Err(r) = authorize(&sim, &headers) {
        return r;
    }
    let now = Utc::now();
    let items: Vec<Value> = lock(&sim.connect)
        .reports
        .iter()
        .rev()
        .map(|r| r.to_json(now))
        .collect();
    page(items, &uri)
}

async fn get_report(State(sim): State<Arc<Sim>>, Path(id): Path<String>, headers: HeaderMap) -> Response {
    if let Err(r) = authorize(&sim, &headers) {
        return r;
    }
    match lock(&sim.connect).reports.iter().find(|r| r.id == id) {
        Some(r) => json(StatusCode::OK, r.to_json(Utc::now())),
        None => not_found(&format!("Report {id}")),
    }
}

async fn download(State(sim): State<Arc<Sim>>, Path(id): Path<String>, headers: HeaderMap) -> Response {
    if let Err(r) = authorize(&sim, &headers) {
        return r;
    }
    let now = Utc::now();
    let state = lock(&sim.connect);
    let Some(report) = state.reports.iter().find(|r| r.id == id) else {
        return not_found(&format!("Report {id}"));
    };
    if report.job.phase(now) != Phase::Succeeded {
        return error(
            StatusCode::BAD_REQUEST,
            "REP_002",
            "The report is not ready for download.",
        );
    }
    let url = sim.signed_url(
        &report.path,
        expiry_after(now, sim.config.connect.url_lifetime_secs),
    );
    match HeaderValue::from_str(&url) {
        Ok(location) => (StatusCode::FOUND, [(header::LOCATION, location)]).into_response(),
        Err(_) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "SYS_001",
            "Could not build the download location.",
        ),
    }
}

/// Removes a ready report and its file; a failed one is terminal and one still being made
/// is not finished, so neither can be removed.
async fn delete_report(State(sim): State<Arc<Sim>>, Path(id): Path<String>, headers: HeaderMap) -> Response {
    if let Err(r) = authorize(&sim, &headers) {
        return r;
    }
    let now = Utc::now();
    let mut state = lock(&sim.connect);
    let Some(at) = state.reports.iter().position(|r| r.id == id) else {
        return not_found(&format!("Report {id}"));
    };
    match state.reports[at].job.phase(now) {
        Phase::Succeeded => {
            let report = state.reports.remove(at);
            sim.storage.remove(&report.path);
            StatusCode::NO_CONTENT.into_response()
        }
        Phase::Failed => error(
            StatusCode::BAD_REQUEST,
            "REP_003",
            "A failed report cannot be changed or removed.",
        ),
        Phase::Queued | Phase::Running => error(
            StatusCode::BAD_REQUEST,
            "REP_003",
            "The report is being processed and cannot be removed.",
        ),
    }
}

/// The account's schedules (seed 002: daily, weekly or monthly; enabled or disabled).
fn schedules() -> Vec<Value> {
    vec![
        json!({
            "id": "RS-0000-0001", "name": "Daily usage", "template": {"id": "RT-0000-0001"}, "renderer": "csv",
            "parameters": {}, "trigger": {"type": "daily", "hour": 2}, "status": "enabled",
        }),
        json!({
            "id": "RS-0000-0002", "name": "Monthly billing", "template": {"id": "RT-0000-0002"}, "renderer": "xlsx",
            "parameters": {}, "trigger": {"type": "monthly", "day": 1, "hour": 3}, "status": "disabled",
        }),
    ]
}

async fn list_schedules(State(sim): State<Arc<Sim>>, headers: HeaderMap, uri: Uri) -> Response {
    if let Err(r) = authorize(&sim, &headers) {
        return r;
    }
    page(schedules(), &uri)
}

async fn get_schedule(State(sim): State<Arc<Sim>>, Path(id): Path<String>, headers: HeaderMap) -> Response {
    if let Err(r) = authorize(&sim, &headers) {
        return r;
    }
    match schedules().into_iter().find(|s| s["id"] == id.as_str()) {
        Some(s) => json(StatusCode::OK, s),
        None => not_found(&format!("Schedule {id}")),
    }
}
