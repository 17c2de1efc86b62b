//! ONETIME reports end to end: the real control plane, the operator as its own process, and
//! the simulators over HTTP.

mod common;

use std::time::Duration;

use common::e2e::{World, text};
use common::fixtures::{self, ALL_TYPES, lower, sim_api};
use common::operator::without_colours;
use common::wait_for;
use report_operator::api::{BackendType, FileState, find_condition};
use report_sim::SimConfig;

const DEADLINE: Duration = Duration::from_secs(120);

/// Downloads what a READY report's Secret points at (or holds).
async fn report_content(world: &World, secret: &str) -> Vec<u8> {
    let data = world.secret_data(secret).await;
    if let Some(content) = data.get("content") {
        return content.clone();
    }
    let url = String::from_utf8(data.get("url").expect("url key").clone()).expect("utf8 url");
    let resp = reqwest::get(&url).await.expect("download");
    assert!(resp.status().is_success(), "download answered {}", resp.status());
    resp.bytes().await.expect("body").to_vec()
}

async fn onetime_report_is_ready_and_downloadable(t: BackendType) {
    let world = World::start(&format!("e2e-{}", lower(t)), SimConfig::default()).await;
    let rf = &world.onetime_finished(t, "Monthly usage", DEADLINE).await;
    let status = rf.status.clone().expect("status");
    assert_eq!(status.status, Some(FileState::Ready), "{status:?}");
    assert!(status.external_id.is_some(), "no externalId: {status:?}");
    let secret = status.download_secret_ref.expect("downloadSecretRef").name;
    let data = world.secret_data(&secret).await;
    assert_eq!(text(&data, "format"), fixtures::format_for(t));
    for key in ["fileName", "generateDate"] {
        assert!(
            data.contains_key(key),
            "Secret lacks {key}: {:?}",
            data.keys().collect::<Vec<_>>()
        );
    }
    let content = report_content(&world, &secret).await;
    assert!(!content.is_empty(), "empty report");
    if t != BackendType::Fusion {
        // The simulators write the period into each report (Fusion's license files have none).
        let text = String::from_utf8_lossy(&content).to_string();
        let zipped = text.starts_with("PK") || content.starts_with(&[0x1f, 0x8b]);
        assert!(
            zipped || text.contains("2026-10-01"),
            "report does not cover the period:\n{text:.400}"
        );
    }
    // The generator rolls its report's state up when the watch brings it the change.
    wait_for("the generator counts the report READY", DEADLINE, || async {
        let s = world.generators().get("once").await.ok()?.status?;
        (s.reports.ready == 1 && s.last_successful_time.is_some()).then_some(())
    })
    .await;
    // Exactly one generation reached the backend.
    assert_eq!(
        world.sim.stats().total_generations(sim_api(t)),
        1,
        "stats: {:?}",
        world.sim.stats()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rde_onetime_report_is_ready_and_downloadable() {
    onetime_report_is_ready_and_downloadable(BackendType::Rde).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cmp_onetime_report_is_ready_and_downloadable() {
    onetime_report_is_ready_and_downloadable(BackendType::Cmp).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_onetime_report_is_ready_and_downloadable() {
    onetime_report_is_ready_and_downloadable(BackendType::Connect).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fusion_onetime_report_is_ready_with_the_file_in_the_secret() {
    onetime_report_is_ready_and_downloadable(BackendType::Fusion).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn supplier_onetime_report_is_ready_and_downloadable() {
    onetime_report_is_ready_and_downloadable(BackendType::Supplier).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_failures_fail_the_report_with_the_backend_reason() {
    let world = World::start("e2e-fail", SimConfig::default()).await;
    // Fusion is synchronous and has no failed state: a 4xx is its failure, covered by its
    // own test below.
    let types = [
        BackendType::Rde,
        BackendType::Cmp,
        BackendType::Connect,
        BackendType::Supplier,
    ];
    for t in types {
        let b = lower(t);
        world.apply(&fixtures::backend(
            &world.sim,
            t,
            &b,
            &fixtures::good_credentials(t),
            "",
        ));
        // The simulators fail a report whose name (SUPPLIER: report type) says FAIL.
        let g = fixtures::onetime(t, &format!("{b}-fails"), &b, "FAIL on purpose")
            .replace("REPORT_TYPE_TRIP_ACTIVITY", "REPORT_TYPE_FAIL_ON_PURPOSE");
        world.apply(&g);
    }
    for t in types {
        let files = world
            .wait_finished(&format!("{}-fails", lower(t)), 1, DEADLINE)
            .await;
        let status = files[0].status.clone().expect("status");
        assert_eq!(status.status, Some(FileState::Failed), "{t:?}: {status:?}");
        let reason = status.failed_reason.unwrap_or_default();
        assert!(!reason.is_empty(), "{t:?}: no failedReason");
        let cond = report_operator::api::find_condition(&status.conditions, "Ready")
            .expect("Ready")
            .clone();
        assert_eq!(
            (cond.status.as_str(), cond.reason.as_str()),
            ("False", "Failed"),
            "{t:?}"
        );
        assert!(
            cond.message.contains(&reason),
            "{t:?}: message {:?} lacks reason {reason:?}",
            cond.message
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fusion_unknown_scope_fails_the_report_with_the_http_reason() {
    let world = World::start("e2e-fusion404", SimConfig::default()).await;
    let t = BackendType::Fusion;
    world.apply(&fixtures::backend(
        &world.sim,
        t,
        "b",
        &fixtures::good_credentials(t),
        "",
    ));
    let g = fixtures::onetime(t, "gone", "b", "Licenses").replace(
        "53fd92c7-fbef-44fd-af76-d92334432ac9",
        "00000000-0000-4000-8000-000000000000",
    );
    world.apply(&g);
    let files = world.wait_finished("gone", 1, DEADLINE).await;
    let status = files[0].status.clone().expect("status");
    assert_eq!(status.status, Some(FileState::Failed));
    let reason = status.failed_reason.unwrap_or_default();
    assert!(
        reason.contains("No MS Teams tenant found"),
        "the backend's reason is lost: {reason}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_credentials_make_the_backend_not_ready_and_nothing_is_submitted() {
    let world = World::start("e2e-badcreds", SimConfig::default()).await;
    for t in ALL_TYPES {
        let b = lower(t);
        let bad: Vec<(&str, &str)> = fixtures::good_credentials(t)
            .into_iter()
            .map(|(k, v)| {
                (
                    k,
                    if v.contains("key") || k.contains("ecret") || k == "password" {
                        "wrong"
                    } else {
                        v
                    },
                )
            })
            .collect();
        world.apply(&fixtures::backend(&world.sim, t, &b, &bad, ""));
        world.apply(&fixtures::onetime(t, &format!("{b}-once"), &b, "Monthly usage"));
    }
    for t in ALL_TYPES {
        let (reason, message) = world.wait_backend(&lower(t), "False").await;
        assert_eq!(reason, "Unauthorized", "{t:?}: {message}");
    }
    // A missing key is named.
    world.apply(&fixtures::backend(
        &world.sim,
        BackendType::Cmp,
        "nokey",
        &[("username", "u"), ("password", "p")],
        "",
    ));
    let (reason, message) = world.wait_backend("nokey", "False").await;
    assert_eq!(reason, "CredentialsMissing");
    assert!(message.contains("subscriptionKey"), "{message}");
    // The reports wait, and the backends saw no generation.
    for t in ALL_TYPES {
        let files = world.files_of(&format!("{}-once", lower(t))).await;
        for rf in files {
            let cond =
                report_operator::api::find_condition(&rf.status.unwrap_or_default().conditions, "Ready")
                    .cloned();
            assert!(
                cond.as_ref().is_none_or(|c| c.reason == "Pending"),
                "{t:?}: {cond:?}"
            );
        }
        assert_eq!(
            world.sim.stats().total_generations(sim_api(t)),
            0,
            "{t:?} generated with bad credentials"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_an_rde_generator_deletes_the_platform_template() {
    let world = World::start("e2e-rdedelete", SimConfig::default()).await;
    let t = BackendType::Rde;
    world.onetime_finished(t, "NW Finance", DEADLINE).await;
    let template_id = world.generator_external_id("once").await;
    assert!(world.sim.rde_template_exists(&template_id));
    let out = world.ns.kubectl(&[
        "delete",
        "reportgenerator",
        "once",
        "--wait=true",
        "--timeout=60s",
    ]);
    assert!(out.status.success(), "{}", common::stderr(&out));
    assert!(
        !world.sim.rde_template_exists(&template_id),
        "template {template_id} still on the platform"
    );
    // The ReportFile and its Secret go with the generator (garbage collection).
    wait_for(
        "ReportFiles and Secrets garbage-collected",
        Duration::from_secs(60),
        || async {
            let files = world.files().list(&Default::default()).await.ok()?;
            let secrets = world
                .secrets()
                .list(&kube::api::ListParams::default().labels("reporting.report-operator.io/generator=once"))
                .await
                .ok()?;
            (files.items.is_empty() && secrets.items.is_empty()).then_some(())
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_line_logged_in_a_reconcile_names_its_object() {
    let world = World::start("e2e-logs", SimConfig::default()).await;
    let t = BackendType::Cmp;
    world.apply(&fixtures::backend(
        &world.sim,
        t,
        "cmp",
        &fixtures::good_credentials(t),
        "",
    ));
    world.apply(&fixtures::onetime(t, "logged", "cmp", "FAIL on purpose"));
    let files = world.wait_finished("logged", 1, DEADLINE).await;
    let file = files[0].metadata.name.clone().expect("name");
    let logs = without_colours(&world.operator.logs());
    // "report failed" carries no object fields of its own beyond the report's name: the
    // reconcile's span adds the kind and namespace (and the name) to it and every other line.
    let line = logs
        .lines()
        .find(|l| l.contains("report failed"))
        .unwrap_or_else(|| panic!("no 'report failed' line:\n{logs}"));
    for needle in [
        "reconcile{",
        "kind=\"ReportFile\"",
        &format!("namespace=\"{}\"", world.ns.name),
        &format!("name={file}"),
    ] {
        assert!(line.contains(needle), "{needle:?} missing from {line:?}");
    }
    let generator_lines: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("created ReportFile"))
        .collect();
    assert!(
        !generator_lines.is_empty()
            && generator_lines
                .iter()
                .all(|l| l.contains("kind=\"ReportGenerator\"")),
        "{generator_lines:?}"
    );
}

/// A ONETIME report is made once: its ReportFile, deleted after the report is READY, is not
/// made again when the operator restarts (which reconciles every generator), and the backend
/// generated the report once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_onetime_report_file_deleted_after_the_report_is_ready_is_not_made_again() {
    let t = BackendType::Cmp;
    let mut world = World::start("e2e-made-once", SimConfig::default()).await;
    let rf = world.onetime_finished(t, "Monthly usage", DEADLINE).await;
    let name = rf.metadata.name.clone().expect("name");
    let generators = world.generators();
    let ready = |message: &'static str| {
        let generators = generators.clone();
        move || {
            let generators = generators.clone();
            async move {
                let g = generators.get("once").await.ok()?;
                let c = find_condition(&g.status?.conditions, "Ready")?.clone();
                (c.reason == "ReportReady" && c.message.contains(message)).then_some(())
            }
        }
    };
    wait_for(
        "the generator Ready with its report",
        DEADLINE,
        ready("the report is READY"),
    )
    .await;

    common::delete_ignore_missing(&world.files(), &name).await;
    wait_for("the ReportFile gone", DEADLINE, || async {
        world.files_of("once").await.is_empty().then_some(())
    })
    .await;
    world.operator.kill();
    world.operator.restart();
    let what = format!(
        "the generator reconciled after the restart (operator log: {})",
        world.operator.log.display()
    );
    // Either the generator says so, or the ReportFile is back.
    let kept = ready("its ReportFile was deleted");
    let made_again = wait_for(&what, DEADLINE, || async {
        if !world.files_of("once").await.is_empty() {
            return Some(true);
        }
        kept().await.map(|()| false)
    })
    .await;
    assert!(!made_again, "the ReportFile was made again");
    assert!(
        world.files_of("once").await.is_empty(),
        "the ReportFile was made again"
    );
    assert_eq!(
        world.sim.stats().total_generations(sim_api(t)),
        1,
        "the backend generated the report once"
    );
}
