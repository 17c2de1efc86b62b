//! What a reconcile came to, said one way for the four kinds: the Ready condition it sets,
//! the Event its owner hears, and when the object is looked at again. The decisions return an
//! [`Outcome`] (`generator::decide`, the backend and store probes) or an ending that becomes
//! one (`file::decide`'s `End`); [`conclude`] is the one place that writes it down, and the
//! `reconciles_total` metric counts each reconcile that got this far as `result="ok"`.

use std::time::Duration;

use chrono::{DateTime, Utc};
use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;

use super::conditions::{Cond, set_condition};
use super::context::Context;
use super::error::Error;
use super::guard::HasReady;
use super::registry::{NotReady, Unusable};
use crate::api::reasons::{AnyReason, EventReason, Reason};

/// How a reconcile ended.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// The Ready condition to set; `None` keeps the one the decision already wrote into the
    /// status (a ReportFile's state machine, a generator's roll-up of its reports).
    pub ready: Option<Cond>,
    /// Look again after this long; `None`: only when something changes.
    pub requeue: Option<Duration>,
    /// The Event the owner hears of this (boxed: most outcomes have none, and an outcome is
    /// passed around in `Result`s).
    pub event: Option<Box<Note>>,
}

/// An Event to publish on the object: its reason is an [`EventReason`], or the reason of the
/// condition a Warning repeats ([`Outcome::warned`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    pub type_: EventType,
    pub reason: AnyReason,
    pub message: String,
}

impl Outcome {
    /// Working as asked; Ready is the object's own (already in its status).
    pub fn working(requeue: Option<Duration>) -> Self {
        Outcome {
            ready: None,
            requeue,
            event: None,
        }
    }

    /// Ready=True with this reason.
    pub fn ready(reason: impl Reason, message: impl Into<String>) -> Self {
        Outcome {
            ready: Some(Cond::ready(true, reason, message)),
            requeue: None,
            event: None,
        }
    }

    /// Ready=False while something outside the object is not there yet (a backend, a
    /// budget): it changes by itself, so the owner is not warned.
    pub fn waiting(reason: impl Reason, message: impl Into<String>, requeue: Duration) -> Self {
        Outcome {
            ready: Some(Cond::ready(false, reason, message)),
            requeue: Some(requeue),
            event: None,
        }
    }

    /// Ready=False until the object is changed: a Warning Event, and no requeue (a change
    /// wakes it).
    pub fn invalid(reason: impl Reason, message: impl Into<String>) -> Self {
        Outcome {
            ready: Some(Cond::ready(false, reason, message)),
            requeue: None,
            event: None,
        }
        .warned()
    }

    /// Also look again after `requeue`.
    pub fn requeue(mut self, requeue: Duration) -> Self {
        self.requeue = Some(requeue);
        self
    }

    /// A working outcome without a requeue gets `interval`.
    pub fn or_requeue(mut self, interval: Duration) -> Self {
        if self.ready.is_none() && self.requeue.is_none() {
            self.requeue = Some(interval);
        }
        self
    }

    /// With a Warning Event that says what the condition says.
    pub fn warned(mut self) -> Self {
        self.event = self.ready.as_ref().map(|c| {
            Box::new(Note {
                type_: EventType::Warning,
                reason: c.reason,
                message: c.message.clone(),
            })
        });
        self
    }

    /// With this Event.
    pub fn noting(mut self, type_: EventType, reason: EventReason, message: impl Into<String>) -> Self {
        self.event = Some(Box::new(Note {
            type_,
            reason: AnyReason::of(reason),
            message: message.into(),
        }));
        self
    }

    /// Without the Event when the Ready reason is `previous` already: a problem is told once
    /// per change, not at every retry.
    pub fn once_per_reason(mut self, previous: Option<&str>) -> Self {
        if self
            .ready
            .as_ref()
            .is_some_and(|c| Some(c.reason.as_str()) == previous)
        {
            self.event = None;
        }
        self
    }

    /// The controller's next look.
    pub fn action(&self) -> Action {
        self.requeue.map_or_else(Action::await_change, Action::requeue)
    }
}

impl From<NotReady> for Outcome {
    /// A backend that is not Ready: waited for, and looked at again every 30 s (it wakes its
    /// users when it becomes Ready). Its own Events tell the story; only a missing one, which
    /// has no one else to tell, gets a Warning here.
    fn from(n: NotReady) -> Self {
        let outcome = Outcome::waiting(n.reason, n.message, BACKEND_WAIT);
        if n.reason == Unusable::NotFound {
            outcome.warned()
        } else {
            outcome
        }
    }
}

/// How often an object waiting for a backend that is not Ready looks again.
pub const BACKEND_WAIT: Duration = Duration::from_secs(30);

/// Writes `outcome` down for `obj`: its Ready condition into `status` (kept as it is when
/// the outcome has none), the status to the API server if it changed from `old`, then the
/// Event. Returns the controller's next look.
pub async fn conclude<K: HasReady>(
    ctx: &Context,
    obj: &K,
    old: Option<&K::Status>,
    mut status: K::Status,
    outcome: Outcome,
    now: DateTime<Utc>,
) -> Result<Action, Error> {
    if let Some(cond) = outcome.ready.clone() {
        set_condition(K::conditions(&mut status), cond, obj.meta().generation, now);
    }
    if old != Some(&status) {
        let api: Api<K> = Api::namespaced(ctx.client.clone(), &obj.namespace().unwrap_or_default());
        ctx.apply_status(&api, obj, &status).await?;
    }
    if let Some(note) = &outcome.event {
        ctx.event(obj, note.type_, note.reason, note.message.clone())
            .await;
    }
    Ok(outcome.action())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::reasons::GeneratorReady;

    #[test]
    fn each_outcome_maps_to_one_condition_requeue_and_event() {
        let secs = Duration::from_secs;
        let warning = |reason: GeneratorReady, message: &str| {
            Some(Box::new(Note {
                type_: EventType::Warning,
                reason: AnyReason::of(reason),
                message: message.into(),
            }))
        };
        // (outcome, Ready, requeue, Event)
        type Row = (
            Outcome,
            Option<(bool, &'static str)>,
            Option<Duration>,
            Option<Box<Note>>,
        );
        let cases: Vec<Row> = vec![
            (Outcome::working(None), None, None, None),
            (Outcome::working(Some(secs(5))), None, Some(secs(5)), None),
            (
                Outcome::working(None).or_requeue(secs(30)),
                None,
                Some(secs(30)),
                None,
            ),
            (
                Outcome::working(Some(secs(1))).or_requeue(secs(30)),
                None,
                Some(secs(1)),
                None,
            ),
            (
                Outcome::ready(GeneratorReady::Throttled, "m")
                    .requeue(secs(60))
                    .warned(),
                Some((true, "Throttled")),
                Some(secs(60)),
                warning(GeneratorReady::Throttled, "m"),
            ),
            (
                Outcome::waiting(GeneratorReady::BackendError, "m", secs(5)),
                Some((false, "BackendError")),
                Some(secs(5)),
                None,
            ),
            (
                Outcome::waiting(GeneratorReady::BackendError, "m", secs(5)).or_requeue(secs(30)),
                Some((false, "BackendError")),
                Some(secs(5)),
                None,
            ),
            (
                Outcome::invalid(GeneratorReady::InvalidSchedule, "m"),
                Some((false, "InvalidSchedule")),
                None,
                warning(GeneratorReady::InvalidSchedule, "m"),
            ),
            (
                Outcome::invalid(GeneratorReady::InvalidSchedule, "m")
                    .once_per_reason(Some("InvalidSchedule")),
                Some((false, "InvalidSchedule")),
                None,
                None,
            ),
            (
                Outcome::invalid(GeneratorReady::InvalidSchedule, "m").once_per_reason(Some("Scheduled")),
                Some((false, "InvalidSchedule")),
                None,
                warning(GeneratorReady::InvalidSchedule, "m"),
            ),
            (
                NotReady::new(Unusable::NotReady, "m").into(),
                Some((false, "BackendNotReady")),
                Some(BACKEND_WAIT),
                None,
            ),
            (
                NotReady::new(Unusable::NotFound, "m").into(),
                Some((false, "BackendNotFound")),
                Some(BACKEND_WAIT),
                warning(GeneratorReady::BackendNotFound, "m"),
            ),
        ];
        for (i, (outcome, ready, requeue, event)) in cases.into_iter().enumerate() {
            assert_eq!(
                outcome.ready.as_ref().map(|c| (c.status, c.reason.as_str())),
                ready,
                "row {i}"
            );
            assert_eq!(outcome.requeue, requeue, "row {i}");
            assert_eq!(
                outcome.action(),
                requeue.map_or_else(Action::await_change, Action::requeue),
                "row {i}"
            );
            assert_eq!(outcome.event, event, "row {i}");
        }
    }
}
