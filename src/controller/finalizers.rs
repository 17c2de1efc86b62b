//! The operator's finalizers, through kube's [`finalizer()`] helper. The helper is called only
//! for the objects that leave something outside the cluster (an RDE generator's template, a
//! CONNECT report, a copy in a ReportStore kept with retention Delete), never around a whole
//! reconcile, which would put a finalizer on every object.

use std::fmt::Debug;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use kube::api::Api;
use kube::runtime::controller::Action;
use kube::runtime::finalizer::{self, Event as Finalizing, finalizer};
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::error::Error;

/// The cleanup cannot be done yet: the finalizer stays and the object is looked at again
/// after the duration (not an error: the cleanup tells its own story in Events).
#[derive(Debug, thiserror::Error)]
#[error("the cleanup cannot be done yet")]
pub struct NotYet(pub Duration);

/// How long a deleted object's cleanup may keep its finalizer while the cleanup cannot be done
/// (a platform or store unreachable or erroring, a report still being made; a ReportFile's
/// CONNECT report and copy, an RDE generator's template): after that, the
/// cleanup gives up with a Warning Event and the finalizer goes, so that nothing outside the
/// cluster holds a namespace `Terminating` for ever. `--deletion-grace-seconds`.
pub const DEFAULT_DELETION_GRACE: Duration = Duration::from_secs(120);

/// Whether a cleanup that cannot be done now is tried again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Patience {
    /// Try again after this long (never past the end of the grace, and at least a second).
    Wait(Duration),
    /// The grace since the deletion is over: leave what could not be cleaned, say so, and
    /// let the finalizer go.
    GiveUp,
}

/// Pure: a cleanup of an object deleted at `deleted` (its `deletionTimestamp`) failed at `now`
/// and would be tried again after `after`; `grace` bounds how long it may keep the
/// finalizer since the deletion.
pub fn patience(
    deleted: Option<DateTime<Utc>>,
    grace: Duration,
    now: DateTime<Utc>,
    after: Duration,
) -> Patience {
    // A clock behind the API server's counts no time as passed.
    let passed = deleted.and_then(|d| (now - d).to_std().ok()).unwrap_or_default();
    match grace.checked_sub(passed) {
        Some(left) if !left.is_zero() => Patience::Wait(after.min(left).max(Duration::from_secs(1))),
        _ => Patience::GiveUp,
    }
}

/// Adds the finalizer `name` to `obj` unless it has it. The helper returns right after adding
/// it (its `Apply` does nothing), so the caller goes on in the same pass.
pub async fn ensure<K>(obj: &K, api: &Api<K>, name: &str) -> Result<(), Error>
where
    K: Resource + Clone + DeserializeOwned + Serialize + Debug,
    K::DynamicType: Default,
{
    if obj.finalizers().iter().any(|f| f == name) {
        return Ok(());
    }
    let nothing_to_apply = |_: Finalizing<K>| async { Ok::<_, NotYet>(Action::await_change()) };
    finalizer(api, name, Arc::new(obj.clone()), nothing_to_apply)
        .await
        .or_else(outcome)?;
    Ok(())
}

/// `obj` is being deleted: runs `cleanup` if it still has the finalizer `name`, and removes
/// the finalizer once that succeeded.
pub async fn run<K, F, Fut>(obj: Arc<K>, api: &Api<K>, name: &str, cleanup: F) -> Result<Action, Error>
where
    K: Resource + Clone + DeserializeOwned + Serialize + Debug,
    K::DynamicType: Default,
    F: FnOnce(Arc<K>) -> Fut,
    Fut: Future<Output = Result<Action, NotYet>>,
{
    let step = |event| async move {
        match event {
            Finalizing::Cleanup(obj) => cleanup(obj).await,
            // Not reached: `run` is only called for an object being deleted.
            Finalizing::Apply(_) => Ok(Action::await_change()),
        }
    };
    finalizer(api, name, obj, step).await.or_else(outcome)
}

/// A [`finalizer()`] failure as a reconcile result: [`NotYet`] is a plain requeue.
fn outcome(e: finalizer::Error<NotYet>) -> Result<Action, Error> {
    match e {
        finalizer::Error::ApplyFailed(NotYet(after)) | finalizer::Error::CleanupFailed(NotYet(after)) => {
            Ok(Action::requeue(after))
        }
        finalizer::Error::AddFinalizer(e) | finalizer::Error::RemoveFinalizer(e) => Err(Error::Kube(e)),
        // The helper's own complaints (an unnamed object, a malformed finalizer name) are ours.
        other => Err(Error::Internal(other.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).expect("time").with_timezone(&Utc)
    }

    #[test]
    fn a_cleanup_that_cannot_be_done_waits_only_until_the_grace_since_the_deletion_ends() {
        let deleted = Some(t("2026-01-01T00:00:00Z"));
        let grace = Duration::from_secs(120);
        let secs = Duration::from_secs;
        /// (situation, deletionTimestamp, now, the retry the cleanup asks for, what happens)
        type Row = (
            &'static str,
            Option<DateTime<Utc>>,
            &'static str,
            Duration,
            Patience,
        );
        let rows: Vec<Row> = vec![
            (
                "just deleted: retried when asked",
                deleted,
                "2026-01-01T00:00:01Z",
                secs(30),
                Patience::Wait(secs(30)),
            ),
            (
                "the retry comes no later than the grace's end",
                deleted,
                "2026-01-01T00:01:50Z",
                secs(30),
                Patience::Wait(secs(10)),
            ),
            (
                "never sooner than a second",
                deleted,
                "2026-01-01T00:01:59.900Z",
                secs(30),
                Patience::Wait(secs(1)),
            ),
            (
                "the grace is over: given up",
                deleted,
                "2026-01-01T00:02:00Z",
                secs(30),
                Patience::GiveUp,
            ),
            (
                "long after: given up",
                deleted,
                "2026-01-02T00:00:00Z",
                secs(1),
                Patience::GiveUp,
            ),
            (
                "a clock behind the API server's: no time passed",
                deleted,
                "2025-12-31T23:59:00Z",
                secs(5),
                Patience::Wait(secs(5)),
            ),
            (
                "no deletionTimestamp: no time passed",
                None,
                "2026-01-02T00:00:00Z",
                secs(5),
                Patience::Wait(secs(5)),
            ),
        ];
        for (what, deleted, now, after, want) in rows {
            assert_eq!(patience(deleted, grace, t(now), after), want, "{what}");
        }
        assert_eq!(
            patience(deleted, Duration::ZERO, t("2026-01-01T00:00:00Z"), secs(5)),
            Patience::GiveUp,
            "no grace: given up at the first failure"
        );
    }
}
