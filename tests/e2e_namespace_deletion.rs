//! Deletion never hangs on the operator (issue #25), on the real control plane with the
//! operator running: a namespace holding many CONNECT ReportFiles, some of them copied into a
//! ReportStore with `retention: Delete`, is gone within a bound; and a platform that refuses
//! to remove its reports, or a store that is gone, holds its ReportFiles only for the
//! deletion grace, saying why in their `Ready` condition (reason `Deleting`) meanwhile.

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
    (0..n)
        .map(|i| {
            let store = if i % stored_every == 0 {
                "  storeRef:\n    name: bucket\n"
            } else {
                ""
            };
            format!(
                "---\napiVersion: reporting.report-operator.io/v1alpha1\nkind: ReportFile\nmetadata:\n  name: f-{i}\nspec:\n  backendRef:\n    name: connect\n  name: Usage {i}\n  eventType: ONETIME\n  format: JSON\n  parameters:\n    startDate: \"2026-10-01T00:00:00Z\"\n    endDate: \"2026-10-02T23:59:59Z\"\n    template: RT-0000-0001\n{store}"
            )
        })
        .collect()
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
        setup.apply(&setup.s3.manifest("bucket", BUCKET, "  retention: Delete\n"));
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
        let out = self.ns.kubectl_stdin(&["apply", "-f", "-"], yaml);
        assert!(
            out.status.success(),
            "kubectl apply failed: {}",
            common::stderr(&out)
        );
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_namespace_of_connect_reports_and_copies_is_gone_within_the_bound_while_the_operator_runs() {
    let setup = Setup::start(
        "e2e-nsdel",
        MANY,
        STORED_EVERY,
        &["--delivery-concurrency=8", "--delivery-per-namespace=8"],
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
