//! `kubectl report release-finalizers`, the way out when the operator is gone, on the real
//! control plane: a namespace holding CONNECT ReportFiles copied into a ReportStore with
//! `retention: Delete` and an RDE generator, all with the operator's finalizers, is deleted
//! after the operator stopped; it stays Terminating until the command releases them, then
//! goes, while another controller's finalizer stays where it is.

mod common;
mod plugin_support;

use std::time::Duration;

use common::e2e::World;
use common::s3::S3Server;
use common::{TestNamespace, fixtures, stderr, wait_for};
use k8s_openapi::api::core::v1::Namespace;
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams, PostParams};
use plugin_support::{Plugin, ok, refused};
use report_operator::api::{
    BackendType, CONDITION_DELIVERED, FINALIZER_CONNECT_REPORT, FINALIZER_DELIVERY, FINALIZER_RDE_TEMPLATE,
    ReportFile, find_condition,
};
use report_operator::plugin::release::release_patch;
use report_sim::SimConfig;

const DEADLINE: Duration = Duration::from_secs(120);
const BUCKET: &str = "reports";
/// Another controller's finalizer, which the command must leave alone.
const FOREIGN: &str = "example.com/hold";

/// `kubectl patch reportfile NAME --type=json -p PATCH`, as another controller would.
fn patch_file(ns: &TestNamespace, name: &str, patch: &str) {
    let out = ns.kubectl(&["patch", "reportfile", name, "--type=json", "-p", patch]);
    assert!(out.status.success(), "{}", stderr(&out));
}

fn add_foreign(ns: &TestNamespace, name: &str) {
    patch_file(
        ns,
        name,
        &format!(r#"[{{"op":"add","path":"/metadata/finalizers/-","value":"{FOREIGN}"}}]"#),
    );
}

fn has(obj: &impl ResourceExt, finalizer: &str) -> bool {
    obj.finalizers().iter().any(|f| f == finalizer)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_namespace_held_by_the_operators_finalizers_goes_once_they_are_released() {
    let s3 = S3Server::start(&[BUCKET]).await;
    let mut world = World::start("plugin-release", SimConfig::default()).await;
    let ns = world.ns.name.clone();
    world.apply(&s3.manifest("store", BUCKET, "  retention: Delete\n"));
    for (t, name) in [(BackendType::Connect, "connect"), (BackendType::Rde, "rde")] {
        world.apply(&fixtures::backend(
            &world.sim,
            t,
            name,
            &fixtures::good_credentials(t),
            "",
        ));
    }
    for g in ["sales", "usage"] {
        world.apply(&format!(
            "{}  storeRef:\n    name: store\n",
            fixtures::onetime(BackendType::Connect, g, "connect", &format!("Sales {g}"))
        ));
    }
    world.apply(&fixtures::onetime(BackendType::Rde, "billing", "rde", "Billing"));

    // Each CONNECT report made, copied into the store and holding both finalizers; the RDE
    // generator holding its template's.
    let mut files = Vec::new();
    for g in ["sales", "usage"] {
        let rf = wait_for(&format!("{g}'s report Delivered"), DEADLINE, || async {
            let rf = world.files_of(g).await.into_iter().next()?;
            let c = find_condition(&rf.status.as_ref()?.conditions, CONDITION_DELIVERED)?;
            (c.status == "True" && has(&rf, FINALIZER_CONNECT_REPORT) && has(&rf, FINALIZER_DELIVERY))
                .then_some(rf)
        })
        .await;
        files.push(rf.name_any());
    }
    wait_for("the RDE generator's finalizer", DEADLINE, || async {
        let g = world.generators().get("billing").await.ok()?;
        (has(&g, FINALIZER_RDE_TEMPLATE) && g.status?.external_id.is_some()).then_some(())
    })
    .await;
    let objects_before = s3.objects(BUCKET).await;
    assert_eq!(objects_before.len(), 2, "{objects_before:?}");

    // The operator goes (uninstalled, or a cluster torn down in the wrong order), and another
    // controller holds one of the reports too.
    world.operator.kill();
    let held = files[0].clone();
    add_foreign(&world.ns, &held);
    let out = world
        .ns
        .cp()
        .kubectl(&["delete", "namespace", &ns, "--wait=false"]);
    assert!(out.status.success(), "{}", stderr(&out));
    // The namespace controller deletes what it can (the CONNECT generators, the RDE report);
    // the operator's objects stay, being deleted.
    wait_for(
        "every report and generator marked for deletion",
        DEADLINE,
        || async {
            let files = world.files().list(&Default::default()).await.ok()?.items;
            let generators = world.generators().list(&Default::default()).await.ok()?.items;
            let marked = files.iter().all(|f| f.metadata.deletion_timestamp.is_some())
                && generators.iter().all(|g| g.metadata.deletion_timestamp.is_some());
            let names: Vec<String> = generators.iter().map(|g| g.name_any()).collect();
            (marked && files.len() == 2 && names == ["billing"]).then_some(())
        },
    )
    .await;

    let plugin = Plugin::new(world.ns.cp(), &ns);
    let text = ok(
        plugin.via_kubectl(&["release-finalizers", "--all", "--dry-run"]),
        "kubectl report release-finalizers --all --dry-run",
    );
    for f in &files {
        assert!(
            text.contains(&format!(
                "ReportFile {ns}/{f}: would release {FINALIZER_CONNECT_REPORT}, {FINALIZER_DELIVERY}"
            )),
            "{f}:\n{text}"
        );
    }
    for stays in [
        "stays behind: the CONNECT report RP-",
        "on Connect (ReportBackend connect)",
        &format!("stays behind: the copy s3://{BUCKET}/"),
        "(ReportStore store)",
    ] {
        assert!(text.contains(stays), "{stays:?} is missing:\n{text}");
    }
    assert!(
        text.contains(&format!(
            "ReportGenerator {ns}/billing: would release {FINALIZER_RDE_TEMPLATE}"
        )) && text.contains("stays behind: the RDE report template"),
        "{text}"
    );
    assert!(
        text.contains("3 objects hold") && text.contains("nothing was changed"),
        "{text}"
    );
    assert_eq!(
        world
            .files()
            .list(&Default::default())
            .await
            .expect("list")
            .items
            .len(),
        2
    );
    // The check the chart's uninstall hook runs fails, naming the way out.
    let text = refused(
        plugin.run(&["release-finalizers", "--all", "--check"]),
        "release-finalizers --check",
    );
    assert!(
        text.contains("kubectl report release-finalizers --all -A") && text.contains("Uninstalling"),
        "{text}"
    );

    let text = ok(
        plugin.run(&["release-finalizers", "--all"]),
        "kubectl-report release-finalizers --all",
    );
    assert!(
        text.contains("Released the operator's finalizers of 3 objects"),
        "{text}"
    );
    assert!(text.contains(&format!("still held by {FOREIGN}")), "{text}");
    assert!(text.contains("it goes now"), "{text}");

    // All but the foreign-held report go at once; that one keeps its other finalizer only.
    let rf = wait_for("only the foreign-held report left", DEADLINE, || async {
        let files = world.files().list(&Default::default()).await.ok()?.items;
        let generators = world.generators().list(&Default::default()).await.ok()?.items;
        match (files.as_slice(), generators.is_empty()) {
            ([rf], true) => Some(rf.clone()),
            _ => None,
        }
    })
    .await;
    assert_eq!(rf.name_any(), held);
    assert_eq!(
        rf.finalizers(),
        &[FOREIGN.to_string()],
        "only the operator's finalizers go"
    );
    // What the operator never cleaned up is still there, as the command said.
    assert_eq!(
        s3.objects(BUCKET).await,
        objects_before,
        "the copies stay in the bucket"
    );
    assert_eq!(world.sim.stats().requests("CONNECT", "delete"), 0);

    // The other controller finishes: the namespace goes.
    patch_file(
        &world.ns,
        &held,
        r#"[{"op":"remove","path":"/metadata/finalizers/0"}]"#,
    );
    let namespaces: Api<Namespace> = Api::all(world.client.clone());
    wait_for("the namespace gone", DEADLINE, || async {
        matches!(namespaces.get_opt(&ns).await, Ok(None)).then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_finalizer_added_meanwhile_is_never_overwritten() {
    let ns = TestNamespace::new("plugin-release-race").await;
    let client = ns.cp().client().await;
    let files: Api<ReportFile> = Api::namespaced(client, &ns.name);
    let rf: ReportFile = serde_json::from_value(serde_json::json!({
        "apiVersion": "reporting.report-operator.io/v1alpha1",
        "kind": "ReportFile",
        "metadata": {"name": "r", "finalizers": [FINALIZER_CONNECT_REPORT]},
        "spec": {"backendRef": {"name": "b"}, "name": "Sales", "eventType": "ONETIME", "format": "CSV"},
    }))
    .expect("ReportFile");
    files.create(&PostParams::default(), &rf).await.expect("create");

    // The patch made from what was read, sent after another controller added its finalizer.
    let read = files.get("r").await.expect("get");
    let (patch, released) = release_patch(read.finalizers()).expect("a patch");
    assert_eq!(released, vec![FINALIZER_CONNECT_REPORT.to_string()]);
    add_foreign(&ns, "r");
    let stale = files
        .patch(
            "r",
            &PatchParams::default(),
            &Patch::<()>::Json(serde_json::from_value(patch).expect("json patch")),
        )
        .await;
    assert!(stale.is_err(), "a patch made from a stale read was applied");
    assert_eq!(
        files.get("r").await.expect("get").finalizers(),
        &[FINALIZER_CONNECT_REPORT.to_string(), FOREIGN.to_string()]
    );

    // The command reads again: the operator's goes, the other stays.
    let plugin = Plugin::new(ns.cp(), &ns.name);
    let text = ok(
        plugin.run(&["release-finalizers", "rf/r"]),
        "release-finalizers rf/r",
    );
    assert!(
        text.contains(&format!("released {FINALIZER_CONNECT_REPORT}")),
        "{text}"
    );
    assert!(
        text.contains("stays behind: nothing (no CONNECT report was made for it)"),
        "{text}"
    );
    assert_eq!(
        files.get("r").await.expect("get").finalizers(),
        &[FOREIGN.to_string()]
    );
    // Named objects that are not there, or hold nothing of the operator's.
    let text = ok(plugin.run(&["release-finalizers", "r"]), "release-finalizers r");
    assert!(
        text.contains("No object holds the operator's finalizers"),
        "{text}"
    );
    refused(
        plugin.run(&["release-finalizers", "rf/missing"]),
        "release-finalizers rf/missing",
    );
    refused(
        plugin.run(&["release-finalizers"]),
        "release-finalizers without objects",
    );
}
