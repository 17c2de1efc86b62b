//! The ReportFile state machine, pure: at each point of a reconcile the driver passes what it
//! knows so far (the status, the spec's [`Facts`], `now`, and the backend's or the Secret's
//! answer) and gets the next step, with the status changes it implies already made. No
//! client, no Context: every situation is a row of the tables in `decide_tests.rs`.
//!
//! A step that ends the reconcile is an [`End`]; one that goes on is its own type
//! ([`Begin`], [`Ask`], `()` for "go on"), so that a decision point returns
//! `Result<GoOn, End>` and the driver can neither drop an ending nor end with a step that
//! goes on. This file takes a report up to READY or FAILED; [`super::renewal`] makes it
//! READY and keeps its download in place (the copy into a store, the URL renewal policy).

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};

pub use super::end::{End, Failure, News, Wait};
use super::poll;
use super::secret::{Observed, conflict_message};
use crate::api::reasons::{FileOutcome, FileReady};
use crate::api::{
    CONDITION_COMPLETE, CONDITION_FAILED, CONDITION_READY, FileState, MAX_ID_LENGTH, ReportFileStatus,
    find_condition,
};
use crate::backend::{BackendError, Download, ErrorAction, RemoteReport, ReportState};
use crate::controller::conditions::{Cond, MAX_MESSAGE_BYTES, cut_to, set_condition};
use crate::controller::outcome::BACKEND_WAIT;

/// Default `activeDeadlineSeconds`: 6 hours.
pub const DEFAULT_ACTIVE_DEADLINE: i64 = 6 * 3600;
/// Longest requeue: a URL a backend says expires in year 9999 (or a Retry-After that far
/// out) is looked at again tomorrow rather than left alone for years.
pub const MAX_REQUEUE: Duration = Duration::from_secs(24 * 3600);
/// After READY with a `storeRef`, the copy is the next reconcile's, soon: it sees the Secret
/// just written.
pub const COPY_SOON: Duration = Duration::from_millis(500);

/// What the decisions need to know of the ReportFile besides its status.
#[derive(Debug, Clone)]
pub struct Facts<'a> {
    pub name: &'a str,
    pub generation: Option<i64>,
    pub created: Option<DateTime<Utc>>,
    pub active_deadline_seconds: Option<i64>,
    /// A report the backend made itself has its id in the spec.
    pub spec_external_id: Option<&'a str>,
    /// The value of the refresh-url annotation.
    pub refresh: Option<&'a str>,
    /// For how long after READY short-lived URLs are re-minted before they expire without
    /// being asked (SUPPLIER's `keepUrlFreshSeconds`); later they are re-minted on the
    /// refresh annotation only, at any age, so old reports cost the backend nothing.
    pub keep_url_fresh: TimeDelta,
    /// `spec.storeRef`: the report is copied into this ReportStore once READY.
    pub store: Option<&'a str>,
    /// The backend answers polls from one listing per organization: polls fall on a grid of
    /// ticks ([`super::poll::next_tick`]).
    pub poll_grid: bool,
    pub now: DateTime<Utc>,
}

/// Sets `Ready` (whether the download works now) and, from `s.status`, the outcome
/// conditions: every step that changes the state goes through here, so they never disagree.
pub fn set_ready(s: &mut ReportFileStatus, f: &Facts, status: bool, reason: FileReady, message: String) {
    set_outcome(s, f, Failure::of_ready(reason.as_str()), &message);
    set_condition(
        &mut s.conditions,
        Cond::ready(status, reason, message),
        f.generation,
        f.now,
    );
}

/// `Complete` and `Failed`, as a Job has them, so that `kubectl wait` can wait for either
/// outcome; `Ready` alone cannot say FAILED apart from "not yet", nor READY apart from an
/// expired URL. A FAILED report's `failure` and `message` are its failure's.
fn set_outcome(s: &mut ReportFileStatus, f: &Facts, failure: Failure, message: &str) {
    let (complete, failed, reason, message) = match s.status {
        Some(FileState::Ready) => (true, false, FileOutcome::Ready, "the report is READY"),
        Some(FileState::Failed) => (false, true, failure.outcome(), message),
        Some(FileState::InProgress) | None => (
            false,
            false,
            FileOutcome::InProgress,
            "the report is not finished yet",
        ),
    };
    set_condition(
        &mut s.conditions,
        Cond::new(CONDITION_COMPLETE, complete, reason, message),
        f.generation,
        f.now,
    );
    set_condition(
        &mut s.conditions,
        Cond::new(CONDITION_FAILED, failed, reason, message),
        f.generation,
        f.now,
    );
}

/// A report finished before the operator set `Complete` and `Failed` gets them from its
/// state and Ready condition, once: the ending is `Done` when it did, `Leave` otherwise.
pub fn left_as_is(s: &mut ReportFileStatus, f: &Facts, requeue: Option<Duration>) -> End {
    if find_condition(&s.conditions, CONDITION_COMPLETE).is_some() {
        return End::Leave { requeue };
    }
    let (failure, message) = match find_condition(&s.conditions, CONDITION_READY) {
        Some(c) => (Failure::of_ready(&c.reason), c.message.clone()),
        None => (Failure::Failed, "the report FAILED".to_string()),
    };
    set_outcome(s, f, failure, &message);
    End::Done { requeue }
}

/// Whether the Ready condition says `reason`.
pub fn ready_says(s: &ReportFileStatus, reason: FileReady) -> bool {
    find_condition(&s.conditions, CONDITION_READY).is_some_and(|c| c.reason == reason.as_str())
}

/// The backend's id of this report, if known: recorded by us, or given in the spec for a
/// report the backend made itself (RDE report files, CMP invoice reports).
pub fn known_id(s: &ReportFileStatus, f: &Facts) -> Option<String> {
    s.external_id
        .clone()
        .or_else(|| f.spec_external_id.map(str::to_string))
}

/// Where a reconcile begins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Begin {
    /// READY: keep its download in place ([`super::renewal`]).
    Ready,
    /// A Secret conflict was reported: look at the Secret ([`secret_seen`]) before the
    /// backend is asked again (a FUSION `get` generates the report again).
    SecretFirst,
    /// Ask the backend ([`with_backend`], or [`backend_not_ready`]).
    AskBackend,
}

/// The start of a reconcile: a FAILED report is left alone, one past its deadline fails.
pub fn start(s: &mut ReportFileStatus, f: &Facts) -> Result<Begin, End> {
    match s.status {
        Some(FileState::Failed) => return Err(left_as_is(s, f, None)),
        Some(FileState::Ready) => return Ok(Begin::Ready),
        Some(FileState::InProgress) | None => {}
    }
    if let Some(created) = f.created {
        let deadline = f.active_deadline_seconds.unwrap_or(DEFAULT_ACTIVE_DEADLINE);
        if deadline_passed(created, deadline, f.now) {
            let message = format!("the report was not READY within activeDeadlineSeconds ({deadline} s)");
            return Err(fail(s, f, Failure::DeadlineExceeded, message));
        }
    }
    if ready_says(s, FileReady::SecretConflict) {
        Ok(Begin::SecretFirst)
    } else {
        Ok(Begin::AskBackend)
    }
}

/// The Secret was looked at (before the backend is asked again, or before it is written):
/// someone else's ends the reconcile with a conflict.
pub fn secret_seen(s: &mut ReportFileStatus, f: &Facts, seen: &Observed) -> Result<(), End> {
    match seen {
        Observed::Foreign { why } => Err(secret_conflict(s, f, why)),
        Observed::Missing | Observed::Ours { .. } => Ok(()),
    }
}

/// The backend is not Ready: the report waits for it (`Pending`).
pub fn backend_not_ready(s: &mut ReportFileStatus, f: &Facts, message: &str) -> End {
    s.status = Some(FileState::InProgress);
    set_ready(
        s,
        f,
        false,
        FileReady::Pending,
        format!("waiting for the backend: {message}"),
    );
    End::Done {
        requeue: Some(BACKEND_WAIT),
    }
}

/// What to ask a Ready backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ask {
    /// The report with this id.
    Get(String),
    /// The backend does not know of the report yet, or an earlier request may have reached
    /// it: make it with the [create-once protocol](crate::controller::create_once)
    /// ([`mark_pending`], then [`record_id`]).
    Create,
}

/// The backend is Ready: follow the report it knows, or make it. A report submitted less
/// than [`poll::FIRST_POLL`] ago (on the poll grid: before the tick half of it after the submit) is
/// not asked about yet: the reconcile that the submit's own status write wakes would otherwise
/// poll a few milliseconds after the backend answered, spending a request of the budget that
/// a fan-out's other reports wait for.
pub fn with_backend(s: &mut ReportFileStatus, f: &Facts) -> Result<Ask, End> {
    if s.external_id.is_none() {
        s.external_id = f.spec_external_id.map(str::to_string);
    }
    let wait = s
        .submit_time
        .and_then(|t| poll::first_poll_wait(t, f.now, f.poll_grid));
    match known_id(s, f) {
        Some(_) if let Some(wait) = wait => Err(End::Leave { requeue: Some(wait) }),
        Some(id) => Ok(Ask::Get(id)),
        None => Ok(Ask::Create),
    }
}

/// The mark that goes to the API server before the backend hears of the request.
pub fn mark_pending(s: &mut ReportFileStatus, f: &Facts, type_: &str) {
    s.create_pending_since = Some(f.now);
    s.attempts = Some(s.attempts.unwrap_or(0).saturating_add(1));
    s.status = Some(FileState::InProgress);
    set_ready(
        s,
        f,
        false,
        FileReady::Pending,
        format!("asking {type_} for the report"),
    );
}

/// The backend's id, written before anything else can go wrong; with the condition that
/// [`answer`] gives a report in progress, so that a report still generating costs no second
/// status write in the same reconcile. `accepted`: when the backend's answer came, which the
/// polls count from (the reconcile's start would put each poll a little early, and a poll
/// just before a report of a whole number of seconds finishes costs a whole interval).
pub fn record_id(s: &mut ReportFileStatus, f: &Facts, type_: &str, id: &str, accepted: DateTime<Utc>) {
    // A backend's text, cut to what status holds (as are its file names and reasons).
    s.external_id = Some(cut_to(id.to_string(), MAX_ID_LENGTH));
    s.create_pending_since = None;
    s.submit_time.get_or_insert(accepted.max(f.now));
    s.status = Some(FileState::InProgress);
    set_ready(s, f, false, FileReady::InProgress, generating(type_));
}

fn generating(type_: &str) -> String {
    format!("{type_} is generating the report")
}

/// The report's state on the backend: READY goes on to the download; in progress is polled
/// again after `poll`.
pub fn answer(
    s: &mut ReportFileStatus,
    f: &Facts,
    type_: &str,
    state: &ReportState,
    poll: Duration,
) -> Result<(), End> {
    match state {
        ReportState::InProgress => {
            s.status = Some(FileState::InProgress);
            s.submit_time.get_or_insert(f.now);
            set_ready(s, f, false, FileReady::InProgress, generating(type_));
            Err(End::Done { requeue: Some(poll) })
        }
        ReportState::Ready => Ok(()),
        ReportState::Failed { reason } => {
            let msg = format!("{type_} failed the report: {reason}");
            s.failed_reason = Some(cut_to(reason.clone(), MAX_MESSAGE_BYTES));
            Err(fail(s, f, Failure::Failed, msg))
        }
    }
}

/// A backend call failed with `e`: fail the report, wait for the backend, or try again.
pub fn backend_error(
    s: &mut ReportFileStatus,
    f: &Facts,
    type_: &str,
    operation: &str,
    e: &BackendError,
) -> End {
    match e.action() {
        ErrorAction::FailReport { reason } => {
            let message = format!("{type_} refused the report: {reason}");
            s.failed_reason = Some(cut_to(reason, MAX_MESSAGE_BYTES));
            let failure = match e {
                BackendError::TooLarge { .. } => Failure::TooLarge,
                _ => Failure::Failed,
            };
            fail(s, f, failure, message)
        }
        ErrorAction::BackendNotReady { message, .. } => backend_not_ready(s, f, &message),
        ErrorAction::Retry { after } => {
            let after = after
                .unwrap_or(Duration::from_secs(5))
                .clamp(Duration::from_millis(500), MAX_REQUEUE);
            let wait = match e {
                BackendError::InFlightLimit { .. } => Wait::Queued,
                BackendError::RateLimited { .. } => Wait::RateLimited,
                _ => Wait::BackendError,
            };
            let message = format!(
                "{operation} on {type_}: {e}; retrying in {}s",
                after.as_secs_f64().ceil()
            );
            s.status = Some(FileState::InProgress);
            let reason = if known_id(s, f).is_some() {
                FileReady::InProgress
            } else {
                FileReady::Pending
            };
            set_ready(s, f, false, reason, message.clone());
            End::Retry { after, wait, message }
        }
    }
}

/// The report has failed for good.
pub fn fail(s: &mut ReportFileStatus, f: &Facts, reason: Failure, message: String) -> End {
    s.status = Some(FileState::Failed);
    s.completion_time = Some(f.now);
    s.create_pending_since = None;
    if s.failed_reason.is_none() {
        s.failed_reason = Some(reason.ready().as_str().to_string());
    }
    set_ready(s, f, false, reason.ready(), message.clone());
    End::Fail { reason, message }
}

/// The report's Secret name is someone else's Secret. The report itself is fine
/// (IN_PROGRESS until the Secret is written; a READY one stays READY).
pub fn secret_conflict(s: &mut ReportFileStatus, f: &Facts, why: &str) -> End {
    let message = conflict_message(f.name, why);
    let news = if ready_says(s, FileReady::SecretConflict) {
        News::Again
    } else {
        News::First
    };
    s.status.get_or_insert(FileState::InProgress);
    set_ready(s, f, false, FileReady::SecretConflict, message.clone());
    End::SecretConflict { news, message }
}

/// The generate date and file name the Secret and status carry: the backend's, else now and
/// the name the download gives.
pub fn file_of(
    report: &RemoteReport,
    download: &Download,
    now: DateTime<Utc>,
) -> (DateTime<Utc>, Option<String>) {
    let file_name = report.file_name.clone().or_else(|| match download {
        Download::Inline { file_name, .. } | Download::Streamed { file_name } => Some(file_name.clone()),
        Download::Url { url, .. } => file_name_of(url),
    });
    (report.generate_date.unwrap_or(now), file_name)
}

/// The last path segment of a download URL, when the API names the file only there.
fn file_name_of(url: &str) -> Option<String> {
    let path = url::Url::parse(url)
        .ok()?
        .path_segments()?
        .next_back()?
        .to_string();
    let decoded = percent_encoding::percent_decode_str(&path)
        .decode_utf8()
        .ok()?
        .into_owned();
    (!decoded.is_empty()).then_some(decoded)
}

/// When a download URL stops working, if it is a URL that says.
pub fn url_expiry(download: &Download) -> Option<DateTime<Utc>> {
    match download {
        Download::Url { expires_at, .. } => *expires_at,
        Download::Inline { .. } | Download::Streamed { .. } => None,
    }
}

/// Whether a report created at `created` has run past `deadline_secs` at `now`. The user
/// sets the deadline, up to `i64::MAX` seconds: one beyond the last representable date is
/// never reached.
pub fn deadline_passed(created: DateTime<Utc>, deadline_secs: i64, now: DateTime<Utc>) -> bool {
    TimeDelta::try_seconds(deadline_secs)
        .and_then(|d| created.checked_add_signed(d))
        .is_some_and(|end| now > end)
}

#[cfg(test)]
#[path = "decide_tests.rs"]
mod tests;
