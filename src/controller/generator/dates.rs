//! Dates, which mean something different per backend type, and which the CRD cannot check
//! since it does not know the type: a window for most, nothing for FUSION's snapshots.

use crate::api::reasons::GeneratorReady;
use crate::api::{BackendType, CatchUpPolicy, EventType, ReportGenerator};
use crate::controller::outcome::Outcome;

/// What a report of a backend type shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Coverage {
    /// The window (or dates) it is asked for.
    Window,
    /// The data as it is when the report is taken (FUSION): a snapshot takes no date range
    /// and covers no window.
    Snapshot,
}

impl Coverage {
    pub fn of(type_: BackendType) -> Coverage {
        match type_ {
            BackendType::Fusion => Coverage::Snapshot,
            BackendType::Rde | BackendType::Cmp | BackendType::Connect | BackendType::Supplier => {
                Coverage::Window
            }
        }
    }
}

/// What the CRD cannot check about dates, since it does not know the backend type: a ONETIME
/// report needs its window except on FUSION, and a FUSION generator cannot backfill or catch
/// up past windows, whose data no snapshot taken now can show.
pub fn validate_dates(g: &ReportGenerator, type_: BackendType) -> Result<(), Outcome> {
    let params = g.spec.parameters.clone().unwrap_or_default();
    let catch_up = g.spec.schedule.as_ref().and_then(|s| s.catch_up_policy);
    if Coverage::of(type_) == Coverage::Window {
        if g.spec.event_type == EventType::Onetime
            && (params.start_date.is_none() || params.end_date.is_none())
        {
            return Err(Outcome::invalid(
                GeneratorReady::InvalidParameters,
                format!(
                    "eventType ONETIME needs parameters.startDate and parameters.endDate on {} (only FUSION, whose reports are snapshots, takes none)",
                    type_.as_str()
                ),
            ));
        }
        return Ok(());
    }
    if g.spec.event_type == EventType::Periodic && params.start_date.is_some() {
        return Err(unsupported(
            "parameters.startDate",
            type_,
            "FUSION reports are snapshots of the data when they are taken, so past windows cannot be backfilled; remove parameters.startDate",
        ));
    }
    if g.spec.event_type == EventType::Periodic && catch_up == Some(CatchUpPolicy::All) {
        return Err(unsupported(
            "schedule.catchUpPolicy All",
            type_,
            "a FUSION run missed while the operator was down cannot be taken later as the past window's data; use Latest (the FUSION default: one snapshot now, the rest recorded as missed) or None",
        ));
    }
    Ok(())
}

/// Ready=False, reason `UnsupportedSetting`, a message that starts with the field and the
/// backend type, and a Warning Event.
fn unsupported(field: &str, type_: BackendType, why: &str) -> Outcome {
    Outcome::invalid(
        GeneratorReady::UnsupportedSetting,
        format!("UnsupportedSetting: {field} on {}: {why}", type_.as_str()),
    )
}
