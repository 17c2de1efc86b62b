//! Generators with extreme input end to end: a backfill too long to work through is refused
//! without creating anything, and a generator name of the longest length still makes its
//! report.

mod common;

use std::time::Duration;

use common::e2e::World;
use common::fixtures::{self, sim_api};
use common::wait_for;
use report_operator::api::{BackendType, FileState, find_condition};
use report_sim::SimConfig;

/// Waits for the generator's Ready condition to have `reason`, and returns its status and message.
async fn wait_ready_reason(world: &World, name: &str, reason: &str) -> (String, String) {
    wait_for(
        &format!("generator Ready reason {reason}"),
        Duration::from_secs(90),
        || async {
            let g = world.generators().get(name).await.ok()?;
            let c = find_condition(&g.status?.conditions, "Ready")?.clone();
            (c.reason == reason).then_some((c.status, c.message))
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backfill_from_1970_is_refused_and_creates_nothing() {
    let world = World::start("e2e-backfill-cap", SimConfig::default()).await;
    let t = BackendType::Cmp;
    world.apply(&fixtures::backend(
        &world.sim,
        t,
        "b",
        &fixtures::good_credentials(t),
        "",
    ));
    world.apply(&format!(
        "apiVersion: reporting.report-operator.io/v1alpha1\nkind: ReportGenerator\nmetadata:\n  name: forever\nspec:\n  backendRef:\n    name: b\n  commonName: Daily usage\n  eventType: PERIODIC\n  format: {}\n  parameters:\n    period: P1D\n    startDate: \"1970-01-01T00:00:00Z\"\n{}",
        fixtures::format_for(t),
        fixtures::required_parameters(t),
    ));
    let (status, message) = wait_ready_reason(&world, "forever", "BackfillTooLong").await;
    assert_eq!(status, "False");
    assert!(
        message.contains("1000") && message.contains("or later"),
        "{message}"
    );
    wait_for("a BackfillTooLong Event", Duration::from_secs(30), || async {
        (!world.events("BackfillTooLong").await.is_empty()).then_some(())
    })
    .await;
    // The check comes before any create in the same pass; a later pass refuses again.
    let files = world
        .files()
        .list(&Default::default())
        .await
        .expect("list ReportFiles")
        .items;
    assert!(files.is_empty(), "{} ReportFiles were created", files.len());
    assert_eq!(world.sim.stats().total_generations(sim_api(t)), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_generator_with_a_253_character_name_makes_its_report() {
    let world = World::start("e2e-long-name", SimConfig::default()).await;
    let t = BackendType::Cmp;
    world.apply(&fixtures::backend(
        &world.sim,
        t,
        "b",
        &fixtures::good_credentials(t),
        "",
    ));
    let name = format!("long-{}", "n".repeat(248));
    assert_eq!(name.len(), 253);
    world.apply(&fixtures::onetime(t, &name, "b", "Long name"));
    let (status, _) = wait_ready_reason(&world, &name, "ReportReady").await;
    assert_eq!(status, "True");
    let files = world
        .files()
        .list(&Default::default())
        .await
        .expect("list ReportFiles")
        .items;
    assert_eq!(files.len(), 1);
    let file = &files[0];
    let file_name = file.metadata.name.clone().unwrap_or_default();
    assert!(
        file_name.len() <= 253 && file_name.contains("20261001-20261002"),
        "{file_name}"
    );
    assert_eq!(
        file.status.as_ref().and_then(|s| s.status),
        Some(FileState::Ready)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_file_name_taken_by_another_file_is_a_conflict_until_it_goes() {
    let world = World::start("e2e-file-conflict", SimConfig::default()).await;
    let t = BackendType::Cmp;
    world.apply(&fixtures::backend(
        &world.sim,
        t,
        "b",
        &fixtures::good_credentials(t),
        "",
    ));
    // A file of the name the generator's report gets, that is not the generator's (as one left
    // by an earlier generator of the same name would be).
    world.apply(
        "apiVersion: reporting.report-operator.io/v1alpha1\nkind: ReportFile\nmetadata:\n  name: taken-20261001-20261002\nspec:\n  backendRef: {name: b}\n  name: Somebody else's\n  eventType: ONETIME\n  format: JSON\n  parameters: {startDate: \"2026-10-01T00:00:00Z\", endDate: \"2026-10-02T23:59:59Z\"}\n",
    );
    world.apply(&fixtures::onetime(t, "taken", "b", "Mine"));
    let (status, message) = wait_ready_reason(&world, "taken", "FileConflict").await;
    assert_eq!(status, "False");
    assert!(message.contains("taken-20261001-20261002"), "{message}");
    wait_for("a FileConflict Event", Duration::from_secs(30), || async {
        (!world.events("FileConflict").await.is_empty()).then_some(())
    })
    .await;
    // Once the other file is gone, the generator makes its own.
    world
        .files()
        .delete("taken-20261001-20261002", &Default::default())
        .await
        .expect("delete the other file");
    let (status, _) = wait_ready_reason(&world, "taken", "ReportReady").await;
    assert_eq!(status, "True");
    let uid = world
        .generators()
        .get("taken")
        .await
        .expect("generator")
        .metadata
        .uid;
    let file = world
        .files()
        .get("taken-20261001-20261002")
        .await
        .expect("the generator's file");
    let owner = file
        .metadata
        .owner_references
        .unwrap_or_default()
        .into_iter()
        .find(|o| o.controller == Some(true))
        .map(|o| o.uid);
    assert_eq!(owner, uid);
}
