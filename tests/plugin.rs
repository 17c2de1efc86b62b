//! The kubectl plugin `kubectl report` end to end: the operator binary started under the name
//! `kubectl-report` (as kubectl finds it on PATH), against the real control plane, an operator
//! process and the simulators.

mod common;
mod plugin_support;

use std::time::Duration;

use common::e2e::World;
use common::fixtures::{self, lower, sim_api};
use common::{stderr, stdout, wait_for};
use plugin_support::{Plugin, ok};
use report_operator::api::{BackendType, FileState, find_condition};
use report_sim::SimConfig;

const DEADLINE: Duration = Duration::from_secs(120);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_and_status_say_what_a_failed_report_is_doing_and_why() {
    let world = World::start("plugin-status", SimConfig::default()).await;
    let plugin = Plugin::new(world.ns.cp(), &world.ns.name);
    let t = BackendType::Cmp;
    world.apply(&fixtures::backend(
        &world.sim,
        t,
        "b",
        &fixtures::good_credentials(t),
        "",
    ));
    // The simulators fail a report whose name says FAIL.
    world.apply(&fixtures::onetime(t, "fails", "b", "FAIL on purpose"));
    let files = world.wait_finished("fails", 1, DEADLINE).await;
    let rf = files[0].metadata.name.clone().expect("name");
    let reason = files[0]
        .status
        .clone()
        .and_then(|s| s.failed_reason)
        .expect("failedReason");
    // The Warning Event about the failure is written after the status.
    wait_for("the failure's Event", DEADLINE, || async {
        let out = world.ns.kubectl(&[
            "get",
            "events",
            "--field-selector",
            &format!("involvedObject.name={rf}"),
            "-o",
            "name",
        ]);
        (!stdout(&out).trim().is_empty()).then_some(())
    })
    .await;

    // Found through kubectl, in the kubeconfig context's namespace.
    let text = ok(
        plugin.via_kubectl(&["status", "rf", &rf]),
        "kubectl report status rf",
    );
    assert!(
        text.contains(&format!("ReportFile {}/{rf}", world.ns.name)),
        "{text}"
    );
    assert!(text.contains("Status:       FAILED"), "{text}");
    assert!(
        text.contains("Ready:        False (Failed)"),
        "the Ready reason is missing:\n{text}"
    );
    assert!(
        text.contains(&reason),
        "the backend's reason {reason:?} is missing:\n{text}"
    );
    assert!(
        text.contains("Events:\n") && text.contains("Warning"),
        "the Warning Event is missing:\n{text}"
    );

    // `get NAME` of the generator: its counts and reason.
    wait_for("the generator counts the failure", DEADLINE, || async {
        let s = world.generators().get("fails").await.ok()?.status?;
        (s.reports.failed == 1).then_some(())
    })
    .await;
    let g = world.generators().get("fails").await.expect("generator");
    let ready = find_condition(&g.status.clone().expect("status").conditions, "Ready")
        .cloned()
        .expect("Ready");
    let text = ok(plugin.run(&["get", "fails"]), "kubectl-report get fails");
    assert!(
        text.contains("Kind:         ONETIME, JSON") && text.contains("0 in progress, 0 ready, 1 failed"),
        "{text}"
    );
    assert!(
        text.contains(&format!("Ready:        {} ({})", ready.status, ready.reason)),
        "the generator's reason is missing:\n{text}"
    );

    // `get` lists both kinds with their reasons; -n wins over the context.
    let text = ok(plugin.run(&["get", "-n", &world.ns.name]), "kubectl-report get");
    assert!(
        text.contains("rg/fails") && text.contains(&format!("rf/{rf}")) && text.contains("Failed"),
        "{text}"
    );
    let out = plugin.run(&["status", "rf", "nothing-here"]);
    assert!(
        !out.status.success() && stderr(&out).contains("not found"),
        "{}",
        stderr(&out)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_sets_the_annotation_and_the_generator_makes_the_window() {
    common::clear_of_midnight().await;
    let world = World::start("plugin-run", SimConfig::default()).await;
    let plugin = Plugin::new(world.ns.cp(), &world.ns.name);
    let t = BackendType::Connect;
    world.apply(&fixtures::backend(
        &world.sim,
        t,
        "b",
        &fixtures::good_credentials(t),
        "",
    ));
    let g = format!(
        "apiVersion: reporting.report-operator.io/v1alpha1\nkind: ReportGenerator\nmetadata:\n  name: paused\nspec:\n  backendRef:\n    name: b\n  commonName: Daily usage\n  eventType: PERIODIC\n  format: JSON\n  parameters:\n    period: P1D\n{}  schedule:\n    suspend: true\n",
        fixtures::required_parameters(t)
    );
    world.apply(&g);
    wait_for("the schedule evaluated", DEADLINE, || async {
        world
            .generators()
            .get("paused")
            .await
            .ok()?
            .status?
            .last_schedule_check_time
            .map(|_| ())
    })
    .await;
    assert!(
        world.files_of("paused").await.is_empty(),
        "a suspended generator made a report"
    );

    let text = ok(
        plugin.run(&["run", "paused", "--wait", "60"]),
        "kubectl-report run",
    );
    let yesterday = (chrono::Utc::now() - chrono::Duration::days(1))
        .format("%Y-%m-%d")
        .to_string();
    assert!(
        text.contains(&format!("window: {yesterday}T00:00:00Z .. {yesterday}T23:59:59Z")),
        "{text}"
    );
    assert!(text.contains("The operator took the request"), "{text}");
    let g = world.generators().get("paused").await.expect("generator");
    let value = g
        .metadata
        .annotations
        .clone()
        .unwrap_or_default()
        .get("reporting.report-operator.io/run-now")
        .cloned()
        .expect("run-now annotation");
    assert_eq!(g.status.and_then(|s| s.last_run_now), Some(value));
    let files = world.wait_finished("paused", 1, DEADLINE).await;
    let start = files[0]
        .spec
        .parameters
        .clone()
        .and_then(|p| p.start_date)
        .expect("start");
    assert_eq!(start.format("%Y-%m-%d").to_string(), yesterday);

    // A ONETIME generator has no run-now: refused, nothing annotated.
    world.apply(&fixtures::onetime(t, "once", "b", "Once"));
    let out = plugin.run(&["run", "once"]);
    assert!(
        !out.status.success() && stderr(&out).contains("PERIODIC"),
        "{}",
        stderr(&out)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn download_remints_an_expired_supplier_url_and_saves_the_file() {
    let mut config = SimConfig::default();
    // Shorter than the operator's renewal margin: the URL expires and stays expired.
    config.supplier.url_lifetime_secs = 3;
    let world = World::start("plugin-dl", config).await;
    let plugin = Plugin::new(world.ns.cp(), &world.ns.name);
    let t = BackendType::Supplier;
    world.apply(&fixtures::backend(
        &world.sim,
        t,
        "b",
        &fixtures::good_credentials(t),
        "",
    ));
    world.apply(&fixtures::onetime(t, "trips", "b", "Trips"));
    let files = world.wait_finished("trips", 1, DEADLINE).await;
    let rf = files[0].metadata.name.clone().expect("name");
    assert_eq!(
        files[0].status.clone().and_then(|s| s.status),
        Some(FileState::Ready)
    );
    wait_for("the URL expired", Duration::from_secs(60), || async {
        let s = world.files().get(&rf).await.ok()?.status?;
        (find_condition(&s.conditions, "Ready")?.reason == "UrlExpired").then_some(())
    })
    .await;
    let old_url = String::from_utf8(world.secret_data(&rf).await["url"].clone()).expect("utf8");
    let links_before = world.sim.stats().requests("SUPPLIER", "link");

    // `status` names the Secret and the expiry, never the signed URL.
    let text = ok(plugin.run(&["status", "rf", &rf]), "kubectl-report status rf");
    assert!(
        text.contains(&format!("Download:     Secret {rf}; URL expired")),
        "{text}"
    );
    let query = old_url
        .split_once('?')
        .map(|(_, q)| q.to_string())
        .expect("a signed URL has a query");
    assert!(!text.contains(&query), "status printed the signed URL:\n{text}");

    let out_file = plugin.path().join("trips.csv");
    let text = ok(
        // The simulator's storage speaks plain http.
        plugin.run(&[
            "download",
            &rf,
            "--allow-http",
            "-o",
            out_file.to_str().expect("utf8 path"),
        ]),
        "kubectl-report download",
    );
    assert!(text.contains("expired") && text.contains("Saved"), "{text}");
    assert!(!text.contains(&query), "download printed the signed URL:\n{text}");
    let body = std::fs::read_to_string(&out_file).expect("the saved file");
    assert!(
        body.contains("2026-10-01"),
        "the saved file is not the report:\n{body:.300}"
    );
    assert!(
        world.sim.stats().requests("SUPPLIER", "link") > links_before,
        "no new link was minted"
    );
    let s = world
        .files()
        .get(&rf)
        .await
        .expect("ReportFile")
        .status
        .expect("status");
    let annotation = world
        .files()
        .get(&rf)
        .await
        .expect("ReportFile")
        .metadata
        .annotations
        .unwrap_or_default();
    assert_eq!(
        s.last_url_refresh.as_deref(),
        annotation
            .get("reporting.report-operator.io/refresh-url")
            .map(String::as_str)
    );
    assert_eq!(
        world.sim.stats().total_generations(sim_api(t)),
        1,
        "a refresh never generates the report again"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn download_of_a_fusion_report_writes_the_content_from_the_secret() {
    let world = World::start("plugin-fusion", SimConfig::default()).await;
    let plugin = Plugin::new(world.ns.cp(), &world.ns.name);
    let t = BackendType::Fusion;
    world.apply(&fixtures::backend(
        &world.sim,
        t,
        "b",
        &fixtures::good_credentials(t),
        "",
    ));
    world.apply(&fixtures::onetime(t, "licenses", "b", "Licenses"));
    let files = world.wait_finished("licenses", 1, DEADLINE).await;
    let rf = files[0].metadata.name.clone().expect("name");
    let data = world.secret_data(&rf).await;
    let content = data
        .get("content")
        .expect("FUSION keeps the file in the Secret")
        .clone();
    let file_name = String::from_utf8(data["fileName"].clone()).expect("utf8");
    // Without -o the file is named as the backend names it, in the working directory.
    ok(plugin.run(&["download", &rf]), "kubectl-report download");
    let saved = std::fs::read(plugin.path().join(&file_name)).expect("the saved file");
    assert_eq!(
        saved,
        content,
        "{}: the saved file differs from the Secret's content",
        lower(t)
    );
    // To standard output with -o -.
    let out = plugin.run(&["download", &rf, "-o", "-"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(out.stdout, content);
}
