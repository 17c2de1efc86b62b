//! FUSION: Netaxis Fusion reporting (seed 003), under `/fusion`. Reports are synchronous: the
//! answer is the data.
//!
//! Endpoints (names for faults and statistics), all under `/api/v01`:
//! - `login`: `POST /auth/login {"username","password"}` → `{"data":{"access_token","refresh_token"}}`,
//!   or `{"2fa_payload":"…"}` for the two-factor user (as from an untrusted device).
//! - `refresh`: `GET /auth/access_token` with `Authorization: Bearer <refresh_token>` →
//!   `{"data":{"access_token"}}`; 401 once the refresh token expired.
//! - `phone_usage`, `product_usage`: `GET /draas/{i}/groups/{uuid}/sdrs/{phone_usage|product_usage}`.
//! - `license`: `POST /draas/{i}/{groups|distributors|resellers|tenants}/{uuid}/downloads/report`
//!   and `POST /draas/{i}/tenants/{uuid}/subscriptions/{id}/downloads/report` with
//!   `{"format":"csv"|"json"}` → `{"fileBody":"<base64>","fileName":"licenses_<level>_<uuid>_<YYYYMMDD>.<format>"}`.
//!
//! Status codes as the seed lists them: 400 (bad body or format), 403 (a uuid starting with
//! `forbiddenUuidPrefix`: the user lacks the role), 404 (unknown instance, a uuid that is no
//! uuid or starts with `unknownUuidPrefix`, a subscription beyond `subscriptionsPerTenant`),
//! 500 (by fault injection).
//!
//! Not documented, chosen here: errors are `{"code","error","message"}`; the data is derived
//! from the uuid, so the same scope always gives the same file (save the date in its name).

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use chrono::Utc;
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::Sim;
use super::content::csv_line;
use super::http::{bearer_token, endpoint, json, parse_body, same_secret};
use super::signing::TokenError;
use crate::ReportingApi;

pub(crate) const PREFIX: &str = "/fusion";
const FUSION: ReportingApi = ReportingApi::Fusion;
const ACCESS: &str = "fusion-access";
const REFRESH: &str = "fusion-refresh";

/// Fusion errors: `{"code","error","message"}`.
pub(crate) fn error(status: StatusCode, code: &str, message: &str) -> Response {
    json(
        status,
        json!({"code": status.as_u16(), "error": code, "message": message}),
    )
}

fn unauthorized(message: &str) -> Response {
    error(StatusCode::UNAUTHORIZED, "unauthorized", message)
}

fn bad_request(message: &str) -> Response {
    error(StatusCode::BAD_REQUEST, "bad_request", message)
}

fn not_found(message: &str) -> Response {
    error(StatusCode::NOT_FOUND, "not_found", message)
}

pub(crate) fn routes(sim: &Arc<Sim>) -> Router<Arc<Sim>> {
    let ep = |name, route| endpoint(sim, Some(FUSION), name, route);
    let root = format!("{PREFIX}/api/v01");
    let draas = format!("{root}/draas/{{instance}}");
    let mut router = Router::new()
        .route(&format!("{root}/auth/login"), ep("login", post(login)))
        .route(&format!("{root}/auth/access_token"), ep("refresh", get(refresh)))
        .route(
            &format!("{draas}/groups/{{uuid}}/sdrs/phone_usage"),
            ep("phone_usage", get(phone_usage)),
        )
        .route(
            &format!("{draas}/groups/{{uuid}}/sdrs/product_usage"),
            ep("product_usage", get(product_usage)),
        )
        .route(
            &format!("{draas}/tenants/{{uuid}}/subscriptions/{{subscription}}/downloads/report"),
            ep("license", post(subscription_license)),
        );
    for level in [Level::Group, Level::Distributor, Level::Reseller, Level::Tenant] {
        let handler = move |State(sim): State<Arc<Sim>>,
                            Path((instance, uuid)): Path<(String, String)>,
                            headers: HeaderMap,
                            body: Bytes| async move {
            license(&sim, &headers, &instance, level, &uuid, None, &body)
        };
        router = router.route(
            &format!("{draas}/{}/{{uuid}}/downloads/report", level.collection()),
            ep("license", post(handler)),
        );
    }
    router
}

#[derive(Deserialize)]
struct Login {
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
}

async fn login(State(sim): State<Arc<Sim>>, body: Bytes) -> Response {
    let config = &sim.config.fusion;
    let (username, password) = match parse_body::<Login>(&body) {
        Ok(Login {
            username: Some(u),
            password: Some(p),
        }) => (u, p),
        Ok(_) => return bad_request("username and password are required"),
        Err(e) => return bad_request(&e),
    };
    if !same_secret(&password, &config.password) {
        return unauthorized("Invalid username or password");
    }
    let now = Utc::now();
    if username == config.two_factor_username {
        let payload = base64::engine::general_purpose::STANDARD.encode(uuid::Uuid::new_v4().as_bytes());
        return json(StatusCode::OK, json!({"2fa_payload": payload}));
    }
    if username != config.username {
        return unauthorized("Invalid username or password");
    }
    let access = sim
        .signer
        .mint(ACCESS, &username, config.access_token_lifetime_secs, now);
    let refresh = sim
        .signer
        .mint(REFRESH, &username, config.refresh_token_lifetime_secs, now);
    json(
        StatusCode::OK,
        json!({"data": {"access_token": access, "refresh_token": refresh}}),
    )
}

/// The user of a valid token of `kind`.
fn user_of(sim: &Sim, headers: &HeaderMap, kind: &str) -> Result<String, Response> {
    let token = bearer_token(headers).ok_or_else(|| unauthorized("Missing bearer token"))?;
    match sim.signer.check(kind, token, Utc::now()) {
        Ok(claims) => Ok(claims.sub),
        Err(TokenError::Expired) => Err(unauthorized("Token expired")),
        Err(TokenError::Invalid) => Err(unauthorized("Invalid token")),
    }
}

async fn refresh(State(sim): State<Arc<Sim>>, headers: HeaderMap) -> Response {
    let user = match user_of(&sim, &headers, REFRESH) {
        Ok(u) => u,
        Err(r) => return r,
    };
    let access = sim.signer.mint(
        ACCESS,
        &user,
        sim.config.fusion.access_token_lifetime_secs,
        Utc::now(),
    );
    json(StatusCode::OK, json!({"data": {"access_token": access}}))
}

/// Token, instance and uuid checks every report call makes, in the order 401, 404 instance,
/// 403 role, 404 uuid.
fn check_scope(sim: &Sim, headers: &HeaderMap, instance: &str, uuid: &str) -> Result<(), Response> {
    user_of(sim, headers, ACCESS)?;
    let config = &sim.config.fusion;
    if !config.draas_instances.iter().any(|i| i == instance) {
        return Err(not_found(&format!("No DRaaS instance {instance}")));
    }
    if uuid::Uuid::parse_str(uuid).is_err() {
        return Err(not_found(&format!("No tenant or group {uuid}")));
    }
    if uuid.starts_with(&config.forbidden_uuid_prefix) {
        return Err(error(
            StatusCode::FORBIDDEN,
            "forbidden",
            "The API consumer doesn't have sufficient rights to perform this action",
        ));
    }
    if uuid.starts_with(&config.unknown_uuid_prefix) {
        return Err(not_found(&format!(
            "No MS Teams tenant found or the path {uuid} doesn't exist"
        )));
    }
    Ok(())
}

/// Deterministic pseudo-random bytes of a seed.
fn digest(seed: &str) -> [u8; 32] {
    Sha256::digest(seed.as_bytes()).into()
}

/// A uuid derived from `seed`, shaped like a v4.
fn derived_uuid(seed: &str) -> String {
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest(seed)[..16]);
    uuid::Builder::from_random_bytes(bytes).into_uuid().to_string()
}

fn count(seed: &str, modulo: u32) -> u32 {
    let d = digest(seed);
    u32::from_be_bytes([d[0], d[1], d[2], d[3]]) % modulo
}

/// `text` with the configured padding (newlines: whitespace to CSV and JSON alike) appended,
/// for tests of files too large for a Secret.
fn padded(sim: &Sim, text: String) -> Vec<u8> {
    let mut bytes = text.into_bytes();
    let padding = usize::try_from(sim.config.padding_bytes).unwrap_or(usize::MAX);
    bytes.resize(bytes.len().saturating_add(padding), b'\n');
    bytes
}

/// An SDR answer, padded.
fn padded_json(sim: &Sim, doc: Value) -> Response {
    let body = padded(sim, doc.to_string());
    (
        StatusCode::OK,
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response()
}

fn record(sim: &Sim, key: String, organization: &str) {
    // Synchronous: the report is in progress only while the call runs.
    sim.stats.generation(FUSION, key, organization, 1);
}

async fn phone_usage(
    State(sim): State<Arc<Sim>>,
    Path((instance, uuid)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = check_scope(&sim, &headers, &instance, &uuid) {
        return r;
    }
    let users = [
        "Richard Lobster",
        "John Doe",
        "Christophe Bury",
        "Marty van de Veerdonk",
    ];
    let rows: Vec<Value> = users
        .iter()
        .enumerate()
        .map(|(i, user)| {
            json!({
                "distributor": "Netaxis Distributor",
                "group": "Netaxis",
                "phoneNumber": format!("+27102{:06}", count(&format!("{uuid}/phone/{i}"), 1_000_000)),
                "reseller": "Netaxis Reseller",
                "subscription": if i % 2 == 0 { "Operator Connect DEV" } else { "CBUR Test SUB" },
                "tenant": if i % 2 == 0 { "Netaxis DEV" } else { "CBUR Test Tenant" },
                "username": user,
            })
        })
        .collect();
    record(&sim, format!("phone_usage|group|{uuid}"), &uuid);
    padded_json(&sim, json!({"phoneUsages": rows}))
}

async fn product_usage(
    State(sim): State<Arc<Sim>>,
    Path((instance, uuid)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = check_scope(&sim, &headers, &instance, &uuid) {
        return r;
    }
    let skus = [
        "Belgium - geographical numbers",
        "Fusion Seats",
        "Fusion SIP Trunks Capacity",
    ];
    let rows: Vec<Value> = skus
        .iter()
        .enumerate()
        .map(|(i, sku)| {
            let quantity = count(&format!("{uuid}/sku/{i}"), 200) + 1;
            let mut row = json!({
                "distributor": "Netaxis Distributor",
                "group": "Netaxis",
                "quantity": quantity,
                "reseller": "Netaxis Reseller",
                "sku": sku,
                "subscription": "Operator Connect DEV",
                "tenant": "Netaxis DEV",
            });
            // Seed 003: `used` is conditional; SIP trunk capacity has none.
            if !sku.contains("SIP") {
                row["used"] = json!(count(&format!("{uuid}/used/{i}"), quantity + 1));
            }
            row
        })
        .collect();
    record(&sim, format!("product_usage|group|{uuid}"), &uuid);
    padded_json(&sim, json!({"productUsages": rows}))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Level {
    Group,
    Distributor,
    Reseller,
    Tenant,
    Subscription,
}

impl Level {
    fn collection(self) -> &'static str {
        match self {
            Level::Group => "groups",
            Level::Distributor => "distributors",
            Level::Reseller => "resellers",
            Level::Tenant | Level::Subscription => "tenants",
        }
    }

    fn name(self) -> &'static str {
        match self {
            Level::Group => "group",
            Level::Distributor => "distributor",
            Level::Reseller => "reseller",
            Level::Tenant | Level::Subscription => "tenant",
        }
    }

    /// The CSV columns of seed 003: each level drops the parents above it.
    fn columns(self) -> &'static [&'static str] {
        const ALL: [&str; 10] = [
            "name",
            "distributor_name",
            "distributor_uuid",
            "reseller_name",
            "reseller_uuid",
            "tenant_name",
            "tenant_uuid",
            "ms_assigned",
            "ms_used",
            "sip_assigned",
        ];
        const DISTRIBUTOR: [&str; 8] = [
            "name",
            "reseller_name",
            "reseller_uuid",
            "tenant_name",
            "tenant_uuid",
            "ms_assigned",
            "ms_used",
            "sip_assigned",
        ];
        const RESELLER: [&str; 6] = [
            "name",
            "tenant_name",
            "tenant_uuid",
            "ms_assigned",
            "ms_used",
            "sip_assigned",
        ];
        const TENANT: [&str; 4] = ["name", "ms_assigned", "ms_used", "sip_assigned"];
        match self {
            Level::Group => &ALL,
            Level::Distributor => &DISTRIBUTOR,
            Level::Reseller => &RESELLER,
            Level::Tenant | Level::Subscription => &TENANT,
        }
    }

    /// The key of the children list in the JSON form.
    fn children(self) -> &'static str {
        match self {
            Level::Group => "distributors",
            Level::Distributor => "resellers",
            Level::Reseller => "tenants",
            Level::Tenant | Level::Subscription => "subscriptions",
        }
    }
}

/// One subscription's licenses with its place in the hierarchy.
struct LicenseRow {
    subscription_id: u32,
    values: Vec<(&'static str, String)>,
    ms_assigned: u32,
    ms_used: u32,
    sip_assigned: u32,
}

fn license_rows(uuid: &str, subscriptions: u32, only: Option<u32>) -> Vec<LicenseRow> {
    let names = ["Operator Connect DEV", "CBUR Test SUB", "Netaxis Trunks"];
    (1..=subscriptions)
        .filter(|id| only.is_none_or(|o| o == *id))
        .map(|id| {
            let seed = format!("{uuid}/subscription/{id}");
            let ms_assigned = count(&format!("{seed}/ms"), 300) + 10;
            let ms_used = count(&format!("{seed}/used"), ms_assigned + 1);
            let sip_assigned = count(&format!("{seed}/sip"), 100);
            let name = names[(id as usize - 1) % names.len()].to_string();
            let values = vec![
                ("name", name),
                ("distributor_name", "Netaxis Distributor".to_string()),
                ("distributor_uuid", derived_uuid(&format!("{uuid}/distributor"))),
                ("reseller_name", "Netaxis Reseller".to_string()),
                ("reseller_uuid", derived_uuid(&format!("{uuid}/reseller"))),
                (
                    "tenant_name",
                    if id % 2 == 1 {
                        "Netaxis DEV"
                    } else {
                        "CBUR Test Tenant"
                    }
                    .to_string(),
                ),
                ("tenant_uuid", derived_uuid(&format!("{uuid}/tenant/{}", id % 2))),
                ("ms_assigned", ms_assigned.to_string()),
                ("ms_used", ms_used.to_string()),
                ("sip_assigned", sip_assigned.to_string()),
            ];
            LicenseRow {
                subscription_id: id,
                values,
                ms_assigned,
                ms_used,
                sip_assigned,
            }
        })
        .collect()
}

fn csv_file(level: Level, rows: &[LicenseRow]) -> String {
    let columns = level.columns();
    let mut out = csv_line(columns.iter().copied());
    for row in rows {
        let fields = columns.iter().map(|c| {
            row.values
                .iter()
                .find(|(k, _)| k == c)
                .map_or("", |(_, v)| v.as_str())
        });
        out.push_str(&csv_line(fields));
    }
    out
}

fn totals(rows: &[LicenseRow]) -> Value {
    json!({
        "msTeamsUsers": {
            "assigned": rows.iter().map(|r| r.ms_assigned).sum::<u32>(),
            "inUse": rows.iter().map(|r| r.ms_used).sum::<u32>(),
        },
        "sipTrunkChannels": {"assigned": rows.iter().map(|r| r.sip_assigned).sum::<u32>()},
    })
}

fn json_file(level: Level, rows: &[LicenseRow]) -> String {
    let mut doc = totals(rows);
    if level == Level::Subscription {
        if let Some(row) = rows.first() {
            doc["id"] = json!(row.subscription_id);
            doc["name"] = json!(row.values[0].1);
        }
    } else {
        let children: Vec<Value> = rows
            .iter()
            .map(|r| {
                let mut child = totals(std::slice::from_ref(r));
                child["name"] = json!(r.values[0].1);
                child["id"] = json!(r.subscription_id);
                child
            })
            .collect();
        doc[level.children()] = json!(children);
    }
    serde_json::to_string_pretty(&doc).unwrap_or_default()
}

#[derive(Deserialize)]
struct LicenseRequest {
    #[serde(default)]
    format: Option<String>,
}

fn license(
    sim: &Sim,
    headers: &HeaderMap,
    instance: &str,
    level: Level,
    uuid: &str,
    subscription: Option<&str>,
    body: &Bytes,
) -> Response {
    if let Err(r) = check_scope(sim, headers, instance, uuid) {
        return r;
    }
    let format = match parse_body::<LicenseRequest>(body) {
        Ok(LicenseRequest { format: Some(f) }) if f == "csv" || f == "json" => f,
        Ok(_) => return bad_request("format must be csv or json"),
        Err(e) => return bad_request(&e),
    };
    let subscriptions = sim.config.fusion.subscriptions_per_tenant;
    let only = match subscription.map(str::parse::<u32>) {
        None => None,
        Some(Ok(id)) if (1..=subscriptions).contains(&id) => Some(id),
        Some(Ok(id)) => {
            return not_found(&format!(
                "The path tenant {uuid} / subscription {id} doesn't exist"
            ));
        }
        Some(Err(_)) => return bad_request("the subscription id must be an integer"),
    };
    let rows = license_rows(uuid, subscriptions, only);
    let content = if format == "csv" {
        csv_file(level, &rows)
    } else {
        json_file(level, &rows)
    };
    let stamp = Utc::now().format("%Y%m%d");
    let file_name = match only {
        Some(id) => format!("licenses_tenant_{uuid}_subscription_{id}_{stamp}.{format}"),
        None => format!("licenses_{}_{uuid}_{stamp}.{format}", level.name()),
    };
    let scope = only.map_or_else(|| level.name().to_string(), |id| format!("subscription {id}"));
    record(
        sim,
        format!("licenses|{}|{uuid}|{scope}|{format}", level.name()),
        uuid,
    );
    let body = base64::engine::general_purpose::STANDARD.encode(padded(sim, content));
    json(StatusCode::OK, json!({"fileBody": body, "fileName": file_name}))
}

async fn subscription_license(
    State(sim): State<Arc<Sim>>,
    Path((instance, uuid, subscription)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    license(
        &sim,
        &headers,
        &instance,
        Level::Subscription,
        &uuid,
        Some(&subscription),
        &body,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_headers_are_the_seeds() {
        let rows = license_rows("53fd92c7-fbef-44fd-af76-d92334432ac9", 2, None);
        let first = |level| {
            csv_file(level, &rows)
                .lines()
                .next()
                .map(str::to_string)
                .unwrap_or_default()
        };
        assert_eq!(
            first(Level::Group),
            "name,distributor_name,distributor_uuid,reseller_name,reseller_uuid,tenant_name,tenant_uuid,ms_assigned,ms_used,sip_assigned"
        );
        assert_eq!(
            first(Level::Distributor),
            "name,reseller_name,reseller_uuid,tenant_name,tenant_uuid,ms_assigned,ms_used,sip_assigned"
        );
        assert_eq!(
            first(Level::Reseller),
            "name,tenant_name,tenant_uuid,ms_assigned,ms_used,sip_assigned"
        );
        assert_eq!(first(Level::Tenant), "name,ms_assigned,ms_used,sip_assigned");
        assert_eq!(csv_file(Level::Tenant, &rows).lines().count(), 3);
        assert_eq!(rows[0].values[0].1, "Operator Connect DEV");
    }
}
