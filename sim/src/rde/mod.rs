//! RDE: CloudBlue Commerce Reporting and Data Export over APS REST (seed 000), under `/rde`.
//!
//! Endpoints (names for faults and statistics):
//! - `create`: `POST /aps/2/resources` makes an `RDEReportTemplate` → 202, `aps.status`
//!   `aps:provisioning`, `nextReportDate` for PERIODIC. No idempotency: a repeated POST makes a
//!   second template. ONETIME templates get their one report file at once.
//! - `lookup`: `GET /aps/2/resources?<RQL>` (`implementing(<type>)`, `eq(commonName,…)`,
//!   `limit(start,count)`) → array, with `Content-Range: items a-b/total`.
//! - `get`: `GET /aps/2/resources/{id}`, a template or a report file.
//! - `reportFiles`: `GET /aps/2/resources/{id}/reportFiles` → array of report files
//!   (`status` PENDING, IN_PROGRESS, READY, FAILED; `filePath` and `tmpPath` once READY).
//! - `delete`: `DELETE /aps/2/resources/{id}` → 204.
//!
//! Every call is checked as OAuth 1.0a two-legged HMAC-SHA1 ([`super::oauth1`]); failures are
//! 401 in the APS error shape. PERIODIC and ON_INVOICE templates get files only from the
//! platform's triggers: `POST /_sim/rde/templates/{id}/run` (the periodic task) and
//! `POST /_sim/rde/invoice` (a new invoice).
//!
//! Not documented, chosen here: errors are `{"code","type","message"}` (the APS bus's
//! shape); a failed file has `failedReason`; `tmpPath` is the file's path in the storage
//! container; a template is `aps:ready` once its first quarter of generation time passed.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::{DateTime, Datelike, Duration, NaiveDate, Utc};
use serde::Deserialize;
use serde_json::{Value, json};

use super::content::{Packaging, ReportContent, time};
use super::http::{endpoint, json, parse_body};
use super::job::{Job, Phase};
use super::oauth1::{Nonces, OAuthError, SignedRequest, Verifier};
use super::storage::{StoredObject, expiry_after};
use super::{Sim, lock, rql};
use crate::ReportingApi;
use crate::content::Format;

mod platform;

pub(crate) use platform::{invoice, run_template};

pub(crate) const PREFIX: &str = "/rde";
const RESOURCES: &str = "/aps/2/resources";
/// The APS package of the RDE application (any fixed id will do).
const PACKAGE_ID: &str = "2a1f2c8e-02a6-48c1-874d-e7617bc247bf";
const RDE: ReportingApi = ReportingApi::Rde;

#[derive(Default)]
pub(crate) struct Records {
    templates: HashMap<String, Template>,
    /// Template ids in creation order, for stable listings.
    order: Vec<String>,
    files: HashMap<String, ReportFile>,
    nonces: Nonces,
    last_invoice: Option<DateTime<Utc>>,
}

struct Template {
    id: String,
    type_: String,
    common_name: String,
    event_type: String,
    format: Format,
    notify_by_email: bool,
    parameters: Value,
    created: DateTime<Utc>,
    provisioned: DateTime<Utc>,
    next_report_date: Option<DateTime<Utc>>,
    last_report_date: Option<DateTime<Utc>>,
    files: Vec<String>,
    owner: String,
    actor_id: String,
    identity_id: String,
    tenant_id: String,
}

/// A report file.
pub(crate) struct ReportFile {
    pub id: String,
    type_: String,
    name: String,
    event_type: String,
    format: Format,
    parameters: Value,
    job: Job,
    path: String,
    url_expires: DateTime<Utc>,
    owner: String,
}

/// APS errors: `{"code","type","message"}`.
pub(crate) fn error(status: StatusCode, code: &str, message: &str) -> Response {
    json(
        status,
        json!({"code": status.as_u16(), "type": code, "message": message}),
    )
}

fn unauthorized(e: &OAuthError) -> Response {
    let mut response = error(
        StatusCode::UNAUTHORIZED,
        "APS::Security::Unauthorized",
        &e.to_string(),
    );
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("OAuth realm=\"APS\""),
    );
    response
}

fn not_found(id: &str) -> Response {
    error(
        StatusCode::NOT_FOUND,
        "APS::Util::ResourceNotFound",
        &format!("Resource {id} not found"),
    )
}

fn bad_request(message: &str) -> Response {
    error(StatusCode::BAD_REQUEST, "APS::Util::InvalidArgument", message)
}

/// Checks the OAuth signature of a request as the client addressed it.
fn authenticate(
    sim: &Sim,
    state: &mut Records,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
) -> Result<(), Response> {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default()
        .to_ascii_lowercase();
    let host = host.strip_suffix(":80").unwrap_or(&host);
    let request = SignedRequest {
        method: method.as_str(),
        origin: format!("http://{host}"),
        path: uri.path(),
        query: uri.query(),
        authorization: headers.get(header::AUTHORIZATION).and_then(|h| h.to_str().ok()),
    };
    let verifier = Verifier {
        consumer_key: &sim.config.rde.consumer_key,
        consumer_secret: &sim.config.rde.consumer_secret,
        tolerance_secs: i64::try_from(sim.config.rde.timestamp_tolerance_secs).unwrap_or(i64::MAX),
    };
    verifier
        .verify(&request, Utc::now().timestamp(), &mut state.nonces)
        .map_err(|e| unauthorized(&e))
}

/// Locks the state and authenticates; the handlers' common start.
fn enter<'a>(
    sim: &'a Sim,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
) -> Result<std::sync::MutexGuard<'a, Records>, Response> {
    let mut state = lock(&sim.rde);
    authenticate(sim, &mut state, method, uri, headers)?;
    Ok(state)
}

pub(crate) fn routes(sim: &Arc<Sim>) -> Router<Arc<Sim>> {
    let ep = |name, route| endpoint(sim, Some(RDE), name, route);
    Router::new()
        .route(
            &format!("{PREFIX}{RESOURCES}"),
            ep("create", post(create)).merge(ep("lookup", get(lookup))),
        )
        .route(
            &format!("{PREFIX}{RESOURCES}/{{id}}"),
            ep("get", get(get_resource)).merge(ep("delete", axum::routing::delete(delete))),
        )
        .route(
            &format!("{PREFIX}{RESOURCES}/{{id}}/reportFiles"),
            ep("reportFiles", get(report_files)),
        )
        .route("/_sim/rde/templates/{id}/run", post(platform::run_handler))
        .route("/_sim/rde/invoice", post(platform::invoice_handler))
}

fn rfc3339(t: DateTime<Utc>) -> String {
    time(t)
}

fn parse_time(v: Option<&Value>) -> Option<DateTime<Utc>> {
    v.and_then(Value::as_str)
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        .map(|t| t.with_timezone(&Utc))
}

fn parse_format(s: &str) -> Option<Format> {
    match s {
        "JSON" => Some(Format::Json),
        "XML" => Some(Format::Xml),
        "CSV" => Some(Format::Csv),
        "XLSX" => Some(Format::Xlsx),
        _ => None,
    }
}

/// The period of a periodic template: `P1D` or `P1M` (21.0's DAILY and MONTHLY imply it).
fn period_of(event_type: &str, parameters: &Value) -> Option<&'static str> {
    match (event_type, parameters.get("period").and_then(Value::as_str)) {
        ("DAILY", _) | ("PERIODIC", Some("P1D")) => Some("P1D"),
        ("MONTHLY", _) | ("PERIODIC", Some("P1M")) => Some("P1M"),
        _ => None,
    }
}

fn midnight(d: NaiveDate) -> DateTime<Utc> {
    d.and_hms_opt(0, 0, 0)
        .map(|t| t.and_utc())
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
}

fn first_of_month(d: NaiveDate) -> NaiveDate {
    d.with_day(1).unwrap_or(d)
}

fn next_month(d: NaiveDate) -> NaiveDate {
    first_of_month(first_of_month(d) + Duration::days(32))
}

/// The window the periodic task reports on when it runs at `at` (seed 000: a run on day D
/// covers D-1 00:00:00 to 23:59:59; monthly, the previous month), and the next run.
fn periodic_window(period: &str, at: DateTime<Utc>) -> (DateTime<Utc>, DateTime<Utc>, DateTime<Utc>) {
    let today = at.date_naive();
    if period == "P1M" {
        let this_month = first_of_month(today);
        let previous = first_of_month(this_month - Duration::days(1));
        (
            midnight(previous),
            midnight(this_month) - Duration::seconds(1),
            midnight(next_month(today)),
        )
    } else {
        let yesterday = today - Duration::days(1);
        (
            midnight(yesterday),
            midnight(today) - Duration::seconds(1),
            midnight(today + Duration::days(1)),
        )
    }
}

impl Template {
    fn to_json(&self, now: DateTime<Utc>) -> Value {
        let ready = now >= self.provisioned;
        let mut doc = json!({
            "aps": {
                "type": self.type_,
                "id": self.id,
                "status": if ready { "aps:ready" } else { "aps:provisioning" },
                "revision": if ready { 4 } else { 3 },
                "modified": rfc3339(if ready { self.provisioned } else { self.created }),
                "package": {"id": PACKAGE_ID, "href": format!("/aps/2/packages/{PACKAGE_ID}")},
            },
            "commonName": self.common_name,
            "eventType": self.event_type,
            "format": self.format.upper(),
            "notifyByEmail": self.notify_by_email,
            "parameters": self.parameters,
            "reportApsActorId": self.actor_id,
            "reportApsIdentityId": self.identity_id,
            "reportFiles": {"aps": {"link": "collection", "href": format!("{RESOURCES}/{}/reportFiles", self.id)}},
            "tenant": {"aps": {"link": "weak", "href": format!("{RESOURCES}/{}", self.tenant_id), "id": self.tenant_id}},
        });
        if let Some(next) = self.next_report_date {
            doc["nextReportDate"] = json!(rfc3339(next));
        }
        if let Some(last) = self.last_report_date {
            doc["lastReportDate"] = json!(rfc3339(last));
        }
        doc
    }
}

impl ReportFile {
    fn to_json(&self, sim: &Sim, now: DateTime<Utc>) -> Value {
        let phase = self.job.phase(now);
        let (status, aps_status, revision) = match phase {
            Phase::Queued => ("PENDING", "aps:provisioning", 4),
            Phase::Running => ("IN_PROGRESS", "aps:provisioning", 5),
            Phase::Succeeded => ("READY", "aps:ready", 6),
            Phase::Failed => ("FAILED", "aps:ready", 6),
        };
        let mut doc = json!({
            "aps": {"modified": rfc3339(self.job.modified(now)), "id": self.id, "type": self.type_, "status": aps_status, "revision": revision},
            "generateDate": rfc3339(self.job.created),
            "format": self.format.upper(),
            "name": self.name,
            "eventType": self.event_type,
            "parameters": self.parameters,
            "status": status,
        });
        match phase {
            Phase::Succeeded => {
                doc["filePath"] = json!(sim.signed_url(&self.path, self.url_expires));
                doc["tmpPath"] = json!(self.path.split_once('/').map_or(self.path.as_str(), |(_, p)| p));
            }
            Phase::Failed => {
                doc["failedReason"] = json!(format!(
                    "Report generation failed: the data export of {:?} aborted",
                    self.name
                ));
            }
            Phase::Queued | Phase::Running => {}
        }
        doc
    }
}

/// Adds a report file to `template` for the window `start..end`; returns its id.
fn add_file(
    sim: &Sim,
    state: &mut Records,
    template_id: &str,
    mut parameters: Value,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Option<String> {
    let template = state.templates.get(template_id)?;
    let id = uuid::Uuid::new_v4().to_string();
    let job = sim.new_job(RDE, [template.common_name.as_str()], now);
    let content = ReportContent {
        backend: RDE,
        name: template.common_name.clone(),
        organization: template.owner.clone(),
        format: template.format,
        start: Some(start),
        end: Some(end),
    };
    // Seed 000 and 001: RDE's JSON files are gzipped (`.json.gz`); XLSX is zipped already.
    let packaging = if template.format == Format::Xlsx {
        Packaging::Plain
    } else {
        Packaging::Gzip
    };
    let stem = format!(
        "{}.{id}.{}",
        template.common_name,
        now.format("%Y-%m-%d.%H-%M-%S%.3f+0000")
    );
    let path = sim
        .storage
        .put("rdecontainer", &stem, StoredObject { content, packaging });
    if let Some(p) = parameters.as_object_mut() {
        p.insert("startDate".into(), json!(rfc3339(start)));
        p.insert("endDate".into(), json!(rfc3339(end)));
    }
    let key = format!(
        "{}|{}|{}|{}..{}",
        template.owner,
        template.common_name,
        template.format.upper(),
        rfc3339(start),
        rfc3339(end)
    );
    let file = ReportFile {
        id: id.clone(),
        type_: template.type_.replace("report-template", "report-file"),
        name: template.common_name.clone(),
        event_type: template.event_type.clone(),
        format: template.format,
        parameters,
        job,
        path,
        url_expires: expiry_after(job.done_at, sim.config.rde.url_lifetime_secs),
        owner: template.owner.clone(),
    };
    let owner = file.owner.clone();
    state.files.insert(id.clone(), file);
    if let Some(t) = state.templates.get_mut(template_id) {
        t.files.push(id.clone());
    }
    let running = state
        .files
        .values()
        .filter(|f| f.owner == owner && f.job.is_active(now))
        .count();
    sim.stats.generation(RDE, key, &owner, running);
    Some(id)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CreateTemplate {
    aps: ApsType,
    #[serde(default)]
    common_name: Option<String>,
    #[serde(default)]
    event_type: Option<String>,
    #[serde(default)]
    format: Option<String>,
    #[serde(default)]
    notify_by_email: bool,
    #[serde(default)]
    parameters: Option<Value>,
}

#[derive(Deserialize)]
struct ApsType {
    #[serde(rename = "type")]
    type_: String,
}

async fn create(
    State(sim): State<Arc<Sim>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut state = match enter(&sim, &method, &uri, &headers) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let req: CreateTemplate = match parse_body(&body) {
        Ok(r) => r,
        Err(e) => return bad_request(&e),
    };
    if !sim.config.rde.template_types.contains(&req.aps.type_) {
        return bad_request(&format!("Unknown APS type {:?}", req.aps.type_));
    }
    let Some(common_name) = req.common_name.filter(|n| !n.trim().is_empty()) else {
        return bad_request("commonName is required");
    };
    let Some(format) = req.format.as_deref().and_then(parse_format) else {
        return bad_request("format must be one of JSON, XML, CSV, XLSX");
    };
    let event_type = req.event_type.unwrap_or_default();
    let parameters = req.parameters.unwrap_or_else(|| json!({}));
    if !parameters.is_object() {
        return bad_request("parameters must be an object");
    }
    let now = Utc::now();
    let mut next_report_date = None;
    let mut window = None;
    match event_type.as_str() {
        "ONETIME" => match (
            parse_time(parameters.get("startDate")),
            parse_time(parameters.get("endDate")),
        ) {
            (Some(start), Some(end)) if end > start => window = Some((start, end)),
            (Some(_), Some(_)) => {
                return bad_request("parameters.endDate must be after parameters.startDate");
            }
            _ => return bad_request("ONETIME needs parameters.startDate and parameters.endDate (RFC 3339)"),
        },
        "PERIODIC" | "DAILY" | "MONTHLY" => match period_of(&event_type, &parameters) {
            Some(period) => next_report_date = Some(periodic_window(period, now).2),
            None => return bad_request("PERIODIC needs parameters.period P1D or P1M"),
        },
        "ON_INVOICE" => {}
        other => {
            return bad_request(&format!(
                "eventType {other:?} is not one of ONETIME, PERIODIC, ON_INVOICE, DAILY, MONTHLY"
            ));
        }
    }
    let id = uuid::Uuid::new_v4().to_string();
    let template = Template {
        id: id.clone(),
        type_: req.aps.type_,
        common_name,
        event_type,
        format,
        notify_by_email: req.notify_by_email,
        parameters: parameters.clone(),
        created: now,
        provisioned: now + Duration::from_std(sim.config.rde.behaviour.generation() / 4).unwrap_or_default(),
        next_report_date,
        last_report_date: None,
        files: Vec::new(),
        owner: sim.config.rde.consumer_key.clone(),
        actor_id: uuid::Uuid::new_v4().to_string(),
        identity_id: uuid::Uuid::new_v4().to_string(),
        tenant_id: uuid::Uuid::new_v4().to_string(),
    };
    // The answer shows the template as created: still provisioning.
    let mut answer = template.to_json(now);
    answer["aps"]["status"] = json!("aps:provisioning");
    state.templates.insert(id.clone(), template);
    state.order.push(id.clone());
    if let Some((start, end)) = window {
        add_file(&sim, &mut state, &id, parameters, start, end, now);
    }
    json(StatusCode::ACCEPTED, answer)
}

async fn lookup(State(sim): State<Arc<Sim>>, method: Method, uri: Uri, headers: HeaderMap) -> Response {
    let state = match enter(&sim, &method, &uri, &headers) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let query = match rql::parse(uri.query().unwrap_or_default()) {
        Ok(q) => q,
        Err(e) => return bad_request(&e.to_string()),
    };
    let now = Utc::now();
    let templates = state
        .order
        .iter()
        .filter_map(|id| state.templates.get(id))
        .map(|t| t.to_json(now));
    let mut files: Vec<&ReportFile> = state.files.values().collect();
    files.sort_by(|a, b| (a.job.created, &a.id).cmp(&(b.job.created, &b.id)));
    let all: Vec<Value> = templates
        .chain(files.into_iter().map(|f| f.to_json(&sim, now)))
        .filter(|d| query.matches(d, &[]))
        .collect();
    let total = all.len();
    let (start, count) = query.limit.unwrap_or((0, total));
    let page: Vec<Value> = all.into_iter().skip(start).take(count).collect();
    let range = if page.is_empty() {
        format!("items */{total}")
    } else {
        format!("items {}-{}/{total}", start, start + page.len() - 1)
    };
    let mut response = json(StatusCode::OK, Value::Array(page));
    if let Ok(v) = HeaderValue::from_str(&range) {
        response.headers_mut().insert(header::CONTENT_RANGE, v);
    }
    response
}

async fn get_resource(
    State(sim): State<Arc<Sim>>,
    Path(id): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let state = match enter(&sim, &method, &uri, &headers) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let now = Utc::now();
    if let Some(t) = state.templates.get(&id) {
        return json(StatusCode::OK, t.to_json(now));
    }
    match state.files.get(&id) {
        Some(f) => json(StatusCode::OK, f.to_json(&sim, now)),
        None => not_found(&id),
    }
}

async fn report_files(
    State(sim): State<Arc<Sim>>,
    Path(id): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let state = match enter(&sim, &method, &uri, &headers) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let Some(template) = state.templates.get(&id) else {
        return not_found(&id);
    };
    let now = Utc::now();
    let files: Vec<Value> = template
        .files
        .iter()
        .filter_map(|f| state.files.get(f))
        .map(|f| f.to_json(&sim, now))
        .collect();
    json(StatusCode::OK, Value::Array(files))
}

async fn delete(
    State(sim): State<Arc<Sim>>,
    Path(id): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let mut state = match enter(&sim, &method, &uri, &headers) {
        Ok(s) => s,
        Err(r) => return r,
    };
    if let Some(template) = state.templates.remove(&id) {
        state.order.retain(|t| *t != id);
        // The template's report resources go with it; the files stay in storage (90 days).
        for f in &template.files {
            state.files.remove(f);
        }
        return StatusCode::NO_CONTENT.into_response();
    }
    match state.files.remove(&id) {
        Some(_) => {
            state
                .templates
                .values_mut()
                .for_each(|t| t.files.retain(|f| *f != id));
            StatusCode::NO_CONTENT.into_response()
        }
        None => not_found(&id),
    }
}

pub(crate) fn template_exists(sim: &Sim, id: &str) -> bool {
    lock(&sim.rde).templates.contains_key(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).expect("time").with_timezone(&Utc)
    }

    #[test]
    fn periodic_windows_are_the_previous_day_or_month() {
        let (s, e, n) = periodic_window("P1D", at("2018-10-09T10:21:25Z"));
        assert_eq!(
            (s, e, n),
            (
                at("2018-10-08T00:00:00Z"),
                at("2018-10-08T23:59:59Z"),
                at("2018-10-10T00:00:00Z")
            )
        );
        let (s, e, n) = periodic_window("P1M", at("2024-03-01T00:00:00Z"));
        assert_eq!(
            (s, e, n),
            (
                at("2024-02-01T00:00:00Z"),
                at("2024-02-29T23:59:59Z"),
                at("2024-04-01T00:00:00Z")
            )
        );
        let (s, _, n) = periodic_window("P1M", at("2024-12-15T00:00:00Z"));
        assert_eq!((s, n), (at("2024-11-01T00:00:00Z"), at("2025-01-01T00:00:00Z")));
    }
}
