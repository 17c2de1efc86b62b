//! How a reconcile of a ReportFile ends ([`End`]), and the few words the endings are made
//! of: why a report failed, whether a problem is news, how a retry waits, where a URL comes
//! from and why it is written again. An ending is the
//! one thing a decision hands the driver to write down: [`End::outcome`] says which Event it
//! publishes and when the report is looked at again.

use std::fmt;
use std::time::Duration;

use kube::runtime::events::EventType;

use super::secret::SECRET_CONFLICT_RETRY;
use crate::api::reasons::{EventReason, FileOutcome, FileReady};
use crate::controller::outcome::Outcome;

/// Why a report FAILED for good: the reason its `Ready`, `Complete` and `Failed` carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The backend failed or refused it.
    Failed,
    DeadlineExceeded,
    TooLarge,
}

impl Failure {
    pub fn ready(self) -> FileReady {
        match self {
            Failure::Failed => FileReady::Failed,
            Failure::DeadlineExceeded => FileReady::DeadlineExceeded,
            Failure::TooLarge => FileReady::TooLarge,
        }
    }

    pub fn outcome(self) -> FileOutcome {
        match self {
            Failure::Failed => FileOutcome::Failed,
            Failure::DeadlineExceeded => FileOutcome::DeadlineExceeded,
            Failure::TooLarge => FileOutcome::TooLarge,
        }
    }

    /// The failure a FAILED report's Ready `reason` names (a report failed before the reasons
    /// were told apart says Failed).
    pub fn of_ready(reason: &str) -> Failure {
        match FileReady::parse(reason) {
            Some(FileReady::DeadlineExceeded) => Failure::DeadlineExceeded,
            Some(FileReady::TooLarge) => Failure::TooLarge,
            _ => Failure::Failed,
        }
    }
}

/// Whether a problem is news (told in a Warning Event) or told already.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum News {
    First,
    Again,
}

/// How a retried backend call waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// Its turn: the organization has as many reports in progress as the backend takes. No
    /// Event; counted as a rate-limit wait.
    Queued,
    /// The backend's rate limit (or the operator's budget for it): a Warning, counted.
    RateLimited,
    /// A failure retrying can fix: a Warning.
    BackendError,
}

/// How a reconcile ends. The status says it already: the driver writes it, publishes the
/// Event the ending implies ([`End::outcome`]) and looks again after its requeue.
#[derive(Debug, Clone, PartialEq)]
pub enum End {
    /// The decision changed nothing in status: look again after `requeue`, or on a change.
    Leave { requeue: Option<Duration> },
    /// The status changed: look again after `requeue`, or on a change.
    Done { requeue: Option<Duration> },
    /// FAILED for good: a Warning Event `Failed` with `message`.
    Fail { reason: Failure, message: String },
    /// The backend call is tried again after `after`, told as `wait` says.
    Retry {
        after: Duration,
        wait: Wait,
        message: String,
    },
    /// The Secret's name is someone else's Secret: looked at again every
    /// [`SECRET_CONFLICT_RETRY`], told once.
    SecretConflict { news: News, message: String },
    /// READY: the Secret holds the download (Event `Ready`).
    Completed {
        requeue: Option<Duration>,
        message: String,
    },
    /// The Secret holds a fresh URL from `source` (Event `UrlRefreshed` saying `why`).
    Renewed {
        source: Source,
        why: RenewWhy,
        requeue: Option<Duration>,
    },
    /// The copy is in the store and the Secret holds its URL (Event `Delivered`).
    Delivered { requeue: Duration, message: String },
}

impl End {
    /// How the reconcile ended, for the driver to write down.
    pub fn outcome(self) -> Outcome {
        let warn =
            |requeue, reason, message| Outcome::working(requeue).noting(EventType::Warning, reason, message);
        let tell =
            |requeue, reason, message| Outcome::working(requeue).noting(EventType::Normal, reason, message);
        match self {
            End::Leave { requeue } | End::Done { requeue } => Outcome::working(requeue),
            End::Fail { message, .. } => warn(None, EventReason::Failed, message),
            End::Retry {
                after,
                wait: Wait::Queued,
                ..
            } => Outcome::working(Some(after)),
            End::Retry {
                after,
                wait: Wait::RateLimited,
                message,
            } => warn(Some(after), EventReason::RateLimited, message),
            End::Retry {
                after,
                wait: Wait::BackendError,
                message,
            } => warn(Some(after), EventReason::BackendError, message),
            End::SecretConflict {
                news: News::First,
                message,
            } => warn(Some(SECRET_CONFLICT_RETRY), EventReason::SecretConflict, message),
            End::SecretConflict {
                news: News::Again, ..
            } => Outcome::working(Some(SECRET_CONFLICT_RETRY)),
            End::Completed { requeue, message } => tell(requeue, EventReason::Ready, message),
            End::Renewed { source, why, requeue } => {
                let what = match source {
                    Source::Backend => "the download again",
                    Source::Store => "a fresh presigned URL",
                };
                tell(requeue, EventReason::UrlRefreshed, format!("wrote {what} {why}"))
            }
            End::Delivered { requeue, message } => tell(Some(requeue), EventReason::Delivered, message),
        }
    }

    /// The same ending, looked at again after `at most` at the latest (a copy to retry
    /// while the backend's download is kept up).
    pub fn sooner(self, at_most: Duration) -> End {
        let cap = |r: Option<Duration>| Some(r.map_or(at_most, |r| r.min(at_most)));
        match self {
            End::Leave { requeue } => End::Leave {
                requeue: cap(requeue),
            },
            End::Done { requeue } => End::Done {
                requeue: cap(requeue),
            },
            End::Completed { requeue, message } => End::Completed {
                requeue: cap(requeue),
                message,
            },
            End::Renewed { source, why, requeue } => End::Renewed {
                source,
                why,
                requeue: cap(requeue),
            },
            End::Retry { after, wait, message } => End::Retry {
                after: after.min(at_most),
                wait,
                message,
            },
            End::Delivered { requeue, message } => End::Delivered {
                requeue: requeue.min(at_most),
                message,
            },
            // A conflict is looked at every 30 s anyway; a failure is final.
            end @ (End::SecretConflict { .. } | End::Fail { .. }) => end,
        }
    }
}

/// Where the URL in the Secret comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The backend's download (asked of the backend again to renew).
    Backend,
    /// The presigned URL of the copy in the ReportStore (signed again, the backend not asked).
    Store,
}

/// Why a URL is written again now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RenewWhy {
    /// The refresh-url annotation has a value not served yet.
    Asked,
    /// The report's Secret is gone.
    SecretMissing,
    /// The Secret is ours again after a conflict, and may hold someone else's data.
    AfterConflict,
    /// It expires within its margin (or has, for a presigned URL).
    Expiring,
}

impl fmt::Display for RenewWhy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RenewWhy::Asked => "on the refresh-url annotation",
            RenewWhy::SecretMissing => "because the Secret was missing",
            RenewWhy::AfterConflict => "after the Secret conflict was resolved",
            RenewWhy::Expiring => "before the URL expired",
        })
    }
}
