//! CONNECT keeps every report it made until someone removes it (seed 002: a READY report "can be
//! removed"; a FAILED one is terminal). A CONNECT ReportFile therefore carries a finalizer from
//! before its report is asked for, and deleting the ReportFile (by hand, or by a generator's
//! history pruning) removes its report on Connect first. What cannot be removed is said in a
//! Warning Event (`ReportLeft`), never silently left behind; a report still being made is
//! waited for, since Connect removes only finished ones.
//!
//! Only a report the operator made for this ReportFile (its create-once record) and no other
//! ReportFile holds is removed: an id written by hand into `spec.externalId` may be another
//! ReportFile's report, or one another team or tool keeps. And nothing holds the deletion for
//! ever: a backend not Ready or erroring, or a report still being made, is waited for only
//! for the deletion grace ([`super::deleting`]).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;

use super::decide::{DEFAULT_ACTIVE_DEADLINE, deadline_passed};
use super::deleting;
use super::poll::poll_interval;
use crate::api::reasons::EventReason;
use crate::api::{BackendType, ReportBackend, ReportFile};
use crate::backend::{BackendError, ErrorAction, RemoteReport, ReportRequest, ReportState, ReportingBackend};
use crate::controller::conditions::from_k8s_time;
use crate::controller::context::Context;
use crate::controller::error::Error;
use crate::controller::finalizers::{self, NotYet};
use crate::controller::registry::Unusable;

/// Finalizer that removes a ReportFile's report on Connect.
pub const CONNECT_FINALIZER: &str = crate::api::FINALIZER_CONNECT_REPORT;

/// How often a removal that cannot happen yet is tried again.
const RETRY: Duration = Duration::from_secs(5);

/// Whether reports of `type_` leave something on the backend that deleting the ReportFile must
/// remove: only CONNECT's can be (and need to be) removed.
pub fn needs_finalizer(type_: BackendType) -> bool {
    type_ == BackendType::Connect
}

/// What to do about the report of a ReportFile being deleted, once its state is known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Removal {
    /// Ask the backend to remove it.
    Delete,
    /// Leave it and say why (Warning Event `ReportLeft`); the finalizer goes.
    Leave(String),
    /// Look again after this long (why, for the `Deleting` condition); the finalizer stays.
    Wait(Duration, String),
}

/// Pure: what to do with report `id` in `state` of a ReportFile created at `created` with
/// `deadline_secs`, at `now`.
pub fn removal(
    id: &str,
    state: &ReportState,
    created: Option<DateTime<Utc>>,
    deadline_secs: Option<i64>,
    now: DateTime<Utc>,
) -> Removal {
    match state {
        ReportState::Ready => Removal::Delete,
        ReportState::Failed { .. } => Removal::Leave(format!(
            "report {id} stays on CONNECT: a failed report is terminal and Connect cannot remove it"
        )),
        ReportState::InProgress => {
            let deadline = deadline_secs.unwrap_or(DEFAULT_ACTIVE_DEADLINE);
            if created.is_some_and(|c| deadline_passed(c, deadline, now)) {
                Removal::Leave(format!(
                    "report {id} stays on CONNECT: it is still being made after the ReportFile's deadline, and Connect removes only finished reports"
                ))
            } else {
                // Polled like a running report: 1 s at first, backing off to 30 s.
                let running = created.and_then(|c| (now - c).to_std().ok()).unwrap_or_default();
                Removal::Wait(
                    poll_interval(running, 1, None),
                    format!(
                        "report {id} is still being made on CONNECT, which removes only finished reports"
                    ),
                )
            }
        }
    }
}

/// Another ReportFile on the same API that holds the report too.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    /// `namespace/name`.
    pub name: String,
    /// It is being deleted too.
    pub deleting: bool,
}

/// Pure: whether a ReportFile being deleted may remove report `id`, which `holders` (the other
/// ReportFiles on the same API) hold too; `None`: it may. `made`: this ReportFile made the
/// report (its create-once record), rather than adopting an id written into its spec. Only a
/// report made for this ReportFile is removed, never an adopted one (whoever wrote the id may
/// have taken it from a report another team or tool keeps); a held report is never removed;
/// the one that made it waits while every other holder is being deleted too (a namespace
/// being deleted), and removes it once they are gone.
pub fn shared(id: &str, made: bool, holders: &[Holder]) -> Option<Removal> {
    if !made {
        return Some(Removal::Leave(format!(
            "report {id} stays on CONNECT: its id was written into spec.externalId, and the operator removes only reports it made for the ReportFile"
        )));
    }
    let first = holders.first()?;
    if holders.iter().all(|h| h.deleting) {
        return Some(Removal::Wait(
            RETRY,
            format!(
                "report {id} is held by ReportFile {}, also being deleted: removed once it is gone",
                first.name
            ),
        ));
    }
    Some(Removal::Leave(format!(
        "report {id} stays on CONNECT: held by ReportFile {}",
        first.name
    )))
}

/// Adds the finalizer before the report is asked for, so that no report is made that a
/// deletion could miss.
pub async fn ensure_finalizer(rf: &ReportFile, api: &Api<ReportFile>) -> Result<(), Error> {
    finalizers::ensure(rf, api, CONNECT_FINALIZER).await
}

/// The ReportFile `rf` is being deleted: removes its report on Connect, then the finalizer.
pub async fn finalize(rf: &ReportFile, ctx: &Context) -> Result<Action, Error> {
    let api: Api<ReportFile> = Api::namespaced(ctx.client.clone(), &rf.namespace().unwrap_or_default());
    finalizers::run(Arc::new(rf.clone()), &api, CONNECT_FINALIZER, |rf| async move {
        remove_report(&rf, ctx).await
    })
    .await
}

/// Removes the report, or says in an Event why it stays; `NotYet` keeps the finalizer.
async fn remove_report(rf: &ReportFile, ctx: &Context) -> Result<Action, NotYet> {
    let namespace = rf.namespace().unwrap_or_default();
    let status = rf.status.clone().unwrap_or_default();
    let pending = status.create_pending_since.is_some();
    if status.external_id.is_none() && !pending {
        return Ok(Action::await_change());
    }
    let (rb, backend) = match ctx.ready_backend(&namespace, &rf.spec.backend_ref.name).await {
        Ok(found) => found,
        Err(n) if n.reason == Unusable::NotFound => {
            let what = status.external_id.as_deref().unwrap_or("the report");
            ctx.event(
                rf,
                EventType::Warning,
                EventReason::ReportLeft,
                format!("{what} was not removed on CONNECT: {}", n.message),
            )
            .await;
            return Ok(Action::await_change());
        }
        Err(n) => {
            let why = format!("the report cannot be removed on CONNECT yet: {}", n.message);
            return wait_or_leave(rf, ctx, why, Duration::from_secs(30)).await;
        }
    };
    let type_ = rb.spec.type_.as_str();
    if let Some(id) = status.external_id.as_deref() {
        let uid = rf.metadata.uid.as_deref();
        let holders: Vec<Holder> = ctx
            .index
            .files_holding(&rb, uid, id)
            .iter()
            .map(|other| Holder {
                name: format!("{}/{}", other.namespace().unwrap_or_default(), other.name_any()),
                deleting: other.metadata.deletion_timestamp.is_some(),
            })
            .collect();
        // Made here: the create-once record (an id in spec alone was adopted, not made).
        let made = rf.spec.external_id.is_none() || status.attempts.is_some_and(|a| a > 0);
        if let Some(removal) = shared(id, made, &holders) {
            return act(rf, ctx, removal).await;
        }
    }
    let report = match look_up(rf, ctx, &rb, backend.as_ref(), status.external_id.clone()).await {
        Ok(Some(report)) => report,
        Ok(None) | Err(BackendError::NotFound { .. }) => return Ok(Action::await_change()),
        Err(e) => return settle(rf, ctx, "looking up", &e).await,
    };
    let created = rf.metadata.creation_timestamp.as_ref().map(from_k8s_time);
    match removal(
        &report.id,
        &report.state,
        created,
        rf.spec.active_deadline_seconds,
        ctx.now(),
    ) {
        Removal::Delete => match ctx
            .metrics
            .call(type_, "delete", backend.delete_report(&report.id))
            .await
        {
            Ok(()) => {
                ctx.event(
                    rf,
                    EventType::Normal,
                    EventReason::ReportRemoved,
                    format!("removed report {} on CONNECT", report.id),
                )
                .await;
                Ok(Action::await_change())
            }
            Err(e) => settle(rf, ctx, "removing", &e).await,
        },
        other => act(rf, ctx, other).await,
    }
}

/// Leaves the report (saying why) or waits for it, within the deletion grace.
async fn act(rf: &ReportFile, ctx: &Context, removal: Removal) -> Result<Action, NotYet> {
    match removal {
        Removal::Leave(why) => {
            ctx.event(rf, EventType::Warning, EventReason::ReportLeft, why)
                .await;
            Ok(Action::await_change())
        }
        Removal::Wait(after, why) => wait_or_leave(rf, ctx, why, after).await,
        // Not asked of it: a removal is done where the backend is at hand.
        Removal::Delete => Ok(Action::await_change()),
    }
}

/// [`deleting::wait_or_leave`] for this finalizer: what is left is a report on CONNECT.
async fn wait_or_leave(
    rf: &ReportFile,
    ctx: &Context,
    why: String,
    after: Duration,
) -> Result<Action, NotYet> {
    deleting::wait_or_leave(rf, ctx, CONNECT_FINALIZER, EventReason::ReportLeft, why, after).await
}

/// The report of `rf` on Connect: by its id, or (an ambiguous create may have made a report
/// whose id was never recorded) looked up, never taking one another ReportFile holds.
async fn look_up(
    rf: &ReportFile,
    ctx: &Context,
    rb: &ReportBackend,
    backend: &dyn ReportingBackend,
    id: Option<String>,
) -> Result<Option<RemoteReport>, BackendError> {
    let type_ = rb.spec.type_.as_str();
    let req = ReportRequest::for_report_file(&rf.namespace().unwrap_or_default(), &rf.name_any(), &rf.spec);
    match id {
        Some(id) => ctx
            .metrics
            .call(type_, "get", backend.get(&id, &req))
            .await
            .map(Some),
        None => {
            let taken: HashSet<String> = ctx.index.ids_taken_by_files(rb, rf.metadata.uid.as_deref());
            ctx.metrics.call(type_, "find", backend.find(&req, &taken)).await
        }
    }
}

/// A failed call: retried when that can help, otherwise the report is left (with an Event).
async fn settle(rf: &ReportFile, ctx: &Context, doing: &str, e: &BackendError) -> Result<Action, NotYet> {
    match e.action() {
        ErrorAction::FailReport { reason } => {
            ctx.event(
                rf,
                EventType::Warning,
                EventReason::ReportLeft,
                format!("the report stays on CONNECT: {doing} it was refused: {reason}"),
            )
            .await;
            Ok(Action::await_change())
        }
        ErrorAction::Retry { after } => {
            let after = after
                .unwrap_or(RETRY)
                .clamp(Duration::from_secs(1), Duration::from_secs(300));
            wait_or_leave(
                rf,
                ctx,
                format!("{doing} the report on CONNECT failed: {e}"),
                after,
            )
            .await
        }
        ErrorAction::BackendNotReady { .. } => {
            let why = format!("{doing} the report on CONNECT failed: {e}");
            wait_or_leave(rf, ctx, why, Duration::from_secs(30)).await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).expect("time").with_timezone(&Utc)
    }

    #[test]
    fn a_report_still_being_made_is_looked_at_less_often_as_it_runs() {
        let created = Some(t("2026-01-01T00:00:00Z"));
        let wait = |now| match removal("RP-1", &ReportState::InProgress, created, None, t(now)) {
            Removal::Wait(d, _) => d,
            other => panic!("{other:?}"),
        };
        assert_eq!(wait("2026-01-01T00:00:02Z"), Duration::from_secs(1));
        assert_eq!(wait("2026-01-01T01:00:00Z"), Duration::from_secs(30));
    }

    #[test]
    fn only_a_report_made_for_this_report_file_and_held_by_no_other_is_removed() {
        let holder = |name: &str, deleting| Holder {
            name: format!("team/{name}"),
            deleting,
        };
        const ADOPTED: &str = "its id was written into spec.externalId, and the operator removes only reports it made for the ReportFile";
        /// (situation, this ReportFile made the report, the other holders, what happens)
        type Row = (&'static str, bool, Vec<Holder>, &'static str);
        let rows: Vec<Row> = vec![
            ("made, no one else holds it: removed", true, vec![], "remove"),
            (
                "adopted through spec.externalId, no one else holds it: left",
                false,
                vec![],
                ADOPTED,
            ),
            (
                "adopted, another holds it: left",
                false,
                vec![holder("o", false)],
                ADOPTED,
            ),
            (
                "adopted, another being deleted holds it: left to that one",
                false,
                vec![holder("o", true)],
                ADOPTED,
            ),
            (
                "made, another holds it by hand: left",
                true,
                vec![holder("o", false)],
                "held by ReportFile team/o",
            ),
            (
                "made, the others being deleted too: waits for them",
                true,
                vec![holder("o", true), holder("p", true)],
                "wait",
            ),
            (
                "made, one other not being deleted: left",
                true,
                vec![holder("o", true), holder("p", false)],
                "held by ReportFile team/o",
            ),
        ];
        for (what, made, holders, want) in rows {
            let got = match shared("RP-1", made, &holders) {
                None => "remove".to_string(),
                Some(Removal::Leave(why)) => {
                    assert!(why.starts_with("report RP-1 stays on CONNECT: "), "{what}: {why}");
                    why.trim_start_matches("report RP-1 stays on CONNECT: ")
                        .to_string()
                }
                Some(Removal::Wait(after, why)) => {
                    assert_eq!(after, RETRY, "{what}");
                    assert!(why.contains("also being deleted"), "{what}: {why}");
                    "wait".to_string()
                }
                Some(Removal::Delete) => "delete".to_string(),
            };
            assert_eq!(got, want, "{what}");
        }
    }

    #[test]
    fn what_happens_to_a_deleted_report_files_report() {
        let created = Some(t("2026-01-01T00:00:00Z"));
        let early = t("2026-01-01T01:00:00Z");
        let late = t("2026-01-01T07:00:00Z");
        let failed = ReportState::Failed { reason: "x".into() };
        /// (situation, the report's state, activeDeadlineSeconds, now, what happens)
        type Row = (
            &'static str,
            ReportState,
            Option<i64>,
            DateTime<Utc>,
            &'static str,
        );
        let rows: Vec<Row> = vec![
            ("ready: removed", ReportState::Ready, None, early, "delete"),
            (
                "ready long after: removed",
                ReportState::Ready,
                None,
                late,
                "delete",
            ),
            ("failed: terminal, left", failed, None, early, "leave"),
            (
                "in progress: waited for",
                ReportState::InProgress,
                None,
                early,
                "wait",
            ),
            (
                "in progress past the default 6 h deadline: left",
                ReportState::InProgress,
                None,
                late,
                "leave",
            ),
            (
                "in progress within a longer deadline: waited for",
                ReportState::InProgress,
                Some(86_400),
                late,
                "wait",
            ),
            (
                "an absurd deadline never passes",
                ReportState::InProgress,
                Some(i64::MAX),
                late,
                "wait",
            ),
        ];
        for (what, state, deadline, now, want) in rows {
            let got = match removal("RP-1", &state, created, deadline, now) {
                Removal::Delete => "delete",
                Removal::Leave(why) => {
                    assert!(
                        why.contains("RP-1") && why.contains("stays on CONNECT"),
                        "{what}: {why}"
                    );
                    "leave"
                }
                Removal::Wait(..) => "wait",
            };
            assert_eq!(got, want, "{what}");
        }
    }
}
