//! `/_sim/`: what tests and demos use to look into and steer the simulator over HTTP.
//!
//! - `GET /_sim/stats`: [`SimStats`](super::SimStats) as JSON.
//! - `GET /_sim/files`: every file served, with its size and SHA-256 ([`SimFile`](super::SimFile)).
//! - `GET /_sim/faults`: injected faults that have not struck yet.
//! - `POST /_sim/faults` `{"backend":"CMP","endpoint":"create","kind":"5xx"|"429"|"lost-response"|"timeout"|"cut","count":N}`
//!   (optional `status`, `retryAfterSecs`; endpoint `storage` for downloads of the API's
//!   files): see [`Fault`].
//! - `DELETE /_sim/faults`: forget them.
//! - `POST /_sim/rde/templates/{id}/run` `{"at":"<rfc3339>"}` (optional), `POST /_sim/rde/invoice`,
//!   `POST /_sim/cmp/invoice` `{"name":"…"}`: the platforms' own report triggers, in the RDE
//!   and CMP modules.
//!
//! Control answers are JSON; errors are `{"error":"…"}`.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use serde_json::json;

use super::http::{json, parse_body};
use super::{Fault, Sim, SimError};

pub(crate) fn routes() -> Router<Arc<Sim>> {
    Router::new()
        .route("/_sim/stats", get(stats))
        .route("/_sim/files", get(files))
        .route("/_sim/faults", get(list_faults).post(inject).delete(clear_faults))
}

/// A control error.
pub(crate) fn error(status: StatusCode, message: &str) -> Response {
    json(status, json!({"error": message}))
}

/// 404 for what does not exist, 400 for the rest.
pub(crate) fn sim_error(e: &SimError) -> Response {
    let status = match e {
        SimError::NotFound(_) => StatusCode::NOT_FOUND,
        _ => StatusCode::BAD_REQUEST,
    };
    error(status, &e.to_string())
}

/// An optional JSON body: empty is the default.
pub(crate) fn optional_body<T: serde::de::DeserializeOwned + Default>(body: &Bytes) -> Result<T, Response> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    parse_body(body).map_err(|e| error(StatusCode::BAD_REQUEST, &e))
}

async fn stats(State(sim): State<Arc<Sim>>) -> Response {
    json(
        StatusCode::OK,
        serde_json::to_value(sim.stats.snapshot()).unwrap_or_default(),
    )
}

async fn files(State(sim): State<Arc<Sim>>) -> Response {
    json(
        StatusCode::OK,
        serde_json::to_value(sim.storage.files(sim.config.padding_bytes)).unwrap_or_default(),
    )
}

async fn list_faults(State(sim): State<Arc<Sim>>) -> Response {
    json(
        StatusCode::OK,
        serde_json::to_value(sim.faults.pending()).unwrap_or_default(),
    )
}

async fn inject(State(sim): State<Arc<Sim>>, body: Bytes) -> Response {
    match parse_body::<Fault>(&body) {
        Ok(fault) => {
            sim.faults.inject(fault.clone());
            json(
                StatusCode::CREATED,
                serde_json::to_value(fault).unwrap_or_default(),
            )
        }
        Err(e) => error(StatusCode::BAD_REQUEST, &e),
    }
}

async fn clear_faults(State(sim): State<Arc<Sim>>) -> Response {
    sim.faults.clear();
    json(StatusCode::OK, json!({"cleared": true}))
}
