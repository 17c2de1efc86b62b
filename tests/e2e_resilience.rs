//! Nothing lost, nothing doubled: the operator killed while reports run, lost backend
//! answers, and short-lived URLs re-minted on request.

mod common;

use std::time::Duration;

use common::e2e::World;
use common::fixtures::{self, ALL_TYPES, lower, sim_api};
use common::wait_for;
use report_operator::api::{BackendType, FileState};
use report_sim::{Fault, FaultKind, SimConfig};

const DEADLINE: Duration = Duration::from_secs(180);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_killed_while_reports_run_resumes_them_without_generating_twice() {
    let config = SimConfig::default().for_all(|b| b.generation_ms = 8000);
    let mut world = World::start("e2e-kill", config).await;
    for t in ALL_TYPES {
        let b = lower(t);
        world.apply(&fixtures::backend(
            &world.sim,
            t,
            &b,
            &fixtures::good_credentials(t),
            "",
        ));
        world.apply(&fixtures::onetime(t, &format!("{b}-once"), &b, "Monthly usage"));
    }
    // Wait until every asynchronous backend has accepted its report, then kill the operator.
    let asynchronous: Vec<BackendType> = ALL_TYPES
        .into_iter()
        .filter(|t| *t != BackendType::Fusion)
        .collect();
    wait_for(
        "reports submitted and in progress",
        Duration::from_secs(60),
        || async {
            for t in &asynchronous {
                let files = world.files_of(&format!("{}-once", lower(*t))).await;
                let running = files.iter().any(|f| {
                    let s = f.status.clone().unwrap_or_default();
                    s.status == Some(FileState::InProgress) && s.external_id.is_some()
                });
                if !running {
                    return None;
                }
            }
            Some(())
        },
    )
    .await;
    world.operator.kill();
    world.operator.restart();
    for t in ALL_TYPES {
        let files = world
            .wait_finished(&format!("{}-once", lower(t)), 1, DEADLINE)
            .await;
        let status = files[0].status.clone().expect("status");
        assert_eq!(status.status, Some(FileState::Ready), "{t:?}: {status:?}");
        assert_eq!(
            status.attempts,
            if t == BackendType::Rde { None } else { Some(1) },
            "{t:?} asked twice"
        );
    }
    let stats = world.sim.stats();
    for t in asynchronous {
        assert_eq!(
            stats.total_generations(sim_api(t)),
            1,
            "{t:?} generated more than once: {stats:?}"
        );
        assert_eq!(stats.max_duplicates(sim_api(t)), 1, "{t:?}: {stats:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_create_answer_is_resolved_by_looking_the_report_up() {
    let world = World::start("e2e-lost", SimConfig::default()).await;
    for t in [BackendType::Cmp, BackendType::Connect, BackendType::Supplier] {
        let b = lower(t);
        world
            .sim
            .inject(Fault::new(sim_api(t), "create", FaultKind::LostResponse, 1));
        world.apply(&fixtures::backend(
            &world.sim,
            t,
            &b,
            &fixtures::good_credentials(t),
            "",
        ));
        world.apply(&fixtures::onetime(t, &format!("{b}-once"), &b, "Monthly usage"));
    }
    for t in [BackendType::Cmp, BackendType::Connect, BackendType::Supplier] {
        let files = world
            .wait_finished(&format!("{}-once", lower(t)), 1, DEADLINE)
            .await;
        let status = files[0].status.clone().expect("status");
        assert_eq!(status.status, Some(FileState::Ready), "{t:?}: {status:?}");
        assert_eq!(
            world.sim.stats().total_generations(sim_api(t)),
            1,
            "{t:?} generated twice: {:?}",
            world.sim.stats()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_annotation_remints_a_supplier_url() {
    let world = World::start("e2e-refresh", SimConfig::default()).await;
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
    let name = files[0].metadata.name.clone().expect("name");
    let before = world.secret_data(&name).await;
    assert!(
        before.contains_key("expiresAt"),
        "an expiring URL must say when it expires"
    );
    let links_before = world.sim.stats().requests("SUPPLIER", "link");
    let out = world.ns.kubectl(&[
        "annotate",
        "reportfile",
        &name,
        "reporting.report-operator.io/refresh-url=2026-11-23T12:00:00Z",
    ]);
    assert!(out.status.success(), "{}", common::stderr(&out));
    // A URL minted within the same second as the first can equal it, so the proof of a
    // re-mint is the link call and the Event naming the annotation (the renewal before the
    // 60 s URL expires would also call link, but says so). The Secret is written before the
    // status records the refresh.
    wait_for(
        "a re-mint on the annotation, recorded in the status",
        Duration::from_secs(40),
        || async {
            let rf = world.files().get(&name).await.ok()?;
            let recorded = rf.status?.last_url_refresh;
            let links = world.sim.stats().requests("SUPPLIER", "link");
            let on_annotation = world.events("UrlRefreshed").await.iter().any(|e| {
                e.note
                    .as_deref()
                    .is_some_and(|n| n.contains("refresh-url annotation"))
            });
            (recorded.as_deref() == Some("2026-11-23T12:00:00Z") && links > links_before && on_annotation)
                .then_some(())
        },
    )
    .await;
    let after = world.secret_data(&name).await;
    assert!(
        after["expiresAt"] >= before["expiresAt"],
        "the re-minted URL expires no earlier"
    );
    let url = String::from_utf8(after["url"].clone()).expect("utf8");
    let resp = reqwest::get(&url).await.expect("download");
    assert!(resp.status().is_success(), "fresh URL answered {}", resp.status());
    assert_eq!(
        world.sim.stats().total_generations(sim_api(t)),
        1,
        "a refresh never generates the report again"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_report_secret_is_written_again() {
    let world = World::start("e2e-secret", SimConfig::default()).await;
    let t = BackendType::Cmp;
    world.apply(&fixtures::backend(
        &world.sim,
        t,
        "b",
        &fixtures::good_credentials(t),
        "",
    ));
    world.apply(&fixtures::onetime(t, "once", "b", "Monthly usage"));
    let files = world.wait_finished("once", 1, DEADLINE).await;
    let name = files[0].metadata.name.clone().expect("name");
    let before = world.secret_data(&name).await;
    let out = world.ns.kubectl(&["delete", "secret", &name]);
    assert!(out.status.success(), "{}", common::stderr(&out));
    let after = wait_for("the Secret written again", Duration::from_secs(60), || async {
        let s = world.secrets().get_opt(&name).await.ok()??;
        Some(
            s.data
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k, v.0))
                .collect::<std::collections::BTreeMap<_, _>>(),
        )
    })
    .await;
    assert_eq!(after.contains_key("url"), before.contains_key("url"));
    assert_eq!(after["fileName"], before["fileName"]);
    // The report was not generated again for it.
    assert_eq!(world.sim.stats().total_generations(sim_api(t)), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_lived_urls_are_renewed_before_they_expire() {
    let mut config = SimConfig::default();
    config.supplier.url_lifetime_secs = 15;
    let world = World::start("e2e-renew", config).await;
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
    let name = files[0].metadata.name.clone().expect("name");
    let first = world.secret_data(&name).await;
    let first_expiry = String::from_utf8(first["expiresAt"].clone()).expect("utf8");
    // Nobody asks: the operator re-mints the URL shortly before it expires.
    let renewed = wait_for("a renewed URL", Duration::from_secs(60), || async {
        let data = world.secret_data(&name).await;
        (data["expiresAt"] != first["expiresAt"]).then_some(data)
    })
    .await;
    let second_expiry = String::from_utf8(renewed["expiresAt"].clone()).expect("utf8");
    assert!(
        second_expiry > first_expiry,
        "{second_expiry} is not later than {first_expiry}"
    );
    let url = String::from_utf8(renewed["url"].clone()).expect("utf8");
    assert!(reqwest::get(&url).await.expect("download").status().is_success());
    let rf = world.files().get(&name).await.expect("ReportFile");
    let cond = report_operator::api::find_condition(&rf.status.expect("status").conditions, "Ready")
        .cloned()
        .expect("Ready");
    assert_eq!(cond.status, "True", "{cond:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_create_never_adopts_the_template_of_an_identical_generator() {
    let world = World::start("e2e-twins", SimConfig::default()).await;
    let t = BackendType::Rde;
    world.apply(&fixtures::backend(
        &world.sim,
        t,
        "b",
        &fixtures::good_credentials(t),
        "",
    ));
    world.apply(&fixtures::onetime(t, "first", "b", "Monthly usage"));
    world.wait_finished("first", 1, DEADLINE).await;
    let first = world.generator_external_id("first").await;
    // The twin's create reaches the platform but its answer is lost: looking it up finds two
    // templates that match, and only one is free.
    world
        .sim
        .inject(Fault::new(sim_api(t), "create", FaultKind::LostResponse, 1));
    world.apply(&fixtures::onetime(t, "second", "b", "Monthly usage"));
    world.wait_finished("second", 1, DEADLINE).await;
    let second = world.generator_external_id("second").await;
    assert_ne!(
        first, second,
        "the second generator adopted the first one's template"
    );
    assert!(world.sim.rde_template_exists(&first) && world.sim.rde_template_exists(&second));
}
