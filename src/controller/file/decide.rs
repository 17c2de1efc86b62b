//! The ReportFile state machine, pure: at each point of a reconcile the driver passes what it
//! knows so far (the status, the spec's facts, `now`, and the backend's or the Secret's
//! answer) and gets the one [`Next`] step, with the status changes it implies already made.
//! No client, no Context: every situation is a row of the tables below.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};

use super::secret::{Observed, conflict_message};
use crate::api::{
    ANNOTATION_REFRESH_URL, CONDITION_COMPLETE, CONDITION_FAILED, CONDITION_READY, FileState,
    LocalObjectReference, MAX_FILE_NAME_LENGTH, MAX_ID_LENGTH, ReportFileStatus, find_condition,
};
use crate::backend::{BackendError, Download, ErrorAction, RemoteReport, ReportState};
use crate::controller::conditions::{Cond, MAX_MESSAGE_BYTES, cut_to, set_condition};
use crate::controller::outcome::Outcome;
use kube::runtime::events::EventType;

/// Default `activeDeadlineSeconds`: 6 hours.
pub const DEFAULT_ACTIVE_DEADLINE: i64 = 6 * 3600;
/// How long before a short-lived URL expires the operator re-mints it.
const URL_RENEW_MARGIN: chrono::Duration = chrono::Duration::seconds(10);
/// Longest requeue: a URL a backend says expires in year 9999 (or a Retry-After that far
/// out) is looked at again tomorrow rather than left alone for years.
pub const MAX_REQUEUE: Duration = Duration::from_secs(24 * 3600);
/// How often a report waiting for a backend that is not Ready looks again (a backend that
/// becomes Ready wakes it sooner).
const BACKEND_WAIT: Duration = Duration::from_secs(30);
/// Ready reason of a report whose Secret name is taken by someone else's Secret.
pub const SECRET_CONFLICT: &str = "SecretConflict";

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
    pub now: DateTime<Utc>,
}

/// The step the driver takes next. Status changes are made already; "write status" means
/// the driver writes it before it does anything else the step says.
#[derive(Debug, Clone, PartialEq)]
pub enum Next {
    /// Nothing to write: look again after `requeue`, or on a change.
    Leave { requeue: Option<Duration> },
    /// Write status, then look again after `requeue`, or on a change.
    Done { requeue: Option<Duration> },
    /// Write status (FAILED), log it with `reason`, and say so in a Warning Event.
    Fail { reason: &'static str, message: String },
    /// Look at the report Secret (metadata only): a READY report goes on with [`ready`];
    /// one that found it taken goes on with [`secret_seen`] before the backend is asked again.
    CheckSecret,
    /// Find the backend (it must be Ready) and go on with [`with_backend`].
    AskBackend,
    /// Ask the backend for the report with this id.
    Get { id: String },
    /// The backend does not know of the report yet, or an earlier request may have reached
    /// it: make it with the [create-once protocol](crate::controller::create_once).
    Create,
    /// Write status (the create-pending mark), then submit.
    MarkPendingThenSubmit,
    /// Write status (the backend's id), then go on with the report's state ([`answer`]).
    Recorded,
    /// Write status, then poll again (sooner for a new report); `first`: it just started.
    Poll { first: bool },
    /// The report is READY on the backend: look at the Secret, download, write it.
    Download,
    /// Write status, then try again after `after`; with a Warning Event `(reason, message)`
    /// unless the report only waits its turn. `rate_limited`: count a rate-limit wait.
    Retry {
        after: Duration,
        event: Option<(&'static str, String)>,
        rate_limited: bool,
    },
    /// Write status; if `first`, log and send a Warning Event with `message`; look again in
    /// [`super::secret::CONFLICT_RETRY`].
    SecretConflict { first: bool, message: String },
    /// Get the report again, download and write the Secret; `why` goes into the Event.
    RenewUrl { why: &'static str },
}

/// How a reconcile that ends with `next` ended; `None` for a step that does not end one.
/// The Ready condition is in the status already.
pub fn outcome(next: Next) -> Option<Outcome> {
    Some(match next {
        Next::Leave { requeue } | Next::Done { requeue } => Outcome::working(requeue),
        Next::Fail { message, .. } => Outcome::working(None).noting(EventType::Warning, "Failed", message),
        Next::Retry { after, event, .. } => {
            let outcome = Outcome::working(Some(after));
            match event {
                Some((reason, message)) => outcome.noting(EventType::Warning, reason, message),
                None => outcome,
            }
        }
        Next::SecretConflict { first, message } => {
            let outcome = Outcome::working(Some(super::secret::CONFLICT_RETRY));
            if first {
                outcome.noting(EventType::Warning, SECRET_CONFLICT, message)
            } else {
                outcome
            }
        }
        _ => return None,
    })
}

/// Sets `Ready` (whether the download works now) and, from `s.status`, the outcome
/// conditions: every step that changes the state goes through here, so they never disagree.
fn set_ready(s: &mut ReportFileStatus, f: &Facts, status: bool, reason: &str, message: String) {
    set_outcome(s, f, reason, &message);
    set_condition(
        &mut s.conditions,
        Cond::ready(status, reason, message),
        f.generation,
        f.now,
    );
}

/// `Complete` and `Failed`, as a Job has them, so that `kubectl wait` can wait for either
/// outcome; `Ready` alone cannot say FAILED apart from "not yet", nor READY apart from an
/// expired URL. A FAILED report's `reason` and `message` are its failure's.
fn set_outcome(s: &mut ReportFileStatus, f: &Facts, reason: &str, message: &str) {
    let (complete, failed, reason, message) = match s.status {
        Some(FileState::Ready) => (true, false, "Ready", "the report is READY"),
        Some(FileState::Failed) => (false, true, reason, message),
        Some(FileState::InProgress) | None => (false, false, "InProgress", "the report is not finished yet"),
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
/// state and Ready condition, once.
fn outcome_missing(s: &mut ReportFileStatus, f: &Facts) -> bool {
    if find_condition(&s.conditions, CONDITION_COMPLETE).is_some() {
        return false;
    }
    let (reason, message) = match find_condition(&s.conditions, CONDITION_READY) {
        Some(c) if ["DeadlineExceeded", "TooLarge"].contains(&c.reason.as_str()) => {
            (c.reason.clone(), c.message.clone())
        }
        Some(c) => ("Failed".to_string(), c.message.clone()),
        None => ("Failed".to_string(), "the report FAILED".to_string()),
    };
    set_outcome(s, f, &reason, &message);
    true
}

fn ready_reason(s: &ReportFileStatus) -> Option<&str> {
    find_condition(&s.conditions, CONDITION_READY).map(|c| c.reason.as_str())
}

/// The backend's id of this report, if known: recorded by us, or given in the spec for a
/// report the backend made itself (RDE report files, CMP invoice reports).
pub fn known_id(s: &ReportFileStatus, f: &Facts) -> Option<String> {
    s.external_id
        .clone()
        .or_else(|| f.spec_external_id.map(str::to_string))
}

/// The start of a reconcile.
pub fn start(s: &mut ReportFileStatus, f: &Facts) -> Next {
    match s.status {
        Some(FileState::Failed) => {
            return if outcome_missing(s, f) {
                Next::Done { requeue: None }
            } else {
                Next::Leave { requeue: None }
            };
        }
        Some(FileState::Ready) => return Next::CheckSecret,
        Some(FileState::InProgress) | None => {}
    }
    if let Some(created) = f.created {
        let deadline = f.active_deadline_seconds.unwrap_or(DEFAULT_ACTIVE_DEADLINE);
        if deadline_passed(created, deadline, f.now) {
            return fail(
                s,
                f,
                "DeadlineExceeded",
                format!("the report was not READY within activeDeadlineSeconds ({deadline} s)"),
            );
        }
    }
    // While the Secret name is taken the backend is not asked again (a FUSION `get`
    // generates the report again).
    if ready_reason(s) == Some(SECRET_CONFLICT) {
        Next::CheckSecret
    } else {
        Next::AskBackend
    }
}

/// The Secret was looked at before the backend is asked (after [`start`] or in [`answer`]'s
/// `Download`): someone else's means a conflict, otherwise `then`.
pub fn secret_seen(s: &mut ReportFileStatus, f: &Facts, seen: &Observed, then: Next) -> Next {
    match seen {
        Observed::Foreign { why } => secret_conflict(s, f, why),
        Observed::Missing | Observed::Ours { .. } => then,
    }
}

/// The backend is not Ready: the report waits for it (`Pending`).
pub fn backend_not_ready(s: &mut ReportFileStatus, f: &Facts, message: &str) -> Next {
    s.status = Some(FileState::InProgress);
    set_ready(
        s,
        f,
        false,
        "Pending",
        format!("waiting for the backend: {message}"),
    );
    Next::Done {
        requeue: Some(BACKEND_WAIT),
    }
}

/// The backend is Ready: follow the report it knows, or make it. A report submitted less
/// than [`FIRST_POLL`] ago is not asked about yet: the reconcile that the submit's own status
/// write wakes would otherwise poll a few milliseconds after the backend answered, spending
/// a request of the budget that a fan-out's other reports wait for.
pub fn with_backend(s: &mut ReportFileStatus, f: &Facts) -> Next {
    if s.external_id.is_none() {
        s.external_id = f.spec_external_id.map(str::to_string);
    }
    let since_submit = s.submit_time.and_then(|t| (f.now - t).to_std().ok());
    match known_id(s, f) {
        Some(_)
            if let Some(wait) = since_submit
                .and_then(|d| FIRST_POLL.checked_sub(d))
                .filter(|w| !w.is_zero()) =>
        {
            Next::Leave { requeue: Some(wait) }
        }
        Some(id) => Next::Get { id },
        None => Next::Create,
    }
}

/// The earliest first poll after a submit: [`poll_interval`]'s quickest.
const FIRST_POLL: Duration = Duration::from_secs(1);

/// The mark that goes to the API server before the backend hears of the request.
pub fn mark_pending(s: &mut ReportFileStatus, f: &Facts, type_: &str) -> Next {
    s.create_pending_since = Some(f.now);
    s.attempts = Some(s.attempts.unwrap_or(0).saturating_add(1));
    s.status = Some(FileState::InProgress);
    set_ready(s, f, false, "Pending", format!("asking {type_} for the report"));
    Next::MarkPendingThenSubmit
}

/// The backend's id, written before anything else can go wrong; with the condition that
/// [`answer`] gives a report in progress, so that a report still generating costs no second
/// status write in the same reconcile. `accepted`: when the backend's answer came, which the
/// polls count from (the reconcile's start would put each poll a little early, and a poll
/// just before a report of a whole number of seconds finishes costs a whole interval).
pub fn record_id(
    s: &mut ReportFileStatus,
    f: &Facts,
    type_: &str,
    id: &str,
    accepted: DateTime<Utc>,
) -> Next {
    // A backend's text, cut to what status holds (as are its file names and reasons).
    s.external_id = Some(cut_to(id.to_string(), MAX_ID_LENGTH));
    s.create_pending_since = None;
    s.submit_time.get_or_insert(accepted.max(f.now));
    s.status = Some(FileState::InProgress);
    set_ready(s, f, false, "InProgress", generating(type_));
    Next::Recorded
}

fn generating(type_: &str) -> String {
    format!("{type_} is generating the report")
}

/// The report's state on the backend.
pub fn answer(s: &mut ReportFileStatus, f: &Facts, type_: &str, state: &ReportState) -> Next {
    match state {
        ReportState::InProgress => {
            let first = s.status != Some(FileState::InProgress) || s.submit_time.is_none();
            s.status = Some(FileState::InProgress);
            s.submit_time.get_or_insert(f.now);
            set_ready(s, f, false, "InProgress", generating(type_));
            Next::Poll { first }
        }
        ReportState::Ready => Next::Download,
        ReportState::Failed { reason } => {
            let msg = format!("{type_} failed the report: {reason}");
            s.failed_reason = Some(cut_to(reason.clone(), MAX_MESSAGE_BYTES));
            fail(s, f, "Failed", msg)
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
) -> Next {
    match e.action() {
        ErrorAction::FailReport { reason } => {
            let message = format!("{type_} refused the report: {reason}");
            s.failed_reason = Some(cut_to(reason, MAX_MESSAGE_BYTES));
            fail(
                s,
                f,
                if matches!(e, BackendError::TooLarge { .. }) {
                    "TooLarge"
                } else {
                    "Failed"
                },
                message,
            )
        }
        ErrorAction::BackendNotReady { message, .. } => backend_not_ready(s, f, &message),
        ErrorAction::Retry { after } => {
            let after = after
                .unwrap_or(Duration::from_secs(5))
                .clamp(Duration::from_millis(500), MAX_REQUEUE);
            let (reason, queued) = match e {
                BackendError::InFlightLimit { .. } => ("Queued", true),
                BackendError::RateLimited { .. } => ("RateLimited", false),
                _ => ("BackendError", false),
            };
            let rate_limited = matches!(
                e,
                BackendError::RateLimited { .. } | BackendError::InFlightLimit { .. }
            );
            let message = format!(
                "{operation} on {type_}: {e}; retrying in {}s",
                after.as_secs_f64().ceil()
            );
            s.status = Some(FileState::InProgress);
            let cond_reason = if known_id(s, f).is_some() {
                "InProgress"
            } else {
                "Pending"
            };
            set_ready(s, f, false, cond_reason, message.clone());
            Next::Retry {
                after,
                event: (!queued).then_some((reason, message)),
                rate_limited,
            }
        }
    }
}

/// The report has failed for good.
pub fn fail(s: &mut ReportFileStatus, f: &Facts, reason: &'static str, message: String) -> Next {
    s.status = Some(FileState::Failed);
    s.completion_time = Some(f.now);
    s.create_pending_since = None;
    if s.failed_reason.is_none() {
        s.failed_reason = Some(reason.to_string());
    }
    set_ready(
        s,
        f,
        false,
        if reason == "DeadlineExceeded" || reason == "TooLarge" {
            reason
        } else {
            "Failed"
        },
        message.clone(),
    );
    Next::Fail { reason, message }
}

/// The report's Secret name is someone else's Secret. The report itself is fine
/// (IN_PROGRESS until the Secret is written; a READY one stays READY).
pub fn secret_conflict(s: &mut ReportFileStatus, f: &Facts, why: &str) -> Next {
    let message = conflict_message(f.name, why);
    let first = ready_reason(s) != Some(SECRET_CONFLICT);
    s.status.get_or_insert(FileState::InProgress);
    set_ready(s, f, false, SECRET_CONFLICT, message.clone());
    Next::SecretConflict { first, message }
}

/// The Secret holds the download: the report is READY.
pub fn completed(
    s: &mut ReportFileStatus,
    f: &Facts,
    generate_date: DateTime<Utc>,
    file_name: Option<String>,
    download: &Download,
) -> Next {
    s.status = Some(FileState::Ready);
    s.generate_date = Some(generate_date);
    s.file_name = file_name.map(|n| cut_to(n, MAX_FILE_NAME_LENGTH));
    s.completion_time = Some(f.now);
    s.download_secret_ref = Some(LocalObjectReference {
        name: f.name.to_string(),
    });
    s.url_expires_at = url_expiry(download);
    s.last_url_refresh = f.refresh.map(str::to_string);
    set_ready(
        s,
        f,
        true,
        "Ready",
        format!("the report is ready; Secret {:?} holds its download", f.name),
    );
    Next::Done {
        requeue: ready_requeue_after(s.url_expires_at, f.now),
    }
}

/// A READY report, with its Secret seen: keep the Secret in place, re-mint the URL on
/// request or shortly before it expires (while kept fresh), and say when it expired.
pub fn ready(s: &mut ReportFileStatus, f: &Facts, seen: &Observed) -> Next {
    if let Observed::Foreign { why } = seen {
        return secret_conflict(s, f, why);
    }
    let wants_refresh = f.refresh.is_some() && f.refresh != s.last_url_refresh.as_deref();
    let secret_missing = *seen == Observed::Missing;
    // A Secret that is ours again after a conflict may still hold someone else's data.
    let after_conflict = ready_reason(s) == Some(SECRET_CONFLICT);
    let renew = s.url_expires_at.is_some_and(|e| {
        let fresh_window = s
            .completion_time
            .is_some_and(|c| f.now.signed_duration_since(c) < f.keep_url_fresh);
        fresh_window && f.now < e && e.signed_duration_since(f.now) <= URL_RENEW_MARGIN
    });
    let why = if wants_refresh {
        "on the refresh-url annotation"
    } else if secret_missing {
        "because the Secret was missing"
    } else if after_conflict {
        "after the Secret conflict was resolved"
    } else if renew {
        "before the URL expired"
    } else {
        let requeue = ready_requeue_after(s.url_expires_at, f.now);
        let Some(expires) = s.url_expires_at.filter(|e| f.now >= *e) else {
            return if outcome_missing(s, f) {
                Next::Done { requeue }
            } else {
                Next::Leave { requeue }
            };
        };
        let message = format!(
            "the download URL expired at {}; set the annotation {ANNOTATION_REFRESH_URL} to a new value for a fresh one",
            expires.to_rfc3339()
        );
        set_ready(s, f, false, "UrlExpired", message);
        return Next::Done { requeue };
    };
    Next::RenewUrl { why }
}

/// The URL cannot be renewed while the backend is not Ready.
pub fn renewal_not_ready(s: &mut ReportFileStatus, f: &Facts, message: &str) -> Next {
    set_ready(
        s,
        f,
        false,
        "UrlExpired",
        format!("cannot re-mint the download URL: {message}"),
    );
    Next::Done {
        requeue: Some(BACKEND_WAIT),
    }
}

/// The Secret holds a fresh download.
pub fn renewed(s: &mut ReportFileStatus, f: &Facts, download: &Download) -> Next {
    s.url_expires_at = url_expiry(download);
    s.last_url_refresh = f.refresh.map(str::to_string);
    set_ready(
        s,
        f,
        true,
        "Ready",
        format!(
            "the report is ready; Secret {:?} holds a fresh download URL",
            f.name
        ),
    );
    Next::Done {
        requeue: ready_requeue_after(s.url_expires_at, f.now),
    }
}

/// The Secret holds a presigned URL of the report's copy in a ReportStore (made or re-minted
/// now, expiring at `expires`).
pub fn store_url_written(s: &mut ReportFileStatus, f: &Facts, location: &str, expires: DateTime<Utc>) {
    s.url_expires_at = Some(expires);
    s.last_url_refresh = f.refresh.map(str::to_string);
    let message = format!(
        "the report is ready; Secret {:?} holds a presigned URL of its copy {location}",
        f.name
    );
    set_ready(s, f, true, "Ready", message);
}

/// The generate date and file name the Secret and status carry: the backend's, else now and
/// the name the download gives.
pub fn delivered(
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

fn url_expiry(download: &Download) -> Option<DateTime<Utc>> {
    match download {
        Download::Url { expires_at, .. } => *expires_at,
        Download::Inline { .. } | Download::Streamed { .. } => None,
    }
}

/// When a READY report with a URL expiring at `expires` is looked at again: shortly before it
/// expires (to renew it) and just after; never later than [`MAX_REQUEUE`]. Dates come from
/// the backend, so nothing here may overflow.
fn ready_requeue_after(expires: Option<DateTime<Utc>>, now: DateTime<Utc>) -> Option<Duration> {
    let expires = expires.filter(|e| *e > now)?;
    let at = match expires.checked_sub_signed(URL_RENEW_MARGIN) {
        Some(renew_at) if renew_at > now => renew_at,
        _ => expires
            .checked_add_signed(TimeDelta::milliseconds(200))
            .unwrap_or(expires),
    };
    Some(
        at.signed_duration_since(now)
            .to_std()
            .unwrap_or(Duration::from_secs(1))
            .min(MAX_REQUEUE),
    )
}

/// Whether a report created at `created` has run past `deadline_secs` at `now`. The user
/// sets the deadline, up to `i64::MAX` seconds: one beyond the last representable date is
/// never reached.
pub fn deadline_passed(created: DateTime<Utc>, deadline_secs: i64, now: DateTime<Utc>) -> bool {
    TimeDelta::try_seconds(deadline_secs)
        .and_then(|d| created.checked_add_signed(d))
        .is_some_and(|end| now > end)
}

/// Poll interval for a report running for `elapsed`, when a round of polls of all running
/// reports costs `polls_per_round` requests of a budget of `requests` per `window`: 1 s at
/// first, backing off to 30 s, and spread so that polling uses at most 80% of the budget (the
/// rest is for creates and downloads).
pub fn poll_interval(elapsed: Duration, polls_per_round: usize, budget: Option<(u32, Duration)>) -> Duration {
    let base = match elapsed.as_secs() {
        0..10 => FIRST_POLL,
        10..60 => Duration::from_secs(3),
        60..300 => Duration::from_secs(10),
        _ => Duration::from_secs(30),
    };
    let budget_floor = match budget {
        Some((requests, window)) if requests > 0 => {
            let secs = window.as_secs_f64() * 1.25 * polls_per_round.max(1) as f64 / f64::from(requests);
            Duration::try_from_secs_f64(secs).unwrap_or(Duration::MAX)
        }
        _ => Duration::ZERO,
    };
    base.max(budget_floor).min(Duration::from_secs(600))
}

/// The shortest stretch a poll schedule plans its spending for: a report just submitted is
/// expected to take about this long, one that has run longer about as long again.
const SPEND_HORIZON: Duration = Duration::from_secs(10);

/// [`poll_interval`] when the budget's `spare` requests are known: polls may spend the spare
/// budget (with the same margin) over the time the reports are expected to run yet, which is
/// about as long as they have run so far, at least [`SPEND_HORIZON`]. A fan-out of reports
/// that finish in seconds is polled every second instead of at the steady-state rate that a
/// full window of polling would need; as reports run longer, or the budget runs low, the
/// interval grows back to [`poll_interval`]'s, never beyond it.
pub fn poll_interval_spending(
    elapsed: Duration,
    polls_per_round: usize,
    budget: Option<(u32, Duration)>,
    spare: u32,
) -> Duration {
    let steady = poll_interval(elapsed, polls_per_round, budget);
    let Some((_, window)) = budget else { return steady };
    if spare == 0 {
        return steady;
    }
    let horizon = elapsed.min(window).max(SPEND_HORIZON);
    let secs = horizon.as_secs_f64() * 1.25 * polls_per_round.max(1) as f64 / f64::from(spare);
    let spending = Duration::try_from_secs_f64(secs).unwrap_or(Duration::MAX);
    poll_interval(elapsed, polls_per_round, None)
        .max(spending)
        .min(steady)
}

#[cfg(test)]
#[path = "decide_tests.rs"]
mod tests;
