//! A report made READY ([`completed`]) and its download kept in place, pure: the copy into
//! its ReportStore as states of
//! the report (READY → copying → delivered, [`copy_state`]), and the one URL renewal policy
//! ([`renewal`]), which serves the backend's URLs ([`backend_url`]) and the copy's presigned
//! ones ([`presigned_url`]) alike. Every situation is a row of the tables in
//! `decide_tests.rs`.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};

use super::decide::{
    COPY_SOON, End, Facts, MAX_REQUEUE, News, left_as_is, ready_says, set_ready, url_expiry,
};
pub use super::end::{RenewWhy, Source};
use super::secret::Observed;
use crate::api::reasons::{Delivered as DeliveredReason, FileReady};
use crate::api::{
    ANNOTATION_REFRESH_URL, CONDITION_DELIVERED, ConnectArchive, Delivery, FileState, LocalObjectReference,
    ReportFileStatus, find_condition,
};
use crate::backend::Download;
use crate::controller::bucket::Copied;
use crate::controller::conditions::{Cond, cut_to, set_condition};
use crate::controller::fair_share::Limits;
use crate::controller::outcome::BACKEND_WAIT;

/// How long before a backend's URL expires it is re-minted (while kept fresh).
const BACKEND_MARGIN: TimeDelta = TimeDelta::seconds(10);
/// A presigned URL is re-minted when less than this part of its lifetime is left, and at
/// most [`PRESIGNED_MAX_MARGIN`] before it expires.
const PRESIGNED_FRACTION: u32 = 4;
const PRESIGNED_MAX_MARGIN: Duration = Duration::from_secs(3600);
/// First retry of a failed copy; doubled per failure up to [`COPY_RETRY_MAX`].
pub const COPY_RETRY_FIRST: Duration = Duration::from_secs(5);
const COPY_RETRY_MAX: Duration = Duration::from_secs(300);

/// How a URL is kept fresh without being asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeptFresh {
    /// Re-minted in the `margin` before it expires, until this time (a backend's URL: each
    /// costs a call, so only while the report is young); once expired it is told, not
    /// re-minted unasked.
    BeforeExpiryUntil(DateTime<Utc>),
    /// Re-minted in the `margin` before it expires, or once expired (a presigned URL costs
    /// nothing to sign).
    Always,
}

/// What the policy says of a URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Renewal {
    Now(RenewWhy),
    /// Keep it; look again after this long (shortly before it expires, or just after).
    Later(Option<Duration>),
    /// It expired at this time and is not re-minted unasked.
    Expired(DateTime<Utc>),
}

/// The one URL renewal policy: a URL expiring at `expires` is written again on request, when
/// the Secret must be written again (missing, or ours again after a conflict), and in the
/// `margin` before it expires while `kept` fresh.
pub fn renewal(
    s: &ReportFileStatus,
    f: &Facts,
    seen: &Observed,
    expires: Option<DateTime<Utc>>,
    margin: TimeDelta,
    kept: KeptFresh,
) -> Renewal {
    if f.refresh.is_some() && f.refresh != s.last_url_refresh.as_deref() {
        return Renewal::Now(RenewWhy::Asked);
    }
    if *seen == Observed::Missing {
        return Renewal::Now(RenewWhy::SecretMissing);
    }
    if ready_says(s, FileReady::SecretConflict) {
        return Renewal::Now(RenewWhy::AfterConflict);
    }
    let Some(expires) = expires else {
        // A file in the Secret never expires; a presigned URL of unknown age is signed again.
        return match kept {
            KeptFresh::Always => Renewal::Now(RenewWhy::Expiring),
            KeptFresh::BeforeExpiryUntil(_) => Renewal::Later(None),
        };
    };
    let renew_at = expires.checked_sub_signed(margin).unwrap_or(expires);
    match kept {
        KeptFresh::Always if f.now >= renew_at => Renewal::Now(RenewWhy::Expiring),
        KeptFresh::BeforeExpiryUntil(until) if f.now < until && f.now >= renew_at && f.now < expires => {
            Renewal::Now(RenewWhy::Expiring)
        }
        KeptFresh::BeforeExpiryUntil(_) if f.now >= expires => Renewal::Expired(expires),
        _ => Renewal::Later(requeue(expires, margin, f.now)),
    }
}

/// When a URL expiring at `expires` is looked at again: at the start of its `margin` (to
/// renew it) and just after it expires (to say so); never later than [`MAX_REQUEUE`]. Dates
/// come from the backend, so nothing here may overflow.
fn requeue(expires: DateTime<Utc>, margin: TimeDelta, now: DateTime<Utc>) -> Option<Duration> {
    if expires <= now {
        return None;
    }
    let at = match expires.checked_sub_signed(margin) {
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

/// [`requeue`] for a backend's URL.
pub fn backend_requeue(expires: Option<DateTime<Utc>>, now: DateTime<Utc>) -> Option<Duration> {
    requeue(expires?, BACKEND_MARGIN, now)
}

/// The Secret holds the download: the report is READY. With a store, the copy follows soon.
pub fn completed(
    s: &mut ReportFileStatus,
    f: &Facts,
    generate_date: DateTime<Utc>,
    file_name: Option<String>,
    download: &Download,
) -> End {
    s.status = Some(FileState::Ready);
    s.generate_date = Some(generate_date);
    s.file_name = file_name.map(|n| cut_to(n, crate::api::MAX_FILE_NAME_LENGTH));
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
        FileReady::Ready,
        format!("the report is ready; Secret {:?} holds its download", f.name),
    );
    let requeue = match f.store {
        Some(_) => Some(COPY_SOON),
        None => backend_requeue(s.url_expires_at, f.now),
    };
    End::Completed {
        requeue,
        message: format!("the report is ready in Secret {:?}", f.name),
    }
}

/// Where a READY report's copy is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CopyState {
    /// No `storeRef`: the Secret holds the backend's download for good.
    NoStore,
    /// Not copied yet: the copy is tried (with backoff), and the Secret keeps the backend's
    /// download meanwhile.
    Copying,
    /// Copied: the Secret holds the copy's presigned URL, never the backend's again.
    Delivered,
}

/// Whether the report's copy was made (a copy without checksum is no copy).
pub fn is_delivered(delivery: Option<&Delivery>) -> bool {
    delivery.is_some_and(|d| d.sha256.is_some() && d.delivered_time.is_some())
}

/// The copy state of a READY report.
pub fn copy_state(s: &ReportFileStatus, f: &Facts) -> CopyState {
    match f.store {
        None => CopyState::NoStore,
        Some(_) if is_delivered(s.delivery.as_ref()) => CopyState::Delivered,
        Some(_) => CopyState::Copying,
    }
}

/// A READY report's backend download, its Secret seen (ours or missing): renewed `why`, or
/// kept; one that expired and is no longer kept fresh says so (`UrlExpired`).
pub fn backend_url(s: &mut ReportFileStatus, f: &Facts, seen: &Observed) -> Result<RenewWhy, End> {
    let fresh_until = s
        .completion_time
        .and_then(|c| c.checked_add_signed(f.keep_url_fresh))
        .unwrap_or(f.now);
    let kept = KeptFresh::BeforeExpiryUntil(fresh_until);
    match renewal(s, f, seen, s.url_expires_at, BACKEND_MARGIN, kept) {
        Renewal::Now(why) => Ok(why),
        Renewal::Later(requeue) => Err(left_as_is(s, f, requeue)),
        Renewal::Expired(at) => {
            let message = format!(
                "the download URL expired at {}; set the annotation {ANNOTATION_REFRESH_URL} to a new value for a fresh one",
                at.to_rfc3339()
            );
            set_ready(s, f, false, FileReady::UrlExpired, message);
            Err(End::Done { requeue: None })
        }
    }
}

/// The URL cannot be renewed while the backend is not Ready.
pub fn renewal_not_ready(s: &mut ReportFileStatus, f: &Facts, message: &str) -> End {
    set_ready(
        s,
        f,
        false,
        FileReady::UrlExpired,
        format!("cannot re-mint the download URL: {message}"),
    );
    End::Done {
        requeue: Some(BACKEND_WAIT),
    }
}

/// The Secret holds a fresh download from the backend.
pub fn renewed(s: &mut ReportFileStatus, f: &Facts, download: &Download, why: RenewWhy) -> End {
    url_written(s, f, url_expiry(download), "a fresh download URL");
    End::Renewed {
        source: Source::Backend,
        why,
        requeue: backend_requeue(s.url_expires_at, f.now),
    }
}

/// The margin of a presigned URL that works for `lifetime`.
fn presigned_margin(lifetime: Duration) -> TimeDelta {
    TimeDelta::from_std((lifetime / PRESIGNED_FRACTION).min(PRESIGNED_MAX_MARGIN)).unwrap_or_default()
}

/// A delivered report's presigned URL (the store signs for `lifetime`), its Secret seen
/// (ours or missing): re-minted `why`, or kept.
pub fn presigned_url(
    s: &mut ReportFileStatus,
    f: &Facts,
    seen: &Observed,
    lifetime: Duration,
) -> Result<RenewWhy, End> {
    let expires = s.delivery.as_ref().and_then(|d| d.url_expires_at);
    match renewal(s, f, seen, expires, presigned_margin(lifetime), KeptFresh::Always) {
        Renewal::Now(why) => Ok(why),
        Renewal::Later(requeue) => Err(left_as_is(s, f, requeue)),
        // Not under `Always`: an expired presigned URL is re-minted.
        Renewal::Expired(_) => Ok(RenewWhy::Expiring),
    }
}

/// The wait before the next try of a copy that failed, if it is not due yet: 5 s after the
/// first failure, doubling to 5 minutes (by `attempts` and `lastFailureTime`, so that
/// neither the failure's own status write nor any other wake brings it sooner).
pub fn copy_backoff(s: &ReportFileStatus, f: &Facts) -> Option<Duration> {
    let d = s.delivery.as_ref()?;
    let failed = d.last_failure_time?;
    let retry = retry_after(d.attempts.unwrap_or(1));
    let due = failed.checked_add_signed(TimeDelta::from_std(retry).ok()?)?;
    // A failure time in the future (a clock that jumped, a hand-edited status) waits no
    // longer than the backoff itself.
    (due > f.now).then(|| (due - f.now).to_std().unwrap_or_default().min(retry))
}

/// Whether `Delivered` tells of a failed copy (retried with backoff).
fn copy_has_failed(s: &ReportFileStatus) -> bool {
    find_condition(&s.conditions, CONDITION_DELIVERED).is_some_and(|c| {
        c.status == "False"
            && !matches!(
                DeliveredReason::parse(&c.reason),
                Some(DeliveredReason::Copying | DeliveredReason::Queued)
            )
    })
}

/// `Delivered` False with `reason`, unless it tells of a failure: that stays until the copy
/// is made (or fails otherwise), so that a failure is told once however often it is retried.
fn copy_in_progress(s: &mut ReportFileStatus, f: &Facts, reason: DeliveredReason, message: String) {
    if copy_has_failed(s) {
        return;
    }
    set_condition(
        &mut s.conditions,
        Cond::new(CONDITION_DELIVERED, false, reason, message),
        f.generation,
        f.now,
    );
}

/// The copy into `location` runs in the delivery pool.
pub fn copy_started(s: &mut ReportFileStatus, f: &Facts, location: &str) {
    let message =
        format!("copying the report into {location}; the Secret keeps the backend's download meanwhile");
    copy_in_progress(s, f, DeliveredReason::Copying, message);
}

/// The copy waits for a slot in the delivery pool (`limits`).
pub fn copy_waits(s: &mut ReportFileStatus, f: &Facts, limits: Limits) {
    let message = format!(
        "waiting for a slot in the delivery pool: at most {} copies of a namespace run at once, {} in all; the Secret keeps the backend's download meanwhile",
        limits.per_namespace, limits.total
    );
    copy_in_progress(s, f, DeliveredReason::Queued, message);
}

/// The copy is in the store: what it wrote is recorded (of a CONNECT report, also whether
/// its ZIP was unpacked), before its URL is written into the Secret.
pub fn copied(s: &mut ReportFileStatus, f: &Facts, copied: &Copied, connect: bool) {
    let archive = connect.then_some(if copied.unpacked {
        ConnectArchive::Extract
    } else {
        ConnectArchive::Store
    });
    let delivery = s.delivery.get_or_insert_with(Delivery::default);
    delivery.location = Some(copied.location.clone());
    delivery.objects = copied.locations.clone();
    delivery.connect_archive = archive;
    delivery.size = Some(i64::try_from(copied.uploaded.size).unwrap_or(i64::MAX));
    delivery.sha256 = Some(copied.uploaded.sha256.clone());
    delivery.delivered_time = Some(f.now);
    delivery.attempts = Some(delivery.attempts.unwrap_or(0).saturating_add(1));
    delivery.last_failure_time = None;
}

/// The Secret holds a presigned URL of the copy at `location`, made now and expiring at
/// `expires` (the store signs for `lifetime`).
fn presigned_written(
    s: &mut ReportFileStatus,
    f: &Facts,
    location: &str,
    expires: DateTime<Utc>,
    lifetime: Duration,
) -> Option<Duration> {
    if let Some(d) = s.delivery.as_mut() {
        d.url_expires_at = Some(expires);
    }
    url_written(
        s,
        f,
        Some(expires),
        &format!("a presigned URL of its copy {location}"),
    );
    requeue(expires, presigned_margin(lifetime), f.now)
}

/// The Secret holds a URL written now (`holds` says which), expiring at `expires`; a
/// refresh asked for is served.
fn url_written(s: &mut ReportFileStatus, f: &Facts, expires: Option<DateTime<Utc>>, holds: &str) {
    s.url_expires_at = expires;
    s.last_url_refresh = f.refresh.map(str::to_string);
    let message = format!("the report is ready; Secret {:?} holds {holds}", f.name);
    set_ready(s, f, true, FileReady::Ready, message);
}

/// The copy is made and the Secret holds its presigned URL: delivered.
pub fn delivered(
    s: &mut ReportFileStatus,
    f: &Facts,
    location: &str,
    expires: DateTime<Utc>,
    lifetime: Duration,
) -> End {
    let requeue =
        presigned_written(s, f, location, expires, lifetime).unwrap_or(lifetime / PRESIGNED_FRACTION);
    let d = s.delivery.clone().unwrap_or_default();
    let message = format!(
        "copied {} bytes (sha256 {}) to {location}",
        d.size.unwrap_or_default(),
        d.sha256.unwrap_or_default()
    );
    set_condition(
        &mut s.conditions,
        Cond::new(
            CONDITION_DELIVERED,
            true,
            DeliveredReason::Delivered,
            message.clone(),
        ),
        f.generation,
        f.now,
    );
    End::Delivered { requeue, message }
}

/// The copy's presigned URL was signed again and written `why`.
pub fn reminted(
    s: &mut ReportFileStatus,
    f: &Facts,
    location: &str,
    expires: DateTime<Utc>,
    lifetime: Duration,
    why: RenewWhy,
) -> End {
    let requeue =
        presigned_written(s, f, location, expires, lifetime).or(Some(lifetime / PRESIGNED_FRACTION));
    End::Renewed {
        source: Source::Store,
        why,
        requeue,
    }
}

/// A failed copy (or re-mint), with the wait before the next try and whether it is news.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyFailed {
    pub retry: Duration,
    /// The first failure with this reason is told in a Warning Event.
    pub news: News,
    pub message: String,
}

/// The copy (or re-mint) failed with `reason`, as `error` says: `Delivered` False, retried
/// with backoff.
pub fn copy_failed(s: &mut ReportFileStatus, f: &Facts, reason: DeliveredReason, error: &str) -> CopyFailed {
    let told = find_condition(&s.conditions, CONDITION_DELIVERED)
        .is_some_and(|c| c.status == "False" && c.reason == reason.as_str());
    let delivery = s.delivery.get_or_insert_with(Delivery::default);
    let failures = delivery.attempts.unwrap_or(0).saturating_add(1);
    delivery.attempts = Some(failures);
    delivery.last_failure_time = Some(f.now);
    let message = format!("{error}; retried with backoff, the Secret keeps the backend's download meanwhile");
    set_condition(
        &mut s.conditions,
        Cond::new(CONDITION_DELIVERED, false, reason, message.clone()),
        f.generation,
        f.now,
    );
    CopyFailed {
        retry: retry_after(failures),
        news: if told { News::Again } else { News::First },
        message,
    }
}

/// The wait before the next copy after `failures` failures in a row.
pub fn retry_after(failures: i32) -> Duration {
    let doublings = u32::try_from(failures.saturating_sub(1)).unwrap_or(0).min(16);
    COPY_RETRY_FIRST
        .saturating_mul(1 << doublings)
        .min(COPY_RETRY_MAX)
}
