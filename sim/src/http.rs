//! What every simulated endpoint shares: the per-endpoint layer (latency, faults, request
//! statistics), JSON answers, `Retry-After`, and reading credentials from headers.
//!
//! Each API answers errors in its own shape (`error` in each API module); [`api_error`] picks
//! the right one for answers made here (injected faults).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::MethodRouter;
use base64::Engine as _;
use serde::de::DeserializeOwned;

use super::faults::{Fault, FaultKind};
use super::stats::STORAGE;
use super::{Sim, cmp, connect, fusion, rde, supplier};
use crate::ReportingApi;

/// Marks an answer that must not be sent: the server closes the connection instead.
#[derive(Debug, Clone, Copy)]
pub(crate) struct DropConnection;

/// An answer that never arrives.
pub(crate) fn dropped() -> Response {
    let mut response = StatusCode::INTERNAL_SERVER_ERROR.into_response();
    response.extensions_mut().insert(DropConnection);
    response
}

/// Endpoints whose calls count as token requests in the statistics.
const TOKEN_ENDPOINTS: [&str; 3] = ["token", "login", "refresh"];

/// Who an endpoint belongs to; the state of its layer.
#[derive(Clone)]
struct Endpoint {
    sim: Arc<Sim>,
    /// `None`: storage, which has no latency or faults of its own.
    backend: Option<ReportingApi>,
    name: &'static str,
}

/// Wraps `route` in the layer that counts its calls as endpoint `name` of `backend` and
/// applies that API's latency and faults.
pub(crate) fn endpoint(
    sim: &Arc<Sim>,
    backend: Option<ReportingApi>,
    name: &'static str,
    route: MethodRouter<Arc<Sim>>,
) -> MethodRouter<Arc<Sim>> {
    let state = Endpoint {
        sim: sim.clone(),
        backend,
        name,
    };
    route.layer(axum::middleware::from_fn_with_state(state, endpoint_layer))
}

async fn endpoint_layer(State(ep): State<Endpoint>, request: Request, next: Next) -> Response {
    let label = ep.backend.map_or(STORAGE, ReportingApi::as_str);
    let response = match ep.backend {
        None => next.run(request).await,
        Some(backend) => {
            if TOKEN_ENDPOINTS.contains(&ep.name) {
                ep.sim.stats.token_request(label);
            }
            let behaviour = ep.sim.config.behaviour(backend);
            if behaviour.latency_ms > 0 {
                tokio::time::sleep(std::time::Duration::from_millis(behaviour.latency_ms)).await;
            }
            match ep.sim.faults.take(backend, ep.name, behaviour) {
                None => next.run(request).await,
                Some(fault) => apply_fault(&ep.sim, fault, request, next).await,
            }
        }
    };
    let status = if response.extensions().get::<DropConnection>().is_some() {
        0
    } else {
        response.status().as_u16()
    };
    ep.sim.stats.request(label, ep.name, status);
    response
}

async fn apply_fault(sim: &Sim, fault: Fault, request: Request, next: Next) -> Response {
    let status =
        |s: Option<u16>, default: StatusCode| s.and_then(|s| StatusCode::from_u16(s).ok()).unwrap_or(default);
    if fault.kind.commits() {
        // The call is carried out; only its answer is lost.
        let _ = next.run(request).await;
    }
    match fault.kind {
        FaultKind::ServerError => api_error(
            fault.backend,
            status(fault.status, StatusCode::SERVICE_UNAVAILABLE),
            "service_unavailable",
            "The service is temporarily unavailable (simulated fault)",
        ),
        FaultKind::TooManyRequests => with_retry_after(
            api_error(
                fault.backend,
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                "Exceeded rate limit",
            ),
            fault.retry_after_secs.unwrap_or(1),
        ),
        FaultKind::LostResponse => match fault.status {
            Some(s) => api_error(
                fault.backend,
                status(Some(s), StatusCode::GATEWAY_TIMEOUT),
                "gateway_timeout",
                "The upstream did not answer in time (simulated fault)",
            ),
            None => dropped(),
        },
        FaultKind::Timeout => {
            tokio::time::sleep(sim.config.hang()).await;
            dropped()
        }
    }
}

/// An error in `backend`'s own shape.
pub(crate) fn api_error(backend: ReportingApi, status: StatusCode, code: &str, message: &str) -> Response {
    match backend {
        ReportingApi::Rde => rde::error(status, code, message),
        ReportingApi::Cmp => cmp::error(status, code, message),
        ReportingApi::Connect => connect::error(status, code, message),
        ReportingApi::Fusion => fusion::error(status, code, message),
        ReportingApi::Supplier => supplier::error(status, code, message),
    }
}

/// A JSON answer.
pub(crate) fn json(status: StatusCode, value: serde_json::Value) -> Response {
    (status, axum::Json(value)).into_response()
}

/// Adds `Retry-After: secs`.
pub(crate) fn with_retry_after(mut response: Response, secs: u64) -> Response {
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    response
}

/// A header's value as text.
pub(crate) fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim)
}

/// The credential after `scheme` in `Authorization` (`Bearer`, `ApiKey`, `Basic`, `OAuth`),
/// matching the scheme without regard to case.
pub(crate) fn authorization<'a>(headers: &'a HeaderMap, scheme: &str) -> Option<&'a str> {
    let value = header(headers, header::AUTHORIZATION.as_str())?;
    let (given, rest) = value.split_once(' ')?;
    given.eq_ignore_ascii_case(scheme).then(|| rest.trim())
}

/// `Authorization: Bearer <token>`.
pub(crate) fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    authorization(headers, "Bearer")
}

/// `Authorization: Basic` as user and password.
pub(crate) fn basic(headers: &HeaderMap) -> Option<(String, String)> {
    let raw = base64::engine::general_purpose::STANDARD
        .decode(authorization(headers, "Basic")?)
        .ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}

/// Compares secrets without leaking through timing where they differ.
pub(crate) fn same_secret(given: &str, expected: &str) -> bool {
    let (a, b) = (given.as_bytes(), expected.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A JSON body, or why it is not one.
pub(crate) fn parse_body<T: DeserializeOwned>(body: &Bytes) -> Result<T, String> {
    serde_json::from_slice(body).map_err(|e| format!("the request body is not valid: {e}"))
}
