//! Nothing lost, nothing doubled: the operator killed while reports run, lost backend
//! answers, a deleted Secret written again, and SUPPLIER's short-lived URLs renewed before
//! they expire and re-minted on request.

mod common;

use std::time::Duration;

use common::e2e::{World, text};
use common::fixtures::{self, ALL_TYPES, lower, sim_api};
use common::wait_for;
use report_operator::api::{BackendType, FileState, find_condition};
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

/// The expiry a storage URL of the simulator is signed with (its `se`), as RFC 3339.
fn signed_expiry(url: &str) -> String {
    let parsed = url::Url::parse(url).expect("URL");
    parsed
        .query_pairs()
        .find_map(|(k, v)| (k == "se").then(|| v.into_owned()))
        .unwrap_or_else(|| panic!("{} has no expiry", parsed.path()))
}

/// The file a URL points at: its path, without the signed query.
fn file_of(url: &str) -> String {
    url::Url::parse(url).expect("URL").path().to_string()
}

/// The SUPPLIER URL re-mint on request, tested here only: a URL past the keep-fresh window
/// expires unrenewed, and the `refresh-url` annotation has one new URL minted for the same
/// file, without generating the report again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_supplier_url_is_reminted_on_the_refresh_annotation_also_after_it_expired() {
    // URLs that last 15 s, kept fresh for 0 s after READY: the first URL expires unrenewed, as
    // any URL does once the window (default 15 minutes) is over, however long after READY.
    let mut config = SimConfig::default();
    config.supplier.url_lifetime_secs = 15;
    let world = World::start("e2e-remint", config).await;
    let t = BackendType::Supplier;
    world.apply(&fixtures::backend(
        &world.sim,
        t,
        "b",
        &fixtures::good_credentials(t),
        "    keepUrlFreshSeconds: 0\n",
    ));
    world.apply(&fixtures::onetime(t, "trips", "b", "Trips"));
    let files = world.wait_finished("trips", 1, DEADLINE).await;
    let name = files[0].metadata.name.clone().expect("name");
    let first = world.secret_data(&name).await;
    let first_url = text(&first, "url");
    assert_eq!(
        text(&first, "expiresAt"),
        signed_expiry(&first_url),
        "the Secret says when its URL expires"
    );
    let links = world.sim.stats().requests("SUPPLIER", "link");
    let expired = wait_for(
        "the URL expired, not renewed unasked",
        Duration::from_secs(60),
        || async {
            let rf = world.files().get(&name).await.ok()?;
            let c = find_condition(&rf.status?.conditions, "Ready")?.clone();
            (c.reason == "UrlExpired").then_some(c)
        },
    )
    .await;
    assert!(expired.message.contains("refresh-url"), "{}", expired.message);
    assert_eq!(
        world.sim.stats().requests("SUPPLIER", "link"),
        links,
        "no re-mint outside the window"
    );
    let old = reqwest::get(&first_url).await.expect("download");
    assert_eq!(old.status().as_u16(), 403, "the expired URL is dead");

    let out = world.ns.kubectl(&[
        "annotate",
        "reportfile",
        &name,
        "reporting.report-operator.io/refresh-url=late",
    ]);
    assert!(out.status.success(), "{}", common::stderr(&out));
    // The Secret is written before the status records the refresh.
    wait_for(
        "the URL re-minted on the annotation, recorded in the status and an Event",
        Duration::from_secs(40),
        || async {
            let rf = world.files().get(&name).await.ok()?;
            let status = rf.status?;
            let ready = find_condition(&status.conditions, "Ready")?.status == "True";
            let on_annotation = world.events("UrlRefreshed").await.iter().any(|e| {
                e.note
                    .as_deref()
                    .is_some_and(|n| n.contains("refresh-url annotation"))
            });
            (status.last_url_refresh.as_deref() == Some("late") && ready && on_annotation).then_some(())
        },
    )
    .await;
    assert_eq!(
        world.sim.stats().requests("SUPPLIER", "link"),
        links + 1,
        "one new URL for the annotation"
    );
    let fresh = world.secret_data(&name).await;
    let fresh_url = text(&fresh, "url");
    assert_eq!(text(&fresh, "expiresAt"), signed_expiry(&fresh_url));
    assert!(
        text(&fresh, "expiresAt") > text(&first, "expiresAt"),
        "{fresh_url} expires no later than the expired one"
    );
    assert_eq!(file_of(&fresh_url), file_of(&first_url), "the same report file");
    let resp = reqwest::get(&fresh_url).await.expect("download");
    assert!(
        resp.status().is_success(),
        "the re-minted URL answered {}",
        resp.status()
    );
    let body = resp.text().await.expect("body");
    assert!(body.contains("2026-10-01"), "not the report:\n{body:.300}");
    assert_eq!(
        world.sim.stats().total_generations(sim_api(t)),
        1,
        "re-minting never generates the report again"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_report_secret_is_written_again() {
    let world = World::start("e2e-secret", SimConfig::default()).await;
    let t = BackendType::Cmp;
    let rf = world.onetime_finished(t, "Monthly usage", DEADLINE).await;
    let name = rf.metadata.name.clone().expect("name");
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
    // CMP's URL lasts 90 days: the same URL, and every other key as it was.
    assert_eq!(after, before, "the Secret written again is not the one deleted");
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
    let first_expiry = text(&first, "expiresAt");
    // Nobody asks: the operator re-mints the URL shortly before it expires.
    let renewed = wait_for("a renewed URL", Duration::from_secs(60), || async {
        let data = world.secret_data(&name).await;
        (data["expiresAt"] != first["expiresAt"]).then_some(data)
    })
    .await;
    let second_expiry = text(&renewed, "expiresAt");
    assert!(
        second_expiry > first_expiry,
        "{second_expiry} is not later than {first_expiry}"
    );
    let url = text(&renewed, "url");
    assert_eq!(
        second_expiry,
        signed_expiry(&url),
        "the Secret says when its URL expires"
    );
    assert_eq!(
        file_of(&url),
        file_of(&text(&first, "url")),
        "the same report file"
    );
    assert!(reqwest::get(&url).await.expect("download").status().is_success());
    assert_eq!(
        world.sim.stats().total_generations(sim_api(t)),
        1,
        "renewing never generates the report again"
    );
    let rf = world.files().get(&name).await.expect("ReportFile");
    let cond = find_condition(&rf.status.expect("status").conditions, "Ready")
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
