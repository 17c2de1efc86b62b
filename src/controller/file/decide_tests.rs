//! Table tests of the ReportFile state machine: one row per situation, no cluster.

use super::*;

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
        set_ready(&mut s, &f, reason == "Ready", reason, "before".into());
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
    Ready(Observed),
    RenewalNotReady,
    Renewed(Download),
}

fn ask(s: &mut ReportFileStatus, f: &Facts, at: At) -> Next {
    match at {
        At::Start => start(s, f),
        At::SecretBeforeAsking(seen) => secret_seen(s, f, &seen, Next::AskBackend),
        At::BackendNotReady => backend_not_ready(s, f, "ReportBackend \"commerce\" is not Ready"),
        At::WithBackend => with_backend(s, f),
        At::MarkPending => mark_pending(s, f, "COMMERCE"),
        At::Record(id) => record_id(s, f, "COMMERCE", id, f.now),
        At::Answer(state) => answer(s, f, "COMMERCE", &state),
        At::Error(e) => backend_error(s, f, "COMMERCE", "get", &e),
        At::SecretBeforeWriting(seen) => secret_seen(s, f, &seen, Next::Download),
        At::Completed(download) => {
            completed(s, f, t("2026-01-01T00:30:00Z"), Some("f.json".into()), &download)
        }
        At::Ready(seen) => ready(s, f, &seen),
        At::RenewalNotReady => renewal_not_ready(s, f, "ReportBackend \"commerce\" is not Ready"),
        At::Renewed(download) => renewed(s, f, &download),
    }
}

/// `Next` in a few words, so that a row fits on a line; messages are checked separately.
fn short(n: &Next) -> String {
    let secs = |d: &Option<Duration>| d.map_or("change".to_string(), |d| format!("{}ms", d.as_millis()));
    match n {
        Next::Leave { requeue } => format!("Leave {}", secs(requeue)),
        Next::Done { requeue } => format!("Done {}", secs(requeue)),
        Next::Fail { reason, .. } => format!("Fail {reason}"),
        Next::CheckSecret => "CheckSecret".into(),
        Next::AskBackend => "AskBackend".into(),
        Next::Get { id } => format!("Get {id}"),
        Next::Create => "Create".into(),
        Next::MarkPendingThenSubmit => "MarkPendingThenSubmit".into(),
        Next::Recorded => "Recorded".into(),
        Next::Poll { first } => format!("Poll first={first}"),
        Next::Download => "Download".into(),
        Next::Retry {
            after,
            event,
            rate_limited,
        } => {
            format!(
                "Retry {}ms event={} rate_limited={rate_limited}",
                after.as_millis(),
                event.as_ref().map_or("none", |e| e.0)
            )
        }
        Next::SecretConflict { first, .. } => format!("SecretConflict first={first}"),
        Next::RenewUrl { why } => format!("RenewUrl {why}"),
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
    #[rustfmt::skip]
    let rows: Vec<Row> = vec![
        ("a new report asks for a backend", status(None, None), nothing, At::Start, "AskBackend", None, "", "", ""),
        ("a failed report is left alone", status(Some(Failed), Some("Failed")), nothing, At::Start, "Leave change", Some(Failed), "Failed", "Failed Failed", "before"),
        ("a ready report looks at its Secret", status(Some(Ready), Some("Ready")), nothing, At::Start, "CheckSecret", Some(Ready), "Ready", "Complete", "before"),
        ("deadline: default 6 h passed", in_progress(), |_, f| f.now = t("2026-01-01T06:00:01Z"), At::Start,
            "Fail DeadlineExceeded", Some(Failed), "DeadlineExceeded", "Failed DeadlineExceeded", "activeDeadlineSeconds (21600 s)"),
        ("deadline: not yet", in_progress(), |_, f| f.active_deadline_seconds = Some(3601), At::Start, "AskBackend", Some(InProgress), "InProgress", "-", ""),
        ("deadline: i64::MAX is never reached", in_progress(), |_, f| { f.active_deadline_seconds = Some(i64::MAX); f.now = t("9999-12-31T23:59:59Z") },
            At::Start, "AskBackend", Some(InProgress), "InProgress", "-", ""),
        ("deadline: i64::MIN is no date", in_progress(), |_, f| f.active_deadline_seconds = Some(i64::MIN), At::Start, "AskBackend", Some(InProgress), "InProgress", "-", ""),
        ("deadline: zero has passed", in_progress(), |_, f| f.active_deadline_seconds = Some(0), At::Start,
            "Fail DeadlineExceeded", Some(Failed), "DeadlineExceeded", "Failed DeadlineExceeded", "(0 s)"),
        ("deadline: no creation time yet", in_progress(), |_, f| { f.created = None; f.active_deadline_seconds = Some(0) }, At::Start, "AskBackend", Some(InProgress), "InProgress", "-", ""),
        ("after a conflict the Secret is looked at first", status(Some(InProgress), Some(SECRET_CONFLICT)), nothing, At::Start, "CheckSecret", Some(InProgress), SECRET_CONFLICT, "-", ""),
        ("the conflict is still there", status(Some(InProgress), Some(SECRET_CONFLICT)), nothing, At::SecretBeforeAsking(foreign()),
            "SecretConflict first=false", Some(InProgress), SECRET_CONFLICT, "-", "Delete or rename"),
        ("the conflict is gone", status(Some(InProgress), Some(SECRET_CONFLICT)), nothing, At::SecretBeforeAsking(Observed::Missing), "AskBackend", Some(InProgress), SECRET_CONFLICT, "-", ""),
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
        ("no mark: mark pending, then submit", status(None, None), nothing, At::MarkPending, "MarkPendingThenSubmit", Some(InProgress), "Pending", "-", "asking COMMERCE for the report"),
        ("find: adopted, id recorded at once", status(Some(InProgress), Some("Pending")), |s, _| s.create_pending_since = Some(t("2026-01-01T00:10:00Z")),
            At::Record("r-2"), "Recorded", Some(InProgress), "InProgress", "-", "COMMERCE is generating the report"),
        ("find: none, submit again", status(Some(InProgress), Some("Pending")), |s, _| s.create_pending_since = Some(t("2026-01-01T00:10:00Z")),
            At::MarkPending, "MarkPendingThenSubmit", Some(InProgress), "Pending", "-", "asking COMMERCE"),
        ("in progress, first seen", status(None, None), nothing, At::Answer(ReportState::InProgress), "Poll first=true", Some(InProgress), "InProgress", "-", "COMMERCE is generating the report"),
        ("in progress, again", in_progress(), |s, _| s.submit_time = Some(t("2026-01-01T00:10:00Z")), At::Answer(ReportState::InProgress),
            "Poll first=false", Some(InProgress), "InProgress", "-", "COMMERCE is generating"),
        ("ready on the backend: download", in_progress(), nothing, At::Answer(ReportState::Ready), "Download", Some(InProgress), "InProgress", "-", ""),
        ("failed on the backend", in_progress(), nothing, At::Answer(ReportState::Failed { reason: "NO_DATA".into() }),
            "Fail Failed", Some(Failed), "Failed", "Failed Failed", "COMMERCE failed the report: NO_DATA"),
        ("queued behind the in-flight cap: no Event", in_progress(), nothing,
            At::Error(BackendError::InFlightLimit { organization: "o".into(), max: 2, retry_after: Duration::from_secs(20) }),
            "Retry 20000ms event=none rate_limited=true", Some(InProgress), "Pending", "-", "2 reports already in progress"),
        ("rate limited: Retry-After kept", in_progress(), |s, _| s.external_id = Some("r-1".into()),
            At::Error(BackendError::RateLimited { retry_after: Some(Duration::from_secs(7)) }),
            "Retry 7000ms event=RateLimited rate_limited=true", Some(InProgress), "InProgress", "-", "get on COMMERCE: rate limited, retry after 7s; retrying in 7s"),
        ("rate limited: a year of Retry-After is clamped to a day", in_progress(), nothing,
            At::Error(BackendError::RateLimited { retry_after: Some(Duration::from_secs(365 * 86400)) }),
            "Retry 86400000ms event=RateLimited rate_limited=true", Some(InProgress), "Pending", "-", "retrying in 86400s"),
        ("backend error: default 5 s", in_progress(), nothing, At::Error(BackendError::Transient { message: "HTTP 503".into(), retry_after: None }),
            "Retry 5000ms event=BackendError rate_limited=false", Some(InProgress), "Pending", "-", "transient backend error: HTTP 503"),
        ("backend error: Retry-After 0 is clamped to 0.5 s", in_progress(), nothing,
            At::Error(BackendError::Transient { message: "HTTP 503".into(), retry_after: Some(Duration::ZERO) }),
            "Retry 500ms event=BackendError rate_limited=false", Some(InProgress), "Pending", "-", "retrying in 1s"),
        ("backend lost its credentials: Pending", in_progress(), nothing, At::Error(BackendError::Unauthorized { message: "bad token".into() }),
            "Done 30000ms", Some(InProgress), "Pending", "-", "waiting for the backend: unauthorized: bad token"),
        ("refused by the backend", in_progress(), nothing, At::Error(BackendError::Rejected { status: 400, reason: "bad dates".into() }),
            "Fail Failed", Some(Failed), "Failed", "Failed Failed", "COMMERCE refused the report: HTTP 400: bad dates"),
        ("too large to read", in_progress(), nothing, At::Error(BackendError::TooLarge { what: "the file".into(), limit: 10 }),
            "Fail TooLarge", Some(Failed), "TooLarge", "Failed TooLarge", "TooLarge: the file is larger than 10 bytes"),
        ("the Secret name is someone else's", in_progress(), nothing, At::SecretBeforeWriting(foreign()),
            "SecretConflict first=true", Some(InProgress), SECRET_CONFLICT, "-", "it has no controlling owner"),
        ("the Secret is ours", in_progress(), nothing, At::SecretBeforeWriting(ours()), "Download", Some(InProgress), "InProgress", "-", ""),
        ("written: READY, looked at before the URL expires", in_progress(), nothing, At::Completed(url("2026-01-01T02:00:00Z")),
            "Done 3590000ms", Some(Ready), "Ready", "Complete", "Secret \"nw-finance-20181008\" holds its download"),
        ("written inline: READY for good", in_progress(), nothing,
            At::Completed(Download::Inline { file_name: "l.csv".into(), content: vec![] }), "Done change", Some(Ready), "Ready", "Complete", "holds its download"),
        ("ready, nothing to do", ready_url("2026-01-01T02:00:00Z"), nothing, At::Ready(ours()), "Leave 3590000ms", Some(Ready), "Ready", "Complete", "before"),
        ("ready, the Secret taken meanwhile", ready_url("2026-01-01T02:00:00Z"), nothing, At::Ready(foreign()),
            "SecretConflict first=true", Some(Ready), SECRET_CONFLICT, "Complete", "Delete or rename"),
        ("ready, the refresh annotation set", ready_url("2026-01-01T02:00:00Z"), |_, f| f.refresh = Some("1"), At::Ready(ours()),
            "RenewUrl on the refresh-url annotation", Some(Ready), "Ready", "Complete", "before"),
        ("ready, the refresh annotation already served", ready_url("2026-01-01T02:00:00Z"), |s, f| { f.refresh = Some("1"); s.last_url_refresh = Some("1".into()) },
            At::Ready(ours()), "Leave 3590000ms", Some(Ready), "Ready", "Complete", "before"),
        ("ready, the Secret deleted", ready_url("2026-01-01T02:00:00Z"), nothing, At::Ready(Observed::Missing),
            "RenewUrl because the Secret was missing", Some(Ready), "Ready", "Complete", "before"),
        ("ready, ours again after a conflict", ready_url("2026-01-01T02:00:00Z"), |s, f| { *s = decide_conflicted(s.clone(), f) },
            At::Ready(ours()), "RenewUrl after the Secret conflict was resolved", Some(Ready), SECRET_CONFLICT, "Complete", ""),
        ("renewal window: 10 s before expiry, fresh", ready_url("2026-01-01T01:00:10Z"), nothing, At::Ready(ours()),
            "RenewUrl before the URL expired", Some(Ready), "Ready", "Complete", "before"),
        ("renewal window: 11 s before expiry, not yet", ready_url("2026-01-01T01:00:11Z"), nothing, At::Ready(ours()), "Leave 1000ms", Some(Ready), "Ready", "Complete", "before"),
        ("renewal window: READY 15 min ago, no longer kept fresh", ready_url("2026-01-01T01:00:05Z"), |s, _| s.completion_time = Some(t("2026-01-01T00:45:00Z")),
            At::Ready(ours()), "Leave 5200ms", Some(Ready), "Ready", "Complete", "before"),
        ("keepUrlFreshSeconds 7200: READY 59 min ago, still kept fresh", ready_url("2026-01-01T01:00:05Z"),
            |s, f| { s.completion_time = Some(t("2026-01-01T00:01:00Z")); f.keep_url_fresh = TimeDelta::hours(2) },
            At::Ready(ours()), "RenewUrl before the URL expired", Some(Ready), "Ready", "Complete", "before"),
        ("keepUrlFreshSeconds 0: never re-minted unasked", ready_url("2026-01-01T01:00:05Z"), |_, f| f.keep_url_fresh = TimeDelta::zero(),
            At::Ready(ours()), "Leave 5200ms", Some(Ready), "Ready", "Complete", "before"),
        ("an hour after READY, out of the window: the annotation still re-mints", ready_url("2026-01-01T01:00:00Z"),
            |s, f| { s.completion_time = Some(t("2025-12-31T23:59:00Z")); f.refresh = Some("late") },
            At::Ready(ours()), "RenewUrl on the refresh-url annotation", Some(Ready), "Ready", "Complete", "before"),
        ("the URL expired", ready_url("2026-01-01T01:00:00Z"), nothing, At::Ready(ours()),
            "Done change", Some(Ready), "UrlExpired", "Complete", "expired at 2026-01-01T01:00:00+00:00; set the annotation"),
        ("renewal while the backend is not Ready", ready_url("2026-01-01T01:00:00Z"), nothing, At::RenewalNotReady,
            "Done 30000ms", Some(Ready), "UrlExpired", "Complete", "cannot re-mint the download URL: ReportBackend"),
        ("renewed", ready_url("2026-01-01T01:00:05Z"), |_, f| f.refresh = Some("2"), At::Renewed(url("2026-01-01T01:10:00Z")),
            "Done 590000ms", Some(Ready), "Ready", "Complete", "holds a fresh download URL"),
        ("FAILED before Complete and Failed existed: they are written once", without_outcome(status(Some(Failed), Some("DeadlineExceeded"))), nothing, At::Start,
            "Done change", Some(Failed), "DeadlineExceeded", "Failed DeadlineExceeded", "before"),
        ("READY before Complete and Failed existed: they are written once", without_outcome(ready_url("2026-01-01T02:00:00Z")), nothing, At::Ready(ours()),
            "Done 3590000ms", Some(Ready), "Ready", "Complete", "before"),
        ("READY with an expired URL, from before: Complete all the same", without_outcome(ready_url("2026-01-01T00:30:00Z")), nothing, At::Ready(ours()),
            "Done change", Some(Ready), "UrlExpired", "Complete", "expired at"),
    ];
    let count = rows.len();
    for (what, mut s, setup, at, want, state, reason, outcome, message) in rows {
        let mut f = facts();
        setup(&mut s, &mut f);
        let next = ask(&mut s, &f, at);
        assert_eq!(short(&next), want, "{what}");
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
        if let Next::Fail { message: m, .. } | Next::SecretConflict { message: m, .. } = &next {
            assert_eq!(m, text, "{what}: the Event says what the condition says");
        }
    }
    assert!(count >= 40, "{count} rows");
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
    assert_eq!(with_backend(&mut s, &f), Next::Create);
    assert_eq!(mark_pending(&mut s, &f, "COMMERCE"), Next::MarkPendingThenSubmit);
    assert_eq!(
        (s.create_pending_since, s.attempts, s.external_id.as_deref()),
        (Some(f.now), Some(1), None)
    );
    assert_eq!(record_id(&mut s, &f, "COMMERCE", "r-1", f.now), Next::Recorded);
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
        Next::Leave {
            requeue: Some(Duration::from_millis(900))
        }
    );
    // A lost answer: the mark is there without an id, so the next reconcile finds first.
    let mut lost = ReportFileStatus {
        create_pending_since: Some(f.now),
        attempts: Some(i32::MAX),
        ..Default::default()
    };
    assert_eq!(with_backend(&mut lost, &f), Next::Create);
    assert_eq!(
        mark_pending(&mut lost, &f, "COMMERCE"),
        Next::MarkPendingThenSubmit
    );
    assert_eq!(lost.attempts, Some(i32::MAX), "attempts saturate");
    // Failing clears the mark, so nothing is looked up again.
    fail(&mut lost, &f, "Failed", "x".into());
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
    let (generate_date, file_name) = delivered(&report, &download, f.now);
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
fn polling_starts_fast_backs_off_and_respects_the_budget() {
    assert_eq!(
        poll_interval(Duration::from_secs(0), 1, None),
        Duration::from_secs(1)
    );
    assert_eq!(
        poll_interval(Duration::from_secs(30), 1, None),
        Duration::from_secs(3)
    );
    assert_eq!(
        poll_interval(Duration::from_secs(3600), 1, None),
        Duration::from_secs(30)
    );
    // 120 reports on 600 requests per 10 minutes: each polled at most every 150 s.
    let spread = poll_interval(Duration::from_secs(0), 120, Some((600, Duration::from_secs(600))));
    assert_eq!(spread, Duration::from_secs(150));
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
        assert_eq!(ready_requeue_after(expires, now), want, "{what}");
    }
    assert_eq!(
        ready_requeue_after(Some(t("2026-01-01T00:00:01Z")), DateTime::<Utc>::MIN_UTC),
        Some(MAX_REQUEUE)
    );
}

#[test]
fn huge_rate_budgets_do_not_overflow_the_poll_interval() {
    assert_eq!(
        poll_interval(Duration::ZERO, usize::MAX, Some((1, Duration::MAX))),
        Duration::from_secs(600)
    );
    assert_eq!(
        poll_interval(Duration::MAX, 1, Some((u32::MAX, Duration::from_secs(1)))),
        Duration::from_secs(30)
    );
}

#[test]
fn polls_spend_the_spare_budget_over_the_time_reports_are_expected_to_run() {
    let supplier = Some((600, Duration::from_secs(600)));
    let secs = Duration::from_secs;
    // (running for, organizations polled per round, spare requests, interval)
    let rows: [(u64, usize, u32, Duration); 8] = [
        // 20 organizations' fan-out just submitted, the window nearly unused: every second.
        (0, 20, 480, secs(1)),
        // After 30 s the base schedule (3 s) is slower than what 480 spare allow (1.56 s);
        // with 100 spare, 80% of them over 30 s more allow one round per 7.5 s.
        (30, 20, 480, secs(3)),
        (30, 20, 100, Duration::from_millis(7500)),
        // Little budget left: back to the steady rate (600 s × 1.25 × 20 / 600 = 25 s).
        (0, 20, 10, secs(25)),
        (0, 20, 0, secs(25)),
        // Long-running reports never poll faster than the steady rate allows.
        (3600, 20, 600, secs(30)),
        // One organization, plenty left: the base schedule.
        (0, 1, 600, secs(1)),
        (3600, 1, 600, secs(30)),
    ];
    for (running, orgs, spare, want) in rows {
        assert_eq!(
            poll_interval_spending(secs(running), orgs, supplier, spare),
            want,
            "running {running} s, {orgs} orgs, {spare} spare"
        );
    }
    // Without a budget, the base schedule.
    assert_eq!(poll_interval_spending(secs(0), 120, None, 0), secs(1));
}

/// A backend's text goes into status cut to its limit, at a character boundary, marked.
#[test]
fn a_backends_long_texts_are_cut_when_written() {
    let long = "é".repeat(100_000);
    let f = facts();
    let mut s = status(Some(FileState::InProgress), Some("InProgress"));
    answer(&mut s, &f, "RDE", &ReportState::Failed { reason: long.clone() });
    let reason = s.failed_reason.clone().expect("failedReason");
    assert!(reason.len() <= crate::controller::conditions::MAX_MESSAGE_BYTES && reason.ends_with('…'));
    let mut s = status(None, None);
    record_id(&mut s, &f, "CMP", &long, f.now);
    let id = s.external_id.clone().expect("externalId");
    assert!(id.len() <= crate::api::MAX_ID_LENGTH && id.ends_with('…'), "{id}");
    let mut s = status(Some(FileState::InProgress), Some("InProgress"));
    completed(&mut s, &f, f.now, Some(long), &url("2026-01-02T00:00:00Z"));
    let name = s.file_name.clone().expect("fileName");
    assert!(
        name.len() <= crate::api::MAX_FILE_NAME_LENGTH && name.ends_with('…'),
        "{name}"
    );
}
