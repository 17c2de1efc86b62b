//! Each backend's own behaviour, honestly (issue #12): CONNECT's date parameter, names,
//! archive and report removal; FUSION's snapshots. SUPPLIER's short-lived URLs, renewed and
//! re-minted, are in `e2e_resilience.rs`.

mod common;

use std::io::Read;
use std::time::Duration;

use chrono::Utc;
use common::e2e::{World, text};
use common::fixtures::{self, sim_api};
use common::wait_for;
use report_operator::api::{BackendType, find_condition};
use report_sim::SimConfig;
use serde_json::Value;

const DEADLINE: Duration = Duration::from_secs(180);

/// The reports the simulated Connect account holds, as its API lists them.
async fn connect_reports(world: &World) -> Vec<Value> {
    let url = format!(
        "{}/reporting/reports?limit=1000",
        world.sim.backend_url(sim_api(BackendType::Connect))
    );
    let key = world.sim.config().connect.api_key.clone();
    let resp = reqwest::Client::new()
        .get(&url)
        .header("Authorization", format!("ApiKey {key}"))
        .send()
        .await
        .expect("list");
    assert!(resp.status().is_success(), "list answered {}", resp.status());
    resp.json().await.expect("report list")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_window_goes_to_the_templates_date_parameter_names_stay_as_written_and_deleted_reports_go() {
    let mut config = SimConfig::default();
    config
        .connect
        .date_parameters
        .insert("RT-0000-0042".into(), "period".into());
    let world = World::start("e2e-connect", config).await;
    let t = BackendType::Connect;
    world.apply(&fixtures::backend(
        &world.sim,
        t,
        "b",
        &fixtures::good_credentials(t),
        "",
    ));
    world.apply(
        "apiVersion: reporting.report-operator.io/v1alpha1\nkind: ReportGenerator\nmetadata:\n  name: sales\nspec:\n  backendRef:\n    name: b\n  \
         commonName: Sales by region\n  eventType: ONETIME\n  format: JSON\n  parameters:\n    startDate: \"2026-10-01T00:00:00Z\"\n    \
         endDate: \"2026-10-02T23:59:59Z\"\n    template: RT-0000-0042\n    dateParameter: period\n",
    );
    let files = world.wait_finished("sales", 1, DEADLINE).await;
    let name = files[0].metadata.name.clone().expect("name");
    let id = files[0]
        .status
        .as_ref()
        .and_then(|s| s.external_id.clone())
        .expect("externalId");

    // The name is the user's; the window went to the template's own date parameter.
    let reports = connect_reports(&world).await;
    let report = reports
        .iter()
        .find(|r| r["id"] == id.as_str())
        .expect("the report on Connect");
    assert_eq!(report["name"], "Sales by region");
    assert_eq!(
        report["parameters"]["period"]["after"], "2026-10-01T00:00:00Z",
        "{report}"
    );
    assert!(
        report["parameters"].get("date").is_none(),
        "no window under another name: {report}"
    );

    // The Secret says the download is a ZIP, and what is in it; the ZIP holds the report of
    // that window under that name, and Connect's summary.
    let data = world.secret_data(&name).await;
    assert_eq!(text(&data, "format"), "JSON");
    assert_eq!(text(&data, "archive"), "zip");
    assert_eq!(text(&data, "archiveMetadata"), "summary.json");
    let member = text(&data, "archiveReport");
    assert_eq!(member, "report.json");
    let zip_bytes = reqwest::get(text(&data, "url"))
        .await
        .expect("download")
        .bytes()
        .await
        .expect("body");
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(zip_bytes.to_vec())).expect("a ZIP");
    let mut body = String::new();
    archive
        .by_name(&member)
        .expect("the report in the ZIP")
        .read_to_string(&mut body)
        .expect("read");
    let doc: Value = serde_json::from_str(&body).expect("report JSON");
    assert_eq!(
        doc["periodStart"], "2026-10-01T00:00:00Z",
        "the simulator got the window: {doc}"
    );
    assert!(archive.by_name("summary.json").is_ok());

    // A ReportFile of an earlier release, made without the finalizer, gets it back.
    let out = world.ns.kubectl(&[
        "patch",
        "reportfile",
        &name,
        "--type=json",
        "-p",
        r#"[{"op":"remove","path":"/metadata/finalizers"}]"#,
    ]);
    assert!(out.status.success(), "{}", common::stderr(&out));
    wait_for(
        "the finalizer put back on the ReportFile",
        Duration::from_secs(30),
        || async {
            let rf = world.files().get(&name).await.ok()?;
            rf.metadata
                .finalizers?
                .iter()
                .any(|f| f == "reporting.report-operator.io/connect-report")
                .then_some(())
        },
    )
    .await;

    // Deleting the ReportFile removes the report on Connect.
    let out = world
        .ns
        .kubectl(&["delete", "reportfile", &name, "--wait=true", "--timeout=60s"]);
    assert!(out.status.success(), "{}", common::stderr(&out));
    wait_for(
        "the report removed on Connect",
        Duration::from_secs(30),
        || async {
            (!connect_reports(&world)
                .await
                .iter()
                .any(|r| r["id"] == id.as_str()))
            .then_some(())
        },
    )
    .await;
    // Events go out after the work they describe, from a task of their own.
    wait_for(
        "an Event that says the report was removed",
        Duration::from_secs(30),
        || async { (!world.events("ReportRemoved").await.is_empty()).then_some(()) },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_reports_pruned_from_history_are_removed_on_connect() {
    common::clear_of_midnight().await;
    let world = World::start("e2e-connect-prune", SimConfig::default()).await;
    let t = BackendType::Connect;
    world.apply(&fixtures::backend(
        &world.sim,
        t,
        "b",
        &fixtures::good_credentials(t),
        "",
    ));
    let start = (Utc::now() - chrono::Duration::days(3)).format("%Y-%m-%dT00:00:00Z");
    world.apply(&format!(
        "apiVersion: reporting.report-operator.io/v1alpha1\nkind: ReportGenerator\nmetadata:\n  name: daily\nspec:\n  backendRef:\n    name: b\n  \
         commonName: Daily usage\n  eventType: PERIODIC\n  format: CSV\n  parameters:\n    period: P1D\n    startDate: \"{start}\"\n    \
         template: RT-0000-0001\n  schedule:\n    successfulReportsHistoryLimit: 1\n"
    ));
    // Three windows made, two pruned: Connect keeps only the report the history keeps.
    let kept = wait_for(
        "one ReportFile kept, and one report on Connect",
        DEADLINE,
        || async {
            let files = world.files_of("daily").await;
            let reports = connect_reports(&world).await;
            let made = world.sim.stats().total_generations(sim_api(t));
            let finished = files.iter().all(|f| {
                f.status
                    .as_ref()
                    .and_then(|s| s.status)
                    .is_some_and(|s| s.is_finished())
            });
            (made == 3 && files.len() == 1 && finished && reports.len() == 1).then_some((files, reports))
        },
    )
    .await;
    let (files, reports) = kept;
    assert_eq!(
        files[0].status.as_ref().and_then(|s| s.external_id.as_deref()),
        reports[0]["id"].as_str(),
        "the kept file's report is the one left"
    );
    assert!(reports.iter().all(|r| r["name"] == "Daily usage"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fusion_reports_are_snapshots_never_backfilled_windows() {
    let world = World::start("e2e-fusion", SimConfig::default()).await;
    let t = BackendType::Fusion;
    world.apply(&fixtures::backend(
        &world.sim,
        t,
        "b",
        &fixtures::good_credentials(t),
        "",
    ));
    let params = fixtures::required_parameters(t);

    // ONETIME without dates: valid on FUSION, one snapshot, and the Secret says when.
    world.apply(&format!(
        "apiVersion: reporting.report-operator.io/v1alpha1\nkind: ReportGenerator\nmetadata:\n  name: now\nspec:\n  backendRef:\n    name: b\n  \
         commonName: Licenses\n  eventType: ONETIME\n  format: CSV\n  parameters:\n{params}"
    ));
    let before = Utc::now() - chrono::Duration::seconds(2);
    let files = world.wait_finished("now", 1, DEADLINE).await;
    assert_eq!(files[0].metadata.name.as_deref(), Some("now-snapshot"));
    let data = world.secret_data("now-snapshot").await;
    let taken = chrono::DateTime::parse_from_rfc3339(&text(&data, "snapshotTime"))
        .expect("snapshotTime")
        .to_utc();
    assert!(
        taken >= before && taken <= Utc::now(),
        "snapshotTime {taken} is when it was taken"
    );

    // PERIODIC with a backfill start: refused, naming the field, and nothing is made.
    world.apply(&format!(
        "apiVersion: reporting.report-operator.io/v1alpha1\nkind: ReportGenerator\nmetadata:\n  name: backfill\nspec:\n  backendRef:\n    name: b\n  \
         commonName: Licenses\n  eventType: PERIODIC\n  format: CSV\n  parameters:\n    period: P1D\n    startDate: \"2026-01-01T00:00:00Z\"\n{params}"
    ));
    let message = wait_for("backfill refused", Duration::from_secs(60), || async {
        let g = world.generators().get("backfill").await.ok()?;
        let c = find_condition(&g.status?.conditions, "Ready")?.clone();
        (c.status == "False" && c.reason == "UnsupportedSetting").then_some(c.message)
    })
    .await;
    assert!(
        message.contains("UnsupportedSetting: parameters.startDate on FUSION"),
        "{message}"
    );
    wait_for(
        "an UnsupportedSetting Event naming startDate",
        Duration::from_secs(30),
        || async {
            world
                .events("UnsupportedSetting")
                .await
                .iter()
                .any(|e| e.note.as_deref().is_some_and(|n| n.contains("startDate")))
                .then_some(())
        },
    )
    .await;
    assert!(
        world.files_of("backfill").await.is_empty(),
        "no past windows as if they were history"
    );

    // PERIODIC: a run (here run-now) takes a snapshot, which carries no window's dates.
    world.apply(&format!(
        "apiVersion: reporting.report-operator.io/v1alpha1\nkind: ReportGenerator\nmetadata:\n  name: daily\n  annotations:\n    \
         reporting.report-operator.io/run-now: \"1\"\nspec:\n  backendRef:\n    name: b\n  commonName: Licenses\n  eventType: PERIODIC\n  \
         format: CSV\n  parameters:\n    period: P1D\n{params}"
    ));
    let files = world.wait_finished("daily", 1, DEADLINE).await;
    let p = files[0].spec.parameters.clone().unwrap_or_default();
    assert_eq!(
        (p.start_date, p.end_date),
        (None, None),
        "a snapshot is not labelled as a past window's data"
    );
    let data = world
        .secret_data(files[0].metadata.name.as_deref().expect("name"))
        .await;
    assert!(data.contains_key("snapshotTime") && data.contains_key("content"));
    assert_eq!(
        world.sim.stats().total_generations(sim_api(t)),
        2,
        "one snapshot each: the ONETIME and the run"
    );
}
