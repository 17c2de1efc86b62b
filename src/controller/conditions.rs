//! Conditions, status writes and the one place where chrono meets k8s-openapi's `Time`.

use chrono::{DateTime, Utc};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;
use kube::Resource;
use kube::api::{Api, Patch, PatchParams};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::api::reasons::{AnyReason, Reason};

/// The one field manager of everything the operator writes (status, Secrets, ReportFiles).
pub const FIELD_MANAGER: &str = "report-operator";

/// chrono → k8s `Time`.
pub fn to_k8s_time(t: DateTime<Utc>) -> Time {
    // Out of jiff's range only for dates beyond year 9999, which no report has.
    Time(
        Timestamp::from_nanosecond(t.timestamp_nanos_opt().unwrap_or_default().into())
            .unwrap_or(Timestamp::UNIX_EPOCH),
    )
}

/// k8s `Time` → chrono.
pub fn from_k8s_time(t: &Time) -> DateTime<Utc> {
    DateTime::from_timestamp(t.0.as_second(), t.0.subsec_nanosecond().max(0) as u32).unwrap_or_default()
}

/// A condition as a reconcile computes it; [`set_condition`] adds the bookkeeping. Its reason
/// comes from the [vocabulary](crate::api::reasons), never from a string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cond {
    pub type_: &'static str,
    pub status: bool,
    pub reason: AnyReason,
    pub message: String,
}

impl Cond {
    pub fn ready(status: bool, reason: impl Reason, message: impl Into<String>) -> Self {
        Self::new(crate::api::CONDITION_READY, status, reason, message)
    }

    pub fn new(type_: &'static str, status: bool, reason: impl Reason, message: impl Into<String>) -> Self {
        Cond {
            type_,
            status,
            reason: AnyReason::of(reason),
            message: message.into(),
        }
    }
}

/// Sets a condition, keeping `lastTransitionTime` when the status did not change (so that
/// "Ready since" means what it says) and recording the generation it describes.
pub fn set_condition(
    conditions: &mut Vec<Condition>,
    cond: Cond,
    generation: Option<i64>,
    now: DateTime<Utc>,
) {
    let status = if cond.status { "True" } else { "False" }.to_string();
    let last_transition_time = match conditions.iter().find(|c| c.type_ == cond.type_) {
        Some(old) if old.status == status => old.last_transition_time.clone(),
        _ => to_k8s_time(now),
    };
    let new = Condition {
        type_: cond.type_.to_string(),
        status,
        reason: cond.reason.to_string(),
        message: capped(cond.message),
        observed_generation: generation,
        last_transition_time,
    };
    match conditions.iter_mut().find(|c| c.type_ == new.type_) {
        Some(slot) => *slot = new,
        None => conditions.push(new),
    }
}

/// The longest condition message kept: messages quote backends and other objects, and the API
/// server refuses a status whose message is over 32768 bytes.
pub const MAX_MESSAGE_BYTES: usize = 1024;

/// `message` cut to [`MAX_MESSAGE_BYTES`].
fn capped(message: String) -> String {
    cut_to(message, MAX_MESSAGE_BYTES)
}

/// `text` cut to at most `max` bytes on a character boundary, marked as cut: for condition
/// messages and Event notes, which quote backends and must stay within the API's limits.
pub fn cut_to(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut cut = max.saturating_sub('…'.len_utf8());
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push('…');
    }
    text
}

/// Writes a whole status by server-side apply with [`FIELD_MANAGER`]. The status is always
/// sent complete, so a field left out is a field removed.
pub async fn apply_status<K, S>(api: &Api<K>, name: &str, status: &S) -> Result<K, kube::Error>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
    S: Serialize,
{
    let patch = serde_json::json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "status": status,
    });
    api.patch_status(
        name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::reasons::FileReady;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).expect("time").with_timezone(&Utc)
    }

    #[test]
    fn time_round_trips_through_k8s_time() {
        let now = t("2026-11-23T10:11:12.123456789Z");
        assert_eq!(from_k8s_time(&to_k8s_time(now)), now);
    }

    #[test]
    fn transition_time_is_kept_while_the_status_is_unchanged() {
        let mut conds = Vec::new();
        set_condition(
            &mut conds,
            Cond::ready(false, FileReady::InProgress, "submitted"),
            Some(1),
            t("2026-01-01T00:00:00Z"),
        );
        set_condition(
            &mut conds,
            Cond::ready(false, FileReady::InProgress, "still running"),
            Some(2),
            t("2026-01-01T00:05:00Z"),
        );
        assert_eq!(conds.len(), 1);
        assert_eq!(
            from_k8s_time(&conds[0].last_transition_time),
            t("2026-01-01T00:00:00Z")
        );
        assert_eq!(conds[0].message, "still running");
        assert_eq!(conds[0].observed_generation, Some(2));
        set_condition(
            &mut conds,
            Cond::ready(true, FileReady::Ready, "done"),
            Some(2),
            t("2026-01-01T00:09:00Z"),
        );
        assert_eq!(
            from_k8s_time(&conds[0].last_transition_time),
            t("2026-01-01T00:09:00Z")
        );
        assert_eq!(conds[0].status, "True");
    }

    #[test]
    fn long_messages_are_cut_on_a_character_boundary() {
        let mut conds = Vec::new();
        let long = "é".repeat(MAX_MESSAGE_BYTES);
        set_condition(
            &mut conds,
            Cond::ready(false, FileReady::Failed, long),
            None,
            t("2026-01-01T00:00:00Z"),
        );
        assert!(conds[0].message.len() <= MAX_MESSAGE_BYTES);
        assert!(conds[0].message.ends_with('…'));
        set_condition(
            &mut conds,
            Cond::ready(false, FileReady::Failed, "short"),
            None,
            t("2026-01-01T00:00:00Z"),
        );
        assert_eq!(conds[0].message, "short");
    }
}
