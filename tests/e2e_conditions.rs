//! The conditions people wait on and alert on, on the real control plane: `kubectl wait` for
//! a report's outcome (`Complete`, `Failed`, as for a Job), and a PERIODIC generator whose
//! newest report FAILED is not Ready (`LastReportFailed`).

mod common;

use std::process::{Command, Output};
use std::time::Duration;

use common::e2e::World;
use common::fixtures;
use common::{ControlPlane, stderr, stdout, wait_for};
use report_operator::api::{BackendType, CONDITION_FAILED, CONDITION_READY, FileState, find_condition};
use report_sim::SimConfig;

const DEADLINE: Duration = Duration::from_secs(120);

/// `kubectl wait --for=condition=<condition> reportfile/<name>`, as a user types it; off the
/// test's runtime, which serves the simulator meanwhile.
async fn kubectl_wait(cp: &ControlPlane, ns: &str, condition: &str, name: &str, timeout: Duration) -> Output {
    let (cp, ns, name) = (cp.clone(), ns.to_string(), name.to_string());
    let (condition, timeout) = (
        format!("--for=condition={condition}"),
        format!("--timeout={}s", timeout.as_secs()),
    );
    tokio::task::spawn_blocking(move || {
        Command::new(cp.bin_dir.join("kubectl"))
            .arg("--kubeconfig")
            .arg(&cp.kubeconfig)
            .args([
                "-n",
                &ns,
                "wait",
                &condition,
                &format!("reportfile/{name}"),
                &timeout,
            ])
            .output()
            .expect("run kubectl wait")
    })
    .await
    .expect("kubectl wait task")
}

/// The name of the one ReportFile of `generator`, once it exists (`kubectl wait` on a name
/// needs the object).
async fn file_of(world: &World, generator: &str) -> String {
    wait_for(&format!("the ReportFile of {generator}"), DEADLINE, || async {
        world
            .files_of(generator)
            .await
            .first()
            .and_then(|rf| rf.metadata.name.clone())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_wait_for_complete_and_for_failed_sees_each_outcome() {
    let world = World::start("e2e-wait", SimConfig::default()).await;
    let t = BackendType::Connect;
    world.apply(&fixtures::backend(
        &world.sim,
        t,
        "b",
        &fixtures::good_credentials(t),
        "",
    ));
    world.apply(&fixtures::onetime(t, "works", "b", "Monthly usage"));
    // The simulator fails a report whose name says FAIL.
    world.apply(&fixtures::onetime(t, "fails", "b", "FAIL on purpose"));
    let (works, fails) = (file_of(&world, "works").await, file_of(&world, "fails").await);
    let cp = world.ns.cp().clone();
    let ns = world.ns.name.clone();

    let out = kubectl_wait(&cp, &ns, "Complete", &works, DEADLINE).await;
    assert!(
        out.status.success(),
        "kubectl wait --for=condition=Complete: {} (operator log: {})",
        stderr(&out),
        world.operator.log.display()
    );
    assert!(stdout(&out).contains("condition met"), "{}", stdout(&out));
    let out = kubectl_wait(&cp, &ns, "Failed", &fails, DEADLINE).await;
    assert!(
        out.status.success(),
        "kubectl wait --for=condition=Failed: {} (operator log: {})",
        stderr(&out),
        world.operator.log.display()
    );

    // Each outcome is one or the other: waiting for the other one times out.
    let out = kubectl_wait(&cp, &ns, "Failed", &works, Duration::from_secs(2)).await;
    assert!(
        !out.status.success(),
        "a READY report is not Failed: {}",
        stdout(&out)
    );
    let out = kubectl_wait(&cp, &ns, "Complete", &fails, Duration::from_secs(2)).await;
    assert!(
        !out.status.success(),
        "a FAILED report is not Complete: {}",
        stdout(&out)
    );

    // Failed says why, as Ready does.
    let status = world
        .files()
        .get(&fails)
        .await
        .expect("get ReportFile")
        .status
        .expect("status");
    assert_eq!(status.status, Some(FileState::Failed));
    let failed = find_condition(&status.conditions, CONDITION_FAILED).expect("Failed condition");
    let ready = find_condition(&status.conditions, CONDITION_READY).expect("Ready condition");
    assert_eq!(
        (failed.status.as_str(), failed.reason.as_str()),
        ("True", "Failed")
    );
    assert_eq!(failed.message, ready.message);
    assert!(
        failed
            .message
            .contains(status.failed_reason.as_deref().unwrap_or("?")),
        "{failed:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_periodic_generator_whose_newest_report_failed_is_not_ready() {
    common::clear_of_midnight().await;
    let world = World::start("e2e-lastfail", SimConfig::default()).await;
    let t = BackendType::Connect;
    world.apply(&fixtures::backend(
        &world.sim,
        t,
        "b",
        &fixtures::good_credentials(t),
        "",
    ));
    // Two days back: both windows are made at once, and fail; both are kept.
    let start = (chrono::Utc::now() - chrono::Duration::days(2)).format("%Y-%m-%dT00:00:00Z");
    world.apply(&format!(
        "apiVersion: reporting.report-operator.io/v1alpha1\nkind: ReportGenerator\nmetadata:\n  name: daily\nspec:\n  backendRef:\n    name: b\n  commonName: FAIL on purpose\n  eventType: PERIODIC\n  format: {}\n  parameters:\n    period: P1D\n    startDate: \"{start}\"\n{}  schedule:\n    failedReportsHistoryLimit: 2\n",
        fixtures::format_for(t),
        fixtures::required_parameters(t),
    ));
    world.wait_finished("daily", 2, DEADLINE).await;
    // The generator's status may still be one written while a report was unfinished (the
    // two finish in either order), so wait for the condition that names the newest window's
    // report, the one ending yesterday, and counts none in progress.
    let yesterday = (chrono::Utc::now() - chrono::Duration::days(1))
        .format("%Y%m%d")
        .to_string();
    let message = wait_for(
        "the generator Ready=False with LastReportFailed for yesterday's report, none in progress",
        DEADLINE,
        || async {
            let s = world.generators().get("daily").await.ok()?.status?;
            let c = find_condition(&s.conditions, CONDITION_READY)?.clone();
            let settled = c.message.contains(&yesterday) && c.message.contains("0 in progress");
            (c.status == "False" && c.reason == "LastReportFailed" && settled).then_some(c.message)
        },
    )
    .await;
    assert!(
        message.contains("FAILED") && message.contains("0 in progress"),
        "{message}"
    );
}
