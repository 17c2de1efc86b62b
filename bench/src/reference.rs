//! The hand-written client of seed 004's recipe, the yardstick of the SUPPLIER fan-out: fire
//! all generate calls at once, wait for the generation time, poll each report every second,
//! and request its link when it is complete.

use std::time::{Duration, Instant};

use chrono::{Duration as Days, Utc};
use report_sim::{ReportingApi, SimServer};
use serde_json::{Value, json};

use crate::BenchError;

/// 20 organizations × 6 days.
pub const REPORTS: usize = 120;
const DAYS: i64 = 6;

/// The 20 child organizations.
pub fn organizations() -> Vec<String> {
    (1..=20)
        .map(|i| format!("6f1c2d3e-0000-4000-8000-{i:012}"))
        .collect()
}

/// Runs the recipe against `sim`; the time from the first call to the last link.
pub async fn run(sim: &SimServer, generation: Duration) -> Result<Duration, BenchError> {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(REPORTS)
        .build()?;
    let started = Instant::now();
    let token: Value = http
        .post(sim.supplier_token_url())
        .form(&sim.supplier_token_form())
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let bearer = format!("Bearer {}", token["access_token"].as_str().unwrap_or_default());
    let base = sim.backend_url(ReportingApi::Supplier);
    let today = Utc::now()
        .date_naive()
        .and_hms_opt(0, 0, 0)
        .map(|t| t.and_utc())
        .unwrap_or_else(Utc::now);
    let mut jobs = Vec::new();
    for org in organizations() {
        for d in 1..=DAYS {
            let (from, to) = (today - Days::days(d), today - Days::days(d - 1));
            let (http, bearer) = (http.clone(), bearer.clone());
            let reports = format!("{base}/v1/vehicle-suppliers/suppliers/{org}/reports");
            jobs.push(tokio::spawn(async move {
                one(
                    &http,
                    &bearer,
                    &reports,
                    from.timestamp_millis(),
                    to.timestamp_millis(),
                    generation,
                )
                .await
            }));
        }
    }
    for job in jobs {
        job.await.map_err(|e| BenchError::Other(e.to_string()))??;
    }
    Ok(started.elapsed())
}

/// One report: generate, wait, poll every second, link.
async fn one(
    http: &reqwest::Client,
    bearer: &str,
    reports: &str,
    from: i64,
    to: i64,
    generation: Duration,
) -> Result<(), BenchError> {
    let body = json!({
        "reportType": "REPORT_TYPE_TRIP_ACTIVITY",
        "filters": [{"field": "dateRange", "operator": "OPERATOR_IN_RANGE", "value": [from.to_string(), to.to_string()]}],
    });
    let created: Value = http
        .post(reports)
        .header("authorization", bearer)
        .json(&body)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let id = created["report"]["id"].as_str().unwrap_or_default().to_string();
    tokio::time::sleep(generation).await;
    loop {
        let report: Value = http
            .get(format!("{reports}/{id}"))
            .header("authorization", bearer)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        match report["report"]["status"].as_str() {
            Some("REPORT_STATUS_COMPLETED") => break,
            Some("REPORT_STATUS_FAILED") => return Err(BenchError::Other(format!("report {id} failed"))),
            _ => tokio::time::sleep(Duration::from_secs(1)).await,
        }
    }
    http.post(format!("{reports}/{id}/link"))
        .header("authorization", bearer)
        .send()
        .await?
        .error_for_status()?;
    Ok(())
}
