//! CMP: CloudBlue Commerce SimpleAPI `/reports` (seed 001), under `/cmp/marketplace`.
//!
//! Endpoints (names for faults and statistics):
//! - `token`: `POST /token` with `Authorization: Basic`, `X-Subscription-Key` and
//!   `{"marketplace":"us"}` → `{"token","expiresInSeconds"}` (a JWT-shaped opaque token).
//! - `list`: `GET /reports?from=YYYY-MM-DD&to=YYYY-MM-DD[&format][&name][&type][&status]` →
//!   `{"data":[Report…],"pagination":{"offset":0,"limit":total,"total":total}}` (seed: offset
//!   and limit are not parsed). `from`/`to` select by creation day.
//! - `create`: `POST /reports` `{name,customizationName,format,startDate,endDate}` → a Report,
//!   `type: onetime`, `status` submitted → processing → completed | error.
//! - `get`: `GET /reports/{id}`.
//!
//! Every call needs `X-Subscription-Key` (and all but `token` a bearer token); every answer
//! carries `X-Correlation-ID`. The gateway allows `requestsPerMinute` and `requestsPerDay`
//! calls per subscription (sliding windows, token calls included), then 429 with
//! `Retry-After`. On-invoice reports come from `POST /_sim/cmp/invoice {"name":"…"}`.
//!
//! Not documented, chosen here: errors are `{"statusCode","message"}` (the shape of the Azure
//! API Management gateway CMP runs behind, whose messages the 401s and 429s reuse); a report
//! in `error` has `errorMessage`.

use std::sync::Arc;
use std::time::{Duration as StdDuration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use chrono::{DateTime, Datelike, Duration, NaiveDate, SecondsFormat, Utc};
use serde::Deserialize;
use serde_json::{Value, json};

use super::config::CmpConfig;
use super::content::{Packaging, ReportContent};
use super::control::optional_body;
use super::http::{basic, bearer_token, endpoint, header, json, parse_body, same_secret, with_retry_after};
use super::job::{Job, Phase};
use super::signing::TokenError;
use super::storage::{StoredObject, expiry_after};
use super::window::{Limits, retry_after_secs};
use super::{Sim, lock};
use crate::ReportingApi;
use crate::content::Format;

pub(crate) const PREFIX: &str = "/cmp/marketplace";
const CMP: ReportingApi = ReportingApi::Cmp;
const SUBSCRIPTION_KEY: &str = "x-subscription-key";
const TOKEN_KIND: &str = "cmp";

pub(crate) struct Records {
    reports: Vec<Report>,
    quota: Limits<String>,
}

impl Records {
    pub fn new(config: &CmpConfig) -> Self {
        Records {
            reports: Vec::new(),
            quota: Limits::new(vec![
                (config.requests_per_minute, StdDuration::from_secs(60)),
                (config.requests_per_day, StdDuration::from_secs(86_400)),
            ]),
        }
    }
}

struct Report {
    id: String,
    name: String,
    customization_name: String,
    type_: &'static str,
    format: Format,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    job: Job,
    path: String,
    url_expires: DateTime<Utc>,
    subscription: String,
}

/// CMP's gateway errors: `{"statusCode","message"}`.
pub(crate) fn error(status: StatusCode, _code: &str, message: &str) -> Response {
    json(status, json!({"statusCode": status.as_u16(), "message": message}))
}

fn bad_request(message: &str) -> Response {
    error(StatusCode::BAD_REQUEST, "", message)
}

fn unauthorized(message: &str) -> Response {
    error(StatusCode::UNAUTHORIZED, "", message)
}

fn millis(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

async fn correlation_id(mut response: Response) -> Response {
    if let Ok(v) = HeaderValue::from_str(&uuid::Uuid::new_v4().to_string()) {
        response.headers_mut().insert("x-correlation-id", v);
    }
    response
}

pub(crate) fn routes(sim: &Arc<Sim>) -> Router<Arc<Sim>> {
    let ep = |name, route| endpoint(sim, Some(CMP), name, route);
    Router::new()
        .route(&format!("{PREFIX}/token"), ep("token", post(token)))
        .route(
            &format!("{PREFIX}/reports"),
            ep("list", get(list)).merge(ep("create", post(create))),
        )
        .route(&format!("{PREFIX}/reports/{{id}}"), ep("get", get(get_report)))
        .layer(axum::middleware::map_response(correlation_id))
        .route("/_sim/cmp/invoice", post(invoice_handler))
}

/// The gateway's part: a known subscription key within its quota. Returns the key.
fn gateway(sim: &Sim, state: &mut Records, headers: &HeaderMap) -> Result<String, Response> {
    let Some(key) = header(headers, SUBSCRIPTION_KEY) else {
        return Err(unauthorized(
            "Access denied due to missing subscription key. Make sure to include subscription key when making requests to an API.",
        ));
    };
    if !same_secret(key, &sim.config.cmp.subscription_key) {
        return Err(unauthorized(
            "Access denied due to invalid subscription key. Make sure to provide a valid key for an active subscription.",
        ));
    }
    if let Err(wait) = state.quota.acquire(key.to_string(), Instant::now()) {
        let secs = retry_after_secs(wait);
        let message = format!("Rate limit is exceeded. Try again in {secs} seconds.");
        return Err(with_retry_after(
            error(StatusCode::TOO_MANY_REQUESTS, "", &message),
            secs,
        ));
    }
    Ok(key.to_string())
}

/// Gateway plus a valid bearer token issued for this subscription.
fn authorize(sim: &Sim, state: &mut Records, headers: &HeaderMap) -> Result<String, Response> {
    let key = gateway(sim, state, headers)?;
    let Some(token) = bearer_token(headers) else {
        return Err(unauthorized("Unauthorized. Access token is missing or invalid."));
    };
    match sim.signer.check(TOKEN_KIND, token, Utc::now()) {
        Ok(claims) if claims.sub == key => Ok(key),
        Err(TokenError::Expired) => Err(unauthorized("Unauthorized. Access token has expired.")),
        _ => Err(unauthorized("Unauthorized. Access token is missing or invalid.")),
    }
}

#[derive(Deserialize)]
struct TokenRequest {
    #[serde(default)]
    marketplace: Option<String>,
}

async fn token(State(sim): State<Arc<Sim>>, headers: HeaderMap, body: Bytes) -> Response {
    let key = match gateway(&sim, &mut lock(&sim.cmp), &headers) {
        Ok(k) => k,
        Err(r) => return r,
    };
    let config = &sim.config.cmp;
    match basic(&headers) {
        Some((user, password))
            if same_secret(&user, &config.username) && same_secret(&password, &config.password) => {}
        _ => return unauthorized("Invalid username or password."),
    }
    match parse_body::<TokenRequest>(&body) {
        Ok(TokenRequest { marketplace: Some(m) }) if !m.trim().is_empty() => {}
        Ok(_) => return bad_request("marketplace is required"),
        Err(e) => return bad_request(&e),
    }
    let token = sim
        .signer
        .mint(TOKEN_KIND, &key, config.token_lifetime_secs, Utc::now());
    json(
        StatusCode::OK,
        json!({"token": token, "expiresInSeconds": config.token_lifetime_secs}),
    )
}

impl Report {
    fn status(&self, now: DateTime<Utc>) -> &'static str {
        match self.job.phase(now) {
            Phase::Queued => "submitted",
            Phase::Running => "processing",
            Phase::Succeeded => "completed",
            Phase::Failed => "error",
        }
    }

    fn to_json(&self, sim: &Sim, now: DateTime<Utc>) -> Value {
        let mut doc = json!({
            "id": self.id,
            "name": self.name,
            "customizationName": self.customization_name,
            "status": self.status(now),
            "type": self.type_,
            "format": self.format.lower(),
            "creationDate": millis(self.job.created),
            "startDate": millis(self.start),
            "endDate": millis(self.end),
        });
        match self.job.phase(now) {
            Phase::Succeeded => doc["downloadUrl"] = json!(sim.signed_url(&self.path, self.url_expires)),
            Phase::Failed => {
                doc["errorMessage"] = json!(format!("Report {:?} could not be generated", self.name))
            }
            Phase::Queued | Phase::Running => {}
        }
        doc
    }
}

fn parse_format(s: &str) -> Option<Format> {
    match s.to_ascii_lowercase().as_str() {
        "json" => Some(Format::Json),
        "xml" => Some(Format::Xml),
        "csv" => Some(Format::Csv),
        "xlsx" => Some(Format::Xlsx),
        _ => None,
    }
}

/// Stores a new report and counts its generation; returns its id.
#[allow(clippy::too_many_arguments)]
fn add_report(
    sim: &Sim,
    state: &mut Records,
    subscription: &str,
    name: &str,
    customization_name: &str,
    type_: &'static str,
    format: Format,
    window: (DateTime<Utc>, DateTime<Utc>),
    job: Job,
) -> String {
    let id = uuid::Uuid::new_v4().to_string();
    let (start, end) = window;
    let content = ReportContent {
        backend: CMP,
        name: name.to_string(),
        organization: subscription_label(subscription),
        format,
        start: Some(start),
        end: Some(end),
    };
    let stem = format!("{name}.{id}.{}", job.created.format("%Y-%m-%d.%H-%M-%S%.3f+0000"));
    let path = sim.storage.put(
        "rdecontainer",
        &stem,
        StoredObject {
            content,
            packaging: Packaging::Plain,
        },
    );
    let now = job.created;
    state.reports.push(Report {
        id: id.clone(),
        name: name.to_string(),
        customization_name: customization_name.to_string(),
        type_,
        format,
        start,
        end,
        job,
        path,
        url_expires: expiry_after(job.done_at, sim.config.cmp.url_lifetime_secs),
        subscription: subscription.to_string(),
    });
    let running = state
        .reports
        .iter()
        .filter(|r| r.subscription == subscription && r.job.is_active(now))
        .count();
    let label = subscription_label(subscription);
    let key = format!(
        "{label}|{name}|{customization_name}|{}|{}..{}",
        format.lower(),
        millis(start),
        millis(end)
    );
    sim.stats.generation(CMP, key, &label, running);
    id
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CreateReport {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    customization_name: Option<String>,
    #[serde(default)]
    format: Option<String>,
    #[serde(default)]
    start_date: Option<String>,
    #[serde(default)]
    end_date: Option<String>,
}

fn parse_time(s: Option<&str>) -> Option<DateTime<Utc>> {
    s.and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        .map(|t| t.with_timezone(&Utc))
}

async fn create(State(sim): State<Arc<Sim>>, headers: HeaderMap, body: Bytes) -> Response {
    let mut state = lock(&sim.cmp);
    let subscription = match authorize(&sim, &mut state, &headers) {
        Ok(k) => k,
        Err(r) => return r,
    };
    let req: CreateReport = match parse_body(&body) {
        Ok(r) => r,
        Err(e) => return bad_request(&e),
    };
    let Some(name) = req.name.filter(|n| !n.trim().is_empty()) else {
        return bad_request("name is required");
    };
    let Some(format) = req.format.as_deref().and_then(parse_format) else {
        return bad_request("format must be one of json, xml, csv, xlsx");
    };
    let (start, end) = match (
        parse_time(req.start_date.as_deref()),
        parse_time(req.end_date.as_deref()),
    ) {
        (Some(s), Some(e)) if e > s => (s, e),
        (Some(_), Some(_)) => return bad_request("endDate must be after startDate"),
        _ => return bad_request("startDate and endDate are required (ISO 8601 date-time)"),
    };
    let customization = req.customization_name.unwrap_or_default();
    let now = Utc::now();
    let job = sim.new_job(CMP, [name.as_str(), customization.as_str()], now);
    let id = add_report(
        &sim,
        &mut state,
        &subscription,
        &name,
        &customization,
        "onetime",
        format,
        (start, end),
        job,
    );
    let doc = state
        .reports
        .iter()
        .find(|r| r.id == id)
        .map(|r| r.to_json(&sim, now))
        .unwrap_or_default();
    json(StatusCode::OK, doc)
}

async fn get_report(State(sim): State<Arc<Sim>>, Path(id): Path<String>, headers: HeaderMap) -> Response {
    let mut state = lock(&sim.cmp);
    if let Err(r) = authorize(&sim, &mut state, &headers) {
        return r;
    }
    match state.reports.iter().find(|r| r.id == id) {
        Some(r) => json(StatusCode::OK, r.to_json(&sim, Utc::now())),
        None => error(StatusCode::NOT_FOUND, "", &format!("Report {id} not found")),
    }
}

#[derive(Deserialize)]
struct ListQuery {
    #[serde(default)]
    from: Option<String>,
    #[serde(default)]
    to: Option<String>,
    #[serde(default)]
    format: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default, rename = "type")]
    type_: Option<String>,
    #[serde(default)]
    status: Option<String>,
}

/// A day as the seed writes it (`2019-11-05`); a date-time's day is accepted too.
fn parse_day(s: Option<&str>) -> Option<NaiveDate> {
    let s = s?;
    NaiveDate::parse_from_str(s.get(..10).unwrap_or(s), "%Y-%m-%d").ok()
}

async fn list(State(sim): State<Arc<Sim>>, headers: HeaderMap, Query(q): Query<ListQuery>) -> Response {
    let mut state = lock(&sim.cmp);
    if let Err(r) = authorize(&sim, &mut state, &headers) {
        return r;
    }
    let (Some(from), Some(to)) = (parse_day(q.from.as_deref()), parse_day(q.to.as_deref())) else {
        return bad_request("from and to are required (YYYY-MM-DD)");
    };
    if let Some(f) = q.format.as_deref()
        && parse_format(f).is_none()
    {
        return bad_request("format must be one of json, xml, csv, xlsx");
    }
    let now = Utc::now();
    let data: Vec<Value> = state
        .reports
        .iter()
        .filter(|r| (from..=to).contains(&r.job.created.date_naive()))
        .filter(|r| {
            q.format
                .as_deref()
                .is_none_or(|f| parse_format(f) == Some(r.format))
        })
        .filter(|r| q.name.as_deref().is_none_or(|n| n == r.name))
        .filter(|r| q.type_.as_deref().is_none_or(|t| t.eq_ignore_ascii_case(r.type_)))
        .filter(|r| {
            q.status
                .as_deref()
                .is_none_or(|s| s.eq_ignore_ascii_case(r.status(now)))
        })
        .map(|r| r.to_json(&sim, now))
        .collect();
    let total = data.len();
    json(
        StatusCode::OK,
        json!({"data": data, "pagination": {"offset": 0, "limit": total, "total": total}}),
    )
}

/// The calendar month before `now`'s.
fn previous_month(now: DateTime<Utc>) -> (DateTime<Utc>, DateTime<Utc>) {
    let this_month = now.date_naive().with_day(1).unwrap_or(now.date_naive());
    let previous = (this_month - Duration::days(1)).with_day(1).unwrap_or(this_month);
    let midnight = |d: NaiveDate| d.and_hms_opt(0, 0, 0).map(|t| t.and_utc()).unwrap_or(now);
    (midnight(previous), midnight(this_month) - Duration::seconds(1))
}

/// A name for a subscription in files and statistics: the key itself is a credential.
fn subscription_label(key: &str) -> String {
    use sha2::Digest;
    let hash = sha2::Sha256::digest(key.as_bytes());
    format!(
        "subscription-{}",
        hash.iter()
            .take(4)
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    )
}

/// An invoice report the platform made by itself: completed at once, `type: on_invoice`.
pub(crate) fn invoice_report(sim: &Sim, name: &str, format: Option<Format>, now: DateTime<Utc>) -> String {
    let mut state = lock(&sim.cmp);
    let subscription = sim.config.cmp.subscription_key.clone();
    let job = Job::new(now, StdDuration::ZERO, false);
    let format = format.unwrap_or(Format::Json);
    add_report(
        sim,
        &mut state,
        &subscription,
        name,
        "",
        "on_invoice",
        format,
        previous_month(now),
        job,
    )
}

#[derive(Deserialize, Default)]
struct InvoiceRequest {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    format: Option<String>,
}

async fn invoice_handler(State(sim): State<Arc<Sim>>, body: Bytes) -> Response {
    let req: InvoiceRequest = match optional_body(&body) {
        Ok(r) => r,
        Err(r) => return r,
    };
    let Some(name) = req.name.filter(|n| !n.is_empty()) else {
        return super::control::error(StatusCode::BAD_REQUEST, "name is required");
    };
    let format = match req.format.as_deref().map(parse_format) {
        Some(None) => {
            return super::control::error(StatusCode::BAD_REQUEST, "format must be json, xml, csv or xlsx");
        }
        Some(f) => f,
        None => None,
    };
    let now = Utc::now();
    let id = invoice_report(&sim, &name, format, now);
    let state = lock(&sim.cmp);
    let doc = state
        .reports
        .iter()
        .find(|r| r.id == id)
        .map(|r| r.to_json(&sim, now))
        .unwrap_or_default();
    json(StatusCode::CREATED, doc)
}
