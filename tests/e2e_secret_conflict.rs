//! Safe in a shared namespace: a report never takes over a Secret it did not create.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::e2e::World;
use common::fixtures::{self, sim_api};
use common::wait_for;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{DeleteParams, ObjectMeta, PostParams};
use report_operator::api::{BackendType, FileState, find_condition};
use report_sim::SimConfig;

const DEADLINE: Duration = Duration::from_secs(120);
/// The report looks at a foreign Secret again every 30 s.
const AFTER_DELETION: Duration = Duration::from_secs(90);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_secret_with_the_report_name_is_left_alone_until_it_is_deleted() {
    let world = World::start("e2e-conflict", SimConfig::default()).await;
    let t = BackendType::Cmp;
    // The name the ONETIME generator `victim` gives its report for 2026-10-01 .. 2026-10-02.
    let name = "victim-20261001-20261002";
    let foreign = Secret {
        metadata: ObjectMeta {
            name: Some(name.into()),
            labels: Some(BTreeMap::from([("team".to_string(), "payments".to_string())])),
            annotations: Some(BTreeMap::from([(
                "owner".to_string(),
                "someone else".to_string(),
            )])),
            ..Default::default()
        },
        data: Some(BTreeMap::from([(
            "password".to_string(),
            ByteString(b"hunter2".to_vec()),
        )])),
        ..Default::default()
    };
    let before = world
        .secrets()
        .create(&PostParams::default(), &foreign)
        .await
        .expect("create the foreign Secret");
    world.apply(&fixtures::backend(
        &world.sim,
        t,
        "b",
        &fixtures::good_credentials(t),
        "",
    ));
    world.apply(&fixtures::onetime(t, "victim", "b", "Monthly usage"));

    let what = format!(
        "Ready reason SecretConflict (operator log: {})",
        world.operator.log.display()
    );
    let (status, cond) = wait_for(&what, DEADLINE, || async {
        let status = world.files().get(name).await.ok()?.status?;
        let cond = find_condition(&status.conditions, "Ready")?.clone();
        (cond.reason == "SecretConflict").then_some((status, cond))
    })
    .await;
    assert_eq!(cond.status, "False");
    assert_eq!(
        status.status,
        Some(FileState::InProgress),
        "the report itself is fine: {status:?}"
    );
    assert!(
        cond.message.contains(name) && cond.message.contains("Delete or rename"),
        "{}",
        cond.message
    );
    let events = wait_for("a SecretConflict Event", DEADLINE, || async {
        let events = world.events("SecretConflict").await;
        (!events.is_empty()).then_some(events)
    })
    .await;
    assert_eq!(events[0].type_.as_deref(), Some("Warning"));

    // Byte for byte as it was: not a key, label, annotation or owner added, not one write.
    let after = world
        .secrets()
        .get(name)
        .await
        .expect("the foreign Secret is still there");
    assert_eq!(after.data, before.data, "data");
    assert_eq!(after.metadata.labels, before.metadata.labels, "labels");
    assert_eq!(
        after.metadata.annotations, before.metadata.annotations,
        "annotations"
    );
    assert_eq!(
        after.metadata.owner_references, before.metadata.owner_references,
        "ownerReferences"
    );
    assert_eq!(
        after.metadata.resource_version, before.metadata.resource_version,
        "resourceVersion"
    );

    // Once its owner deletes it, the report finishes with a Secret of its own.
    world
        .secrets()
        .delete(name, &DeleteParams::default())
        .await
        .expect("delete the foreign Secret");
    let files = world.wait_finished("victim", 1, AFTER_DELETION).await;
    let rf = &files[0];
    let status = rf.status.clone().expect("status");
    assert_eq!(status.status, Some(FileState::Ready), "{status:?}");
    let secret = world.secrets().get(name).await.expect("the report's Secret");
    let data = secret.data.unwrap_or_default();
    let url = data
        .get("url")
        .map(|u| String::from_utf8_lossy(&u.0).into_owned())
        .unwrap_or_else(|| panic!("no url: {:?}", data.keys().collect::<Vec<_>>()));
    // The report's own file in the simulated CMP storage, which downloads.
    assert!(
        url.starts_with(&format!("{}/storage/cmp/", world.sim.base_url())),
        "not a CMP report URL: {}",
        url.split('?').next().unwrap_or_default()
    );
    let got = reqwest::get(&url).await.expect("download");
    assert!(got.status().is_success(), "the URL answered {}", got.status());
    assert!(!data.contains_key("password"), "the foreign data came back");
    let owner = secret.metadata.owner_references.unwrap_or_default();
    assert!(
        owner.iter().any(|o| o.controller == Some(true)
            && o.kind == "ReportFile"
            && Some(&o.uid) == rf.metadata.uid.as_ref()),
        "not controlled by the ReportFile: {owner:?}"
    );
    assert_eq!(
        world.sim.stats().total_generations(sim_api(t)),
        1,
        "generated once"
    );
}
