//! The ReportGenerator driver as it runs: the real reconcile against the API server and
//! fake backends of [`fixtures`](crate::controller::fixtures), at a fixed time ([`NOW`]).
//! Every Ready reason and every catch-up and concurrency case is a row here, so that what a
//! row proves is what the driver does, calls and all; the pure decisions have their own
//! tables in `decide_tests.rs`.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::runtime::controller::Action;
use serde_json::{Value, json};

use super::reconcile;
use super::testing::*;
use crate::api::{
    ANNOTATION_RUN_NOW, BackendType, FileState, LABEL_GENERATOR, ReportFile, ReportGenerator,
    ReportGeneratorStatus,
};
use crate::backend::{BackendError, RemoteReport, ReportState};
use crate::controller::fixtures::{API_VERSION, NS, World};

/// The ReportBackend `b` a row's generator uses.
#[derive(Clone, Copy)]
enum Backend {
    /// There is none.
    Missing,
    /// It is not Ready (its credentials are refused).
    Broken,
    /// Ready, of this type, answered by a fake.
    Up(BackendType),
}

/// What the calls of a pass come to, as a row says.
#[derive(Clone)]
enum Acted {
    /// Every call succeeds: files are created, an RDE template is made (`tmpl-1`), listings
    /// find nothing new.
    Created,
    /// A ReportFile `name` that is not the generator's is in the way (or is being deleted).
    Conflict { name: &'static str, deleting: bool },
    /// The backend refuses the generator's own call (an RDE template).
    Failed(BackendError),
}

/// `obj` as JSON for the API server, with its kind.
fn object(kind: &str, obj: &impl serde::Serialize) -> Value {
    let mut value = serde_json::to_value(obj).expect("JSON");
    value["apiVersion"] = json!(API_VERSION);
    value["kind"] = json!(kind);
    value
}

/// `rf` as a ReportFile the generator `g` controls.
fn owned_by(rf: &ReportFile) -> Value {
    let mut value = object("ReportFile", rf);
    value["metadata"]["namespace"] = json!(NS);
    value["metadata"]["labels"] = json!({LABEL_GENERATOR: "g"});
    value["metadata"]["ownerReferences"] = json!([{"apiVersion": API_VERSION, "kind": "ReportGenerator",
        "name": "g", "uid": "uid-g", "controller": true}]);
    value
}

/// A world at [`NOW`] with `g` (`status` its status), its backend, its `files`, `active`
/// reports in progress, and what `acted` needs.
fn world_of(
    g: &ReportGenerator,
    backend: Backend,
    status: ReportGeneratorStatus,
    active: usize,
    files: &[Arc<ReportFile>],
    acted: Acted,
) -> World {
    let mut world = World::new();
    world.ctx.set_now(t(NOW));
    let type_ = match backend {
        Backend::Missing => None,
        Backend::Broken => {
            world.broken_backend("b", BackendType::Connect);
            None
        }
        Backend::Up(type_) => {
            let fake = world.backend("b", type_);
            let template = RemoteReport::new("tmpl-1", ReportState::InProgress);
            match acted.clone() {
                Acted::Failed(e) => fake.on_submit(Err(e)),
                _ => fake
                    .on_submit(Ok(template.clone()))
                    .on_get(Ok(template))
                    .on_list(Ok(vec![])),
            };
            Some(type_)
        }
    };
    let mut g = for_type(g, type_);
    g.status = Some(status);
    world.api.put(object("ReportGenerator", &g));
    for rf in files {
        world.api.put(owned_by(rf));
    }
    for i in 0..active {
        world.api.put(owned_by(&file(
            &format!("running-{i}"),
            Some(FileState::InProgress),
        )));
    }
    if let Acted::Conflict { name, deleting } = acted {
        let mut theirs = object("ReportFile", &*file(name, Some(FileState::Ready)));
        theirs["metadata"]["namespace"] = json!(NS);
        if deleting {
            theirs["metadata"]["deletionTimestamp"] = json!(NOW);
            theirs["metadata"]["finalizers"] = json!(["someone-else/finalizer"]);
        }
        world.api.put(theirs);
    }
    world.sync();
    world
}

/// Reconciles the generator `g` of `world` once.
async fn run(world: &World) -> Action {
    let g: Arc<ReportGenerator> = world.cached("g").expect("the generator in the cache");
    reconcile(g, world.ctx.clone())
        .await
        .expect("the reconcile succeeds")
}

/// The `Action` a row says: a requeue after its milliseconds, or "change".
fn requeue(row: &str) -> Action {
    match row {
        "change" => Action::await_change(),
        ms => Action::requeue(Duration::from_millis(ms.parse().expect("milliseconds"))),
    }
}

/// (situation, generator, backend, reports in progress, files, calls' result,
///  Ready status and reason, in the message, requeue in ms or "change", Warning Event)
type Row = (
    &'static str,
    ReportGenerator,
    Backend,
    usize,
    Vec<Arc<ReportFile>>,
    Acted,
    (bool, &'static str),
    &'static str,
    &'static str,
    bool,
);

#[tokio::test]
async fn every_ready_reason_of_a_generator_is_reached() {
    use Backend::*;
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
        ("no backend of that name", generator(json!({})), Missing, 0, none(), ok.clone(), (false, "BackendNotFound"), "does not exist", "30000", true),
        ("backend not Ready: waits without a warning of its own", generator(json!({})), Broken, 0, none(), ok.clone(), (false, "BackendNotReady"), "Unauthorized", "30000", false),
        ("ON_INVOICE on CONNECT", generator(json!({"eventType": "ON_INVOICE"})), Up(Connect), 0, none(), ok.clone(), (false, "UnsupportedEventType"), "eventType ON_INVOICE", "change", true),
        ("XLSX where only CSV is made", generator(json!({"format": "XLSX"})), Up(Supplier), 0, none(), ok.clone(), (false, "UnsupportedFormat"), "support format CSV, not XLSX", "change", true),
        ("weekly on RDE", periodic(json!({"parameters": {"period": "P1W", "template": null, "reportType": null, "scope": null}})), Up(Rde), 0, none(), ok.clone(), (false, "UnsupportedPeriod"), "period P1W", "change", true),
        ("CONNECT without a template", generator(json!({"parameters": {"template": ""}})), Up(Connect), 0, none(), ok.clone(), (false, "InvalidParameters"), "parameters.template", "change", true),
        ("SUPPLIER without a report type", generator(json!({"parameters": {"reportType": null}})), Up(Supplier), 0, none(), ok.clone(), (false, "InvalidParameters"), "parameters.reportType", "change", true),
        ("FUSION without a scope", generator(json!({"parameters": {"scope": null}})), Up(Fusion), 0, none(), ok.clone(), (false, "InvalidParameters"), "parameters.scope", "change", true),
        ("ONETIME without dates on CONNECT", generator(json!({"parameters": {"startDate": null, "endDate": null}})), Up(Connect), 0, none(), ok.clone(), (false, "InvalidParameters"), "needs parameters.startDate and parameters.endDate on CONNECT", "change", true),
        ("PERIODIC FUSION with a backfill start", periodic(json!({"parameters": {"startDate": "2026-10-01T00:00:00Z"}})), Up(Fusion), 0, none(), ok.clone(), (false, "UnsupportedSetting"), "UnsupportedSetting: parameters.startDate on FUSION", "change", true),
        ("PERIODIC FUSION with catchUpPolicy All", periodic(json!({"schedule": {"catchUpPolicy": "All"}})), Up(Fusion), 0, none(), ok.clone(), (false, "UnsupportedSetting"), "UnsupportedSetting: schedule.catchUpPolicy All on FUSION", "change", true),
        ("a deadline no duration holds", generator(json!({"activeDeadlineSeconds": i64::MAX})), Up(Connect), 0, none(), ok.clone(), (false, "InvalidParameters"), "activeDeadlineSeconds", "change", true),
        ("PERIODIC without a period", periodic(json!({"parameters": {"period": null}})), Up(Connect), 0, none(), ok.clone(), (false, "InvalidParameters"), "parameters.period", "change", true),
        ("a cron that does not parse", periodic(json!({"schedule": {"cron": "61 * * * *"}})), Up(Connect), 0, none(), ok.clone(), (false, "InvalidSchedule"), "", "change", true),
        ("an unknown time zone", periodic(json!({"schedule": {"timeZone": "Mars/Olympus"}})), Up(Connect), 0, none(), ok.clone(), (false, "InvalidSchedule"), "Mars/Olympus", "change", true),
        ("a negative starting deadline", periodic(json!({"schedule": {"startingDeadlineSeconds": -1}})), Up(Connect), 0, none(), ok.clone(), (false, "InvalidSchedule"), "startingDeadlineSeconds -1", "change", true),
        ("a backfill from year 1", periodic(json!({"parameters": {"startDate": "0001-01-01T00:00:00Z"}})), Up(Connect), 0, none(), ok.clone(), (false, "BackfillTooLong"), "or later", "change", true),
        ("ONETIME, report made, not READY yet", generator(json!({})), Up(Connect), 0, vec![file("g-20261101-20261101", Some(InProgress))], ok.clone(), (false, "ReportInProgress"), "being generated", "change", false),
        ("ONETIME, READY", generator(json!({})), Up(Connect), 0, vec![file("g-20261101-20261101", Some(Ready))], ok.clone(), (true, "ReportReady"), "READY", "change", false),
        ("ONETIME, FAILED", generator(json!({})), Up(Connect), 0, vec![file("g-20261101-20261101", Some(Failed))], ok.clone(), (false, "ReportFailed"), "FAILED", "change", false),
        ("ONETIME, name taken by another's file", generator(json!({})), Up(Connect), 0, none(), Acted::Conflict { name: "g-20261101-20261101", deleting: false }, (false, "FileConflict"), "g-20261101-20261101", "5000", true),
        ("ONETIME, name held by a file being deleted: waits quietly", generator(json!({})), Up(Connect), 0, none(), Acted::Conflict { name: "g-20261101-20261101", deleting: true }, (false, "ReportInProgress"), "", "5000", false),
        ("PERIODIC, working", periodic(json!({})), Up(Connect), 0, vec![file("g-20261104", Some(Ready))], ok.clone(), (true, "Scheduled"), "1 READY, 0 in progress, 0 FAILED", "50400100", false),
        ("PERIODIC, the latest report FAILED", periodic(json!({})), Up(Connect), 0,
            vec![dated("g-20261103", Ready, "2026-11-03T23:59:59Z", "2026-11-04T00:05:00Z"), dated("g-20261104", Failed, "2026-11-04T23:59:59Z", "2026-11-05T00:05:00Z")],
            ok.clone(), (false, "LastReportFailed"), "ReportFile \"g-20261104\", FAILED: COMMERCE failed the report: NO_DATA; Ready again", "50400100", false),
        ("PERIODIC, a newer window READY after a failure", periodic(json!({})), Up(Connect), 0,
            vec![dated("g-20261103", Failed, "2026-11-03T23:59:59Z", "2026-11-05T09:00:00Z"), dated("g-20261104", Ready, "2026-11-04T23:59:59Z", "2026-11-05T00:05:00Z")],
            ok.clone(), (true, "Scheduled"), "1 READY, 0 in progress, 1 FAILED", "50400100", false),
        ("PERIODIC, one window: the later completion counts", periodic(json!({})), Up(Connect), 0,
            vec![dated("g-20261104-a", Ready, "2026-11-04T23:59:59Z", "2026-11-05T00:05:00Z"), dated("g-20261104-b", Failed, "2026-11-04T23:59:59Z", "2026-11-05T00:06:00Z")],
            ok.clone(), (false, "LastReportFailed"), "g-20261104-b", "50400100", false),
        ("PERIODIC, a report in progress does not count yet", periodic(json!({})), Up(Connect), 0,
            vec![dated("g-20261103", Failed, "2026-11-03T23:59:59Z", "2026-11-04T00:05:00Z"), file("g-20261104", Some(InProgress))],
            ok.clone(), (false, "LastReportFailed"), "0 READY, 1 in progress, 1 FAILED", "50400100", false),
        ("ON_INVOICE, the latest invoice report FAILED", own(json!({"eventType": "ON_INVOICE", "parameters": {"startDate": null, "endDate": null}})), Up(Cmp), 0,
            vec![dated("g-a", Ready, "2026-10-31T23:59:59Z", "2026-11-01T01:00:00Z"), dated("g-b", Failed, "2026-11-30T23:59:59Z", "2026-11-01T00:00:00Z")],
            ok.clone(), (false, "LastReportFailed"), "\"g-b\"", "30000", false),
        ("PERIODIC, 200 reports in progress", periodic(json!({"parameters": {"startDate": "2026-10-01T00:00:00Z"}})), Up(Connect), 200, none(), ok.clone(), (true, "Throttled"), "at most 200 reports", "60000", true),
        ("PERIODIC, a window's name is taken", periodic(json!({"parameters": {"startDate": "2026-10-30T00:00:00Z"}})), Up(Connect), 0, none(), Acted::Conflict { name: "g-20261031", deleting: false }, (false, "FileConflict"), "\"g-20261031\"", "5000", true),
        ("RDE, the platform answers 503", own(json!({})), Up(Rde), 0, none(), Acted::Failed(transient), (false, "BackendError"), "submit on RDE", "7000", false),
        ("RDE, the platform refuses the template", own(json!({})), Up(Rde), 0, none(), Acted::Failed(refused), (false, "Rejected"), "bad template", "change", true),
        ("RDE, the credentials stopped working", own(json!({})), Up(Rde), 0, none(), Acted::Failed(unauthorized), (false, "Unauthorized"), "401", "30000", false),
        // A setting the backend type cannot honour is refused, naming the field and the type.
        ("RDE suspended", rde_periodic(json!({"schedule": {"suspend": true}})), Up(Rde), 0, none(), ok.clone(), (false, "UnsupportedSetting"), "schedule.suspend on RDE PERIODIC: an RDEReportTemplate has no suspend flag", "change", true),
        ("RDE with a cron", rde_periodic(json!({"schedule": {"cron": "0 6 * * *"}})), Up(Rde), 0, none(), ok.clone(), (false, "UnsupportedSetting"), "schedule.cron on RDE PERIODIC", "change", true),
        ("RDE in another time zone", rde_periodic(json!({"schedule": {"timeZone": "Europe/Madrid"}})), Up(Rde), 0, none(), ok.clone(), (false, "UnsupportedSetting"), "schedule.timeZone on RDE", "change", true),
        ("RDE with a starting deadline", rde_periodic(json!({"schedule": {"startingDeadlineSeconds": 60}})), Up(Rde), 0, none(), ok.clone(), (false, "UnsupportedSetting"), "schedule.startingDeadlineSeconds on RDE", "change", true),
        ("RDE with Forbid", rde_periodic(json!({"schedule": {"concurrencyPolicy": "Forbid"}})), Up(Rde), 0, none(), ok.clone(), (false, "UnsupportedSetting"), "schedule.concurrencyPolicy on RDE", "change", true),
        ("RDE with a catch-up policy", rde_periodic(json!({"schedule": {"catchUpPolicy": "Latest"}})), Up(Rde), 0, none(), ok.clone(), (false, "UnsupportedSetting"), "schedule.catchUpPolicy on RDE", "change", true),
        ("RDE asked to run now", run_now(rde_periodic(json!({})), "1"), Up(Rde), 0, none(), ok.clone(), (false, "UnsupportedSetting"), "annotation reporting.report-operator.io/run-now on RDE PERIODIC: the platform has no call", "change", true),
        ("RDE PERIODIC with a backfill start", rde_periodic(json!({"parameters": {"startDate": "2026-10-01T00:00:00Z"}})), Up(Rde), 0, none(), ok.clone(), (false, "UnsupportedSetting"), "parameters.startDate on RDE PERIODIC: a template reports on the periods after it is made", "change", true),
        ("RDE ON_INVOICE with an end date", own(json!({"eventType": "ON_INVOICE", "parameters": {"startDate": null}})), Up(Rde), 0, none(), ok.clone(), (false, "UnsupportedSetting"), "parameters.endDate on RDE ON_INVOICE", "change", true),
        ("RDE ONETIME with a period", own(json!({"parameters": {"period": "P1D"}})), Up(Rde), 0, none(), ok.clone(), (false, "UnsupportedSetting"), "parameters.period on RDE ONETIME", "change", true),
        ("RDE ONETIME suspended", own(json!({"schedule": {"suspend": true}})), Up(Rde), 0, none(), ok.clone(), (false, "UnsupportedSetting"), "schedule.suspend on RDE ONETIME", "change", true),
        ("RDE with another type's parameter", generator(json!({"parameters": {"reportType": null, "scope": null}})), Up(Rde), 0, none(), ok.clone(), (false, "UnsupportedSetting"), "parameters.template on RDE ONETIME: an RDEReportTemplate has no such parameter", "change", true),
        ("CMP ON_INVOICE suspended", own(json!({"eventType": "ON_INVOICE", "parameters": {"startDate": null, "endDate": null}, "schedule": {"suspend": true}})), Up(Cmp), 0, none(), ok.clone(), (false, "UnsupportedSetting"), "schedule.suspend on CMP ON_INVOICE: the platform makes a report when an invoice appears", "change", true),
        ("CMP ON_INVOICE with a customization", own(json!({"eventType": "ON_INVOICE", "parameters": {"startDate": null, "endDate": null, "customizationName": "c"}})), Up(Cmp), 0, none(), ok.clone(), (false, "UnsupportedSetting"), "parameters.customizationName on CMP ON_INVOICE", "change", true),
        ("CMP ONETIME with a cron", own(json!({"schedule": {"cron": "@daily"}})), Up(Cmp), 0, none(), ok.clone(), (false, "UnsupportedSetting"), "schedule.cron on CMP ONETIME", "change", true),
        ("CMP ONETIME with a period", own(json!({"parameters": {"period": "P1D"}})), Up(Cmp), 0, none(), ok.clone(), (false, "UnsupportedSetting"), "parameters.period on CMP ONETIME", "change", true),
        ("CMP with another type's parameter", own(json!({"parameters": {"organizations": ["o"]}})), Up(Cmp), 0, none(), ok.clone(), (false, "UnsupportedSetting"), "parameters.organizations on CMP ONETIME", "change", true),
        ("CONNECT with another type's parameter", generator(json!({"parameters": {"reportType": "REPORT_TYPE_OTHER"}})), Up(Connect), 0, none(), ok.clone(), (false, "UnsupportedSetting"), "parameters.reportType on CONNECT ONETIME: a Connect report request has no such parameter", "change", true),
        ("FUSION asked to e-mail", generator(json!({"notifyByEmail": true})), Up(Fusion), 0, none(), ok.clone(), (false, "UnsupportedSetting"), "notifyByEmail on FUSION ONETIME", "change", true),
        ("SUPPLIER ONETIME with a cron", generator(json!({"schedule": {"cron": "@daily"}})), Up(Supplier), 0, none(), ok.clone(), (false, "UnsupportedSetting"), "schedule.cron on SUPPLIER ONETIME", "change", true),
        ("SUPPLIER with a Connect date parameter", generator(json!({"parameters": {"dateParameter": "period"}})), Up(Supplier), 0, none(), ok.clone(), (false, "UnsupportedSetting"), "parameters.dateParameter on SUPPLIER ONETIME", "change", true),
        // What a type honours is not refused.
        ("RDE PERIODIC, suspend false, UTC, history limits", rde_periodic(json!({"schedule": {"suspend": false, "timeZone": "UTC", "successfulReportsHistoryLimit": 5}})), Up(Rde), 0, none(), ok.clone(), (true, "Scheduled"), "", "30000", false),
        ("RDE run-now value acted on before is no request", run_now(rde_periodic(json!({})), "done"), Up(Rde), 0, none(), ok.clone(), (true, "Scheduled"), "", "30000", false),
        ("CMP PERIODIC, every knob: the operator schedules", periodic(json!({"parameters": {"template": null, "reportType": null, "scope": null, "customizationName": "c"},
            "schedule": {"suspend": true, "cron": "@daily", "timeZone": "Europe/Madrid", "concurrencyPolicy": "Forbid", "catchUpPolicy": "Latest", "startingDeadlineSeconds": 60}})),
            Up(Cmp), 0, none(), ok.clone(), (true, "Scheduled"), "", "change", false),
    ];
    for (situation, g, backend, active, files, acted, (ready, reason), needle, requeue, warned) in rows {
        let status = ReportGeneratorStatus {
            last_run_now: Some("done".into()),
            ..Default::default()
        };
        let world = world_of(&g, backend, status, active, &files, acted);
        let action = run(&world).await;
        let (status, got, message) = world
            .condition("ReportGenerator", "g", "Ready")
            .unwrap_or_else(|| panic!("{situation}: no Ready condition"));
        assert_eq!((status == "True", got.as_str()), (ready, reason), "{situation}");
        assert!(
            message.contains(needle),
            "{situation}: {message:?} lacks {needle:?}"
        );
        assert_eq!(action, self::requeue(requeue), "{situation}: requeue");
        let lines = world.journal.take();
        let told = lines.iter().any(|l| *l == format!("event Warning {reason}"));
        assert_eq!(told, warned, "{situation}: a Warning with the reason: {lines:?}");
    }
}

/// A ONETIME report is made once: its ReportFile, deleted after the report finished, is not
/// made again (a backend would generate the same report twice; a restart reconciles every
/// generator), until the spec changes.
#[tokio::test]
async fn a_onetime_report_is_made_once() {
    let finished = |reason: &str, generation: i64| ReportGeneratorStatus {
        conditions: vec![Condition {
            type_: "Ready".into(),
            status: if reason == "ReportReady" { "True" } else { "False" }.into(),
            reason: reason.into(),
            message: String::new(),
            observed_generation: Some(generation),
            last_transition_time: crate::controller::conditions::to_k8s_time(t(NOW)),
        }],
        ..Default::default()
    };
    // (situation, status before, a ReportFile made, Ready after, its message)
    let rows = [
        (
            "READY, its ReportFile deleted",
            finished("ReportReady", 1),
            false,
            (true, "ReportReady"),
            "the report was READY; its ReportFile was deleted",
        ),
        (
            "FAILED, its ReportFile deleted",
            finished("ReportFailed", 1),
            false,
            (false, "ReportFailed"),
            "the report was FAILED; its ReportFile was deleted",
        ),
        (
            "READY for an earlier spec",
            finished("ReportReady", 0),
            true,
            (false, "ReportInProgress"),
            "being generated",
        ),
        (
            "still being made",
            finished("ReportInProgress", 1),
            true,
            (false, "ReportInProgress"),
            "being generated",
        ),
    ];
    for (situation, status, made, (ready, reason), needle) in rows {
        let g = generator(json!({}));
        let world = world_of(
            &g,
            Backend::Up(BackendType::Connect),
            status,
            0,
            &[],
            Acted::Created,
        );
        run(&world).await;
        let lines = world.journal.take();
        let created = lines.iter().any(|l| l.starts_with("create ReportFile/"));
        assert_eq!(created, made, "{situation}: {lines:?}");
        let (status, got, message) = world
            .condition("ReportGenerator", "g", "Ready")
            .unwrap_or_else(|| panic!("{situation}: no Ready condition"));
        assert_eq!((status == "True", got.as_str()), (ready, reason), "{situation}");
        assert!(
            message.contains(needle),
            "{situation}: {message:?} lacks {needle:?}"
        );
    }
}

#[tokio::test]
async fn a_problem_is_told_once_per_change_of_reason() {
    let g = generator(json!({"format": "XLSX"}));
    let backend = Backend::Up(BackendType::Supplier);
    let mut world = world_of(
        &g,
        backend,
        ReportGeneratorStatus::default(),
        0,
        &[],
        Acted::Created,
    );
    run(&world).await;
    assert_eq!(
        world.journal.take(),
        [
            "apply status ReportGenerator/g",
            "event Warning UnsupportedFormat"
        ]
    );
    world.sync();
    run(&world).await;
    assert_eq!(
        world.journal.take(),
        Vec::<String>::new(),
        "told once, nothing to write"
    );
}

/// (situation, generator, status before, reports in progress, calls' result,
///  windows whose ReportFiles are created (day of month), windows missed, lastWindowEnd
///  after, requeue ms or "change")
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

/// The days of month of the ReportFiles `lines` create, in order.
fn created_days(lines: &[String]) -> Vec<u32> {
    lines
        .iter()
        .filter_map(|l| l.strip_prefix("create ReportFile/g-"))
        .map(|name| name[6..8].parse().expect("a day of month"))
        .collect()
}

#[tokio::test]
async fn every_catch_up_and_concurrency_case_plans_as_a_cronjob_would() {
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
        ("a window's name taken: the mark stops before it", periodic(json!({})), down(), 0, Acted::Conflict { name: "g-20261103", deleting: false }, vec![1, 2, 4], 0, Some("2026-11-02T23:59:59Z"), "5000"),
    ];
    for (situation, g, status, active, acted, created, missed, mark, requeue) in rows {
        let backend = Backend::Up(BackendType::Connect);
        let world = world_of(&g, backend, status, active, &[], acted);
        let action = run(&world).await;
        let lines = world.journal.take();
        assert_eq!(created_days(&lines), created, "{situation}: {lines:?}");
        let missed_events = lines.iter().filter(|l| *l == "event Warning Missed").count();
        assert_eq!(missed_events, missed, "{situation}: Missed Events");
        let status: ReportGeneratorStatus =
            serde_json::from_value(world.object("ReportGenerator", "g")["status"].clone()).expect("a status");
        assert_eq!(status.last_window_end, mark.map(t), "{situation}");
        assert_eq!(action, self::requeue(requeue), "{situation}: requeue");
        if missed > 0 {
            assert_eq!(status.last_missed_time, Some(t(NOW)), "{situation}");
        }
    }
}

#[tokio::test]
async fn fusion_takes_one_snapshot_of_the_latest_missed_run_and_connect_every_window() {
    // Down since Nov 1: the latest run is taken now, the others recorded as missed with a
    // message that says why, and no file carries a window's dates.
    let g = periodic(json!({}));
    let down = || ReportGeneratorStatus {
        last_window_end: Some(t("2026-10-31T23:59:59Z")),
        last_schedule_check_time: Some(t("2026-11-01T00:30:00Z")),
        ..Default::default()
    };
    let world = world_of(
        &g,
        Backend::Up(BackendType::Fusion),
        down(),
        0,
        &[],
        Acted::Created,
    );
    run(&world).await;
    let lines = world.journal.take();
    assert_eq!(created_days(&lines), [4], "only the latest run");
    assert_eq!(lines.iter().filter(|l| *l == "event Warning Missed").count(), 3);
    let note = world.journal.note("Missed").expect("a Missed Event");
    assert!(note.contains("FUSION snapshot taken now"), "{note}");
    let made = world.object("ReportFile", "g-20261104");
    assert_eq!(
        made["spec"]["parameters"].get("startDate"),
        None,
        "a snapshot covers no window"
    );
    // A CONNECT generator in the same situation makes every window, each with its dates.
    let world = world_of(
        &g,
        Backend::Up(BackendType::Connect),
        down(),
        0,
        &[],
        Acted::Created,
    );
    run(&world).await;
    assert_eq!(created_days(&world.journal.take()), [1, 2, 3, 4]);
    let made = world.object("ReportFile", "g-20261101");
    assert_eq!(made["spec"]["parameters"]["startDate"], "2026-11-01T00:00:00Z");
}

#[tokio::test]
async fn run_now_makes_the_latest_window_once_per_value() {
    let mut g = periodic(json!({"schedule": {"suspend": true}}));
    g.metadata.annotations = Some([(ANNOTATION_RUN_NOW.to_string(), "1".to_string())].into());
    let status = ReportGeneratorStatus {
        last_window_end: Some(t("2026-11-03T23:59:59Z")),
        last_schedule_check_time: Some(t("2026-11-05T09:59:00Z")),
        ..Default::default()
    };
    let mut world = world_of(
        &g,
        Backend::Up(BackendType::Connect),
        status,
        0,
        &[],
        Acted::Created,
    );
    run(&world).await;
    assert_eq!(created_days(&world.journal.take()), [4]);
    assert_eq!(world.object("ReportGenerator", "g")["status"]["lastRunNow"], "1");
    world.sync();
    run(&world).await;
    assert_eq!(
        created_days(&world.journal.take()),
        Vec::<u32>::new(),
        "the same value does not run again"
    );
}

#[tokio::test]
async fn a_onetime_generator_creates_its_report_file_then_says_so() {
    let world = world_of(
        &generator(json!({})),
        Backend::Up(BackendType::Connect),
        ReportGeneratorStatus::default(),
        0,
        &[],
        Acted::Created,
    );
    run(&world).await;
    assert_eq!(
        world.journal.take(),
        [
            "create ReportFile/g-20261101-20261101",
            "event Normal Created",
            "apply status ReportGenerator/g",
        ]
    );
    let made = world.object("ReportFile", "g-20261101-20261101");
    assert_eq!(made["metadata"]["ownerReferences"][0]["uid"], "uid-g");
    assert_eq!(made["metadata"]["labels"][LABEL_GENERATOR], "g");
    assert_eq!(
        world.object("ReportGenerator", "g")["status"]["lastScheduleTime"],
        "2026-11-05T10:00:00Z"
    );
}

#[tokio::test]
async fn an_rde_generator_makes_its_template_once_then_mirrors_what_it_made() {
    let g = own(json!({}));
    let world = world_of(
        &g,
        Backend::Up(BackendType::Rde),
        ReportGeneratorStatus::default(),
        0,
        &[],
        Acted::Created,
    );
    run(&world).await;
    assert_eq!(
        world.journal.take(),
        [
            "patch ReportGenerator/g",
            "apply status ReportGenerator/g",
            "backend submit Usage",
            "apply status ReportGenerator/g",
            "event Normal Submitted",
            "backend list tmpl-1",
            "apply status ReportGenerator/g",
        ],
        "the finalizer, then the mark before the platform hears of it, then the id"
    );
    let marks = world.journal.bodies("apply status ReportGenerator/g");
    assert!(marks[0]["status"]["createPendingSince"].is_string());
    assert_eq!(marks[1]["status"]["externalId"], "tmpl-1");
}

/// A report the backend made, generated on `day` of November 2026.
fn made(id: &str, day: u32) -> RemoteReport {
    RemoteReport {
        generate_date: Some(t(&format!("2026-11-{day:02}T00:00:00Z"))),
        ..RemoteReport::new(id, ReportState::Ready)
    }
}

#[tokio::test]
async fn invoice_reports_are_mirrored_into_report_files_exactly_once() {
    let g = own(json!({"eventType": "ON_INVOICE", "parameters": {"startDate": null, "endDate": null}}));
    let mut world = world_of(
        &g,
        Backend::Up(BackendType::Cmp),
        ReportGeneratorStatus::default(),
        0,
        &[],
        Acted::Created,
    );
    let backend = world.backend("b", BackendType::Cmp);
    backend.on_list(Ok(vec![made("inv-1", 2), made("inv-2", 3)]));
    run(&world).await;
    assert_eq!(
        world.journal.take(),
        [
            "backend list Usage",
            "create ReportFile/g-inv-1",
            "event Normal Created",
            "create ReportFile/g-inv-2",
            "event Normal Created",
            "apply status ReportGenerator/g",
        ]
    );
    assert_eq!(
        world.object("ReportFile", "g-inv-2")["spec"]["externalId"],
        "inv-2"
    );
    assert_eq!(
        world.object("ReportGenerator", "g")["status"]["lastMirroredTime"],
        "2026-11-03T00:00:00Z"
    );
    world.sync();
    run(&world).await;
    assert_eq!(
        world.journal.take(),
        ["backend list Usage", "apply status ReportGenerator/g"],
        "listed again, nothing made twice (the status counts the two reports now)"
    );
}

#[tokio::test]
async fn reports_beyond_the_history_limit_are_deleted_oldest_first() {
    let g = periodic(json!({"schedule": {"successfulReportsHistoryLimit": 1}}));
    let status = ReportGeneratorStatus {
        last_window_end: Some(t("2026-11-04T23:59:59Z")),
        last_schedule_check_time: Some(t("2026-11-05T09:59:00Z")),
        ..Default::default()
    };
    let files = [
        dated(
            "g-20261102",
            FileState::Ready,
            "2026-11-02T23:59:59Z",
            "2026-11-03T00:05:00Z",
        ),
        dated(
            "g-20261103",
            FileState::Ready,
            "2026-11-03T23:59:59Z",
            "2026-11-04T00:05:00Z",
        ),
        dated(
            "g-20261104",
            FileState::Ready,
            "2026-11-04T23:59:59Z",
            "2026-11-05T00:05:00Z",
        ),
    ];
    let world = world_of(
        &g,
        Backend::Up(BackendType::Connect),
        status,
        0,
        &files,
        Acted::Created,
    );
    run(&world).await;
    assert_eq!(
        world.journal.take(),
        [
            "delete ReportFile/g-20261103",
            "delete ReportFile/g-20261102",
            "apply status ReportGenerator/g",
        ]
    );
    assert!(
        world.api.get("ReportFile", NS, "g-20261104").is_some(),
        "the newest kept"
    );
}

/// A restart reconciles every generator: a PERIODIC one between its runs (its status as the
/// operator wrote it, its windows' reports made) makes no request at all, and waits for its
/// next window.
#[tokio::test]
async fn an_idle_generator_between_runs_makes_no_request() {
    let g = periodic(json!({}));
    let files = vec![file("g-20261104", Some(FileState::Ready))];
    let backend = Backend::Up(BackendType::Connect);
    let mut world = world_of(
        &g,
        backend,
        ReportGeneratorStatus::default(),
        0,
        &files,
        Acted::Created,
    );
    // The first pass makes the missed windows' files, the second counts them.
    for _ in 0..2 {
        run(&world).await;
        let lines = world.journal.take();
        assert!(
            lines.contains(&"apply status ReportGenerator/g".to_string()),
            "{lines:?}"
        );
        world.sync();
    }
    // Later, as after a restart: the check time is not refreshed when nothing is due.
    world.ctx.set_now(t(NOW) + chrono::Duration::minutes(5));
    for _ in 0..2 {
        let action = run(&world).await;
        assert_eq!(
            world.journal.take(),
            Vec::<String>::new(),
            "nothing to do: no request"
        );
        assert_eq!(action, requeue("50100100"), "the next window");
    }
}

#[tokio::test]
async fn a_deleted_rde_generator_waits_for_its_platform_only_for_the_deletion_grace() {
    let mut g = own(json!({}));
    g.metadata.deletion_timestamp = Some(crate::controller::conditions::to_k8s_time(t(NOW)));
    g.metadata.finalizers = Some(vec!["reporting.report-operator.io/rde-template".into()]);
    let status = ReportGeneratorStatus {
        external_id: Some("tmpl-1".into()),
        ..Default::default()
    };
    let world = world_of(&g, Backend::Broken, status, 0, &[], Acted::Created);
    world.ctx.set_now(t("2026-11-05T10:01:00Z"));
    let action = run(&world).await;
    assert_eq!(world.journal.take(), ["event Warning BackendError"]);
    assert_eq!(action, Action::requeue(Duration::from_secs(30)));

    world.ctx.set_now(t("2026-11-05T10:02:00Z"));
    run(&world).await;
    assert_eq!(
        world.journal.take(),
        [
            "event Warning BackendError",
            "event Warning TemplateLeft",
            "patch ReportGenerator/g"
        ]
    );
    assert_eq!(
        world.object("ReportGenerator", "g")["metadata"]["finalizers"],
        json!([])
    );
}
