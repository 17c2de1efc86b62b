//! Fair share between namespaces (issue "Safe in a shared cluster, part 2"): one operator
//! watching every namespace; in one namespace, 24 CONNECT reports whose ReportStore answers
//! the bucket listing (so it is Ready) but holds every upload open without an answer; in
//! another, a ONETIME report. The neighbour's report must be READY within its generation time
//! plus 2 s: copies into a store run apart from the reconciles, at most a few per namespace,
//! so hung uploads hold neither the ReportFile workers nor more than their namespace's share.
//!
//! And reports whose backend holds every answer (each call made, then no answer for a
//! minute): their reconciles wait, but a namespace holds at most three quarters of the
//! ReportFile workers, so the neighbour's report is again READY within its generation time
//! plus 2 s.
//!
//! `cargo test --test e2e_fair_share -- --nocapture` prints the figures.

mod common;

use std::time::{Duration, Instant};

use kube::api::ListParams;
use report_operator::api::{BackendType, FileState, ReportFile, ReportStore, find_condition};
use report_sim::{Fault, FaultKind, ReportingApi, SimConfig, SimServer};

use common::hostile_s3::{HostileS3, S3Mode};
use common::operator::{LOOPBACK_SIMULATORS, Operator};
use common::{TestNamespace, control_plane, fixtures, wait_for};

/// ReportFiles whose copies hang in the hostile namespace.
const HUNG_COPIES: usize = 24;
/// What the neighbour's report may take beyond the simulator's generation time.
const MARGIN: Duration = Duration::from_secs(2);
const SETUP_DEADLINE: Duration = Duration::from_secs(120);

/// The tests here run one at a time: each starts an operator that watches every namespace,
/// which would reconcile the other test's namespaces too.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A ReportStore `name` at the hostile endpoint's `mode` bucket, with its credentials.
fn hostile_store(s3: &HostileS3, name: &str, mode: S3Mode) -> String {
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: {name}-s3\nstringData:\n  accessKeyId: AKIDFAIRSHARE\n  secretAccessKey: fair-share-secret\n---\n\
apiVersion: reporting.report-operator.io/v1alpha1\nkind: ReportStore\nmetadata:\n  name: {name}\nspec:\n  url: s3://{}/reports\n  endpoint: {}\n  credentialsSecretRef:\n    name: {name}-s3\n",
        mode.bucket(),
        s3.endpoint()
    )
}

/// The ReportFiles of `ns`.
async fn files(client: &kube::Client, ns: &str) -> Vec<ReportFile> {
    kube::Api::<ReportFile>::namespaced(client.clone(), ns)
        .list(&ListParams::default())
        .await
        .map(|l| l.items)
        .unwrap_or_default()
}

fn is_ready(rf: &ReportFile) -> bool {
    rf.status.as_ref().and_then(|s| s.status) == Some(FileState::Ready)
}

/// Applies a ONETIME CONNECT generator `name` in `ns` and returns how long its report took
/// from the apply to READY.
async fn onetime_ready(client: &kube::Client, ns: &TestNamespace, name: &str, log: &str) -> Duration {
    let started = Instant::now();
    ns.apply(&fixtures::onetime(
        BackendType::Connect,
        name,
        "connect",
        "Neighbour report",
    ));
    let label = ListParams::default().labels(&format!("reporting.report-operator.io/generator={name}"));
    let api = kube::Api::<ReportFile>::namespaced(client.clone(), &ns.name);
    wait_for(
        &format!("the neighbour's report {name} READY (operator log: {log})"),
        Duration::from_secs(300),
        || async {
            api.list(&label)
                .await
                .ok()?
                .items
                .iter()
                .any(is_ready)
                .then_some(())
        },
    )
    .await;
    started.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copies_hung_in_one_namespace_do_not_hold_back_another_namespaces_report() {
    let _one = ONE_AT_A_TIME.lock().await;
    let cp = control_plane().await;
    let client = cp.client().await;
    let s3 = HostileS3::start().await;
    let sim = SimServer::start(SimConfig::default(), "127.0.0.1:0".parse().expect("addr"))
        .await
        .expect("start simulator");
    let generation = sim.config().behaviour(ReportingApi::Connect).generation();
    let hostile = TestNamespace::new("fair-hung").await;
    let neighbour = TestNamespace::new("fair-neighbour").await;
    let operator = Operator::start_all_namespaces(cp, "fair-share", LOOPBACK_SIMULATORS);
    let log = operator.log.display().to_string();
    let connect = fixtures::backend(
        &sim,
        BackendType::Connect,
        "connect",
        &fixtures::good_credentials(BackendType::Connect),
        "",
    );
    neighbour.apply(&connect);
    hostile.apply(&connect);
    hostile.apply(&hostile_store(&s3, "hold", S3Mode::HoldUploads));
    let stores = kube::Api::<ReportStore>::namespaced(client.clone(), &hostile.name);
    wait_for("the holding store Ready", SETUP_DEADLINE, || async {
        let rs = stores.get("hold").await.ok()?;
        let c = find_condition(&rs.status?.conditions, "Ready")?.clone();
        (c.status == "True").then_some(())
    })
    .await;

    // The neighbour's report before the hostile tenant starts, for comparison.
    let quiet = onetime_ready(&client, &neighbour, "before", &log).await;
    eprintln!("neighbour's ONETIME report READY after {quiet:?} with nothing else going on");

    for i in 0..HUNG_COPIES {
        hostile.apply(&format!(
            "{}  storeRef:\n    name: hold\n",
            fixtures::onetime(BackendType::Connect, &format!("hung-{i:02}"), "connect", "Hung")
        ));
    }
    // Every report made, and copies hanging in the store: from here on, uploads are held open.
    wait_for(
        &format!("{HUNG_COPIES} reports made and uploads held open (operator log: {log})"),
        SETUP_DEADLINE,
        || async {
            (files(&client, &hostile.name).await.len() == HUNG_COPIES && s3.held() > 0).then_some(())
        },
    )
    .await;
    let ready = files(&client, &hostile.name)
        .await
        .iter()
        .filter(|f| is_ready(f))
        .count();
    eprintln!(
        "{ready} of {HUNG_COPIES} reports READY in {}, {} uploads held open",
        hostile.name,
        s3.held()
    );

    let loaded = onetime_ready(&client, &neighbour, "during", &log).await;
    let held = s3.held();
    eprintln!(
        "neighbour's ONETIME report READY after {loaded:?} with {HUNG_COPIES} copies hung in another namespace ({held} uploads held open at the end; generation time {generation:?}, quiet {quiet:?})"
    );
    assert!(
        held > 0,
        "the uploads were no longer held when the neighbour's report was READY: the case proves nothing"
    );
    assert!(
        loaded <= generation + MARGIN,
        "the neighbour's report took {loaded:?}, more than its generation time {generation:?} + {MARGIN:?} (operator log: {log})"
    );
    drop(operator);
}

/// ReportFiles of `ns` whose report is being asked for (the create-once mark written before
/// the call, no id yet).
async fn asking(client: &kube::Client, ns: &str) -> usize {
    files(client, ns)
        .await
        .iter()
        .filter(|rf| {
            rf.status
                .as_ref()
                .is_some_and(|s| s.create_pending_since.is_some() && s.external_id.is_none())
        })
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_whose_backend_holds_every_answer_do_not_hold_back_another_namespaces_report() {
    let _one = ONE_AT_A_TIME.lock().await;
    let cp = control_plane().await;
    let client = cp.client().await;
    let start = || async {
        SimServer::start(SimConfig::default(), "127.0.0.1:0".parse().expect("addr"))
            .await
            .expect("start simulator")
    };
    let (sim, holding) = (start().await, start().await);
    let generation = sim.config().behaviour(ReportingApi::Connect).generation();
    let hostile = TestNamespace::new("fair-slow").await;
    let neighbour = TestNamespace::new("fair-slow-neighbour").await;
    let operator = Operator::start_all_namespaces(cp, "fair-slow", LOOPBACK_SIMULATORS);
    let log = operator.log.display().to_string();
    let backend = |sim: &SimServer| {
        fixtures::backend(
            sim,
            BackendType::Connect,
            "connect",
            &fixtures::good_credentials(BackendType::Connect),
            "",
        )
    };
    neighbour.apply(&backend(&sim));
    hostile.apply(&backend(&holding));
    let quiet = onetime_ready(&client, &neighbour, "before", &log).await;
    eprintln!("neighbour's ONETIME report READY after {quiet:?} with nothing else going on");

    // From now on the hostile namespace's backend makes each report asked for, then holds the
    // answer for a minute (the operator gives up on a request after 30 s).
    holding.inject(Fault::new(
        ReportingApi::Connect,
        "*",
        FaultKind::Timeout,
        1_000_000,
    ));
    const HELD: usize = 24;
    for i in 0..HELD {
        hostile.apply(&fixtures::onetime(
            BackendType::Connect,
            &format!("held-{i:02}"),
            "connect",
            "Held",
        ));
    }
    // At least as many answers held as a namespace's three quarters of the 16 workers.
    wait_for(
        &format!("12 reports asked for and their answers held (operator log: {log})"),
        SETUP_DEADLINE,
        || async { (asking(&client, &hostile.name).await >= 12).then_some(()) },
    )
    .await;

    let loaded = onetime_ready(&client, &neighbour, "during", &log).await;
    let held = asking(&client, &hostile.name).await;
    let metrics = operator.metrics().await;
    let deferred = metrics
        .lines()
        .find(|l| l.starts_with("report_operator_reconciles_total{kind=\"ReportFile\",result=\"deferred\"}"))
        .unwrap_or("no deferred ReportFile reconcile")
        .to_string();
    eprintln!(
        "neighbour's ONETIME report READY after {loaded:?} with the answers of {held} reports held in another namespace (generation time {generation:?}, quiet {quiet:?}; {deferred})"
    );
    assert!(
        loaded <= generation + MARGIN,
        "the neighbour's report took {loaded:?}, more than its generation time {generation:?} + {MARGIN:?} (operator log: {log})"
    );
    drop(operator);
}
