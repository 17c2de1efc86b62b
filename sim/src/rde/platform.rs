//! The RDE platform's own triggers, which the simulator's control API pulls: the periodic
//! task that gives a PERIODIC template its next report file, and a new invoice that gives
//! each ON_INVOICE template one.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{add_file, period_of, periodic_window};
use crate::control::{optional_body, sim_error};
use crate::http::json;
use crate::{Sim, SimError, lock};

/// What a control trigger made.
pub(crate) struct Made {
    pub id: String,
    pub doc: Value,
}

/// The platform's periodic task for template `id`, run on the day of `at`.
pub(crate) fn run_template(sim: &Sim, id: &str, at: DateTime<Utc>) -> Result<Made, SimError> {
    let mut state = lock(&sim.rde);
    let template = state
        .templates
        .get(id)
        .ok_or_else(|| SimError::NotFound(format!("RDE has no template {id}")))?;
    let period = period_of(&template.event_type, &template.parameters).ok_or_else(|| {
        SimError::Control(format!("template {id} is {}, not PERIODIC", template.event_type))
    })?;
    let (start, end, next) = periodic_window(period, at);
    let parameters = json!({"period": period});
    let now = Utc::now();
    let file = add_file(sim, &mut state, id, parameters, start, end, now)
        .ok_or_else(|| SimError::NotFound(format!("RDE has no template {id}")))?;
    if let Some(t) = state.templates.get_mut(id) {
        t.last_report_date = Some(at);
        t.next_report_date = Some(next);
    }
    let doc = state
        .files
        .get(&file)
        .map(|f| f.to_json(sim, now))
        .unwrap_or_default();
    Ok(Made { id: file, doc })
}

/// What a new invoice made.
pub(crate) struct Invoice {
    pub invoice_id: String,
    pub files: Vec<Made>,
}

/// A new invoice at `at`: each ON_INVOICE template gets a file covering the time since the
/// previous invoice (or since the template was made).
pub(crate) fn invoice(sim: &Sim, at: DateTime<Utc>) -> Invoice {
    let mut state = lock(&sim.rde);
    let invoice_id = format!("INV-{}", uuid::Uuid::new_v4().simple());
    let previous = state.last_invoice;
    state.last_invoice = Some(at);
    let targets: Vec<(String, DateTime<Utc>)> = state
        .order
        .iter()
        .filter_map(|id| state.templates.get(id))
        .filter(|t| t.event_type == "ON_INVOICE")
        .map(|t| (t.id.clone(), previous.unwrap_or(t.created).min(at)))
        .collect();
    let now = Utc::now();
    let mut files = Vec::new();
    for (template, since) in targets {
        if let Some(file) = add_file(
            sim,
            &mut state,
            &template,
            json!({"invoiceId": invoice_id}),
            since,
            at,
            now,
        ) {
            let doc = state
                .files
                .get(&file)
                .map(|f| f.to_json(sim, now))
                .unwrap_or_default();
            files.push(Made { id: file, doc });
        }
    }
    Invoice { invoice_id, files }
}

#[derive(Deserialize, Default)]
struct At {
    #[serde(default)]
    at: Option<DateTime<Utc>>,
}

pub(super) async fn run_handler(
    State(sim): State<Arc<Sim>>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let at = match optional_body::<At>(&body) {
        Ok(a) => a.at.unwrap_or_else(Utc::now),
        Err(r) => return r,
    };
    match run_template(&sim, &id, at) {
        Ok(made) => json(StatusCode::CREATED, made.doc),
        Err(e) => sim_error(&e),
    }
}

pub(super) async fn invoice_handler(State(sim): State<Arc<Sim>>, body: Bytes) -> Response {
    let at = match optional_body::<At>(&body) {
        Ok(a) => a.at.unwrap_or_else(Utc::now),
        Err(r) => return r,
    };
    let made = invoice(&sim, at);
    let files: Vec<Value> = made.files.into_iter().map(|f| f.doc).collect();
    json(
        StatusCode::CREATED,
        json!({"invoiceId": made.invoice_id, "files": files}),
    )
}
