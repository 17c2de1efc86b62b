//! Table tests of the ReportGenerator's decisions: every Ready reason, every catch-up and
//! concurrency case, one row each, no cluster.

use serde_json::{Value, json};

use super::*;
use crate::api::{BackendType, ReportFileStatus};
use crate::backend::RemoteReport;
use crate::controller::registry::NotReady;
use kube::runtime::events::EventType as K8sEvent;

fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).expect("time").with_timezone(&Utc)
}

const CREATED: &str = "2026-11-01T00:00:00Z";
const NOW: &str = "2026-11-05T10:00:00Z";

/// A generator with `spec` merged over a valid ONETIME CONNECT one.
fn generator(spec: Value) -> ReportGenerator {
    let mut base = json!({
        "backendRef": {"name": "b"}, "commonName": "Usage", "eventType": "ONETIME", "format": "CSV",
        "parameters": {"startDate": "2026-11-01T00:00:00Z", "endDate": "2026-11-01T23:59:59Z", "template": "RT-1",
                       "reportType": "REPORT_TYPE_TRIP_ACTIVITY", "scope": {"level": "tenant", "uuid": "u"}},
    });
    merge(&mut base, spec);
    let mut g = ReportGenerator::new("g", serde_json::from_value(base).expect("spec"));
    g.metadata.namespace = Some("ns".into());
    g.metadata.uid = Some("uid-g".into());
    g.metadata.generation = Some(1);
    g.metadata.creation_timestamp = Some(crate::controller::conditions::to_k8s_time(t(CREATED)));
    g
}

fn merge(base: &mut Value, patch: Value) {
    match (base, patch) {
        (Value::Object(b), Value::Object(p)) => p
            .into_iter()
            .for_each(|(k, v)| merge(b.entry(k).or_insert(Value::Null), v)),
        (b, p) => *b = p,
    }
}

fn periodic(extra: Value) -> ReportGenerator {
    let mut spec =
        json!({"eventType": "PERIODIC", "parameters": {"startDate": null, "endDate": null, "period": "P1D"}});
    merge(&mut spec, extra);
    generator(spec)
}

/// A generator with `spec` merged over a valid ONETIME RDE or CMP one: without the other types'
/// parameters, which those two refuse.
/// `g` without the base's parameters (see [`generator`]) that a CONNECT, FUSION or SUPPLIER
/// backend does not take, which it would refuse (`UnsupportedSetting`); a row that sets one of
/// them to another value keeps it.
fn for_type(g: &ReportGenerator, type_: Option<BackendType>) -> ReportGenerator {
    let mut g = g.clone();
    let Some(p) = g.spec.parameters.as_mut() else {
        return g;
    };
    let base_scope = || Some(serde_json::from_value(json!({"level": "tenant", "uuid": "u"})).expect("scope"));
    let (template, report_type, scope) = match type_ {
        Some(BackendType::Connect) => (false, true, true),
        Some(BackendType::Fusion) => (true, true, false),
        Some(BackendType::Supplier) => (true, false, true),
        _ => return g,
    };
    if template && p.template.as_deref() == Some("RT-1") {
        p.template = None;
    }
    if report_type && p.report_type.as_deref() == Some("REPORT_TYPE_TRIP_ACTIVITY") {
        p.report_type = None;
    }
    if scope && p.scope == base_scope() {
        p.scope = None;
    }
    g
}

fn own(spec: Value) -> ReportGenerator {
    let mut base = json!({"parameters": {"template": null, "reportType": null, "scope": null}});
    merge(&mut base, spec);
    generator(base)
}

fn backend(type_: BackendType) -> ReportBackend {
    let spec =
        json!({"type": type_.as_str(), "url": "https://api.example", "credentialsSecretRef": {"name": "c"}});
    ReportBackend::new("b", serde_json::from_value(spec).expect("backend"))
}

/// What a backend type can do: its own capabilities.
fn caps(type_: BackendType) -> Capabilities {
    Capabilities::of(type_).clone()
}

fn file(name: &str, state: Option<FileState>) -> Arc<ReportFile> {
    let spec = serde_json::from_value(
        json!({"backendRef": {"name": "b"}, "name": "Usage", "eventType": "ONETIME", "format": "CSV"}),
    )
    .expect("file");
    let mut rf = ReportFile::new(name, spec);
    rf.status = Some(ReportFileStatus {
        status: state,
        completion_time: Some(t(NOW)),
        ..Default::default()
    });
    Arc::new(rf)
}

/// A finished file of the window ending at `end`, completed at `done`.
fn dated(name: &str, state: FileState, end: &str, done: &str) -> Arc<ReportFile> {
    let mut rf = (*file(name, Some(state))).clone();
    rf.spec.parameters = Some(ReportParameters {
        end_date: Some(t(end)),
        ..Default::default()
    });
    let why = (state == FileState::Failed).then(|| "COMMERCE failed the report: NO_DATA".to_string());
    let status = rf.status.get_or_insert_default();
    status.completion_time = Some(t(done));
    if let Some(why) = why {
        crate::controller::conditions::set_condition(
            &mut status.conditions,
            Cond::ready(false, crate::api::reasons::FileReady::Failed, why),
            Some(1),
            t(done),
        );
    }
    Arc::new(rf)
}

/// What the calls of a pass came to, as a row says.
#[derive(Clone)]
enum Acted {
    /// Every file was created (or was there).
    Created,
    /// The file name of the `n`-th window (or the ONETIME report) is someone else's.
    Conflict { window: usize, deleting: bool },
    /// A backend call of the generator's own (RDE template, list) failed.
    Failed(BackendError),
}

/// One pass of decisions, as the driver makes them, with the calls' results given by `acted`.
fn pass(
    g: &ReportGenerator,
    answer: Result<BackendType, NotReady>,
    status: &mut ReportGeneratorStatus,
    active: usize,
    files: &[Arc<ReportFile>],
    acted: Acted,
) -> (Outcome, Option<PeriodicPass>) {
    let now = t(NOW);
    let previous = status.conditions.first().map(|c| c.reason.clone());
    let conflict = |name: &str, deleting| FileConflict {
        name: name.into(),
        deleting,
    };
    let mut planned = None;
    let g = &for_type(g, answer.as_ref().ok().copied());
    let outcome = match answer {
        Err(n) => Outcome::from(n),
        Ok(type_) => match start(g, &backend(type_), &caps(type_), status, now) {
            Err(o) => o,
            Ok(step) => match (step, acted) {
                (_, Acted::Failed(e)) => backend_failed(type_.as_str(), "submit", &e),
                (Start::Onetime(files), Acted::Conflict { deleting, .. }) => {
                    file_conflict(conflict(&files[0].name, deleting))
                }
                (Start::Periodic { snapshots }, acted) => {
                    match super::periodic(g, status, now, snapshots).map(|s| s.pass(g, status, active, now)) {
                        Err(o) => o,
                        Ok(p) => {
                            let stop = match acted {
                                Acted::Conflict { window, deleting } => p
                                    .plan
                                    .create
                                    .get(window)
                                    .map(|w| (w.start, conflict("taken", deleting))),
                                _ => None,
                            };
                            let outcome = finish_periodic(&p, stop, status, now);
                            planned = Some(p);
                            outcome
                        }
                    }
                }
                _ => Outcome::working(None),
            },
        },
    };
    let latest = roll_up(files, status);
    (
        conclude(g, status, latest.as_ref(), outcome, previous.as_deref()),
        planned,
    )
}

fn not_found() -> Result<BackendType, NotReady> {
    Err(NotReady::new(
        crate::controller::registry::Unusable::NotFound,
        "ReportBackend \"b\" does not exist in namespace \"ns\"",
    ))
}

fn not_ready() -> Result<BackendType, NotReady> {
    Err(NotReady::new(
        crate::controller::registry::Unusable::NotReady,
        "ReportBackend \"b\" is not Ready: Unauthorized",
    ))
}

/// A PERIODIC RDE generator with `extra` merged in.
fn rde_periodic(extra: Value) -> ReportGenerator {
    let mut spec = json!({"parameters": {"template": null, "reportType": null, "scope": null}});
    merge(&mut spec, extra);
    periodic(spec)
}

/// `g` with the run-now annotation set to `value`.
fn run_now(mut g: ReportGenerator, value: &str) -> ReportGenerator {
    g.metadata.annotations = Some([(ANNOTATION_RUN_NOW.to_string(), value.to_string())].into());
    g
}

/// (situation, generator, backend, reports in progress, files, calls' result,
///  Ready status and reason, in the message, requeue in ms or "change", Warning Event)
type Row = (
    &'static str,
    ReportGenerator,
    Result<BackendType, NotReady>,
    usize,
    Vec<Arc<ReportFile>>,
    Acted,
    (bool, &'static str),
    &'static str,
    &'static str,
    bool,
);

#[test]
fn every_ready_reason_of_a_generator_is_reached() {
    use BackendType::*;
    use FileState::{Failed, InProgress, Ready};
    let ok = Acted::Created;
    let none = Vec::new;
    let transient = BackendError::Transient {
        message: "503".into(),
        retry_after: Some(Duration::from_secs(7)),
    };
    let refused = BackendError::Rejected {
        status: 400,
        reason: "bad template".into(),
    };
    let unauthorized = BackendError::Unauthorized {
        message: "401".into(),
    };
    #[rustfmt::skip]
    let rows: Vec<Row> = vec![
        ("no backend of that name", generator(json!({})), not_found(), 0, none(), ok.clone(), (false, "BackendNotFound"), "does not exist", "30000", true),
        ("backend not Ready: waits without a warning of its own", generator(json!({})), not_ready(), 0, none(), ok.clone(), (false, "BackendNotReady"), "Unauthorized", "30000", false),
        ("ON_INVOICE on CONNECT", generator(json!({"eventType": "ON_INVOICE"})), Ok(Connect), 0, none(), ok.clone(), (false, "UnsupportedEventType"), "eventType ON_INVOICE", "change", true),
        ("XLSX where only CSV is made", generator(json!({"format": "XLSX"})), Ok(Supplier), 0, none(), ok.clone(), (false, "UnsupportedFormat"), "support format CSV, not XLSX", "change", true),
        ("weekly on RDE", periodic(json!({"parameters": {"period": "P1W", "template": null, "reportType": null, "scope": null}})), Ok(Rde), 0, none(), ok.clone(), (false, "UnsupportedPeriod"), "period P1W", "change", true),
        ("CONNECT without a template", generator(json!({"parameters": {"template": ""}})), Ok(Connect), 0, none(), ok.clone(), (false, "InvalidParameters"), "parameters.template", "change", true),
        ("SUPPLIER without a report type", generator(json!({"parameters": {"reportType": null}})), Ok(Supplier), 0, none(), ok.clone(), (false, "InvalidParameters"), "parameters.reportType", "change", true),
        ("FUSION without a scope", generator(json!({"parameters": {"scope": null}})), Ok(Fusion), 0, none(), ok.clone(), (false, "InvalidParameters"), "parameters.scope", "change", true),
        ("ONETIME without dates on CONNECT", generator(json!({"parameters": {"startDate": null, "endDate": null}})), Ok(Connect), 0, none(), ok.clone(), (false, "InvalidParameters"), "needs parameters.startDate and parameters.endDate on CONNECT", "change", true),
        ("PERIODIC FUSION with a backfill start", periodic(json!({"parameters": {"startDate": "2026-10-01T00:00:00Z"}})), Ok(Fusion), 0, none(), ok.clone(), (false, "UnsupportedSetting"), "UnsupportedSetting: parameters.startDate on FUSION", "change", true),
        ("PERIODIC FUSION with catchUpPolicy All", periodic(json!({"schedule": {"catchUpPolicy": "All"}})), Ok(Fusion), 0, none(), ok.clone(), (false, "UnsupportedSetting"), "UnsupportedSetting: schedule.catchUpPolicy All on FUSION", "change", true),
        ("a deadline no duration holds", generator(json!({"activeDeadlineSeconds": i64::MAX})), Ok(Connect), 0, none(), ok.clone(), (false, "InvalidParameters"), "activeDeadlineSeconds", "change", true),
        ("PERIODIC without a period", periodic(json!({"parameters": {"period": null}})), Ok(Connect), 0, none(), ok.clone(), (false, "InvalidParameters"), "parameters.period", "change", true),
        ("a cron that does not parse", periodic(json!({"schedule": {"cron": "61 * * * *"}})), Ok(Connect), 0, none(), ok.clone(), (false, "InvalidSchedule"), "", "change", true),
        ("an unknown time zone", periodic(json!({"schedule": {"timeZone": "Mars/Olympus"}})), Ok(Connect), 0, none(), ok.clone(), (false, "InvalidSchedule"), "Mars/Olympus", "change", true),
        ("a negative starting deadline", periodic(json!({"schedule": {"startingDeadlineSeconds": -1}})), Ok(Connect), 0, none(), ok.clone(), (false, "InvalidSchedule"), "startingDeadlineSeconds -1", "change", true),
        ("a backfill from year 1", periodic(json!({"parameters": {"startDate": "0001-01-01T00:00:00Z"}})), Ok(Connect), 0, none(), ok.clone(), (false, "BackfillTooLong"), "or later", "change", true),
        ("ONETIME, report made, not READY yet", generator(json!({})), Ok(Connect), 0, vec![file("g-20261101-20261101", Some(InProgress))], ok.clone(), (false, "ReportInProgress"), "being generated", "change", false),
        ("ONETIME, READY", generator(json!({})), Ok(Connect), 0, vec![file("g-20261101-20261101", Some(Ready))], ok.clone(), (true, "ReportReady"), "READY", "change", false),
        ("ONETIME, FAILED", generator(json!({})), Ok(Connect), 0, vec![file("g-20261101-20261101", Some(Failed))], ok.clone(), (false, "ReportFailed"), "FAILED", "change", false),
        ("ONETIME, name taken by another's file", generator(json!({})), Ok(Connect), 0, none(), Acted::Conflict { window: 0, deleting: false }, (false, "FileConflict"), "g-20261101-20261101", "5000", true),
        ("ONETIME, name held by a file being deleted: waits quietly", generator(json!({})), Ok(Connect), 0, none(), Acted::Conflict { window: 0, deleting: true }, (false, "ReportInProgress"), "", "5000", false),
        ("PERIODIC, working", periodic(json!({})), Ok(Connect), 0, vec![file("g-20261104", Some(Ready))], ok.clone(), (true, "Scheduled"), "1 READY, 0 in progress, 0 FAILED", "50400100", false),
        ("PERIODIC, the latest report FAILED", periodic(json!({})), Ok(Connect), 0,
            vec![dated("g-20261103", Ready, "2026-11-03T23:59:59Z", "2026-11-04T00:05:00Z"), dated("g-20261104", Failed, "2026-11-04T23:59:59Z", "2026-11-05T00:05:00Z")],
            ok.clone(), (false, "LastReportFailed"), "ReportFile \"g-20261104\", FAILED: COMMERCE failed the report: NO_DATA; Ready again", "50400100", false),
        ("PERIODIC, a newer window READY after a failure", periodic(json!({})), Ok(Connect), 0,
            vec![dated("g-20261103", Failed, "2026-11-03T23:59:59Z", "2026-11-05T09:00:00Z"), dated("g-20261104", Ready, "2026-11-04T23:59:59Z", "2026-11-05T00:05:00Z")],
            ok.clone(), (true, "Scheduled"), "1 READY, 0 in progress, 1 FAILED", "50400100", false),
        ("PERIODIC, one window: the later completion counts", periodic(json!({})), Ok(Connect), 0,
            vec![dated("g-20261104-a", Ready, "2026-11-04T23:59:59Z", "2026-11-05T00:05:00Z"), dated("g-20261104-b", Failed, "2026-11-04T23:59:59Z", "2026-11-05T00:06:00Z")],
            ok.clone(), (false, "LastReportFailed"), "g-20261104-b", "50400100", false),
        ("PERIODIC, a report in progress does not count yet", periodic(json!({})), Ok(Connect), 0,
            vec![dated("g-20261103", Failed, "2026-11-03T23:59:59Z", "2026-11-04T00:05:00Z"), file("g-20261104", Some(InProgress))],
            ok.clone(), (false, "LastReportFailed"), "0 READY, 1 in progress, 1 FAILED", "50400100", false),
        ("ON_INVOICE, the latest invoice report FAILED", own(json!({"eventType": "ON_INVOICE", "parameters": {"startDate": null, "endDate": null}})), Ok(Cmp), 0,
            vec![dated("g-a", Ready, "2026-10-31T23:59:59Z", "2026-11-01T01:00:00Z"), dated("g-b", Failed, "2026-11-30T23:59:59Z", "2026-11-01T00:00:00Z")],
            ok.clone(), (false, "LastReportFailed"), "\"g-b\"", "change", false),
        ("PERIODIC, 200 reports in progress", periodic(json!({"parameters": {"startDate": "2026-10-01T00:00:00Z"}})), Ok(Connect), 200, none(), ok.clone(), (true, "Throttled"), "at most 200 reports", "60000", true),
        ("PERIODIC, a window's name is taken", periodic(json!({"parameters": {"startDate": "2026-10-30T00:00:00Z"}})), Ok(Connect), 0, none(), Acted::Conflict { window: 1, deleting: false }, (false, "FileConflict"), "taken", "5000", true),
        ("RDE, the platform answers 503", own(json!({})), Ok(Rde), 0, none(), Acted::Failed(transient), (false, "BackendError"), "submit on RDE", "7000", false),
        ("RDE, the platform refuses the template", own(json!({})), Ok(Rde), 0, none(), Acted::Failed(refused), (false, "Rejected"), "bad template", "change", true),
        ("RDE, the credentials stopped working", own(json!({})), Ok(Rde), 0, none(), Acted::Failed(unauthorized), (false, "Unauthorized"), "401", "30000", false),
        // A setting the backend type cannot honour is refused, naming the field and the type.
        ("RDE suspended", rde_periodic(json!({"schedule": {"suspend": true}})), Ok(Rde), 0, none(), ok.clone(), (false, "UnsupportedSetting"), "schedule.suspend on RDE PERIODIC: an RDEReportTemplate has no suspend flag", "change", true),
        ("RDE with a cron", rde_periodic(json!({"schedule": {"cron": "0 6 * * *"}})), Ok(Rde), 0, none(), ok.clone(), (false, "UnsupportedSetting"), "schedule.cron on RDE PERIODIC", "change", true),
        ("RDE in another time zone", rde_periodic(json!({"schedule": {"timeZone": "Europe/Madrid"}})), Ok(Rde), 0, none(), ok.clone(), (false, "UnsupportedSetting"), "schedule.timeZone on RDE", "change", true),
        ("RDE with a starting deadline", rde_periodic(json!({"schedule": {"startingDeadlineSeconds": 60}})), Ok(Rde), 0, none(), ok.clone(), (false, "UnsupportedSetting"), "schedule.startingDeadlineSeconds on RDE", "change", true),
        ("RDE with Forbid", rde_periodic(json!({"schedule": {"concurrencyPolicy": "Forbid"}})), Ok(Rde), 0, none(), ok.clone(), (false, "UnsupportedSetting"), "schedule.concurrencyPolicy on RDE", "change", true),
        ("RDE with a catch-up policy", rde_periodic(json!({"schedule": {"catchUpPolicy": "Latest"}})), Ok(Rde), 0, none(), ok.clone(), (false, "UnsupportedSetting"), "schedule.catchUpPolicy on RDE", "change", true),
        ("RDE asked to run now", run_now(rde_periodic(json!({})), "1"), Ok(Rde), 0, none(), ok.clone(), (false, "UnsupportedSetting"), "annotation reporting.report-operator.io/run-now on RDE PERIODIC: the platform has no call", "change", true),
        ("RDE PERIODIC with a backfill start", rde_periodic(json!({"parameters": {"startDate": "2026-10-01T00:00:00Z"}})), Ok(Rde), 0, none(), ok.clone(), (false, "UnsupportedSetting"), "parameters.startDate on RDE PERIODIC: a template reports on the periods after it is made", "change", true),
        ("RDE ON_INVOICE with an end date", own(json!({"eventType": "ON_INVOICE", "parameters": {"startDate": null}})), Ok(Rde), 0, none(), ok.clone(), (false, "UnsupportedSetting"), "parameters.endDate on RDE ON_INVOICE", "change", true),
        ("RDE ONETIME with a period", own(json!({"parameters": {"period": "P1D"}})), Ok(Rde), 0, none(), ok.clone(), (false, "UnsupportedSetting"), "parameters.period on RDE ONETIME", "change", true),
        ("RDE ONETIME suspended", own(json!({"schedule": {"suspend": true}})), Ok(Rde), 0, none(), ok.clone(), (false, "UnsupportedSetting"), "schedule.suspend on RDE ONETIME", "change", true),
        ("RDE with another type's parameter", generator(json!({"parameters": {"reportType": null, "scope": null}})), Ok(Rde), 0, none(), ok.clone(), (false, "UnsupportedSetting"), "parameters.template on RDE ONETIME: an RDEReportTemplate has no such parameter", "change", true),
        ("CMP ON_INVOICE suspended", own(json!({"eventType": "ON_INVOICE", "parameters": {"startDate": null, "endDate": null}, "schedule": {"suspend": true}})), Ok(Cmp), 0, none(), ok.clone(), (false, "UnsupportedSetting"), "schedule.suspend on CMP ON_INVOICE: the platform makes a report when an invoice appears", "change", true),
        ("CMP ON_INVOICE with a customization", own(json!({"eventType": "ON_INVOICE", "parameters": {"startDate": null, "endDate": null, "customizationName": "c"}})), Ok(Cmp), 0, none(), ok.clone(), (false, "UnsupportedSetting"), "parameters.customizationName on CMP ON_INVOICE", "change", true),
        ("CMP ONETIME with a cron", own(json!({"schedule": {"cron": "@daily"}})), Ok(Cmp), 0, none(), ok.clone(), (false, "UnsupportedSetting"), "schedule.cron on CMP ONETIME", "change", true),
        ("CMP ONETIME with a period", own(json!({"parameters": {"period": "P1D"}})), Ok(Cmp), 0, none(), ok.clone(), (false, "UnsupportedSetting"), "parameters.period on CMP ONETIME", "change", true),
        ("CMP with another type's parameter", own(json!({"parameters": {"organizations": ["o"]}})), Ok(Cmp), 0, none(), ok.clone(), (false, "UnsupportedSetting"), "parameters.organizations on CMP ONETIME", "change", true),
        ("CONNECT with another type's parameter", generator(json!({"parameters": {"reportType": "REPORT_TYPE_OTHER"}})), Ok(Connect), 0, none(), ok.clone(), (false, "UnsupportedSetting"), "parameters.reportType on CONNECT ONETIME: a Connect report request has no such parameter", "change", true),
        ("FUSION asked to e-mail", generator(json!({"notifyByEmail": true})), Ok(Fusion), 0, none(), ok.clone(), (false, "UnsupportedSetting"), "notifyByEmail on FUSION ONETIME", "change", true),
        ("SUPPLIER ONETIME with a cron", generator(json!({"schedule": {"cron": "@daily"}})), Ok(Supplier), 0, none(), ok.clone(), (false, "UnsupportedSetting"), "schedule.cron on SUPPLIER ONETIME", "change", true),
        ("SUPPLIER with a Connect date parameter", generator(json!({"parameters": {"dateParameter": "period"}})), Ok(Supplier), 0, none(), ok.clone(), (false, "UnsupportedSetting"), "parameters.dateParameter on SUPPLIER ONETIME", "change", true),
        // What a type honours is not refused.
        ("RDE PERIODIC, suspend false, UTC, history limits", rde_periodic(json!({"schedule": {"suspend": false, "timeZone": "UTC", "successfulReportsHistoryLimit": 5}})), Ok(Rde), 0, none(), ok.clone(), (true, "Scheduled"), "", "change", false),
        ("RDE run-now value acted on before is no request", run_now(rde_periodic(json!({})), "done"), Ok(Rde), 0, none(), ok.clone(), (true, "Scheduled"), "", "change", false),
        ("CMP PERIODIC, every knob: the operator schedules", periodic(json!({"parameters": {"template": null, "reportType": null, "scope": null, "customizationName": "c"},
            "schedule": {"suspend": true, "cron": "@daily", "timeZone": "Europe/Madrid", "concurrencyPolicy": "Forbid", "catchUpPolicy": "Latest", "startingDeadlineSeconds": 60}})),
            Ok(Cmp), 0, none(), ok.clone(), (true, "Scheduled"), "", "change", false),
    ];
    for (situation, g, answer, active, files, acted, (ready, reason), needle, requeue, warned) in rows {
        let mut status = ReportGeneratorStatus {
            last_run_now: Some("done".into()),
            ..Default::default()
        };
        let (outcome, _) = pass(&g, answer, &mut status, active, &files, acted);
        let cond = outcome
            .ready
            .clone()
            .expect("a concluded outcome has a Ready condition");
        assert_eq!(
            (cond.status, cond.reason.as_str()),
            (ready, reason),
            "{situation}"
        );
        assert!(
            cond.message.contains(needle),
            "{situation}: {:?} lacks {needle:?}",
            cond.message
        );
        assert_eq!(
            outcome
                .requeue
                .map_or("change".to_string(), |d| d.as_millis().to_string()),
            requeue,
            "{situation}"
        );
        let event = outcome
            .event
            .as_ref()
            .map(|n| (n.type_ == K8sEvent::Warning, n.reason.as_str()));
        assert_eq!(event, warned.then_some((true, reason)), "{situation}");
    }
}

#[test]
fn a_problem_is_told_once_per_change_of_reason() {
    let g = generator(json!({"format": "XLSX"}));
    let mut status = ReportGeneratorStatus::default();
    let (first, _) = pass(&g, Ok(BackendType::Supplier), &mut status, 0, &[], Acted::Created);
    assert!(first.event.is_some());
    let cond = first.ready.clone().expect("ready");
    crate::controller::conditions::set_condition(&mut status.conditions, cond, Some(1), t(NOW));
    let (again, _) = pass(&g, Ok(BackendType::Supplier), &mut status, 0, &[], Acted::Created);
    assert_eq!(
        (again.ready.map(|c| c.reason.as_str()), again.event),
        (Some("UnsupportedFormat"), None)
    );
}

/// (situation, generator, status before, reports in progress, calls' result,
///  windows created (day of month), windows missed, lastWindowEnd after, requeue ms or "change")
type PeriodicRow = (
    &'static str,
    ReportGenerator,
    ReportGeneratorStatus,
    usize,
    Acted,
    Vec<u32>,
    usize,
    Option<&'static str>,
    &'static str,
);

#[test]
fn every_catch_up_and_concurrency_case_plans_as_a_cronjob_would() {
    let status = |last_end: Option<&str>, last_check: Option<&str>| ReportGeneratorStatus {
        last_window_end: last_end.map(t),
        last_schedule_check_time: last_check.map(t),
        ..Default::default()
    };
    let fresh = || status(None, None);
    // Running until a minute ago, the windows up to Nov 3 made: Nov 4 fell due 10 h ago, while it ran.
    let running = || status(Some("2026-11-03T23:59:59Z"), Some("2026-11-05T09:59:00Z"));
    // Down since Nov 1, the windows up to Oct 31 made: Nov 1 to 4 fell due while it was down.
    let down = || status(Some("2026-10-31T23:59:59Z"), Some("2026-11-01T00:30:00Z"));
    let ok = || Acted::Created;
    #[rustfmt::skip]
    let rows: Vec<PeriodicRow> = vec![
        ("created on Nov 1: each day since is made, the first at the boundary after creation", periodic(json!({})), fresh(), 0, ok(), vec![1, 2, 3, 4], 0, Some("2026-11-04T23:59:59Z"), "50400100"),
        ("running: a due window is made", periodic(json!({})), running(), 0, ok(), vec![4], 0, Some("2026-11-04T23:59:59Z"), "50400100"),
        ("down, catchUpPolicy All: every missed day is made", periodic(json!({})), down(), 0, ok(), vec![1, 2, 3, 4], 0, Some("2026-11-04T23:59:59Z"), "50400100"),
        ("down, catchUpPolicy Latest: the latest is made, the rest recorded", periodic(json!({"schedule": {"catchUpPolicy": "Latest"}})), down(), 0, ok(), vec![4], 3, Some("2026-11-04T23:59:59Z"), "50400100"),
        ("down, catchUpPolicy None: all recorded as missed", periodic(json!({"schedule": {"catchUpPolicy": "None"}})), down(), 0, ok(), vec![], 4, Some("2026-11-04T23:59:59Z"), "50400100"),
        ("startingDeadlineSeconds: runs older than an hour are missed", periodic(json!({"schedule": {"startingDeadlineSeconds": 3600}})), running(), 0, ok(), vec![], 1, Some("2026-11-04T23:59:59Z"), "50400100"),
        ("suspended: nothing made, the window recorded, woken by a change", periodic(json!({"schedule": {"suspend": true}})), running(), 0, ok(), vec![], 1, Some("2026-11-04T23:59:59Z"), "change"),
        ("Forbid with a report running: the window waits", periodic(json!({"schedule": {"concurrencyPolicy": "Forbid"}})), running(), 1, ok(), vec![], 0, Some("2026-11-03T23:59:59Z"), "50400100"),
        ("Forbid, idle: one window at a time, the next soon", periodic(json!({"schedule": {"concurrencyPolicy": "Forbid"}})), down(), 0, ok(), vec![1], 0, Some("2026-11-01T23:59:59Z"), "1000"),
        ("Allow: windows run side by side", periodic(json!({"schedule": {"concurrencyPolicy": "Allow"}})), down(), 3, ok(), vec![1, 2, 3, 4], 0, Some("2026-11-04T23:59:59Z"), "50400100"),
        ("backfill: ten windows a pass, oldest first, the rest at once", periodic(json!({"parameters": {"startDate": "2026-10-01T00:00:00Z"}})), fresh(), 0, ok(),
            (1..=10).collect(), 0, Some("2026-10-10T23:59:59Z"), "1000"),
        ("backfill near the in-progress cap: what fits", periodic(json!({"parameters": {"startDate": "2026-10-01T00:00:00Z"}})), fresh(), 197, ok(),
            vec![1, 2, 3], 0, Some("2026-10-03T23:59:59Z"), "60000"),
        ("a window's name taken: the mark stops before it", periodic(json!({})), down(), 0, Acted::Conflict { window: 2, deleting: false }, vec![1, 2, 3, 4], 0, Some("2026-11-02T23:59:59Z"), "5000"),
    ];
    for (situation, g, mut status, active, acted, created, missed, mark, requeue) in rows {
        let (outcome, planned) = pass(&g, Ok(BackendType::Connect), &mut status, active, &[], acted);
        let plan = planned.expect(situation).plan;
        let days: Vec<u32> = plan
            .create
            .iter()
            .map(|w| chrono::Datelike::day(&w.start))
            .collect();
        assert_eq!(days, created, "{situation}");
        assert_eq!(plan.missed.len(), missed, "{situation}");
        assert_eq!(status.last_window_end, mark.map(t), "{situation}");
        assert_eq!(
            outcome
                .requeue
                .map_or("change".to_string(), |d| d.as_millis().to_string()),
            requeue,
            "{situation}"
        );
        if missed > 0 {
            assert_eq!(status.last_missed_time, Some(t(NOW)), "{situation}");
        }
    }
}

#[test]
fn fusion_takes_snapshots_never_backfilled_windows() {
    let now = t(NOW);
    // ONETIME without dates: one snapshot, named as one.
    let g = for_type(
        &generator(json!({"parameters": {"startDate": null, "endDate": null}})),
        Some(BackendType::Fusion),
    );
    let status = ReportGeneratorStatus::default();
    match start(
        &g,
        &backend(BackendType::Fusion),
        &caps(BackendType::Fusion),
        &status,
        now,
    ) {
        Ok(Start::Onetime(files)) => {
            assert_eq!(files.len(), 1);
            assert_eq!(files[0].name, "g-snapshot");
            assert_eq!(
                (files[0].parameters.start_date, files[0].parameters.end_date),
                (None, None)
            );
        }
        other => panic!("a FUSION snapshot without dates: {other:?}"),
    }
    // ONETIME with dates: they name the file, which carries none.
    let g = for_type(&generator(json!({})), Some(BackendType::Fusion));
    match start(
        &g,
        &backend(BackendType::Fusion),
        &caps(BackendType::Fusion),
        &status,
        now,
    ) {
        Ok(Start::Onetime(files)) => {
            assert_eq!(files[0].name, "g-20261101-20261101");
            assert_eq!(
                (files[0].parameters.start_date, files[0].parameters.end_date),
                (None, None)
            );
        }
        other => panic!("a FUSION snapshot with dates: {other:?}"),
    }
    // PERIODIC, down since Nov 1: the latest run is taken now, the others recorded as missed
    // with a message that says why, and no file carries a window's dates.
    let g = periodic(json!({}));
    let down = |type_| {
        let mut status = ReportGeneratorStatus {
            last_window_end: Some(t("2026-10-31T23:59:59Z")),
            last_schedule_check_time: Some(t("2026-11-01T00:30:00Z")),
            ..Default::default()
        };
        pass(&g, Ok(type_), &mut status, 0, &[], Acted::Created)
            .1
            .expect("planned")
    };
    let p = down(BackendType::Fusion);
    assert!(p.snapshots);
    let days: Vec<u32> = p
        .plan
        .create
        .iter()
        .map(|w| chrono::Datelike::day(&w.start))
        .collect();
    assert_eq!(days, vec![4], "only the latest run");
    assert_eq!(p.plan.missed.len(), 3);
    let (window, why) = p.plan.missed[0];
    assert!(missed_message(&window, why, true).contains("FUSION snapshot taken now"));
    for f in p.files(&g, &p.plan.create[0]) {
        assert_eq!(
            (f.parameters.start_date, f.parameters.end_date),
            (None, None),
            "a snapshot covers no window"
        );
    }
    // A CONNECT generator in the same situation makes every window, each with its dates.
    let p = down(BackendType::Connect);
    assert_eq!(p.plan.create.len(), 4);
    assert!(p.files(&g, &p.plan.create[0])[0].parameters.start_date.is_some());
}

#[test]
fn run_now_makes_the_latest_window_once_per_value() {
    let mut g = periodic(json!({"schedule": {"suspend": true}}));
    g.metadata.annotations = Some([(ANNOTATION_RUN_NOW.to_string(), "1".to_string())].into());
    let mut status = ReportGeneratorStatus {
        last_window_end: Some(t("2026-11-03T23:59:59Z")),
        last_schedule_check_time: Some(t("2026-11-05T09:59:00Z")),
        ..Default::default()
    };
    let (_, planned) = pass(&g, Ok(BackendType::Connect), &mut status, 0, &[], Acted::Created);
    assert_eq!(planned.expect("plan").plan.create.len(), 1);
    assert_eq!(status.last_run_now.as_deref(), Some("1"));
    let (_, again) = pass(&g, Ok(BackendType::Connect), &mut status, 0, &[], Acted::Created);
    assert!(
        again.expect("plan").plan.create.is_empty(),
        "the same value does not run again"
    );
}

#[test]
fn the_mirror_mark_never_passes_a_report_whose_file_name_is_taken() {
    let (d1, d2, d3) = (
        t("2026-11-01T00:00:00Z"),
        t("2026-11-02T00:00:00Z"),
        t("2026-11-03T00:00:00Z"),
    );
    // (old mark, mirrored, blocked, new mark)
    let cases = [
        (None, vec![], vec![], None),
        (Some(d1), vec![], vec![], Some(d1)),
        (None, vec![d1, d3, d2], vec![], Some(d3)),
        (None, vec![d1, d3], vec![d2], Some(d1)),
        (Some(d1), vec![d3], vec![d2], Some(d1)),
        (None, vec![d2], vec![d2], None),
    ];
    for (old, mirrored, blocked, expected) in cases {
        assert_eq!(
            mirror_mark(old, &mirrored, &blocked),
            expected,
            "{old:?} {mirrored:?} {blocked:?}"
        );
    }
}

#[test]
fn mirrored_reports_are_the_new_ones_only() {
    let g = generator(json!({"eventType": "ON_INVOICE"}));
    let at = |s: &str, id: &str| RemoteReport {
        generate_date: Some(t(s)),
        ..RemoteReport::new(id, crate::backend::ReportState::Ready)
    };
    let remote = [
        at("2026-11-01T00:00:00Z", "old"),
        at("2026-11-03T00:00:00Z", "held"),
        at("2026-11-04T00:00:00Z", "new"),
    ];
    let mut held = (*file("g-held", Some(FileState::Ready))).clone();
    held.spec.external_id = Some("held".into());
    let picked = to_mirror(
        &g,
        &remote,
        &[Arc::new(held)],
        Some(t("2026-11-02T00:00:00Z")),
        None,
        &[],
    );
    let names: Vec<&str> = picked.iter().map(|(_, f)| f.name.as_str()).collect();
    assert_eq!(names, ["g-new"]);
    assert_eq!(picked[0].1.external_id.as_deref(), Some("new"));
}

#[test]
fn a_mirrored_file_describes_the_report_the_platform_made_not_the_generator() {
    // The generator says JSON, "Usage", 2026-11-01; the platform made a CSV report named
    // "NW Finance" for 2026-11-04 (an older template's, before the generator was edited).
    let g = own(
        json!({"eventType": "PERIODIC", "parameters": {"period": "P1D", "startDate": null, "endDate": null}, "format": "JSON"}),
    );
    let report = RemoteReport {
        name: Some("NW Finance".into()),
        format: Some(crate::api::ReportFormat::Csv),
        start_date: Some(t("2026-11-04T00:00:00Z")),
        end_date: Some(t("2026-11-04T23:59:59Z")),
        ..RemoteReport::new("r-1", crate::backend::ReportState::Ready)
    };
    let picked = to_mirror(
        &g,
        std::slice::from_ref(&report),
        &[],
        None,
        Some("tmpl-old"),
        &[],
    );
    let rf = super::super::files::build_file(&g, picked[0].1.clone());
    assert_eq!(
        (rf.spec.name.as_str(), rf.spec.format),
        ("NW Finance", crate::api::ReportFormat::Csv)
    );
    let p = rf.spec.parameters.clone().expect("parameters");
    assert_eq!(
        (p.start_date, p.end_date, p.period),
        (report.start_date, report.end_date, Some(crate::api::Period::P1D))
    );
    assert_eq!(rf.spec.template_id.as_deref(), Some("tmpl-old"));
    // A report that says nothing of itself takes the generator's name and format, and no dates.
    let bare = RemoteReport::new("r-2", crate::backend::ReportState::Ready);
    let picked = to_mirror(&g, std::slice::from_ref(&bare), &[], None, None, &[]);
    let rf = super::super::files::build_file(&g, picked[0].1.clone());
    assert_eq!(
        (rf.spec.name.as_str(), rf.spec.format),
        ("Usage", crate::api::ReportFormat::Json)
    );
    assert_eq!(rf.spec.parameters.and_then(|p| p.start_date), None);
}

#[test]
fn a_period_another_template_reported_on_is_not_mirrored_twice() {
    let g = own(
        json!({"eventType": "PERIODIC", "parameters": {"period": "P1D", "startDate": null, "endDate": null}}),
    );
    let day = |id: &str, d: &str| RemoteReport {
        start_date: Some(t(&format!("{d}T00:00:00Z"))),
        end_date: Some(t(&format!("{d}T23:59:59Z"))),
        ..RemoteReport::new(id, crate::backend::ReportState::Ready)
    };
    let mut old = (*file("g-a", Some(FileState::Ready))).clone();
    old.spec.template_id = Some("tmpl-old".into());
    old.spec.parameters = Some(ReportParameters {
        start_date: day("", "2026-11-04").start_date,
        end_date: day("", "2026-11-04").end_date,
        ..Default::default()
    });
    let owned = [Arc::new(old)];
    let remote = [day("b", "2026-11-04"), day("c", "2026-11-05")];
    let ids = |template: Option<&str>| {
        to_mirror(&g, &remote, &owned, None, template, &[])
            .iter()
            .map(|(r, _)| r.id.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        ids(Some("tmpl-new")),
        ["c"],
        "the new template's report of Nov 4 is the old one's period"
    );
    assert_eq!(
        ids(Some("tmpl-old")),
        ["b", "c"],
        "one template's own reports are all its own"
    );
    assert_eq!(
        ids(None),
        ["b", "c"],
        "CMP invoice reports are not matched by period"
    );
    let onetime = own(json!({}));
    assert_eq!(
        to_mirror(&onetime, &remote, &owned, None, Some("tmpl-new"), &[]).len(),
        2,
        "an edited ONETIME generator reports again"
    );
    // The old template's report of Nov 5 was mirrored earlier in this pass: not in the cache yet.
    let nov5 = [day("d", "2026-11-05")];
    let just_now = to_mirror(&g, &nov5, &[], None, Some("tmpl-old"), &[]);
    let planned: Vec<PlannedFile> = just_now.into_iter().map(|(_, f)| f).collect();
    assert!(
        to_mirror(&g, &remote, &owned, None, Some("tmpl-new"), &planned).is_empty(),
        "Nov 4 and Nov 5 are reported on"
    );
}

#[test]
fn an_rde_template_is_replaced_when_its_settings_change() {
    let st = |id: Option<&str>, settings: Option<&str>| ReportGeneratorStatus {
        external_id: id.map(str::to_string),
        template_settings: settings.map(str::to_string),
        ..Default::default()
    };
    // (status, settings the spec makes now, step)
    let cases = [
        (st(None, None), Some("a"), TemplateStep::Create),
        (
            st(Some("t1"), Some("a")),
            Some("a"),
            TemplateStep::Keep("t1".into()),
        ),
        (
            st(Some("t1"), Some("a")),
            Some("b"),
            TemplateStep::Replace("t1".into()),
        ),
        (st(Some("t1"), None), Some("b"), TemplateStep::Adopt("t1".into())),
        (st(Some("t1"), Some("a")), None, TemplateStep::Keep("t1".into())),
    ];
    for (status, settings, step) in cases {
        assert_eq!(template_step(&status, settings), step, "{status:?} {settings:?}");
    }
    // Every field sent to the platform is in the settings.
    let req = |f: fn(&mut crate::backend::ReportRequest)| {
        let mut r = crate::backend::ReportRequest {
            key: "ns/g".into(),
            name: "NW Finance".into(),
            event_type: EventType::Periodic,
            format: crate::api::ReportFormat::Json,
            notify_by_email: false,
            parameters: ReportParameters {
                period: Some(crate::api::Period::P1D),
                ..Default::default()
            },
            organization: None,
            stored: false,
        };
        f(&mut r);
        crate::backend::rde::template_settings(&r).expect("settings")
    };
    let base = req(|_| {});
    for (what, changed) in [
        ("commonName", req(|r| r.name = "Other".into())),
        ("format", req(|r| r.format = crate::api::ReportFormat::Csv)),
        ("notifyByEmail", req(|r| r.notify_by_email = true)),
        (
            "period",
            req(|r| r.parameters.period = Some(crate::api::Period::P1M)),
        ),
        ("eventType", req(|r| r.event_type = EventType::OnInvoice)),
    ] {
        assert_ne!(base, changed, "{what}");
    }
}

#[test]
fn a_replaced_template_is_deleted_only_once_its_reports_are_finished() {
    use crate::backend::ReportState;
    let remote = |state: ReportState| vec![RemoteReport::new("r", state)];
    let mirrored = |state: Option<FileState>, template: &str| {
        let mut rf = (*file("g-r", state)).clone();
        rf.spec.template_id = Some(template.into());
        vec![Arc::new(rf)]
    };
    // (reports on the platform, created in this pass, files, deletable)
    let cases = [
        (
            remote(ReportState::Ready),
            0,
            mirrored(Some(FileState::Ready), "old"),
            true,
        ),
        (vec![], 0, vec![], true),
        (remote(ReportState::InProgress), 0, vec![], false),
        (remote(ReportState::Ready), 1, vec![], false),
        (
            remote(ReportState::Ready),
            0,
            mirrored(Some(FileState::InProgress), "old"),
            false,
        ),
        (remote(ReportState::Ready), 0, mirrored(None, "old"), false),
        (
            remote(ReportState::Ready),
            0,
            mirrored(Some(FileState::InProgress), "new"),
            true,
        ),
    ];
    for (i, (remote, created, owned, done)) in cases.into_iter().enumerate() {
        assert_eq!(
            retired_template_done("old", &remote, created, &owned),
            done,
            "case {i}"
        );
    }
}

#[test]
fn history_keeps_the_newest_of_each_outcome() {
    let g =
        periodic(json!({"schedule": {"successfulReportsHistoryLimit": 1, "failedReportsHistoryLimit": 0}}));
    let files = [
        dated("g-1", FileState::Ready, "2026-11-01T23:59:59Z", NOW),
        dated("g-2", FileState::Ready, "2026-11-02T23:59:59Z", NOW),
        dated("g-3", FileState::Failed, "2026-11-03T23:59:59Z", NOW),
        dated("g-4", FileState::InProgress, "2026-11-04T23:59:59Z", NOW),
    ];
    assert_eq!(to_prune(&g, &files), ["g-1", "g-3"]);
}

#[test]
fn starting_deadlines_no_duration_holds_are_refused_not_a_panic() {
    assert_eq!(starting_deadline(None), Ok(None));
    assert_eq!(starting_deadline(Some(0)), Ok(Some(TimeDelta::zero())));
    assert_eq!(starting_deadline(Some(2_592_000)), Ok(Some(TimeDelta::days(30))));
    for bad in [i64::MAX, i64::MIN, -1, i64::MAX / 1000 + 1] {
        let err = starting_deadline(Some(bad))
            .unwrap_err()
            .ready
            .expect("condition");
        assert_eq!(err.reason, "InvalidSchedule", "{bad}");
        assert!(err.message.contains(&bad.to_string()), "{}", err.message);
    }
}

#[test]
fn backfill_message_names_the_limit_and_what_to_change() {
    let i = backfill_too_long(
        t("0001-01-01T00:00:00Z"),
        crate::api::Period::P1D,
        t("2024-03-01T00:00:00Z"),
    )
    .ready
    .expect("condition");
    assert_eq!(i.reason, "BackfillTooLong");
    for needle in [
        "0001-01-01T00:00:00+00:00",
        "1000 P1D windows",
        "2024-03-01T00:00:00+00:00 or later",
    ] {
        assert!(i.message.contains(needle), "{needle}: {}", i.message);
    }
}
