//! Deletion never hangs on the operator (issue #25), on the real control plane with the
//! operator running: a namespace holding many CONNECT ReportFiles, some of them copied into a
//! ReportStore with `retention: Delete`, is gone within a bound; and a platform that refuses
//! to remove its reports, or a store that is gone, holds its ReportFiles only for the
//! deletion grace, saying why in their `Ready` condition (reason `Deleting`) meanwhile.
//!
//! And a deleted ReportFile removes only what it made (issue #20): not a CONNECT report whose
//! id was written into its spec, not an object its copy named but never wrote. And the
//! operator goes on seeing ReportFiles after a burst of short-lived ones.

mod common;

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, DeleteParams, ListParams};
use report_operator::api::{BackendType, CONDITION_DELIVERED, CONDITION_READY, ReportFile, find_condition};
use report_sim::{Fault, FaultKind, ReportingApi, SimConfig, SimServer};

use common::operator::Operator;
use common::s3::S3Server;
use common::{TestNamespace, fixtures, wait_for};

const BUCKET: &str = "reports";

/// `n` hand-made CONNECT ReportFiles `f-0` … of backend `connect`; every `stored_every`-th
/// one copied into the ReportStore `bucket`.
fn report_files(n: usize, stored_every: usize) -> String {
    (0..n).map(|i| report_file(i, i % stored_every == 0)).collect()
}

/// The ReportFile `f-{i}` of [`report_files`].
fn report_file(i: usize, stored: bool) -> String {
    let store = if stored {
        "  storeRef:\n    name: bucket\n"
    } else {
        ""
    };
    format!(
        "---\napiVersion: reporting.report-operator.io/v1alpha1\nkind: ReportFile\nmetadata:\n  name: f-{i}\nspec:\n  backendRef:\n    name: connect\n  name: Usage {i}\n  eventType: ONETIME\n  format: JSON\n  parameters:\n    startDate: \"2026-10-01T00:00:00Z\"\n    endDate: \"2026-10-02T23:59:59Z\"\n    template: RT-0000-0001\n{store}"
    )
}

/// A namespace with a CONNECT backend at a simulator whose reports take `generation_ms`, a
/// ReportStore `bucket` (retention Delete) and `n` ReportFiles, every `stored_every`-th
/// copied into it; the operator started with `extra_args`. Returns once every report is
/// READY and every copy Delivered.
struct Setup {
    // Dropped in this order: the operator first.
    operator: Operator,
    sim: SimServer,
    s3: S3Server,
    ns: TestNamespace,
    client: kube::Client,
}

impl Setup {
    async fn start(prefix: &str, n: usize, stored_every: usize, extra_args: &[&str]) -> Setup {
        Setup::with_store(prefix, n, stored_every, "", extra_args).await
    }

    /// [`Setup::start`] with more of the ReportStore's spec (`store_spec`, indented lines).
    async fn with_store(
        prefix: &str,
        n: usize,
        stored_every: usize,
        store_spec: &str,
        extra_args: &[&str],
    ) -> Setup {
        let s3 = S3Server::start(&[BUCKET]).await;
        let client = common::control_plane().await.client().await;
        common::install_crds(&client).await;
        let ns = TestNamespace::new(prefix).await;
        let mut config = SimConfig::default();
        config.connect.behaviour.generation_ms = 200;
        let sim = SimServer::start(config, "127.0.0.1:0".parse().expect("addr"))
            .await
            .expect("start simulator");
        let operator = Operator::start_with(ns.cp(), &ns.name, extra_args);
        let setup = Setup {
            operator,
            sim,
            s3,
            ns,
            client,
        };
        let t = BackendType::Connect;
        setup.apply(
            &setup
                .s3
                .manifest("bucket", BUCKET, &format!("  retention: Delete\n{store_spec}")),
        );
        setup.apply(&fixtures::backend(
            &setup.sim,
            t,
            "connect",
            &fixtures::good_credentials(t),
            "",
        ));
        setup.apply(&report_files(n, stored_every));
        let stored = n.div_ceil(stored_every);
        let what = format!(
            "{n} reports READY and {stored} copies Delivered (operator log: {})",
            setup.operator.log.display()
        );
        let files = setup.files();
        wait_for(&what, Duration::from_secs(240), || async {
            let list = files.list(&Default::default()).await.ok()?.items;
            let done = list.iter().filter(|rf| finished(rf)).count();
            (list.len() == n && done == n).then_some(())
        })
        .await;
        assert_eq!(
            setup.s3.objects(BUCKET).await.len(),
            stored,
            "one object per copy"
        );
        setup
    }

    fn apply(&self, yaml: &str) {
        self.ns.apply(yaml);
    }

    fn files(&self) -> Api<ReportFile> {
        Api::namespaced(self.client.clone(), &self.ns.name)
    }

    /// How many ReportFiles a Warning Event with `reason` is about.
    async fn told(&self, reason: &str) -> usize {
        let api: Api<Event> = Api::namespaced(self.client.clone(), &self.ns.name);
        let events = api
            .list(&ListParams::default().fields(&format!("reason={reason}")))
            .await
            .expect("list Events")
            .items;
        events
            .iter()
            .filter_map(|e| e.regarding.as_ref()?.name.clone())
            .collect::<std::collections::HashSet<_>>()
            .len()
    }

    /// Successful removals of reports on the CONNECT simulator.
    fn removed_on_connect(&self) -> u64 {
        self.sim
            .stats()
            .requests
            .iter()
            .filter(|r| r.backend == "connect" && r.endpoint == "delete" && (200..300).contains(&r.status))
            .map(|r| r.count)
            .sum()
    }
}

/// READY, and Delivered if it has a store.
fn finished(rf: &ReportFile) -> bool {
    let Some(status) = rf.status.as_ref() else {
        return false;
    };
    let complete = find_condition(&status.conditions, "Complete").is_some_and(|c| c.status == "True");
    let delivered = rf.spec.store_ref.is_none()
        || find_condition(&status.conditions, CONDITION_DELIVERED).is_some_and(|c| c.status == "True");
    complete && delivered
}

/// How many ReportFiles, and how many CONNECT copies of them, the namespace test makes: as
/// many as are READY and copied well within a minute in the debug build.
const MANY: usize = 150;
const STORED_EVERY: usize = 3;

/// The namespace is gone this long after its deletion at the latest (the figure measured
/// is in docs/notes/wip-deliver.md).
const NAMESPACE_GONE: Duration = Duration::from_secs(60);

/// The deletion grace of the namespace test's operator. The namespace controller deletes the
/// namespace's Secrets and its ReportFiles in no set order: when the credentials go first,
/// the backend is no longer Ready and each ReportFile waits out the grace (documented), which
/// must fit in [`NAMESPACE_GONE`].
const NAMESPACE_GRACE: &str = "--deletion-grace-seconds=20";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_namespace_of_connect_reports_and_copies_is_gone_within_the_bound_while_the_operator_runs() {
    let setup = Setup::start(
        "e2e-nsdel",
        MANY,
        STORED_EVERY,
        &[
            "--delivery-concurrency=8",
            "--delivery-per-namespace=8",
            NAMESPACE_GRACE,
        ],
    )
    .await;
    let namespaces: Api<Namespace> = Api::all(setup.client.clone());
    let started = Instant::now();
    namespaces
        .delete(&setup.ns.name, &DeleteParams::default())
        .await
        .expect("delete the namespace");
    let what = format!(
        "namespace {} gone (operator log: {})",
        setup.ns.name,
        setup.operator.log.display()
    );
    wait_for(&what, NAMESPACE_GONE, || async {
        namespaces
            .get_opt(&setup.ns.name)
            .await
            .ok()
            .and_then(|ns| ns.is_none().then_some(()))
    })
    .await;
    let took = started.elapsed();
    let objects_left = setup.s3.objects(BUCKET).await.len();
    println!(
        "namespace of {MANY} CONNECT ReportFiles ({} with retention Delete) gone in {:.1} s; {} of {MANY} reports removed on CONNECT; {objects_left} of {} objects left in the store",
        MANY.div_ceil(STORED_EVERY),
        took.as_secs_f64(),
        setup.removed_on_connect(),
        MANY.div_ceil(STORED_EVERY),
    );
}

/// The grace the operator of the next test gets: short, so that the test waits it out.
const GRACE_SECS: u64 = 15;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_platform_that_refuses_and_a_store_that_is_gone_hold_a_deletion_only_for_the_grace() {
    let grace = format!("--deletion-grace-seconds={GRACE_SECS}");
    let mut setup = Setup::start("e2e-nsdel-refused", 6, 2, &[&grace]).await;
    // From now on Connect refuses every removal, and the store is gone.
    setup.sim.inject(Fault::new(
        ReportingApi::Connect,
        "delete",
        FaultKind::ServerError,
        1_000_000,
    ));
    setup.s3.stop();
    let files = setup.files();
    let started = Instant::now();
    files
        .delete_collection(&DeleteParams::default(), &Default::default())
        .await
        .expect("delete the ReportFiles");

    // Meanwhile each says why it waits.
    let (stored, plain) = wait_for(
        "a Deleting condition on a stored and on a plain ReportFile",
        Duration::from_secs(GRACE_SECS),
        || async {
            let list = files.list(&Default::default()).await.ok()?.items;
            let deleting = |rf: &ReportFile| {
                let c = find_condition(&rf.status.as_ref()?.conditions, CONDITION_READY)?;
                (c.reason == "Deleting").then(|| c.message.clone())
            };
            let stored = list
                .iter()
                .filter(|rf| rf.spec.store_ref.is_some())
                .find_map(deleting)?;
            let plain = list
                .iter()
                .filter(|rf| rf.spec.store_ref.is_none())
                .find_map(deleting)?;
            Some((stored, plain))
        },
    )
    .await;
    assert!(
        stored.starts_with("being deleted: the copy s3://reports/")
            && stored.contains("cannot be deleted yet")
            && stored.ends_with("then the finalizer reporting.report-operator.io/delivery goes"),
        "{stored}"
    );
    assert!(
        plain.starts_with("being deleted: removing the report on CONNECT failed")
            && plain.ends_with("then the finalizer reporting.report-operator.io/connect-report goes"),
        "{plain}"
    );

    let what = format!(
        "every ReportFile gone within the grace (operator log: {})",
        setup.operator.log.display()
    );
    wait_for(&what, Duration::from_secs(GRACE_SECS + 30), || async {
        files
            .list(&Default::default())
            .await
            .ok()
            .and_then(|l| l.items.is_empty().then_some(()))
    })
    .await;
    println!(
        "6 ReportFiles whose platform refuses and whose store is gone: gone {:.1} s after their deletion (grace {GRACE_SECS} s)",
        started.elapsed().as_secs_f64()
    );
    assert_eq!(setup.removed_on_connect(), 0, "Connect refused every removal");
    assert_eq!(
        setup.told("ReportLeft").await,
        6,
        "each report left on CONNECT is told"
    );
    assert_eq!(
        setup.told("DeliveryCleanupSkipped").await,
        3,
        "each copy left in the store is told"
    );
}

/// The ReportFile `name` of `ns`, once `done` says it is.
async fn file_when(
    files: &Api<ReportFile>,
    name: &str,
    what: &str,
    done: impl Fn(&ReportFile) -> bool,
) -> ReportFile {
    wait_for(what, Duration::from_secs(120), || async {
        files.get(name).await.ok().filter(|rf| done(rf))
    })
    .await
}

/// Deletes the ReportFile `name` and waits until it is gone.
async fn delete_file(setup: &Setup, name: &str) {
    let files = setup.files();
    files
        .delete(name, &DeleteParams::default())
        .await
        .expect("delete the ReportFile");
    let what = format!(
        "ReportFile {name} gone (operator log: {})",
        setup.operator.log.display()
    );
    wait_for(&what, Duration::from_secs(60), || async {
        files.get_opt(name).await.ok()?.is_none().then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_file_removes_no_connect_report_whose_id_was_written_into_its_spec() {
    let setup = Setup::start("e2e-adopted-id", 1, 1_000, &[]).await;
    let maker = setup.files().get("f-0").await.expect("f-0");
    let id = maker
        .status
        .as_ref()
        .and_then(|s| s.external_id.clone())
        .expect("f-0's report id");
    // Another team's namespace, with an operator of its own that does not see f-0 (as a
    // report kept by another tool): a ReportFile written by hand with f-0's report id
    // follows that report to READY.
    let other = TestNamespace::new("e2e-adopted-id-other").await;
    let operator = Operator::start_with(other.cp(), &other.name, &[]);
    let t = BackendType::Connect;
    other.apply(&fixtures::backend(
        &setup.sim,
        t,
        "connect",
        &fixtures::good_credentials(t),
        "",
    ));
    other.apply(&format!(
        "apiVersion: reporting.report-operator.io/v1alpha1\nkind: ReportFile\nmetadata:\n  name: adopted\nspec:\n  backendRef:\n    name: connect\n  name: Adopted\n  eventType: ONETIME\n  format: JSON\n  externalId: {id}\n  parameters:\n    startDate: \"2026-10-01T00:00:00Z\"\n    endDate: \"2026-10-02T23:59:59Z\"\n    template: RT-0000-0001\n"
    ));
    let files: Api<ReportFile> = Api::namespaced(setup.client.clone(), &other.name);
    file_when(&files, "adopted", "the adopted report READY", finished).await;

    // Deleted: no ReportFile its operator sees holds the report, but its id was written into
    // the spec, not made for it.
    files
        .delete("adopted", &DeleteParams::default())
        .await
        .expect("delete the ReportFile");
    let events: Api<Event> = Api::namespaced(setup.client.clone(), &other.name);
    let what = format!(
        "an Event saying what became of report {id} (operator log: {})",
        operator.log.display()
    );
    let (reason, note) = wait_for(&what, Duration::from_secs(60), || async {
        let list = events.list(&ListParams::default()).await.ok()?.items;
        list.into_iter().find_map(|e| {
            let about = e.regarding.as_ref()?.name.as_deref() == Some("adopted");
            let told = matches!(e.reason.as_deref(), Some("ReportLeft" | "ReportRemoved"));
            (about && told).then(|| (e.reason.unwrap_or_default(), e.note.unwrap_or_default()))
        })
    })
    .await;
    assert_eq!(
        (reason.as_str(), note),
        (
            "ReportLeft",
            format!(
                "report {id} stays on CONNECT: its id was written into spec.externalId, and the operator removes only reports it made for the ReportFile"
            )
        ),
        "what became of the adopted report"
    );
    assert_eq!(
        setup.removed_on_connect(),
        0,
        "report {id} was removed on CONNECT"
    );
    drop(operator);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_that_never_completed_deletes_no_object_when_its_report_file_goes() {
    // Every report's copy goes to one key: the second ReportFile's copy names the first's
    // object.
    let setup = Setup::with_store(
        "e2e-unwritten-copy",
        1,
        1,
        "  pathTemplate: \"{namespace}/shared.{ext}\"\n",
        &[],
    )
    .await;
    let objects = setup.s3.objects(BUCKET).await;
    assert_eq!(objects.len(), 1, "{objects:?}");
    let (location, _) = objects[0].clone();
    // From now on every download of a report from the platform fails: no copy completes.
    setup.sim.inject(Fault::new(
        ReportingApi::Connect,
        "storage",
        FaultKind::ServerError,
        1_000_000,
    ));
    setup.apply(&report_file(1, true));
    let files = setup.files();
    // Its copy aims at f-0's object and fails before it writes anything.
    let failed = file_when(&files, "f-1", "f-1's copy tried and failed", |rf| {
        let conditions = rf.status.as_ref().map(|s| &s.conditions[..]).unwrap_or_default();
        find_condition(conditions, CONDITION_DELIVERED)
            .is_some_and(|c| c.status == "False" && !matches!(c.reason.as_str(), "Copying" | "Queued"))
    })
    .await;
    let reason = find_condition(
        &failed.status.as_ref().expect("status").conditions,
        CONDITION_DELIVERED,
    )
    .map(|c| c.reason.clone());

    delete_file(&setup, "f-1").await;
    assert_eq!(
        setup.s3.objects(BUCKET).await,
        objects,
        "f-1's copy never completed (Delivered {reason:?}), yet deleting it removed f-0's object {location}"
    );
}

/// The operator goes on seeing ReportFiles after a burst of short-lived ones. A ReportFile
/// made and deleted within moments arrives with its deletion in one read of the watch while
/// the controllers are behind on the burst; kube's shared reflector then stopped handing on
/// ReportFile events for good (the soak found it: new reports never reconciled, deleted ones
/// reconciled for ever).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_file_made_after_a_burst_of_short_lived_ones_is_reconciled() {
    let setup = Setup::start("e2e-short-lived", 1, 1, &[]).await;
    let files = setup.files();
    // Each made and at once deleted, several at a time. They name a backend that is not
    // there, so that no finalizer holds them.
    let template: ReportFile =
        serde_yaml::from_str(&report_file(0, false).replace("name: connect", "name: absent"))
            .expect("a ReportFile");
    let makers = (0..MAKERS).map(|m| {
        let (files, template) = (files.clone(), template.clone());
        async move {
            for i in 0..SHORT_LIVED / MAKERS {
                let mut rf = template.clone();
                rf.metadata.name = Some(format!("short-{m}-{i}"));
                files
                    .create(&Default::default(), &rf)
                    .await
                    .expect("make a ReportFile");
                files
                    .delete(&format!("short-{m}-{i}"), &DeleteParams::default())
                    .await
                    .expect("delete it");
            }
        }
    });
    futures::future::join_all(makers).await;
    setup.apply(&report_file(1, true));
    let what = format!(
        "f-1, made after {SHORT_LIVED} short-lived ReportFiles, READY and Delivered (operator log: {})",
        setup.operator.log.display()
    );
    file_when(&files, "f-1", &what, finished).await;
}

/// ReportFiles made and deleted, by this many makers at once.
const SHORT_LIVED: usize = 1_000;
const MAKERS: usize = 20;
