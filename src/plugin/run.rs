//! `run`: the run-now annotation on a PERIODIC generator.

use std::time::Duration;

use chrono::Utc;

use super::fetch::{annotate, get, wait_until};
use super::show::{ready_summary, rfc3339};
use super::terminal::escape;
use super::{Ctx, PluginError, fresh_annotation_value};
use crate::api::{ANNOTATION_RUN_NOW, EventType, ReportGenerator};
use crate::schedule::ReportSchedule;

/// Sets the run-now annotation to a new value and says which window the run reports on;
/// with `wait`, waits until the operator has taken the request.
pub async fn run_now(ctx: &Ctx, name: &str, wait: Duration) -> Result<(), PluginError> {
    let g: ReportGenerator = get(ctx, "ReportGenerator", name).await?;
    if g.spec.event_type != EventType::Periodic {
        return Err(PluginError::NotUsable(format!(
            "ReportGenerator {name} is {:?}: run-now applies to PERIODIC generators only",
            g.spec.event_type
        )));
    }
    let value = fresh_annotation_value();
    annotate::<ReportGenerator>(ctx, "ReportGenerator", name, ANNOTATION_RUN_NOW, &value).await?;
    println!(
        "ReportGenerator {}/{name}: asked for a run now ({ANNOTATION_RUN_NOW}={value})",
        ctx.namespace
    );
    if let Some(window) = window_of(&g) {
        println!("It reports on the latest complete window: {window}");
    }
    if wait.is_zero() {
        return Ok(());
    }
    let active = wait_until::<ReportGenerator, Vec<String>>(
        ctx,
        name,
        wait,
        "the operator to take the run-now request",
        |g| {
            let s = g.status.as_ref()?;
            (s.last_run_now.as_deref() == Some(value.as_str()))
                .then(|| s.active.iter().map(|a| escape(&a.name).into_owned()).collect())
        },
        |g| ready_summary(&g.status.as_ref()?.conditions),
    )
    .await?;
    if active.is_empty() {
        println!(
            "The operator took the request; the report is finished already or was not needed (see kubectl report status rg {name})."
        );
    } else {
        println!(
            "The operator took the request; reports in progress: {}",
            active.join(", ")
        );
    }
    Ok(())
}

/// The window a run now makes, as the schedule computes it; `None` when the spec does not
/// say (the operator then reports why in the generator's Ready condition).
fn window_of(g: &ReportGenerator) -> Option<String> {
    let period = g.spec.parameters.as_ref()?.period?;
    let schedule = g.spec.schedule.as_ref();
    let schedule = ReportSchedule::new(
        period,
        schedule.and_then(|s| s.time_zone.as_deref()),
        schedule.and_then(|s| s.cron.as_deref()),
    )
    .ok()?;
    let w = schedule.latest_complete_window(Utc::now());
    Some(format!("{} .. {}", rfc3339(w.start), rfc3339(w.end)))
}
