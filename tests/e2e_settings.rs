//! Every backend's own behaviour, honestly: an edited RDE generator gets a new platform
//! template with no period lost or doubled, mirrored ReportFiles describe the report the
//! platform made, and a setting a backend type cannot honour is refused with a reason that
//! names it.

mod common;

use std::time::Duration;

use common::e2e::World;
use common::fixtures;
use common::wait_for;
use report_operator::api::{BackendType, FileState, ReportFile, ReportFormat, find_condition};
use report_sim::SimConfig;

const DEADLINE: Duration = Duration::from_secs(120);

fn generator(
    name: &str,
    backend: &str,
    common_name: &str,
    event_type: &str,
    format: &str,
    extra: &str,
) -> String {
    format!(
        "apiVersion: reporting.report-operator.io/v1alpha1\nkind: ReportGenerator\nmetadata:\n  name: {name}\nspec:\n  backendRef:\n    name: {backend}\n  commonName: {common_name}\n  eventType: {event_type}\n  format: {format}\n{extra}"
    )
}

fn day(s: &str) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::parse_from_rfc3339(s)
        .expect("time")
        .with_timezone(&chrono::Utc)
}

/// The period a mirrored file covers, as its first day.
fn period(f: &ReportFile) -> String {
    f.spec
        .parameters
        .as_ref()
        .and_then(|p| p.start_date)
        .map(|t| t.format("%Y-%m-%d").to_string())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edited_rde_generator_replaces_its_template_with_no_period_lost_or_doubled() {
    // Reports take 30 s: the old template still has one in progress when the edit comes.
    let mut config = SimConfig::default();
    config.rde.behaviour.generation_ms = 30_000;
    let world = World::start("e2e-rdeedit", config).await;
    let t = BackendType::Rde;
    world.apply(&fixtures::backend(
        &world.sim,
        t,
        "b",
        &fixtures::good_credentials(t),
        "",
    ));
    let daily = |common_name: &str, format: &str| {
        generator(
            "daily",
            "b",
            common_name,
            "PERIODIC",
            format,
            "  parameters:\n    period: P1D\n  schedule:\n    successfulReportsHistoryLimit: 10\n",
        )
    };
    world.apply(&daily("NW Finance", "JSON"));
    let old = wait_for("the first template", DEADLINE, || async {
        world.generators().get("daily").await.ok()?.status?.external_id
    })
    .await;

    // The platform's task runs: a report on Nov 9, still in progress.
    world
        .sim
        .rde_run_template(&old, Some(day("2026-11-10T06:00:00Z")))
        .expect("run");
    wait_for("the Nov 9 report mirrored", DEADLINE, || async {
        (world.files_of("daily").await.len() == 1).then_some(())
    })
    .await;

    // The edit: another name and format reach the platform as a new template.
    world.apply(&daily("NW Finance CSV", "CSV"));
    let new = wait_for("a new template", DEADLINE, || async {
        let id = world.generators().get("daily").await.ok()?.status?.external_id?;
        (id != old).then_some(id)
    })
    .await;
    let status = world
        .generators()
        .get("daily")
        .await
        .expect("generator")
        .status
        .expect("status");
    assert!(world.sim.rde_template_exists(&new));
    assert!(
        status.retired_templates.contains(&old) && world.sim.rde_template_exists(&old),
        "the old template is kept while its report is in progress: {status:?}"
    );

    // Both templates run around the same midnight: the old one and the new one report on Nov
    // 10; one of them is mirrored. Then the new one alone reports on Nov 11.
    world
        .sim
        .rde_run_template(&old, Some(day("2026-11-11T00:00:01Z")))
        .expect("run old");
    world
        .sim
        .rde_run_template(&new, Some(day("2026-11-11T00:00:02Z")))
        .expect("run new");
    wait_for("the Nov 10 report mirrored", DEADLINE, || async {
        world
            .files_of("daily")
            .await
            .iter()
            .any(|f| period(f) == "2026-11-10")
            .then_some(())
    })
    .await;
    world
        .sim
        .rde_run_template(&new, Some(day("2026-11-12T06:00:00Z")))
        .expect("run new");
    let files = world.wait_finished("daily", 3, DEADLINE * 2).await;

    // Each period once, each file READY (those of the old template too), each describing the
    // report the platform made: its template's name and format, its own dates.
    let mut seen: Vec<(String, String, ReportFormat, Option<FileState>)> = files
        .iter()
        .map(|f| {
            (
                period(f),
                f.spec.name.clone(),
                f.spec.format,
                f.status.as_ref().and_then(|s| s.status),
            )
        })
        .collect();
    seen.sort_by(|a, b| a.0.cmp(&b.0));
    let periods: Vec<&str> = seen.iter().map(|s| s.0.as_str()).collect();
    assert_eq!(periods, ["2026-11-09", "2026-11-10", "2026-11-11"], "{seen:?}");
    assert!(seen.iter().all(|s| s.3 == Some(FileState::Ready)), "{seen:?}");
    assert_eq!(
        (seen[0].1.as_str(), seen[0].2),
        ("NW Finance", ReportFormat::Json),
        "the old template's report"
    );
    assert_eq!(
        (seen[2].1.as_str(), seen[2].2),
        ("NW Finance CSV", ReportFormat::Csv),
        "the new template's report"
    );
    let nov10 = files.iter().find(|f| period(f) == "2026-11-10").expect("Nov 10");
    let by_old = nov10.spec.template_id.as_deref() == Some(old.as_str());
    assert_eq!(
        nov10.spec.format,
        if by_old {
            ReportFormat::Json
        } else {
            ReportFormat::Csv
        },
        "{:?}",
        nov10.spec
    );
    for f in &files {
        let end = f
            .spec
            .parameters
            .as_ref()
            .and_then(|p| p.end_date)
            .expect("end date");
        assert_eq!(
            end.format("%H:%M:%S").to_string(),
            "23:59:59",
            "the platform's own window: {:?}",
            f.spec
        );
    }

    // Once its reports are finished, the old template is deleted on the platform.
    wait_for("the old template deleted", DEADLINE, || async {
        let status = world.generators().get("daily").await.ok()?.status?;
        (status.retired_templates.is_empty() && !world.sim.rde_template_exists(&old)).then_some(())
    })
    .await;
    assert!(world.sim.rde_template_exists(&new));
    // Deleting the generator deletes its template.
    world
        .generators()
        .delete("daily", &Default::default())
        .await
        .expect("delete");
    wait_for("the new template deleted", DEADLINE, || async {
        (!world.sim.rde_template_exists(&new)).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_refused_setting_shows_its_reason_and_an_event() {
    let world = World::start("e2e-refused", SimConfig::default()).await;
    for t in [BackendType::Rde, BackendType::Cmp, BackendType::Supplier] {
        world.apply(&fixtures::backend(
            &world.sim,
            t,
            &fixtures::lower(t),
            &fixtures::good_credentials(t),
            "",
        ));
    }
    let periodic = "  parameters:\n    period: P1D\n";
    // (generator, backend, event type, spec lines, the message starts with)
    let cases = [
        (
            "suspend",
            "rde",
            "PERIODIC",
            format!("{periodic}  schedule:\n    suspend: true\n"),
            "schedule.suspend on RDE PERIODIC: ",
        ),
        (
            "cron",
            "rde",
            "PERIODIC",
            format!("{periodic}  schedule:\n    cron: \"0 6 * * *\"\n"),
            "schedule.cron on RDE PERIODIC: ",
        ),
        (
            "zone",
            "rde",
            "PERIODIC",
            format!("{periodic}  schedule:\n    timeZone: Europe/Madrid\n"),
            "schedule.timeZone on RDE PERIODIC: ",
        ),
        (
            "deadline",
            "rde",
            "PERIODIC",
            format!("{periodic}  schedule:\n    startingDeadlineSeconds: 60\n"),
            "schedule.startingDeadlineSeconds on RDE PERIODIC: ",
        ),
        (
            "forbid",
            "rde",
            "PERIODIC",
            format!("{periodic}  schedule:\n    concurrencyPolicy: Forbid\n"),
            "schedule.concurrencyPolicy on RDE PERIODIC: ",
        ),
        (
            "catchup",
            "rde",
            "PERIODIC",
            format!("{periodic}  schedule:\n    catchUpPolicy: Latest\n"),
            "schedule.catchUpPolicy on RDE PERIODIC: ",
        ),
        (
            "backfill",
            "rde",
            "PERIODIC",
            format!("{periodic}    startDate: \"2026-10-01T00:00:00Z\"\n"),
            "parameters.startDate on RDE PERIODIC: ",
        ),
        (
            "foreign",
            "rde",
            "ON_INVOICE",
            "  parameters:\n    reportType: REPORT_TYPE_TRIP_ACTIVITY\n".to_string(),
            "parameters.reportType on RDE ON_INVOICE: ",
        ),
        (
            "invoices",
            "cmp",
            "ON_INVOICE",
            "  schedule:\n    suspend: true\n".to_string(),
            "schedule.suspend on CMP ON_INVOICE: ",
        ),
    ];
    for (name, backend, event_type, extra, _) in &cases {
        world.apply(&generator(name, backend, "Refused", event_type, "JSON", extra));
    }
    // Run-now on RDE: the platform has no such call.
    world.apply(
        &generator("runnow", "rde", "Refused", "PERIODIC", "JSON", periodic).replace(
            "metadata:\n  name: runnow\n",
            "metadata:\n  name: runnow\n  annotations:\n    reporting.report-operator.io/run-now: \"1\"\n",
        ),
    );
    // A type the operator schedules refuses what only another type can do: SUPPLIER cannot
    // e-mail a report.
    world.apply(&generator(
        "mailed",
        "supplier",
        "Refused",
        "ONETIME",
        "CSV",
        "  notifyByEmail: true\n  parameters:\n    startDate: \"2026-10-01T00:00:00Z\"\n    endDate: \"2026-10-01T23:59:59Z\"\n    reportType: REPORT_TYPE_TRIP_ACTIVITY\n",
    ));
    let all = cases.iter().map(|c| (c.0, c.4)).chain([
        (
            "runnow",
            "annotation reporting.report-operator.io/run-now on RDE PERIODIC: ",
        ),
        ("mailed", "notifyByEmail on SUPPLIER ONETIME: "),
    ]);
    for (name, starts) in all {
        let message = wait_for(&format!("{name} refused"), DEADLINE, || async {
            let g = world.generators().get(name).await.ok()?;
            let c = find_condition(&g.status?.conditions, "Ready")?.clone();
            (c.reason == "UnsupportedSetting").then_some((c.status, c.message))
        })
        .await;
        assert_eq!(message.0, "False", "{name}");
        assert!(message.1.starts_with(starts), "{name}: {}", message.1);
        // Refused before anything is made on the platform.
        let status = world
            .generators()
            .get(name)
            .await
            .expect("generator")
            .status
            .unwrap_or_default();
        assert_eq!(status.external_id, None, "{name}: a template was made");
        assert!(
            world.files_of(name).await.is_empty(),
            "{name}: a report was asked for"
        );
    }
    let events = wait_for("an UnsupportedSetting Event per generator", DEADLINE, || async {
        let events = world.events("UnsupportedSetting").await;
        (events.len() > cases.len()).then_some(events)
    })
    .await;
    let suspend = events
        .iter()
        .find(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("suspend"))
        .expect("an Event for suspend");
    assert_eq!(suspend.type_.as_deref(), Some("Warning"));
    assert!(
        suspend
            .note
            .as_deref()
            .is_some_and(|n| n.starts_with("schedule.suspend on RDE")),
        "{suspend:?}"
    );

    // Without the setting, the generator works: its template is made.
    world.apply(&generator(
        "suspend",
        "rde",
        "Refused",
        "PERIODIC",
        "JSON",
        &format!("{periodic}  schedule:\n    suspend: false\n"),
    ));
    wait_for("the template made once suspend is false", DEADLINE, || async {
        let g = world.generators().get("suspend").await.ok()?;
        let ready = find_condition(&g.status.as_ref()?.conditions, "Ready")?.clone();
        (ready.status == "True" && g.status?.external_id.is_some()).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cmp_invoice_generator_mirrors_reports_in_its_format_each_as_the_platform_made_it() {
    let world = World::start("e2e-cmpformat", SimConfig::default()).await;
    let t = BackendType::Cmp;
    world.apply(&fixtures::backend(
        &world.sim,
        t,
        "b",
        &fixtures::good_credentials(t),
        "",
    ));
    world.apply(&generator("invoices", "b", "Invoices", "ON_INVOICE", "CSV", ""));
    wait_for("the generator Ready", DEADLINE, || async {
        let g = world.generators().get("invoices").await.ok()?;
        (find_condition(&g.status?.conditions, "Ready")?.status == "True").then_some(())
    })
    .await;
    // Two invoice reports of that name: JSON (not this generator's format), then CSV.
    world.sim.cmp_invoice("Invoices");
    let answer: serde_json::Value = reqwest::Client::new()
        .post(format!("{}/_sim/cmp/invoice", world.sim.base_url()))
        .json(&serde_json::json!({"name": "Invoices", "format": "csv"}))
        .send()
        .await
        .expect("invoice")
        .json()
        .await
        .expect("invoice answer");
    let csv = answer["id"].as_str().expect("id").to_string();
    let files = world.wait_finished("invoices", 1, DEADLINE).await;
    let f = &files[0];
    assert_eq!(
        f.spec.external_id.as_deref(),
        Some(csv.as_str()),
        "only the CSV report is this generator's"
    );
    assert_eq!(
        (f.spec.name.as_str(), f.spec.format),
        ("Invoices", ReportFormat::Csv)
    );
    let p = f.spec.parameters.clone().expect("parameters");
    let (start, end) = (
        answer["startDate"].as_str().map(day),
        answer["endDate"].as_str().map(day),
    );
    assert_eq!(
        (p.start_date, p.end_date),
        (start, end),
        "the report's own period"
    );
}
