//! A ReportFile being deleted whose cleanup (its report on CONNECT, its copy kept with
//! retention Delete) cannot be done now: retried, and said in its `Ready` condition (reason
//! `Deleting`), so that `kubectl describe` explains a namespace stuck `Terminating`; but only
//! for the deletion grace: then a Warning Event says what stays behind and the finalizer goes.

use std::time::Duration;

use chrono::{DateTime, Utc};
use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use tracing::warn;

use crate::api::ReportFile;
use crate::api::reasons::{EventReason, FileReady};
use crate::controller::conditions::{Cond, MAX_MESSAGE_BYTES, cut_to, from_k8s_time, set_condition};
use crate::controller::context::Context;
use crate::controller::finalizers::{NotYet, Patience, patience};

/// The cleanup of `rf` for `finalizer` cannot be done now (`why`) and would be tried again
/// after `after`: waits, saying so in the Ready condition, until the grace since the deletion
/// ends; then tells `left` (a Warning Event) and lets the finalizer go.
pub async fn wait_or_leave(
    rf: &ReportFile,
    ctx: &Context,
    finalizer: &str,
    left: EventReason,
    why: String,
    after: Duration,
) -> Result<Action, NotYet> {
    let deleted = rf.metadata.deletion_timestamp.as_ref().map(from_k8s_time);
    let now = ctx.now();
    match patience(deleted, ctx.deletion_grace, now, after) {
        Patience::Wait(after) => {
            let until = deleted.unwrap_or(now) + ctx.deletion_grace;
            tell_waiting(rf, ctx, waiting_message(&why, finalizer, until)).await;
            Err(NotYet(after))
        }
        Patience::GiveUp => {
            let grace = ctx.deletion_grace.as_secs();
            let note = format!("{why}; given up {grace} s after the deletion: the finalizer goes");
            ctx.event(rf, EventType::Warning, left, note).await;
            Ok(Action::await_change())
        }
    }
}

/// The `Deleting` condition's message.
fn waiting_message(why: &str, finalizer: &str, until: DateTime<Utc>) -> String {
    format!(
        "being deleted: {why}; retried until {}, then the finalizer {finalizer} goes",
        until.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    )
}

/// Writes `Ready` False, reason `Deleting`, unless the status says it already: the whole
/// status, through the one field manager (an apply that left fields out would drop them).
async fn tell_waiting(rf: &ReportFile, ctx: &Context, message: String) {
    let mut status = rf.status.clone().unwrap_or_default();
    let cond = Cond::ready(false, FileReady::Deleting, cut_to(message, MAX_MESSAGE_BYTES));
    let said = crate::api::find_condition(&status.conditions, crate::api::CONDITION_READY).is_some_and(|c| {
        c.status == "False" && cond.reason == c.reason.as_str() && c.message == cond.message
    });
    if said {
        return;
    }
    set_condition(&mut status.conditions, cond, rf.metadata.generation, ctx.now());
    let api: Api<ReportFile> = Api::namespaced(ctx.client.clone(), &rf.namespace().unwrap_or_default());
    // Telling is not worth failing the retry for: the next one tries again.
    if let Err(e) = ctx.apply_status(&api, rf, &status).await {
        warn!(report = %rf.name_any(), error = %e, "cannot say in status why the deletion waits");
    }
}
