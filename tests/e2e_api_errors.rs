//! A Kubernetes API error that retrying cannot fix reaches the object's owner: the report's
//! Ready condition names it, an Event says it, and the operator retries with a backoff that
//! grows per object instead of every few seconds for ever.

mod common;

use std::time::Duration;

use common::e2e::World;
use common::fixtures::{self, lower, sim_api};
use common::wait_for;
use report_operator::api::BackendType;
use report_sim::SimConfig;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_the_api_server_refuses_is_a_condition_and_backs_off() {
    let t = BackendType::Cmp;
    let world = World::start("e2e-api-errors", SimConfig::default()).await;
    world.apply(&fixtures::backend(
        &world.sim,
        t,
        "b",
        &fixtures::good_credentials(t),
        "",
    ));
    // The schema takes any string as a label value; the API server refuses this one when the
    // report's Secret is written (422).
    let generator = format!(
        "{}  secretTemplate:\n    labels:\n      team: \"not a label value!\"\n",
        fixtures::onetime(t, "refused", "b", "Monthly usage")
    );
    world.apply(&generator);

    let condition = wait_for(
        "the report to say the API server refused its Secret",
        Duration::from_secs(120),
        || async {
            let files = world.files_of("refused").await;
            let status = files.first()?.status.clone()?;
            let ready = status.conditions.iter().find(|c| c.type_ == "Ready")?.clone();
            (ready.reason == "KubernetesApiError").then_some(ready)
        },
    )
    .await;
    assert_eq!(condition.status, "False");
    assert!(
        condition.message.contains("422"),
        "the message names the refusal: {}",
        condition.message
    );
    assert!(
        condition.message.contains("label"),
        "the message says what was refused: {}",
        condition.message
    );
    wait_for("a KubernetesApiError Event", Duration::from_secs(30), || async {
        (!world.events("KubernetesApiError").await.is_empty()).then_some(())
    })
    .await;

    // Each retry waits longer than the one before (2 s, 4 s, 8 s, … with jitter).
    let retries = wait_for(
        "three retries of the refused report",
        Duration::from_secs(60),
        || async {
            let waits: Vec<f64> = world
                .operator
                .logs()
                .lines()
                .map(common::operator::without_colours)
                .filter(|l| l.contains("reconcile failed") && l.contains("ReportFile"))
                .filter_map(|l| {
                    l.split("retry_in_s=")
                        .nth(1)?
                        .split_whitespace()
                        .next()?
                        .parse()
                        .ok()
                })
                .collect();
            (waits.len() >= 3).then_some(waits)
        },
    )
    .await;
    assert!(
        retries.windows(2).all(|w| w[1] > w[0]),
        "retries do not back off: {retries:?}"
    );
    // The report was generated once: a refused Secret never makes the backend work again.
    assert_eq!(world.sim.stats().total_generations(sim_api(t)), 1, "{}", lower(t));
}
