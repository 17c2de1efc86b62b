//! Table tests of the ReportFile state machine: one row per situation, no cluster.

use super::super::renewal::Source;
use super::super::renewal::{
    CopyState, RenewWhy, backend_requeue, backend_url, completed, copied, copy_backoff, copy_failed,
    copy_started, copy_state, copy_waits, delivered, presigned_url, reminted, renewal_not_ready, renewed,
    retry_after,
};
use super::*;
use crate::api::reasons::Delivered as DeliveredReason;
use crate::api::{CONDITION_DELIVERED, ConnectArchive, Delivery};
use crate::controller::bucket::Copied;
use crate::controller::fair_share::Limits;
use kube::runtime::events::EventType;

fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).expect("time").with_timezone(&Utc)
}

const NOW: &str = "2026-01-01T01:00:00Z";

fn facts() -> Facts<'static> {
    Facts {
        name: "nw-finance-20181008",
        generation: Some(1),
        created: Some(t("2026-01-01T00:00:00Z")),
        active_deadline_seconds: None,
        spec_external_id: None,
        refresh: None,
        keep_url_fresh: TimeDelta::seconds(crate::api::DEFAULT_KEEP_URL_FRESH_SECONDS),
        store: None,
        poll_grid: false,
        now: t(NOW),
    }
}

/// A status in `state` whose Ready condition has `reason`, with the outcome conditions the
/// operator writes with it.
fn status(state: Option<FileState>, reason: Option<&str>) -> ReportFileStatus {
    let mut s = ReportFileStatus {
        status: state,
        ..Default::default()
    };
    if let Some(reason) = reason {
        let f = Facts {
            now: t("2026-01-01T00:00:00Z"),
            ..facts()
        };
        set_ready(
            &mut s,
            &f,
            reason == "Ready",
            FileReady::parse(reason).expect("a Ready reason"),
            "before".into(),
        );
    }
    s
}

/// The same status as the operator wrote it before it set `Complete` and `Failed`.
fn without_outcome(mut s: ReportFileStatus) -> ReportFileStatus {
    s.conditions.retain(|c| c.type_ == CONDITION_READY);
    s
}

/// The outcome conditions in a few words: "" none, "-" neither yet, "Complete", or
/// "Failed <reason>"; both must agree.
fn outcome_of(s: &ReportFileStatus) -> String {
    let (Some(complete), Some(failed)) = (
        find_condition(&s.conditions, CONDITION_COMPLETE),
        find_condition(&s.conditions, CONDITION_FAILED),
    ) else {
        assert!(
            find_condition(&s.conditions, CONDITION_FAILED).is_none(),
            "Failed without Complete"
        );
        return String::new();
    };
    assert_eq!(
        complete.reason, failed.reason,
        "Complete and Failed give one reason"
    );
    match (complete.status.as_str(), failed.status.as_str()) {
        ("False", "False") => "-".into(),
        ("True", "False") => "Complete".into(),
        ("False", "True") => format!("Failed {}", failed.reason),
        other => panic!("Complete and Failed both {other:?}"),
    }
}

fn url(expires: &str) -> Download {
    Download::Url {
        url: "https://s/f.json?sig=abc".into(),
        expires_at: Some(t(expires)),
    }
}

fn ours() -> Observed {
    Observed::Ours {
        resource_version: Some("7".into()),
    }
}

fn foreign() -> Observed {
    Observed::Foreign {
        why: "it has no controlling owner".into(),
    }
}

fn remote(id: &str) -> RemoteReport {
    RemoteReport::new(id, ReportState::InProgress)
}

/// The decision point a row asks.
enum At {
    Start,
    SecretBeforeAsking(Observed),
    BackendNotReady,
    WithBackend,
    MarkPending,
    Record(&'static str),
    Answer(ReportState),
    Error(BackendError),
    SecretBeforeWriting(Observed),
    Completed(Download),
    /// A READY report, its Secret seen: [`secret_seen`], then its copy state's policy.
    Ready(Observed),
    RenewalNotReady,
    Renewed(Download),
    /// The copy failed with this reason.
    CopyFailed(DeliveredReason),
    /// The copy is made and its presigned URL (good for an hour) written.
    Delivered,
    /// The copy's presigned URL (good for an hour) signed again on request.
    Reminted,
}

/// What the store signs for in these rows.
const LIFETIME: Duration = Duration::from_secs(3600);

/// The step a decision point gives, in a few words: an [`End`] (see [`short`]), or the
/// step that goes on.
fn ask(s: &mut ReportFileStatus, f: &Facts, at: At) -> (String, Option<End>) {
    let go_on = |step: &str| (step.to_string(), None);
    let end = |e: End| (short(&e), Some(e));
    let either = |r: Result<String, End>| match r {
        Ok(step) => go_on(&step),
        Err(e) => end(e),
    };
    match at {
        At::Start => either(start(s, f).map(|b| format!("{b:?}"))),
        At::SecretBeforeAsking(seen) => either(secret_seen(s, f, &seen).map(|()| "AskBackend".into())),
        At::BackendNotReady => end(backend_not_ready(s, f, "ReportBackend \"commerce\" is not Ready")),
        At::WithBackend => either(with_backend(s, f).map(|a| match a {
            Ask::Get(id) => format!("Get {id}"),
            Ask::Create => "Create".into(),
        })),
        At::MarkPending => {
            mark_pending(s, f, "COMMERCE");
            go_on("Submit")
        }
        At::Record(id) => {
            record_id(s, f, "COMMERCE", id, f.now);
            go_on("Answer")
        }
        At::Answer(state) => either(answer(s, f, "COMMERCE", &state, POLL).map(|()| "Download".into())),
        At::Error(e) => end(backend_error(s, f, "COMMERCE", "get", &e)),
        At::SecretBeforeWriting(seen) => either(secret_seen(s, f, &seen).map(|()| "Download".into())),
        At::Completed(download) => end(completed(
            s,
            f,
            t("2026-01-01T00:30:00Z"),
            Some("f.json".into()),
            &download,
        )),
        At::Ready(seen) => {
            if let Err(e) = secret_seen(s, f, &seen) {
                return end(e);
            }
            let why = match copy_state(s, f) {
                CopyState::NoStore => backend_url(s, f, &seen),
                CopyState::Copying => return go_on("Copy"),
                CopyState::Delivered => presigned_url(s, f, &seen, LIFETIME),
            };
            either(why.map(|why| format!("Renew {why}")))
        }
        At::RenewalNotReady => end(renewal_not_ready(s, f, "ReportBackend \"commerce\" is not Ready")),
        At::Renewed(download) => end(renewed(s, f, &download, RenewWhy::Asked)),
        At::CopyFailed(reason) => {
            let failed = copy_failed(s, f, reason, "the store did not answer");
            go_on(&format!("Retry {}ms {:?}", failed.retry.as_millis(), failed.news))
        }
        At::Delivered => {
            copied(s, f, &copy_into("s3://b/k"), false);
            end(delivered(
                s,
                f,
                "s3://b/k",
                f.now + chrono::Duration::hours(1),
                LIFETIME,
            ))
        }
        At::Reminted => end(reminted(
            s,
            f,
            "s3://b/k",
            f.now + chrono::Duration::hours(1),
            LIFETIME,
            RenewWhy::Asked,
        )),
    }
}

/// What a copy into `location` (one object of 3 bytes) wrote.
fn copy_into(location: &str) -> Copied {
    Copied {
        key: location.rsplit_once("s3://b/").map_or("k", |(_, k)| k).into(),
        location: location.into(),
        locations: vec![location.into()],
        unpacked: false,
        uploaded: crate::delivery::Uploaded {
            size: 3,
            sha256: "ab".into(),
        },
        total: 3,
    }
}

/// The poll interval the rows pass to [`answer`].
const POLL: Duration = Duration::from_secs(1);

/// An [`End`] in a few words, so that a row fits on a line; messages are checked separately.
fn short(e: &End) -> String {
    let secs = |d: &Option<Duration>| d.map_or("change".to_string(), |d| format!("{}ms", d.as_millis()));
    match e {
        End::Leave { requeue } => format!("Leave {}", secs(requeue)),
        End::Done { requeue } => format!("Done {}", secs(requeue)),
        End::Fail { reason, .. } => format!("Fail {}", reason.ready()),
        End::Retry { after, wait, .. } => format!("Retry {}ms {wait:?}", after.as_millis()),
        End::SecretConflict { news, .. } => format!("SecretConflict {news:?}"),
        End::Completed { requeue, .. } => format!("Completed {}", secs(requeue)),
        End::Renewed { source, why, requeue } => format!("Renewed {source:?} {why} {}", secs(requeue)),
        End::Delivered { requeue, .. } => format!("Delivered {}ms", requeue.as_millis()),
    }
}

type Setup = fn(&mut ReportFileStatus, &mut Facts<'static>);

/// (situation, status before, facts, decision point, next, state after, Ready reason after,
/// outcome conditions after (see [`outcome_of`]), in the Ready message)
type Row = (
    &'static str,
    ReportFileStatus,
    Setup,
    At,
    &'static str,
    Option<FileState>,
    &'static str,
    &'static str,
    &'static str,
);

fn nothing(_: &mut ReportFileStatus, _: &mut Facts<'static>) {}

#[test]
fn every_situation_of_a_report_file_has_one_next_step() {
    use FileState::{Failed, InProgress, Ready};
    let in_progress = || status(Some(InProgress), Some("InProgress"));
    let ready_url = |expires: &str| {
        let mut s = status(Some(Ready), Some("Ready"));
        s.url_expires_at = Some(t(expires));
        s.completion_time = Some(t("2026-01-01T00:59:00Z"));
        s.external_id = Some("r-1".into());
        s
    };
    fn with_store(_: &mut ReportFileStatus, f: &mut Facts<'static>) {
        f.store = Some("bucket");
    }
    // A copy tried once, without a failure recorded (the operator stopped before its end).
    let tried = || {
        let mut s = ready_url("2026-01-01T02:00:00Z");
        s.delivery = Some(Delivery {
            attempts: Some(1),
            ..Default::default()
        });
        s
    };
    // A failure of the copy, told already (Delivered False, Unreachable).
    let told = |mut s: ReportFileStatus| {
        copy_failed(&mut s, &facts(), DeliveredReason::Unreachable, "down");
        s
    };
    // Copied, its presigned URL expiring at `expires`.
    let delivered = |expires: Option<&str>| {
        let mut s = ready_url("2026-01-01T02:00:00Z");
        s.delivery = Some(Delivery {
            location: Some("s3://b/k".into()),
            size: Some(3),
            sha256: Some("ab".into()),
            delivered_time: Some(t("2026-01-01T00:59:30Z")),
            attempts: Some(1),
            url_expires_at: expires.map(t),
            ..Default::default()
        });
        s
    };
    #[rustfmt::skip]
    let rows: Vec<Row> = vec![
        ("a new report asks for a backend", status(None, None), nothing, At::Start, "AskBackend", None, "", "", ""),
        ("a failed report is left alone", status(Some(Failed), Some("Failed")), nothing, At::Start, "Leave change", Some(Failed), "Failed", "Failed Failed", "before"),
        ("a ready report looks at its Secret", status(Some(Ready), Some("Ready")), nothing, At::Start, "Ready", Some(Ready), "Ready", "Complete", "before"),
        ("deadline: default 6 h passed", in_progress(), |_, f| f.now = t("2026-01-01T06:00:01Z"), At::Start,
            "Fail DeadlineExceeded", Some(Failed), "DeadlineExceeded", "Failed DeadlineExceeded", "activeDeadlineSeconds (21600 s)"),
        ("deadline: not yet", in_progress(), |_, f| f.active_deadline_seconds = Some(3601), At::Start, "AskBackend", Some(InProgress), "InProgress", "-", ""),
        ("deadline: i64::MAX is never reached", in_progress(), |_, f| { f.active_deadline_seconds = Some(i64::MAX); f.now = t("9999-12-31T23:59:59Z") },
            At::Start, "AskBackend", Some(InProgress), "InProgress", "-", ""),
        ("deadline: i64::MIN is no date", in_progress(), |_, f| f.active_deadline_seconds = Some(i64::MIN), At::Start, "AskBackend", Some(InProgress), "InProgress", "-", ""),
        ("deadline: zero has passed", in_progress(), |_, f| f.active_deadline_seconds = Some(0), At::Start,
            "Fail DeadlineExceeded", Some(Failed), "DeadlineExceeded", "Failed DeadlineExceeded", "(0 s)"),
        ("deadline: no creation time yet", in_progress(), |_, f| { f.created = None; f.active_deadline_seconds = Some(0) }, At::Start, "AskBackend", Some(InProgress), "InProgress", "-", ""),
        ("after a conflict the Secret is looked at first", status(Some(InProgress), Some("SecretConflict")), nothing, At::Start, "SecretFirst", Some(InProgress), "SecretConflict", "-", ""),
        ("the conflict is still there", status(Some(InProgress), Some("SecretConflict")), nothing, At::SecretBeforeAsking(foreign()),
            "SecretConflict Again", Some(InProgress), "SecretConflict", "-", "Delete or rename"),
        ("the conflict is gone", status(Some(InProgress), Some("SecretConflict")), nothing, At::SecretBeforeAsking(Observed::Missing), "AskBackend", Some(InProgress), "SecretConflict", "-", ""),
        ("backend not Ready: Pending", status(None, None), nothing, At::BackendNotReady, "Done 30000ms", Some(InProgress), "Pending", "-", "waiting for the backend: ReportBackend"),
        ("known id: get", in_progress(), |s, _| s.external_id = Some("r-1".into()), At::WithBackend, "Get r-1", Some(InProgress), "InProgress", "-", ""),
        ("just submitted: not polled before a second has passed", in_progress(), |s, f| { s.external_id = Some("r-1".into()); s.submit_time = Some(f.now - chrono::Duration::milliseconds(300)) },
            At::WithBackend, "Leave 700ms", Some(InProgress), "InProgress", "-", ""),
        ("submitted a second ago: get", in_progress(), |s, f| { s.external_id = Some("r-1".into()); s.submit_time = Some(f.now - chrono::Duration::seconds(1)) },
            At::WithBackend, "Get r-1", Some(InProgress), "InProgress", "-", ""),
        ("a submit time in the future (a skewed clock): get", in_progress(), |s, f| { s.external_id = Some("r-1".into()); s.submit_time = Some(f.now + chrono::Duration::seconds(5)) },
            At::WithBackend, "Get r-1", Some(InProgress), "InProgress", "-", ""),
        ("id in the spec: get, and status says it", status(None, None), |_, f| f.spec_external_id = Some("rde-9"), At::WithBackend, "Get rde-9", None, "", "", ""),
        ("mark without id: find first", status(Some(InProgress), Some("Pending")), |s, _| s.create_pending_since = Some(t("2026-01-01T00:10:00Z")),
            At::WithBackend, "Create", Some(InProgress), "Pending", "-", "before"),
        ("no id: create once", status(None, None), nothing, At::WithBackend, "Create", None, "", "", ""),
        ("no mark: mark pending, then submit", status(None, None), nothing, At::MarkPending, "Submit", Some(InProgress), "Pending", "-", "asking COMMERCE for the report"),
        ("find: adopted, id recorded at once", status(Some(InProgress), Some("Pending")), |s, _| s.create_pending_since = Some(t("2026-01-01T00:10:00Z")),
            At::Record("r-2"), "Answer", Some(InProgress), "InProgress", "-", "COMMERCE is generating the report"),
        ("find: none, submit again", status(Some(InProgress), Some("Pending")), |s, _| s.create_pending_since = Some(t("2026-01-01T00:10:00Z")),
            At::MarkPending, "Submit", Some(InProgress), "Pending", "-", "asking COMMERCE"),
        ("in progress, first seen", status(None, None), nothing, At::Answer(ReportState::InProgress), "Done 1000ms", Some(InProgress), "InProgress", "-", "COMMERCE is generating the report"),
        ("in progress, again", in_progress(), |s, _| s.submit_time = Some(t("2026-01-01T00:10:00Z")), At::Answer(ReportState::InProgress),
            "Done 1000ms", Some(InProgress), "InProgress", "-", "COMMERCE is generating"),
        ("ready on the backend: download", in_progress(), nothing, At::Answer(ReportState::Ready), "Download", Some(InProgress), "InProgress", "-", ""),
        ("failed on the backend", in_progress(), nothing, At::Answer(ReportState::Failed { reason: "NO_DATA".into() }),
            "Fail Failed", Some(Failed), "Failed", "Failed Failed", "COMMERCE failed the report: NO_DATA"),
        ("queued behind the in-flight cap: no Event", in_progress(), nothing,
            At::Error(BackendError::InFlightLimit { organization: "o".into(), max: 2, retry_after: Duration::from_secs(20) }),
            "Retry 20000ms Queued", Some(InProgress), "Pending", "-", "2 reports already in progress"),
        ("rate limited: Retry-After kept", in_progress(), |s, _| s.external_id = Some("r-1".into()),
            At::Error(BackendError::RateLimited { retry_after: Some(Duration::from_secs(7)) }),
            "Retry 7000ms RateLimited", Some(InProgress), "InProgress", "-", "get on COMMERCE: rate limited, retry after 7s; retrying in 7s"),
        ("rate limited: a year of Retry-After is clamped to a day", in_progress(), nothing,
            At::Error(BackendError::RateLimited { retry_after: Some(Duration::from_secs(365 * 86400)) }),
            "Retry 86400000ms RateLimited", Some(InProgress), "Pending", "-", "retrying in 86400s"),
        ("backend error: default 5 s", in_progress(), nothing, At::Error(BackendError::Transient { message: "HTTP 503".into(), retry_after: None }),
            "Retry 5000ms BackendError", Some(InProgress), "Pending", "-", "transient backend error: HTTP 503"),
        ("backend error: Retry-After 0 is clamped to 0.5 s", in_progress(), nothing,
            At::Error(BackendError::Transient { message: "HTTP 503".into(), retry_after: Some(Duration::ZERO) }),
            "Retry 500ms BackendError", Some(InProgress), "Pending", "-", "retrying in 1s"),
        ("backend lost its credentials: Pending", in_progress(), nothing, At::Error(BackendError::Unauthorized { message: "bad token".into() }),
            "Done 30000ms", Some(InProgress), "Pending", "-", "waiting for the backend: unauthorized: bad token"),
        ("refused by the backend", in_progress(), nothing, At::Error(BackendError::Rejected { status: 400, reason: "bad dates".into() }),
            "Fail Failed", Some(Failed), "Failed", "Failed Failed", "COMMERCE refused the report: HTTP 400: bad dates"),
        ("too large to read", in_progress(), nothing, At::Error(BackendError::TooLarge { what: "the file".into(), limit: 10 }),
            "Fail TooLarge", Some(Failed), "TooLarge", "Failed TooLarge", "TooLarge: the file is larger than 10 bytes"),
        ("the Secret name is someone else's", in_progress(), nothing, At::SecretBeforeWriting(foreign()),
            "SecretConflict First", Some(InProgress), "SecretConflict", "-", "it has no controlling owner"),
        ("the Secret is ours", in_progress(), nothing, At::SecretBeforeWriting(ours()), "Download", Some(InProgress), "InProgress", "-", ""),
        ("written: READY, looked at before the URL expires", in_progress(), nothing, At::Completed(url("2026-01-01T02:00:00Z")),
            "Completed 3590000ms", Some(Ready), "Ready", "Complete", "Secret \"nw-finance-20181008\" holds its download"),
        ("written, with a store: the copy follows at once", in_progress(), |_, f| f.store = Some("bucket"), At::Completed(url("2026-01-01T02:00:00Z")),
            "Completed 500ms", Some(Ready), "Ready", "Complete", "holds its download"),
        ("written inline: READY for good", in_progress(), nothing,
            At::Completed(Download::Inline { file_name: "l.csv".into(), content: vec![] }), "Completed change", Some(Ready), "Ready", "Complete", "holds its download"),
        ("ready, nothing to do", ready_url("2026-01-01T02:00:00Z"), nothing, At::Ready(ours()), "Leave 3590000ms", Some(Ready), "Ready", "Complete", "before"),
        ("ready, the Secret taken meanwhile", ready_url("2026-01-01T02:00:00Z"), nothing, At::Ready(foreign()),
            "SecretConflict First", Some(Ready), "SecretConflict", "Complete", "Delete or rename"),
        ("ready, the refresh annotation set", ready_url("2026-01-01T02:00:00Z"), |_, f| f.refresh = Some("1"), At::Ready(ours()),
            "Renew on the refresh-url annotation", Some(Ready), "Ready", "Complete", "before"),
        ("ready, the refresh annotation already served", ready_url("2026-01-01T02:00:00Z"), |s, f| { f.refresh = Some("1"); s.last_url_refresh = Some("1".into()) },
            At::Ready(ours()), "Leave 3590000ms", Some(Ready), "Ready", "Complete", "before"),
        ("ready, the Secret deleted", ready_url("2026-01-01T02:00:00Z"), nothing, At::Ready(Observed::Missing),
            "Renew because the Secret was missing", Some(Ready), "Ready", "Complete", "before"),
        ("ready, ours again after a conflict", ready_url("2026-01-01T02:00:00Z"), |s, f| { *s = decide_conflicted(s.clone(), f) },
            At::Ready(ours()), "Renew after the Secret conflict was resolved", Some(Ready), "SecretConflict", "Complete", ""),
        ("renewal window: 10 s before expiry, fresh", ready_url("2026-01-01T01:00:10Z"), nothing, At::Ready(ours()),
            "Renew before the URL expired", Some(Ready), "Ready", "Complete", "before"),
        ("renewal window: 11 s before expiry, not yet", ready_url("2026-01-01T01:00:11Z"), nothing, At::Ready(ours()), "Leave 1000ms", Some(Ready), "Ready", "Complete", "before"),
        ("renewal window: READY 15 min ago, no longer kept fresh", ready_url("2026-01-01T01:00:05Z"), |s, _| s.completion_time = Some(t("2026-01-01T00:45:00Z")),
            At::Ready(ours()), "Leave 5200ms", Some(Ready), "Ready", "Complete", "before"),
        ("keepUrlFreshSeconds 7200: READY 59 min ago, still kept fresh", ready_url("2026-01-01T01:00:05Z"),
            |s, f| { s.completion_time = Some(t("2026-01-01T00:01:00Z")); f.keep_url_fresh = TimeDelta::hours(2) },
            At::Ready(ours()), "Renew before the URL expired", Some(Ready), "Ready", "Complete", "before"),
        ("keepUrlFreshSeconds 0: never re-minted unasked", ready_url("2026-01-01T01:00:05Z"), |_, f| f.keep_url_fresh = TimeDelta::zero(),
            At::Ready(ours()), "Leave 5200ms", Some(Ready), "Ready", "Complete", "before"),
        ("an hour after READY, out of the window: the annotation still re-mints", ready_url("2026-01-01T01:00:00Z"),
            |s, f| { s.completion_time = Some(t("2025-12-31T23:59:00Z")); f.refresh = Some("late") },
            At::Ready(ours()), "Renew on the refresh-url annotation", Some(Ready), "Ready", "Complete", "before"),
        ("the URL expired", ready_url("2026-01-01T01:00:00Z"), nothing, At::Ready(ours()),
            "Done change", Some(Ready), "UrlExpired", "Complete", "expired at 2026-01-01T01:00:00+00:00; set the annotation"),
        ("renewal while the backend is not Ready", ready_url("2026-01-01T01:00:00Z"), nothing, At::RenewalNotReady,
            "Done 30000ms", Some(Ready), "UrlExpired", "Complete", "cannot re-mint the download URL: ReportBackend"),
        ("renewed", ready_url("2026-01-01T01:00:05Z"), |_, f| f.refresh = Some("2"), At::Renewed(url("2026-01-01T01:10:00Z")),
            "Renewed Backend on the refresh-url annotation 590000ms", Some(Ready), "Ready", "Complete", "holds a fresh download URL"),
        ("FAILED before Complete and Failed existed: they are written once", without_outcome(status(Some(Failed), Some("DeadlineExceeded"))), nothing, At::Start,
            "Done change", Some(Failed), "DeadlineExceeded", "Failed DeadlineExceeded", "before"),
        ("READY before Complete and Failed existed: they are written once", without_outcome(ready_url("2026-01-01T02:00:00Z")), nothing, At::Ready(ours()),
            "Done 3590000ms", Some(Ready), "Ready", "Complete", "before"),
        ("READY with an expired URL, from before: Complete all the same", without_outcome(ready_url("2026-01-01T00:30:00Z")), nothing, At::Ready(ours()),
            "Done change", Some(Ready), "UrlExpired", "Complete", "expired at"),
        // READY → copying → delivered, and the same renewal policy for the copy's URL.
        ("with a store, not copied yet: copy", ready_url("2026-01-01T02:00:00Z"), with_store, At::Ready(ours()), "Copy", Some(Ready), "Ready", "Complete", "before"),
        ("a copy tried, not finished: copy again", tried(), with_store, At::Ready(ours()), "Copy", Some(Ready), "Ready", "Complete", "before"),
        ("with a store, the Secret taken: no copy", ready_url("2026-01-01T02:00:00Z"), with_store, At::Ready(foreign()),
            "SecretConflict First", Some(Ready), "SecretConflict", "Complete", "Delete or rename"),
        ("copy failed: Delivered False, told, retried in 5 s", ready_url("2026-01-01T02:00:00Z"), with_store, At::CopyFailed(DeliveredReason::Unreachable),
            "Retry 5000ms First", Some(Ready), "Ready", "Complete", "before"),
        ("copy failed again, for the same reason: not told again, backing off", told(tried()), |s, f| { f.store = Some("bucket"); s.delivery.get_or_insert_default().attempts = Some(2) },
            At::CopyFailed(DeliveredReason::Unreachable), "Retry 20000ms Again", Some(Ready), "Ready", "Complete", "before"),
        ("copy failed for another reason: told", told(tried()), with_store, At::CopyFailed(DeliveredReason::Unauthorized),
            "Retry 20000ms First", Some(Ready), "Ready", "Complete", "before"),
        ("copied: delivered, looked at when a quarter of the URL's life is left", tried(), with_store, At::Delivered,
            "Delivered 2700000ms", Some(Ready), "Ready", "Complete", "holds a presigned URL of its copy s3://b/k"),
        ("delivered, fresh: kept", delivered(Some("2026-01-01T02:00:00Z")), with_store, At::Ready(ours()), "Leave 2700000ms", Some(Ready), "Ready", "Complete", "before"),
        ("delivered, within the last quarter: re-minted", delivered(Some("2026-01-01T01:10:00Z")), with_store, At::Ready(ours()),
            "Renew before the URL expired", Some(Ready), "Ready", "Complete", "before"),
        ("delivered, expired: re-minted all the same", delivered(Some("2026-01-01T00:30:00Z")), with_store, At::Ready(ours()),
            "Renew before the URL expired", Some(Ready), "Ready", "Complete", "before"),
        ("delivered, long out of the keep-fresh window: re-minted (it costs the backend nothing)", delivered(Some("2026-01-01T01:05:00Z")),
            |s, f| { f.store = Some("bucket"); s.completion_time = Some(t("2025-12-01T00:00:00Z")) },
            At::Ready(ours()), "Renew before the URL expired", Some(Ready), "Ready", "Complete", "before"),
        ("delivered, no expiry recorded: re-minted", delivered(None), with_store, At::Ready(ours()), "Renew before the URL expired", Some(Ready), "Ready", "Complete", "before"),
        ("delivered, the refresh annotation set", delivered(Some("2026-01-01T02:00:00Z")), |_, f| { f.store = Some("bucket"); f.refresh = Some("1") },
            At::Ready(ours()), "Renew on the refresh-url annotation", Some(Ready), "Ready", "Complete", "before"),
        ("delivered, the Secret deleted", delivered(Some("2026-01-01T02:00:00Z")), with_store, At::Ready(Observed::Missing),
            "Renew because the Secret was missing", Some(Ready), "Ready", "Complete", "before"),
        ("delivered, ours again after a conflict", delivered(Some("2026-01-01T02:00:00Z")), |s, f| { f.store = Some("bucket"); *s = decide_conflicted(s.clone(), f) },
            At::Ready(ours()), "Renew after the Secret conflict was resolved", Some(Ready), "SecretConflict", "Complete", ""),
        ("delivered, the Secret taken meanwhile", delivered(Some("2026-01-01T02:00:00Z")), with_store, At::Ready(foreign()),
            "SecretConflict First", Some(Ready), "SecretConflict", "Complete", "Delete or rename"),
        ("re-minted", delivered(Some("2026-01-01T01:10:00Z")), |_, f| { f.store = Some("bucket"); f.refresh = Some("1") }, At::Reminted,
            "Renewed Store on the refresh-url annotation 2700000ms", Some(Ready), "Ready", "Complete", "holds a presigned URL of its copy s3://b/k"),
    ];
    let count = rows.len();
    for (what, mut s, setup, at, want, state, reason, outcome, message) in rows {
        let mut f = facts();
        setup(&mut s, &mut f);
        let before = s.clone();
        let (step, end) = ask(&mut s, &f, at);
        assert_eq!(step, want, "{what}");
        if let Some(End::Leave { .. }) = end {
            assert_eq!(s, before, "{what}: Leave changes nothing");
        }
        assert_eq!(s.status, state, "{what}: state");
        let cond = find_condition(&s.conditions, CONDITION_READY);
        assert_eq!(
            cond.map_or("", |c| c.reason.as_str()),
            reason,
            "{what}: Ready reason"
        );
        let text = cond.map_or("", |c| c.message.as_str());
        assert!(text.contains(message), "{what}: {text:?} lacks {message:?}");
        assert_eq!(outcome_of(&s), outcome, "{what}: Complete and Failed");
        if state == Some(Failed) {
            let failed = find_condition(&s.conditions, CONDITION_FAILED).map(|c| c.message.as_str());
            assert_eq!(failed, Some(text), "{what}: Failed says why, as Ready does");
        }
        if let Some(End::Fail { message: m, .. } | End::SecretConflict { message: m, .. }) = &end {
            assert_eq!(m, text, "{what}: the Event says what the condition says");
        }
    }
    assert!(count >= 70, "{count} rows");
}

/// The status after a SecretConflict on a READY report.
fn decide_conflicted(mut s: ReportFileStatus, f: &Facts) -> ReportFileStatus {
    secret_conflict(&mut s, f, "it has no controlling owner");
    s
}

#[test]
fn the_create_once_protocol_marks_before_and_records_at_once() {
    let f = facts();
    let mut s = ReportFileStatus::default();
    assert_eq!(with_backend(&mut s, &f), Ok(Ask::Create));
    mark_pending(&mut s, &f, "COMMERCE");
    assert_eq!(
        (s.create_pending_since, s.attempts, s.external_id.as_deref()),
        (Some(f.now), Some(1), None)
    );
    record_id(&mut s, &f, "COMMERCE", "r-1", f.now);
    assert_eq!(
        (s.create_pending_since, s.submit_time, s.external_id.as_deref()),
        (None, Some(f.now), Some("r-1"))
    );
    // Polls count from when the backend answered, not from the reconcile's start.
    let answered = f.now + chrono::Duration::milliseconds(400);
    let mut late = ReportFileStatus::default();
    record_id(&mut late, &f, "COMMERCE", "r-2", answered);
    assert_eq!(late.submit_time, Some(answered));
    let woken = Facts {
        now: f.now + chrono::Duration::milliseconds(500),
        ..facts()
    };
    assert_eq!(
        with_backend(&mut late, &woken),
        Err(End::Leave {
            requeue: Some(Duration::from_millis(900))
        })
    );
    // On the poll grid, the first poll waits for the tick at least half a second after the
    // submit (00.400 → 01.000), where the other reports of its organization are polled too.
    let on_grid = Facts {
        poll_grid: true,
        ..facts()
    };
    let on_grid = Facts {
        now: woken.now,
        ..on_grid
    };
    assert_eq!(
        with_backend(&mut late, &on_grid),
        Err(End::Leave {
            requeue: Some(Duration::from_millis(500))
        })
    );
    // A lost answer: the mark is there without an id, so the next reconcile finds first.
    let mut lost = ReportFileStatus {
        create_pending_since: Some(f.now),
        attempts: Some(i32::MAX),
        ..Default::default()
    };
    assert_eq!(with_backend(&mut lost, &f), Ok(Ask::Create));
    mark_pending(&mut lost, &f, "COMMERCE");
    assert_eq!(lost.attempts, Some(i32::MAX), "attempts saturate");
    // Failing clears the mark, so nothing is looked up again.
    fail(&mut lost, &f, Failure::Failed, "x".into());
    assert_eq!(
        (lost.create_pending_since, lost.failed_reason.as_deref()),
        (None, Some("Failed"))
    );
}

#[test]
fn completion_records_the_download_and_the_refresh_served() {
    let mut f = facts();
    f.refresh = Some("3");
    let mut s = ReportFileStatus::default();
    let report = RemoteReport {
        file_name: None,
        ..remote("r-1")
    };
    let download = Download::Url {
        url: "https://s/c/report%201.zip?sig=x".into(),
        expires_at: Some(t("2026-01-01T02:00:00Z")),
    };
    let (generate_date, file_name) = file_of(&report, &download, f.now);
    assert_eq!(
        (generate_date, file_name.as_deref()),
        (f.now, Some("report 1.zip"))
    );
    completed(&mut s, &f, generate_date, file_name, &download);
    assert_eq!(
        s.download_secret_ref.map(|r| r.name).as_deref(),
        Some("nw-finance-20181008")
    );
    assert_eq!(
        (s.url_expires_at, s.last_url_refresh.as_deref(), s.completion_time),
        (Some(t("2026-01-01T02:00:00Z")), Some("3"), Some(f.now))
    );
}

#[test]
fn file_names_come_from_the_url_path_without_the_signature() {
    assert_eq!(
        file_name_of("https://s/c/report%201.zip?sig=x").as_deref(),
        Some("report 1.zip")
    );
    assert_eq!(file_name_of("https://s/"), None);
}

#[test]
fn deadlines_from_the_user_never_overflow() {
    let created = t("2026-01-01T00:00:00Z");
    let rows: [(&str, i64, &str, bool); 7] = [
        ("within", 3600, "2026-01-01T00:59:59Z", false),
        ("just past", 3600, "2026-01-01T01:00:01Z", true),
        ("default", DEFAULT_ACTIVE_DEADLINE, "2026-01-01T06:00:01Z", true),
        (
            "i64::MAX seconds: not a date",
            i64::MAX,
            "2026-01-01T06:00:01Z",
            false,
        ),
        (
            "past the last date",
            i64::MAX / 1000,
            "9999-12-31T23:59:59Z",
            false,
        ),
        ("i64::MIN seconds", i64::MIN, "2026-01-01T00:00:01Z", false),
        (
            "before the first date",
            -(i64::MAX / 1000),
            "2026-01-01T00:00:01Z",
            false,
        ),
    ];
    for (what, deadline, now, passed) in rows {
        assert_eq!(deadline_passed(created, deadline, t(now)), passed, "{what}");
    }
}

#[test]
fn a_short_presigned_lifetime_is_reminted_in_its_last_quarter() {
    let f = Facts {
        store: Some("bucket"),
        ..facts()
    };
    let expiring = |at: &str| ReportFileStatus {
        delivery: Some(Delivery {
            sha256: Some("ab".into()),
            delivered_time: Some(t("2026-01-01T00:59:00Z")),
            url_expires_at: Some(t(at)),
            ..Default::default()
        }),
        ..status(Some(FileState::Ready), Some("Ready"))
    };
    let lifetime = Duration::from_secs(80);
    assert_eq!(
        presigned_url(&mut expiring("2026-01-01T01:01:00Z"), &f, &ours(), lifetime),
        Err(End::Leave {
            requeue: Some(Duration::from_secs(40))
        })
    );
    assert_eq!(
        presigned_url(&mut expiring("2026-01-01T01:00:15Z"), &f, &ours(), lifetime),
        Ok(RenewWhy::Expiring)
    );
}

#[test]
fn failed_copies_back_off() {
    let secs = |n| Duration::from_secs(n);
    assert_eq!(
        [0, 1, 2, 3, 7, 100, i32::MAX].map(retry_after),
        [
            secs(5),
            secs(5),
            secs(10),
            secs(20),
            secs(300),
            secs(300),
            secs(300)
        ]
    );
}

/// Each ending's Event, as the driver publishes it.
#[test]
fn every_ending_says_what_its_event_says() {
    let secs = Duration::from_secs;
    let message = || "m".to_string();
    /// (ending, its Event: type, reason and note, requeue)
    type Row = (
        End,
        Option<(EventType, &'static str, &'static str)>,
        Option<Duration>,
    );
    let rows: Vec<Row> = vec![
        (End::Leave { requeue: None }, None, None),
        (
            End::Done {
                requeue: Some(secs(30)),
            },
            None,
            Some(secs(30)),
        ),
        (
            End::Fail {
                reason: Failure::TooLarge,
                message: message(),
            },
            Some((EventType::Warning, "Failed", "m")),
            None,
        ),
        (
            End::Retry {
                after: secs(20),
                wait: Wait::Queued,
                message: message(),
            },
            None,
            Some(secs(20)),
        ),
        (
            End::Retry {
                after: secs(7),
                wait: Wait::RateLimited,
                message: message(),
            },
            Some((EventType::Warning, "RateLimited", "m")),
            Some(secs(7)),
        ),
        (
            End::Retry {
                after: secs(5),
                wait: Wait::BackendError,
                message: message(),
            },
            Some((EventType::Warning, "BackendError", "m")),
            Some(secs(5)),
        ),
        (
            End::SecretConflict {
                news: News::First,
                message: message(),
            },
            Some((EventType::Warning, "SecretConflict", "m")),
            Some(secs(30)),
        ),
        (
            End::SecretConflict {
                news: News::Again,
                message: message(),
            },
            None,
            Some(secs(30)),
        ),
        (
            End::Completed {
                requeue: None,
                message: message(),
            },
            Some((EventType::Normal, "Ready", "m")),
            None,
        ),
        (
            End::Renewed {
                source: Source::Backend,
                why: RenewWhy::SecretMissing,
                requeue: None,
            },
            Some((
                EventType::Normal,
                "UrlRefreshed",
                "wrote the download again because the Secret was missing",
            )),
            None,
        ),
        (
            End::Renewed {
                source: Source::Store,
                why: RenewWhy::Asked,
                requeue: Some(secs(60)),
            },
            Some((
                EventType::Normal,
                "UrlRefreshed",
                "wrote a fresh presigned URL on the refresh-url annotation",
            )),
            Some(secs(60)),
        ),
        (
            End::Delivered {
                requeue: secs(60),
                message: message(),
            },
            Some((EventType::Normal, "Delivered", "m")),
            Some(secs(60)),
        ),
    ];
    for (end, event, requeue) in rows {
        let what = format!("{end:?}");
        let outcome = end.outcome();
        assert_eq!(outcome.ready, None, "{what}: the status holds the condition");
        assert_eq!(outcome.requeue, requeue, "{what}");
        let got = outcome
            .event
            .map(|n| (n.type_, n.reason.as_str(), n.message.clone()));
        assert_eq!(got, event.map(|(t, r, m)| (t, r, m.to_string())), "{what}");
    }
    // A copy to retry while the backend's download is kept up: whichever comes first.
    assert_eq!(
        End::Leave {
            requeue: Some(secs(90))
        }
        .sooner(secs(5)),
        End::Leave {
            requeue: Some(secs(5))
        }
    );
    assert_eq!(
        End::Done { requeue: None }.sooner(secs(5)),
        End::Done {
            requeue: Some(secs(5))
        }
    );
    assert_eq!(
        End::Done {
            requeue: Some(secs(1))
        }
        .sooner(secs(5)),
        End::Done {
            requeue: Some(secs(1))
        }
    );
}

#[test]
fn ready_requeues_stay_in_range_for_any_expiry_a_backend_sends() {
    let now = t("2026-01-01T00:00:00Z");
    let rows = [
        ("no expiry", None, None),
        ("expired", Some(t("2025-12-31T23:59:00Z")), None),
        ("year 0001", Some(t("0001-01-01T00:00:00Z")), None),
        (
            "renew before expiry",
            Some(t("2026-01-01T00:01:00Z")),
            Some(Duration::from_secs(50)),
        ),
        (
            "too close to renew: just after",
            Some(t("2026-01-01T00:00:05Z")),
            Some(Duration::from_millis(5200)),
        ),
        (
            "year 9999: tomorrow",
            Some(t("9999-12-31T23:59:59Z")),
            Some(MAX_REQUEUE),
        ),
        ("the last date", Some(DateTime::<Utc>::MAX_UTC), Some(MAX_REQUEUE)),
    ];
    for (what, expires, want) in rows {
        assert_eq!(backend_requeue(expires, now), want, "{what}");
    }
    assert_eq!(
        backend_requeue(Some(t("2026-01-01T00:00:01Z")), DateTime::<Utc>::MIN_UTC),
        Some(MAX_REQUEUE)
    );
}

/// A backend's text goes into status cut to its limit, at a character boundary, marked.
#[test]
fn a_backends_long_texts_are_cut_when_written() {
    let long = "é".repeat(100_000);
    let f = facts();
    let mut s = status(Some(FileState::InProgress), Some("InProgress"));
    let _ = answer(
        &mut s,
        &f,
        "RDE",
        &ReportState::Failed { reason: long.clone() },
        Duration::from_secs(1),
    );
    let reason = s.failed_reason.clone().expect("failedReason");
    assert!(reason.len() <= crate::controller::conditions::MAX_MESSAGE_BYTES && reason.ends_with('…'));
    let mut s = status(None, None);
    record_id(&mut s, &f, "CMP", &long, f.now);
    let id = s.external_id.clone().expect("externalId");
    assert!(id.len() <= crate::api::MAX_ID_LENGTH && id.ends_with('…'), "{id}");
    let mut s = status(Some(FileState::InProgress), Some("InProgress"));
    let _ = completed(&mut s, &f, f.now, Some(long), &url("2026-01-02T00:00:00Z"));
    let name = s.file_name.clone().expect("fileName");
    assert!(
        name.len() <= crate::api::MAX_FILE_NAME_LENGTH && name.ends_with('…'),
        "{name}"
    );
}

/// A copy waits for its retry: 5 s after the first failure, doubling to 5 minutes, counted
/// from `lastFailureTime` (so no wake brings it sooner).
#[test]
fn a_failed_copy_is_not_tried_again_before_its_backoff() {
    let f = Facts {
        store: Some("bucket"),
        ..facts()
    };
    let failed = |attempts: Option<i32>, ago: Option<i64>| ReportFileStatus {
        delivery: Some(Delivery {
            attempts,
            last_failure_time: ago.map(|s| f.now - TimeDelta::seconds(s)),
            ..Default::default()
        }),
        ..Default::default()
    };
    let secs = |s| Some(Duration::from_secs(s));
    /// (situation, attempts, failed seconds ago, wait)
    type Row = (&'static str, Option<i32>, Option<i64>, Option<Duration>);
    #[rustfmt::skip]
    let rows: [Row; 7] = [
        ("never tried", None, None, None),
        ("tried, no failure recorded", Some(1), None, None),
        ("failed once, 1 s ago", Some(1), Some(1), secs(4)),
        ("failed once, 5 s ago: due", Some(1), Some(5), None),
        ("failed 3 times, 10 s ago", Some(3), Some(10), secs(10)),
        ("failed 100 times, 1 s ago: 5 minutes at most", Some(100), Some(1), secs(299)),
        ("a failure recorded in the future: no longer than the backoff", Some(1), Some(-3600), secs(5)),
    ];
    for (what, attempts, ago, want) in rows {
        assert_eq!(copy_backoff(&failed(attempts, ago), &f), want, "{what}");
    }
}

/// While the pool copies (or the copy waits there), `Delivered` says so, unless it tells of a
/// failure being retried: that is told once, whatever the tries in between.
#[test]
fn delivered_says_a_copy_runs_or_waits_but_keeps_a_failure_until_it_is_over() {
    let f = Facts {
        store: Some("bucket"),
        ..facts()
    };
    let limits = Limits {
        total: 8,
        per_namespace: 2,
    };
    let before = |reason: Option<DeliveredReason>| {
        let mut s = ReportFileStatus::default();
        match reason {
            Some(DeliveredReason::Copying) => copy_started(&mut s, &f, "s3://b/k"),
            Some(DeliveredReason::Queued) => copy_waits(&mut s, &f, limits),
            Some(failure) => {
                copy_failed(&mut s, &f, failure, "down");
            }
            None => {}
        }
        s
    };
    let delivered = |s: &ReportFileStatus| {
        find_condition(&s.conditions, CONDITION_DELIVERED)
            .map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()))
            .expect("Delivered")
    };
    use DeliveredReason::{Copying, Queued, Unreachable};
    /// (situation, Delivered before, the copy started (or waits), reason after, in the message)
    type Row = (
        &'static str,
        Option<DeliveredReason>,
        bool,
        &'static str,
        &'static str,
    );
    #[rustfmt::skip]
    let rows: [Row; 6] = [
        ("first copy started", None, true, "Copying", "copying the report into s3://b/k"),
        ("first copy waits", None, false, "Queued", "at most 2 copies of a namespace run at once, 8 in all"),
        ("a waiting copy starts", Some(Queued), true, "Copying", "copying"),
        ("a running copy is seen again", Some(Copying), true, "Copying", "copying"),
        ("a failed copy is retried: the failure stays", Some(Unreachable), true, "Unreachable", "down; retried"),
        ("a failed copy waits for a slot: the failure stays", Some(Unreachable), false, "Unreachable", "down; retried"),
    ];
    for (what, was, started, reason, message) in rows {
        let mut s = before(was);
        if started {
            copy_started(&mut s, &f, "s3://b/k");
        } else {
            copy_waits(&mut s, &f, limits);
        }
        let (status, got, text) = delivered(&s);
        assert_eq!((status.as_str(), got.as_str()), ("False", reason), "{what}");
        assert!(text.contains(message), "{what}: {text}");
        assert!(
            s.delivery.as_ref().and_then(|d| d.location.as_ref()).is_none(),
            "{what}: no object before the copy ends"
        );
    }
}

/// What a copy wrote is recorded once it is in the store, and only then: every object, and
/// for a CONNECT report whether its ZIP was unpacked.
#[test]
fn a_finished_copy_records_every_object_it_wrote() {
    let f = Facts {
        store: Some("bucket"),
        ..facts()
    };
    let mut unpacked = copy_into("s3://b/r/report.csv");
    unpacked.locations = vec!["s3://b/r/summary.json".into(), "s3://b/r/report.csv".into()];
    unpacked.unpacked = true;
    /// (situation, the copy, CONNECT, objects, connectArchive)
    type Row = (
        &'static str,
        Copied,
        bool,
        Vec<&'static str>,
        Option<ConnectArchive>,
    );
    #[rustfmt::skip]
    let rows: [Row; 3] = [
        ("one object", copy_into("s3://b/r.csv"), false, vec!["s3://b/r.csv"], None),
        ("a CONNECT ZIP as it is", copy_into("s3://b/r.zip"), true, vec!["s3://b/r.zip"], Some(ConnectArchive::Store)),
        ("an unpacked CONNECT ZIP: each file", unpacked, true, vec!["s3://b/r/summary.json", "s3://b/r/report.csv"], Some(ConnectArchive::Extract)),
    ];
    for (what, made, connect, objects, archive) in rows {
        let mut s = ReportFileStatus::default();
        copy_failed(&mut s, &f, DeliveredReason::Unreachable, "down");
        copied(&mut s, &f, &made, connect);
        let d = s.delivery.expect("delivery");
        assert_eq!(d.location.as_deref(), Some(made.location.as_str()), "{what}");
        assert_eq!(d.objects, objects, "{what}");
        assert_eq!(d.connect_archive, archive, "{what}");
        assert_eq!(
            (d.size, d.sha256.as_deref(), d.delivered_time),
            (Some(3), Some("ab"), Some(f.now)),
            "{what}"
        );
        assert_eq!(
            (d.attempts, d.last_failure_time),
            (Some(2), None),
            "{what}: one failed try, one made"
        );
    }
}
